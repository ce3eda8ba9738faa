// Package throttle rate-limits the HTTP APIs of multi-tenant services.
//
// A Limiter evaluates a set of throttles for each request: per plan, per
// role, anonymous, per IP, flagged IPs, writes, bulk operations and named
// endpoint scopes. It checks and records all of their counters in one store
// call, all or nothing, and reports a Decision. Its Handler method wraps an
// http.Handler: it writes the X-RateLimit-* fields and the IETF RateLimit
// and RateLimit-Policy fields, sends 429 with Retry-After when a limit is
// reached, and lets staff, superusers and allowlisted API keys through
// without counting them.
//
// Counters live in a Store: NewMemoryStore for one instance and for tests,
// NewRedisStore for instances that share counters. Both keep sliding windows
// of bounded size that never allow more than N requests in any interval of
// the period; see the window comment in window.go for the exact guarantee.
//
// The library does not authenticate. The host service stores the caller's
// Identity in the request context with WithIdentity (or supplies
// Config.Identify), and the limiter reads it.
//
// Start with New and DefaultPolicy; the examples directory holds a runnable
// service.
package throttle

import (
	"fmt"
	"net/http"
)

// Throttle is one rule: for a request it either does not apply, or names
// one counter and its rate. Throttles are evaluated by a Limiter, which
// builds the counter's key from the Limit. Implementations must be safe for
// concurrent use; the throttles of this package are plain values.
type Throttle interface {
	// Scope returns the name of the throttle's family of counters, such as
	// "plan" or "search". Scopes are unique within a limiter.
	Scope() string
	// Limit returns the counter that applies to r, and false when the
	// throttle does not apply to r.
	Limit(r *Request) (Limit, bool)
}

// Limit is the counter a throttle applies to one request.
type Limit struct {
	// Rate is the number of requests allowed per period.
	Rate Rate
	// Tenant is the tenant part of the key; empty means a counter shared by
	// every tenant, such as a per-IP counter.
	Tenant string
	// Subject is the owner of the counter.
	Subject Subject
	// Calendar makes the counter a calendar-day quota that resets at
	// midnight in the limiter's time zone, instead of a sliding window.
	Calendar bool
	// OnlyFlagged makes the counter apply only while the request's client
	// IP is flagged.
	OnlyFlagged bool
	// Shadow makes the counter report without ever denying.
	Shadow bool
}

// PlanLimits are the rates of one plan.
type PlanLimits struct {
	// Sustained is the plan's rate over a longer window (scope "plan").
	Sustained Rate `json:"sustained" yaml:"sustained"`
	// Burst is the plan's rate over a short window (scope "burst").
	Burst Rate `json:"burst" yaml:"burst"`
	// Daily is the plan's calendar-day quota (scope "daily"); its period
	// must be one day.
	Daily Rate `json:"daily" yaml:"daily"`
	// Bulk is the rate of bulk import and export operations (scope "bulk").
	Bulk Rate `json:"bulk" yaml:"bulk"`
}

// DefaultPlan is the plan of tenants whose plan is missing or unknown.
const DefaultPlan = "free"

// planRate returns the rate that plans assigns to plan, falling back to the
// default plan for a missing or unknown plan name.
func planRate(rates map[string]Rate, plan string) (Rate, bool) {
	if r, ok := rates[plan]; ok {
		return r, !r.IsZero()
	}
	r, ok := rates[DefaultPlan]
	return r, ok && !r.IsZero()
}

// userLimit returns the limit of an authenticated caller's own counter in
// its tenant, and false for an anonymous caller.
func userLimit(r *Request, rate Rate, shadow bool) (Limit, bool) {
	if r.Identity.Anonymous() {
		return Limit{}, false
	}
	return Limit{
		Rate:    rate,
		Tenant:  r.Identity.TenantSlug(),
		Subject: Subject{Kind: subjectUser, Value: r.Identity.UserID},
		Shadow:  shadow,
	}, true
}

// callerLimit returns the limit of the caller's counter in its tenant: per
// user when authenticated, else per client IP.
func callerLimit(r *Request, rate Rate, shadow bool) (Limit, bool) {
	subject, ok := r.Caller()
	if !ok {
		return Limit{}, false
	}
	return Limit{Rate: rate, Tenant: r.Identity.TenantSlug(), Subject: subject, Shadow: shadow}, true
}

// ipLimit returns the limit of the client IP's counter across tenants.
func ipLimit(r *Request, rate Rate, shadow bool) (Limit, bool) {
	if r.IPHash == "" {
		return Limit{}, false
	}
	return Limit{Rate: rate, Subject: Subject{Kind: subjectIP, Value: r.IPHash}, Shadow: shadow}, true
}

// isWrite reports whether method changes state: POST, PUT, PATCH or DELETE.
func isWrite(method string) bool {
	switch method {
	case http.MethodPost, http.MethodPut, http.MethodPatch, http.MethodDelete:
		return true
	}
	return false
}

// validateThrottle checks a throttle's scope name and rates.
func validateThrottle(t Throttle) error {
	if err := validateName("scope", t.Scope()); err != nil {
		return err
	}
	if reservedScopes[t.Scope()] {
		return fmt.Errorf("scope: name %q is reserved for the library's own keys", t.Scope())
	}
	if v, ok := t.(interface{ validate() error }); ok {
		if err := v.validate(); err != nil {
			return fmt.Errorf("throttle %q: %w", t.Scope(), err)
		}
	}
	return nil
}
