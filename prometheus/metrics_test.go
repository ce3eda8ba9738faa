package throttleprom_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/zumodra/throttle"
	throttleprom "github.com/zumodra/throttle/prometheus"
)

var start = time.Date(2025, 12, 4, 10, 0, 0, 0, time.UTC)

var freeMember = throttle.Identity{
	Tenant: throttle.Tenant{Slug: "acme", Plan: "free"},
	UserID: "u1",
	Role:   "member",
}

// newLimiter returns a limiter on a memory store with a manual clock whose
// hooks feed fresh metrics on a private registry, and the hooks' own calls.
func newLimiter(t *testing.T, cfg throttle.Config) (*throttle.Limiter, *throttleprom.Metrics, *prometheus.Registry, *hookCalls) {
	t.Helper()
	reg := prometheus.NewRegistry()
	metrics, err := throttleprom.New(reg)
	require.NoError(t, err)

	calls := &hookCalls{}
	cfg.Hooks = metrics.Hooks(calls.hooks())
	if cfg.Clock == nil {
		cfg.Clock = throttle.NewManualClock(start)
	}
	if cfg.Store == nil {
		cfg.Store = throttle.NewMemoryStore(throttle.MemoryConfig{Clock: cfg.Clock})
	}
	lim, err := throttle.New(cfg)
	require.NoError(t, err)
	return lim, metrics, reg, calls
}

// hookCalls counts the calls that reach the next hooks.
type hookCalls struct {
	allowed, denied, bypassed, nearLimit, storeError, storeCall int
}

func (c *hookCalls) hooks() throttle.Hooks {
	return throttle.Hooks{
		Allowed:    func(throttle.Event) { c.allowed++ },
		Denied:     func(throttle.Event) { c.denied++ },
		Bypassed:   func(throttle.Event) { c.bypassed++ },
		NearLimit:  func(throttle.Event) { c.nearLimit++ },
		StoreError: func(throttle.Event) { c.storeError++ },
		StoreCall:  func(time.Duration, error) { c.storeCall++ },
	}
}

// serve sends n GET requests as id through the limiter and returns the
// status of the last one.
func serve(t *testing.T, lim *throttle.Limiter, id throttle.Identity, n int) int {
	t.Helper()
	h := lim.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	status := 0
	for range n {
		req := httptest.NewRequest(http.MethodGet, "/items", nil)
		req = req.WithContext(throttle.WithIdentity(req.Context(), id))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		status = rec.Code
	}
	return status
}

func TestMetricsAllowedAndDenied(t *testing.T) {
	lim, _, reg, calls := newLimiter(t, throttle.Config{})

	// The free plan's burst rate is 10/minute: ten requests pass, the
	// eleventh is denied by the burst throttle.
	status := serve(t, lim, freeMember, 11)
	require.Equal(t, http.StatusTooManyRequests, status)

	expected := `
# HELP throttle_requests_total Requests decided by the rate limiter, by decision and scope. Denials count once per denying throttle.
# TYPE throttle_requests_total counter
throttle_requests_total{decision="allowed",scope="burst"} 10
throttle_requests_total{decision="denied",scope="burst"} 1
# HELP throttle_near_limit_total Requests that brought a throttle's use to the near-limit fraction of its limit, by scope.
# TYPE throttle_near_limit_total counter
throttle_near_limit_total{scope="burst"} 1
`
	assert.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(expected),
		"throttle_requests_total", "throttle_near_limit_total"))
	assert.Equal(t, 10, calls.allowed)
	assert.Equal(t, 1, calls.denied)
	assert.Equal(t, 1, calls.nearLimit)
}

func TestMetricsStoreDuration(t *testing.T) {
	lim, _, reg, calls := newLimiter(t, throttle.Config{})

	serve(t, lim, freeMember, 3)

	families, err := reg.Gather()
	require.NoError(t, err)
	var count uint64
	for _, f := range families {
		if f.GetName() == "throttle_store_duration_seconds" {
			count = f.GetMetric()[0].GetHistogram().GetSampleCount()
		}
	}
	assert.Equal(t, uint64(3), count)
	assert.Equal(t, 3, calls.storeCall)
}

func TestMetricsBypassed(t *testing.T) {
	lim, _, reg, calls := newLimiter(t, throttle.Config{})
	staff := freeMember
	staff.Staff = true

	serve(t, lim, staff, 2)

	expected := `
# HELP throttle_requests_total Requests decided by the rate limiter, by decision and scope. Denials count once per denying throttle.
# TYPE throttle_requests_total counter
throttle_requests_total{decision="bypassed",scope=""} 2
`
	assert.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(expected), "throttle_requests_total"))
	assert.Equal(t, 2, calls.bypassed)
}

