package throttle

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// storeHarness is a store under test with control of its clock.
type storeHarness struct {
	store Store
	// now returns the store's current time.
	now func() time.Time
	// advance moves the store's clock forward (or back, for a negative d).
	advance func(d time.Duration)
	// prefix starts every key the test writes, so runs against a shared
	// server do not meet.
	prefix string
	// slack is how far the clock can move on its own between two calls of
	// a test: zero for a clock the test controls, some milliseconds for a
	// real server's clock.
	slack time.Duration
	// tagKeys wraps each key's name in braces, so that Redis Cluster hashes
	// the name alone and the counters of one test land in different slots,
	// as a request's user and client IP counters do.
	tagKeys bool
}

// key returns a key unique to the test.
func (h *storeHarness) key(name string) string {
	if h.tagKeys {
		return h.prefix + ":{" + name + "}"
	}
	return h.prefix + ":" + name
}

// runStoreConformance runs the behaviour every Store must have.
func runStoreConformance(t *testing.T, newHarness func(t *testing.T) *storeHarness) {
	ctx := context.Background()

	t.Run("allows limit then denies", func(t *testing.T) {
		h := newHarness(t)
		c := Counter{Key: h.key("c"), Limit: 3, Period: time.Minute}
		for i := int64(1); i <= 3; i++ {
			b := take(t, h, c)
			require.True(t, b.Allowed, "request %d", i)
			assert.Equal(t, 3-i, b.Results[0].Remaining)
			assert.True(t, b.Results[0].Applied)
		}
		b := take(t, h, c)
		assert.False(t, b.Allowed)
		assert.False(t, b.Results[0].Allowed)
		assert.Equal(t, int64(0), b.Results[0].Remaining)
		assert.Greater(t, b.Results[0].RetryAfter, time.Duration(0))
		assert.LessOrEqual(t, b.Results[0].RetryAfter, time.Minute)
	})

	t.Run("allowed again after retry after", func(t *testing.T) {
		h := newHarness(t)
		c := Counter{Key: h.key("c"), Limit: 2, Period: 10 * time.Second}
		take(t, h, c)
		h.advance(3 * time.Second)
		take(t, h, c)
		b := take(t, h, c)
		require.False(t, b.Allowed)
		wait := b.Results[0].RetryAfter
		h.advance(wait - time.Millisecond - h.slack)
		assert.False(t, take(t, h, c).Allowed, "just before retry after")
		h.advance(time.Millisecond + h.slack)
		assert.True(t, take(t, h, c).Allowed, "at retry after")
	})

	t.Run("reset after bounded by period", func(t *testing.T) {
		h := newHarness(t)
		c := Counter{Key: h.key("c"), Limit: 5, Period: time.Hour}
		b := take(t, h, c)
		assert.Equal(t, time.Hour, b.Results[0].ResetAfter)
		h.advance(10 * time.Minute)
		b = take(t, h, c)
		assert.Equal(t, time.Hour, b.Results[0].ResetAfter)
		assert.Equal(t, int64(3), b.Results[0].Remaining)
	})

	t.Run("full quota after period", func(t *testing.T) {
		h := newHarness(t)
		c := Counter{Key: h.key("c"), Limit: 2, Period: time.Minute}
		take(t, h, c)
		take(t, h, c)
		require.False(t, take(t, h, c).Allowed)
		h.advance(time.Minute)
		b := take(t, h, c)
		require.True(t, b.Allowed)
		assert.Equal(t, int64(1), b.Results[0].Remaining)
	})

	t.Run("all or nothing", func(t *testing.T) {
		h := newHarness(t)
		small := Counter{Key: h.key("small"), Limit: 1, Period: time.Minute}
		large := Counter{Key: h.key("large"), Limit: 10, Period: time.Minute}
		require.True(t, take(t, h, small, large).Allowed)
		for range 5 {
			b := take(t, h, small, large)
			require.False(t, b.Allowed)
			assert.True(t, b.Results[1].Allowed, "the large counter had room")
			assert.Equal(t, int64(9), b.Results[1].Remaining, "a denied batch used no quota")
		}
		b := peek(t, h, large)
		assert.Equal(t, int64(9), b.Results[0].Remaining)
	})

	t.Run("shadow counter never denies", func(t *testing.T) {
		h := newHarness(t)
		shadow := Counter{Key: h.key("shadow"), Limit: 1, Period: time.Minute, Shadow: true}
		real := Counter{Key: h.key("real"), Limit: 10, Period: time.Minute}
		take(t, h, shadow, real)
		b := take(t, h, shadow, real)
		assert.True(t, b.Allowed)
		assert.False(t, b.Results[0].Allowed, "the shadow counter reports it is full")
		assert.Equal(t, int64(8), b.Results[1].Remaining)
	})

	t.Run("peek records nothing", func(t *testing.T) {
		h := newHarness(t)
		c := Counter{Key: h.key("c"), Limit: 3, Period: time.Minute}
		take(t, h, c)
		for range 5 {
			b := peek(t, h, c)
			assert.True(t, b.Allowed)
			assert.Equal(t, int64(2), b.Results[0].Remaining)
		}
	})

	t.Run("fixed window", func(t *testing.T) {
		h := newHarness(t)
		end := h.now().Add(90 * time.Second)
		c := Counter{Key: h.key("day"), Limit: 2, Period: 24 * time.Hour, WindowEnd: end}
		b := take(t, h, c)
		require.True(t, b.Allowed)
		assert.Equal(t, int64(1), b.Results[0].Remaining)
		assert.InDelta(t, float64(90*time.Second), float64(b.Results[0].ResetAfter), float64(time.Second))
		take(t, h, c)
		b = take(t, h, c)
		require.False(t, b.Allowed)
		assert.InDelta(t, float64(90*time.Second), float64(b.Results[0].RetryAfter), float64(time.Second))
		h.advance(89 * time.Second)
		assert.False(t, take(t, h, c).Allowed, "still the same window")

		next := Counter{Key: h.key("day2"), Limit: 2, Period: 24 * time.Hour, WindowEnd: end.Add(24 * time.Hour)}
		assert.True(t, take(t, h, next).Allowed, "the next window has its own key")
	})

	t.Run("flag gates counter", func(t *testing.T) {
		h := newHarness(t)
		flag := h.key("flag")
		c := Counter{Key: h.key("suspicious"), Limit: 1, Period: time.Hour, FlagKey: flag}
		b := take(t, h, c)
		assert.True(t, b.Allowed)
		assert.False(t, b.Results[0].Applied, "not flagged yet")

		until := h.now().Add(time.Hour)
		require.NoError(t, h.store.SetFlag(ctx, flag, until))
		expiry, set, err := h.store.FlagExpiry(ctx, flag)
		require.NoError(t, err)
		assert.True(t, set)
		assert.Equal(t, until.UnixMilli(), expiry.UnixMilli())

		b = take(t, h, c)
		assert.True(t, b.Results[0].Applied)
		assert.True(t, b.Allowed)
		assert.False(t, take(t, h, c).Allowed, "flagged and over the suspicious rate")

		deleted, err := h.store.DeleteFlag(ctx, flag)
		require.NoError(t, err)
		assert.True(t, deleted)
		assert.True(t, take(t, h, c).Allowed, "unflagged")
		deleted, err = h.store.DeleteFlag(ctx, flag)
		require.NoError(t, err)
		assert.False(t, deleted, "already unflagged")
	})

	t.Run("flag expires", func(t *testing.T) {
		h := newHarness(t)
		flag := h.key("flag")
		require.NoError(t, h.store.SetFlag(ctx, flag, h.now().Add(time.Minute)))
		h.advance(time.Minute + time.Millisecond)
		_, set, err := h.store.FlagExpiry(ctx, flag)
		require.NoError(t, err)
		assert.False(t, set)
	})

	t.Run("denial key counts denials only", func(t *testing.T) {
		h := newHarness(t)
		c := Counter{Key: h.key("c"), Limit: 1, Period: time.Minute}
		denials := h.key("denials")
		for range 4 {
			b := &Batch{Counters: []Counter{c}, DenialKey: denials, DenialTTL: time.Hour}
			require.NoError(t, h.store.Take(ctx, b))
		}
		n, err := h.store.Count(ctx, denials)
		require.NoError(t, err)
		assert.Equal(t, int64(3), n)

		b := &Batch{Counters: []Counter{c}, DenialKey: denials, DenialTTL: time.Hour}
		require.NoError(t, h.store.Peek(ctx, b))
		n, err = h.store.Count(ctx, denials)
		require.NoError(t, err)
		assert.Equal(t, int64(3), n, "peek counts no denial")
	})

	t.Run("count of missing key", func(t *testing.T) {
		h := newHarness(t)
		n, err := h.store.Count(ctx, h.key("missing"))
		require.NoError(t, err)
		assert.Equal(t, int64(0), n)
	})

	t.Run("delete matching", func(t *testing.T) {
		h := newHarness(t)
		a1 := Counter{Key: h.key("a:1"), Limit: 5, Period: time.Minute}
		a2 := Counter{Key: h.key("a:2"), Limit: 5, Period: time.Minute}
		other := Counter{Key: h.key("b:1"), Limit: 5, Period: time.Minute}
		take(t, h, a1, a2, other)
		deleted, err := h.store.DeleteMatching(ctx, h.key("a:*"))
		require.NoError(t, err)
		assert.Equal(t, 2, deleted)
		assert.Equal(t, int64(4), take(t, h, a1).Results[0].Remaining)
		assert.Equal(t, int64(3), take(t, h, other).Results[0].Remaining)
	})

	t.Run("clock stepping back keeps counts", func(t *testing.T) {
		h := newHarness(t)
		c := Counter{Key: h.key("c"), Limit: 2, Period: time.Minute}
		take(t, h, c)
		take(t, h, c)
		h.advance(-30 * time.Second)
		b := take(t, h, c)
		assert.False(t, b.Allowed)
		assert.Equal(t, int64(0), b.Results[0].Remaining)
		assert.LessOrEqual(t, b.Results[0].RetryAfter, time.Minute+30*time.Second)
	})

	t.Run("exactly limit under concurrency", func(t *testing.T) {
		h := newHarness(t)
		c := Counter{Key: h.key("c"), Limit: 25, Period: time.Hour}
		other := Counter{Key: h.key("other"), Limit: 1000, Period: time.Hour}
		var allowed atomic.Int64
		var wg sync.WaitGroup
		for range 100 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				b := &Batch{Counters: []Counter{c, other}}
				if err := h.store.Take(ctx, b); err == nil && b.Allowed {
					allowed.Add(1)
				}
			}()
		}
		wg.Wait()
		assert.Equal(t, int64(25), allowed.Load())
		assert.Equal(t, int64(975), peek(t, h, other).Results[0].Remaining)
	})

	t.Run("no overshoot when every counter binds", func(t *testing.T) {
		// Both counters run out under concurrency, so on a cluster, where
		// they are taken in separate slots, requests that one slot denies
		// are refunded in the other. Whatever the interleaving, neither
		// counter may pass its limit or keep a refunded request.
		h := newHarness(t)
		first := Counter{Key: h.key("first"), Limit: 10, Period: time.Hour}
		second := Counter{Key: h.key("second"), Limit: 12, Period: time.Hour}
		var allowed atomic.Int64
		var wg sync.WaitGroup
		for range 60 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				b := &Batch{Counters: []Counter{first, second}}
				if err := h.store.Take(ctx, b); err == nil && b.Allowed {
					allowed.Add(1)
				}
			}()
		}
		wg.Wait()
		require.LessOrEqual(t, allowed.Load(), int64(10))

		// Taking one at a time until denied reaches the limit exactly.
		for allowed.Load() < 20 && take(t, h, first, second).Allowed {
			allowed.Add(1)
		}
		assert.Equal(t, int64(10), allowed.Load())
		b := peek(t, h, first, second)
		assert.Equal(t, int64(0), b.Results[0].Remaining)
		assert.Equal(t, int64(2), b.Results[1].Remaining, "denied requests were refunded")
	})

	t.Run("never more than limit in any period", func(t *testing.T) {
		h := newHarness(t)
		rng := rand.New(rand.NewPCG(1, 2))
		const limit, period = 7, 10 * time.Second
		c := Counter{Key: h.key("c"), Limit: limit, Period: period}
		var allowed []time.Time
		for range 400 {
			h.advance(time.Duration(rng.IntN(1500)) * time.Millisecond)
			if b := take(t, h, c); b.Allowed {
				allowed = append(allowed, b.Now)
			}
		}
		require.NotEmpty(t, allowed)
		for i := range allowed {
			j := i + limit
			if j < len(allowed) {
				assert.GreaterOrEqual(t, allowed[j].Sub(allowed[i]), period,
					"requests %d and %d are less than a period apart", i, j)
			}
		}
	})
}

func take(t *testing.T, h *storeHarness, counters ...Counter) *Batch {
	t.Helper()
	b := &Batch{Counters: counters}
	require.NoError(t, h.store.Take(context.Background(), b))
	require.Len(t, b.Results, len(counters))
	return b
}

func peek(t *testing.T, h *storeHarness, counters ...Counter) *Batch {
	t.Helper()
	b := &Batch{Counters: counters}
	require.NoError(t, h.store.Peek(context.Background(), b))
	return b
}

// testEpoch is a fixed start time for clocks under test.
var testEpoch = time.Date(2026, 3, 14, 15, 9, 26, 0, time.UTC)

func newMemoryHarness(t *testing.T) *storeHarness {
	clock := NewManualClock(testEpoch)
	return &storeHarness{
		store:   NewMemoryStore(MemoryConfig{Clock: clock}),
		now:     clock.Now,
		advance: clock.Advance,
		prefix:  fmt.Sprintf("test-%d", rand.Int64()),
	}
}

func TestMemoryStoreConformance(t *testing.T) {
	runStoreConformance(t, newMemoryHarness)
}
