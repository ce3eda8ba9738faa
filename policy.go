package throttle

import (
	"fmt"
	"slices"
	"sort"
)

// Policy holds the rates of every throttle kind. DefaultPolicy returns the
// library's defaults; change its fields, then pass it in Config.Policy.
// Policy.Throttles builds the ready-made set from it, and the Scope and Bulk
// handler options read its Scopes and Plans.
type Policy struct {
	// Plans maps plan names to their rates. Tenants with a missing or
	// unknown plan get the plan "free".
	Plans map[string]PlanLimits `json:"plans" yaml:"plans"`
	// Roles maps role names to the rate of a user with that role.
	Roles map[string]Rate `json:"roles" yaml:"roles"`
	// Anonymous and AnonymousBurst limit anonymous callers per client IP
	// within a tenant (scopes "anon" and "anon_burst").
	Anonymous      Rate `json:"anonymous" yaml:"anonymous"`
	AnonymousBurst Rate `json:"anonymous_burst" yaml:"anonymous_burst"`
	// IP and IPBurst limit every caller per client IP (scopes "ip" and
	// "ip_burst"). The ready-made set uses IPBurst only.
	IP      Rate `json:"ip" yaml:"ip"`
	IPBurst Rate `json:"ip_burst" yaml:"ip_burst"`
	// SuspiciousIP limits flagged client IPs (scope "suspicious_ip").
	SuspiciousIP Rate `json:"suspicious_ip" yaml:"suspicious_ip"`
	// Write limits POST, PUT, PATCH and DELETE requests per caller (scope
	// "write").
	Write Rate `json:"write" yaml:"write"`
	// Scopes maps endpoint scope names to their rates; a handler opts in
	// with the Scope handler option.
	Scopes map[string]Rate `json:"scopes" yaml:"scopes"`
	// ShadowScopes names scopes whose throttles run in shadow mode: they
	// count and report to hooks but never deny, and response headers leave
	// them out. Throttles, IPThrottle, BulkThrottle and ScopeThrottle set
	// the Shadow field of the throttles they build from it.
	ShadowScopes []string `json:"shadow_scopes" yaml:"shadow_scopes"`
	// APIKeys maps API keys to rates of their own (scope "api_key"), and
	// APIKeyDefault is the rate of other API keys; zero means no limit.
	// Keys in the allowlist Config.BypassAPIKeys skip every throttle instead.
	// The keys are secrets: they reach the store and logs only hashed, and
	// are never marshalled.
	APIKeys       map[string]Rate `json:"-" yaml:"-"`
	APIKeyDefault Rate            `json:"api_key_default" yaml:"api_key_default"`
}

// DefaultPolicy returns the default rates. They are the four standard plans,
// the seven standard roles, anonymous 30/hour and 5/minute, IP 1000/hour and
// 30/minute, suspicious IP 10/hour, writes 100/hour, and the endpoint scopes
// expensive_operation, search and report, and the endpoint scopes of the
// Django REST Framework service this library succeeds (auth, token,
// password, registration, file_upload and export). That service's "anon"
// and "user" scopes correspond to the Anonymous and plan throttles here.
func DefaultPolicy() Policy {
	return Policy{
		Plans:          DefaultPlans(),
		Roles:          DefaultRoles(),
		Anonymous:      PerHour(30),
		AnonymousBurst: PerMinute(5),
		IP:             PerHour(1000),
		IPBurst:        PerMinute(30),
		SuspiciousIP:   PerHour(10),
		Write:          PerHour(100),
		Scopes: map[string]Rate{
			"expensive_operation": PerHour(10),
			"search":              PerMinute(100),
			"report":              PerDay(5),
			"auth":                PerMinute(5),
			"token":               PerMinute(10),
			"password":            PerMinute(3),
			"registration":        PerHour(5),
			"file_upload":         PerHour(20),
			"export":              PerHour(10),
		},
	}
}

// planRates returns one rate per plan, picked by field.
func (p Policy) planRates(field func(PlanLimits) Rate) map[string]Rate {
	rates := make(map[string]Rate, len(p.Plans))
	for name, limits := range p.Plans {
		rates[name] = field(limits)
	}
	return rates
}

