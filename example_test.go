package throttle_test

import (
	"context"
	"fmt"
	"log"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"time"

	"github.com/zumodra/throttle"
)

// This is the set-up the README shows: authenticate, store the identity,
// and wrap each handler with the limiter.
func Example() {
	items := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "items") })
	search, bulkImport := items, items

	lim, err := throttle.New(throttle.Config{}) // memory store, default policy
	if err != nil {
		log.Fatal(err)
	}

	mux := http.NewServeMux()
	mux.Handle("GET /api/items", lim.Handler(items))
	mux.Handle("GET /api/search", lim.Handler(search, throttle.Scope("search")))
	mux.Handle("POST /api/bulk/import", lim.Handler(bulkImport, throttle.Bulk()))

	// Your authentication middleware stores the caller; the limiter only reads it.
	authenticate := func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			id := throttle.Identity{
				Tenant: throttle.Tenant{Slug: "acme", Plan: "free"},
				UserID: "42",
				Role:   "member",
			}
			next.ServeHTTP(w, r.WithContext(throttle.WithIdentity(r.Context(), id)))
		})
	}
	handler := authenticate(mux)

	for range 11 {
		rec := httptest.NewRecorder()
		handler.ServeHTTP(rec, httptest.NewRequest("GET", "/api/items", nil))
		fmt.Println(rec.Code, rec.Header().Get("X-RateLimit-Remaining"))
	}
	// Output:
	// 200 9
	// 200 8
	// 200 7
	// 200 6
	// 200 5
	// 200 4
	// 200 3
	// 200 2
	// 200 1
	// 200 0
	// 429 0
}

// A test of a handler controls time with a ManualClock instead of sleeping,
// and starts each case from empty counters with MemoryStore.Reset.
func ExampleManualClock() {
	clock := throttle.NewManualClock(time.Date(2026, 1, 1, 12, 0, 0, 0, time.UTC))
	store := throttle.NewMemoryStore(throttle.MemoryConfig{Clock: clock})
	lim, _ := throttle.New(throttle.Config{Store: store, Clock: clock})
	handler := lim.Handler(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))

	get := func() int {
		rec := httptest.NewRecorder()
		handler.ServeHTTP(rec, httptest.NewRequest("GET", "/", nil)) // anonymous: 5/minute
		return rec.Code
	}
	for range 5 {
		get()
	}
	fmt.Println("sixth request:", get())

	clock.Advance(time.Minute)
	fmt.Println("a minute later:", get())

	for range 4 {
		get()
	}
	store.Reset()
	fmt.Println("after reset:", get())
	// Output:
	// sixth request: 429
	// a minute later: 200
	// after reset: 200
}

// Check decides without responding, for services that write their own
// responses or rate-limit something other than an HTTP handler.
func ExampleLimiter_Check() {
	policy := throttle.DefaultPolicy()
	policy.Plans["free"] = throttle.PlanLimits{Burst: throttle.PerMinute(2)}
	lim, _ := throttle.New(throttle.Config{Policy: &policy})

	r := httptest.NewRequest("GET", "/", nil)
	r = r.WithContext(throttle.WithIdentity(r.Context(), throttle.Identity{
		Tenant: throttle.Tenant{Slug: "acme"}, UserID: "7",
	}))
	for range 3 {
		d, err := lim.Check(r)
		if err != nil {
			fmt.Println("store error:", err)
			continue
		}
		fmt.Printf("allowed=%v limit=%d remaining=%d retry_after=%v\n", d.Allowed, d.Limit, d.Remaining, d.RetryAfter > 0)
	}
	// Output:
	// allowed=true limit=2 remaining=1 retry_after=false
	// allowed=true limit=2 remaining=0 retry_after=false
	// allowed=false limit=2 remaining=0 retry_after=true
}

// Staff and superusers skip every throttle and use no quota.
func ExampleIdentity_staff() {
	lim, _ := throttle.New(throttle.Config{})
	handler := lim.Handler(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))

	r := httptest.NewRequest("GET", "/", nil)
	r = r.WithContext(throttle.WithIdentity(r.Context(), throttle.Identity{UserID: "ops", Staff: true}))
	served, withHeaders := 0, 0
	for range 100 {
		rec := httptest.NewRecorder()
		handler.ServeHTTP(rec, r)
		if rec.Code == http.StatusOK {
			served++
		}
		if rec.Header().Get("X-RateLimit-Limit") != "" {
			withHeaders++
		}
	}
	fmt.Println("served:", served, "with limit headers:", withHeaders)
	// Output:
	// served: 100 with limit headers: 0
}

// ParseRate reads the rate syntax of configuration files.
func ExampleParseRate() {
	for _, s := range []string{"100/hour", "10/min", "100/15m", "5/2d", "ten/hour"} {
		r, err := throttle.ParseRate(s)
		if err != nil {
			fmt.Println(err)
			continue
		}
		fmt.Println(r.Limit, r.Period)
	}
	// Output:
	// 100 1h0m0s
	// 10 1m0s
	// 100 15m0s
	// 5 48h0m0s
	// throttle: invalid rate "ten/hour": request count "ten" is not a positive integer
}

// FlagIP puts a client address under the suspicious-IP rate on every
// instance that shares the store, for a limited time.
func ExampleLimiter_FlagIP() {
	lim, _ := throttle.New(throttle.Config{})
	ctx := context.Background()
	addr := netip.MustParseAddr("203.0.113.9")

	_ = lim.FlagIP(ctx, addr, 30*time.Minute)
	_, flagged, _ := lim.IPFlag(ctx, addr)
	fmt.Println("flagged:", flagged)

	removed, _ := lim.UnflagIP(ctx, addr)
	_, flagged, _ = lim.IPFlag(ctx, addr)
	fmt.Println("removed:", removed, "flagged:", flagged)
	// Output:
	// flagged: true
	// removed: true flagged: false
}
