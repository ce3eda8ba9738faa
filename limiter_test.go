package throttle

import (
	"context"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// limiterEpoch is the time every limiter test starts at. It is a whole second,
// so the Unix-second header values are exact, and noon, so daily quotas are
// far from midnight unless a test moves the clock there.
var limiterEpoch = time.Date(2026, time.March, 10, 12, 0, 0, 0, time.UTC)

// testRemoteAddr is the peer address of requests unless a test sets another.
const testRemoteAddr = "203.0.113.7:1234"

// limiterRig is a limiter on a manual clock with the memory store it writes to.
type limiterRig struct {
	clock *ManualClock
	store *MemoryStore
	lim   *Limiter
}

// newLimiterRig builds a limiter from cfg, with the clock and the store
// replaced by a manual clock at limiterEpoch and a memory store on that clock.
func newLimiterRig(t testing.TB, cfg Config) *limiterRig {
	t.Helper()
	clock := NewManualClock(limiterEpoch)
	store := NewMemoryStore(MemoryConfig{Clock: clock})
	cfg.Clock = clock
	cfg.Store = store
	lim, err := New(cfg)
	require.NoError(t, err)
	return &limiterRig{clock: clock, store: store, lim: lim}
}

// userIdentity returns an authenticated caller of a tenant on a plan.
func userIdentity(tenant, plan, userID string) Identity {
	return Identity{Tenant: Tenant{Slug: tenant, ID: "id-" + tenant, Plan: plan}, UserID: userID}
}

// newIdentityRequest returns a request from testRemoteAddr that carries id.
func newIdentityRequest(method string, id Identity) *http.Request {
	r := httptest.NewRequest(method, "/api/items", nil)
	r.RemoteAddr = testRemoteAddr
	return r.WithContext(WithIdentity(r.Context(), id))
}

// newAnonymousRequest returns a request of an anonymous caller of tenant
// from remoteAddr.
func newAnonymousRequest(method, tenant, remoteAddr string) *http.Request {
	r := httptest.NewRequest(method, "/api/items", nil)
	r.RemoteAddr = remoteAddr
	return r.WithContext(WithIdentity(r.Context(), Identity{Tenant: Tenant{Slug: tenant}}))
}

// okHandler is the protected handler of most tests.
var okHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	w.WriteHeader(http.StatusOK)
	_, _ = io.WriteString(w, "ok")
})

// serve sends a copy of r through h and returns the response.
func serve(h http.Handler, r *http.Request) *httptest.ResponseRecorder {
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, r.Clone(r.Context()))
	return rec
}

// serveCodes sends r through h n times and returns the status codes.
func serveCodes(h http.Handler, r *http.Request, n int) []int {
	codes := make([]int, n)
	for i := range codes {
		codes[i] = serve(h, r).Code
	}
	return codes
}

// codes returns want repeated n times, to compare with serveCodes.
func codes(want, n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = want
	}
	return out
}

// concat joins status code lists.
func concat(lists ...[]int) []int {
	var out []int
	for _, l := range lists {
		out = append(out, l...)
	}
	return out
}

// usage returns the statuses of r's caller by scope, without counting.
func (rig *limiterRig) usage(t testing.TB, r *http.Request, opts ...HandlerOption) map[string]Status {
	t.Helper()
	d, err := rig.lim.Usage(r, opts...)
	require.NoError(t, err)
	statuses := make(map[string]Status, len(d.Statuses))
	for _, s := range d.Statuses {
		statuses[s.Scope] = s
	}
	return statuses
}

// remaining returns the remaining count of every scope in statuses.
func remaining(statuses map[string]Status) map[string]int64 {
	out := make(map[string]int64, len(statuses))
	for scope, s := range statuses {
		out[scope] = s.Remaining
	}
	return out
}

// wideIPPolicy is the default policy with an IP burst rate high enough that
// tests of per-user limits from one address never reach it.
func wideIPPolicy() *Policy {
	p := DefaultPolicy()
	p.IPBurst = PerMinute(100000)
	return &p
}

// dailyPolicy limits the free plan to 3 requests a day, with sustained and
// burst rates that tests never reach, and nothing else.
func dailyPolicy() *Policy {
	return &Policy{Plans: map[string]PlanLimits{
		"free": {Sustained: PerHour(1000), Burst: PerMinute(1000), Daily: PerDay(3)},
	}}
}

func TestLimiterPerUserCounters(t *testing.T) {
	rig := newLimiterRig(t, Config{})
	h := rig.lim.Handler(okHandler)
	alice := newIdentityRequest(http.MethodGet, userIdentity("acme", "free", "alice"))
	bob := newIdentityRequest(http.MethodGet, userIdentity("acme", "free", "bob"))

	assert.Equal(t, concat(codes(200, 10), codes(429, 1)), serveCodes(h, alice, 11))
	assert.Equal(t, concat(codes(200, 10), codes(429, 1)), serveCodes(h, bob, 11))
}

func TestLimiterPlanLimits(t *testing.T) {
	cases := []struct {
		plan  string
		burst int
	}{
		{plan: "free", burst: 10},
		{plan: "starter", burst: 30},
		{plan: "professional", burst: 100},
		{plan: "enterprise", burst: 500},
		{plan: "", burst: 10},
		{plan: "platinum", burst: 10},
	}
	for _, tc := range cases {
		t.Run("plan "+strconv.Quote(tc.plan), func(t *testing.T) {
			rig := newLimiterRig(t, Config{Policy: wideIPPolicy()})
			h := rig.lim.Handler(okHandler)
			req := newIdentityRequest(http.MethodGet, userIdentity("acme", tc.plan, "alice"))

			first := serve(h, req)
			require.Equal(t, http.StatusOK, first.Code)
			assert.Equal(t, strconv.Itoa(tc.burst), first.Header().Get("X-RateLimit-Limit"))

			assert.Equal(t, concat(codes(200, tc.burst-1), codes(429, 1)), serveCodes(h, req, tc.burst))
		})
	}
}

