// Command server is a small demo API protected by throttle. It
// authenticates "Authorization: Bearer TOKEN" against a fixed user table,
// rate-limits every route under /api/ with the ready-made set, and logs each
// request's decision in one line. GET /rate_limit reports the caller's usage
// of its limits without counting a request, and GET /metrics serves the limiter's
// Prometheus metrics. -config loads the limiter's configuration from a JSON
// or YAML file.
//
//	go run ./examples/server -config testdata/config/complete.yaml
//	curl -i http://127.0.0.1:8080/api/items
//	curl -i -H 'Authorization: Bearer free-member' http://127.0.0.1:8080/api/items
//	curl -H 'Authorization: Bearer free-member' http://127.0.0.1:8080/rate_limit
//	curl http://127.0.0.1:8080/metrics
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/zumodra/throttle"
	throttleprom "github.com/zumodra/throttle/prometheus"
)

// users maps bearer tokens to identities. A real service looks tokens up in
// its own store; the limiter only reads the resulting identity.
var users = map[string]throttle.Identity{
	"free-member": {Tenant: acme, UserID: "u-free-member", Role: "member"},
	"free-owner":  {Tenant: acme, UserID: "u-free-owner", Role: "owner"},
	"pro-member":  {Tenant: initech, UserID: "u-pro-member", Role: "member"},
	"ent-member":  {Tenant: globex, UserID: "u-ent-member", Role: "member"},
	"staff":       {Tenant: acme, UserID: "u-staff", Role: "member", Staff: true},
	"root":        {UserID: "u-root", Superuser: true},
}

var (
	acme    = throttle.Tenant{Slug: "acme", ID: "1", Plan: "free"}
	initech = throttle.Tenant{Slug: "initech", ID: "2", Plan: "professional"}
	globex  = throttle.Tenant{Slug: "globex", ID: "3", Plan: "enterprise"}
)

func main() {
	err := run()
	if errors.Is(err, flag.ErrHelp) {
		// -h printed the usage; asking for help is not a failure.
		return
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "server:", err)
		os.Exit(1)
	}
}

func run() error {
	opts, err := parseFlags(os.Args[1:])
	if err != nil {
		return err
	}
	logger := slog.New(slog.NewTextHandler(os.Stdout, nil))

	// A private registry holds only the limiter's metrics, so /metrics shows
	// what this demo is about.
	registry := prometheus.NewRegistry()
	metrics, err := throttleprom.New(registry)
	if err != nil {
		return err
	}
	lim, cleanup, err := newLimiter(opts, logger, metrics.Hooks(hooks()))
	if err != nil {
		return err
	}
	defer cleanup()

	srv := &http.Server{
		Addr:              opts.addr,
		Handler:           logRequests(logger, authenticate(routes(lim, registry, logger))),
		ReadHeaderTimeout: 5 * time.Second,
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	errc := make(chan error, 1)
	go func() {
		logger.Info("listening", "addr", opts.addr, "store", opts.storeName(), "config", opts.configFile)
		errc <- srv.ListenAndServe()
	}()

	select {
	case err := <-errc:
		return err
	case <-ctx.Done():
	}
	logger.Info("shutting down")
	shutdownCtx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.Shutdown(shutdownCtx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

// routes registers the demo API. Each route gets the ready-made set; the
// options add the write, bulk and endpoint-scope throttles where they belong.
// The usage report and the metrics are not rate-limited.
func routes(lim *throttle.Limiter, registry *prometheus.Registry, logger *slog.Logger) http.Handler {
	search := scopeOption(lim, logger, "search")
	report := scopeOption(lim, logger, "report")

	mux := http.NewServeMux()
	mux.Handle("GET /api/items", lim.Handler(jsonReply(map[string]any{"items": []string{"apple", "pear"}})))
	mux.Handle("POST /api/items", lim.Handler(jsonReply(map[string]any{"created": true})))
	mux.Handle("POST /api/bulk/import", lim.Handler(jsonReply(map[string]any{"imported": 0}), throttle.Bulk()))
	mux.Handle("GET /api/search", lim.Handler(jsonReply(map[string]any{"results": []string{}}), search...))
	mux.Handle("GET /api/reports", lim.Handler(jsonReply(map[string]any{"reports": []string{}}), report...))
	usage := append(append([]throttle.HandlerOption{throttle.Bulk()}, search...), report...)
	mux.Handle("GET /rate_limit", lim.UsageHandler(usage...))
	mux.Handle("GET /metrics", promhttp.HandlerFor(registry, promhttp.HandlerOpts{}))
	return mux
}

// scopeOption returns the option that gives a route the endpoint scope
// name, or none when the configuration turned that scope off. Scope panics
// for a scope without a rate, and a configuration file may remove one.
func scopeOption(lim *throttle.Limiter, logger *slog.Logger, name string) []throttle.HandlerOption {
	if _, ok := lim.Policy().ScopeThrottle(name); !ok {
		logger.Warn("endpoint scope is off in the configuration, so its routes have no scope throttle", "scope", name)
		return nil
	}
	return []throttle.HandlerOption{throttle.Scope(name)}
}

func jsonReply(body any) http.Handler {
	data, err := json.Marshal(body)
	if err != nil {
		panic(err)
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Write(data)
	})
}

// authenticate reads the bearer token and stores the caller's identity in
// the request context. No header means an anonymous caller; an unknown token
// gets 401 here, before the limiter runs.
func authenticate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		header := r.Header.Get("Authorization")
		if header == "" {
			next.ServeHTTP(w, r)
			return
		}
		token, ok := strings.CutPrefix(header, "Bearer ")
		id, known := users[strings.TrimSpace(token)]
		if !ok || !known {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprint(w, `{"detail": "Invalid token."}`)
			return
		}
		next.ServeHTTP(w, r.WithContext(throttle.WithIdentity(r.Context(), id)))
	})
}
