package throttle

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestFallbackDividesLimits(t *testing.T) {
	tests := []struct {
		name      string
		instances int
		limit     int64
		want      int64
	}{
		{"two instances", 2, 10, 5},
		{"rounded down", 3, 10, 3},
		{"at least one", 4, 3, 1},
		{"one instance", 1, 10, 10},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			clock := NewManualClock(testEpoch)
			f := newFallback(FallbackConfig{Instances: tt.instances}, clock)
			c := Counter{Key: "k", Limit: tt.limit, Period: time.Minute}
			allowed := int64(0)
			for range 20 {
				b := &Batch{Counters: []Counter{c}}
				f.run(b, true)
				if b.Allowed {
					allowed++
				}
				assert.Equal(t, tt.want, b.Counters[0].Limit)
			}
			assert.Equal(t, tt.want, allowed)
		})
	}
}

func TestFallbackOffByDefault(t *testing.T) {
	lim, err := New(Config{})
	require.NoError(t, err)
	assert.Nil(t, lim.fallback)
}

func TestFallbackDecision(t *testing.T) {
	lim, store, _ := newOutageLimiter(t, Config{Fallback: FallbackConfig{Instances: 2}})
	store.down.Store(true)

	var decisions []*Decision
	for range 7 {
		decisions = append(decisions, checkOnce(t, lim))
	}

	for i, d := range decisions {
		assert.True(t, d.Fallback, "request %d", i+1)
		assert.ErrorIs(t, d.Err, ErrStoreUnavailable, "request %d", i+1)
		assert.Equal(t, int64(5), d.Limit, "request %d has this instance's share", i+1)
		assert.Equal(t, i < 5, d.Allowed, "request %d", i+1)
	}
	assert.ErrorIs(t, decisions[6].Err, ErrCircuitOpen, "the fallback also decides while the circuit is open")
	assert.Positive(t, decisions[6].RetryAfter)
}

func TestFallbackHandlerResponses(t *testing.T) {
	for _, failClosed := range []bool{false, true} {
		name := "fail open"
		if failClosed {
			name = "fail closed"
		}
		t.Run(name, func(t *testing.T) {
			var storeErrors, denied atomic.Int64
			lim, store, _ := newOutageLimiter(t, Config{
				FailClosed: failClosed,
				Fallback:   FallbackConfig{Instances: 2},
				Hooks: Hooks{
					StoreError: func(e Event) {
						if errors.Is(e.Err, ErrStoreUnavailable) && e.Decision.Fallback {
							storeErrors.Add(1)
						}
					},
					Denied: func(Event) { denied.Add(1) },
				},
			})
			store.down.Store(true)
			handler := lim.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))

			var statuses []int
			var last *httptest.ResponseRecorder
			for range 6 {
				last = httptest.NewRecorder()
				handler.ServeHTTP(last, httptest.NewRequest(http.MethodGet, "/", nil))
				statuses = append(statuses, last.Code)
			}

			assert.Equal(t, []int{200, 200, 200, 200, 200, 429}, statuses)
			assert.Equal(t, "5", last.Header().Get("X-RateLimit-Limit"))
			assert.Equal(t, "0", last.Header().Get("X-RateLimit-Remaining"))
			assert.NotEmpty(t, last.Header().Get("Retry-After"))
			assert.Equal(t, int64(6), storeErrors.Load(), "StoreError fires for each fallback decision")
			assert.Equal(t, int64(1), denied.Load())
		})
	}
}

func TestFallbackUsageReportRecordsNothing(t *testing.T) {
	lim, store, _ := newOutageLimiter(t, Config{Fallback: FallbackConfig{Instances: 2}})
	store.down.Store(true)
	checkOnce(t, lim)

	h := lim.handlerConfig(nil)
	for range 3 {
		d := &Decision{}
		lim.decide(httptest.NewRequest(http.MethodGet, "/", nil), h, d, false)
		assert.True(t, d.Fallback)
		assert.Equal(t, int64(4), d.Remaining)
	}
}
