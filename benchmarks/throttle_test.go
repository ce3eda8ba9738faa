package benchmarks

import (
	"net/http"
	"testing"
	"time"

	"github.com/zumodra/throttle"
)

// benchPolicy gives every throttle of the ready-made set hugeLimit, so a
// throttle decision checks and records the whole set (plan, burst, daily
// quota, role and IP burst, plus the flagged-IP lookup) on the allowed
// path, where each peer checks one limit.
func benchPolicy() *throttle.Policy {
	p := throttle.DefaultPolicy()
	huge := throttle.Rate{Limit: hugeLimit, Period: window}
	p.Plans = map[string]throttle.PlanLimits{
		"free": {Sustained: huge, Burst: huge, Daily: throttle.PerDay(hugeLimit), Bulk: huge},
	}
	p.Roles = map[string]throttle.Rate{"member": huge}
	p.Anonymous, p.AnonymousBurst, p.IP, p.IPBurst, p.SuspiciousIP, p.Write = huge, huge, huge, huge, huge, huge
	return &p
}

// newThrottleLimiter builds a limiter with the ready-made set on store.
func newThrottleLimiter(b testing.TB, store throttle.Store) *throttle.Limiter {
	b.Helper()
	lim, err := throttle.New(throttle.Config{Store: store, Policy: benchPolicy(), StoreTimeout: 5 * time.Second})
	if err != nil {
		b.Fatal(err)
	}
	return lim
}

// memberRequest returns a request of user key, a member of tenant acme on
// the free plan, from the benchmark client address.
func memberRequest(key string) *http.Request {
	r := keyRequest()
	id := throttle.Identity{Tenant: throttle.Tenant{Slug: "acme", Plan: "free"}, UserID: key, Role: "member"}
	return r.WithContext(throttle.WithIdentity(r.Context(), id))
}

// throttleDecider decides with Limiter.Decide for the user named by the key.
// The requests are built beforehand; looking one up costs a map access that
// the peers, which take the key directly, do not pay.
func throttleDecider(lim *throttle.Limiter) deciderSource {
	requests := make(map[string]*http.Request, keyCount+1)
	requests[hotKey] = memberRequest(hotKey)
	for _, key := range keys {
		requests[key] = memberRequest(key)
	}
	return func() decide {
		var d throttle.Decision
		return func(key string) (bool, error) {
			err := lim.Decide(requests[key], &d)
			return d.Allowed, err
		}
	}
}

// throttleMemoryDecider builds a limiter on a new memory store.
func throttleMemoryDecider(b *testing.B) deciderSource {
	return throttleDecider(newThrottleLimiter(b, throttle.NewMemoryStore(throttle.MemoryConfig{})))
}

// throttleMiddleware is the limiter's handler around next, for an
// authenticated member so that the whole ready-made set applies.
func throttleMiddleware(b *testing.B, next http.Handler) http.Handler {
	lim := newThrottleLimiter(b, throttle.NewMemoryStore(throttle.MemoryConfig{}))
	return lim.Handler(next)
}
