package throttle

import (
	"context"
	"math/bits"
	"path"
	"strings"
	"sync"
	"time"
)

// memoryShards is the number of independently locked parts of a MemoryStore.
// It is 64 so that the set of shards a batch touches fits in one uint64.
const memoryShards = 64

// DefaultMemoryMaxKeys is the number of keys a MemoryStore keeps before it
// starts evicting, when MemoryConfig.MaxKeys is zero.
const DefaultMemoryMaxKeys = 1 << 20

// memorySweepEvery is the number of inserts into a shard between two sweeps
// of its expired keys.
const memorySweepEvery = 4096

// memoryEvictScan is the number of keys an insert into a full shard looks at
// for one to evict.
const memoryEvictScan = 32

// MemoryConfig configures a MemoryStore. The zero value is ready to use.
type MemoryConfig struct {
	// Clock is the source of the current time. Nil means the system clock. Tests pass a
	// *ManualClock.
	Clock Clock
	// MaxKeys bounds the number of keys kept; 0 means DefaultMemoryMaxKeys.
	// When the store is full, an insert evicts an expired key or else a
	// counter that is not denying anyone. A counter that is denying is never
	// evicted, so under a flood of new keys the store can exceed MaxKeys
	// rather than let a limited client back in.
	MaxKeys int
}

// MemoryStore is a Store that keeps counters in process memory. It suits a
// single instance, tests and examples; instances behind a load balancer need
// the Redis store to share counters. A MemoryStore is safe for concurrent
// use and needs no closing: expired keys are swept as new keys arrive, with
// no background goroutine.
type MemoryStore struct {
	clock       Clock
	maxPerShard int
	shards      [memoryShards]memoryShard
}

// memoryShard is one part of the key space with its own lock.
type memoryShard struct {
	// mu guards every field of the shard.
	mu      sync.Mutex
	entries map[string]*memoryEntry
	// inserts counts inserts since the last sweep.
	inserts int
}

// memoryEntry is the state of one key. A key is a sliding window, a fixed
// counter or a flag; the store never mixes kinds under one key.
type memoryEntry struct {
	win   window
	fixed int64
	// expires is the Unix millisecond at which the key is gone.
	expires int64
	// limit is the limit of the last batch that used the key, so eviction
	// can tell whether the counter is denying.
	limit int64
	flag  bool
	// pinned marks an entry that the batch holding the shard lock uses, so
	// that an insert of the same batch does not evict it.
	pinned bool
}

var _ Store = (*MemoryStore)(nil)

// NewMemoryStore returns an empty MemoryStore.
func NewMemoryStore(cfg MemoryConfig) *MemoryStore {
	s := &MemoryStore{clock: cfg.Clock}
	if s.clock == nil {
		s.clock = systemClock{}
	}
	maxKeys := cfg.MaxKeys
	if maxKeys <= 0 {
		maxKeys = DefaultMemoryMaxKeys
	}
	s.maxPerShard = max(1, maxKeys/memoryShards)
	for i := range s.shards {
		s.shards[i].entries = make(map[string]*memoryEntry)
	}
	return s
}

// Reset deletes every key, as if the store were new. Tests of handlers use
// it between cases.
func (s *MemoryStore) Reset() {
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		clear(sh.entries)
		sh.inserts = 0
		sh.mu.Unlock()
	}
}

// Len returns the number of keys held, expired ones not yet swept included.
func (s *MemoryStore) Len() int {
	n := 0
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		n += len(sh.entries)
		sh.mu.Unlock()
	}
	return n
}

// shardIndex hashes the hash tag of key (the part between the first '{' and
// the next '}', as Redis Cluster does) or else the whole key, with FNV-1a.
// The counters of one subject share a tag, so a batch locks few shards.
func shardIndex(key string) int {
	tag := key
	if open := strings.IndexByte(key, '{'); open >= 0 {
		if end := strings.IndexByte(key[open+1:], '}'); end > 0 {
			tag = key[open+1 : open+1+end]
		}
	}
	// Only the last 16 bytes are hashed: the tail of a tag (a hashed IP, the
	// end of a user ID) varies the most, and a collision only puts two tags
	// in one shard.
	if len(tag) > 16 {
		tag = tag[len(tag)-16:]
	}
	h := uint32(2166136261)
	for i := 0; i < len(tag); i++ {
		h ^= uint32(tag[i])
		h *= 16777619
	}
	return int(h % memoryShards)
}

// lockShards locks the shards in mask in ascending order, so that two
// batches never wait on each other in a cycle.
func (s *MemoryStore) lockShards(mask uint64) {
	for m := mask; m != 0; m &= m - 1 {
		s.shards[bits.TrailingZeros64(m)].mu.Lock()
	}
}

func (s *MemoryStore) unlockShards(mask uint64) {
	for m := mask; m != 0; m &= m - 1 {
		s.shards[bits.TrailingZeros64(m)].mu.Unlock()
	}
}

// Take implements Store.
func (s *MemoryStore) Take(ctx context.Context, b *Batch) error {
	return s.apply(b, true)
}

