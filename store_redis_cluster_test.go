package throttle

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestCRC16XMODEM(t *testing.T) {
	// The check value of CRC-16/XMODEM, the checksum of "123456789".
	assert.Equal(t, uint16(0x31C3), crc16("123456789"))
	assert.Equal(t, uint16(0), crc16(""))
}

func TestKeySlot(t *testing.T) {
	// The expected slots are what CLUSTER KEYSLOT returns on Redis 7.0.
	tests := []struct {
		key  string
		slot uint16
	}{
		{"123456789", 12739},
		{"foo", 12182},
		{"bar", 5061},
		{"hello", 866},
		{"{user1000}.following", 3443},
		{"x{y}z", 12222},
		{"{a}", 15495},
		{"a{}b", 13694},
		{"{}", 15257},
		{"small", 7222},
		{"large", 9543},
	}
	for _, tt := range tests {
		t.Run(tt.key, func(t *testing.T) {
			assert.Equal(t, tt.slot, keySlot(tt.key))
		})
	}
}

func TestKeySlotHashTags(t *testing.T) {
	tests := []struct {
		name   string
		key    string
		hashed string
	}{
		{"tag only", "throttle:plan:acme:{u.42}", "u.42"},
		{"first tag wins", "a{b}c{d}", "b"},
		{"first closing brace", "a{b}c}", "b"},
		{"empty tag hashes whole key", "a{}b{c}", "a{}b{c}"},
		{"no closing brace", "a{bc", "a{bc"},
		{"closing before opening", "a}b{c", "a}b{c"},
		{"nested opening", "{{a}b}", "{a"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, crc16(tt.hashed)%clusterSlots, keySlot(tt.key))
		})
	}
}

func TestConformanceKeysSpanSlots(t *testing.T) {
	// On a cluster the conformance suite must take the counters of one
	// batch in different slots, so that it exercises the grouped protocol.
	h := &storeHarness{prefix: "throttle-test-1", tagKeys: true}
	pairs := [][2]string{
		{"small", "large"},
		{"shadow", "real"},
		{"c", "other"},
		{"first", "second"},
		{"suspicious", "flag"},
		{"c", "denials"},
	}
	for _, pair := range pairs {
		assert.NotEqual(t, keySlot(h.key(pair[0])), keySlot(h.key(pair[1])), "%s and %s", pair[0], pair[1])
	}
}

// realClusterClient connects to the cluster named by
// THROTTLE_REDIS_CLUSTER_ADDRS, and skips the test when it is not set.
func realClusterClient(t *testing.T) *redis.ClusterClient {
	t.Helper()
	addrs := os.Getenv("THROTTLE_REDIS_CLUSTER_ADDRS")
	if addrs == "" {
		t.Skip("THROTTLE_REDIS_CLUSTER_ADDRS is not set; set it to the comma-separated host:port of Redis Cluster nodes to run this test")
	}
	client := redis.NewClusterClient(&redis.ClusterOptions{
		Addrs:                 strings.Split(addrs, ","),
		ContextTimeoutEnabled: true,
	})
	t.Cleanup(func() { client.Close() })
	require.NoError(t, client.Ping(context.Background()).Err(), "THROTTLE_REDIS_CLUSTER_ADDRS=%s", addrs)
	return client
}

func TestRedisStoreConformanceCluster(t *testing.T) {
	client := realClusterClient(t)
	runStoreConformance(t, func(t *testing.T) *storeHarness {
		h := newServerHarness(t, client)
		h.tagKeys = true
		require.True(t, h.store.(*RedisStore).slotted, "a cluster client groups keys by slot")
		return h
	})
}

