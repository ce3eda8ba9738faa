package throttle

import (
	"context"
	"errors"
	"time"
)

// ErrStoreUnavailable is returned, wrapped, by a store that could not reach
// its backend. The middleware treats every store error the same way, by its
// failure policy; this sentinel lets callers tell an outage from a bug.
var ErrStoreUnavailable = errors.New("throttle: store unavailable")

// Store keeps counters and flags. Every method takes a context first; a store
// must return when it is done. Implementations must be safe for concurrent
// use. The memory store and the Redis store pass one shared conformance suite.
type Store interface {
	// Take checks every counter of b against its limit and, only when every
	// applicable non-shadow counter has room, records one request in each
	// applicable counter. It fills b.Results and b.Allowed. A denied batch
	// changes no counter, but increments b.DenialKey when that is set. The
	// check and the update are atomic: concurrent batches never overshoot.
	Take(ctx context.Context, b *Batch) error

	// Peek fills b.Results and b.Allowed as Take would, without recording
	// anything. The usage report uses it.
	Peek(ctx context.Context, b *Batch) error

	// SetFlag marks key as flagged until the absolute time until. A counter
	// whose FlagKey is key applies while the flag is set.
	SetFlag(ctx context.Context, key string, until time.Time) error

	// DeleteFlag removes a flag early. It reports whether the flag was set.
	DeleteFlag(ctx context.Context, key string) (bool, error)

	// FlagExpiry returns the expiry of the flag at key, and false when the
	// flag is not set.
	FlagExpiry(ctx context.Context, key string) (time.Time, bool, error)

	// DeleteMatching deletes every key that matches the glob pattern, in
	// which only '*' is special, and returns how many it deleted.
	DeleteMatching(ctx context.Context, pattern string) (int, error)

	// Count returns the value of a plain counter, such as a denial counter,
	// or 0 when the key does not exist.
	Count(ctx context.Context, key string) (int64, error)
}

// Counter is one counter of a batch: a key with its rate.
type Counter struct {
	// Key names the counter. It is built by the limiter's key builder and is
	// unique per (prefix, scope, tenant, subject, window).
	Key string
	// Limit is the number of requests allowed per Period.
	Limit int64
	// Period is the length of the sliding window. It is ignored when
	// WindowEnd is set.
	Period time.Duration
	// WindowEnd, when not zero, makes the counter a fixed window (a calendar
	// day) that ends at this time; the key then names the window.
	WindowEnd time.Time
	// FlagKey, when not empty, makes the counter apply only while that flag
	// is set. The suspicious-IP throttle uses it.
	FlagKey string
	// Shadow counters are counted and reported but never deny a batch.
	Shadow bool
}

// CounterResult is the outcome a store reports for one counter of a batch.
type CounterResult struct {
	// Applied is false when the counter's flag was not set; the other fields
	// are then zero.
	Applied bool
	// Allowed reports whether the counter had room for this request.
	Allowed bool
	// Remaining is the number of requests left after this one, never negative.
	Remaining int64
	// ResetAfter is the time until the counter is back to its full limit.
	ResetAfter time.Duration
	// RetryAfter is, for a counter without room, the time until it has room
	// for one request again; zero for a counter with room.
	RetryAfter time.Duration
}

// Batch is the set of counters of one request, checked and recorded together.
type Batch struct {
	// Counters lists the counters to check. The caller fills it.
	Counters []Counter
	// DenialKey, when not empty, is a plain counter that a denied Take
	// increments, with DenialTTL as its time to live.
	DenialKey string
	DenialTTL time.Duration

	// Results has one entry per counter, in the same order. The store fills
	// it, reusing its capacity.
	Results []CounterResult
	// Allowed reports whether every applicable non-shadow counter had room.
	Allowed bool
	// Now is the store's clock reading that the results are relative to.
	Now time.Time
}

// Reset clears b for reuse, keeping the capacity of its slices.
func (b *Batch) Reset() {
	b.Counters = b.Counters[:0]
	b.Results = b.Results[:0]
	b.DenialKey = ""
	b.DenialTTL = 0
	b.Allowed = false
	b.Now = time.Time{}
}

// prepareResults sizes b.Results to one zeroed entry per counter.
func (b *Batch) prepareResults() {
	n := len(b.Counters)
	if cap(b.Results) < n {
		b.Results = make([]CounterResult, n)
		return
	}
	b.Results = b.Results[:n]
	clear(b.Results)
}