// Peek implements Store.
func (s *MemoryStore) Peek(ctx context.Context, b *Batch) error {
	return s.apply(b, false)
}

// batchState is the per-counter scratch of one apply, on the stack for
// batches of up to inlineCounters counters.
type batchState struct {
	shard     int
	flagShard int
	entry     *memoryEntry
	applied   bool
}

const inlineCounters = 12

func (s *MemoryStore) apply(b *Batch, record bool) error {
	b.prepareResults()
	now := s.clock.Now().UnixMilli()
	// Results are whole milliseconds after Now, so Now is too, and a reset
	// at midnight reads as midnight rather than a moment after it.
	b.Now = time.UnixMilli(now)

	var inline [inlineCounters]batchState
	states := inline[:0]
	if len(b.Counters) > inlineCounters {
		states = make([]batchState, 0, len(b.Counters))
	}
	var mask uint64
	for i := range b.Counters {
		st := batchState{shard: shardIndex(b.Counters[i].Key)}
		mask |= 1 << st.shard
		if b.Counters[i].FlagKey != "" {
			st.flagShard = shardIndex(b.Counters[i].FlagKey)
			mask |= 1 << st.flagShard
		}
		states = append(states, st)
	}
	denialShard := -1
	if record && b.DenialKey != "" {
		denialShard = shardIndex(b.DenialKey)
		mask |= 1 << denialShard
	}

	s.lockShards(mask)
	defer s.unlockShards(mask)

	// Check every counter before changing any, so a denied batch uses no quota.
	allowed := true
	for i := range b.Counters {
		c := &b.Counters[i]
		st := &states[i]
		if c.FlagKey != "" {
			flag := s.live(st.flagShard, c.FlagKey, now)
			if flag == nil || !flag.flag {
				continue
			}
		}
		st.applied = true
		st.entry = s.live(st.shard, c.Key, now)
		if st.entry != nil {
			st.entry.pinned = true
		}
		used := usedBy(st.entry, c, now)
		res := &b.Results[i]
		res.Applied = true
		res.Allowed = used < c.Limit
		if !res.Allowed && !c.Shadow {
			allowed = false
		}
	}
	b.Allowed = allowed

	if record {
		if allowed {
			for i := range b.Counters {
				st := &states[i]
				if st.applied {
					st.entry = s.record(st.shard, st.entry, &b.Counters[i], now)
					st.entry.pinned = true
				}
			}
		} else if denialShard >= 0 {
			s.incrementFixed(denialShard, s.live(denialShard, b.DenialKey, now), b.DenialKey, now, now+b.DenialTTL.Milliseconds())
		}
	}

	for i := range b.Counters {
		if states[i].applied {
			fillResult(states[i].entry, &b.Counters[i], &b.Results[i], now)
			if states[i].entry != nil {
				states[i].entry.pinned = false
			}
		}
	}
	return nil
}

// live returns the unexpired entry of key in shard, deleting an expired
// one. The caller holds the shard lock.
func (s *MemoryStore) live(shard int, key string, now int64) *memoryEntry {
	sh := &s.shards[shard]
	e := sh.entries[key]
	if e == nil {
		return nil
	}
	if e.expires <= now {
		delete(sh.entries, key)
		return nil
	}
	return e
}

// usedBy returns the number of requests counter c currently counts in e,
// pruning expired buckets.
func usedBy(e *memoryEntry, c *Counter, now int64) int64 {
	if e == nil {
		return 0
	}
	e.limit = c.Limit
	if !c.WindowEnd.IsZero() {
		return e.fixed
	}
	period := c.Period.Milliseconds()
	e.win.prune(e.win.clampNow(now), period)
	return e.win.used()
}

// record adds one request to counter c, whose entry e may be nil, and
// returns the entry.
func (s *MemoryStore) record(shard int, e *memoryEntry, c *Counter, now int64) *memoryEntry {
	if !c.WindowEnd.IsZero() {
		e = s.incrementFixed(shard, e, c.Key, now, c.WindowEnd.UnixMilli())
		e.limit = c.Limit
		return e
	}
	if e == nil {
		e = s.insert(shard, c.Key, now)
	}
	e.limit = c.Limit
	period := c.Period.Milliseconds()
	at := e.win.clampNow(now)
	e.win.prune(at, period)
	e.win.add(at, period)
	e.expires = at + period
	return e
}

// incrementFixed adds one to the plain counter at key, whose entry e may be
// nil, creating it with the given expiry.
func (s *MemoryStore) incrementFixed(shard int, e *memoryEntry, key string, now, expires int64) *memoryEntry {
	if e == nil {
		e = s.insert(shard, key, now)
		if expires <= now {
			// The window has already ended on this clock; keep the key no
			// longer than a moment so it cannot outlive its window.
			expires = now + 1
		}
		e.expires = expires
	}
	e.fixed++
	return e
}

