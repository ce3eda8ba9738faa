package throttle

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// outageStore is a memory store whose Take and Peek fail while down is set,
// and that counts those calls.
type outageStore struct {
	*MemoryStore
	down  atomic.Bool
	calls atomic.Int64
}

// errTestOutage is the error of an outageStore that is down.
var errTestOutage = fmt.Errorf("%w: test outage", ErrStoreUnavailable)

func newOutageStore(clock Clock) *outageStore {
	return &outageStore{MemoryStore: NewMemoryStore(MemoryConfig{Clock: clock})}
}

func (s *outageStore) Take(ctx context.Context, b *Batch) error {
	s.calls.Add(1)
	if s.down.Load() {
		return errTestOutage
	}
	return s.MemoryStore.Take(ctx, b)
}

func (s *outageStore) Peek(ctx context.Context, b *Batch) error {
	s.calls.Add(1)
	if s.down.Load() {
		return errTestOutage
	}
	return s.MemoryStore.Peek(ctx, b)
}

// newOutageLimiter returns a limiter with one per-IP throttle of 10/minute
// on an outageStore, with the breaker opening after 3 failures for 10
// seconds, both on a manual clock.
func newOutageLimiter(t *testing.T, cfg Config) (*Limiter, *outageStore, *ManualClock) {
	t.Helper()
	clock := NewManualClock(testEpoch)
	store := newOutageStore(clock)
	cfg.Store = store
	cfg.Clock = clock
	cfg.Throttles = []Throttle{IPThrottle{Name: "ip", Rate: PerMinute(10)}}
	if cfg.CircuitBreaker == (CircuitBreakerConfig{}) {
		cfg.CircuitBreaker = CircuitBreakerConfig{Failures: 3, CoolDown: 10 * time.Second}
	}
	lim, err := New(cfg)
	require.NoError(t, err)
	return lim, store, clock
}

// checkOnce decides one request from a fixed client address.
func checkOnce(t *testing.T, lim *Limiter) *Decision {
	t.Helper()
	r := httptest.NewRequest(http.MethodGet, "/", nil)
	d, _ := lim.Check(r)
	return d
}

func TestBreakerOpensAfterFailures(t *testing.T) {
	lim, store, _ := newOutageLimiter(t, Config{})
	store.down.Store(true)

	for i := range 3 {
		d := checkOnce(t, lim)
		assert.ErrorIs(t, d.Err, errTestOutage, "failure %d reaches the store", i+1)
	}
	require.Equal(t, int64(3), store.calls.Load())

	for range 20 {
		d := checkOnce(t, lim)
		assert.ErrorIs(t, d.Err, ErrCircuitOpen)
		assert.ErrorIs(t, d.Err, ErrStoreUnavailable)
		assert.True(t, d.Allowed, "fail open")
	}
	assert.Equal(t, int64(3), store.calls.Load(), "no store call while the circuit is open")
}

func TestBreakerProbeClosesCircuit(t *testing.T) {
	lim, store, clock := newOutageLimiter(t, Config{})
	store.down.Store(true)
	for range 3 {
		checkOnce(t, lim)
	}
	store.down.Store(false)

	clock.Advance(10*time.Second - time.Millisecond)
	assert.ErrorIs(t, checkOnce(t, lim).Err, ErrCircuitOpen, "still cooling down")
	assert.Equal(t, int64(3), store.calls.Load())

	clock.Advance(time.Millisecond)
	d := checkOnce(t, lim)
	require.NoError(t, d.Err, "the probe reached the store")
	assert.Equal(t, int64(4), store.calls.Load())

	for range 5 {
		require.NoError(t, checkOnce(t, lim).Err)
	}
	assert.Equal(t, int64(9), store.calls.Load(), "every request calls the store again")
}

func TestBreakerProbeFailureReopens(t *testing.T) {
	lim, store, clock := newOutageLimiter(t, Config{})
	store.down.Store(true)
	for range 3 {
		checkOnce(t, lim)
	}

	clock.Advance(10 * time.Second)
	assert.ErrorIs(t, checkOnce(t, lim).Err, errTestOutage, "the probe reached the store")
	assert.Equal(t, int64(4), store.calls.Load())

	clock.Advance(10*time.Second - time.Millisecond)
	assert.ErrorIs(t, checkOnce(t, lim).Err, ErrCircuitOpen, "open again for a whole cool-down")
	assert.Equal(t, int64(4), store.calls.Load())

	clock.Advance(time.Millisecond)
	checkOnce(t, lim)
	assert.Equal(t, int64(5), store.calls.Load(), "the next probe")
}

func TestBreakerSuccessResetsCount(t *testing.T) {
	lim, store, _ := newOutageLimiter(t, Config{})
	for range 5 {
		store.down.Store(true)
		checkOnce(t, lim)
		checkOnce(t, lim)
		store.down.Store(false)
		require.NoError(t, checkOnce(t, lim).Err)
	}
	assert.Equal(t, int64(15), store.calls.Load(), "two failures in a row never open the circuit")
}

func TestBreakerDisabled(t *testing.T) {
	lim, store, _ := newOutageLimiter(t, Config{CircuitBreaker: CircuitBreakerConfig{Disabled: true}})
	store.down.Store(true)
	for range 20 {
		assert.ErrorIs(t, checkOnce(t, lim).Err, errTestOutage)
	}
	assert.Equal(t, int64(20), store.calls.Load())
}

