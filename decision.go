package throttle

import "time"

// Bypass names why a request skipped every throttle.
type Bypass string

// The reasons a request can bypass the throttles.
const (
	BypassNone      Bypass = ""
	BypassStaff     Bypass = "staff"
	BypassSuperuser Bypass = "superuser"
	BypassAPIKey    Bypass = "api_key"
)

// Decision is the outcome of checking one request. The middleware turns it
// into a response; Limiter.Check returns it to callers that respond
// themselves.
type Decision struct {
	// Allowed reports whether the request may proceed. It is true for
	// bypassed requests, in shadow mode, and when the store failed and the
	// failure policy is to fail open.
	Allowed bool
	// Bypass is the reason the request skipped the throttles; empty when it
	// did not.
	// A bypassed request is not counted and gets no limit headers.
	Bypass Bypass
	// ShadowDenied reports that the request would have been denied but was
	// allowed because the limiter runs in shadow mode.
	ShadowDenied bool
	// Limit, Remaining and Reset describe the most restrictive applicable
	// throttle: the one with the fewest requests left, or on denial the one
	// with the longest wait. Limit is 0 when no throttle applied.
	Limit     int64
	Remaining int64
	Reset     time.Time
	// RetryAfter is, on denial, the longest wait among the denying
	// throttles: the same request sent after it, with no other traffic, is
	// allowed. Zero when allowed.
	RetryAfter time.Duration
	// Statuses has one entry per applicable throttle, in evaluation order,
	// shadow throttles included.
	Statuses []Status
	// Identity is the caller the decision is about.
	Identity Identity
	// Err is the store error, when the store failed; Allowed then follows
	// the failure policy, or the local counters when Fallback is set.
	Err error
	// Fallback reports that the store failed and the request was decided
	// on this instance's local counters (Config.Fallback), with each limit
	// divided by the number of instances. The decision is otherwise a
	// normal one.
	Fallback bool
	// Now is the store's time that Reset and the statuses are relative to.
	Now time.Time

	// keys holds the counter keys the statuses' Key fields point into.
	keys keyArena
}

// Status describes a caller's use of one throttle.
type Status struct {
	// Scope names the throttle.
	Scope string
	// Tenant is the tenant part of the counter; empty for a counter shared
	// by all tenants.
	Tenant string
	// Key is the counter's key. Client IPs and API keys appear in it only
	// hashed, so it is safe to log. It shares memory with the Decision, and
	// is valid until the Decision is reused: a hook that keeps it past its
	// call must copy it with strings.Clone.
	Key string
	// Limit and Period are the throttle's rate. Period is one day for a
	// calendar-day quota.
	Limit  int64
	Period time.Duration
	// Remaining is the number of requests left, never negative.
	Remaining int64
	// Reset is when the counter is back to its full limit.
	Reset time.Time
	// RetryAfter is how long until the throttle has room again; zero when
	// it has room.
	RetryAfter time.Duration
	// Allowed reports whether the throttle had room for the request.
	Allowed bool
	// Shadow reports whether the throttle runs in shadow mode: it reports
	// but never denies, and is left out of response headers.
	Shadow bool
}

// reset clears d for reuse, keeping the memory of its statuses and keys.
func (d *Decision) reset() {
	statuses, keys := d.Statuses[:0], d.keys
	*d = Decision{Statuses: statuses, keys: keys}
}

// hasLimits reports whether the response carries limit headers.
func (d *Decision) hasLimits() bool { return d.Bypass == BypassNone && d.Limit > 0 }

// summarize picks the most restrictive non-shadow status into d.Limit,
// d.Remaining and d.Reset, and the longest wait into d.RetryAfter.
func (d *Decision) summarize() {
	best := -1
	for i := range d.Statuses {
		s := &d.Statuses[i]
		if s.Shadow {
			continue
		}
		if !s.Allowed && s.RetryAfter > d.RetryAfter {
			d.RetryAfter = s.RetryAfter
		}
		if best < 0 || moreRestrictive(s, &d.Statuses[best]) {
			best = i
		}
	}
	if best < 0 {
		return
	}
	s := &d.Statuses[best]
	d.Limit, d.Remaining, d.Reset = s.Limit, s.Remaining, s.Reset
}

// moreRestrictive reports whether a binds the caller more than b: a denying
// throttle with a longer wait first, then fewer requests left, then a later
// reset.
func moreRestrictive(a, b *Status) bool {
	if a.Allowed != b.Allowed {
		return !a.Allowed
	}
	if !a.Allowed && a.RetryAfter != b.RetryAfter {
		return a.RetryAfter > b.RetryAfter
	}
	if a.Remaining != b.Remaining {
		return a.Remaining < b.Remaining
	}
	return a.Reset.After(b.Reset)
}

// retryAfterSeconds rounds a wait up to whole seconds, at least 1, as the
// Retry-After field needs.
func retryAfterSeconds(d time.Duration) int64 {
	s := int64((d + time.Second - 1) / time.Second)
	if s < 1 {
		return 1
	}
	return s
}
