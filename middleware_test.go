package throttle

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// limitFields are the response fields that a bypassed or shadow-mode
// response must not carry.
var limitFields = []string{
	"X-RateLimit-Limit", "X-RateLimit-Remaining", "X-RateLimit-Reset", "RateLimit", "RateLimit-Policy",
}

// assertNoLimitFields checks that rec carries none of limitFields.
func assertNoLimitFields(t *testing.T, rec *httptest.ResponseRecorder) {
	t.Helper()
	for _, name := range limitFields {
		assert.Empty(t, rec.Header().Values(name), name)
	}
}

// parseRateLimitList parses a RateLimit or RateLimit-Policy value, such as
// `"burst";r=9;t=60, "daily";r=499;t=43200`, into the parameters of each
// named member.
func parseRateLimitList(t *testing.T, value string) map[string]map[string]int64 {
	t.Helper()
	members := make(map[string]map[string]int64)
	for _, member := range strings.Split(value, ",") {
		parts := strings.Split(strings.TrimSpace(member), ";")
		name, err := strconv.Unquote(parts[0])
		require.NoError(t, err, "member %q", member)
		params := make(map[string]int64)
		for _, p := range parts[1:] {
			key, text, ok := strings.Cut(p, "=")
			require.True(t, ok, "parameter %q", p)
			n, err := strconv.ParseInt(text, 10, 64)
			require.NoError(t, err, "parameter %q", p)
			params[key] = n
		}
		members[name] = params
	}
	return members
}

// headerInt returns the integer value of a response field.
func headerInt(t *testing.T, rec *httptest.ResponseRecorder, name string) int64 {
	t.Helper()
	n, err := strconv.ParseInt(rec.Header().Get(name), 10, 64)
	require.NoError(t, err, "%s: %q", name, rec.Header().Get(name))
	return n
}

// countingHandler counts the requests that reach it.
type countingHandler struct {
	mu    sync.Mutex
	calls int
}

func (h *countingHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h.mu.Lock()
	h.calls++
	h.mu.Unlock()
	w.WriteHeader(http.StatusOK)
}

func (h *countingHandler) count() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.calls
}

func TestHandlerLimitFields(t *testing.T) {
	rig := newLimiterRig(t, Config{})
	id := userIdentity("acme", "free", "alice")
	id.Role = "member"
	req := newIdentityRequest(http.MethodGet, id)

	rec := serve(rig.lim.Handler(okHandler), req)

	require.Equal(t, http.StatusOK, rec.Code)
	assert.Equal(t, "10", rec.Header().Get("X-RateLimit-Limit"))
	assert.Equal(t, "9", rec.Header().Get("X-RateLimit-Remaining"))
	assert.Equal(t, strconv.FormatInt(limiterEpoch.Add(time.Minute).Unix(), 10), rec.Header().Get("X-RateLimit-Reset"))
	assert.Equal(t,
		`"plan";q=100;w=3600, "burst";q=10;w=60, "daily";q=500;w=86400, "role";q=500;w=3600, "ip_burst";q=30;w=60`,
		rec.Header().Get("RateLimit-Policy"))
	assert.Equal(t,
		`"plan";r=99;t=3600, "burst";r=9;t=60, "daily";r=499;t=43200, "role";r=499;t=3600, "ip_burst";r=29;t=60`,
		rec.Header().Get("RateLimit"))
}

func TestHandlerLimitFieldsDecrement(t *testing.T) {
	rig := newLimiterRig(t, Config{})
	h := rig.lim.Handler(okHandler)
	req := newIdentityRequest(http.MethodGet, userIdentity("acme", "free", "alice"))

	for i := 1; i <= 12; i++ {
		rec := serve(h, req)
		now := rig.clock.Now().Unix()

		if i <= 10 {
			require.Equal(t, http.StatusOK, rec.Code, "request %d", i)
		} else {
			require.Equal(t, http.StatusTooManyRequests, rec.Code, "request %d", i)
		}
		assert.Equal(t, int64(10), headerInt(t, rec, "X-RateLimit-Limit"), "request %d", i)
		assert.Equal(t, int64(max(0, 10-i)), headerInt(t, rec, "X-RateLimit-Remaining"), "request %d", i)
		reset := headerInt(t, rec, "X-RateLimit-Reset")
		assert.Greater(t, reset, now, "request %d", i)
		assert.LessOrEqual(t, reset, now+60, "request %d", i)

		state := parseRateLimitList(t, rec.Header().Get("RateLimit"))
		assert.Equal(t, int64(max(0, 10-i)), state["burst"]["r"], "request %d", i)
		for name, params := range state {
			assert.GreaterOrEqual(t, params["r"], int64(0), "request %d, %s", i, name)
			assert.Positive(t, params["t"], "request %d, %s", i, name)
		}

		rig.clock.Advance(time.Second)
	}
}