func TestLimiterPlanUpgradeNextRequest(t *testing.T) {
	rig := newLimiterRig(t, Config{})
	h := rig.lim.Handler(okHandler)
	free := newIdentityRequest(http.MethodGet, userIdentity("acme", "free", "alice"))
	starter := newIdentityRequest(http.MethodGet, userIdentity("acme", "starter", "alice"))

	require.Equal(t, concat(codes(200, 10), codes(429, 1)), serveCodes(h, free, 11))

	upgraded := serve(h, starter)
	require.Equal(t, http.StatusOK, upgraded.Code)
	assert.Equal(t, "30", upgraded.Header().Get("X-RateLimit-Limit"))
	assert.Equal(t, "19", upgraded.Header().Get("X-RateLimit-Remaining"))
}

func TestLimiterPlanDowngradeNextRequest(t *testing.T) {
	rig := newLimiterRig(t, Config{})
	h := rig.lim.Handler(okHandler)
	starter := newIdentityRequest(http.MethodGet, userIdentity("acme", "starter", "alice"))
	free := newIdentityRequest(http.MethodGet, userIdentity("acme", "free", "alice"))

	require.Equal(t, codes(200, 15), serveCodes(h, starter, 15))

	downgraded := serve(h, free)
	assert.Equal(t, http.StatusTooManyRequests, downgraded.Code)
	assert.Equal(t, "10", downgraded.Header().Get("X-RateLimit-Limit"))
	assert.Equal(t, "0", downgraded.Header().Get("X-RateLimit-Remaining"))
}

func TestLimiterBurstIndependentOfSustained(t *testing.T) {
	t.Run("burst used up", func(t *testing.T) {
		rig := newLimiterRig(t, Config{})
		h := rig.lim.Handler(okHandler)
		req := newIdentityRequest(http.MethodGet, userIdentity("acme", "free", "alice"))

		require.Equal(t, concat(codes(200, 10), codes(429, 1)), serveCodes(h, req, 11))
		statuses := rig.usage(t, req)
		assert.Equal(t, int64(0), statuses["burst"].Remaining)
		assert.Equal(t, int64(90), statuses["plan"].Remaining)

		rig.clock.Advance(time.Minute)
		assert.Equal(t, http.StatusOK, serve(h, req).Code)
	})

	t.Run("sustained used up", func(t *testing.T) {
		rig := newLimiterRig(t, Config{})
		h := rig.lim.Handler(okHandler)
		req := newIdentityRequest(http.MethodGet, userIdentity("acme", "free", "alice"))

		// Ten requests a minute for ten minutes stay within the burst rate
		// and use up the sustained rate of 100 an hour.
		for minute := 0; minute < 10; minute++ {
			require.Equal(t, codes(200, 10), serveCodes(h, req, 10), "minute %d", minute)
			rig.clock.Advance(time.Minute)
		}

		d, err := rig.lim.Check(req.Clone(req.Context()))
		require.NoError(t, err)
		assert.False(t, d.Allowed)
		statuses := make(map[string]Status)
		for _, s := range d.Statuses {
			statuses[s.Scope] = s
		}
		assert.False(t, statuses["plan"].Allowed)
		assert.True(t, statuses["burst"].Allowed)
		assert.Equal(t, int64(10), statuses["burst"].Remaining)
	})
}

func TestLimiterTenantIsolation(t *testing.T) {
	rig := newLimiterRig(t, Config{})
	h := rig.lim.Handler(okHandler)
	acme := newIdentityRequest(http.MethodGet, userIdentity("acme", "free", "42"))
	globex := newIdentityRequest(http.MethodGet, userIdentity("globex", "free", "42"))

	require.Equal(t, concat(codes(200, 10), codes(429, 1)), serveCodes(h, acme, 11))
	assert.Equal(t, concat(codes(200, 10), codes(429, 1)), serveCodes(h, globex, 11))
}

func TestLimiterCounterExpiry(t *testing.T) {
	rig := newLimiterRig(t, Config{})
	h := rig.lim.Handler(okHandler)
	req := newIdentityRequest(http.MethodGet, userIdentity("acme", "free", "alice"))

	require.Equal(t, concat(codes(200, 10), codes(429, 1)), serveCodes(h, req, 11))

	rig.clock.Advance(59 * time.Second)
	assert.Equal(t, http.StatusTooManyRequests, serve(h, req).Code)

	rig.clock.Advance(time.Second)
	assert.Equal(t, int64(10), rig.usage(t, req)["burst"].Remaining)
	assert.Equal(t, concat(codes(200, 10), codes(429, 1)), serveCodes(h, req, 11))
}

func TestLimiterRoleLimits(t *testing.T) {
	policy := &Policy{
		Plans: map[string]PlanLimits{
			"free": {Sustained: PerHour(1000), Burst: PerMinute(1000), Daily: PerDay(10000)},
		},
		Roles: map[string]Rate{"owner": PerMinute(5), "member": PerMinute(2), "guest": {}},
	}
	cases := []struct {
		name    string
		role    string
		allowed int
		limited bool
	}{
		{name: "owner", role: "owner", allowed: 5, limited: true},
		{name: "member", role: "member", allowed: 2, limited: true},
		{name: "role without rate", role: "guest", allowed: 20},
		{name: "role not configured", role: "intern", allowed: 20},
		{name: "no role", role: "", allowed: 20},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rig := newLimiterRig(t, Config{Policy: policy})
			h := rig.lim.Handler(okHandler)
			id := userIdentity("acme", "free", "alice")
			id.Role = tc.role
			req := newIdentityRequest(http.MethodGet, id)

			want := codes(200, tc.allowed)
			if tc.limited {
				want = append(want, 429)
			}
			assert.Equal(t, want, serveCodes(h, req, len(want)))

			role, applies := rig.usage(t, req)["role"]
			assert.Equal(t, tc.limited, applies)
			if tc.limited {
				assert.Equal(t, int64(tc.allowed), role.Limit)
			}
		})
	}
}

