package throttle

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"
)

// ErrCircuitOpen is returned, wrapped together with ErrStoreUnavailable,
// while the circuit breaker is open. The store has failed too often in a
// row, so the limiter applies its failure policy without calling it.
var ErrCircuitOpen = errors.New("throttle: circuit breaker open")

// errCircuitOpen is the error of every call refused by an open circuit. It
// is built once, so that a flood of requests during an outage allocates no
// error values.
var errCircuitOpen = fmt.Errorf("%w: %w", ErrStoreUnavailable, ErrCircuitOpen)

// Defaults of CircuitBreakerConfig fields left zero.
const (
	// DefaultBreakerFailures is the number of consecutive store failures
	// that open the circuit. A single slow call or a failover that drops
	// one connection does not open it, while an outage opens it after at
	// most five timed-out calls, half a second of waiting at the default
	// store timeout.
	DefaultBreakerFailures = 5
	// DefaultBreakerCoolDown is how long an open circuit refuses store
	// calls before it lets one probe through. Five seconds means a dead
	// Redis costs one timed-out call per five seconds per instance instead
	// of one per request, and a Redis that is back is used again within
	// five seconds. That is short against the minute and hour windows of
	// the usual rates, so little traffic goes uncounted after a recovery.
	DefaultBreakerCoolDown = 5 * time.Second
)

// CircuitBreakerConfig configures the circuit breaker in front of the store.
// The zero value turns it on with the defaults.
//
// After Failures consecutive store failures the circuit opens. For CoolDown
// the limiter then calls no store and decides every request at once by its
// failure policy (or its local fallback). Then one request is let through
// as a probe (half-open). A probe that succeeds closes the circuit and one
// that fails opens it for another CoolDown.
type CircuitBreakerConfig struct {
	// Failures is the number of consecutive failures that open the circuit.
	// Zero means DefaultBreakerFailures.
	Failures int
	// CoolDown is how long the circuit stays open before a probe. Zero
	// means DefaultBreakerCoolDown.
	CoolDown time.Duration
	// Disabled turns the breaker off: every request calls the store and
	// waits up to the store timeout, however long the outage.
	Disabled bool
}

// normalize fills the defaults of c and checks it. Errors name the field
// under the circuit_breaker prefix.
func (c *CircuitBreakerConfig) normalize() error {
	switch {
	case c.Failures == 0:
		c.Failures = DefaultBreakerFailures
	case c.Failures < 0:
		return fmt.Errorf("circuit_breaker.failures: invalid value %d: must be positive", c.Failures)
	}
	switch {
	case c.CoolDown == 0:
		c.CoolDown = DefaultBreakerCoolDown
	case c.CoolDown < 0:
		return fmt.Errorf("circuit_breaker.cool_down: invalid value %v: must be positive", c.CoolDown)
	}
	return nil
}

// The states of a circuit breaker.
const (
	circuitClosed int32 = iota
	circuitOpen
	circuitHalfOpen
)

// breaker is a circuit breaker that counts consecutive store failures. It
// is safe for concurrent use, starts no goroutine, and never holds its lock
// across a store call: callers ask allow before the call and report the
// outcome with done after it.
//
// The closed state, which is the normal one, costs two atomic loads per
// call and no lock. The lock is taken only on a failure or while the
// circuit is not closed.
type breaker struct {
	clock     Clock
	threshold int64
	coolDown  time.Duration

	// state is one of the circuit constants. It is written only under mu
	// and read without it on the fast path.
	state atomic.Int32
	// failures counts consecutive failures in the closed state.
	failures atomic.Int64

	// mu guards the fields below and every change of state.
	mu sync.Mutex
	// reopenAt is when an open circuit lets a probe through.
	reopenAt time.Time
	// probeStarted is when the probe in flight was let through. A probe
	// that never reports back, because the store panicked, is replaced by
	// a new one after a cool-down, so the circuit cannot stay half-open.
	probeStarted time.Time
}