func TestHandlerRemainingNeverNegative(t *testing.T) {
	rig := newLimiterRig(t, Config{})
	only := Only(
		IPThrottle{Name: "shadowed", Rate: PerMinute(2), Shadow: true},
		PlanThrottle{Name: "burst", Rates: map[string]Rate{"free": PerMinute(3), "starter": PerMinute(30)}},
	)
	h := rig.lim.Handler(okHandler, only)
	starter := newIdentityRequest(http.MethodGet, userIdentity("acme", "starter", "alice"))
	free := newIdentityRequest(http.MethodGet, userIdentity("acme", "free", "alice"))

	require.Equal(t, codes(200, 8), serveCodes(h, starter, 8))

	// The shadow counter has gone past its limit and the downgraded plan's
	// limit is below the use already counted.
	for _, s := range rig.usage(t, free, only) {
		assert.Equal(t, int64(0), s.Remaining, s.Scope)
	}
	rec := serve(h, free)
	require.Equal(t, http.StatusTooManyRequests, rec.Code)
	assert.Equal(t, "0", rec.Header().Get("X-RateLimit-Remaining"))
	assert.Equal(t, `"burst";r=0;t=60`, rec.Header().Get("RateLimit"))
}

func TestHandlerDenialResponse(t *testing.T) {
	rig := newLimiterRig(t, Config{})
	next := &countingHandler{}
	h := rig.lim.Handler(next)
	req := newIdentityRequest(http.MethodGet, userIdentity("acme", "free", "alice"))

	require.Equal(t, codes(200, 10), serveCodes(h, req, 10))
	rig.clock.Advance(20500 * time.Millisecond)
	rec := serve(h, req)

	assert.Equal(t, http.StatusTooManyRequests, rec.Code)
	assert.Equal(t, 10, next.count())
	assert.Equal(t, "40", rec.Header().Get("Retry-After"))
	assert.Equal(t, "no-store", rec.Header().Get("Cache-Control"))
	assert.Equal(t, "application/json", rec.Header().Get("Content-Type"))
	assert.Equal(t, `{"detail": "Request was throttled. Expected available in 40 seconds."}`, rec.Body.String())
	assert.True(t, json.Valid(rec.Body.Bytes()))
	assert.Equal(t, "10", rec.Header().Get("X-RateLimit-Limit"))
	assert.Equal(t, "0", rec.Header().Get("X-RateLimit-Remaining"))
	assert.Equal(t, strconv.FormatInt(limiterEpoch.Add(time.Minute).Unix(), 10), rec.Header().Get("X-RateLimit-Reset"))
}

func TestHandlerDenialSeconds(t *testing.T) {
	cases := []struct {
		name string
		rate Rate
		// gap is the time between the allowed and the denied request.
		gap  time.Duration
		want int
	}{
		{name: "one per second at once", rate: PerSecond(1), gap: 0, want: 1},
		{name: "one per second 300ms later", rate: PerSecond(1), gap: 300 * time.Millisecond, want: 1},
		{name: "one per second 999ms later", rate: PerSecond(1), gap: 999 * time.Millisecond, want: 1},
		{name: "one per two seconds at once", rate: Rate{Limit: 1, Period: 2 * time.Second}, gap: 0, want: 2},
		{name: "one per two seconds 1500ms later", rate: Rate{Limit: 1, Period: 2 * time.Second}, gap: 1500 * time.Millisecond, want: 1},
		{name: "one per minute at once", rate: PerMinute(1), gap: 0, want: 60},
		{name: "one per minute 59.001s later", rate: PerMinute(1), gap: 59001 * time.Millisecond, want: 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rig := newLimiterRig(t, Config{})
			h := rig.lim.Handler(okHandler, Only(IPThrottle{Name: "x", Rate: tc.rate}))
			req := newAnonymousRequest(http.MethodGet, "acme", testRemoteAddr)

			require.Equal(t, http.StatusOK, serve(h, req).Code)
			rig.clock.Advance(tc.gap)
			rec := serve(h, req)

			require.Equal(t, http.StatusTooManyRequests, rec.Code)
			assert.Equal(t, strconv.Itoa(tc.want), rec.Header().Get("Retry-After"))
			unit := "seconds"
			if tc.want == 1 {
				unit = "second"
			}
			want := `{"detail": "Request was throttled. Expected available in ` + strconv.Itoa(tc.want) + " " + unit + `."}`
			assert.Equal(t, want, rec.Body.String())
		})
	}
}

