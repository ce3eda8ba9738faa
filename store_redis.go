package throttle

import (
	"context"
	_ "embed"
	"errors"
	"fmt"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"
)

//go:embed store_redis.lua
var takeScriptSource string

// takeScript is shared by every RedisStore. go-redis runs it with EVALSHA
// and, when the server replies NOSCRIPT (after a restart or SCRIPT FLUSH),
// sends the source once with EVAL, which loads it again.
var takeScript = redis.NewScript(takeScriptSource)

// flagScript returns a flag's expiry when it is still set on the server
// clock, or false.
var flagScript = redis.NewScript(`
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000) + tonumber(ARGV[1])
local value = tonumber(redis.call('GET', KEYS[1]))
if value ~= nil and value > now then
  return value
end
return false
`)

// RedisStore is a Store that keeps counters in Redis, so every instance of a
// service shares them. It accepts any redis.UniversalClient: a single node,
// Sentinel (failover), Ring or Cluster. On a single node or Sentinel each
// Take or Peek is one EVALSHA of one Lua script, flag lookups and denial
// counting included, and window arithmetic uses the Redis server's clock, so
// instances whose clocks differ still agree. A RedisStore is safe for
// concurrent use; it does not own the client, and closing the client is the
// caller's job.
//
// On Redis Cluster (a *redis.ClusterClient), a script may only touch keys of
// one hash slot, and keys are hash-tagged by subject: {u.ID} for a user's
// counters, {ip.HASH} for a client IP's, {tenant} for a tenant's denial
// counter. The store computes each key's slot and never sends a script that
// spans slots, so there is no CROSSSLOT error, and it keeps the batch all or
// nothing without ever letting a counter exceed its limit:
//   - When the counters share one slot, a Take is still one EVALSHA, and a
//     denied one adds one call to count the denial when the tenant's
//     denial counter is in another slot.
//   - Otherwise (an authenticated caller's user and IP counters) the
//     counters are taken per slot group, one script per group, all in one
//     pipeline sent to the nodes in parallel: one round trip when allowed.
//     A group records only when all its counters have room. When any group
//     denies, the groups that recorded are refunded and the denial is
//     counted, in a second parallel round trip. Between the two, a
//     concurrent request can be denied although it would have fit: this
//     error is on the safe side and lasts one round trip.
//   - A Peek on several slots is one peek per group, in one parallel round
//     trip, and its results are combined.
//
// Set the client's ContextTimeoutEnabled option, so that the limiter's
// store timeout bounds each call. Without it, go-redis (v9.23) ignores the
// context deadline while it waits for a reply, so a stalled server holds a
// request for the client's ReadTimeout, 5 seconds by default.
//
// NOTE: a Ring client sends a script to the shard of its first key. A
// counter used together with different subjects, such as a client IP's
// counter with the counters of several users, is then kept on several
// shards, and each copy counts only part of the traffic. Use Cluster or
// one node.
type RedisStore struct {
	client redis.UniversalClient
	// slotted makes the store group keys by cluster hash slot. It is set
	// for a cluster client, and tests set it on one node to exercise the
	// grouping.
	slotted bool
	// offsetMillis is added to the server clock. Tests use it to move time
	// forward on a real server; it is zero otherwise.
	offsetMillis atomic.Int64
}

var _ Store = (*RedisStore)(nil)

// NewRedisStore returns a store on client.
func NewRedisStore(client redis.UniversalClient) *RedisStore {
	_, cluster := client.(*redis.ClusterClient)
	return &RedisStore{client: client, slotted: cluster}
}

// ignoresDeadlines reports whether the client was built without
// ContextTimeoutEnabled, in which case go-redis does not stop waiting for a
// reply when the context's deadline passes, and the store timeout does not
// bound a call.
func (s *RedisStore) ignoresDeadlines() bool {
	switch c := s.client.(type) {
	case *redis.Client:
		return !c.Options().ContextTimeoutEnabled
	case *redis.ClusterClient:
		return !c.Options().ContextTimeoutEnabled
	case *redis.Ring:
		return !c.Options().ContextTimeoutEnabled
	}
	return false
}

// Take implements Store.
func (s *RedisStore) Take(ctx context.Context, b *Batch) error {
	return s.run(ctx, b, true)
}

// Peek implements Store.
func (s *RedisStore) Peek(ctx context.Context, b *Batch) error {
	return s.run(ctx, b, false)
}

func (s *RedisStore) run(ctx context.Context, b *Batch, record bool) error {
	b.prepareResults()
	if len(b.Counters) == 0 {
		b.Allowed = true
		b.Now = time.Now()
		return nil
	}
	if s.slotted {
		if handled, err := s.runSlotted(ctx, b, record); handled {
			return err
		}
	}
	keys, args := scriptArguments(b, record, s.offsetMillis.Load())

	reply, err := takeScript.Run(ctx, s.client, keys, args...).Slice()
	if err != nil {
		return fmt.Errorf("%w: %w", ErrStoreUnavailable, err)
	}
	return decodeTakeReply(reply, b)
}

