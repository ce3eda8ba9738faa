package throttle

import (
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"net/netip"
	"time"
	"unsafe"
)

// Keys look like this, so an operator can find them with
// `redis-cli --scan --pattern 'throttle:*'`:
//
//	throttle:plan:acme:{u.42}                      sliding window of user 42 of tenant acme
//	throttle:daily:acme:{u.42}:2026-12-04          calendar-day quota, the date in the key
//	throttle:ip_burst:_:{ip.Xq3...}                per-IP counter, across tenants ("_")
//	throttle:flag:_:{ip.Xq3...}                    a flagged IP
//	throttle:denials:acme:2026-12-04               denials of tenant acme that day
//
// Every part is encoded so that no two (prefix, scope, tenant, subject,
// window) tuples share a key, whatever characters tenant slugs and user IDs
// contain. A value made only of letters, digits, '.', '-' and '_' (not
// first), at most maxRawKeyPart bytes long, is written as is. Any other
// value is written as '~' and the base64url SHA-256 of the value, cut to 22
// characters (128 bits). The two forms cannot meet, because '~' is never
// part of a raw value. Keys therefore stay short whatever the input size.
//
// The subject is wrapped in braces so that Redis Cluster hashes only the
// subject: the counters of one user, or of one client IP, share a hash slot
// and can be checked in one round trip.

// maxRawKeyPart is the length above which a key part is hashed.
const maxRawKeyPart = 64

// globalTenant is the tenant part of counters shared by every tenant, such
// as per-IP counters. Raw tenant slugs cannot start with '_'.
const globalTenant = "_"

// publicTenant is the tenant of requests that have none.
const publicTenant = "public"

// Subject kinds, written before a '.' in the subject part of a key.
const (
	subjectUser   = "u"
	subjectIP     = "ip"
	subjectAPIKey = "k"
)

// reservedScopes are scope names the library uses for keys of its own.
var reservedScopes = map[string]bool{"flag": true, "denials": true}