func TestHandlerRetryAfterLongestWait(t *testing.T) {
	rig := newLimiterRig(t, Config{})
	h := rig.lim.Handler(okHandler, Only(
		IPThrottle{Name: "short", Rate: PerSecond(1)},
		IPThrottle{Name: "long", Rate: PerMinute(1)},
	))
	req := newAnonymousRequest(http.MethodGet, "acme", testRemoteAddr)

	require.Equal(t, http.StatusOK, serve(h, req).Code)
	rec := serve(h, req)
	require.Equal(t, http.StatusTooManyRequests, rec.Code)
	assert.Equal(t, "60", rec.Header().Get("Retry-After"))

	rig.clock.Advance(time.Second)
	assert.Equal(t, http.StatusTooManyRequests, serve(h, req).Code)
	rig.clock.Advance(59 * time.Second)
	assert.Equal(t, http.StatusOK, serve(h, req).Code)
}

func TestHandlerAllowedAfterRetryAfter(t *testing.T) {
	cases := []struct {
		name    string
		cfg     Config
		opts    []HandlerOption
		request func() *http.Request
		start   time.Time
		spacing time.Duration
	}{
		{
			name:    "burst",
			request: func() *http.Request { return newIdentityRequest(http.MethodGet, userIdentity("acme", "free", "alice")) },
			spacing: 1700 * time.Millisecond,
		},
		{
			name:    "one per second",
			opts:    []HandlerOption{Only(IPThrottle{Name: "x", Rate: PerSecond(1)})},
			request: func() *http.Request { return newAnonymousRequest(http.MethodGet, "acme", testRemoteAddr) },
			spacing: 300 * time.Millisecond,
		},
		{
			name:    "sustained",
			opts:    []HandlerOption{Only(PlanThrottle{Name: "plan", Rates: map[string]Rate{"free": PerHour(5)}})},
			request: func() *http.Request { return newIdentityRequest(http.MethodGet, userIdentity("acme", "free", "alice")) },
			spacing: 7 * time.Minute,
		},
		{
			name:    "odd period",
			opts:    []HandlerOption{Only(IPThrottle{Name: "x", Rate: Rate{Limit: 3, Period: 7 * time.Second}})},
			request: func() *http.Request { return newAnonymousRequest(http.MethodGet, "acme", testRemoteAddr) },
			spacing: 1234 * time.Millisecond,
		},
		{
			name:    "two throttles",
			opts:    []HandlerOption{Only(IPThrottle{Name: "a", Rate: PerSecond(1)}, IPThrottle{Name: "b", Rate: PerMinute(2)})},
			request: func() *http.Request { return newAnonymousRequest(http.MethodGet, "acme", testRemoteAddr) },
			spacing: 1100 * time.Millisecond,
		},
		{
			name:    "anonymous",
			request: func() *http.Request { return newAnonymousRequest(http.MethodGet, "acme", testRemoteAddr) },
			spacing: 2 * time.Second,
		},
		{
			name:    "daily",
			cfg:     Config{Policy: dailyPolicy()},
			request: func() *http.Request { return newIdentityRequest(http.MethodGet, userIdentity("acme", "free", "alice")) },
			start:   time.Date(2026, time.March, 10, 23, 59, 30, 0, time.UTC),
			spacing: 1 * time.Second,
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rig := newLimiterRig(t, tc.cfg)
			if !tc.start.IsZero() {
				rig.clock.Set(tc.start)
			}
			h := rig.lim.Handler(okHandler, tc.opts...)
			req := tc.request()

			var denied *httptest.ResponseRecorder
			for i := 0; i < 1000; i++ {
				rec := serve(h, req)
				if rec.Code == http.StatusTooManyRequests {
					denied = rec
					break
				}
				require.Equal(t, http.StatusOK, rec.Code)
				rig.clock.Advance(tc.spacing)
			}
			require.NotNil(t, denied, "never denied")
			wait := headerInt(t, denied, "Retry-After")
			require.GreaterOrEqual(t, wait, int64(1))

			rig.clock.Advance(time.Duration(wait-1) * time.Second)
			assert.Equal(t, http.StatusTooManyRequests, serve(h, req).Code, "one second before Retry-After")
			rig.clock.Advance(time.Second)
			assert.Equal(t, http.StatusOK, serve(h, req).Code, "after Retry-After")
		})
	}
}

