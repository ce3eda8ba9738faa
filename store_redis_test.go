package throttle

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// newMiniredisHarness runs a store on miniredis, whose clock the test sets.
func newMiniredisHarness(t *testing.T) *storeHarness {
	t.Helper()
	server := miniredis.RunT(t)
	server.SetTime(testEpoch)
	client := redis.NewClient(&redis.Options{Addr: server.Addr()})
	t.Cleanup(func() { client.Close() })
	store := NewRedisStore(client)
	var offset time.Duration
	return &storeHarness{
		store: store,
		now:   func() time.Time { return testEpoch.Add(offset) },
		advance: func(d time.Duration) {
			offset += d
			store.offsetMillis.Add(d.Milliseconds())
			if d > 0 {
				server.FastForward(d)
			}
		},
		prefix: "test",
	}
}

func TestRedisStoreConformanceMiniredis(t *testing.T) {
	runStoreConformance(t, newMiniredisHarness)
}

// realRedisClient connects to the server named by THROTTLE_REDIS_ADDR, and
// skips the test when the variable is not set.
func realRedisClient(t *testing.T) *redis.Client {
	t.Helper()
	addr := os.Getenv("THROTTLE_REDIS_ADDR")
	if addr == "" {
		t.Skip("THROTTLE_REDIS_ADDR is not set; set it to host:port of a redis-server to run this test")
	}
	client := redis.NewClient(&redis.Options{Addr: addr})
	t.Cleanup(func() { client.Close() })
	require.NoError(t, client.Ping(context.Background()).Err(), "THROTTLE_REDIS_ADDR=%s", addr)
	return client
}

// newServerHarness runs a store on a real server. The server's clock moves
// on its own, so the harness moves the store's view of it with the test
// offset, and every key gets a prefix unique to the test, deleted after it.
func newServerHarness(t *testing.T, client redis.UniversalClient) *storeHarness {
	t.Helper()
	store := NewRedisStore(client)
	prefix := fmt.Sprintf("throttle-test-%d", rand.Int64())
	t.Cleanup(func() {
		_, _ = store.DeleteMatching(context.Background(), prefix+"*")
	})
	return &storeHarness{
		store: store,
		now: func() time.Time {
			serverTime, err := client.Time(context.Background()).Result()
			require.NoError(t, err)
			return serverTime.Add(time.Duration(store.offsetMillis.Load()) * time.Millisecond)
		},
		advance: func(d time.Duration) { store.offsetMillis.Add(d.Milliseconds()) },
		prefix:  prefix,
		slack:   50 * time.Millisecond,
	}
}

func TestRedisStoreConformanceServer(t *testing.T) {
	client := realRedisClient(t)
	runStoreConformance(t, func(t *testing.T) *storeHarness { return newServerHarness(t, client) })
}

func TestRedisStoreKeysExpire(t *testing.T) {
	client := realRedisClient(t)
	ctx := context.Background()
	store := NewRedisStore(client)
	prefix := fmt.Sprintf("throttle-ttl-%d", rand.Int64())
	t.Cleanup(func() { _, _ = store.DeleteMatching(ctx, prefix+"*") })

	lim, err := New(Config{Store: store, Prefix: prefix})
	require.NoError(t, err)
	handler := lim.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	member := Identity{Tenant: Tenant{Slug: "acme", Plan: "free"}, UserID: "u1", Role: "member"}
	for i := range 12 {
		r := httptest.NewRequest(http.MethodPost, "/", nil)
		r.RemoteAddr = "198.51.100.23:4000"
		handler.ServeHTTP(httptest.NewRecorder(), r.WithContext(WithIdentity(r.Context(), member)))

		r = httptest.NewRequest(http.MethodGet, "/", nil)
		r.RemoteAddr = fmt.Sprintf("198.51.100.%d:4000", i)
		handler.ServeHTTP(httptest.NewRecorder(), r)
	}

	keys, err := client.Keys(ctx, prefix+"*").Result()
	require.NoError(t, err)
	require.NotEmpty(t, keys)
	for _, key := range keys {
		ttl, err := client.PTTL(ctx, key).Result()
		require.NoError(t, err)
		assert.Greater(t, ttl, time.Duration(0), "key %q has no TTL", key)
		assert.NotContains(t, key, "198.51.100", "key %q holds a client IP in clear", key)
	}
}