func TestKeySlotMatchesCluster(t *testing.T) {
	client := realClusterClient(t)
	ctx := context.Background()
	kb := newKeyBuilder("throttle", nil, time.UTC)
	ipHash := string(kb.hashIP(nil, netip.MustParseAddr("198.51.100.7")))
	keys := []string{
		string(kb.appendCounterKey(nil, "plan", "acme", Subject{Kind: subjectUser, Value: "42"})),
		string(kb.appendCounterKey(nil, "ip_burst", "", Subject{Kind: subjectIP, Value: ipHash})),
		kb.flagKey(ipHash),
		string(kb.denialKey(nil, "acme", testEpoch)),
		"plain", "{}", "a{}b{c}", "{{a}b}", "ünïcödé{ключ}",
	}
	rng := rand.New(rand.NewPCG(3, 4))
	for range 50 {
		raw := make([]byte, 1+rng.IntN(20))
		for i := range raw {
			raw[i] = "ab{}:.0123"[rng.IntN(10)]
		}
		keys = append(keys, string(raw))
	}
	for _, key := range keys {
		want, err := client.ClusterKeySlot(ctx, key).Result()
		require.NoError(t, err)
		assert.Equal(t, uint16(want), keySlot(key), "key %q", key)
	}
}

// TestRedisStoreClusterLimiter sends an authenticated caller's requests
// through a limiter on the cluster: its user counters, client IP counter
// and tenant denial counter are in three slots.
func TestRedisStoreClusterLimiter(t *testing.T) {
	client := realClusterClient(t)
	ctx := context.Background()
	store := NewRedisStore(client)
	prefix := fmt.Sprintf("throttle-cluster-%d", rand.Int64())
	t.Cleanup(func() { _, _ = store.DeleteMatching(ctx, prefix+"*") })

	var storeErrors atomic.Int64
	lim, err := New(Config{
		Store:  store,
		Prefix: prefix,
		Hooks:  Hooks{StoreError: func(Event) { storeErrors.Add(1) }},
	})
	require.NoError(t, err)
	handler := lim.Handler(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	member := Identity{Tenant: Tenant{Slug: "acme", Plan: "free"}, UserID: "u-cluster", Role: "member"}

	codes := map[int]int{}
	for range 14 {
		r := httptest.NewRequest(http.MethodGet, "/", nil)
		r.RemoteAddr = "198.51.100.77:4000"
		w := httptest.NewRecorder()
		handler.ServeHTTP(w, r.WithContext(WithIdentity(r.Context(), member)))
		codes[w.Code]++
	}

	assert.Equal(t, int64(0), storeErrors.Load(), "no CROSSSLOT or other store error")
	assert.Equal(t, 10, codes[http.StatusOK], "the free plan's burst of 10/minute")
	assert.Equal(t, 4, codes[http.StatusTooManyRequests])
	denials, err := store.Count(ctx, string(lim.keys.denialKey(nil, "acme", time.Now())))
	require.NoError(t, err)
	assert.Equal(t, int64(4), denials)
}

func TestRedisStoreClusterNoscript(t *testing.T) {
	client := realClusterClient(t)
	h := newServerHarness(t, client)
	h.tagKeys = true
	ctx := context.Background()
	user := Counter{Key: h.key("user"), Limit: 5, Period: time.Minute}
	ip := Counter{Key: h.key("ip"), Limit: 1, Period: time.Minute}
	take(t, h, user, ip)
	require.NoError(t, client.ForEachMaster(ctx, func(ctx context.Context, node *redis.Client) error {
		return node.ScriptFlush(ctx).Err()
	}))

	b := &Batch{Counters: []Counter{user, ip}, DenialKey: h.key("denials"), DenialTTL: time.Hour}
	require.NoError(t, h.store.Take(ctx, b))
	assert.False(t, b.Allowed)
	assert.Equal(t, int64(4), b.Results[0].Remaining, "the take and the refund ran after NOSCRIPT")
	n, err := h.store.Count(ctx, h.key("denials"))
	require.NoError(t, err)
	assert.Equal(t, int64(1), n)
}

// newGroupedHarness runs a store on miniredis that groups keys by slot as
// on a cluster, with the conformance keys in different slots, so the
// grouped protocol runs without a cluster.
func newGroupedHarness(t *testing.T) *storeHarness {
	t.Helper()
	h := newMiniredisHarness(t)
	h.store.(*RedisStore).slotted = true
	h.tagKeys = true
	return h
}

func TestRedisStoreConformanceGrouped(t *testing.T) {
	runStoreConformance(t, newGroupedHarness)
}

// roundTripCounter counts the commands and pipelines a client sends.
type roundTripCounter struct {
	commands  atomic.Int64
	pipelines atomic.Int64
}

func (c *roundTripCounter) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		return next(ctx, network, addr)
	}
}

