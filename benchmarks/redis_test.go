package benchmarks

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"testing"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"
	ulule "github.com/ulule/limiter/v3"
	ululeredis "github.com/ulule/limiter/v3/drivers/store/redis"
	"github.com/zumodra/throttle"
)

// redisAddrEnv names the variable that points the Redis benchmarks at a
// server (host:port). Without it they skip, so a plain benchmark run never
// opens a network connection.
const redisAddrEnv = "THROTTLE_REDIS_ADDR"

// redisWorkers is how many goroutines BenchmarkRedisParallel50 runs at once.
// It is an estimate of the concurrent requests of one busy service instance.
const redisWorkers = 50

// redisPoolSize gives every worker of the parallel scenario its own
// connection, so the pool does not queue the workers and the measurement is
// the limiter and the server, not the wait for a free connection.
const redisPoolSize = 64

// redisRun is the state shared by the sub-benchmarks of one top-level Redis
// benchmark: one client, and a key prefix that no other run uses.
type redisRun struct {
	client *redis.Client
	prefix string
	// warmed records the libraries whose keys already exist on the server.
	// The testing package calls a sub-benchmark several times with growing
	// b.N, and the keys outlive each call, so they are created only once.
	warmed map[string]bool
}

// newRedisRun connects to the server named by THROTTLE_REDIS_ADDR and talks
// to no other address. It registers the removal of every key the run creates,
// found by SCAN on the run's prefix, so nothing else on the server is touched.
func newRedisRun(b testing.TB) *redisRun {
	b.Helper()
	addr := os.Getenv(redisAddrEnv)
	if addr == "" {
		b.Skip(redisAddrEnv + " not set")
	}

	client := redis.NewClient(&redis.Options{Addr: addr, PoolSize: redisPoolSize})
	b.Cleanup(func() {
		if err := client.Close(); err != nil {
			b.Error(err)
		}
	})

	ctx := context.Background()
	if err := client.Ping(ctx).Err(); err != nil {
		b.Fatalf("connecting to Redis at %s failed: %v (check %s)", addr, err, redisAddrEnv)
	}

	run := &redisRun{
		client: client,
		prefix: fmt.Sprintf("throttle-bench-%d-%d", os.Getpid(), time.Now().UnixNano()),
		warmed: make(map[string]bool),
	}

	// Cleanups run last-registered first, so the keys are deleted while the
	// client is still open.
	b.Cleanup(func() {
		// redis_rate puts its own fixed "rate:" in front of every key.
		for _, pattern := range []string{run.prefix + ":*", "rate:" + run.prefix + ":*"} {
			if err := deleteMatching(ctx, client, pattern); err != nil {
				b.Errorf("deleting benchmark keys %q: %v", pattern, err)
			}
		}
	})
	return run
}

// deleteMatching removes the keys that match pattern, in batches, using SCAN
// so the server is never blocked by a KEYS call.
func deleteMatching(ctx context.Context, client *redis.Client, pattern string) error {
	const batch = 500
	var cursor uint64
	for {
		found, next, err := client.Scan(ctx, cursor, pattern, batch).Result()
		if err != nil {
			return err
		}
		if len(found) > 0 {
			if err := client.Del(ctx, found...).Err(); err != nil {
				return err
			}
		}
		if next == 0 {
			return nil
		}
		cursor = next
	}
}

// ululeRedisDecider builds ulule's Redis store with a single limit. Its keys
// are the run prefix, ":ulule:" and the benchmark key.
func (run *redisRun) ululeRedisDecider(b testing.TB) deciderSource {
	b.Helper()
	store, err := ululeredis.NewStoreWithOptions(run.client, ulule.StoreOptions{Prefix: run.prefix + ":ulule"})
	if err != nil {
		b.Fatal(err)
	}
	return ululeDecider(ulule.New(store, ulule.Rate{Period: window, Limit: hugeLimit}))
}