func TestRedisStoreNoscriptReload(t *testing.T) {
	client := realRedisClient(t)
	h := newServerHarness(t, client)
	c := Counter{Key: h.key("c"), Limit: 5, Period: time.Minute}
	take(t, h, c)
	require.NoError(t, client.ScriptFlush(context.Background()).Err())
	b := take(t, h, c)
	assert.Equal(t, int64(3), b.Results[0].Remaining, "the script was loaded again after NOSCRIPT")
}

func TestRedisStoreBadReply(t *testing.T) {
	b := &Batch{Counters: []Counter{{Key: "k", Limit: 1, Period: time.Second}}}
	b.prepareResults()
	tests := []struct {
		name  string
		reply []any
	}{
		{"too short", []any{int64(1)}},
		{"wrong type", []any{int64(1), int64(2), "x", int64(1), int64(1), int64(0), int64(0), int64(0)}},
		{"nil element", []any{int64(1), int64(2), nil, int64(1), int64(1), int64(0), int64(0), int64(0)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := decodeTakeReply(tt.reply, b)
			require.Error(t, err)
			assert.ErrorIs(t, err, errBadReply)
		})
	}
}

func TestRedisStoreUnreachable(t *testing.T) {
	client := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", MaxRetries: -1, DialTimeout: 100 * time.Millisecond})
	defer client.Close()
	store := NewRedisStore(client)
	err := store.Take(context.Background(), &Batch{Counters: []Counter{{Key: "k", Limit: 1, Period: time.Second}}})
	require.Error(t, err)
	assert.ErrorIs(t, err, ErrStoreUnavailable)
	assert.False(t, strings.Contains(err.Error(), "panic"))
}

// Two instances whose clocks differ by 10 seconds share one Redis. Windows
// run on the server's clock, so together they allow exactly what one
// instance alone allows, and moving an application clock, even by an hour,
// neither resets nor extends a window.
func TestRedisStoreClockSkew(t *testing.T) {
	policy := DefaultPolicy()
	policy.Plans = map[string]PlanLimits{"free": {Burst: PerMinute(10)}}
	member := Identity{Tenant: Tenant{Slug: "acme", Plan: "free"}, UserID: "u1"}

	// run sends 40 requests 3 seconds apart on the server clock, alternating
	// between instances, and returns how many were allowed.
	run := func(t *testing.T, skews []time.Duration) int {
		server := miniredis.RunT(t)
		server.SetTime(testEpoch)
		client := redis.NewClient(&redis.Options{Addr: server.Addr()})
		t.Cleanup(func() { client.Close() })

		var clocks []*ManualClock
		var instances []http.Handler
		for _, skew := range skews {
			clock := NewManualClock(testEpoch.Add(skew))
			lim, err := New(Config{Store: NewRedisStore(client), Clock: clock, Policy: &policy})
			require.NoError(t, err)
			clocks = append(clocks, clock)
			instances = append(instances, lim.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})))
		}

		allowed := 0
		serverNow := testEpoch
		for i := range 40 {
			r := httptest.NewRequest(http.MethodGet, "/", nil)
			r = r.WithContext(WithIdentity(r.Context(), member))
			w := httptest.NewRecorder()
			instances[i%len(instances)].ServeHTTP(w, r)
			if w.Code == http.StatusOK {
				allowed++
			}
			serverNow = serverNow.Add(3 * time.Second)
			server.SetTime(serverNow)
			for _, clock := range clocks {
				clock.Advance(3 * time.Second)
			}
			if i == 5 {
				clocks[0].Advance(time.Hour)
			}
		}
		return allowed
	}

	alone := run(t, []time.Duration{0})
	skewed := run(t, []time.Duration{10 * time.Second, 0})
	assert.Equal(t, alone, skewed)
	// 40 requests over 120 seconds at 10 per minute: 10 in the first window,
	// then about one per 6 seconds as buckets expire.
	assert.Greater(t, alone, 10)
	assert.LessOrEqual(t, alone, 30)
}