// Throttles returns the ready-made set. An authenticated caller gets the
// plan's sustained rate, burst rate and daily quota, and its role's rate.
// An anonymous caller gets the anonymous sustained and burst rates. Every
// caller gets the IP burst rate, the write rate on POST, PUT, PATCH and
// DELETE, and the suspicious-IP rate while its IP is flagged. A caller with
// an API key also gets the key's rate (APIKeys, APIKeyDefault). Throttles
// whose rate is zero are left out.
func (p Policy) Throttles() []Throttle {
	var set []Throttle
	if len(p.Plans) > 0 {
		set = append(set,
			PlanThrottle{Name: "plan", Rates: p.planRates(func(l PlanLimits) Rate { return l.Sustained }), Shadow: p.isShadow("plan")},
			PlanThrottle{Name: "burst", Rates: p.planRates(func(l PlanLimits) Rate { return l.Burst }), Shadow: p.isShadow("burst")},
			DailyQuota{Name: "daily", Rates: p.planRates(func(l PlanLimits) Rate { return l.Daily }), Shadow: p.isShadow("daily")},
		)
	}
	if len(p.Roles) > 0 {
		set = append(set, RoleThrottle{Name: "role", Rates: p.Roles, Shadow: p.isShadow("role")})
	}
	if !p.Anonymous.IsZero() {
		set = append(set, AnonymousThrottle{Name: "anon", Rate: p.Anonymous, Shadow: p.isShadow("anon")})
	}
	if !p.AnonymousBurst.IsZero() {
		set = append(set, AnonymousThrottle{Name: "anon_burst", Rate: p.AnonymousBurst, Shadow: p.isShadow("anon_burst")})
	}
	if !p.IPBurst.IsZero() {
		set = append(set, IPThrottle{Name: "ip_burst", Rate: p.IPBurst, Shadow: p.isShadow("ip_burst")})
	}
	if !p.Write.IsZero() {
		set = append(set, WriteThrottle{Name: "write", Rate: p.Write, Shadow: p.isShadow("write")})
	}
	if !p.SuspiciousIP.IsZero() {
		set = append(set, SuspiciousIPThrottle{Name: "suspicious_ip", Rate: p.SuspiciousIP, Shadow: p.isShadow("suspicious_ip")})
	}
	return set
}

// IPThrottle returns the sustained per-IP throttle (scope "ip"), which the
// ready-made set leaves out; add it with the With handler option or to
// Config.Throttles.
func (p Policy) IPThrottle() Throttle {
	return IPThrottle{Name: "ip", Rate: p.IP, Shadow: p.isShadow("ip")}
}

// BulkThrottle returns the throttle of bulk operations (scope "bulk").
func (p Policy) BulkThrottle() Throttle {
	return BulkThrottle{Name: "bulk", Rates: p.planRates(func(l PlanLimits) Rate { return l.Bulk }), Shadow: p.isShadow("bulk")}
}

// ScopeThrottle returns the throttle of endpoint scope name, and false when
// the policy has no rate for it.
func (p Policy) ScopeThrottle(name string) (Throttle, bool) {
	rate, ok := p.Scopes[name]
	if !ok || rate.IsZero() {
		return nil, false
	}
	return ScopeThrottle{Name: name, Rate: rate, Shadow: p.isShadow(name)}, true
}

// isShadow reports whether ShadowScopes names scope.
func (p Policy) isShadow(scope string) bool { return slices.Contains(p.ShadowScopes, scope) }

// Validate checks every rate of the policy, naming the field of the first
// invalid one.
func (p Policy) Validate() error {
	for _, plan := range sortedKeys(p.Plans) {
		limits := p.Plans[plan]
		if err := validateName(fmt.Sprintf("plans.%s", plan), plan); err != nil {
			return err
		}
		for _, f := range []struct {
			name string
			rate Rate
		}{{"sustained", limits.Sustained}, {"burst", limits.Burst}, {"daily", limits.Daily}, {"bulk", limits.Bulk}} {
			if f.rate.IsZero() {
				continue
			}
			if err := f.rate.Validate(); err != nil {
				return fmt.Errorf("plans.%s.%s: %w %q: %v", plan, f.name, ErrInvalidRate, f.rate, err)
			}
		}
		if !limits.Daily.IsZero() && limits.Daily.Period != PerDay(1).Period {
			return fmt.Errorf("plans.%s.daily: %w %q: a daily quota must be per day", plan, ErrInvalidRate, limits.Daily)
		}
	}
	for _, role := range sortedKeys(p.Roles) {
		if err := validateOptionalRate("roles."+role, p.Roles[role]); err != nil {
			return err
		}
	}
	for _, f := range []struct {
		name string
		rate Rate
	}{
		{"anonymous", p.Anonymous}, {"anonymous_burst", p.AnonymousBurst}, {"ip", p.IP},
		{"ip_burst", p.IPBurst}, {"suspicious_ip", p.SuspiciousIP}, {"write", p.Write},
	} {
		if err := validateOptionalRate(f.name, f.rate); err != nil {
			return err
		}
	}
	for _, rate := range p.APIKeys {
		if err := validateOptionalRate("api_keys[...]", rate); err != nil {
			// The key itself is a secret, so the message does not name it.
			return err
		}
	}
	if err := validateOptionalRate("api_key_default", p.APIKeyDefault); err != nil {
		return err
	}
	for _, scope := range sortedKeys(p.Scopes) {
		if err := validateName("scopes."+scope, scope); err != nil {
			return err
		}
		if reservedScopes[scope] {
			return fmt.Errorf("scopes.%s: name %q is reserved for the library's own keys", scope, scope)
		}
		if err := validateOptionalRate("scopes."+scope, p.Scopes[scope]); err != nil {
			return err
		}
	}
	for i, scope := range p.ShadowScopes {
		if err := validateName(fmt.Sprintf("shadow_scopes[%d]", i), scope); err != nil {
			return err
		}
	}
	return nil
}

// validateOptionalRate checks a rate that may be zero, meaning "off".
func validateOptionalRate(field string, r Rate) error {
	if r.IsZero() {
		return nil
	}
	if err := r.Validate(); err != nil {
		return fmt.Errorf("%s: %w %q: %v", field, ErrInvalidRate, r, err)
	}
	return nil
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