func TestLimiterRoleDefaultRates(t *testing.T) {
	rig := newLimiterRig(t, Config{})
	for role, want := range map[string]int64{"owner": 5000, "member": 500, "admin": 3000} {
		id := userIdentity("acme", "free", "alice")
		id.Role = role
		statuses := rig.usage(t, newIdentityRequest(http.MethodGet, id))
		assert.Equal(t, want, statuses["role"].Limit, role)
		assert.Equal(t, time.Hour, statuses["role"].Period, role)
	}
}

func TestLimiterAnonymousLimits(t *testing.T) {
	t.Run("burst per IP per tenant", func(t *testing.T) {
		rig := newLimiterRig(t, Config{})
		h := rig.lim.Handler(okHandler)

		first := newAnonymousRequest(http.MethodGet, "acme", "203.0.113.7:1234")
		require.Equal(t, concat(codes(200, 5), codes(429, 1)), serveCodes(h, first, 6))

		otherPort := newAnonymousRequest(http.MethodGet, "acme", "203.0.113.7:9999")
		assert.Equal(t, http.StatusTooManyRequests, serve(h, otherPort).Code)

		secondIP := newAnonymousRequest(http.MethodGet, "acme", "203.0.113.8:1234")
		assert.Equal(t, concat(codes(200, 5), codes(429, 1)), serveCodes(h, secondIP, 6))

		otherTenant := newAnonymousRequest(http.MethodGet, "globex", "203.0.113.7:1234")
		assert.Equal(t, concat(codes(200, 5), codes(429, 1)), serveCodes(h, otherTenant, 6))
	})

	t.Run("no tenant counts as public", func(t *testing.T) {
		rig := newLimiterRig(t, Config{})
		h := rig.lim.Handler(okHandler)
		bare := httptest.NewRequest(http.MethodGet, "/api/items", nil)
		bare.RemoteAddr = testRemoteAddr

		require.Equal(t, concat(codes(200, 5), codes(429, 1)), serveCodes(h, bare, 6))
		public := newAnonymousRequest(http.MethodGet, "public", testRemoteAddr)
		assert.Equal(t, http.StatusTooManyRequests, serve(h, public).Code)
	})

	t.Run("sustained", func(t *testing.T) {
		rig := newLimiterRig(t, Config{})
		h := rig.lim.Handler(okHandler)
		req := newAnonymousRequest(http.MethodGet, "acme", testRemoteAddr)

		for minute := 0; minute < 6; minute++ {
			require.Equal(t, codes(200, 5), serveCodes(h, req, 5), "minute %d", minute)
			rig.clock.Advance(time.Minute)
		}
		denied := serve(h, req)
		assert.Equal(t, http.StatusTooManyRequests, denied.Code)
		assert.Equal(t, "30", denied.Header().Get("X-RateLimit-Limit"))
	})
}

func TestLimiterWriteThrottle(t *testing.T) {
	rig := newLimiterRig(t, Config{})
	h := rig.lim.Handler(okHandler, Only(WriteThrottle{Name: "write", Rate: PerMinute(4)}))
	id := userIdentity("acme", "free", "alice")

	for _, method := range []string{http.MethodGet, http.MethodHead, http.MethodOptions} {
		rec := serve(h, newIdentityRequest(method, id))
		require.Equal(t, http.StatusOK, rec.Code, method)
		assert.Empty(t, rec.Header().Get("X-RateLimit-Limit"), method)
	}
	for i, method := range []string{http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete} {
		rec := serve(h, newIdentityRequest(method, id))
		require.Equal(t, http.StatusOK, rec.Code, method)
		assert.Equal(t, strconv.Itoa(3-i), rec.Header().Get("X-RateLimit-Remaining"), method)
	}

	assert.Equal(t, http.StatusTooManyRequests, serve(h, newIdentityRequest(http.MethodPost, id)).Code)
	for _, method := range []string{http.MethodGet, http.MethodHead, http.MethodOptions} {
		assert.Equal(t, codes(200, 20), serveCodes(h, newIdentityRequest(method, id), 20), method)
	}
}

func TestLimiterWriteThrottleDefaultSet(t *testing.T) {
	rig := newLimiterRig(t, Config{})
	get := rig.usage(t, newIdentityRequest(http.MethodGet, userIdentity("acme", "free", "alice")))
	post := rig.usage(t, newIdentityRequest(http.MethodPost, userIdentity("acme", "free", "alice")))

	assert.NotContains(t, get, "write")
	require.Contains(t, post, "write")
	assert.Equal(t, int64(100), post["write"].Limit)
}

func TestLimiterEndpointScope(t *testing.T) {
	policy := wideIPPolicy()
	policy.Scopes["search"] = PerMinute(3)
	rig := newLimiterRig(t, Config{Policy: policy})
	search := rig.lim.Handler(okHandler, Scope("search"))
	plain := rig.lim.Handler(okHandler)
	alice := newIdentityRequest(http.MethodGet, userIdentity("acme", "free", "alice"))
	bob := newIdentityRequest(http.MethodGet, userIdentity("acme", "free", "bob"))

	first := serve(search, alice)
	require.Equal(t, http.StatusOK, first.Code)
	assert.Contains(t, first.Header().Get("RateLimit-Policy"), `"search";q=3;w=60`)

	assert.Equal(t, concat(codes(200, 2), codes(429, 1)), serveCodes(search, alice, 3))
	assert.Equal(t, http.StatusOK, serve(plain, alice).Code)
	assert.Equal(t, http.StatusOK, serve(search, bob).Code)

	plainStatuses := rig.usage(t, alice)
	assert.NotContains(t, plainStatuses, "search")
}

