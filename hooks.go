package throttle

import (
	"context"
	"log/slog"
	"net/http"
	"sync"
	"time"
)

// Hooks are functions the limiter calls as it decides. Each may be nil. They
// run on the request's goroutine, before the response is written, so they
// must be quick; they must not keep the Decision after they return.
type Hooks struct {
	// Allowed is called once for each counted request that is allowed.
	Allowed func(Event)
	// Denied is called once for each throttle that denies a request, also in
	// shadow mode, where Event.Decision.ShadowDenied is set.
	Denied func(Event)
	// Bypassed is called once for each request that bypasses the throttles.
	Bypassed func(Event)
	// NearLimit is called for each throttle whose use reaches the
	// configured fraction of its limit (80% by default) on this request.
	NearLimit func(Event)
	// StoreError is called when the store fails; Event.Err holds the error.
	StoreError func(Event)
	// StoreCall is called after every store call with its duration and
	// error, for latency metrics.
	StoreCall func(elapsed time.Duration, err error)
}

// Event is the argument of a hook.
type Event struct {
	// Request is the request being decided.
	Request *http.Request
	// Decision is the decision so far.
	Decision *Decision
	// Status is the throttle the event is about: for Denied and NearLimit
	// the throttle concerned, for Allowed the most restrictive one. Its Key
	// names the counter with client IPs and API keys hashed. Zero for
	// Bypassed and StoreError.
	Status Status
	// Err is the store error, for StoreError.
	Err error
}

// report calls the hooks and logs a counted decision.
func (l *Limiter) report(r *http.Request, d *Decision) {
	hooks := &l.cfg.Hooks
	// Only a counted request moves a counter towards its limit.
	counted := d.Allowed && !d.ShadowDenied
	for i := range d.Statuses {
		s := &d.Statuses[i]
		if !s.Allowed {
			if hooks.Denied != nil {
				hooks.Denied(Event{Request: r, Decision: d, Status: *s})
			}
			l.logDenial(r, d, s)
			continue
		}
		if counted && hooks.NearLimit != nil && nearLimit(s, l.cfg.NearLimit) {
			hooks.NearLimit(Event{Request: r, Decision: d, Status: *s})
		}
	}
	if counted && hooks.Allowed != nil {
		// Shadow throttles count here, so that shadow mode reports too.
		var most *Status
		for i := range d.Statuses {
			if most == nil || moreRestrictive(&d.Statuses[i], most) {
				most = &d.Statuses[i]
			}
		}
		var status Status
		if most != nil {
			status = *most
		}
		hooks.Allowed(Event{Request: r, Decision: d, Status: status})
	}
}

// nearLimit reports whether s has just crossed fraction of its limit: the
// request that brought the use to the threshold, and none after it, fires.
func nearLimit(s *Status, fraction float64) bool {
	used := s.Limit - s.Remaining
	threshold := int64(float64(s.Limit)*fraction + 0.999999)
	return used == threshold
}

func (l *Limiter) logDenial(r *http.Request, d *Decision, s *Status) {
	if l.cfg.Logger == nil {
		return
	}
	msg := "request throttled"
	if d.ShadowDenied || s.Shadow {
		msg = "request would be throttled (shadow mode)"
	}
	l.cfg.Logger.LogAttrs(r.Context(), slog.LevelDebug, msg,
		slog.String("scope", s.Scope),
		slog.String("tenant", d.Identity.TenantSlug()),
		slog.String("key", s.Key),
		slog.Int64("limit", s.Limit),
		slog.Duration("retry_after", s.RetryAfter),
	)
}

func (l *Limiter) reportBypass(r *http.Request, d *Decision) {
	if l.cfg.Hooks.Bypassed != nil {
		l.cfg.Hooks.Bypassed(Event{Request: r, Decision: d})
	}
}

// reportStoreError calls the hook and logs the error, at most once per
// failureLogInterval with the count of errors in between, so an outage of
// minutes does not flood the log.
func (l *Limiter) reportStoreError(r *http.Request, d *Decision) {
	if l.cfg.Hooks.StoreError != nil {
		l.cfg.Hooks.StoreError(Event{Request: r, Decision: d, Err: d.Err})
	}
	if l.cfg.Logger == nil {
		return
	}
	suppressed, ok := l.failures.shouldLog(time.Now())
	if !ok {
		return
	}
	policy := "fail open: request served uncounted"
	switch {
	case d.Fallback:
		policy = "local fallback: request decided on this instance's counters"
	case l.cfg.FailClosed:
		policy = "fail closed: request answered 503"
	}
	l.cfg.Logger.LogAttrs(context.WithoutCancel(r.Context()), slog.LevelError, "rate limit store failed",
		slog.String("error", d.Err.Error()),
		slog.String("policy", policy),
		slog.String("tenant", d.Identity.TenantSlug()),
		slog.Int64("errors_not_logged", suppressed),
	)
}

// failureLogInterval is the minimum time between two store-error log lines.
const failureLogInterval = 10 * time.Second

// failureLog rate-limits the logging of store errors.
type failureLog struct {
	// mu guards the fields below.
	mu         sync.Mutex
	last       time.Time
	suppressed int64
}

// shouldLog reports whether an error at now is logged, and how many were
// skipped since the last one logged.
func (f *failureLog) shouldLog(now time.Time) (int64, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if !f.last.IsZero() && now.Sub(f.last) < failureLogInterval {
		f.suppressed++
		return 0, false
	}
	n := f.suppressed
	f.last = now
	f.suppressed = 0
	return n, true
}