func TestHandlerProblemJSON(t *testing.T) {
	rig := newLimiterRig(t, Config{ProblemJSON: true})
	h := rig.lim.Handler(okHandler)
	req := newIdentityRequest(http.MethodGet, userIdentity("acme", "free", "alice"))

	require.Equal(t, codes(200, 10), serveCodes(h, req, 10))
	rec := serve(h, req)

	assert.Equal(t, http.StatusTooManyRequests, rec.Code)
	assert.Equal(t, "application/problem+json", rec.Header().Get("Content-Type"))
	assert.Equal(t, "60", rec.Header().Get("Retry-After"))
	assert.Equal(t, "no-store", rec.Header().Get("Cache-Control"))
	assert.Equal(t, "0", rec.Header().Get("X-RateLimit-Remaining"))

	var problem map[string]any
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &problem))
	assert.Equal(t, map[string]any{
		"type":     "about:blank",
		"title":    "Too Many Requests",
		"status":   float64(429),
		"detail":   "Request was throttled. Expected available in 60 seconds.",
		"instance": "/api/items",
	}, problem)
}

func TestHandlerProblemJSONOddPath(t *testing.T) {
	rig := newLimiterRig(t, Config{ProblemJSON: true})
	h := rig.lim.Handler(okHandler, Only(IPThrottle{Name: "x", Rate: PerSecond(1)}))
	req := newAnonymousRequest(http.MethodGet, "acme", testRemoteAddr)
	req.URL.Path = `/a"b\c</script>`

	require.Equal(t, http.StatusOK, serve(h, req).Code)
	rec := serve(h, req)

	var problem map[string]any
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &problem))
	assert.Equal(t, `/a"b\c</script>`, problem["instance"])
	assert.Equal(t, "Request was throttled. Expected available in 1 second.", problem["detail"])
}

func TestHandlerCustomDenyHandler(t *testing.T) {
	var got *Decision
	deny := func(w http.ResponseWriter, r *http.Request, d *Decision) {
		copied := *d
		copied.Statuses = append([]Status(nil), d.Statuses...)
		got = &copied
		w.Header().Set("Content-Type", "text/plain")
		w.WriteHeader(http.StatusTooManyRequests)
		_, _ = w.Write([]byte("slow down"))
	}
	rig := newLimiterRig(t, Config{DenyHandler: deny, ProblemJSON: true})
	h := rig.lim.Handler(okHandler)
	req := newIdentityRequest(http.MethodGet, userIdentity("acme", "free", "alice"))

	require.Equal(t, codes(200, 10), serveCodes(h, req, 10))
	require.Nil(t, got)
	rec := serve(h, req)

	assert.Equal(t, http.StatusTooManyRequests, rec.Code)
	assert.Equal(t, "slow down", rec.Body.String())
	assert.Equal(t, "text/plain", rec.Header().Get("Content-Type"))
	assert.Equal(t, "60", rec.Header().Get("Retry-After"))
	assert.Equal(t, "no-store", rec.Header().Get("Cache-Control"))
	assert.Equal(t, "0", rec.Header().Get("X-RateLimit-Remaining"))

	require.NotNil(t, got)
	assert.False(t, got.Allowed)
	assert.Equal(t, time.Minute, got.RetryAfter)
	assert.Equal(t, int64(10), got.Limit)
	assert.Equal(t, "alice", got.Identity.UserID)
}