func (c *roundTripCounter) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		c.commands.Add(1)
		return next(ctx, cmd)
	}
}

func (c *roundTripCounter) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		c.pipelines.Add(1)
		return next(ctx, cmds)
	}
}

// roundTrips returns the number of round trips sent so far.
func (c *roundTripCounter) roundTrips() int64 { return c.commands.Load() + c.pipelines.Load() }

// newCountingStore returns a Redis store on miniredis whose round trips are
// counted, and the miniredis server.
func newCountingStore(t *testing.T, slotted bool) (*RedisStore, *roundTripCounter, *miniredis.Miniredis) {
	t.Helper()
	server := miniredis.RunT(t)
	server.SetTime(testEpoch)
	client := redis.NewClient(&redis.Options{Addr: server.Addr()})
	t.Cleanup(func() { client.Close() })
	counter := &roundTripCounter{}
	client.AddHook(counter)
	store := NewRedisStore(client)
	store.slotted = slotted
	// Load the scripts and open a connection for pipelines, so that
	// NOSCRIPT retries and connection set-up do not count below.
	ctx := context.Background()
	for _, script := range []*redis.Script{takeScript, refundScript, denialScript} {
		require.NoError(t, script.Load(ctx, client).Err())
	}
	_, err := client.Pipelined(ctx, func(pipe redis.Pipeliner) error { return pipe.Ping(ctx).Err() })
	require.NoError(t, err)
	counter.commands.Store(0)
	counter.pipelines.Store(0)
	return store, counter, server
}

func TestRedisStoreRoundTrips(t *testing.T) {
	ctx := context.Background()
	user := Counter{Key: "t:plan:acme:{u.1}", Limit: 5, Period: time.Minute}
	userBurst := Counter{Key: "t:burst:acme:{u.1}", Limit: 5, Period: time.Minute}
	ip := Counter{Key: "t:ip_burst:_:{ip.x}", Limit: 2, Period: time.Minute}
	denials := "t:denials:{acme}:2026-03-14"

	tests := []struct {
		name     string
		slotted  bool
		counters []Counter
		// takes is the number of Take calls made before the one measured.
		takes int
		want  int64
	}{
		{"one node, two slots", false, []Counter{user, ip}, 0, 1},
		{"one node, denied", false, []Counter{user, ip}, 2, 1},
		{"cluster, one slot, allowed", true, []Counter{user, userBurst}, 0, 1},
		{"cluster, one slot, denied", true, []Counter{user, userBurst}, 5, 2},
		{"cluster, two slots, allowed", true, []Counter{user, ip}, 0, 1},
		{"cluster, two slots, denied", true, []Counter{user, ip}, 2, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			store, counter, _ := newCountingStore(t, tt.slotted)
			for range tt.takes {
				require.NoError(t, store.Take(ctx, &Batch{Counters: tt.counters, DenialKey: denials, DenialTTL: time.Hour}))
			}
			before := counter.roundTrips()
			require.NoError(t, store.Take(ctx, &Batch{Counters: tt.counters, DenialKey: denials, DenialTTL: time.Hour}))
			assert.Equal(t, tt.want, counter.roundTrips()-before)
		})
	}
}