// throttleRedisDecider builds a limiter with the ready-made set on a Redis
// store. Its keys start with the run prefix.
func (run *redisRun) throttleRedisDecider(b testing.TB) deciderSource {
	b.Helper()
	lim, err := throttle.New(throttle.Config{
		Store:        throttle.NewRedisStore(run.client),
		Policy:       benchPolicy(),
		Prefix:       run.prefix,
		StoreTimeout: 5 * time.Second,
	})
	if err != nil {
		b.Fatal(err)
	}
	return throttleDecider(lim)
}

// redisRateDecider builds a redis_rate GCRA limiter with a single limit. The
// prefixed keys are built once here, so building them is not measured. The
// decide function looks up the prefixed form of a benchmark key.
func (run *redisRun) redisRateDecider() deciderSource {
	lim := redis_rate.NewLimiter(run.client)
	limit := redis_rate.Limit{Rate: hugeLimit, Burst: hugeLimit, Period: window}
	prefixed := make(map[string]string, keyCount)
	for _, key := range keys {
		prefixed[key] = run.prefix + ":redis_rate:" + key
	}
	ctx := context.Background()
	return shared(func(key string) (bool, error) {
		res, err := lim.Allow(ctx, prefixed[key], limit)
		if err != nil {
			return false, err
		}
		return res.Allowed > 0, nil
	})
}

// BenchmarkRedisSerial measures one decision at a time against Redis, each
// on the next of keyCount keys, so every iteration is a full round trip.
func BenchmarkRedisSerial(b *testing.B) {
	run := newRedisRun(b)
	b.Run("throttle", func(b *testing.B) { benchRedisSerial(b, run, "throttle", run.throttleRedisDecider(b)) })
	b.Run("ulule", func(b *testing.B) { benchRedisSerial(b, run, "ulule", run.ululeRedisDecider(b)) })
	b.Run("redis_rate", func(b *testing.B) { benchRedisSerial(b, run, "redis_rate", run.redisRateDecider()) })
}

func benchRedisSerial(b *testing.B, run *redisRun, library string, src deciderSource) {
	d := src()
	run.warm(b, library, d)
	b.ReportAllocs()
	b.ResetTimer()
	i := 0
	for b.Loop() {
		allowed, err := d(keys[i])
		if err != nil || !allowed {
			b.Fatalf("decision for %q failed (allowed=%v, err=%v), but the limit is never reached", keys[i], allowed, err)
		}
		i++
		if i == keyCount {
			i = 0
		}
	}
}

// BenchmarkRedisParallel50 measures redisWorkers goroutines deciding against
// Redis at once, each walking the keys from its own starting point.
func BenchmarkRedisParallel50(b *testing.B) {
	run := newRedisRun(b)
	b.Run("throttle", func(b *testing.B) { benchRedisParallel(b, run, "throttle", run.throttleRedisDecider(b)) })
	b.Run("ulule", func(b *testing.B) { benchRedisParallel(b, run, "ulule", run.ululeRedisDecider(b)) })
	b.Run("redis_rate", func(b *testing.B) { benchRedisParallel(b, run, "redis_rate", run.redisRateDecider()) })
}

func benchRedisParallel(b *testing.B, run *redisRun, library string, src deciderSource) {
	run.warm(b, library, src())
	// RunParallel starts parallelism times GOMAXPROCS goroutines, so round
	// up to reach at least redisWorkers whatever the core count.
	procs := runtime.GOMAXPROCS(0)
	b.SetParallelism((redisWorkers + procs - 1) / procs)
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

// warm gives every key of library its state on the server before the timer
// starts, so the timed loop measures decisions on existing keys, as in the
// in-memory scenarios.
func (run *redisRun) warm(b *testing.B, library string, d decide) {
	b.Helper()
	if run.warmed[library] {
		return
	}
	for _, key := range keys {
		mustAllow(b, d, key)
	}
	run.warmed[library] = true
}
