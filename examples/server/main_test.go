package main

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	throttleprom "github.com/zumodra/throttle/prometheus"
)

const configDir = "../../testdata/config"

// newTestServer builds the demo's handler from command-line arguments, as
// run does, with logs discarded.
func newTestServer(t *testing.T, args ...string) http.Handler {
	t.Helper()
	opts, err := parseFlags(args)
	require.NoError(t, err)
	logger := slog.New(slog.NewTextHandler(io.Discard, nil))
	registry := prometheus.NewRegistry()
	metrics, err := throttleprom.New(registry)
	require.NoError(t, err)
	lim, cleanup, err := newLimiter(opts, logger, metrics.Hooks(hooks()))
	require.NoError(t, err)
	t.Cleanup(cleanup)
	return logRequests(logger, authenticate(routes(lim, registry, logger)))
}

// get sends a GET request with an optional bearer token.
func get(h http.Handler, path, token string) *httptest.ResponseRecorder {
	req := httptest.NewRequest(http.MethodGet, path, nil)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	return rec
}

func TestFlagsOverrideConfigFile(t *testing.T) {
	file := filepath.Join(t.TempDir(), "limits.yaml")
	require.NoError(t, os.WriteFile(file, []byte(`
failure_policy: closed
store_timeout: 50ms
trusted_proxies: [10.0.0.0/8]
`), 0o600))

	opts, err := parseFlags([]string{"-config", file, "-fail", "open", "-trusted-proxies", "127.0.0.1"})
	require.NoError(t, err)
	cfg, err := limiterConfig(opts)
	require.NoError(t, err)

	assert.False(t, cfg.FailClosed, "-fail overrides failure_policy")
	assert.Equal(t, []netip.Prefix{netip.MustParsePrefix("127.0.0.1/32")}, cfg.ClientIP.TrustedProxies)
	assert.Equal(t, 50*time.Millisecond, cfg.StoreTimeout, "flags not given leave the file's values")
}

func TestFlagsDefaultsWithoutConfigFile(t *testing.T) {
	opts, err := parseFlags(nil)
	require.NoError(t, err)
	cfg, err := limiterConfig(opts)
	require.NoError(t, err)

	assert.False(t, cfg.FailClosed)
	assert.Zero(t, cfg.StoreTimeout, "the limiter's default applies")
	assert.Empty(t, cfg.ClientIP.TrustedProxies)
}

func TestInvalidConfigFileStopsStart(t *testing.T) {
	opts, err := parseFlags([]string{"-config", configDir + "/invalid/bad_rate.yaml"})
	require.NoError(t, err)

	_, _, err = newLimiter(opts, slog.New(slog.NewTextHandler(io.Discard, nil)), hooks())

	assert.ErrorContains(t, err, `policy.plans.free.burst: invalid rate "10/fortnight"`)
}

func TestShadowConfigServesAndCounts(t *testing.T) {
	h := newTestServer(t, "-config", configDir+"/shadow.yaml")

	// Anonymous callers get 5 requests a minute (anon_burst); the sixth
	// would be denied, and shadow mode serves it.
	for i := range 6 {
		rec := get(h, "/api/items", "")
		require.Equal(t, http.StatusOK, rec.Code, "request %d", i+1)
		assert.Empty(t, rec.Header().Get("X-RateLimit-Remaining"), "shadow mode writes no limit fields")
	}

	metrics := get(h, "/metrics", "").Body.String()
	assert.Contains(t, metrics, `throttle_requests_total{decision="shadow_denied",scope="anon_burst"} 1`)
}

func TestDenialCountedInMetrics(t *testing.T) {
	h := newTestServer(t, "-config", configDir+"/complete.yaml")

	for range 10 {
		require.Equal(t, http.StatusOK, get(h, "/api/items", "free-member").Code)
	}
	require.Equal(t, http.StatusTooManyRequests, get(h, "/api/items", "free-member").Code)

	metrics := get(h, "/metrics", "").Body.String()
	assert.Contains(t, metrics, `throttle_requests_total{decision="denied",scope="burst"} 1`)
	assert.Contains(t, metrics, `throttle_requests_total{decision="allowed",scope="burst"} 10`)
}

func TestRateLimitRouteDoesNotCount(t *testing.T) {
	h := newTestServer(t, "-config", configDir+"/complete.yaml")

	first := get(h, "/api/items", "free-member")
	require.Equal(t, "9", first.Header().Get("X-RateLimit-Remaining"))
	for range 3 {
		usage := get(h, "/rate_limit", "free-member")
		require.Equal(t, http.StatusOK, usage.Code)
		assert.Contains(t, usage.Body.String(), `"burst":{"limit":10,"remaining":9,"used":1,`)
	}
	next := get(h, "/api/items", "free-member")

	assert.Equal(t, "8", next.Header().Get("X-RateLimit-Remaining"))
}
