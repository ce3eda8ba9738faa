package throttle

import (
	"context"
	"net/http"
	"slices"
	"sync"
	"time"
)

// Limiter decides, for each request, whether its throttles allow it. Build
// one with New and share it: a Limiter is safe for concurrent use.
type Limiter struct {
	cfg        Config
	keys       *keyBuilder
	bypassKeys map[string]bool
	failures   failureLog
	pool       sync.Pool
	hashes     hashCache
	days       dayCache
	// defaultHandler is the handler configuration without options.
	defaultHandler handlerConfig
	// breaker stops store calls during an outage; nil when disabled.
	breaker *breaker
	// fallback decides on local counters while the store fails; nil when
	// off.
	fallback *fallback
}

// New returns a Limiter for cfg, or an error wrapping ErrInvalidConfig that
// names the first invalid field.
func New(cfg Config) (*Limiter, error) {
	if err := cfg.normalize(); err != nil {
		return nil, err
	}
	l := &Limiter{
		cfg:        cfg,
		keys:       newKeyBuilder(cfg.Prefix, cfg.IPHashSecret, cfg.Location),
		bypassKeys: make(map[string]bool, len(cfg.BypassAPIKeys)),
	}
	for _, key := range cfg.BypassAPIKeys {
		l.bypassKeys[key] = true
	}
	l.pool.New = func() any { return new(evaluation) }
	l.defaultHandler = handlerConfig{throttles: cfg.Throttles}
	if !cfg.CircuitBreaker.Disabled {
		l.breaker = newBreaker(cfg.CircuitBreaker, cfg.Clock)
	}
	l.fallback = newFallback(cfg.Fallback, cfg.Clock)
	if rs, ok := cfg.Store.(*RedisStore); ok && rs.ignoresDeadlines() && cfg.Logger != nil {
		cfg.Logger.Warn("the Redis client ignores context deadlines, so the store timeout does not bound a call; " +
			"set ContextTimeoutEnabled in its options")
	}
	return l, nil
}

// Store returns the limiter's store.
func (l *Limiter) Store() Store { return l.cfg.Store }

// Policy returns a copy of the limiter's policy.
func (l *Limiter) Policy() Policy { return *l.cfg.Policy }

// evaluation is the scratch space of one decision, reused through a pool.
type evaluation struct {
	req     Request
	batch   Batch
	scopes  []string
	tenants []string
	periods []time.Duration
	shadows []bool
}

// Check decides whether r may proceed under the limiter's ready-made set
// and the handler options, counting it when it may. The error is the store
// error, if any. The Decision then follows the failure policy, or is decided
// on local counters when the fallback is on (Decision.Fallback).
func (l *Limiter) Check(r *http.Request, opts ...HandlerOption) (*Decision, error) {
	h := l.handlerConfig(opts)
	d := &Decision{}
	l.decide(r, h, d, true)
	return d, d.Err
}

// Decide is Check for callers that reuse a Decision: it resets d and fills
// it, without allocating on the memory store once d's Statuses has grown to
// the size of the set. It uses the limiter's set without handler options.
func (l *Limiter) Decide(r *http.Request, d *Decision) error {
	d.reset()
	l.decide(r, &l.defaultHandler, d, true)
	return d.Err
}

// decide fills d for r. With record false it only reads the counters, as
// the usage report needs.
func (l *Limiter) decide(r *http.Request, h *handlerConfig, d *Decision, record bool) {
	id := l.identify(r)
	d.Identity = id

	if reason := l.bypass(id); reason != BypassNone {
		d.Allowed = true
		d.Bypass = reason
		// A usage report is not a request to the API, so it is not
		// reported as a bypassed one.
		if record {
			l.reportBypass(r, d)
		}
		return
	}

	ev := l.pool.Get().(*evaluation)
	defer l.pool.Put(ev)
	l.prepare(ev, d, r, id, h)

	if len(ev.batch.Counters) == 0 {
		d.Allowed = true
		return
	}

	err := l.runStore(r.Context(), &ev.batch, record)
	if err != nil {
		d.Err = err
		if l.fallback == nil {
			d.Allowed = !l.cfg.FailClosed
			l.reportStoreError(r, d)
			return
		}
		d.Fallback = true
		l.fallback.run(&ev.batch, record)
	}

	l.collect(ev, d)
	if d.Fallback {
		l.reportStoreError(r, d)
	}
	if record {
		l.report(r, d)
	}
}

// identify returns the caller of r.
func (l *Limiter) identify(r *http.Request) Identity {
	if l.cfg.Identify != nil {
		return l.cfg.Identify(r)
	}
	id, _ := IdentityFrom(r.Context())
	return id
}

// bypass returns why id skips the throttles, if it does. Only the identity
// that the host service established is consulted, never the request.
func (l *Limiter) bypass(id Identity) Bypass {
	if !l.cfg.ThrottleStaff {
		if id.Superuser {
			return BypassSuperuser
		}
		if id.Staff {
			return BypassStaff
		}
	}
	if id.APIKey != "" && l.bypassKeys[id.APIKey] {
		return BypassAPIKey
	}
	return BypassNone
}

