package throttle

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Redis Cluster support of RedisStore.
//
// A script may only touch keys of one hash slot, and the keys of one request
// span two or three slots: a user's counters are tagged {u.ID}, a client
// IP's {ip.HASH} and a tenant's denial counter {tenant}. A batch whose keys
// share a slot runs as one script, as on a single node. Otherwise the
// counters are grouped by slot and taken in two phases:
//
//  1. Every group runs the take script at once, in one pipeline that
//     go-redis splits by node and sends to the nodes in parallel. A group
//     records only when all of its counters have room, as a whole batch
//     would, and reports the time at which it recorded each counter.
//  2. If every group allowed, the request is allowed and counted everywhere.
//     If any group denied, the groups that recorded are refunded (the refund
//     script removes the one request each counter recorded, from the bucket
//     that holds that time) and the denial counter is incremented, again in
//     one parallel pipeline.
//
// No counter that can deny ever holds more than its limit, because a group
// records only with room: two requests racing for the last unit of a
// counter cannot both take it.
// Between the two phases a counter can hold a request that is about to be
// refunded, so a concurrent request may be denied when it would have fit.
// That error is on the safe side and lasts one round trip.

// clusterSlots is the number of hash slots of a Redis Cluster.
const clusterSlots = 16384

// crc16Table is the table of CRC-16/XMODEM (polynomial 0x1021, initial value
// 0, no reflection), the checksum Redis Cluster hashes keys with.
var crc16Table = func() [256]uint16 {
	var table [256]uint16
	for i := range table {
		crc := uint16(i) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
		table[i] = crc
	}
	return table
}()

// crc16 returns the CRC-16/XMODEM checksum of s.
func crc16(s string) uint16 {
	var crc uint16
	for i := 0; i < len(s); i++ {
		crc = crc<<8 ^ crc16Table[byte(crc>>8)^s[i]]
	}
	return crc
}

// keySlot returns the Redis Cluster hash slot of key, as CLUSTER KEYSLOT
// computes it: when the key holds a '{' followed later by a '}' with at
// least one byte between them, only the bytes between the first '{' and the
// first '}' after it are hashed; otherwise the whole key is.
func keySlot(key string) uint16 {
	if open := strings.IndexByte(key, '{'); open >= 0 {
		if length := strings.IndexByte(key[open+1:], '}'); length > 0 {
			key = key[open+1 : open+1+length]
		}
	}
	return crc16(key) % clusterSlots
}