func TestHandlerStaffBypass(t *testing.T) {
	cases := []struct {
		name      string
		staff     bool
		superuser bool
		want      Bypass
	}{
		{name: "staff", staff: true, want: BypassStaff},
		{name: "superuser", superuser: true, want: BypassSuperuser},
		{name: "staff and superuser", staff: true, superuser: true, want: BypassSuperuser},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var bypassed []Bypass
			rig := newLimiterRig(t, Config{Hooks: Hooks{Bypassed: func(e Event) {
				bypassed = append(bypassed, e.Decision.Bypass)
			}}})
			next := &countingHandler{}
			h := rig.lim.Handler(next)
			id := userIdentity("acme", "free", "root")
			id.Staff, id.Superuser = tc.staff, tc.superuser

			for i := 0; i < 50; i++ {
				rec := serve(h, newIdentityRequest(http.MethodPost, id))
				require.Equal(t, http.StatusOK, rec.Code, "request %d", i)
				assertNoLimitFields(t, rec)
			}

			assert.Equal(t, 50, next.count())
			require.Len(t, bypassed, 50)
			assert.Equal(t, tc.want, bypassed[0])
			assert.Equal(t, 0, rig.store.Len(), "a bypassed request writes no key")

			// The same user without the flag, another user on the same
			// address, and the address itself all have their full quota.
			plain := userIdentity("acme", "free", "root")
			assert.Equal(t, map[string]int64{"plan": 100, "burst": 10, "daily": 500, "ip_burst": 30, "write": 100},
				remaining(rig.usage(t, newIdentityRequest(http.MethodPost, plain))))
			assert.Equal(t, map[string]int64{"plan": 100, "burst": 10, "daily": 500, "ip_burst": 30, "write": 100},
				remaining(rig.usage(t, newIdentityRequest(http.MethodPost, userIdentity("acme", "free", "bob")))))
		})
	}
}

func TestHandlerThrottleStaff(t *testing.T) {
	rig := newLimiterRig(t, Config{ThrottleStaff: true})
	h := rig.lim.Handler(okHandler)
	for _, id := range []Identity{
		{Tenant: Tenant{Slug: "acme"}, UserID: "staff", Staff: true},
		{Tenant: Tenant{Slug: "acme"}, UserID: "root", Superuser: true},
	} {
		req := newIdentityRequest(http.MethodGet, id)
		first := serve(h, req)
		require.Equal(t, http.StatusOK, first.Code)
		assert.Equal(t, "10", first.Header().Get("X-RateLimit-Limit"))
		assert.Equal(t, concat(codes(200, 9), codes(429, 1)), serveCodes(h, req, 10))
	}
}

func TestHandlerAPIKeyBypass(t *testing.T) {
	rig := newLimiterRig(t, Config{BypassAPIKeys: []string{"trusted-key"}})
	h := rig.lim.Handler(okHandler)

	trusted := userIdentity("acme", "free", "alice")
	trusted.APIKey = "trusted-key"
	anonymousTrusted := Identity{Tenant: Tenant{Slug: "acme"}, APIKey: "trusted-key"}
	for _, id := range []Identity{trusted, anonymousTrusted} {
		for i := 0; i < 50; i++ {
			rec := serve(h, newIdentityRequest(http.MethodGet, id))
			require.Equal(t, http.StatusOK, rec.Code, "request %d", i)
			assertNoLimitFields(t, rec)
		}
	}
	assert.Equal(t, 0, rig.store.Len())

	other := userIdentity("acme", "free", "bob")
	other.APIKey = "other-key"
	assert.Equal(t, concat(codes(200, 10), codes(429, 1)), serveCodes(h, newIdentityRequest(http.MethodGet, other), 11))
}

func TestHandlerAPIKeyRates(t *testing.T) {
	rig := newLimiterRig(t, Config{})
	h := rig.lim.Handler(okHandler, Only(APIKeyThrottle{
		Name:    "api_key",
		Rates:   map[string]Rate{"partner-key": PerMinute(3)},
		Default: PerMinute(1),
	}))
	withKey := func(user, key string) *http.Request {
		id := userIdentity("acme", "free", user)
		id.APIKey = key
		return newIdentityRequest(http.MethodGet, id)
	}

	assert.Equal(t, concat(codes(200, 3), codes(429, 1)), serveCodes(h, withKey("alice", "partner-key"), 4))
	assert.Equal(t, concat(codes(200, 1), codes(429, 1)), serveCodes(h, withKey("bob", "other-key"), 2))
	assert.Equal(t, codes(200, 5), serveCodes(h, withKey("carol", ""), 5))
	for _, key := range memoryKeys(rig.store) {
		assert.NotContains(t, key, "partner-key")
		assert.NotContains(t, key, "other-key")
	}
}

