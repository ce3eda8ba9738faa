package throttle

import "fmt"

// AnonymousThrottle limits anonymous callers, per client IP within each
// tenant. Authenticated callers are not counted.
type AnonymousThrottle struct {
	// Name is the scope, such as "anon" or "anon_burst".
	Name string
	Rate Rate
	// Shadow makes the throttle report without denying.
	Shadow bool
}

// Scope implements Throttle.
func (t AnonymousThrottle) Scope() string { return t.Name }

// Limit implements Throttle.
func (t AnonymousThrottle) Limit(r *Request) (Limit, bool) {
	if !r.Identity.Anonymous() || r.IPHash == "" {
		return Limit{}, false
	}
	return Limit{
		Rate:    t.Rate,
		Tenant:  r.Identity.TenantSlug(),
		Subject: Subject{Kind: subjectIP, Value: r.IPHash},
		Shadow:  t.Shadow,
	}, true
}

func (t AnonymousThrottle) validate() error { return validateRate(t.Rate) }

// IPThrottle limits every caller, authenticated or not, per client IP across
// all tenants.
type IPThrottle struct {
	// Name is the scope, such as "ip" or "ip_burst".
	Name string
	Rate Rate
	// Shadow makes the throttle report without denying.
	Shadow bool
}

// Scope implements Throttle.
func (t IPThrottle) Scope() string { return t.Name }

// Limit implements Throttle.
func (t IPThrottle) Limit(r *Request) (Limit, bool) { return ipLimit(r, t.Rate, t.Shadow) }

func (t IPThrottle) validate() error { return validateRate(t.Rate) }

// SuspiciousIPThrottle limits client IPs that are flagged, with Limiter.FlagIP,
// to a low rate. The flag lives in the store, so every instance reads it, and
// the store checks it in the same call that counts the request.
type SuspiciousIPThrottle struct {
	// Name is the scope, usually "suspicious_ip".
	Name string
	Rate Rate
	// Shadow makes the throttle report without denying.
	Shadow bool
}

// Scope implements Throttle.
func (t SuspiciousIPThrottle) Scope() string { return t.Name }

// Limit implements Throttle.
func (t SuspiciousIPThrottle) Limit(r *Request) (Limit, bool) {
	l, ok := ipLimit(r, t.Rate, t.Shadow)
	l.OnlyFlagged = true
	return l, ok
}

func (t SuspiciousIPThrottle) validate() error { return validateRate(t.Rate) }

// WriteThrottle limits requests that change state (POST, PUT, PATCH and
// DELETE) per caller within its tenant; GET, HEAD and OPTIONS never count.
type WriteThrottle struct {
	// Name is the scope, usually "write".
	Name string
	Rate Rate
	// Shadow makes the throttle report without denying.
	Shadow bool
}

// Scope implements Throttle.
func (t WriteThrottle) Scope() string { return t.Name }

// Limit implements Throttle.
func (t WriteThrottle) Limit(r *Request) (Limit, bool) {
	if r.HTTP == nil || !isWrite(r.HTTP.Method) {
		return Limit{}, false
	}
	return callerLimit(r, t.Rate, t.Shadow)
}

func (t WriteThrottle) validate() error { return validateRate(t.Rate) }

// ScopeThrottle limits the handlers given its endpoint scope with the Scope
// handler option, per caller within its tenant. Its Name is the scope name,
// such as "search" or "report".
type ScopeThrottle struct {
	Name string
	Rate Rate
	// Shadow makes the throttle report without denying.
	Shadow bool
}

// Scope implements Throttle.
func (t ScopeThrottle) Scope() string { return t.Name }

// Limit implements Throttle.
func (t ScopeThrottle) Limit(r *Request) (Limit, bool) {
	if !r.HasScope(t.Name) {
		return Limit{}, false
	}
	return callerLimit(r, t.Rate, t.Shadow)
}

func (t ScopeThrottle) validate() error { return validateRate(t.Rate) }

// APIKeyThrottle gives API keys rates of their own, per key across tenants.
// Rates maps a key to its rate; keys without an entry get Default, and no
// limit when Default is zero. Keys are only ever written to the store hashed.
type APIKeyThrottle struct {
	// Name is the scope, usually "api_key".
	Name    string
	Rates   map[string]Rate
	Default Rate
	// Shadow makes the throttle report without denying.
	Shadow bool
}

// Scope implements Throttle.
func (t APIKeyThrottle) Scope() string { return t.Name }

// Limit implements Throttle.
func (t APIKeyThrottle) Limit(r *Request) (Limit, bool) {
	if r.APIKeyHash == "" {
		return Limit{}, false
	}
	rate, ok := t.Rates[r.Identity.APIKey]
	if !ok {
		rate = t.Default
	}
	if rate.IsZero() {
		return Limit{}, false
	}
	return Limit{Rate: rate, Subject: Subject{Kind: subjectAPIKey, Value: r.APIKeyHash}, Shadow: t.Shadow}, true
}

func (t APIKeyThrottle) validate() error {
	if err := validateRates(t.Rates); err != nil {
		// Never echo an API key in an error message.
		return fmt.Errorf("an API key has an invalid rate: %w", ErrInvalidRate)
	}
	if !t.Default.IsZero() {
		return validateRate(t.Default)
	}
	return nil
}

// validateRate checks one rate that must be set.
func validateRate(r Rate) error {
	if err := r.Validate(); err != nil {
		return fmt.Errorf("%w %q: %v", ErrInvalidRate, r, err)
	}
	return nil
}