// A flag lives in Redis with an absolute expiry, so a new limiter on a new
// store, as after a restart, sees the flag with its original expiry, and
// the flag ends at that time, neither extended nor dropped.
func TestRedisStoreFlagSurvivesReload(t *testing.T) {
	ctx := context.Background()
	server := miniredis.RunT(t)
	server.SetTime(testEpoch)
	clock := NewManualClock(testEpoch)
	addr := netip.MustParseAddr("2001:db8:1:2:3:4:5:6")

	newLimiter := func() *Limiter {
		client := redis.NewClient(&redis.Options{Addr: server.Addr()})
		t.Cleanup(func() { client.Close() })
		lim, err := New(Config{Store: NewRedisStore(client), Clock: clock, IPHashSecret: []byte("secret")})
		require.NoError(t, err)
		return lim
	}

	first := newLimiter()
	require.NoError(t, first.FlagIP(ctx, addr, 90*time.Minute))
	want := testEpoch.Add(90 * time.Minute)

	clock.Advance(30 * time.Minute)
	server.FastForward(30 * time.Minute)
	server.SetTime(testEpoch.Add(30 * time.Minute))
	second := newLimiter()
	until, flagged, err := second.IPFlag(ctx, addr)
	require.NoError(t, err)
	assert.True(t, flagged)
	assert.Equal(t, want.UnixMilli(), until.UnixMilli())

	// Another address of the same /64 is the same client.
	_, flagged, err = second.IPFlag(ctx, netip.MustParseAddr("2001:db8:1:2:ffff::1"))
	require.NoError(t, err)
	assert.True(t, flagged, "addresses of one /64 share the flag")

	server.FastForward(60*time.Minute + time.Second)
	server.SetTime(want.Add(time.Second))
	_, flagged, err = second.IPFlag(ctx, addr)
	require.NoError(t, err)
	assert.False(t, flagged, "the flag ended at its original expiry")
}

// The Lua script merges the two oldest buckets when a period change
// would give a window more buckets than it can hold, as window.go does.
func TestRedisStorePeriodChangeKeepsCount(t *testing.T) {
	start := testEpoch.Truncate(time.Hour)
	server := miniredis.RunT(t)
	server.SetTime(start)
	client := redis.NewClient(&redis.Options{Addr: server.Addr()})
	t.Cleanup(func() { client.Close() })
	store := NewRedisStore(client)
	ctx := context.Background()
	key := "test:plan:acme:{u.42}"
	take := func(at time.Duration, period time.Duration) *Batch {
		t.Helper()
		server.SetTime(start.Add(at))
		b := &Batch{Counters: []Counter{{Key: key, Limit: 100, Period: period}}}
		require.NoError(t, store.Take(ctx, b))
		return b
	}

	take(5*time.Minute+54*time.Second, time.Hour)
	for k := 1; k <= 10; k++ {
		take(time.Duration(k)*6*time.Minute, time.Hour)
	}
	value, err := client.Get(ctx, key).Result()
	require.NoError(t, err)
	require.Len(t, strings.Fields(value), 1+2*maxBuckets, "the window is full: %q", value)

	b := take(72*time.Minute+6*time.Second, 2*time.Hour)
	value, err = client.Get(ctx, key).Result()
	require.NoError(t, err)
	assert.Len(t, strings.Fields(value), 1+2*maxBuckets, "the window merged instead of growing: %q", value)
	assert.True(t, b.Allowed)
	assert.Equal(t, int64(100-12), b.Results[0].Remaining)
}