func TestHandlerClientClaimsGrantNothing(t *testing.T) {
	cases := []struct {
		name   string
		change func(r *http.Request)
	}{
		{name: "staff header", change: func(r *http.Request) { r.Header.Set("X-Staff", "true") }},
		{name: "superuser header", change: func(r *http.Request) { r.Header.Set("X-Superuser", "1") }},
		{name: "role header", change: func(r *http.Request) { r.Header.Set("X-Role", "owner") }},
		{name: "plan header", change: func(r *http.Request) { r.Header.Set("X-Plan", "enterprise") }},
		{name: "staff cookie", change: func(r *http.Request) { r.AddCookie(&http.Cookie{Name: "is_staff", Value: "true"}) }},
		{name: "query parameters", change: func(r *http.Request) { r.URL.RawQuery = "staff=true&is_superuser=1&bypass=1" }},
		{name: "API key header", change: func(r *http.Request) { r.Header.Set("X-API-Key", "trusted-key") }},
		{name: "bearer token", change: func(r *http.Request) { r.Header.Set("Authorization", "Bearer trusted-key") }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rig := newLimiterRig(t, Config{BypassAPIKeys: []string{"trusted-key"}})
			h := rig.lim.Handler(okHandler)

			user := newIdentityRequest(http.MethodGet, userIdentity("acme", "free", "alice"))
			tc.change(user)
			assert.Equal(t, concat(codes(200, 10), codes(429, 1)), serveCodes(h, user, 11))

			anonymous := newAnonymousRequest(http.MethodGet, "acme", "198.51.100.4:5000")
			tc.change(anonymous)
			assert.Equal(t, concat(codes(200, 5), codes(429, 1)), serveCodes(h, anonymous, 6))
		})
	}
}

func TestHandlerShadowMode(t *testing.T) {
	var denied []Event
	rig := newLimiterRig(t, Config{Shadow: true, Hooks: Hooks{Denied: func(e Event) {
		copied := *e.Decision
		e.Decision = &copied
		denied = append(denied, e)
	}}})
	next := &countingHandler{}
	h := rig.lim.Handler(next)
	req := newIdentityRequest(http.MethodGet, userIdentity("acme", "free", "alice"))

	for i := 0; i < 15; i++ {
		rec := serve(h, req)
		require.Equal(t, http.StatusOK, rec.Code, "request %d", i)
		assertNoLimitFields(t, rec)
		assert.Empty(t, rec.Header().Get("Retry-After"))
	}

	assert.Equal(t, 15, next.count())
	require.Len(t, denied, 5)
	for _, e := range denied {
		assert.True(t, e.Decision.ShadowDenied)
		assert.True(t, e.Decision.Allowed)
		assert.Equal(t, "burst", e.Status.Scope)
		assert.Equal(t, int64(10), e.Status.Limit)
		assert.Equal(t, int64(0), e.Status.Remaining)
		assert.False(t, e.Status.Allowed)
	}
}

func TestHandlerShadowThrottle(t *testing.T) {
	var denied []Event
	rig := newLimiterRig(t, Config{Hooks: Hooks{Denied: func(e Event) {
		copied := *e.Decision
		e.Decision = &copied
		denied = append(denied, e)
	}}})
	only := Only(
		IPThrottle{Name: "trial", Rate: PerMinute(2), Shadow: true},
		IPThrottle{Name: "enforced", Rate: PerMinute(10)},
	)
	h := rig.lim.Handler(okHandler, only)
	req := newAnonymousRequest(http.MethodGet, "acme", testRemoteAddr)

	var last *httptest.ResponseRecorder
	for i := 0; i < 5; i++ {
		last = serve(h, req)
		require.Equal(t, http.StatusOK, last.Code, "request %d", i)
	}

	assert.Equal(t, "10", last.Header().Get("X-RateLimit-Limit"))
	assert.Equal(t, "5", last.Header().Get("X-RateLimit-Remaining"))
	assert.Equal(t, `"enforced";q=10;w=60`, last.Header().Get("RateLimit-Policy"))
	assert.Equal(t, `"enforced";r=5;t=60`, last.Header().Get("RateLimit"))

	require.Len(t, denied, 3)
	for _, e := range denied {
		assert.Equal(t, "trial", e.Status.Scope)
		assert.True(t, e.Status.Shadow)
		assert.True(t, e.Decision.Allowed)
		assert.False(t, e.Decision.ShadowDenied)
	}
	assert.Equal(t, int64(5), rig.usage(t, req, only)["enforced"].Remaining)
}