func TestLimiterBulk(t *testing.T) {
	rig := newLimiterRig(t, Config{Policy: wideIPPolicy()})
	bulk := rig.lim.Handler(okHandler, Bulk())
	plain := rig.lim.Handler(okHandler)
	free := newIdentityRequest(http.MethodPost, userIdentity("acme", "free", "alice"))
	starter := newIdentityRequest(http.MethodPost, userIdentity("globex", "starter", "bob"))

	assert.Equal(t, concat(codes(200, 5), codes(429, 1)), serveCodes(bulk, free, 6))
	assert.Equal(t, http.StatusOK, serve(plain, free).Code)

	first := serve(bulk, starter)
	require.Equal(t, http.StatusOK, first.Code)
	assert.Contains(t, first.Header().Get("RateLimit-Policy"), `"bulk";q=20;w=3600`)
}

func TestLimiterUnknownScopePanics(t *testing.T) {
	policy := DefaultPolicy()
	policy.Scopes["disabled"] = Rate{}
	rig := newLimiterRig(t, Config{Policy: &policy})

	assert.Panics(t, func() { rig.lim.Handler(okHandler, Scope("nope")) })
	assert.Panics(t, func() { rig.lim.Handler(okHandler, Scope("disabled")) })
	assert.Panics(t, func() { rig.lim.Middleware(Scope("nope"))(okHandler) })
	assert.NotPanics(t, func() { rig.lim.Handler(okHandler, Scope("search", "report")) })
}

func TestLimiterResetUser(t *testing.T) {
	rig := newLimiterRig(t, Config{Policy: wideIPPolicy()})
	h := rig.lim.Handler(okHandler)
	alice := newIdentityRequest(http.MethodGet, userIdentity("acme", "free", "alice"))
	bob := newIdentityRequest(http.MethodGet, userIdentity("acme", "free", "bob"))

	require.Equal(t, concat(codes(200, 10), codes(429, 1)), serveCodes(h, alice, 11))
	require.Equal(t, codes(200, 4), serveCodes(h, bob, 4))

	deleted, err := rig.lim.ResetUser(context.Background(), "acme", "alice")
	require.NoError(t, err)
	assert.Equal(t, 3, deleted, "plan, burst and daily")

	assert.Equal(t, concat(codes(200, 10), codes(429, 1)), serveCodes(h, alice, 11))
	assert.Equal(t, int64(6), rig.usage(t, bob)["burst"].Remaining)
}

func TestLimiterResetUserEmptyID(t *testing.T) {
	rig := newLimiterRig(t, Config{})
	_, err := rig.lim.ResetUser(context.Background(), "acme", "")
	assert.Error(t, err)
}

func TestLimiterResetTenant(t *testing.T) {
	rig := newLimiterRig(t, Config{})
	h := rig.lim.Handler(okHandler)
	alice := newIdentityRequest(http.MethodGet, userIdentity("acme", "free", "alice"))
	bob := newIdentityRequest(http.MethodGet, userIdentity("acme", "free", "bob"))
	carol := newIdentityRequest(http.MethodGet, userIdentity("globex", "free", "carol"))
	carol.RemoteAddr = "198.51.100.9:4321"

	require.Equal(t, concat(codes(200, 10), codes(429, 1)), serveCodes(h, alice, 11))
	require.Equal(t, concat(codes(200, 10), codes(429, 1)), serveCodes(h, bob, 11))
	require.Equal(t, concat(codes(200, 10), codes(429, 1)), serveCodes(h, carol, 11))

	deleted, err := rig.lim.ResetTenant(context.Background(), "acme")
	require.NoError(t, err)
	assert.Equal(t, 6, deleted, "plan, burst and daily of two users")

	assert.Equal(t, int64(10), rig.usage(t, alice)["burst"].Remaining)
	assert.Equal(t, int64(10), rig.usage(t, bob)["burst"].Remaining)
	assert.Equal(t, int64(0), rig.usage(t, carol)["burst"].Remaining)
	// The per-IP counter is shared by every tenant, so a tenant reset keeps it.
	assert.Equal(t, int64(10), rig.usage(t, alice)["ip_burst"].Remaining)
	assert.Equal(t, http.StatusOK, serve(h, alice).Code)
}

// TestLimiterResetTenantUnderscoreSlug checks a tenant whose slug is "_",
// the tenant part of counters shared by every tenant. Its counters must be
// keyed like any other slug that cannot be written raw, so that
// ResetTenant finds them.
func TestLimiterResetTenantUnderscoreSlug(t *testing.T) {
	rig := newLimiterRig(t, Config{Policy: wideIPPolicy()})
	h := rig.lim.Handler(okHandler)
	req := newIdentityRequest(http.MethodGet, userIdentity("_", "free", "alice"))

	require.Equal(t, concat(codes(200, 10), codes(429, 1)), serveCodes(h, req, 11))

	deleted, err := rig.lim.ResetTenant(context.Background(), "_")
	require.NoError(t, err)
	assert.Equal(t, 3, deleted, "plan, burst and daily")
	assert.Equal(t, http.StatusOK, serve(h, req).Code)
}

func TestLimiterResetScope(t *testing.T) {
	rig := newLimiterRig(t, Config{Policy: wideIPPolicy()})
	h := rig.lim.Handler(okHandler)
	alice := newIdentityRequest(http.MethodGet, userIdentity("acme", "free", "alice"))
	carol := newIdentityRequest(http.MethodGet, userIdentity("globex", "free", "carol"))

	require.Equal(t, concat(codes(200, 10), codes(429, 1)), serveCodes(h, alice, 11))
	require.Equal(t, concat(codes(200, 10), codes(429, 1)), serveCodes(h, carol, 11))

	deleted, err := rig.lim.ResetScope(context.Background(), "burst")
	require.NoError(t, err)
	assert.Equal(t, 2, deleted)

	statuses := rig.usage(t, alice)
	assert.Equal(t, int64(10), statuses["burst"].Remaining)
	assert.Equal(t, int64(90), statuses["plan"].Remaining)
	assert.Equal(t, http.StatusOK, serve(h, alice).Code)
	assert.Equal(t, http.StatusOK, serve(h, carol).Code)

	_, err = rig.lim.ResetScope(context.Background(), "bad scope*")
	assert.Error(t, err)
}