func TestRedisStoreGroupedRefund(t *testing.T) {
	ctx := context.Background()
	store, _, server := newCountingStore(t, true)
	sliding := Counter{Key: "t:plan:acme:{u.1}", Limit: 100, Period: time.Minute}
	daily := Counter{Key: "t:daily:acme:{u.1}:2026-03-14", Limit: 100, Period: 24 * time.Hour, WindowEnd: testEpoch.Add(time.Hour)}
	full := Counter{Key: "t:ip_burst:_:{ip.x}", Limit: 1, Period: time.Minute}
	denials := "t:denials:{acme}:2026-03-14"

	// Fill the IP counter, and put some history in the user's counters.
	require.NoError(t, store.Take(ctx, &Batch{Counters: []Counter{full}}))
	for range 3 {
		require.NoError(t, store.Take(ctx, &Batch{Counters: []Counter{sliding, daily}}))
	}
	slidingBefore, err := server.Get(sliding.Key)
	require.NoError(t, err)
	ttlBefore := server.TTL(sliding.Key)

	b := &Batch{Counters: []Counter{sliding, daily, full}, DenialKey: denials, DenialTTL: time.Hour}
	require.NoError(t, store.Take(ctx, b))

	require.False(t, b.Allowed)
	assert.True(t, b.Results[0].Allowed, "the user's counters had room")
	assert.Equal(t, int64(97), b.Results[0].Remaining, "the refund's remaining is reported")
	assert.Equal(t, int64(97), b.Results[1].Remaining)
	assert.False(t, b.Results[2].Allowed)
	slidingAfter, err := server.Get(sliding.Key)
	require.NoError(t, err)
	assert.Equal(t, slidingBefore, slidingAfter, "the refund restores the sliding window")
	assert.LessOrEqual(t, server.TTL(sliding.Key), ttlBefore, "the refund never extends a TTL")
	dailyAfter, err := server.Get(daily.Key)
	require.NoError(t, err)
	assert.Equal(t, "3", dailyAfter, "the refund decrements the fixed window")
	n, err := store.Count(ctx, denials)
	require.NoError(t, err)
	assert.Equal(t, int64(1), n, "the denial is counted once")
}

func TestRedisStoreRefundNewBucket(t *testing.T) {
	// The refunded request opened a bucket of its own, which the refund
	// removes, so the key's TTL falls back to the older bucket's.
	ctx := context.Background()
	store, _, server := newCountingStore(t, true)
	sliding := Counter{Key: "t:plan:acme:{u.1}", Limit: 100, Period: time.Minute}
	full := Counter{Key: "t:ip_burst:_:{ip.x}", Limit: 1, Period: time.Hour}
	require.NoError(t, store.Take(ctx, &Batch{Counters: []Counter{full}}))
	require.NoError(t, store.Take(ctx, &Batch{Counters: []Counter{sliding}}))
	before, err := server.Get(sliding.Key)
	require.NoError(t, err)

	server.FastForward(20 * time.Second)
	store.offsetMillis.Add((20 * time.Second).Milliseconds())
	b := &Batch{Counters: []Counter{sliding, full}}
	require.NoError(t, store.Take(ctx, b))

	require.False(t, b.Allowed)
	after, err := server.Get(sliding.Key)
	require.NoError(t, err)
	assert.Equal(t, before, after)
	assert.Equal(t, 40*time.Second, b.Results[0].ResetAfter, "the reset is that of the older bucket")
	assert.Equal(t, int64(99), b.Results[0].Remaining)
}