func TestMetricsShadowLimiter(t *testing.T) {
	lim, _, reg, _ := newLimiter(t, throttle.Config{Shadow: true})

	// In shadow mode the eleventh request is served; its denial by the
	// burst throttle is counted as shadow_denied.
	status := serve(t, lim, freeMember, 11)
	assert.Equal(t, http.StatusOK, status)

	expected := `
# HELP throttle_requests_total Requests decided by the rate limiter, by decision and scope. Denials count once per denying throttle.
# TYPE throttle_requests_total counter
throttle_requests_total{decision="allowed",scope="burst"} 10
throttle_requests_total{decision="shadow_denied",scope="burst"} 1
`
	assert.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(expected), "throttle_requests_total"))
}

func TestMetricsShadowThrottle(t *testing.T) {
	policy := throttle.DefaultPolicy()
	policy.ShadowScopes = []string{"burst"}
	lim, _, reg, _ := newLimiter(t, throttle.Config{Policy: &policy})

	status := serve(t, lim, freeMember, 11)
	assert.Equal(t, http.StatusOK, status)

	// The shadow burst throttle's denial is counted, and the request is
	// counted as allowed too, because it was served. The shadow throttle
	// is still the most restrictive one, so it names the scope.
	expected := `
# HELP throttle_requests_total Requests decided by the rate limiter, by decision and scope. Denials count once per denying throttle.
# TYPE throttle_requests_total counter
throttle_requests_total{decision="allowed",scope="burst"} 11
throttle_requests_total{decision="shadow_denied",scope="burst"} 1
`
	assert.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(expected), "throttle_requests_total"))
}

// failingStore fails every call.
type failingStore struct{ throttle.Store }

var errDown = errors.New("store down")

func (failingStore) Take(context.Context, *throttle.Batch) error { return errDown }
func (failingStore) Peek(context.Context, *throttle.Batch) error { return errDown }

func TestMetricsStoreErrors(t *testing.T) {
	lim, _, reg, calls := newLimiter(t, throttle.Config{
		Store:          failingStore{},
		CircuitBreaker: throttle.CircuitBreakerConfig{Disabled: true},
	})

	status := serve(t, lim, freeMember, 2)
	assert.Equal(t, http.StatusOK, status, "fails open by default")

	expected := `
# HELP throttle_store_errors_total Rate limit decisions made without the store, because its call failed or the circuit breaker was open.
# TYPE throttle_store_errors_total counter
throttle_store_errors_total 2
`
	assert.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(expected), "throttle_store_errors_total"))
	assert.Equal(t, 2, calls.storeError)
}

func TestNewRegistersOnce(t *testing.T) {
	reg := prometheus.NewRegistry()
	_, err := throttleprom.New(reg)
	require.NoError(t, err)

	_, err = throttleprom.New(reg)

	var already prometheus.AlreadyRegisteredError
	assert.ErrorAs(t, err, &already)
}

func TestNewWithoutRegistry(t *testing.T) {
	metrics, err := throttleprom.New(nil, throttleprom.WithConstLabels(prometheus.Labels{"limiter": "api"}))
	require.NoError(t, err)

	reg := prometheus.NewRegistry()
	require.NoError(t, reg.Register(metrics))
	metrics.Hooks(throttle.Hooks{}).Bypassed(throttle.Event{})

	expected := `
# HELP throttle_requests_total Requests decided by the rate limiter, by decision and scope. Denials count once per denying throttle.
# TYPE throttle_requests_total counter
throttle_requests_total{decision="bypassed",limiter="api",scope=""} 1
`
	assert.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(expected), "throttle_requests_total"))
}

func TestMetricsCircuitOpen(t *testing.T) {
	lim, _, reg, calls := newLimiter(t, throttle.Config{
		Store:          failingStore{},
		CircuitBreaker: throttle.CircuitBreakerConfig{Failures: 3},
	})

	// Three failed calls open the circuit; the manual clock never reaches
	// the end of the cool-down, so the other four requests skip the store.
	serve(t, lim, freeMember, 7)

	expected := `
# HELP throttle_store_errors_total Rate limit decisions made without the store, because its call failed or the circuit breaker was open.
# TYPE throttle_store_errors_total counter
throttle_store_errors_total 7
`
	assert.NoError(t, testutil.GatherAndCompare(reg, strings.NewReader(expected), "throttle_store_errors_total"))
	assert.Equal(t, 3, calls.storeCall, "only calls made are timed")
}