func TestHandlerShadowPlanThrottle(t *testing.T) {
	rig := newLimiterRig(t, Config{})
	h := rig.lim.Handler(okHandler, Only(PlanThrottle{Name: "burst", Rates: map[string]Rate{"free": PerMinute(2)}, Shadow: true}))
	req := newIdentityRequest(http.MethodGet, userIdentity("acme", "free", "alice"))

	for i := 0; i < 5; i++ {
		rec := serve(h, req)
		require.Equal(t, http.StatusOK, rec.Code, "request %d", i)
		assertNoLimitFields(t, rec)
	}
}

// hookRecorder keeps copies of the events of every hook.
type hookRecorder struct {
	allowed, denied, bypassed, nearLimit []Event
}

// hooks returns Hooks that record into hr. The decision is copied, because
// a hook must not keep it.
func (hr *hookRecorder) hooks() Hooks {
	keep := func(list *[]Event) func(Event) {
		return func(e Event) {
			copied := *e.Decision
			copied.Statuses = append([]Status(nil), e.Decision.Statuses...)
			e.Decision = &copied
			*list = append(*list, e)
		}
	}
	return Hooks{
		Allowed:   keep(&hr.allowed),
		Denied:    keep(&hr.denied),
		Bypassed:  keep(&hr.bypassed),
		NearLimit: keep(&hr.nearLimit),
	}
}

func TestHooksAllowed(t *testing.T) {
	var hr hookRecorder
	rig := newLimiterRig(t, Config{Hooks: hr.hooks()})
	h := rig.lim.Handler(okHandler)

	require.Equal(t, http.StatusOK, serve(h, newIdentityRequest(http.MethodGet, userIdentity("acme", "free", "alice"))).Code)

	require.Len(t, hr.allowed, 1)
	e := hr.allowed[0]
	assert.Equal(t, "burst", e.Status.Scope)
	assert.Equal(t, "acme", e.Status.Tenant)
	assert.Equal(t, int64(10), e.Status.Limit)
	assert.Equal(t, int64(9), e.Status.Remaining)
	assert.Equal(t, "alice", e.Decision.Identity.UserID)
	assert.Equal(t, "/api/items", e.Request.URL.Path)
	assert.Empty(t, hr.denied)
	assert.Empty(t, hr.bypassed)
	assert.Empty(t, hr.nearLimit)
}

func TestHooksDenied(t *testing.T) {
	var hr hookRecorder
	rig := newLimiterRig(t, Config{Hooks: hr.hooks()})
	h := rig.lim.Handler(okHandler)
	req := newIdentityRequest(http.MethodGet, userIdentity("acme", "free", "alice"))

	require.Equal(t, codes(200, 10), serveCodes(h, req, 10))
	require.Empty(t, hr.denied)
	require.Equal(t, http.StatusTooManyRequests, serve(h, req).Code)

	assert.Len(t, hr.allowed, 10)
	require.Len(t, hr.denied, 1)
	e := hr.denied[0]
	assert.Equal(t, "burst", e.Status.Scope)
	assert.Equal(t, int64(10), e.Status.Limit)
	assert.Equal(t, int64(0), e.Status.Remaining)
	assert.Equal(t, time.Minute, e.Status.RetryAfter)
	assert.False(t, e.Status.Allowed)
	assert.False(t, e.Decision.Allowed)
	assert.False(t, e.Decision.ShadowDenied)
}

func TestHooksBypassed(t *testing.T) {
	var hr hookRecorder
	rig := newLimiterRig(t, Config{Hooks: hr.hooks()})
	h := rig.lim.Handler(okHandler)
	id := userIdentity("acme", "free", "root")
	id.Staff = true

	require.Equal(t, http.StatusOK, serve(h, newIdentityRequest(http.MethodGet, id)).Code)

	require.Len(t, hr.bypassed, 1)
	assert.Equal(t, BypassStaff, hr.bypassed[0].Decision.Bypass)
	assert.Equal(t, Status{}, hr.bypassed[0].Status)
	assert.Empty(t, hr.allowed)
	assert.Empty(t, hr.denied)
}