// newBreaker returns a closed breaker for the normalized cfg.
func newBreaker(cfg CircuitBreakerConfig, clock Clock) *breaker {
	return &breaker{clock: clock, threshold: int64(cfg.Failures), coolDown: cfg.CoolDown}
}

// breakerTransition names a change of state that done or allow made, for
// logging.
type breakerTransition int

const (
	breakerUnchanged breakerTransition = iota
	breakerOpened
	breakerReopened
	breakerClosed
)

// allow reports whether a store call may go ahead, and whether that call is
// the probe of a half-open circuit. The caller must report the outcome of
// an allowed call with done.
func (b *breaker) allow() (ok, probe bool) {
	if b.state.Load() == circuitClosed {
		return true, false
	}

	b.mu.Lock()
	defer b.mu.Unlock()
	now := b.clock.Now()
	switch b.state.Load() {
	case circuitOpen:
		if now.Before(b.reopenAt) {
			return false, false
		}
	case circuitHalfOpen:
		if now.Sub(b.probeStarted) < b.coolDown {
			return false, false
		}
	default:
		return true, false
	}
	b.state.Store(circuitHalfOpen)
	b.probeStarted = now
	return true, true
}

// done records the outcome of a call that allow let through.
func (b *breaker) done(failed, probe bool) breakerTransition {
	if !failed {
		if !probe {
			// A success that started before the circuit opened is weak
			// evidence that the store works now, so it only clears the
			// count. Only a probe closes an open circuit.
			if b.failures.Load() != 0 {
				b.failures.Store(0)
			}
			return breakerUnchanged
		}
		b.mu.Lock()
		defer b.mu.Unlock()
		b.failures.Store(0)
		b.state.Store(circuitClosed)
		return breakerClosed
	}

	if probe {
		b.mu.Lock()
		defer b.mu.Unlock()
		b.open()
		return breakerReopened
	}
	if b.failures.Add(1) < b.threshold {
		return breakerUnchanged
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.state.Load() != circuitClosed {
		// Another failing call opened the circuit already.
		return breakerUnchanged
	}
	b.open()
	return breakerOpened
}

// abandon records a call that ended because the request's own context
// ended, which is no evidence about the store. An abandoned probe leaves
// the circuit open but lets the next request probe at once.
func (b *breaker) abandon(probe bool) {
	if !probe {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	b.reopenAt = b.clock.Now()
	b.state.Store(circuitOpen)
}

// open moves the breaker to the open state. The caller holds mu.
func (b *breaker) open() {
	b.reopenAt = b.clock.Now().Add(b.coolDown)
	b.failures.Store(0)
	b.state.Store(circuitOpen)
}

// reportToBreaker records the outcome of a store call in the limiter's
// breaker, whose ctx is the request's context, and logs a change of the
// circuit's state.
func (l *Limiter) reportToBreaker(ctx context.Context, err error, probe bool) {
	if err != nil && ctx.Err() != nil {
		l.breaker.abandon(probe)
		return
	}
	transition := l.breaker.done(err != nil, probe)
	if transition == breakerUnchanged || l.cfg.Logger == nil {
		return
	}

	ctx = context.WithoutCancel(ctx)
	coolDown := slog.Duration("cool_down", l.breaker.coolDown)
	switch transition {
	case breakerOpened:
		l.cfg.Logger.LogAttrs(ctx, slog.LevelWarn, "rate limit store circuit opened: skipping the store",
			slog.String("error", err.Error()),
			slog.Int64("consecutive_failures", l.breaker.threshold),
			coolDown)
	case breakerReopened:
		l.cfg.Logger.LogAttrs(ctx, slog.LevelInfo, "rate limit store probe failed: circuit open again",
			slog.String("error", err.Error()),
			coolDown)
	case breakerClosed:
		l.cfg.Logger.LogAttrs(ctx, slog.LevelInfo, "rate limit store probe succeeded: circuit closed")
	}
}
