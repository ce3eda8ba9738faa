package throttle

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// usageEpoch is a whole second, so Unix-second values are exact.
var usageEpoch = time.Date(2025, 12, 4, 10, 0, 0, 0, time.UTC)

var usageMember = Identity{Tenant: Tenant{Slug: "acme", Plan: "free"}, UserID: "u1", Role: "member"}

// newUsageLimiter returns a limiter on a memory store and a manual clock.
func newUsageLimiter(t *testing.T, cfg Config) *Limiter {
	t.Helper()
	clock := NewManualClock(usageEpoch)
	cfg.Clock = clock
	if cfg.Store == nil {
		cfg.Store = NewMemoryStore(MemoryConfig{Clock: clock})
	}
	lim, err := New(cfg)
	require.NoError(t, err)
	return lim
}

// usageRequest returns a request by id from a fixed client address.
func usageRequest(method, path string, id Identity) *http.Request {
	r := httptest.NewRequest(method, path, nil)
	r.RemoteAddr = "198.51.100.9:4000"
	return r.WithContext(WithIdentity(r.Context(), id))
}

// getUsage calls the usage handler as id and decodes the report.
func getUsage(t *testing.T, h http.Handler, id Identity) usageReport {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, usageRequest(http.MethodGet, "/rate_limit", id))
	require.Equal(t, http.StatusOK, rec.Code)
	assert.Equal(t, "application/json", rec.Header().Get("Content-Type"))
	assert.Equal(t, "no-store", rec.Header().Get("Cache-Control"))
	var report usageReport
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &report))
	return report
}

func TestUsageHandlerDoesNotCount(t *testing.T) {
	lim := newUsageLimiter(t, Config{})
	api := lim.Handler(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	usage := lim.UsageHandler()

	first := httptest.NewRecorder()
	api.ServeHTTP(first, usageRequest(http.MethodGet, "/items", usageMember))
	require.Equal(t, "9", first.Header().Get(headerRemaining))

	for range 3 {
		report := getUsage(t, usage, usageMember)
		assert.Equal(t, usageResource{Limit: 10, Remaining: 9, Used: 1, Reset: report.Resources["burst"].Reset, Window: 60},
			report.Resources["burst"])
	}

	next := httptest.NewRecorder()
	api.ServeHTTP(next, usageRequest(http.MethodGet, "/items", usageMember))
	assert.Equal(t, "8", next.Header().Get(headerRemaining), "usage reports count no request")
}

func TestUsageHandlerReport(t *testing.T) {
	lim := newUsageLimiter(t, Config{})
	api := lim.Handler(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	for range 3 {
		api.ServeHTTP(httptest.NewRecorder(), usageRequest(http.MethodGet, "/items", usageMember))
	}

	report := getUsage(t, lim.UsageHandler(), usageMember)

	assert.Equal(t, BypassNone, report.Bypass)
	assert.ElementsMatch(t, []string{"plan", "burst", "daily", "role", "ip_burst"}, keysOf(report.Resources))
	burst := report.Resources["burst"]
	assert.Equal(t, int64(10), burst.Limit)
	assert.Equal(t, int64(7), burst.Remaining)
	assert.Equal(t, int64(3), burst.Used)
	assert.Equal(t, int64(60), burst.Window)
	assert.Greater(t, burst.Reset, usageEpoch.Unix())
	assert.LessOrEqual(t, burst.Reset, usageEpoch.Unix()+60)
	daily := report.Resources["daily"]
	assert.Equal(t, int64(86400), daily.Window)
	assert.Equal(t, int64(497), daily.Remaining)
}

func TestUsageHandlerJSONShape(t *testing.T) {
	lim := newUsageLimiter(t, Config{})
	rec := httptest.NewRecorder()

	lim.UsageHandler().ServeHTTP(rec, usageRequest(http.MethodGet, "/rate_limit", usageMember))

	var body struct {
		Resources map[string]map[string]any `json:"resources"`
		Bypass    *string                   `json:"bypass"`
	}
	require.NoError(t, json.Unmarshal(rec.Body.Bytes(), &body))
	assert.ElementsMatch(t, []string{"limit", "remaining", "used", "reset", "window"}, keysOf(body.Resources["burst"]))
	require.NotNil(t, body.Bypass, "bypass is always present")
	assert.Equal(t, "", *body.Bypass)
}

func TestUsageHandlerBypass(t *testing.T) {
	lim := newUsageLimiter(t, Config{})
	staff := usageMember
	staff.Staff = true
	rec := httptest.NewRecorder()

	lim.UsageHandler().ServeHTTP(rec, usageRequest(http.MethodGet, "/rate_limit", staff))

	require.Equal(t, http.StatusOK, rec.Code)
	assert.JSONEq(t, `{"resources": {}, "bypass": "staff"}`, rec.Body.String())
}

func TestUsageHandlerReportsNoHookEvent(t *testing.T) {
	var events []string
	note := func(name string) func(Event) { return func(Event) { events = append(events, name) } }
	lim := newUsageLimiter(t, Config{Hooks: Hooks{
		Allowed: note("allowed"), Denied: note("denied"), Bypassed: note("bypassed"), NearLimit: note("near_limit"),
	}})
	staff := usageMember
	staff.Staff = true

	getUsage(t, lim.UsageHandler(), usageMember)
	getUsage(t, lim.UsageHandler(), staff)

	assert.Empty(t, events)
}

func TestUsageHandlerScopes(t *testing.T) {
	policy := DefaultPolicy()
	policy.ShadowScopes = []string{"search"}
	lim := newUsageLimiter(t, Config{Policy: &policy})

	report := getUsage(t, lim.UsageHandler(Scope("search")), usageMember)

	assert.Equal(t, usageResource{Limit: 100, Remaining: 100, Reset: usageEpoch.Unix(), Window: 60, Shadow: true},
		report.Resources["search"])
}

func TestUsageHandlerUnknownScopePanics(t *testing.T) {
	lim := newUsageLimiter(t, Config{})

	assert.Panics(t, func() { lim.UsageHandler(Scope("no_such_scope")) })
}

func TestUsageHandlerMethod(t *testing.T) {
	lim := newUsageLimiter(t, Config{})
	rec := httptest.NewRecorder()

	lim.UsageHandler().ServeHTTP(rec, usageRequest(http.MethodPost, "/rate_limit", usageMember))

	assert.Equal(t, http.StatusMethodNotAllowed, rec.Code)
	assert.Equal(t, "GET, HEAD", rec.Header().Get("Allow"))
}

// usageFailingStore fails every call, as a Redis that is down does.
type usageFailingStore struct{ Store }

var errUsageStoreDown = errors.New("dial tcp 10.9.8.7:6379: connection refused")

func (usageFailingStore) Take(context.Context, *Batch) error { return errUsageStoreDown }
func (usageFailingStore) Peek(context.Context, *Batch) error { return errUsageStoreDown }

func TestUsageHandlerStoreError(t *testing.T) {
	lim := newUsageLimiter(t, Config{Store: usageFailingStore{}, CircuitBreaker: CircuitBreakerConfig{Disabled: true}})
	rec := httptest.NewRecorder()

	lim.UsageHandler().ServeHTTP(rec, usageRequest(http.MethodGet, "/rate_limit", usageMember))

	assert.Equal(t, http.StatusServiceUnavailable, rec.Code)
	assert.Equal(t, "1", rec.Header().Get(headerRetryAfter))
	assert.NotContains(t, rec.Body.String(), "10.9.8.7", "no internal error text")
}

func keysOf[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	return keys
}
