package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net/netip"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/zumodra/throttle"
)

// options are the command-line settings of the demo server.
type options struct {
	addr           string
	configFile     string
	redisURL       string
	redisCluster   []string
	failClosed     bool
	storeTimeout   time.Duration
	trustedProxies []netip.Prefix
	// set holds the names of the flags given on the command line, which
	// override the configuration file.
	set map[string]bool
}

func (o *options) storeName() string {
	switch {
	case o.redisURL != "":
		return "redis"
	case len(o.redisCluster) > 0:
		return "redis-cluster"
	}
	return "memory"
}

func parseFlags(args []string) (*options, error) {
	fs := flag.NewFlagSet("server", flag.ContinueOnError)
	o := &options{}
	fs.StringVar(&o.addr, "addr", "127.0.0.1:8080", "address to listen on, host:port")
	fs.StringVar(&o.configFile, "config", "", "load the limiter's configuration from this .json, .yaml or .yml file; -fail, -store-timeout and -trusted-proxies override it when given")
	fs.StringVar(&o.redisURL, "redis", "", "keep counters in Redis at this URL, redis://HOST:PORT/DB, instead of in memory")
	cluster := fs.String("redis-cluster", "", "keep counters in a Redis Cluster, given as comma-separated HOST:PORT seed nodes")
	fail := fs.String("fail", "open", "what to do when the store fails: open (serve the request uncounted) or closed (answer 503)")
	fs.DurationVar(&o.storeTimeout, "store-timeout", throttle.DefaultStoreTimeout, "maximum time one store call may take, such as 100ms")
	proxies := fs.String("trusted-proxies", "", "comma-separated CIDR prefixes of proxies whose X-Forwarded-For and Forwarded headers are trusted (none by default)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	o.set = make(map[string]bool)
	fs.Visit(func(f *flag.Flag) { o.set[f.Name] = true })

	if *cluster != "" {
		for _, node := range strings.Split(*cluster, ",") {
			node = strings.TrimSpace(node)
			if node == "" {
				return nil, fmt.Errorf("-redis-cluster: empty node address in %q", *cluster)
			}
			o.redisCluster = append(o.redisCluster, node)
		}
	}
	if o.redisURL != "" && len(o.redisCluster) > 0 {
		return nil, fmt.Errorf("-redis and -redis-cluster cannot be used together")
	}
	switch *fail {
	case "open":
	case "closed":
		o.failClosed = true
	default:
		return nil, fmt.Errorf("-fail: invalid value %q: use open or closed", *fail)
	}
	if o.storeTimeout <= 0 {
		return nil, fmt.Errorf("-store-timeout: invalid value %v: must be positive", o.storeTimeout)
	}
	var err error
	o.trustedProxies, err = throttle.ParseTrustedProxies(*proxies)
	if err != nil {
		return nil, fmt.Errorf("-trusted-proxies: %w", err)
	}
	return o, nil
}

// newLimiter builds the limiter that the configuration file and the flags
// describe, with hooks, and a function that releases what it opened. The
// flags given on the command line override the file; the others leave the
// file's values, or the defaults, in place.
func newLimiter(o *options, logger *slog.Logger, hooks throttle.Hooks) (*throttle.Limiter, func(), error) {
	cfg, err := limiterConfig(o)
	if err != nil {
		return nil, nil, err
	}
	cfg.Logger = logger
	cfg.Hooks = hooks

	cleanup := func() {}
	client, err := newRedisClient(o)
	if err != nil {
		return nil, nil, err
	}
	if client != nil {
		cfg.Store = throttle.NewRedisStore(client)
		cleanup = func() { client.Close() }
		if err := pingStore(context.Background(), client); err != nil {
			logger.Warn("store is not reachable at start-up; requests follow the failure policy until it is",
				"store", o.storeName(), "error", err)
		}
	}

	lim, err := throttle.New(cfg)
	if err != nil {
		cleanup()
		return nil, nil, err
	}
	return lim, cleanup, nil
}

// limiterConfig returns the configuration file's Config, or the defaults
// without one, with the flags given on the command line applied over it.
func limiterConfig(o *options) (throttle.Config, error) {
	var cfg throttle.Config
	if o.configFile != "" {
		var err error
		cfg, err = throttle.LoadConfigFile(o.configFile)
		if err != nil {
			return throttle.Config{}, err
		}
	}
	if o.set["fail"] {
		cfg.FailClosed = o.failClosed
	}
	if o.set["store-timeout"] {
		cfg.StoreTimeout = o.storeTimeout
	}
	if o.set["trusted-proxies"] {
		cfg.ClientIP.TrustedProxies = o.trustedProxies
	}
	return cfg, nil
}

// newRedisClient connects to the Redis the flags name, or returns nil for
// the memory store. A server that does not answer at start-up is logged by
// the limiter later; it is not fatal, because failing open keeps serving.
func newRedisClient(o *options) (redis.UniversalClient, error) {
	if o.redisURL != "" || len(o.redisCluster) > 0 {
		// go-redis prints every failed dial to stderr. The limiter already
		// logs store errors through slog, at most once per 10 seconds with a
		// count, so the demo keeps only those.
		redis.SetLogger(discardRedisLog{})
	}
	switch {
	case o.redisURL != "":
		opts, err := redis.ParseURL(o.redisURL)
		if err != nil {
			return nil, fmt.Errorf("-redis: invalid URL %q: %w", o.redisURL, err)
		}
		// Without ContextTimeoutEnabled go-redis ignores the deadline that
		// -store-timeout sets, and a stalled Redis would hold each request
		// for the client's 5-second read timeout.
		opts.ContextTimeoutEnabled = true
		return redis.NewClient(opts), nil
	case len(o.redisCluster) > 0:
		return redis.NewClusterClient(&redis.ClusterOptions{Addrs: o.redisCluster, ContextTimeoutEnabled: true}), nil
	}
	return nil, nil
}

// pingStore reports whether the store's server answers, for the start-up log.
func pingStore(ctx context.Context, client redis.UniversalClient) error {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	return client.Ping(ctx).Err()
}

// discardRedisLog drops go-redis's own log lines.
type discardRedisLog struct{}

func (discardRedisLog) Printf(context.Context, string, ...any) {}