func TestBreakerDefaults(t *testing.T) {
	lim, err := New(Config{})
	require.NoError(t, err)
	require.NotNil(t, lim.breaker)
	assert.Equal(t, int64(DefaultBreakerFailures), lim.breaker.threshold)
	assert.Equal(t, DefaultBreakerCoolDown, lim.breaker.coolDown)
}

func TestBreakerOneProbeAtATime(t *testing.T) {
	clock := NewManualClock(testEpoch)
	b := newBreaker(CircuitBreakerConfig{Failures: 1, CoolDown: time.Second}, clock)
	ok, probe := b.allow()
	require.True(t, ok)
	require.False(t, probe)
	require.Equal(t, breakerOpened, b.done(true, probe))

	clock.Advance(time.Second)
	ok, probe = b.allow()
	require.True(t, ok)
	require.True(t, probe)
	ok, _ = b.allow()
	assert.False(t, ok, "a second caller waits for the probe in flight")

	clock.Advance(time.Second)
	ok, probe = b.allow()
	assert.True(t, ok, "a probe that never reported back is replaced after a cool-down")
	assert.True(t, probe)
	assert.Equal(t, breakerClosed, b.done(false, probe))
	ok, probe = b.allow()
	assert.True(t, ok)
	assert.False(t, probe)
}

func TestBreakerCanceledRequestNotCounted(t *testing.T) {
	clock := NewManualClock(testEpoch)
	store := newOutageStore(clock)
	canceling := &cancelingStore{Store: store}
	lim, err := New(Config{
		Store:          canceling,
		Clock:          clock,
		Throttles:      []Throttle{IPThrottle{Name: "ip", Rate: PerMinute(10)}},
		CircuitBreaker: CircuitBreakerConfig{Failures: 2},
	})
	require.NoError(t, err)

	for range 5 {
		ctx, cancel := context.WithCancel(context.Background())
		canceling.cancel = cancel
		r := httptest.NewRequest(http.MethodGet, "/", nil).WithContext(ctx)
		d, _ := lim.Check(r)
		assert.ErrorIs(t, d.Err, context.Canceled)
	}
	canceling.cancel = nil
	require.NoError(t, checkOnce(t, lim).Err, "requests that went away did not open the circuit")
}

// cancelingStore cancels the request's context during the call and fails
// with the context's error, as a client that went away makes a store do.
type cancelingStore struct {
	Store
	cancel context.CancelFunc
}

func (s *cancelingStore) Take(ctx context.Context, b *Batch) error {
	if s.cancel == nil {
		return s.Store.Take(ctx, b)
	}
	s.cancel()
	return fmt.Errorf("%w: %w", ErrStoreUnavailable, ctx.Err())
}

func TestBreakerHooksWhileOpen(t *testing.T) {
	var storeCalls, storeErrors, openErrors atomic.Int64
	lim, store, _ := newOutageLimiter(t, Config{Hooks: Hooks{
		StoreCall: func(time.Duration, error) { storeCalls.Add(1) },
		StoreError: func(e Event) {
			storeErrors.Add(1)
			if errors.Is(e.Err, ErrCircuitOpen) {
				openErrors.Add(1)
			}
		},
	}})
	store.down.Store(true)
	for range 10 {
		checkOnce(t, lim)
	}
	assert.Equal(t, int64(3), storeCalls.Load(), "StoreCall reports only calls made")
	assert.Equal(t, int64(10), storeErrors.Load(), "StoreError fires for every request")
	assert.Equal(t, int64(7), openErrors.Load())
}

func TestBreakerLogsTransitions(t *testing.T) {
	var buf bytes.Buffer
	logger := slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug}))
	lim, store, clock := newOutageLimiter(t, Config{Logger: logger})
	store.down.Store(true)
	for range 3 {
		checkOnce(t, lim)
	}
	assert.Contains(t, buf.String(), "circuit opened")

	clock.Advance(10 * time.Second)
	checkOnce(t, lim)
	assert.Contains(t, buf.String(), "probe failed")

	store.down.Store(false)
	clock.Advance(10 * time.Second)
	checkOnce(t, lim)
	assert.Contains(t, buf.String(), "circuit closed")
}

func TestBreakerConcurrentUse(t *testing.T) {
	// Run with -race: many callers fail and succeed at once while the
	// clock moves, and the breaker ends closed once the store is back.
	lim, store, clock := newOutageLimiter(t, Config{})
	var wg sync.WaitGroup
	for worker := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				if worker == 0 && i%20 == 0 {
					store.down.Store(i%40 == 0)
					clock.Advance(5 * time.Second)
				}
				checkOnce(t, lim)
			}
		}()
	}
	wg.Wait()

	store.down.Store(false)
	clock.Advance(10 * time.Second)
	checkOnce(t, lim)
	assert.NoError(t, checkOnce(t, lim).Err)
}

func TestNewRejectsInvalidResilienceConfig(t *testing.T) {
	tests := []struct {
		name  string
		cfg   Config
		field string
	}{
		{"negative failures", Config{CircuitBreaker: CircuitBreakerConfig{Failures: -1}}, "circuit_breaker.failures"},
		{"negative cool-down", Config{CircuitBreaker: CircuitBreakerConfig{CoolDown: -time.Second}}, "circuit_breaker.cool_down"},
		{"negative instances", Config{Fallback: FallbackConfig{Instances: -2}}, "fallback.instances"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.cfg)
			require.Error(t, err)
			assert.ErrorIs(t, err, ErrInvalidConfig)
			assert.Contains(t, err.Error(), tt.field)
		})
	}
}