// prepare fills ev with the request and the batch of its counters. The
// keys are written into d's buffer, so they live as long as d does.
func (l *Limiter) prepare(ev *evaluation, d *Decision, r *http.Request, id Identity, h *handlerConfig) {
	ev.batch.Reset()
	ev.scopes = ev.scopes[:0]
	ev.tenants = ev.tenants[:0]
	ev.periods = ev.periods[:0]
	ev.shadows = ev.shadows[:0]
	keys := &d.keys
	keys.reset()

	ev.req = Request{HTTP: r, Identity: id, Scopes: h.scopes, Bulk: h.bulk}
	if addr, ok := l.cfg.ClientIP.ClientIP(r); ok {
		ev.req.ClientIP = addr
		ev.req.IPHash = l.ipHash(addr)
	}
	if id.APIKey != "" {
		ev.req.APIKeyHash = l.apiKeyHash(id.APIKey)
	}

	now := l.cfg.Clock.Now().In(l.cfg.Location)
	today := l.days.day(now)
	for _, t := range h.throttles {
		limit, ok := t.Limit(&ev.req)
		if !ok {
			continue
		}
		keys.start()
		keys.buf = l.keys.appendCounterKey(keys.buf, t.Scope(), limit.Tenant, limit.Subject)
		c := Counter{Limit: limit.Rate.Limit, Period: limit.Rate.Period, Shadow: limit.Shadow}
		period := limit.Rate.Period
		if limit.Calendar {
			keys.buf = append(append(keys.buf, ':'), today.date[:]...)
			c.WindowEnd = today.end
			period = 24 * time.Hour
		}
		c.Key = keys.end()
		if limit.OnlyFlagged {
			keys.start()
			keys.buf = l.keys.appendFlagKey(keys.buf, ev.req.IPHash)
			c.FlagKey = keys.end()
		}
		ev.batch.Counters = append(ev.batch.Counters, c)
		ev.scopes = append(ev.scopes, t.Scope())
		ev.tenants = append(ev.tenants, limit.Tenant)
		ev.periods = append(ev.periods, period)
		ev.shadows = append(ev.shadows, limit.Shadow)
	}

	if !l.cfg.Shadow {
		keys.start()
		keys.buf = l.keys.appendDenialKey(keys.buf, id.TenantSlug(), today.date[:])
		ev.batch.DenialKey = keys.end()
		ev.batch.DenialTTL = l.cfg.DenialRetention
	}
}

// runStore calls the store under the configured timeout, unless the
// circuit breaker is open, and reports the outcome to the breaker.
func (l *Limiter) runStore(ctx context.Context, b *Batch, record bool) error {
	probe := false
	if l.breaker != nil {
		var ok bool
		if ok, probe = l.breaker.allow(); !ok {
			return errCircuitOpen
		}
	}

	// The memory store never waits, so it skips the timer a timeout costs.
	callCtx := ctx
	if _, local := l.cfg.Store.(*MemoryStore); !local {
		var cancel context.CancelFunc
		callCtx, cancel = context.WithTimeout(ctx, l.cfg.StoreTimeout)
		defer cancel()
	}

	var start time.Time
	if l.cfg.Hooks.StoreCall != nil {
		start = time.Now()
	}
	var err error
	if record {
		err = l.cfg.Store.Take(callCtx, b)
	} else {
		err = l.cfg.Store.Peek(callCtx, b)
	}
	if l.cfg.Hooks.StoreCall != nil {
		l.cfg.Hooks.StoreCall(time.Since(start), err)
	}

	if l.breaker != nil {
		l.reportToBreaker(ctx, err, probe)
	}
	return err
}

// collect turns the store's results into the decision.
func (l *Limiter) collect(ev *evaluation, d *Decision) {
	b := &ev.batch
	d.Now = b.Now
	d.Statuses = slices.Grow(d.Statuses[:0], len(b.Counters))
	for i := range b.Counters {
		res := &b.Results[i]
		if !res.Applied {
			continue
		}
		c := &b.Counters[i]
		d.Statuses = append(d.Statuses, Status{
			Scope:      ev.scopes[i],
			Tenant:     ev.tenants[i],
			Key:        c.Key,
			Limit:      c.Limit,
			Period:     ev.periods[i],
			Remaining:  res.Remaining,
			Reset:      b.Now.Add(res.ResetAfter),
			RetryAfter: res.RetryAfter,
			Allowed:    res.Allowed,
			Shadow:     ev.shadows[i] || l.cfg.Shadow,
		})
	}
	d.Allowed = b.Allowed
	d.summarize()
	if !b.Allowed && l.cfg.Shadow {
		d.Allowed = true
		d.ShadowDenied = true
	}
}
