package throttle

import (
	"fmt"
	"time"
)

// DefaultPlans returns the rates of the four standard plans. The map is new
// on every call, so callers may change it.
func DefaultPlans() map[string]PlanLimits {
	return map[string]PlanLimits{
		"free":         {Sustained: PerHour(100), Burst: PerMinute(10), Daily: PerDay(500), Bulk: PerHour(5)},
		"starter":      {Sustained: PerHour(500), Burst: PerMinute(30), Daily: PerDay(5000), Bulk: PerHour(20)},
		"professional": {Sustained: PerHour(2000), Burst: PerMinute(100), Daily: PerDay(20000), Bulk: PerHour(50)},
		"enterprise":   {Sustained: PerHour(10000), Burst: PerMinute(500), Daily: PerDay(100000), Bulk: PerHour(200)},
	}
}

// PlanThrottle limits each authenticated user by the plan of its tenant,
// over a sliding window. A missing or unknown plan uses the rate of the plan
// "free"; a plan without a rate is not limited by this throttle. Anonymous
// callers are not counted; the anonymous throttles cover them. The limit is
// read from the identity on every request, so a plan change takes effect on
// the next request, and requests already counted still count.
type PlanThrottle struct {
	// Name is the scope, such as "plan" or "burst".
	Name string
	// Rates maps plan names to rates.
	Rates map[string]Rate
	// Shadow makes the throttle report without denying.
	Shadow bool
}

// Scope implements Throttle.
func (t PlanThrottle) Scope() string { return t.Name }

// Limit implements Throttle.
func (t PlanThrottle) Limit(r *Request) (Limit, bool) {
	rate, ok := planRate(t.Rates, r.Identity.Tenant.Plan)
	if !ok {
		return Limit{}, false
	}
	return userLimit(r, rate, t.Shadow)
}

func (t PlanThrottle) validate() error { return validateRates(t.Rates) }

// DailyQuota limits each authenticated user to a number of requests per
// calendar day, by the plan of its tenant. The day starts at midnight in the
// limiter's time zone (UTC unless configured), the date is part of the
// counter's key, and so the quota resets exactly once a day. Every rate must
// be per one day.
//
// NOTE: the day is read from the limiter's clock, not the store's. A clock
// that steps back across midnight reads the previous day's counter again.
type DailyQuota struct {
	// Name is the scope, usually "daily".
	Name string
	// Rates maps plan names to daily rates.
	Rates map[string]Rate
	// Shadow makes the throttle report without denying.
	Shadow bool
}

// Scope implements Throttle.
func (t DailyQuota) Scope() string { return t.Name }

// Limit implements Throttle.
func (t DailyQuota) Limit(r *Request) (Limit, bool) {
	rate, ok := planRate(t.Rates, r.Identity.Tenant.Plan)
	if !ok {
		return Limit{}, false
	}
	l, ok := userLimit(r, rate, t.Shadow)
	l.Calendar = true
	return l, ok
}

func (t DailyQuota) validate() error {
	if err := validateRates(t.Rates); err != nil {
		return err
	}
	for plan, rate := range t.Rates {
		if !rate.IsZero() && rate.Period != 24*time.Hour {
			return fmt.Errorf("plan %q: daily rate %q must be per day", plan, rate)
		}
	}
	return nil
}

// BulkThrottle limits bulk import and export operations by the plan of the
// tenant. It applies only to handlers wrapped with the Bulk option, per user
// when authenticated and per client IP otherwise.
type BulkThrottle struct {
	// Name is the scope, usually "bulk".
	Name string
	// Rates maps plan names to rates.
	Rates map[string]Rate
	// Shadow makes the throttle report without denying.
	Shadow bool
}

// Scope implements Throttle.
func (t BulkThrottle) Scope() string { return t.Name }

// Limit implements Throttle.
func (t BulkThrottle) Limit(r *Request) (Limit, bool) {
	if !r.Bulk {
		return Limit{}, false
	}
	rate, ok := planRate(t.Rates, r.Identity.Tenant.Plan)
	if !ok {
		return Limit{}, false
	}
	return callerLimit(r, rate, t.Shadow)
}

func (t BulkThrottle) validate() error { return validateRates(t.Rates) }

// validateRates checks every non-zero rate of a map.
func validateRates(rates map[string]Rate) error {
	for name, rate := range rates {
		if rate.IsZero() {
			continue
		}
		if err := rate.Validate(); err != nil {
			return fmt.Errorf("%q: %w: %v", name, ErrInvalidRate, err)
		}
	}
	return nil
}