func TestMemoryStoreResetRestoresQuota(t *testing.T) {
	rig := newLimiterRig(t, Config{})
	h := rig.lim.Handler(okHandler)
	req := newIdentityRequest(http.MethodGet, userIdentity("acme", "free", "alice"))

	require.Equal(t, concat(codes(200, 10), codes(429, 1)), serveCodes(h, req, 11))
	require.NotZero(t, rig.store.Len())

	rig.store.Reset()
	assert.Equal(t, 0, rig.store.Len())
	assert.Equal(t, concat(codes(200, 10), codes(429, 1)), serveCodes(h, req, 11))
}

// flagPolicy is the default policy with a suspicious-IP rate of 3 an hour
// and an IP burst rate that the tests never reach.
func flagPolicy() *Policy {
	p := wideIPPolicy()
	p.SuspiciousIP = PerHour(3)
	return p
}

func TestLimiterFlaggedIP(t *testing.T) {
	ctx := context.Background()
	rig := newLimiterRig(t, Config{Policy: flagPolicy()})
	h := rig.lim.Handler(okHandler)
	req := newIdentityRequest(http.MethodGet, userIdentity("acme", "enterprise", "alice"))
	addr := netip.MustParseAddr("203.0.113.7")

	require.Equal(t, codes(200, 5), serveCodes(h, req, 5))
	assert.NotContains(t, rig.usage(t, req), "suspicious_ip")

	require.NoError(t, rig.lim.FlagIP(ctx, addr, 0))
	until, flagged, err := rig.lim.IPFlag(ctx, addr)
	require.NoError(t, err)
	assert.True(t, flagged)
	assert.Equal(t, limiterEpoch.Add(DefaultFlagDuration), until.UTC())

	assert.Equal(t, concat(codes(200, 3), codes(429, 1)), serveCodes(h, req, 4))
	assert.False(t, rig.usage(t, req)["suspicious_ip"].Allowed)

	// The flag is on the address, so every user and tenant behind it is limited.
	other := newIdentityRequest(http.MethodGet, userIdentity("globex", "enterprise", "bob"))
	assert.Equal(t, http.StatusTooManyRequests, serve(h, other).Code)

	removed, err := rig.lim.UnflagIP(ctx, addr)
	require.NoError(t, err)
	assert.True(t, removed)
	assert.Equal(t, codes(200, 5), serveCodes(h, req, 5))
	assert.NotContains(t, rig.usage(t, req), "suspicious_ip")

	_, flagged, err = rig.lim.IPFlag(ctx, addr)
	require.NoError(t, err)
	assert.False(t, flagged)
	removed, err = rig.lim.UnflagIP(ctx, addr)
	require.NoError(t, err)
	assert.False(t, removed)
}

func TestLimiterFlagExpiry(t *testing.T) {
	ctx := context.Background()
	rig := newLimiterRig(t, Config{Policy: flagPolicy()})
	h := rig.lim.Handler(okHandler)
	req := newIdentityRequest(http.MethodGet, userIdentity("acme", "enterprise", "alice"))
	addr := netip.MustParseAddr("203.0.113.7")

	require.NoError(t, rig.lim.FlagIP(ctx, addr, 10*time.Minute))
	require.Equal(t, concat(codes(200, 3), codes(429, 1)), serveCodes(h, req, 4))

	rig.clock.Advance(10*time.Minute - time.Millisecond)
	assert.Equal(t, http.StatusTooManyRequests, serve(h, req).Code)

	rig.clock.Advance(time.Millisecond)
	assert.Equal(t, http.StatusOK, serve(h, req).Code)
	_, flagged, err := rig.lim.IPFlag(ctx, addr)
	require.NoError(t, err)
	assert.False(t, flagged)
}

func TestLimiterFlagIPv6Prefix(t *testing.T) {
	ctx := context.Background()
	rig := newLimiterRig(t, Config{Policy: flagPolicy()})
	h := rig.lim.Handler(okHandler)
	id := userIdentity("acme", "enterprise", "alice")

	require.NoError(t, rig.lim.FlagIP(ctx, netip.MustParseAddr("2001:db8:1:2::99"), time.Hour))

	sameBlock := newIdentityRequest(http.MethodGet, id)
	sameBlock.RemoteAddr = "[2001:db8:1:2::7]:443"
	assert.Equal(t, concat(codes(200, 3), codes(429, 1)), serveCodes(h, sameBlock, 4))

	otherBlock := newIdentityRequest(http.MethodGet, id)
	otherBlock.RemoteAddr = "[2001:db8:1:3::7]:443"
	assert.Equal(t, codes(200, 5), serveCodes(h, otherBlock, 5))
}

func TestLimiterFlagIPInvalid(t *testing.T) {
	ctx := context.Background()
	rig := newLimiterRig(t, Config{})

	assert.Error(t, rig.lim.FlagIP(ctx, netip.Addr{}, time.Hour))
	assert.Error(t, rig.lim.FlagIP(ctx, netip.MustParseAddr("203.0.113.7"), -time.Second))
	_, err := rig.lim.UnflagIP(ctx, netip.Addr{})
	assert.Error(t, err)
}

// slidingLogAllowed returns how many of the arrivals an exact sliding log
// allows under limit per period. A request is allowed when fewer than limit
// allowed requests are younger than period. Accepting greedily is optimal,
// so no limiter that keeps the promise can allow more.
func slidingLogAllowed(arrivals []int64, limit int, period int64) int {
	var log []int64
	allowed := 0
	for _, at := range arrivals {
		for len(log) > 0 && log[0]+period <= at {
			log = log[1:]
		}
		if len(log) < limit {
			log = append(log, at)
			allowed++
		}
	}
	return allowed
}

