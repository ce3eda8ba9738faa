package benchmarks

import (
	"context"
	"runtime"
	"strconv"
	"testing"
	"time"

	"github.com/zumodra/throttle"
)

// scaleCounters is the number of active counters of the scale scenario.
const scaleCounters = 1_000_000

// BenchmarkMemoryStoreScale measures a decision of the memory store when it
// holds a million active counters, and reports the heap each counter costs.
// Each decision checks and records one counter chosen at random among them,
// so the map lookups miss the CPU caches the way a large deployment does.
func BenchmarkMemoryStoreScale(b *testing.B) {
	store := throttle.NewMemoryStore(throttle.MemoryConfig{MaxKeys: 2 * scaleCounters})
	ctx := context.Background()
	counterKeys := make([]string, scaleCounters)
	for i := range counterKeys {
		counterKeys[i] = "throttle:burst:acme:{u." + strconv.Itoa(i) + "}"
	}

	runtime.GC()
	var before runtime.MemStats
	runtime.ReadMemStats(&before)

	batch := &throttle.Batch{Counters: make([]throttle.Counter, 1)}
	for _, key := range counterKeys {
		batch.Counters[0] = throttle.Counter{Key: key, Limit: hugeLimit, Period: time.Hour}
		if err := store.Take(ctx, batch); err != nil || !batch.Allowed {
			b.Fatalf("warm-up of %q failed (allowed=%v, err=%v)", key, batch.Allowed, err)
		}
	}

	runtime.GC()
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	perCounter := float64(after.HeapAlloc-before.HeapAlloc) / scaleCounters

	// A fixed pseudo-random walk, so every run visits the same counters.
	next := uint64(88172645463325252)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		next ^= next << 13
		next ^= next >> 7
		next ^= next << 17
		batch.Counters[0] = throttle.Counter{Key: counterKeys[next%scaleCounters], Limit: hugeLimit, Period: time.Hour}
		if err := store.Take(ctx, batch); err != nil || !batch.Allowed {
			b.Fatalf("decision failed (allowed=%v, err=%v)", batch.Allowed, err)
		}
	}
	b.StopTimer()
	b.ReportMetric(perCounter, "heap-bytes/counter")
	runtime.KeepAlive(counterKeys)
}
