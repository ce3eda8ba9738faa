package throttle

// DefaultRoles returns the rate of each standard role. The map is new on
// every call, so callers may change it.
func DefaultRoles() map[string]Rate {
	return map[string]Rate{
		"owner":      PerHour(5000),
		"admin":      PerHour(3000),
		"supervisor": PerHour(2000),
		"hr":         PerHour(2000),
		"marketer":   PerHour(2000),
		"employee":   PerHour(1000),
		"member":     PerHour(500),
	}
}

// RoleThrottle limits each authenticated user by its role inside its
// tenant. A user without a role, or with a role that has no rate, is not
// limited by this throttle.
type RoleThrottle struct {
	// Name is the scope, usually "role".
	Name string
	// Rates maps role names to rates.
	Rates map[string]Rate
	// Shadow makes the throttle report without denying.
	Shadow bool
}

// Scope implements Throttle.
func (t RoleThrottle) Scope() string { return t.Name }

// Limit implements Throttle.
func (t RoleThrottle) Limit(r *Request) (Limit, bool) {
	rate, ok := t.Rates[r.Identity.Role]
	if !ok || rate.IsZero() {
		return Limit{}, false
	}
	return userLimit(r, rate, t.Shadow)
}

func (t RoleThrottle) validate() error { return validateRates(t.Rates) }