func TestLimiterNeverMoreThanN(t *testing.T) {
	rates := []Rate{
		PerSecond(5),
		PerMinute(10),
		{Limit: 7, Period: 90 * time.Second},
		PerHour(100),
		{Limit: 1, Period: 3 * time.Second},
		{Limit: 37, Period: 15 * time.Minute},
	}
	const requests = 4000
	for i, rate := range rates {
		t.Run(rate.String(), func(t *testing.T) {
			rig := newLimiterRig(t, Config{})
			only := Only(IPThrottle{Name: "x", Rate: rate})
			req := newAnonymousRequest(http.MethodGet, "acme", testRemoteAddr)
			random := rand.New(rand.NewPCG(uint64(i), 42))
			period := rate.Period.Milliseconds()
			// The mean step makes requests arrive about three times as fast
			// as the rate allows, with an occasional long pause.
			meanStep := period / (3 * rate.Limit)

			arrivals := make([]int64, 0, requests)
			var accepted []int64
			for range requests {
				step := random.Int64N(2*meanStep + 1)
				if random.IntN(50) == 0 {
					step = random.Int64N(period + 1)
				}
				rig.clock.Advance(time.Duration(step) * time.Millisecond)
				now := rig.clock.Now().UnixMilli()
				arrivals = append(arrivals, now)

				d, err := rig.lim.Check(req, only)
				require.NoError(t, err)
				if d.Allowed {
					accepted = append(accepted, now)
				}
			}

			n := int(rate.Limit)
			for j := n; j < len(accepted); j++ {
				require.GreaterOrEqual(t, accepted[j]-accepted[j-n], period,
					"requests %d to %d were allowed within one period", j-n, j)
			}

			optimum := slidingLogAllowed(arrivals, n, period)
			require.Positive(t, optimum)
			ratio := float64(len(accepted)) / float64(optimum)
			t.Logf("allowed %d of %d requests, an exact sliding log allows %d", len(accepted), requests, optimum)
			assert.GreaterOrEqual(t, ratio, 0.85, "allowed %d of the %d an exact sliding log allows", len(accepted), optimum)
			assert.LessOrEqual(t, len(accepted), optimum)
		})
	}
}

func TestLimiterConcurrentExactlyN(t *testing.T) {
	rig := newLimiterRig(t, Config{})
	only := Only(IPThrottle{Name: "x", Rate: PerMinute(50)})
	req := newAnonymousRequest(http.MethodGet, "acme", testRemoteAddr)

	var allowed, denied atomic.Int64
	start := make(chan struct{})
	var wg sync.WaitGroup
	for range 500 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := req.Clone(req.Context())
			<-start
			d, err := rig.lim.Check(r, only)
			if err != nil {
				t.Error(err)
				return
			}
			if d.Allowed {
				allowed.Add(1)
			} else {
				denied.Add(1)
			}
		}()
	}
	close(start)
	wg.Wait()

	assert.Equal(t, int64(50), allowed.Load())
	assert.Equal(t, int64(450), denied.Load())
}

func TestHandlerConcurrentExactlyN(t *testing.T) {
	// Each request of one user checks its plan, burst and daily counters and
	// the per-IP counter, which live in different shards of the store.
	policy := &Policy{
		Plans:   map[string]PlanLimits{"free": {Sustained: PerHour(1000), Burst: PerMinute(50), Daily: PerDay(1000)}},
		IPBurst: PerMinute(100),
	}
	rig := newLimiterRig(t, Config{Policy: policy})
	h := rig.lim.Handler(okHandler)

	users := []string{"alice", "bob", "carol", "dave"}
	var ok, throttled atomic.Int64
	perUser := make([]atomic.Int64, len(users))
	start := make(chan struct{})
	var wg sync.WaitGroup
	for i := range 500 {
		user := i % len(users)
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := newIdentityRequest(http.MethodGet, userIdentity("acme", "free", users[user]))
			rec := httptest.NewRecorder()
			<-start
			h.ServeHTTP(rec, r)
			switch rec.Code {
			case http.StatusOK:
				ok.Add(1)
				perUser[user].Add(1)
			case http.StatusTooManyRequests:
				throttled.Add(1)
			default:
				t.Errorf("unexpected status %d", rec.Code)
			}
		}()
	}
	close(start)
	wg.Wait()

	// Four users with room for 50 each share an address with room for 100.
	assert.Equal(t, int64(100), ok.Load())
	assert.Equal(t, int64(400), throttled.Load())
	for i := range perUser {
		assert.LessOrEqual(t, perUser[i].Load(), int64(50), users[i])
	}
	statuses := rig.usage(t, newIdentityRequest(http.MethodGet, userIdentity("acme", "free", "erin")))
	assert.Equal(t, int64(0), statuses["ip_burst"].Remaining)
}

func TestLimiterDeniedUsesNoQuota(t *testing.T) {
	ctx := context.Background()
	rig := newLimiterRig(t, Config{})
	h := rig.lim.Handler(okHandler)
	req := newIdentityRequest(http.MethodGet, userIdentity("acme", "free", "alice"))

	require.Equal(t, codes(200, 10), serveCodes(h, req, 10))
	before := remaining(rig.usage(t, req))
	assert.Equal(t, map[string]int64{"plan": 90, "burst": 0, "daily": 490, "ip_burst": 20}, before)

	require.Equal(t, codes(429, 5), serveCodes(h, req, 5))
	assert.Equal(t, before, remaining(rig.usage(t, req)))

	denials, err := rig.lim.Denials(ctx, "acme", rig.clock.Now())
	require.NoError(t, err)
	assert.Equal(t, int64(5), denials)
}

func TestLimiterDeniedByLaterThrottleUsesNoQuota(t *testing.T) {
	rig := newLimiterRig(t, Config{})
	only := Only(
		IPThrottle{Name: "first", Rate: PerMinute(10)},
		PlanThrottle{Name: "second", Rates: map[string]Rate{"free": PerMinute(2)}},
	)
	h := rig.lim.Handler(okHandler, only)
	req := newIdentityRequest(http.MethodGet, userIdentity("acme", "free", "alice"))

	require.Equal(t, concat(codes(200, 2), codes(429, 3)), serveCodes(h, req, 5))
	assert.Equal(t, int64(8), rig.usage(t, req, only)["first"].Remaining)
}

