package main

import (
	"flag"
	"fmt"
	"log/slog"
	"net/netip"

	"github.com/zumodra/throttle"
)

// options are the command-line settings of the demo server.
type options struct {
	addr           string
	trustedProxies []netip.Prefix
}

func (o *options) storeName() string { return "memory" }

func parseFlags(args []string) (*options, error) {
	fs := flag.NewFlagSet("server", flag.ContinueOnError)
	o := &options{}
	fs.StringVar(&o.addr, "addr", "127.0.0.1:8080", "address to listen on, host:port")
	proxies := fs.String("trusted-proxies", "", "comma-separated CIDR prefixes of proxies whose X-Forwarded-For and Forwarded headers are trusted (none by default)")
	if err := fs.Parse(args); err != nil {
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q", fs.Arg(0))
	}
	var err error
	o.trustedProxies, err = throttle.ParseTrustedProxies(*proxies)
	if err != nil {
		return nil, fmt.Errorf("-trusted-proxies: %w", err)
	}
	return o, nil
}

// newLimiter builds the limiter the flags describe, and a function that
// releases what it opened.
func newLimiter(o *options, logger *slog.Logger) (*throttle.Limiter, func(), error) {
	cfg := throttle.Config{
		ClientIP: throttle.ClientIPResolver{TrustedProxies: o.trustedProxies},
		Logger:   logger,
		Hooks:    hooks(),
	}
	lim, err := throttle.New(cfg)
	if err != nil {
		return nil, nil, err
	}
	return lim, func() {}, nil
}
