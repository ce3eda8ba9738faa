package throttle

import (
	"net/netip"
	"sync"
)

// hashCacheShards and hashCacheShardSize bound the cache of hashed client
// addresses: 16 shards of 4096 entries, about 64 KiB of keys and 2 MiB of
// strings at most.
const (
	hashCacheShards    = 16
	hashCacheShardSize = 4096
)

// hashCache remembers the hashed form of recent client addresses and API
// keys, so the hot path computes a SHA-256 (or HMAC) once per client instead
// of once per request, and does not allocate a string for it. A full shard
// is emptied rather than tracked for recency: the next requests of its
// clients pay one hash each.
type hashCache struct {
	ips  [hashCacheShards]ipHashShard
	keys apiKeyHashShard
}

type ipHashShard struct {
	// mu guards hashes.
	mu     sync.RWMutex
	hashes map[netip.Addr]string
}

type apiKeyHashShard struct {
	// mu guards hashes.
	mu     sync.RWMutex
	hashes map[string]string
}

// ipHash returns the key form of a client address.
func (l *Limiter) ipHash(addr netip.Addr) string {
	a16 := addr.As16()
	sh := &l.hashes.ips[(a16[15]^a16[11]^a16[7])%hashCacheShards]
	sh.mu.RLock()
	h, ok := sh.hashes[addr]
	sh.mu.RUnlock()
	if ok {
		return h
	}

	h = string(l.keys.hashIP(nil, addr))
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.hashes == nil || len(sh.hashes) >= hashCacheShardSize {
		sh.hashes = make(map[netip.Addr]string)
	}
	sh.hashes[addr] = h
	return h
}

// apiKeyHash returns the key form of an API key.
func (l *Limiter) apiKeyHash(key string) string {
	sh := &l.hashes.keys
	sh.mu.RLock()
	h, ok := sh.hashes[key]
	sh.mu.RUnlock()
	if ok {
		return h
	}

	h = l.keys.hashAPIKey(key)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.hashes == nil || len(sh.hashes) >= hashCacheShardSize {
		sh.hashes = make(map[string]string)
	}
	sh.hashes[key] = h
	return h
}