// checkDailyMidnight exhausts a daily quota of 3 a minute before midnight in
// loc and checks that it resets at midnight, once.
func checkDailyMidnight(t *testing.T, loc *time.Location, day time.Time) {
	t.Helper()
	rig := newLimiterRig(t, Config{Policy: dailyPolicy(), Location: loc})
	h := rig.lim.Handler(okHandler)
	req := newIdentityRequest(http.MethodGet, userIdentity("acme", "free", "alice"))
	midnight := time.Date(day.Year(), day.Month(), day.Day()+1, 0, 0, 0, 0, loc)

	rig.clock.Set(midnight.Add(-30 * time.Second))
	require.Equal(t, codes(200, 3), serveCodes(h, req, 3))
	denied := serve(h, req)
	require.Equal(t, http.StatusTooManyRequests, denied.Code)
	assert.Equal(t, "30", denied.Header().Get("Retry-After"))
	assert.Equal(t, strconv.FormatInt(midnight.Unix(), 10), denied.Header().Get("X-RateLimit-Reset"))

	rig.clock.Set(midnight.Add(-time.Second))
	denied = serve(h, req)
	require.Equal(t, http.StatusTooManyRequests, denied.Code)
	assert.Equal(t, "1", denied.Header().Get("Retry-After"))

	rig.clock.Set(midnight.Add(-time.Millisecond))
	assert.Equal(t, http.StatusTooManyRequests, serve(h, req).Code)

	rig.clock.Set(midnight)
	assert.Equal(t, concat(codes(200, 3), codes(429, 1)), serveCodes(h, req, 4))

	// The next reset is at the following midnight, not at midnight UTC or
	// after 24 hours of the first request.
	next := time.Date(midnight.Year(), midnight.Month(), midnight.Day()+1, 0, 0, 0, 0, loc)
	for _, at := range []time.Time{
		midnight.Add(6 * time.Hour),
		time.Date(midnight.UTC().Year(), midnight.UTC().Month(), midnight.UTC().Day()+1, 0, 0, 0, 0, time.UTC),
		next.Add(-time.Second),
	} {
		if !at.Before(next) || at.Before(midnight) {
			continue
		}
		rig.clock.Set(at)
		assert.Equal(t, http.StatusTooManyRequests, serve(h, req).Code, "at %v", at)
	}

	rig.clock.Set(next)
	assert.Equal(t, http.StatusOK, serve(h, req).Code)
}

func TestLimiterDailyQuotaMidnightUTC(t *testing.T) {
	checkDailyMidnight(t, time.UTC, time.Date(2026, time.March, 10, 0, 0, 0, 0, time.UTC))
}

func TestLimiterDailyQuotaMidnightFixedZone(t *testing.T) {
	loc := time.FixedZone("UTC+05:30", 5*3600+1800)
	checkDailyMidnight(t, loc, time.Date(2026, time.March, 10, 0, 0, 0, 0, loc))
}

func TestLimiterDailyQuotaMidnightDaylightSaving(t *testing.T) {
	loc, err := time.LoadLocation("America/New_York")
	if err != nil {
		t.Skipf("time zone database not available: %v", err)
	}
	// 8 March 2026 has 23 hours in New York: clocks move forward at 02:00.
	checkDailyMidnight(t, loc, time.Date(2026, time.March, 8, 0, 0, 0, 0, loc))
}

func TestLimiterDailyResetHeader(t *testing.T) {
	rig := newLimiterRig(t, Config{Policy: dailyPolicy()})
	req := newIdentityRequest(http.MethodGet, userIdentity("acme", "free", "alice"))

	d, err := rig.lim.Check(req)
	require.NoError(t, err)
	require.True(t, d.Allowed)
	var daily Status
	for _, s := range d.Statuses {
		if s.Scope == "daily" {
			daily = s
		}
	}
	assert.Equal(t, 24*time.Hour, daily.Period)
	assert.Equal(t, time.Date(2026, time.March, 11, 0, 0, 0, 0, time.UTC), daily.Reset.UTC())
	assert.Contains(t, daily.Key, ":2026-03-10")
}

func TestLimiterKeyIsolationSeparators(t *testing.T) {
	policy := wideIPPolicy()
	policy.Plans["free"] = PlanLimits{Sustained: PerHour(1000), Burst: PerMinute(2), Daily: PerDay(1000)}
	rig := newLimiterRig(t, Config{Policy: policy})
	h := rig.lim.Handler(okHandler)

	// If two pairs shared a counter, the later pair would be denied early.
	for _, pair := range collidingPairs {
		req := newIdentityRequest(http.MethodGet, userIdentity(pair[0], "free", pair[1]))
		assert.Equal(t, []int{200, 200, 429}, serveCodes(h, req, 3), "pair %q", abbreviate(pair))
	}
	for _, key := range memoryKeys(rig.store) {
		assert.LessOrEqual(t, len(key), maxTestKeyLen)
	}
}

func TestLimiterClockBackwards(t *testing.T) {
	rig := newLimiterRig(t, Config{})
	only := Only(IPThrottle{Name: "x", Rate: PerMinute(3)})
	h := rig.lim.Handler(okHandler, only)
	req := newAnonymousRequest(http.MethodGet, "acme", testRemoteAddr)

	require.Equal(t, codes(200, 2), serveCodes(h, req, 2))
	rig.clock.Advance(-30 * time.Minute)
	assert.Equal(t, int64(1), rig.usage(t, req, only)["x"].Remaining)
	require.Equal(t, []int{200, 429}, serveCodes(h, req, 2))

	for _, back := range []time.Duration{time.Hour, 24 * time.Hour, 400 * 24 * time.Hour} {
		rig.clock.Set(limiterEpoch.Add(-back))
		denied := serve(h, req)
		assert.Equal(t, http.StatusTooManyRequests, denied.Code, "stepped back %v", back)
		assert.Equal(t, "0", denied.Header().Get("X-RateLimit-Remaining"), "stepped back %v", back)
	}

	rig.clock.Set(limiterEpoch.Add(59 * time.Second))
	assert.Equal(t, http.StatusTooManyRequests, serve(h, req).Code)
	rig.clock.Set(limiterEpoch.Add(time.Minute))
	assert.Equal(t, concat(codes(200, 3), codes(429, 1)), serveCodes(h, req, 4))
}

