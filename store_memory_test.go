package throttle

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// keysInShard returns n counter keys that all hash to shard.
func keysInShard(t *testing.T, shard, n int) []string {
	t.Helper()
	var keys []string
	for i := 0; len(keys) < n; i++ {
		key := fmt.Sprintf("test:burst:acme:{u.%d}", i)
		if shardIndex(key) == shard {
			keys = append(keys, key)
		}
		require.Less(t, i, 100*memoryShards*n, "too few keys hash to shard %d", shard)
	}
	return keys
}

func takeOne(t *testing.T, store *MemoryStore, key string, limit int64) *Batch {
	t.Helper()
	b := &Batch{Counters: []Counter{{Key: key, Limit: limit, Period: time.Minute}}}
	require.NoError(t, store.Take(context.Background(), b))
	return b
}

func TestMemoryStoreBoundedUnderFlood(t *testing.T) {
	clock := NewManualClock(testEpoch)
	store := NewMemoryStore(MemoryConfig{Clock: clock, MaxKeys: 10 * memoryShards})

	denied := "test:burst:acme:{u.attacker}"
	require.True(t, takeOne(t, store, denied, 1).Allowed)
	require.False(t, takeOne(t, store, denied, 1).Allowed)

	for i := range 20_000 {
		takeOne(t, store, fmt.Sprintf("test:burst:acme:{u.flood-%d}", i), 10)
	}

	assert.LessOrEqual(t, store.Len(), 10*memoryShards, "the store stays within MaxKeys")
	b := takeOne(t, store, denied, 1)
	assert.False(t, b.Allowed, "the counter that was denying was not evicted")
	assert.Equal(t, int64(0), b.Results[0].Remaining)
}

func TestMemoryStoreEvictsExpiredFirst(t *testing.T) {
	clock := NewManualClock(testEpoch)
	store := NewMemoryStore(MemoryConfig{Clock: clock, MaxKeys: memoryShards})
	keys := keysInShard(t, 3, 2)

	require.True(t, takeOne(t, store, keys[0], 1).Allowed)
	clock.Advance(2 * time.Minute)
	require.True(t, takeOne(t, store, keys[1], 1).Allowed)

	assert.Equal(t, 1, store.Len(), "the expired key made room")
	assert.False(t, takeOne(t, store, keys[1], 1).Allowed, "the new key kept its count")
}

func TestMemoryStoreGrowsRatherThanEvictDenying(t *testing.T) {
	clock := NewManualClock(testEpoch)
	store := NewMemoryStore(MemoryConfig{Clock: clock, MaxKeys: memoryShards})
	keys := keysInShard(t, 5, 3)

	for _, key := range keys {
		require.True(t, takeOne(t, store, key, 1).Allowed)
	}

	assert.Equal(t, 3, store.Len(), "no counter was evicted, since each one is denying")
	for _, key := range keys {
		assert.False(t, takeOne(t, store, key, 1).Allowed, "key %q kept its count", key)
	}
}

func TestMemoryStoreSweepsExpiredKeys(t *testing.T) {
	clock := NewManualClock(testEpoch)
	store := NewMemoryStore(MemoryConfig{Clock: clock})
	keys := keysInShard(t, 7, 2*memorySweepEvery)

	for _, key := range keys[:memorySweepEvery-1] {
		takeOne(t, store, key, 10)
	}
	require.Equal(t, memorySweepEvery-1, store.Len())

	clock.Advance(2 * time.Minute)
	for _, key := range keys[memorySweepEvery-1 : memorySweepEvery+9] {
		takeOne(t, store, key, 10)
	}

	// The sweep ran on the memorySweepEvery-th insert and removed the
	// expired keys, which nothing read again.
	assert.Equal(t, 10, store.Len())
}

func TestMemoryStoreTTLMatchesWindow(t *testing.T) {
	clock := NewManualClock(testEpoch)
	store := NewMemoryStore(MemoryConfig{Clock: clock})
	key := "test:burst:acme:{u.42}"

	takeOne(t, store, key, 5)
	clock.Advance(30 * time.Second)
	takeOne(t, store, key, 5)

	sh := &store.shards[shardIndex(key)]
	sh.mu.Lock()
	expires := sh.entries[key].expires
	sh.mu.Unlock()
	assert.Equal(t, testEpoch.Add(90*time.Second).UnixMilli(), expires,
		"the key expires one period after its newest request, no later")
}

func TestMemoryStorePeriodChangeKeepsCount(t *testing.T) {
	// Slots are aligned to the Unix epoch, and so to whole hours.
	start := testEpoch.Truncate(time.Hour)
	clock := NewManualClock(start)
	store := NewMemoryStore(MemoryConfig{Clock: clock})
	key := "test:plan:acme:{u.42}"
	ctx := context.Background()
	take := func(period time.Duration) *Batch {
		t.Helper()
		b := &Batch{Counters: []Counter{{Key: key, Limit: 100, Period: period}}}
		require.NoError(t, store.Take(ctx, b))
		return b
	}

	// Eleven requests in the eleven 6-minute slots of an hour-long window,
	// all still inside it: the window holds its maximum of buckets.
	clock.Advance(5*time.Minute + 54*time.Second)
	take(time.Hour)
	clock.Set(start.Add(6 * time.Minute))
	for range 10 {
		take(time.Hour)
		clock.Advance(6 * time.Minute)
	}

	entry := store.shards[shardIndex(key)].entries[key]
	require.Equal(t, maxBuckets, entry.win.n, "the window is full")

	// The period grows, as after a configuration change, and the next
	// request opens a new bucket: the window merges its two oldest buckets
	// instead of growing, and loses no request.
	clock.Set(start.Add(72*time.Minute + 6*time.Second))
	b := take(2 * time.Hour)
	assert.Equal(t, maxBuckets, entry.win.n, "the window merged instead of growing")
	assert.True(t, b.Allowed)
	assert.Equal(t, int64(100-12), b.Results[0].Remaining)
}