func TestHooksNearLimit(t *testing.T) {
	cases := []struct {
		name     string
		fraction float64
		// at is the request, counted from 1, on which the hook fires.
		at int
	}{
		{name: "default 80 percent", at: 8},
		{name: "half", fraction: 0.5, at: 5},
		{name: "whole limit", fraction: 1, at: 10},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var hr hookRecorder
			rig := newLimiterRig(t, Config{Hooks: hr.hooks(), NearLimit: tc.fraction})
			h := rig.lim.Handler(okHandler)
			req := newIdentityRequest(http.MethodGet, userIdentity("acme", "free", "alice"))

			for i := 1; i <= 10; i++ {
				require.Equal(t, http.StatusOK, serve(h, req).Code)
				if i < tc.at {
					require.Empty(t, hr.nearLimit, "request %d", i)
				}
			}
			require.Equal(t, codes(429, 3), serveCodes(h, req, 3))

			require.Len(t, hr.nearLimit, 1)
			e := hr.nearLimit[0]
			assert.Equal(t, "burst", e.Status.Scope)
			assert.Equal(t, int64(10), e.Status.Limit)
			assert.Equal(t, int64(10-tc.at), e.Status.Remaining)
		})
	}
}

// TestHooksNearLimitNotOnDenied checks that a denied request, which counts
// nothing, does not fire the near-limit hook again for a throttle that an
// earlier request brought to the threshold.
func TestHooksNearLimitNotOnDenied(t *testing.T) {
	var hr hookRecorder
	rig := newLimiterRig(t, Config{Hooks: hr.hooks()})
	h := rig.lim.Handler(okHandler, Only(
		PlanThrottle{Name: "burst", Rates: map[string]Rate{"free": PerMinute(2)}},
		IPThrottle{Name: "ip_burst", Rate: PerMinute(5)},
	))
	alice := newIdentityRequest(http.MethodGet, userIdentity("acme", "free", "alice"))
	bob := newIdentityRequest(http.MethodGet, userIdentity("acme", "free", "bob"))

	require.Equal(t, codes(200, 2), serveCodes(h, alice, 2))
	require.Equal(t, codes(200, 2), serveCodes(h, bob, 2))
	require.Equal(t, codes(429, 3), serveCodes(h, alice, 3))

	var ipEvents int
	for _, e := range hr.nearLimit {
		if e.Status.Scope == "ip_burst" {
			ipEvents++
		}
	}
	assert.Equal(t, 1, ipEvents, "the fourth request brought the address to 4 of 5; the denied ones counted nothing")
}

// TestHooksAllowedInShadowMode checks that the Allowed hook reports the most
// restrictive throttle in shadow mode too, where operators rely on hooks to
// see what the limits would do.
func TestHooksAllowedInShadowMode(t *testing.T) {
	var hr hookRecorder
	rig := newLimiterRig(t, Config{Shadow: true, Hooks: hr.hooks()})
	h := rig.lim.Handler(okHandler)

	require.Equal(t, http.StatusOK, serve(h, newIdentityRequest(http.MethodGet, userIdentity("acme", "free", "alice"))).Code)

	require.Len(t, hr.allowed, 1)
	e := hr.allowed[0]
	assert.Equal(t, "burst", e.Status.Scope)
	assert.Equal(t, int64(10), e.Status.Limit)
	assert.Equal(t, int64(9), e.Status.Remaining)
}

func TestMiddlewareWrapsHandler(t *testing.T) {
	rig := newLimiterRig(t, Config{})
	h := rig.lim.Middleware(Scope("password"))(okHandler)
	req := newIdentityRequest(http.MethodPost, userIdentity("acme", "free", "alice"))

	first := serve(h, req)
	require.Equal(t, http.StatusOK, first.Code)
	assert.Contains(t, parseRateLimitList(t, first.Header().Get("RateLimit-Policy")), "password")
	assert.Equal(t, concat(codes(200, 2), codes(429, 1)), serveCodes(h, req, 3))
}