func TestNewAcceptsZeroConfig(t *testing.T) {
	lim, err := New(Config{})
	require.NoError(t, err)
	assert.Equal(t, DefaultPolicy(), lim.Policy())
}

func TestNewRejectsInvalidConfig(t *testing.T) {
	withPolicy := func(change func(p *Policy)) *Policy {
		p := DefaultPolicy()
		change(&p)
		return &p
	}
	cases := []struct {
		name string
		cfg  Config
		// field is a text the error must contain, naming the field.
		field string
		// invalidRate reports whether the error must also wrap ErrInvalidRate.
		invalidRate bool
	}{
		{name: "prefix with colon", cfg: Config{Prefix: "a:b"}, field: "prefix"},
		{name: "prefix with underscore first", cfg: Config{Prefix: "_svc"}, field: "prefix"},
		{name: "prefix with glob", cfg: Config{Prefix: "svc*"}, field: "prefix"},
		{name: "duplicate scopes", cfg: Config{Throttles: []Throttle{
			IPThrottle{Name: "ip", Rate: PerMinute(1)},
			IPThrottle{Name: "ip", Rate: PerHour(10)},
		}}, field: `scope "ip" is used by two throttles`},
		{name: "nil throttle", cfg: Config{Throttles: []Throttle{nil}}, field: "nil throttle"},
		{name: "reserved scope", cfg: Config{Throttles: []Throttle{IPThrottle{Name: "denials", Rate: PerMinute(1)}}}, field: "reserved"},
		{name: "throttle with invalid rate", cfg: Config{Throttles: []Throttle{IPThrottle{Name: "ip", Rate: Rate{Limit: 1}}}}, field: `throttle "ip"`, invalidRate: true},
		{name: "plan rate", cfg: Config{Policy: withPolicy(func(p *Policy) {
			p.Plans["free"] = PlanLimits{Sustained: Rate{Period: time.Hour}}
		})}, field: "plans.free.sustained", invalidRate: true},
		{name: "daily rate not per day", cfg: Config{Policy: withPolicy(func(p *Policy) {
			p.Plans["free"] = PlanLimits{Daily: PerHour(10)}
		})}, field: "plans.free.daily", invalidRate: true},
		{name: "role rate", cfg: Config{Policy: withPolicy(func(p *Policy) {
			p.Roles["owner"] = Rate{Limit: -5, Period: time.Hour}
		})}, field: "roles.owner", invalidRate: true},
		{name: "anonymous rate", cfg: Config{Policy: withPolicy(func(p *Policy) {
			p.Anonymous = Rate{Limit: 5, Period: 1500 * time.Millisecond}
		})}, field: "anonymous", invalidRate: true},
		{name: "scope rate", cfg: Config{Policy: withPolicy(func(p *Policy) {
			p.Scopes["search"] = Rate{Limit: 5, Period: time.Millisecond}
		})}, field: "scopes.search", invalidRate: true},
		{name: "scope name", cfg: Config{Policy: withPolicy(func(p *Policy) {
			p.Scopes["bad scope"] = PerMinute(1)
		})}, field: "scopes.bad scope"},
		{name: "reserved scope name", cfg: Config{Policy: withPolicy(func(p *Policy) {
			p.Scopes["flag"] = PerMinute(1)
		})}, field: "scopes.flag"},
		{name: "near limit above one", cfg: Config{NearLimit: 1.5}, field: "near_limit"},
		{name: "near limit negative", cfg: Config{NearLimit: -0.1}, field: "near_limit"},
		{name: "near limit not a number", cfg: Config{NearLimit: math.NaN()}, field: "near_limit"},
		{name: "negative store timeout", cfg: Config{StoreTimeout: -time.Second}, field: "store_timeout"},
		{name: "negative denial retention", cfg: Config{DenialRetention: -time.Hour}, field: "denial_retention"},
		{name: "empty bypass key", cfg: Config{BypassAPIKeys: []string{"good", ""}}, field: "bypass_api_keys[1]"},
		{name: "IPv6 prefix", cfg: Config{ClientIP: ClientIPResolver{IPv6Prefix: 129}}, field: "client_ip"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			lim, err := New(tc.cfg)
			require.Error(t, err)
			assert.Nil(t, lim)
			assert.ErrorIs(t, err, ErrInvalidConfig)
			assert.Contains(t, err.Error(), tc.field)
			if tc.invalidRate {
				assert.ErrorIs(t, err, ErrInvalidRate)
			}
		})
	}
}

func TestLimiterDailyKeyNamesDate(t *testing.T) {
	clock := NewManualClock(time.Date(2026, 12, 4, 23, 30, 0, 0, time.UTC))
	berlin := time.FixedZone("UTC+1", 60*60)
	lim, err := New(Config{Clock: clock, Location: berlin})
	require.NoError(t, err)

	r := httptest.NewRequest(http.MethodGet, "/", nil)
	r = r.WithContext(WithIdentity(r.Context(), Identity{Tenant: Tenant{Slug: "acme", Plan: "free"}, UserID: "42"}))
	d, err := lim.Check(r)
	require.NoError(t, err)

	var daily Status
	for _, s := range d.Statuses {
		if s.Scope == "daily" {
			daily = s
		}
	}
	assert.Equal(t, "throttle:daily:acme:{u.42}:2026-12-05", daily.Key, "the date is the day in the limiter's time zone")
	assert.Equal(t, time.Date(2026, 12, 6, 0, 0, 0, 0, berlin).Unix(), daily.Reset.Unix())
}
