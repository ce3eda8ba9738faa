package throttle

import (
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"
)

// ErrInvalidConfig is returned, wrapped, by New for a configuration that
// cannot work. The message names the field and the bad value.
var ErrInvalidConfig = errors.New("throttle: invalid configuration")

// Defaults of Config fields left zero.
const (
	DefaultPrefix          = "throttle"
	DefaultDenialRetention = 30 * 24 * time.Hour
	DefaultNearLimit       = 0.8
	DefaultFlagDuration    = time.Hour
	// DefaultStoreTimeout bounds each store call. 100 ms is long against a
	// Redis round trip on a local network (well under a millisecond) and
	// short against an API's latency budget. A slow Redis therefore adds at
	// most a tenth of a second before the failure policy applies.
	DefaultStoreTimeout = 100 * time.Millisecond
)

// Config configures a Limiter. The zero Config is valid: a memory store, the
// default policy's ready-made set, staff bypass on, fail open.
type Config struct {
	// Store keeps the counters. Nil means a new MemoryStore on Clock.
	Store Store
	// Clock is the source of time for calendar days and for the default memory
	// store. Nil means the system clock. The Redis store uses the Redis
	// server's clock for windows whatever Clock is.
	Clock Clock
	// Policy holds the rates. Nil means DefaultPolicy().
	Policy *Policy
	// Throttles is the set applied to every handler. Nil means
	// Policy.Throttles(), the ready-made set.
	Throttles []Throttle

	// Identify returns the caller of a request. Nil means the Identity
	// stored with WithIdentity, or an anonymous caller when there is none.
	Identify func(*http.Request) Identity
	// ClientIP derives client addresses. The zero value trusts no proxy and
	// groups IPv6 clients by /64.
	ClientIP ClientIPResolver
	// IPHashSecret keys the hash of client IPs in counter keys (HMAC-SHA-256).
	// Without it the hash is a plain SHA-256, which anyone can reverse for
	// IPv4 by hashing all 2^32 addresses; set a secret in production.
	IPHashSecret []byte
	// Prefix starts every key, so several services can share a Redis.
	// Empty means "throttle".
	Prefix string
	// Location is the time zone of calendar days. Nil means UTC.
	Location *time.Location

	// ThrottleStaff turns off the staff and superuser bypass, which is on by
	// default.
	ThrottleStaff bool
	// BypassAPIKeys lists API keys that bypass every throttle.
	BypassAPIKeys []string
	// Shadow runs the whole limiter in shadow mode: decisions are computed,
	// logged and reported to hooks, but nothing is denied and no limit
	// headers are written.
	Shadow bool

	// DenialRetention is how long the per-tenant daily denial counters are
	// kept. Zero means 30 days.
	DenialRetention time.Duration
	// NearLimit is the fraction of a limit used at which the near-limit
	// hook fires. Zero means 0.8.
	NearLimit float64

	// FailClosed sends 503 with Retry-After when the store fails. The
	// default is to fail open: serve the request uncounted.
	FailClosed bool
	// StoreTimeout bounds every store call. Zero means 100 ms.
	StoreTimeout time.Duration
	// CircuitBreaker stops calling a store that keeps failing, so a dead
	// Redis is not waited on for every request. The zero value turns it on
	// with the defaults.
	CircuitBreaker CircuitBreakerConfig
	// Fallback decides on local counters while the store fails, instead of
	// failing open or closed. The zero value turns it off.
	Fallback FallbackConfig

	// DenyHandler writes the response to a denied request. Nil means the
	// JSON body {"detail": "Request was throttled. Expected available in N
	// seconds."}, or an RFC 9457 problem when ProblemJSON is set. The limit
	// headers and Retry-After are written before it is called.
	DenyHandler func(w http.ResponseWriter, r *http.Request, d *Decision)
	// ProblemJSON makes the default denial an application/problem+json body.
	ProblemJSON bool

	// Logger receives the limiter's logs. Nil means no logging.
	Logger *slog.Logger
	// Hooks are called on decisions and store errors.
	Hooks Hooks
}

// normalize fills the defaults of cfg and checks it.
func (cfg *Config) normalize() error {
	if cfg.Clock == nil {
		cfg.Clock = systemClock{}
	}
	if cfg.Store == nil {
		cfg.Store = NewMemoryStore(MemoryConfig{Clock: cfg.Clock})
	}
	if cfg.Policy == nil {
		p := DefaultPolicy()
		cfg.Policy = &p
	}

	if err := cfg.Policy.Validate(); err != nil {
		return fmt.Errorf("%w: policy: %w", ErrInvalidConfig, err)
	}
	if cfg.Throttles == nil {
		cfg.Throttles = cfg.Policy.Throttles()
	}
	if err := validateThrottles(cfg.Throttles); err != nil {
		return fmt.Errorf("%w: throttles: %w", ErrInvalidConfig, err)
	}

	if cfg.Prefix == "" {
		cfg.Prefix = DefaultPrefix
	}
	if err := validateName("prefix", cfg.Prefix); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	if cfg.Location == nil {
		cfg.Location = time.UTC
	}

	if err := cfg.ClientIP.Validate(); err != nil {
		return fmt.Errorf("%w: client_ip: %w", ErrInvalidConfig, err)
	}
	for i, key := range cfg.BypassAPIKeys {
		if key == "" {
			return fmt.Errorf("%w: bypass_api_keys[%d]: empty key", ErrInvalidConfig, i)
		}
	}

	switch {
	case cfg.DenialRetention == 0:
		cfg.DenialRetention = DefaultDenialRetention
	case cfg.DenialRetention < 0:
		return fmt.Errorf("%w: denial_retention: invalid value %v: must be positive", ErrInvalidConfig, cfg.DenialRetention)
	}
	switch {
	case cfg.NearLimit == 0:
		cfg.NearLimit = DefaultNearLimit
	case !(cfg.NearLimit > 0 && cfg.NearLimit <= 1): // also rejects NaN
		return fmt.Errorf("%w: near_limit: invalid value %v: must be between 0 and 1", ErrInvalidConfig, cfg.NearLimit)
	}
	switch {
	case cfg.StoreTimeout == 0:
		cfg.StoreTimeout = DefaultStoreTimeout
	case cfg.StoreTimeout < 0:
		return fmt.Errorf("%w: store_timeout: invalid value %v: must be positive", ErrInvalidConfig, cfg.StoreTimeout)
	}

	if err := cfg.CircuitBreaker.normalize(); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	if err := cfg.Fallback.normalize(); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalidConfig, err)
	}
	return nil
}

// validateThrottles checks each throttle and that no two share a scope,
// which would make them share counters.
func validateThrottles(set []Throttle) error {
	seen := make(map[string]bool, len(set))
	for i, t := range set {
		if t == nil {
			return fmt.Errorf("[%d]: nil throttle", i)
		}
		if err := validateThrottle(t); err != nil {
			return fmt.Errorf("[%d]: %w", i, err)
		}
		if seen[t.Scope()] {
			return fmt.Errorf("[%d]: scope %q is used by two throttles", i, t.Scope())
		}
		seen[t.Scope()] = true
	}
	return nil
}