// keyPartIsRaw reports whether s can be written into a key unchanged.
func keyPartIsRaw(s string) bool {
	if s == "" || len(s) > maxRawKeyPart || s[0] == '_' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// appendKeyPart appends s to dst in its key encoding.
func appendKeyPart(dst []byte, s string) []byte {
	if keyPartIsRaw(s) {
		return append(dst, s...)
	}
	sum := sha256.Sum256([]byte(s))
	dst = append(dst, '~')
	return base64.RawURLEncoding.AppendEncode(dst, sum[:16])
}

// validateName checks a prefix or scope name: it must be written raw.
func validateName(field, s string) error {
	if !keyPartIsRaw(s) {
		return fmt.Errorf("%s: invalid name %q: use 1 to %d letters, digits, '.', '-' or '_', not starting with '_'", field, s, maxRawKeyPart)
	}
	return nil
}

// keyBuilder builds the keys of one limiter.
type keyBuilder struct {
	prefix string
	// ipSecret, when set, keys the hash of client IPs (HMAC-SHA-256), so a
	// key cannot be reversed by hashing every IPv4 address.
	ipSecret []byte
	location *time.Location
}

// appendCounterKey appends the key of a counter. An empty tenant names the
// counters shared by every tenant.
func (kb *keyBuilder) appendCounterKey(dst []byte, scope, tenant string, subject Subject) []byte {
	dst = append(dst, kb.prefix...)
	dst = append(dst, ':')
	dst = append(dst, scope...)
	dst = append(dst, ':')
	if tenant == "" {
		// Counters shared by every tenant. A tenant slugged "_" is hashed
		// like any slug starting with '_', so it cannot reach this form.
		dst = append(dst, globalTenant...)
	} else {
		dst = appendKeyPart(dst, tenant)
	}
	dst = append(dst, ":{"...)
	dst = append(dst, subject.Kind...)
	dst = append(dst, '.')
	if subject.Kind == subjectUser {
		dst = appendKeyPart(dst, subject.Value)
	} else {
		// IP and API-key subjects are hashed already.
		dst = append(dst, subject.Value...)
	}
	return append(dst, '}')
}

// flagKey returns the key that flags a client IP hash.
func (kb *keyBuilder) flagKey(ipHash string) string {
	return string(kb.appendFlagKey(nil, ipHash))
}

// appendFlagKey appends the key that flags a client IP hash.
func (kb *keyBuilder) appendFlagKey(dst []byte, ipHash string) []byte {
	return kb.appendCounterKey(dst, "flag", "", Subject{Kind: subjectIP, Value: ipHash})
}

// denialKey returns the key that counts a tenant's denials on day t.
func (kb *keyBuilder) denialKey(dst []byte, tenant string, t time.Time) []byte {
	var date [len(time.DateOnly)]byte
	t.In(kb.location).AppendFormat(date[:0], time.DateOnly)
	return kb.appendDenialKey(dst, tenant, date[:])
}

// appendDenialKey appends the key that counts a tenant's denials on the
// day whose date is given as YYYY-MM-DD.
func (kb *keyBuilder) appendDenialKey(dst []byte, tenant string, date []byte) []byte {
	dst = append(dst, kb.prefix...)
	dst = append(dst, ":denials:{"...)
	dst = appendKeyPart(dst, tenant)
	dst = append(dst, "}:"...)
	return append(dst, date...)
}

// hashIP returns the subject value for a client address: 22 base64url
// characters of SHA-256, or of HMAC-SHA-256 when a secret is configured.
// The address is never stored in clear.
func (kb *keyBuilder) hashIP(dst []byte, addr netip.Addr) []byte {
	var raw [16]byte
	n := 16
	if addr.Is4() {
		a4 := addr.As4()
		copy(raw[:], a4[:])
		n = 4
	} else {
		raw = addr.As16()
	}
	sum := kb.sum(raw[:n])
	return base64.RawURLEncoding.AppendEncode(dst, sum[:16])
}

// sum hashes data with SHA-256, keyed with HMAC when a secret is set. The
// HMAC is computed by hand over stack buffers, so it does not allocate;
// data is at most 64 bytes here.
func (kb *keyBuilder) sum(data []byte) [sha256.Size]byte {
	if len(kb.ipSecret) == 0 {
		return sha256.Sum256(data)
	}
	var block [sha256.BlockSize]byte
	copy(block[:], kb.ipSecret) // The secret was hashed down to 32 bytes if longer than a block.
	var inner [sha256.BlockSize + 64]byte
	for i := range block {
		inner[i] = block[i] ^ 0x36
	}
	n := copy(inner[sha256.BlockSize:], data)
	innerSum := sha256.Sum256(inner[:sha256.BlockSize+n])
	var outer [sha256.BlockSize + sha256.Size]byte
	for i := range block {
		outer[i] = block[i] ^ 0x5c
	}
	copy(outer[sha256.BlockSize:], innerSum[:])
	return sha256.Sum256(outer[:])
}

// hashAPIKey returns the subject value of an API key. API keys are never
// stored or logged raw.
func (kb *keyBuilder) hashAPIKey(key string) string {
	data := []byte(key)
	if len(data) > 64 {
		digest := sha256.Sum256(data)
		data = digest[:]
	}
	sum := kb.sum(data)
	return base64.RawURLEncoding.EncodeToString(sum[:16])
}

// newKeyBuilder prepares a builder, hashing a secret longer than a SHA-256
// block as HMAC requires.
func newKeyBuilder(prefix string, secret []byte, location *time.Location) *keyBuilder {
	kb := &keyBuilder{prefix: prefix, location: location}
	if len(secret) > sha256.BlockSize {
		s := sha256.Sum256(secret)
		kb.ipSecret = s[:]
	} else if len(secret) > 0 {
		kb.ipSecret = append([]byte(nil), secret...)
	}
	return kb
}

// keyArena holds the keys of one decision in one buffer. The strings it
// hands out point into the buffer without copying, so they stay valid only
// until the arena is reset for the next decision that reuses it.
type keyArena struct {
	buf   []byte
	begin int
}

// reset empties the arena, keeping its capacity.
func (a *keyArena) reset() {
	if a.buf == nil {
		a.buf = make([]byte, 0, 512)
	}
	a.buf = a.buf[:0]
}

// start marks the beginning of a key.
func (a *keyArena) start() { a.begin = len(a.buf) }

// end returns the key written since start.
func (a *keyArena) end() string {
	if len(a.buf) == a.begin {
		return ""
	}
	return unsafe.String(&a.buf[a.begin], len(a.buf)-a.begin)
}
