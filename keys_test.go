package throttle

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"net/http"
	"net/netip"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// maxTestKeyLen bounds every counter key that the default prefix and the
// default scope names produce: two key parts of at most 64 bytes each, the
// scope, the punctuation and a date.
const maxTestKeyLen = 200

// memoryKeys returns every key in s, sorted.
func memoryKeys(s *MemoryStore) []string {
	var keys []string
	for i := range s.shards {
		sh := &s.shards[i]
		sh.mu.Lock()
		for k := range sh.entries {
			keys = append(keys, k)
		}
		sh.mu.Unlock()
	}
	sort.Strings(keys)
	return keys
}

// userCounterKey builds the key of a per-user counter the way the limiter
// does for an identity with the given tenant slug.
func userCounterKey(kb *keyBuilder, scope, tenantSlug, userID string) string {
	tenant := Identity{Tenant: Tenant{Slug: tenantSlug}}.TenantSlug()
	return string(kb.appendCounterKey(nil, scope, tenant, Subject{Kind: subjectUser, Value: userID}))
}

func TestKeyPartEncoding(t *testing.T) {
	cases := []struct {
		name string
		in   string
		raw  bool
	}{
		{name: "letters", in: "acme", raw: true},
		{name: "digits", in: "42", raw: true},
		{name: "dot dash underscore", in: "a.b-c_d", raw: true},
		{name: "mixed case", in: "AcMe", raw: true},
		{name: "64 bytes", in: strings.Repeat("a", 64), raw: true},
		{name: "65 bytes", in: strings.Repeat("a", 65)},
		{name: "empty", in: ""},
		{name: "leading underscore", in: "_acme"},
		{name: "lone underscore", in: "_"},
		{name: "leading tilde", in: "~acme"},
		{name: "colon", in: "a:b"},
		{name: "braces", in: "{a}"},
		{name: "space", in: "a b"},
		{name: "newline", in: "a\nb"},
		{name: "glob star", in: "a*"},
		{name: "slash", in: "a/b"},
		{name: "unicode", in: "zürich"},
		{name: "nul byte", in: "a\x00b"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := string(appendKeyPart(nil, tc.in))
			assert.Equal(t, tc.raw, keyPartIsRaw(tc.in))
			if tc.raw {
				assert.Equal(t, tc.in, got)
				return
			}
			sum := sha256.Sum256([]byte(tc.in))
			assert.Equal(t, "~"+base64.RawURLEncoding.EncodeToString(sum[:16]), got)
			assert.Len(t, got, 23)
		})
	}
}

func TestCounterKeyLayout(t *testing.T) {
	kb := newKeyBuilder(DefaultPrefix, nil, time.UTC)

	assert.Equal(t, "throttle:plan:acme:{u.42}", userCounterKey(kb, "plan", "acme", "42"))
	assert.Equal(t, "throttle:plan:public:{u.42}", userCounterKey(kb, "plan", "", "42"))

	ipKey := string(kb.appendCounterKey(nil, "ip_burst", "", Subject{Kind: subjectIP, Value: "HASH"}))
	assert.Equal(t, "throttle:ip_burst:_:{ip.HASH}", ipKey)

	day := time.Date(2026, time.December, 4, 15, 0, 0, 0, time.UTC)
	daily := appendDate(kb.appendCounterKey(nil, "daily", "acme", Subject{Kind: subjectUser, Value: "42"}), day)
	assert.Equal(t, "throttle:daily:acme:{u.42}:2026-12-04", string(daily))

	assert.Equal(t, "throttle:denials:{acme}:2026-12-04", string(kb.denialKey(nil, "acme", day)))
}

// collidingPairs are (tenant, user ID) pairs that share a key under naive
// joining with "_" or ":", or that test the raw and hashed forms against
// each other.
var collidingPairs = [][2]string{
	{"a_b", "c"},
	{"a", "b_c"},
	{"a:b", "c"},
	{"a", "b:c"},
	{"a", "b}:{u.c"},
	{"a}", "b"},
	{"{a", "b"},
	{"a", "{b}"},
	{"a b", "c"},
	{"a", "b c"},
	{"a\nb", "c"},
	{"a", "b\nc"},
	{"zürich", "jörg"},
	{"zurich", "jorg"},
	{"東京", "ユーザー"},
	{"_a", "b"},
	{"a", "_b"},
	{"~a", "b"},
	{"a", "~b"},
	{"_", "b"},
	{"acme", "~" + base64.RawURLEncoding.EncodeToString(make([]byte, 16))},
	{"acme", strings.Repeat("x", 64)},
	{"acme", strings.Repeat("x", 65)},
	{"acme", strings.Repeat("u", 1<<20)},
	{"acme", strings.Repeat("u", 1<<20) + "v"},
	{strings.Repeat("t", 1<<20), "u"},
	{"acme", "42"},
	{"acme", "42 "},
	{"acme", " 42"},
	{"ACME", "42"},
	{"public", "42"},
	{"acme.io", "42"},
	{"acme", "u.42"},
}

