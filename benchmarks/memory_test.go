package benchmarks

import (
	"testing"
)

// BenchmarkHotKey measures one decision at a time for a single key, the cost
// a service pays when all its traffic comes from one client.
func BenchmarkHotKey(b *testing.B) {
	b.Run("throttle", func(b *testing.B) { benchHotKey(b, throttleMemoryDecider(b)) })
	b.Run("golimiter", func(b *testing.B) { benchHotKey(b, goLimiterDecider(b)) })
	b.Run("ulule", func(b *testing.B) { benchHotKey(b, ululeDecider(newUluleMemoryLimiter())) })
	b.Run("httprate", func(b *testing.B) { benchHotKey(b, httprateDecider()) })
	b.Run("throttled", func(b *testing.B) { benchHotKey(b, throttledDecider(b)) })
}

func benchHotKey(b *testing.B, src deciderSource) {
	d := src()
	// The first decision creates the key's state. The scenario measures the
	// decisions that follow, so this one is made before the timer starts.
	mustAllow(b, d, hotKey)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		allowed, err := d(hotKey)
		if err != nil || !allowed {
			b.Fatalf("decision for %q failed (allowed=%v, err=%v), but the limit is never reached", hotKey, allowed, err)
		}
	}
}

// BenchmarkManyKeysParallel measures decisions from all cores at once, spread
// over keyCount distinct keys, the shape of a busy public endpoint.
func BenchmarkManyKeysParallel(b *testing.B) {
	b.Run("throttle", func(b *testing.B) { benchManyKeysParallel(b, throttleMemoryDecider(b)) })
	b.Run("golimiter", func(b *testing.B) { benchManyKeysParallel(b, goLimiterDecider(b)) })
	b.Run("ulule", func(b *testing.B) { benchManyKeysParallel(b, ululeDecider(newUluleMemoryLimiter())) })
	b.Run("httprate", func(b *testing.B) { benchManyKeysParallel(b, httprateDecider()) })
	b.Run("throttled", func(b *testing.B) { benchManyKeysParallel(b, throttledDecider(b)) })
}

func benchManyKeysParallel(b *testing.B, src deciderSource) {
	// Every key gets its state before the timer starts, so the run measures
	// the steady state and not the creation of keyCount entries.
	warm := src()
	for _, key := range keys {
		mustAllow(b, warm, key)
	}
	var offsets startOffsets
	b.ReportAllocs()
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		d := src()
		i := offsets.take()
		for pb.Next() {
			allowed, err := d(keys[i])
			if err != nil || !allowed {
				// Fatal may only be called from the benchmark's own
				// goroutine, so this goroutine reports and stops.
				b.Errorf("decision for %q failed (allowed=%v, err=%v), but the limit is never reached", keys[i], allowed, err)
				return
			}
			i++
			if i == keyCount {
				i = 0
			}
		}
	})
}

// mustAllow makes one untimed decision and stops the benchmark if it was not
// allowed, since every scenario is meant to measure the allowed path.
func mustAllow(b *testing.B, d decide, key string) {
	b.Helper()
	allowed, err := d(key)
	if err != nil || !allowed {
		b.Fatalf("warm-up decision for %q failed (allowed=%v, err=%v), but the limit is never reached", key, allowed, err)
	}
}