// refundScript removes, from each counter, the one request that a take
// recorded at a known time. It runs on the counters of one slot group after
// another group of the same request denied.
//
// KEYS: the counter keys.
// ARGV[1]  milliseconds added to the server clock (0 outside tests)
// then 4 values per counter: the time the take recorded at in ms, limit,
// period ms, window end ms (0 for a sliding window).
//
// A sliding window's request is in the oldest bucket whose last request is
// not older than the recorded time. The take put it in a bucket and set
// that bucket's last time to the recorded time. Later requests only move a
// bucket's time forward or merge it into a newer bucket. A request whose period has
// passed is no longer counted, so nothing is removed for it. The value is
// written back in the layout it was read in, with or without the leading
// total, and its TTL only shrinks. A fixed window is decremented.
//
// Returns {now, then per counter: remaining, reset after ms}.
var refundScript = redis.NewScript(`
local clock = redis.call('TIME')
local now = tonumber(clock[1]) * 1000 + math.floor(tonumber(clock[2]) / 1000) + tonumber(ARGV[1])
local reply = {now}
for i = 1, #KEYS do
  local base = 2 + (i - 1) * 4
  local at = tonumber(ARGV[base])
  local limit = tonumber(ARGV[base + 1])
  local period = tonumber(ARGV[base + 2])
  local window_end = tonumber(ARGV[base + 3])
  local raw = redis.call('GET', KEYS[i])
  local used, reset_after = 0, 0
  if window_end > 0 then
    used = tonumber(raw) or 0
    if used > 0 then
      used = redis.call('DECR', KEYS[i])
    end
    if used > 0 then
      reset_after = window_end - now
    end
  elseif raw then
    local numbers = {}
    for number in string.gmatch(raw, '%d+') do
      numbers[#numbers + 1] = tonumber(number)
    end
    local with_total = #numbers % 2 == 1
    local first = with_total and 2 or 1
    local lasts, counts = {}, {}
    for j = first, #numbers - 1, 2 do
      lasts[#lasts + 1] = numbers[j]
      counts[#counts + 1] = numbers[j + 1]
    end
    -- A clock that stepped back behind the newest request reads as that
    -- request's time, as in the take script.
    local t = now
    if #lasts > 0 and lasts[#lasts] > t then
      t = lasts[#lasts]
    end
    if at + period > t then
      for j = 1, #lasts do
        if lasts[j] >= at then
          counts[j] = counts[j] - 1
          if counts[j] <= 0 then
            table.remove(lasts, j)
            table.remove(counts, j)
          end
          break
        end
      end
    end
    local parts, newest = {}, nil
    for j = 1, #lasts do
      if lasts[j] + period > t then
        used = used + counts[j]
        parts[#parts + 1] = lasts[j] .. ' ' .. counts[j]
        newest = lasts[j]
      end
    end
    if newest == nil then
      redis.call('DEL', KEYS[i])
    else
      local value = table.concat(parts, ' ')
      if with_total then
        value = used .. ' ' .. value
      end
      reset_after = newest + period - now
      redis.call('SET', KEYS[i], value, 'PX', math.max(1, reset_after))
    end
  end
  reply[#reply + 1] = math.max(0, limit - used)
  reply[#reply + 1] = math.max(0, reset_after)
end
return reply
`)

// denialScript increments a denial counter, setting its TTL when it creates
// it, for a batch whose denial key is in a slot of its own.
var denialScript = redis.NewScript(`
if redis.call('INCR', KEYS[1]) == 1 then
  redis.call('PEXPIRE', KEYS[1], ARGV[1])
end
return 1
`)

// slotGroup is the part of a batch whose keys share one hash slot.
type slotGroup struct {
	slot uint16
	// indexes are the positions in the whole batch of the group's counters.
	indexes []int
	// batch holds copies of those counters and, after the take, their
	// results.
	batch Batch
	// recordedAt is, per counter of the group, the server time in
	// milliseconds at which the take recorded it, or 0.
	recordedAt []int64
}

// scriptCall is one run of a script in a pipeline.
type scriptCall struct {
	script *redis.Script
	keys   []string
	args   []any
}

// runSlotted runs b on a cluster, where a script may only touch one slot. It
// reports false, doing nothing, when every key that one script would touch
// is in one slot: the caller then runs the single script as on one node.
func (s *RedisStore) runSlotted(ctx context.Context, b *Batch, record bool) (bool, error) {
	n := len(b.Counters)
	slots := make([]uint16, n)
	oneSlot := true
	for i := range b.Counters {
		c := &b.Counters[i]
		slots[i] = keySlot(c.Key)
		if slots[i] != slots[0] {
			oneSlot = false
		}
		if c.FlagKey != "" && keySlot(c.FlagKey) != slots[i] {
			oneSlot = false
		}
	}
	denialApart := record && b.DenialKey != "" && keySlot(b.DenialKey) != slots[0]
	if oneSlot && !denialApart {
		return false, nil
	}

	// A flag key in another slot than its counter is read first. The
	// library's own keys never do this: a flag and the counter it gates are
	// both tagged with the client IP.
	applies := make([]bool, n)
	for i := range b.Counters {
		applies[i] = true
		c := &b.Counters[i]
		if c.FlagKey != "" && keySlot(c.FlagKey) != slots[i] {
			_, set, err := s.FlagExpiry(ctx, c.FlagKey)
			if err != nil {
				return true, err
			}
			applies[i] = set
		}
	}
	groups := groupBySlot(b, slots, applies)
	if err := s.takeGroups(ctx, groups, record); err != nil {
		return true, err
	}

	b.Allowed = true
	b.Now = time.UnixMilli(time.Now().UnixMilli() + s.offsetMillis.Load())
	if len(groups) > 0 {
		b.Now = groups[0].batch.Now
	}
	for _, g := range groups {
		if !g.batch.Allowed {
			b.Allowed = false
		}
		for j, i := range g.indexes {
			b.Results[i] = g.batch.Results[j]
		}
	}
	if !record || b.Allowed {
		return true, nil
	}
	return true, s.undoDenied(ctx, b, groups)
}