func TestRedisStoreRefundEmptiesKey(t *testing.T) {
	ctx := context.Background()
	store, _, server := newCountingStore(t, true)
	fresh := Counter{Key: "t:plan:acme:{u.1}", Limit: 100, Period: time.Minute}
	full := Counter{Key: "t:ip_burst:_:{ip.x}", Limit: 1, Period: time.Minute}
	require.NoError(t, store.Take(ctx, &Batch{Counters: []Counter{full}}))

	b := &Batch{Counters: []Counter{fresh, full}}
	require.NoError(t, store.Take(ctx, b))

	require.False(t, b.Allowed)
	assert.False(t, server.Exists(fresh.Key), "a counter whose only request was refunded is deleted")
	assert.Equal(t, int64(100), b.Results[0].Remaining)
	assert.Equal(t, time.Duration(0), b.Results[0].ResetAfter)
}

func TestRefundScriptLayouts(t *testing.T) {
	// The refund writes a window back in the layout it read: with the
	// leading total that the take script writes, or without it.
	tests := []struct {
		name   string
		stored string
		at     int64
		want   string
	}{
		{"with total, newest bucket", "4 1000 3 2000 1", 2000, "3 1000 3"},
		{"with total, merged into bucket", "4 1000 3 2000 1", 900, "3 1000 2 2000 1"},
		{"without total", "1000 3 2000 1", 2000, "1000 3"},
		{"expired request", "4 1000 3 70000 1", 1000, "1 70000 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			server := miniredis.RunT(t)
			server.SetTime(time.UnixMilli(30000))
			client := redis.NewClient(&redis.Options{Addr: server.Addr()})
			t.Cleanup(func() { client.Close() })
			require.NoError(t, server.Set("k", tt.stored))

			reply, err := refundScript.Run(context.Background(), client, []string{"k"}, 0, tt.at, 100, 60000, 0).Slice()
			require.NoError(t, err)
			require.Len(t, reply, 3)
			got, err := server.Get("k")
			require.NoError(t, err)
			assert.Equal(t, tt.want, got)
		})
	}
}

func TestRedisStoreGroupedPeek(t *testing.T) {
	ctx := context.Background()
	store, counter, _ := newCountingStore(t, true)
	user := Counter{Key: "t:plan:acme:{u.1}", Limit: 5, Period: time.Minute}
	ip := Counter{Key: "t:ip_burst:_:{ip.x}", Limit: 1, Period: time.Minute}
	require.NoError(t, store.Take(ctx, &Batch{Counters: []Counter{user, ip}}))

	before := counter.roundTrips()
	for range 3 {
		b := &Batch{Counters: []Counter{user, ip}, DenialKey: "t:denials:{acme}:2026-03-14", DenialTTL: time.Hour}
		require.NoError(t, store.Peek(ctx, b))
		assert.False(t, b.Allowed, "the IP counter is full")
		assert.Equal(t, int64(4), b.Results[0].Remaining)
		assert.Equal(t, int64(0), b.Results[1].Remaining)
	}
	assert.Equal(t, int64(3), counter.roundTrips()-before, "one round trip per peek")
	n, err := store.Count(ctx, "t:denials:{acme}:2026-03-14")
	require.NoError(t, err)
	assert.Equal(t, int64(0), n, "a peek counts no denial")
}

func TestRedisStoreGroupedNoscript(t *testing.T) {
	ctx := context.Background()
	store, _, _ := newCountingStore(t, true)
	user := Counter{Key: "t:plan:acme:{u.1}", Limit: 5, Period: time.Minute}
	ip := Counter{Key: "t:ip_burst:_:{ip.x}", Limit: 1, Period: time.Minute}
	require.NoError(t, store.client.ScriptFlush(ctx).Err())

	b := &Batch{Counters: []Counter{user, ip}, DenialKey: "t:denials:{acme}:2026-03-14", DenialTTL: time.Hour}
	require.NoError(t, store.Take(ctx, b))
	require.True(t, b.Allowed)
	require.NoError(t, store.client.ScriptFlush(ctx).Err())
	require.NoError(t, store.Take(ctx, b))
	require.False(t, b.Allowed, "the IP counter is full")
	assert.Equal(t, int64(4), b.Results[0].Remaining, "the refund ran after NOSCRIPT")
}