func fillResult(e *memoryEntry, c *Counter, res *CounterResult, now int64) {
	if !c.WindowEnd.IsZero() {
		var used int64
		if e != nil {
			used = e.fixed
		}
		res.Remaining = max(0, c.Limit-used)
		end := c.WindowEnd.UnixMilli()
		if used > 0 {
			res.ResetAfter = millis(end - now)
		}
		if !res.Allowed {
			res.RetryAfter = millis(end - now)
		}
		return
	}
	if e == nil {
		res.Remaining = c.Limit
		return
	}
	period := c.Period.Milliseconds()
	at := e.win.clampNow(now)
	res.Remaining = max(0, c.Limit-e.win.used())
	res.ResetAfter = millis(e.win.resetAfter(at, period) + at - now)
	if !res.Allowed {
		res.RetryAfter = millis(e.win.retryAfter(at, period, c.Limit) + at - now)
	}
}

func millis(ms int64) time.Duration {
	if ms < 0 {
		return 0
	}
	return time.Duration(ms) * time.Millisecond
}

// insert adds an empty entry for key, evicting another if the shard is full.
// The caller holds the shard lock.
func (s *MemoryStore) insert(shard int, key string, now int64) *memoryEntry {
	sh := &s.shards[shard]
	sh.inserts++
	if sh.inserts >= memorySweepEvery {
		sh.inserts = 0
		for k, e := range sh.entries {
			if e.expires <= now {
				delete(sh.entries, k)
			}
		}
	}
	if len(sh.entries) >= s.maxPerShard {
		s.evictOne(sh, now)
	}
	e := &memoryEntry{}
	// The key may be backed by a caller's reusable buffer; keep a copy.
	sh.entries[strings.Clone(key)] = e
	return e
}

// evictOne deletes an expired entry or else a counter that is not denying,
// looking at a few entries in the map's random order.
func (s *MemoryStore) evictOne(sh *memoryShard, now int64) {
	var candidate string
	found := false
	scanned := 0
	for k, e := range sh.entries {
		if e.expires <= now {
			delete(sh.entries, k)
			return
		}
		if !found && !e.flag && !e.pinned && !denying(e, now) {
			candidate, found = k, true
		}
		scanned++
		if scanned >= memoryEvictScan {
			break
		}
	}
	if found {
		delete(sh.entries, candidate)
	}
}

// denying reports whether the counter in e is at its limit.
func denying(e *memoryEntry, now int64) bool {
	if e.win.n == 0 {
		return e.fixed >= e.limit
	}
	var used int64
	for i := 0; i < e.win.n; i++ {
		// Buckets that have expired but were not pruned yet still count
		// here, which errs towards keeping the counter.
		used += e.win.count[i]
	}
	return used >= e.limit
}

// SetFlag implements Store.
func (s *MemoryStore) SetFlag(ctx context.Context, key string, until time.Time) error {
	now := s.clock.Now().UnixMilli()
	expires := until.UnixMilli()
	shard := shardIndex(key)
	sh := &s.shards[shard]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if expires <= now {
		delete(sh.entries, key)
		return nil
	}
	e := s.live(shard, key, now)
	if e == nil {
		e = s.insert(shard, key, now)
	}
	e.flag = true
	e.expires = expires
	return nil
}

// DeleteFlag implements Store.
func (s *MemoryStore) DeleteFlag(ctx context.Context, key string) (bool, error) {
	now := s.clock.Now().UnixMilli()
	shard := shardIndex(key)
	sh := &s.shards[shard]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e := s.live(shard, key, now)
	if e == nil || !e.flag {
		return false, nil
	}
	delete(sh.entries, key)
	return true, nil
}

// FlagExpiry implements Store.
func (s *MemoryStore) FlagExpiry(ctx context.Context, key string) (time.Time, bool, error) {
	now := s.clock.Now().UnixMilli()
	shard := shardIndex(key)
	sh := &s.shards[shard]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e := s.live(shard, key, now)
	if e == nil || !e.flag {
		return time.Time{}, false, nil
	}
	return time.UnixMilli(e.expires), true, nil
}

// DeleteMatching implements Store.
func (s *MemoryStore) DeleteMatching(ctx context.Context, pattern string) (int, error) {
	deleted := 0
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		for k := range sh.entries {
			if globMatch(pattern, k) {
				delete(sh.entries, k)
				deleted++
			}
		}
		sh.mu.Unlock()
	}
	return deleted, nil
}

// globMatch reports whether key matches pattern, in which only '*' is
// special. Keys never contain '/', so path.Match's treatment of it does not
// matter; its other metacharacters are escaped first.
func globMatch(pattern, key string) bool {
	escaped := strings.NewReplacer(`\`, `\\`, `?`, `\?`, `[`, `\[`).Replace(pattern)
	ok, err := path.Match(escaped, key)
	return err == nil && ok
}

// Count implements Store.
func (s *MemoryStore) Count(ctx context.Context, key string) (int64, error) {
	now := s.clock.Now().UnixMilli()
	shard := shardIndex(key)
	sh := &s.shards[shard]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	e := s.live(shard, key, now)
	if e == nil {
		return 0, nil
	}
	return e.fixed, nil
}