// scriptArguments lays out a batch as the script's KEYS and ARGV.
func scriptArguments(b *Batch, record bool, offset int64) ([]string, []any) {
	n := len(b.Counters)
	keys := make([]string, n, n+2)
	args := make([]any, 5, 5+5*n)
	for i := range b.Counters {
		keys[i] = b.Counters[i].Key
	}
	recordFlag := 0
	if record {
		recordFlag = 1
	}

	// Flag keys follow the counter keys, so that one MGET reads them all;
	// the denial key comes last.
	for i := range b.Counters {
		c := &b.Counters[i]
		flagIndex := 0
		if c.FlagKey != "" {
			keys = append(keys, c.FlagKey)
			flagIndex = len(keys)
		}
		var windowEnd int64
		if !c.WindowEnd.IsZero() {
			windowEnd = c.WindowEnd.UnixMilli()
		}
		shadow := 0
		if c.Shadow {
			shadow = 1
		}
		args = append(args, c.Limit, c.Period.Milliseconds(), windowEnd, flagIndex, shadow)
	}

	denialIndex := 0
	if b.DenialKey != "" && record {
		keys = append(keys, b.DenialKey)
		denialIndex = len(keys)
	}
	args[0], args[1], args[2], args[3], args[4] = recordFlag, offset, n, denialIndex, b.DenialTTL.Milliseconds()
	return keys, args
}

// replyPerCounter is the number of integers the script returns per counter:
// applied, allowed, remaining, reset after, retry after, recorded at.
const replyPerCounter = 6

// errBadReply is wrapped by errors about replies the script cannot have sent.
var errBadReply = errors.New("unexpected reply from the rate limit script")

// decodeTakeReply fills b from the script's reply, checking every element.
func decodeTakeReply(reply []any, b *Batch) error {
	n := len(b.Counters)
	if len(reply) != 2+replyPerCounter*n {
		return fmt.Errorf("%w: %d elements for %d counters", errBadReply, len(reply), n)
	}
	values := make([]int64, len(reply))
	for i, v := range reply {
		x, ok := v.(int64)
		if !ok {
			return fmt.Errorf("%w: element %d is %T", errBadReply, i, v)
		}
		values[i] = x
	}
	b.Allowed = values[0] == 1
	b.Now = time.UnixMilli(values[1])
	for i := range b.Results {
		v := values[2+replyPerCounter*i:]
		b.Results[i] = CounterResult{
			Applied:    v[0] == 1,
			Allowed:    v[1] == 1,
			Remaining:  v[2],
			ResetAfter: time.Duration(v[3]) * time.Millisecond,
			RetryAfter: time.Duration(v[4]) * time.Millisecond,
		}
	}
	return nil
}

// SetFlag implements Store. The value is the absolute expiry in Unix
// milliseconds, and the key expires at that time, so a restart of the
// service neither extends nor drops the flag.
func (s *RedisStore) SetFlag(ctx context.Context, key string, until time.Time) error {
	ms := until.UnixMilli()
	if err := s.client.Set(ctx, key, ms, 0).Err(); err != nil {
		return fmt.Errorf("%w: set flag: %w", ErrStoreUnavailable, err)
	}
	if err := s.client.PExpireAt(ctx, key, until).Err(); err != nil {
		return fmt.Errorf("%w: set flag expiry: %w", ErrStoreUnavailable, err)
	}
	return nil
}

// DeleteFlag implements Store.
func (s *RedisStore) DeleteFlag(ctx context.Context, key string) (bool, error) {
	_, set, err := s.FlagExpiry(ctx, key)
	if err != nil {
		return false, err
	}
	if err := s.client.Del(ctx, key).Err(); err != nil {
		return false, fmt.Errorf("%w: delete flag: %w", ErrStoreUnavailable, err)
	}
	return set, nil
}

// FlagExpiry implements Store.
func (s *RedisStore) FlagExpiry(ctx context.Context, key string) (time.Time, bool, error) {
	v, err := flagScript.Run(ctx, s.client, []string{key}, s.offsetMillis.Load()).Result()
	if errors.Is(err, redis.Nil) {
		return time.Time{}, false, nil
	}
	if err != nil {
		return time.Time{}, false, fmt.Errorf("%w: read flag: %w", ErrStoreUnavailable, err)
	}
	ms, ok := v.(int64)
	if !ok {
		return time.Time{}, false, fmt.Errorf("%w: flag is %T", errBadReply, v)
	}
	return time.UnixMilli(ms), true, nil
}

// DeleteMatching implements Store. It scans with SCAN MATCH, on every
// master of a cluster, and deletes with UNLINK in batches.
func (s *RedisStore) DeleteMatching(ctx context.Context, pattern string) (int, error) {
	var deleted atomic.Int64
	scan := func(ctx context.Context, node redis.UniversalClient) error {
		var cursor uint64
		for {
			keys, next, err := node.Scan(ctx, cursor, pattern, 1000).Result()
			if err != nil {
				return err
			}
			// Keys of one scan batch can live in different slots of a
			// cluster, so each is unlinked on its own.
			for _, k := range keys {
				n, err := node.Unlink(ctx, k).Result()
				if err != nil {
					return err
				}
				deleted.Add(n)
			}
			cursor = next
			if cursor == 0 {
				return nil
			}
		}
	}
	var err error
	if cluster, ok := s.client.(*redis.ClusterClient); ok {
		err = cluster.ForEachMaster(ctx, func(ctx context.Context, node *redis.Client) error {
			return scan(ctx, node)
		})
	} else {
		err = scan(ctx, s.client)
	}
	if err != nil {
		return int(deleted.Load()), fmt.Errorf("%w: delete %q: %w", ErrStoreUnavailable, pattern, err)
	}
	return int(deleted.Load()), nil
}

// Count implements Store.
func (s *RedisStore) Count(ctx context.Context, key string) (int64, error) {
	v, err := s.client.Get(ctx, key).Result()
	if errors.Is(err, redis.Nil) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("%w: read %q: %w", ErrStoreUnavailable, key, err)
	}
	n, err := strconv.ParseInt(v, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("%w: %q contains %q, which is not an integer counter", errBadReply, key, v)
	}
	return n, nil
}
