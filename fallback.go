package throttle

import "fmt"

// FallbackConfig configures the local fallback: what the limiter decides
// while the store fails. The zero value turns it off, and the failure
// policy (fail open or fail closed) applies instead.
//
// With the fallback on, a request that meets a failing store (an error, a
// timeout or an open circuit breaker) is decided on counters kept in this
// instance's memory, with each limit divided by Instances, rounded down and
// at least 1. With 2 instances behind a load balancer, a 10/minute rate
// allows 5 per minute on each, so the service as a whole stays near its
// limits during a Redis outage instead of being unlimited or unavailable.
// The decision carries the store error in Decision.Err and has
// Decision.Fallback set, and the response is the normal one: limit fields,
// and 429 when the local counters deny.
//
// The local counters are private to the instance and start empty, so
// requests already counted in the store before the outage are not known to
// them, and requests counted locally are not added to the store when it is
// back. Flags live in the store, so the suspicious-IP throttle does not
// apply during an outage, and denials are not counted per tenant.
type FallbackConfig struct {
	// Instances is the number of instances of the service that share the
	// store, by which each limit is divided. Zero turns the fallback off.
	Instances int
}

// normalize checks c. Errors name the field under the fallback prefix.
func (c *FallbackConfig) normalize() error {
	if c.Instances < 0 {
		return fmt.Errorf("fallback.instances: invalid value %d: must be 0 (off) or positive", c.Instances)
	}
	return nil
}

// fallback decides batches on a private memory store while the real store
// fails.
type fallback struct {
	instances int64
	store     *MemoryStore
}

// newFallback returns the fallback for cfg, or nil when it is off.
func newFallback(cfg FallbackConfig, clock Clock) *fallback {
	if cfg.Instances == 0 {
		return nil
	}
	return &fallback{
		instances: int64(cfg.Instances),
		store:     NewMemoryStore(MemoryConfig{Clock: clock}),
	}
}

// run decides b on the local counters. It changes b in place: each limit
// becomes this instance's share, which is what the decision and the limit
// fields then report, and the denial key is dropped because denials are
// counted only in the shared store.
func (f *fallback) run(b *Batch, record bool) {
	for i := range b.Counters {
		c := &b.Counters[i]
		c.Limit = max(1, c.Limit/f.instances)
	}
	b.DenialKey = ""
	b.DenialTTL = 0
	// MemoryStore.apply returns nil whatever the batch.
	_ = f.store.apply(b, record)
}