// groupBySlot splits the counters of b that apply into groups of one slot,
// in the order of their first counter. A counter copied into a group loses
// its flag key when that key is in another slot, because the caller has
// read the flag already.
func groupBySlot(b *Batch, slots []uint16, applies []bool) []*slotGroup {
	var groups []*slotGroup
	for i := range b.Counters {
		if !applies[i] {
			continue
		}
		var g *slotGroup
		for _, existing := range groups {
			if existing.slot == slots[i] {
				g = existing
				break
			}
		}
		if g == nil {
			g = &slotGroup{slot: slots[i]}
			groups = append(groups, g)
		}
		c := b.Counters[i]
		if c.FlagKey != "" && keySlot(c.FlagKey) != slots[i] {
			c.FlagKey = ""
		}
		g.indexes = append(g.indexes, i)
		g.batch.Counters = append(g.batch.Counters, c)
	}
	return groups
}

// takeGroups runs the take script (or the peek) on every group in one
// pipeline and fills each group's results and recorded times.
//
// NOTE: when one group fails with an error after another recorded, the
// recorded counters keep the request until their window passes, which is
// the safe side. The error makes the limiter apply its failure policy.
func (s *RedisStore) takeGroups(ctx context.Context, groups []*slotGroup, record bool) error {
	offset := s.offsetMillis.Load()
	calls := make([]scriptCall, len(groups))
	for i, g := range groups {
		g.batch.prepareResults()
		keys, args := scriptArguments(&g.batch, record, offset)
		calls[i] = scriptCall{script: takeScript, keys: keys, args: args}
	}
	cmds := s.runPipelined(ctx, calls)

	for i, g := range groups {
		reply, err := cmds[i].Slice()
		if err != nil {
			return fmt.Errorf("%w: %w", ErrStoreUnavailable, err)
		}
		if err := decodeTakeReply(reply, &g.batch); err != nil {
			return err
		}
		g.recordedAt, err = decodeRecordedAt(reply, len(g.batch.Counters))
		if err != nil {
			return err
		}
	}
	return nil
}

// decodeRecordedAt returns the times, in milliseconds, at which the take
// script recorded each of n counters, the last value per counter of its
// reply; 0 means not recorded.
func decodeRecordedAt(reply []any, n int) ([]int64, error) {
	if len(reply) != 2+replyPerCounter*n {
		return nil, fmt.Errorf("%w: %d elements for %d counters", errBadReply, len(reply), n)
	}
	at := make([]int64, n)
	for i := range at {
		v := reply[2+replyPerCounter*i+replyPerCounter-1]
		ms, ok := v.(int64)
		if !ok {
			return nil, fmt.Errorf("%w: recorded time of counter %d is %T", errBadReply, i, v)
		}
		at[i] = ms
	}
	return at, nil
}