func TestCounterKeysDistinct(t *testing.T) {
	kb := newKeyBuilder(DefaultPrefix, nil, time.UTC)
	seen := make(map[string][2]string, len(collidingPairs))
	for _, pair := range collidingPairs {
		key := userCounterKey(kb, "plan", pair[0], pair[1])
		if other, ok := seen[key]; ok {
			t.Errorf("pairs %q and %q share the key %q", abbreviate(other), abbreviate(pair), key)
		}
		seen[key] = pair
	}
}

func TestCounterKeysBounded(t *testing.T) {
	kb := newKeyBuilder(DefaultPrefix, nil, time.UTC)
	day := time.Date(2026, time.December, 4, 0, 0, 0, 0, time.UTC)
	for _, pair := range collidingPairs {
		for _, scope := range []string{"plan", "expensive_operation"} {
			key := appendDate([]byte(userCounterKey(kb, scope, pair[0], pair[1])), day)
			assert.LessOrEqual(t, len(key), maxTestKeyLen, "pair %q", abbreviate(pair))
			assert.True(t, printableKey(string(key)), "key %q", key)
		}
	}
}

func TestDenialKeysDistinct(t *testing.T) {
	kb := newKeyBuilder(DefaultPrefix, nil, time.UTC)
	day := time.Date(2026, time.December, 4, 0, 0, 0, 0, time.UTC)
	seen := make(map[string]string)
	for _, tenant := range []string{"a", "a_b", "a:b", "a}", "{a", "_a", "~a", "a b", "zürich", "acme", "ACME"} {
		key := string(kb.denialKey(nil, tenant, day))
		if other, ok := seen[key]; ok {
			t.Errorf("tenants %q and %q share the denial key %q", other, tenant, key)
		}
		seen[key] = tenant
	}
}

// abbreviate shortens the megabyte values of a pair for failure messages.
func abbreviate(pair [2]string) [2]string {
	for i, s := range pair {
		if len(s) > 80 {
			pair[i] = s[:40] + "..."
		}
	}
	return pair
}

// printableKey reports whether key is printable ASCII without spaces, so an
// operator can read and type it.
func printableKey(key string) bool {
	for i := 0; i < len(key); i++ {
		if key[i] <= ' ' || key[i] > '~' {
			return false
		}
	}
	return true
}

// addressForms returns texts in which an address could leak into a key.
func addressForms(addr netip.Addr) []string {
	forms := []string{addr.String(), addr.StringExpanded(), hex.EncodeToString(addr.AsSlice())}
	raw := addr.AsSlice()
	forms = append(forms,
		base64.StdEncoding.EncodeToString(raw),
		base64.RawURLEncoding.EncodeToString(raw),
	)
	if addr.Is4() {
		forms = append(forms, netip.AddrFrom16(addr.As16()).String())
	}
	return forms
}

func TestKeysNeverHoldClientIP(t *testing.T) {
	remotes := []string{
		"203.0.113.7:1234",
		"198.51.100.250:80",
		"10.0.0.1:5555",
		"127.0.0.1:9999",
		"[2001:db8:1:2::7]:443",
		"[2001:db8:ffff:abcd:1:2:3:4]:443",
		"[::1]:8080",
		"[::ffff:192.0.2.33]:80",
	}
	for _, remote := range remotes {
		t.Run(remote, func(t *testing.T) {
			rig := newLimiterRig(t, Config{IPHashSecret: []byte("test secret")})
			req := newAnonymousRequest(http.MethodPost, "acme", remote)

			d, err := rig.lim.Check(req)
			require.NoError(t, err)
			require.True(t, d.Allowed)

			addr, ok := rig.lim.cfg.ClientIP.ClientIP(req)
			require.True(t, ok)
			require.NoError(t, rig.lim.FlagIP(context.Background(), addr, time.Hour))

			keys := memoryKeys(rig.store)
			for _, s := range d.Statuses {
				keys = append(keys, s.Key)
			}
			require.NotEmpty(t, keys)

			peer := netip.MustParseAddrPort(remote).Addr()
			for _, key := range keys {
				for _, form := range append(addressForms(peer), addressForms(addr)...) {
					assert.NotContains(t, key, form)
				}
			}
		})
	}
}

func TestHashIPStable(t *testing.T) {
	kb := newKeyBuilder(DefaultPrefix, []byte("secret"), time.UTC)
	for _, text := range []string{"203.0.113.7", "2001:db8:1:2::", "::1"} {
		addr := netip.MustParseAddr(text)
		first := string(kb.hashIP(nil, addr))
		second := string(kb.hashIP(nil, addr))
		assert.Equal(t, first, second, text)
		assert.Len(t, first, 22, text)
	}
}

func TestHashIPDistinctAddresses(t *testing.T) {
	kb := newKeyBuilder(DefaultPrefix, []byte("secret"), time.UTC)
	seen := make(map[string]string)
	for _, text := range []string{"203.0.113.7", "203.0.113.8", "7.113.0.203", "::cb00:7107", "2001:db8::", "2001:db8::1", "::"} {
		hash := string(kb.hashIP(nil, netip.MustParseAddr(text)))
		if other, ok := seen[hash]; ok {
			t.Errorf("addresses %s and %s share the hash %s", other, text, hash)
		}
		seen[hash] = text
	}
}

