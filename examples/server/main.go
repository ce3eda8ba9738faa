// Command server is a small demo API protected by throttle. It
// authenticates "Authorization: Bearer TOKEN" against a fixed user table,
// rate-limits every route with the ready-made set, and logs each request's
// decision in one line.
//
//	go run ./examples/server
//	curl -i http://127.0.0.1:8080/api/items
//	curl -i -H 'Authorization: Bearer free-member' http://127.0.0.1:8080/api/items
package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/zumodra/throttle"
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
	if err := run(); err != nil {
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

	lim, cleanup, err := newLimiter(opts, logger)
	if err != nil {
		return err
	}
	defer cleanup()

	srv := &http.Server{
		Addr:              opts.addr,
		Handler:           logRequests(logger, authenticate(routes(lim))),
		ReadHeaderTimeout: 5 * time.Second,
	}

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	errc := make(chan error, 1)
	go func() {
		logger.Info("listening", "addr", opts.addr, "store", opts.storeName())
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
func routes(lim *throttle.Limiter) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /api/items", lim.Handler(jsonReply(map[string]any{"items": []string{"apple", "pear"}})))
	mux.Handle("POST /api/items", lim.Handler(jsonReply(map[string]any{"created": true})))
	mux.Handle("POST /api/bulk/import", lim.Handler(jsonReply(map[string]any{"imported": 0}), throttle.Bulk()))
	mux.Handle("GET /api/search", lim.Handler(jsonReply(map[string]any{"results": []string{}}), throttle.Scope("search")))
	mux.Handle("GET /api/reports", lim.Handler(jsonReply(map[string]any{"reports": []string{}}), throttle.Scope("report")))
	return mux
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
// is answered 401 here, before the limiter runs.
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