// undoDenied refunds the groups of a denied batch that recorded and counts
// the denial, in one pipeline, and updates the refunded counters' results
// from the refund's reply.
//
// NOTE: when the refund fails, the counters that recorded keep the request
// until their window passes, which is the safe side. The error is returned,
// so the limiter applies its failure policy to the request.
func (s *RedisStore) undoDenied(ctx context.Context, b *Batch, groups []*slotGroup) error {
	offset := s.offsetMillis.Load()
	var calls []scriptCall
	var refunded [][]int
	for _, g := range groups {
		if !g.batch.Allowed {
			continue
		}
		call := scriptCall{script: refundScript, args: []any{offset}}
		var indexes []int
		for j, at := range g.recordedAt {
			if at == 0 {
				continue
			}
			c := &g.batch.Counters[j]
			var windowEnd int64
			if !c.WindowEnd.IsZero() {
				windowEnd = c.WindowEnd.UnixMilli()
			}
			call.keys = append(call.keys, c.Key)
			call.args = append(call.args, at, c.Limit, c.Period.Milliseconds(), windowEnd)
			indexes = append(indexes, g.indexes[j])
		}
		if len(indexes) > 0 {
			calls = append(calls, call)
			refunded = append(refunded, indexes)
		}
	}

	refunds := len(calls)
	if b.DenialKey != "" {
		calls = append(calls, scriptCall{
			script: denialScript,
			keys:   []string{b.DenialKey},
			args:   []any{b.DenialTTL.Milliseconds()},
		})
	}
	if len(calls) == 0 {
		return nil
	}
	cmds := s.runPipelined(ctx, calls)

	for k, cmd := range cmds[:refunds] {
		reply, err := cmd.Slice()
		if err != nil {
			return fmt.Errorf("%w: refund: %w", ErrStoreUnavailable, err)
		}
		if err := decodeRefundReply(reply, b, refunded[k]); err != nil {
			return err
		}
	}
	for _, cmd := range cmds[refunds:] {
		if err := cmd.Err(); err != nil {
			return fmt.Errorf("%w: count denial: %w", ErrStoreUnavailable, err)
		}
	}
	return nil
}

// decodeRefundReply updates the results of the refunded counters at
// indexes of b from the refund script's reply.
func decodeRefundReply(reply []any, b *Batch, indexes []int) error {
	if len(reply) != 1+2*len(indexes) {
		return fmt.Errorf("%w: refund returned %d elements for %d counters", errBadReply, len(reply), len(indexes))
	}
	for k, i := range indexes {
		remaining, ok1 := reply[1+2*k].(int64)
		resetAfter, ok2 := reply[2+2*k].(int64)
		if !ok1 || !ok2 {
			return fmt.Errorf("%w: refund of counter %d returned %T and %T", errBadReply, i, reply[1+2*k], reply[2+2*k])
		}
		res := &b.Results[i]
		res.Remaining = remaining
		res.ResetAfter = time.Duration(resetAfter) * time.Millisecond
	}
	return nil
}

// runPipelined sends every call in one pipeline, with EVALSHA, and sends
// the calls that met NOSCRIPT (a node restarted or flushed its scripts)
// again with EVAL, which loads the script on that node. On a cluster,
// go-redis splits a pipeline by node and sends to the nodes in parallel.
// Each command carries its own error, which the caller reads.
func (s *RedisStore) runPipelined(ctx context.Context, calls []scriptCall) []*redis.Cmd {
	cmds := make([]*redis.Cmd, len(calls))
	// The pipeline's own error repeats the first command error, so it is
	// not needed.
	_, _ = s.client.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		for i, call := range calls {
			cmds[i] = call.script.EvalSha(ctx, pipe, call.keys, call.args...)
		}
		return nil
	})

	var retry []int
	for i, cmd := range cmds {
		if isNoScript(cmd.Err()) {
			retry = append(retry, i)
		}
	}
	if len(retry) == 0 {
		return cmds
	}
	_, _ = s.client.Pipelined(ctx, func(pipe redis.Pipeliner) error {
		for _, i := range retry {
			call := calls[i]
			cmds[i] = call.script.Eval(ctx, pipe, call.keys, call.args...)
		}
		return nil
	})
	return cmds
}

// isNoScript reports whether err is the server's NOSCRIPT error.
func isNoScript(err error) bool {
	return err != nil && (errors.Is(err, redis.ErrNoScript) || redis.HasErrorPrefix(err, "NOSCRIPT"))
}
