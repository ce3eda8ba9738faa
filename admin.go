package throttle

import (
	"context"
	"fmt"
	"net/http"
	"net/netip"
	"time"
)

// ResetTenant deletes every counter of a tenant, of all users and scopes,
// and returns how many keys it deleted. Denial counts are kept.
func (l *Limiter) ResetTenant(ctx context.Context, tenant string) (int, error) {
	if tenant == "" {
		tenant = publicTenant
	}
	pattern := l.cfg.Prefix + ":*:" + string(appendKeyPart(nil, tenant)) + ":*"
	return l.cfg.Store.DeleteMatching(ctx, pattern)
}

// ResetUser deletes every counter of one user of a tenant.
func (l *Limiter) ResetUser(ctx context.Context, tenant, userID string) (int, error) {
	if tenant == "" {
		tenant = publicTenant
	}
	if userID == "" {
		return 0, fmt.Errorf("throttle: reset user: empty user ID")
	}
	key := l.keys.appendCounterKey(nil, "*", tenant, Subject{Kind: subjectUser, Value: userID})
	return l.cfg.Store.DeleteMatching(ctx, string(key)+"*")
}

// ResetScope deletes every counter of one scope, for all tenants.
func (l *Limiter) ResetScope(ctx context.Context, scope string) (int, error) {
	if err := validateName("scope", scope); err != nil {
		return 0, fmt.Errorf("throttle: reset scope: %w", err)
	}
	return l.cfg.Store.DeleteMatching(ctx, l.cfg.Prefix+":"+scope+":*")
}

// FlagIP flags a client address for duration (DefaultFlagDuration when
// zero), so the suspicious-IP throttle applies to it on every instance. The
// address is grouped as client IPs are (IPv6 by prefix), and the flag ends
// at an absolute time, so a restart neither extends nor drops it.
func (l *Limiter) FlagIP(ctx context.Context, addr netip.Addr, duration time.Duration) error {
	if duration == 0 {
		duration = DefaultFlagDuration
	}
	if duration < 0 {
		return fmt.Errorf("throttle: flag IP: invalid duration %v: must be positive", duration)
	}
	key, err := l.ipFlagKey(addr)
	if err != nil {
		return err
	}
	return l.cfg.Store.SetFlag(ctx, key, l.cfg.Clock.Now().Add(duration))
}

// UnflagIP removes a flag early and reports whether the address was flagged.
func (l *Limiter) UnflagIP(ctx context.Context, addr netip.Addr) (bool, error) {
	key, err := l.ipFlagKey(addr)
	if err != nil {
		return false, err
	}
	return l.cfg.Store.DeleteFlag(ctx, key)
}

// IPFlag returns when the flag of addr ends, and false when it is not flagged.
func (l *Limiter) IPFlag(ctx context.Context, addr netip.Addr) (time.Time, bool, error) {
	key, err := l.ipFlagKey(addr)
	if err != nil {
		return time.Time{}, false, err
	}
	return l.cfg.Store.FlagExpiry(ctx, key)
}

func (l *Limiter) ipFlagKey(addr netip.Addr) (string, error) {
	if !addr.IsValid() {
		return "", fmt.Errorf("throttle: invalid IP address %v", addr)
	}
	grouped := groupAddr(addr.Unmap(), l.cfg.ClientIP.IPv6Prefix)
	return l.keys.flagKey(string(l.keys.hashIP(nil, grouped))), nil
}

// Denials returns how many requests of a tenant were denied on the calendar
// day of day, in the limiter's time zone.
func (l *Limiter) Denials(ctx context.Context, tenant string, day time.Time) (int64, error) {
	if tenant == "" {
		tenant = publicTenant
	}
	return l.cfg.Store.Count(ctx, string(l.keys.denialKey(nil, tenant, day)))
}

// Usage returns the caller's limit, remaining requests and reset in every
// throttle that would apply to it under the handler options, without
// counting a request. It is the library's counterpart of GitHub's
// GET /rate_limit.
func (l *Limiter) Usage(r *http.Request, opts ...HandlerOption) (*Decision, error) {
	h := l.handlerConfig(opts)
	d := &Decision{}
	l.decide(r, h, d, false)
	return d, d.Err
}