func TestHashIPSecret(t *testing.T) {
	addr := netip.MustParseAddr("203.0.113.7")
	unkeyed := string(newKeyBuilder(DefaultPrefix, nil, time.UTC).hashIP(nil, addr))
	first := string(newKeyBuilder(DefaultPrefix, []byte("first secret"), time.UTC).hashIP(nil, addr))
	second := string(newKeyBuilder(DefaultPrefix, []byte("second secret"), time.UTC).hashIP(nil, addr))

	assert.NotEqual(t, unkeyed, first)
	assert.NotEqual(t, unkeyed, second)
	assert.NotEqual(t, first, second)
}

// TestHashIPMatchesHMAC checks the hand-written HMAC against crypto/hmac for
// secrets shorter than, equal to and longer than a SHA-256 block.
func TestHashIPMatchesHMAC(t *testing.T) {
	addrs := []netip.Addr{netip.MustParseAddr("203.0.113.7"), netip.MustParseAddr("2001:db8:1:2::")}
	for _, size := range []int{1, 16, 32, 63, 64, 65, 200} {
		secret := []byte(strings.Repeat("k", size-1) + "!")
		kb := newKeyBuilder(DefaultPrefix, secret, time.UTC)
		for _, addr := range addrs {
			mac := hmac.New(sha256.New, secret)
			mac.Write(addr.AsSlice())
			want := base64.RawURLEncoding.EncodeToString(mac.Sum(nil)[:16])
			assert.Equal(t, want, string(kb.hashIP(nil, addr)), "secret of %d bytes, %s", size, addr)
		}
	}
}

func TestHashIPUnkeyedIsSHA256(t *testing.T) {
	addr := netip.MustParseAddr("203.0.113.7")
	sum := sha256.Sum256(addr.AsSlice())
	want := base64.RawURLEncoding.EncodeToString(sum[:16])
	assert.Equal(t, want, string(newKeyBuilder(DefaultPrefix, nil, time.UTC).hashIP(nil, addr)))
}

func TestHashAPIKey(t *testing.T) {
	kb := newKeyBuilder(DefaultPrefix, []byte("secret"), time.UTC)
	long := strings.Repeat("k", 500)

	assert.Equal(t, kb.hashAPIKey("key-1"), kb.hashAPIKey("key-1"))
	assert.NotEqual(t, kb.hashAPIKey("key-1"), kb.hashAPIKey("key-2"))
	assert.NotEqual(t, kb.hashAPIKey(long), kb.hashAPIKey(long+"x"))
	assert.NotContains(t, kb.hashAPIKey("key-1"), "key-1")
	assert.Len(t, kb.hashAPIKey(long), 22)
}

func FuzzKeyEncoding(f *testing.F) {
	f.Add("a_b", "c", "a", "b_c")
	f.Add("a:b", "c", "a", "b:c")
	f.Add("{a}", "b", "a", "{b}")
	f.Add("_", "u", "~", "u")
	f.Add("", "42", "public", "43")
	f.Add("zürich", "jörg\n", "zurich", "jorg")
	f.Add(strings.Repeat("x", 65), "1", strings.Repeat("x", 64), "1")
	kb := newKeyBuilder(DefaultPrefix, nil, time.UTC)
	day := time.Date(2026, time.December, 4, 0, 0, 0, 0, time.UTC)

	f.Fuzz(func(t *testing.T, tenant1, user1, tenant2, user2 string) {
		if user1 == "" || user2 == "" {
			// An empty user ID is an anonymous caller, which has no user counter.
			return
		}
		key1 := userCounterKey(kb, "plan", tenant1, user1)
		key2 := userCounterKey(kb, "plan", tenant2, user2)

		slug1 := Identity{Tenant: Tenant{Slug: tenant1}}.TenantSlug()
		slug2 := Identity{Tenant: Tenant{Slug: tenant2}}.TenantSlug()
		if slug1 != slug2 || user1 != user2 {
			require.NotEqual(t, key1, key2)
		} else {
			require.Equal(t, key1, key2)
		}

		for _, key := range []string{key1, key2} {
			dated := appendDate([]byte(key), day)
			require.LessOrEqual(t, len(dated), maxTestKeyLen)
			require.True(t, printableKey(string(dated)), "key %q", dated)
		}
		if slug1 != slug2 {
			require.NotEqual(t, string(kb.denialKey(nil, slug1, day)), string(kb.denialKey(nil, slug2, day)))
		}
	})
}

// appendDate appends ":YYYY-MM-DD" for the calendar day of t, as the
// limiter writes it into the keys of calendar-day quotas.
func appendDate(dst []byte, t time.Time) []byte {
	dst = append(dst, ':')
	return t.AppendFormat(dst, time.DateOnly)
}
