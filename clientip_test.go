package throttle

import (
	"net/http"
	"net/netip"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// proxyTier is the trusted proxy list used by most tests: a private network,
// the IPv4 loopback and an IPv6 documentation block.
const proxyTier = "10.0.0.0/8, 127.0.0.1, 2001:db8:ffff::/48"

func mustTrustedProxies(t testing.TB, s string) []netip.Prefix {
	t.Helper()
	prefixes, err := ParseTrustedProxies(s)
	require.NoError(t, err)
	return prefixes
}

func newClientIPRequest(remoteAddr string, header http.Header) *http.Request {
	if header == nil {
		header = http.Header{}
	}
	return &http.Request{Method: http.MethodGet, RemoteAddr: remoteAddr, Header: header}
}

type clientIPCase struct {
	name       string
	resolver   ClientIPResolver
	remoteAddr string
	header     http.Header
	// want is the expected address, or "" when ClientIP must return false.
	want string
}

func runClientIPCases(t *testing.T, cases []clientIPCase) {
	t.Helper()
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := tc.resolver.ClientIP(newClientIPRequest(tc.remoteAddr, tc.header))
			if tc.want == "" {
				assert.False(t, ok)
				assert.Equal(t, netip.Addr{}, got)
				return
			}
			require.True(t, ok)
			assert.Equal(t, netip.MustParseAddr(tc.want), got)
		})
	}
}

func TestClientIPPeerOnly(t *testing.T) {
	runClientIPCases(t, []clientIPCase{
		{name: "ipv4 with port", remoteAddr: "192.0.2.7:5678", want: "192.0.2.7"},
		{name: "ipv4 without port", remoteAddr: "192.0.2.7", want: "192.0.2.7"},
		{name: "ipv6 with port", remoteAddr: "[2001:db8:1:2::7]:443", want: "2001:db8:1:2::"},
		{name: "ipv6 without port", remoteAddr: "2001:db8:1:2::7", want: "2001:db8:1:2::"},
		{name: "ipv6 in brackets without port", remoteAddr: "[2001:db8:1:2::7]", want: "2001:db8:1:2::"},
		{name: "zone dropped", remoteAddr: "[fe80::1%eth0]:80", want: "fe80::"},
		{name: "zone dropped at /128", resolver: ClientIPResolver{IPv6Prefix: 128}, remoteAddr: "[fe80::1%eth0]:80", want: "fe80::1"},
		{name: "mapped ipv4 with port", remoteAddr: "[::ffff:192.0.2.7]:80", want: "192.0.2.7"},
		{name: "mapped ipv4 without port", remoteAddr: "::ffff:192.0.2.7", want: "192.0.2.7"},
		{name: "leading zeros in port", remoteAddr: "192.0.2.7:00080", want: "192.0.2.7"},
		{name: "empty", remoteAddr: ""},
		{name: "unix socket", remoteAddr: "@"},
		{name: "host name", remoteAddr: "localhost:80"},
		{name: "port not numeric", remoteAddr: "192.0.2.7:http"},
		{name: "port too large", remoteAddr: "192.0.2.7:65536"},
		{name: "port empty", remoteAddr: "192.0.2.7:"},
		{name: "ipv6 port empty", remoteAddr: "[2001:db8::1]:"},
		{name: "ipv4 in brackets", remoteAddr: "[192.0.2.7]:80"},
		{name: "ipv4 with zone", remoteAddr: "192.0.2.7%eth0:80"},
		{name: "empty zone", remoteAddr: "[fe80::1%]:80"},
		{name: "missing bracket", remoteAddr: "[2001:db8::1:80"},
		{name: "junk after bracket", remoteAddr: "[2001:db8::1]x80"},
		{name: "ipv4 octet too large", remoteAddr: "192.0.2.256:80"},
	})
}

func TestClientIPMappedEqualsIPv4(t *testing.T) {
	var resolver ClientIPResolver
	mapped, ok := resolver.ClientIP(newClientIPRequest("[::ffff:198.51.100.4]:1000", nil))
	require.True(t, ok)
	plain, ok := resolver.ClientIP(newClientIPRequest("198.51.100.4:2000", nil))
	require.True(t, ok)

	assert.Equal(t, plain, mapped)
	assert.True(t, mapped.Is4())
}

func TestClientIPIPv6Grouping(t *testing.T) {
	var resolver ClientIPResolver
	first, ok := resolver.ClientIP(newClientIPRequest("[2001:db8:1:2::1]:1000", nil))
	require.True(t, ok)
	sameBlock, ok := resolver.ClientIP(newClientIPRequest("[2001:db8:1:2:ffff:ffff:ffff:ffff]:1000", nil))
	require.True(t, ok)
	nextBlock, ok := resolver.ClientIP(newClientIPRequest("[2001:db8:1:3::1]:1000", nil))
	require.True(t, ok)

	assert.Equal(t, first, sameBlock)
	assert.NotEqual(t, first, nextBlock)
	assert.Equal(t, netip.MustParseAddr("2001:db8:1:2::"), first)
}

func TestClientIPCustomPrefix(t *testing.T) {
	runClientIPCases(t, []clientIPCase{
		{name: "/56 masks the low byte of the fourth group", resolver: ClientIPResolver{IPv6Prefix: 56}, remoteAddr: "[2001:db8:1:2ff::1]:80", want: "2001:db8:1:200::"},
		{name: "/56 keeps neighbours together", resolver: ClientIPResolver{IPv6Prefix: 56}, remoteAddr: "[2001:db8:1:2aa:1:2:3:4]:80", want: "2001:db8:1:200::"},
		{name: "/128 keeps the address", resolver: ClientIPResolver{IPv6Prefix: 128}, remoteAddr: "[2001:db8:1:2::7]:80", want: "2001:db8:1:2::7"},
		{name: "/1", resolver: ClientIPResolver{IPv6Prefix: 1}, remoteAddr: "[ffff::1]:80", want: "8000::"},
		{name: "ipv4 ignores the prefix", resolver: ClientIPResolver{IPv6Prefix: 8}, remoteAddr: "192.0.2.7:80", want: "192.0.2.7"},
		{name: "out of range acts as /64", resolver: ClientIPResolver{IPv6Prefix: 200}, remoteAddr: "[2001:db8:1:2::7]:80", want: "2001:db8:1:2::"},
		{name: "negative acts as /64", resolver: ClientIPResolver{IPv6Prefix: -1}, remoteAddr: "[2001:db8:1:2::7]:80", want: "2001:db8:1:2::"},
	})
}

func TestClientIPUntrustedPeerIgnoresHeaders(t *testing.T) {
	spoofed := http.Header{
		"X-Forwarded-For": {"203.0.113.66"},
		"Forwarded":       {"for=203.0.113.77"},
	}
	runClientIPCases(t, []clientIPCase{
		{name: "no trusted proxies", remoteAddr: "192.0.2.7:80", header: spoofed, want: "192.0.2.7"},
		{name: "peer outside trusted proxies", resolver: ClientIPResolver{TrustedProxies: mustTrustedProxies(t, proxyTier)}, remoteAddr: "192.0.2.7:80", header: spoofed, want: "192.0.2.7"},
		{name: "spoofed trusted address", resolver: ClientIPResolver{TrustedProxies: mustTrustedProxies(t, proxyTier)}, remoteAddr: "192.0.2.7:80", header: http.Header{"X-Forwarded-For": {"10.0.0.1"}}, want: "192.0.2.7"},
		{name: "ipv6 peer outside trusted proxies", resolver: ClientIPResolver{TrustedProxies: mustTrustedProxies(t, proxyTier)}, remoteAddr: "[2001:db8:1::1]:80", header: spoofed, want: "2001:db8:1::"},
	})
}

func TestClientIPXForwardedFor(t *testing.T) {
	trusted := ClientIPResolver{TrustedProxies: mustTrustedProxies(t, proxyTier)}
	xff := func(lines ...string) http.Header { return http.Header{"X-Forwarded-For": lines} }

	runClientIPCases(t, []clientIPCase{
		{name: "single entry", resolver: trusted, remoteAddr: "10.0.0.1:443", header: xff("203.0.113.9"), want: "203.0.113.9"},
		{name: "no header uses peer", resolver: trusted, remoteAddr: "10.0.0.1:443", want: "10.0.0.1"},
		{name: "rightmost untrusted wins", resolver: trusted, remoteAddr: "10.0.0.1:443", header: xff("198.51.100.1, 203.0.113.9"), want: "203.0.113.9"},
		{name: "several lines joined in order", resolver: trusted, remoteAddr: "10.0.0.1:443", header: xff("198.51.100.1, 203.0.113.9", "10.0.0.2"), want: "203.0.113.9"},
		{name: "last line is client", resolver: trusted, remoteAddr: "10.0.0.1:443", header: xff("198.51.100.1", "203.0.113.9"), want: "203.0.113.9"},
		{name: "chain of trusted proxies", resolver: trusted, remoteAddr: "10.0.0.1:443", header: xff("198.51.100.7, 203.0.113.9, 10.1.1.1, 127.0.0.1, 10.2.2.2"), want: "203.0.113.9"},
		{name: "no spaces", resolver: trusted, remoteAddr: "10.0.0.1:443", header: xff("198.51.100.7,203.0.113.9,10.1.1.1"), want: "203.0.113.9"},
		{name: "tabs and spaces trimmed", resolver: trusted, remoteAddr: "10.0.0.1:443", header: xff(" \t203.0.113.9 \t"), want: "203.0.113.9"},
		{name: "entry with port", resolver: trusted, remoteAddr: "10.0.0.1:443", header: xff("203.0.113.9:4711"), want: "203.0.113.9"},
		{name: "ipv6 entry", resolver: trusted, remoteAddr: "10.0.0.1:443", header: xff("2001:db8:5:6::9"), want: "2001:db8:5:6::"},
		{name: "ipv6 entry in brackets with port", resolver: trusted, remoteAddr: "10.0.0.1:443", header: xff("[2001:db8:5:6::9]:4711"), want: "2001:db8:5:6::"},
		{name: "mapped entry is trusted as ipv4", resolver: trusted, remoteAddr: "10.0.0.1:443", header: xff("203.0.113.9, ::ffff:10.0.0.2"), want: "203.0.113.9"},
		{name: "mapped client becomes ipv4", resolver: trusted, remoteAddr: "10.0.0.1:443", header: xff("::ffff:203.0.113.9"), want: "203.0.113.9"},
		{name: "mapped peer is trusted", resolver: trusted, remoteAddr: "[::ffff:10.0.0.1]:443", header: xff("203.0.113.9"), want: "203.0.113.9"},
		{name: "ipv6 trusted peer", resolver: trusted, remoteAddr: "[2001:db8:ffff::1]:443", header: xff("203.0.113.9"), want: "203.0.113.9"},
		{name: "zoned entry", resolver: trusted, remoteAddr: "10.0.0.1:443", header: xff("fe80::9%eth0"), want: "fe80::"},
		{name: "every entry trusted uses leftmost", resolver: trusted, remoteAddr: "10.0.0.1:443", header: xff("10.9.9.9, 127.0.0.1, 10.0.0.2"), want: "10.9.9.9"},
		{name: "takes precedence over forwarded", resolver: trusted, remoteAddr: "10.0.0.1:443", header: http.Header{"X-Forwarded-For": {"203.0.113.9"}, "Forwarded": {"for=198.51.100.1"}}, want: "203.0.113.9"},
	})
}

func TestClientIPForwarded(t *testing.T) {
	trusted := ClientIPResolver{TrustedProxies: mustTrustedProxies(t, proxyTier)}
	trustedFullIPv6 := ClientIPResolver{TrustedProxies: trusted.TrustedProxies, IPv6Prefix: 128}
	fwd := func(lines ...string) http.Header { return http.Header{"Forwarded": lines} }

	runClientIPCases(t, []clientIPCase{
		{name: "ipv4", resolver: trusted, remoteAddr: "10.0.0.1:443", header: fwd("for=192.0.2.60"), want: "192.0.2.60"},
		{name: "quoted ipv6 with port", resolver: trustedFullIPv6, remoteAddr: "10.0.0.1:443", header: fwd(`for="[2001:db8:cafe::17]:4711"`), want: "2001:db8:cafe::17"},
		{name: "quoted ipv6 without port", resolver: trustedFullIPv6, remoteAddr: "10.0.0.1:443", header: fwd(`for="[2001:db8:cafe::17]"`), want: "2001:db8:cafe::17"},
		{name: "quoted ipv4 with port", resolver: trusted, remoteAddr: "10.0.0.1:443", header: fwd(`for="192.0.2.60:8080"`), want: "192.0.2.60"},
		{name: "obfuscated port", resolver: trustedFullIPv6, remoteAddr: "10.0.0.1:443", header: fwd(`for="[2001:db8:cafe::17]:_p0rt"`), want: "2001:db8:cafe::17"},
		{name: "invalid obfuscated port", resolver: trusted, remoteAddr: "10.0.0.1:443", header: fwd(`for=192.0.2.43, for="[2001:db8:cafe::17]:_p!"`), want: "10.0.0.1"},
		{name: "mixed case For", resolver: trusted, remoteAddr: "10.0.0.1:443", header: fwd("For=192.0.2.60;proto=http;by=203.0.113.43"), want: "192.0.2.60"},
		{name: "upper case FOR after other pairs", resolver: trusted, remoteAddr: "10.0.0.1:443", header: fwd("proto=https;FOR=192.0.2.60"), want: "192.0.2.60"},
		{name: "spaces around separators", resolver: trusted, remoteAddr: "10.0.0.1:443", header: fwd("for=198.51.100.1 ,  proto=https ; for = 192.0.2.60 ;by=10.0.0.1"), want: "192.0.2.60"},
		{name: "empty pair", resolver: trusted, remoteAddr: "10.0.0.1:443", header: fwd("for=192.0.2.60;;proto=http"), want: "192.0.2.60"},
		{name: "rightmost untrusted wins", resolver: trusted, remoteAddr: "10.0.0.1:443", header: fwd("for=192.0.2.43, for=198.51.100.17"), want: "198.51.100.17"},
		{name: "several lines joined in order", resolver: trusted, remoteAddr: "10.0.0.1:443", header: fwd("for=192.0.2.43, for=198.51.100.17", "for=10.0.0.2;proto=https"), want: "198.51.100.17"},
		{name: "quoted comma inside other parameter", resolver: trusted, remoteAddr: "10.0.0.1:443", header: fwd(`for=192.0.2.43;host="a,b;c", for=10.0.0.2`), want: "192.0.2.43"},
		{name: "every element trusted uses leftmost", resolver: trusted, remoteAddr: "10.0.0.1:443", header: fwd(`for=10.9.9.9, for="[2001:db8:ffff::2]:80"`), want: "10.9.9.9"},
		{name: "unknown uses peer", resolver: trusted, remoteAddr: "10.0.0.1:443", header: fwd("for=192.0.2.43, for=unknown"), want: "10.0.0.1"},
		{name: "obfuscated identifier uses peer", resolver: trusted, remoteAddr: "10.0.0.1:443", header: fwd(`for=192.0.2.43, for="_hidden"`), want: "10.0.0.1"},
		{name: "obfuscated identifier stops at trusted hop", resolver: trusted, remoteAddr: "10.0.0.1:443", header: fwd("for=192.0.2.43, for=_hidden, for=10.0.0.2"), want: "10.0.0.2"},
		{name: "element without for", resolver: trusted, remoteAddr: "10.0.0.1:443", header: fwd("for=192.0.2.43, proto=https"), want: "10.0.0.1"},
		{name: "for given twice", resolver: trusted, remoteAddr: "10.0.0.1:443", header: fwd("for=192.0.2.43, for=198.51.100.1;for=198.51.100.2"), want: "10.0.0.1"},
		{name: "pair without equals", resolver: trusted, remoteAddr: "10.0.0.1:443", header: fwd("for=192.0.2.43, for=198.51.100.1;secure"), want: "10.0.0.1"},
		{name: "escaped quote", resolver: trusted, remoteAddr: "10.0.0.1:443", header: fwd(`for=192.0.2.43, for="198.51.100.1\""`), want: "10.0.0.1"},
		{name: "unterminated quote swallows later element", resolver: trusted, remoteAddr: "10.0.0.1:443", header: fwd(`for=192.0.2.43, for=", for=198.51.100.1`), want: "10.0.0.1"},
		{name: "empty quoted value", resolver: trusted, remoteAddr: "10.0.0.1:443", header: fwd(`for=192.0.2.43, for=""`), want: "10.0.0.1"},
		{name: "ipv4 in brackets", resolver: trusted, remoteAddr: "10.0.0.1:443", header: fwd(`for=192.0.2.43, for="[198.51.100.1]"`), want: "10.0.0.1"},
	})
}

func TestClientIPMalformedEntries(t *testing.T) {
	trusted := ClientIPResolver{TrustedProxies: mustTrustedProxies(t, proxyTier)}
	xff := func(lines ...string) http.Header { return http.Header{"X-Forwarded-For": lines} }
	fwd := func(lines ...string) http.Header { return http.Header{"Forwarded": lines} }
	const megabyte = 1 << 20

	runClientIPCases(t, []clientIPCase{
		{name: "garbage rightmost uses peer", resolver: trusted, remoteAddr: "10.0.0.1:443", header: xff("198.51.100.1, garbage"), want: "10.0.0.1"},
		{name: "garbage stops at trusted hop", resolver: trusted, remoteAddr: "10.0.0.1:443", header: xff("198.51.100.1, garbage, 10.0.0.2"), want: "10.0.0.2"},
		{name: "empty entry", resolver: trusted, remoteAddr: "10.0.0.1:443", header: xff("198.51.100.1, , 10.0.0.2"), want: "10.0.0.2"},
		{name: "trailing comma", resolver: trusted, remoteAddr: "10.0.0.1:443", header: xff("198.51.100.1,"), want: "10.0.0.1"},
		{name: "empty line", resolver: trusted, remoteAddr: "10.0.0.1:443", header: xff("198.51.100.1", ""), want: "10.0.0.1"},
		{name: "port not numeric", resolver: trusted, remoteAddr: "10.0.0.1:443", header: xff("198.51.100.1, 1.2.3.4:notaport"), want: "10.0.0.1"},
		{name: "obfuscated port not allowed", resolver: trusted, remoteAddr: "10.0.0.1:443", header: xff("198.51.100.1, 1.2.3.4:_p"), want: "10.0.0.1"},
		{name: "unknown", resolver: trusted, remoteAddr: "10.0.0.1:443", header: xff("198.51.100.1, unknown, 10.0.0.2"), want: "10.0.0.2"},
		{name: "host name", resolver: trusted, remoteAddr: "10.0.0.1:443", header: xff("198.51.100.1, proxy.example.com"), want: "10.0.0.1"},
		{name: "ipv4 with zone", resolver: trusted, remoteAddr: "10.0.0.1:443", header: xff("198.51.100.1, 1.2.3.4%eth0"), want: "10.0.0.1"},
		{name: "megabyte without commas", resolver: trusted, remoteAddr: "10.0.0.1:443", header: xff(strings.Repeat("9", megabyte)), want: "10.0.0.1"},
		{name: "megabyte zone", resolver: trusted, remoteAddr: "10.0.0.1:443", header: xff("fe80::1%" + strings.Repeat("z", megabyte)), want: "10.0.0.1"},
		{name: "megabyte of clients then garbage", resolver: trusted, remoteAddr: "10.0.0.1:443", header: xff(strings.Repeat("198.51.100.1, ", megabyte/14) + "x"), want: "10.0.0.1"},
		{name: "megabyte of commas", resolver: trusted, remoteAddr: "10.0.0.1:443", header: xff(strings.Repeat(",", megabyte)), want: "10.0.0.1"},
		{name: "forwarded megabyte of commas", resolver: trusted, remoteAddr: "10.0.0.1:443", header: fwd(strings.Repeat(",", megabyte)), want: "10.0.0.1"},
		{name: "forwarded megabyte of quotes", resolver: trusted, remoteAddr: "10.0.0.1:443", header: fwd(strings.Repeat(`"`, megabyte)), want: "10.0.0.1"},
		{name: "forwarded megabyte garbage then trusted", resolver: trusted, remoteAddr: "10.0.0.1:443", header: fwd(strings.Repeat("for=198.51.100.1;;", megabyte/18) + ", for=10.0.0.2"), want: "10.0.0.2"},
	})
}

func TestClientIPHopLimit(t *testing.T) {
	trusted := ClientIPResolver{TrustedProxies: mustTrustedProxies(t, proxyTier)}

	// Build a chain of 70 distinct trusted hops with the client left of them.
	// Only the rightmost 64 are examined, so the 64th from the right is the
	// result.
	hops := make([]string, 70)
	for i := range hops {
		hops[i] = netip.AddrFrom4([4]byte{10, 0, 1, byte(i)}).String()
	}
	chain := "198.51.100.1, " + strings.Join(hops, ", ")
	want := hops[len(hops)-maxForwardedHops]

	t.Run("x-forwarded-for", func(t *testing.T) {
		got, ok := trusted.ClientIP(newClientIPRequest("10.0.0.1:443", http.Header{"X-Forwarded-For": {chain}}))
		require.True(t, ok)
		assert.Equal(t, netip.MustParseAddr(want), got)
	})
	t.Run("x-forwarded-for one entry a line", func(t *testing.T) {
		lines := append([]string{"198.51.100.1"}, hops...)
		got, ok := trusted.ClientIP(newClientIPRequest("10.0.0.1:443", http.Header{"X-Forwarded-For": lines}))
		require.True(t, ok)
		assert.Equal(t, netip.MustParseAddr(want), got)
	})
	t.Run("forwarded", func(t *testing.T) {
		forwarded := "for=" + strings.ReplaceAll(chain, ", ", ", for=")
		got, ok := trusted.ClientIP(newClientIPRequest("10.0.0.1:443", http.Header{"Forwarded": {forwarded}}))
		require.True(t, ok)
		assert.Equal(t, netip.MustParseAddr(want), got)
	})
	t.Run("client within the limit", func(t *testing.T) {
		short := "198.51.100.1, " + strings.Join(hops[len(hops)-maxForwardedHops+1:], ", ")
		got, ok := trusted.ClientIP(newClientIPRequest("10.0.0.1:443", http.Header{"X-Forwarded-For": {short}}))
		require.True(t, ok)
		assert.Equal(t, netip.MustParseAddr("198.51.100.1"), got)
	})
}

func TestClientIPNilInputs(t *testing.T) {
	var resolver *ClientIPResolver
	got, ok := resolver.ClientIP(newClientIPRequest("192.0.2.7:80", http.Header{"X-Forwarded-For": {"203.0.113.9"}}))
	require.True(t, ok)
	assert.Equal(t, netip.MustParseAddr("192.0.2.7"), got)

	got, ok = (&ClientIPResolver{}).ClientIP(nil)
	assert.False(t, ok)
	assert.Equal(t, netip.Addr{}, got)

	trusted := ClientIPResolver{TrustedProxies: mustTrustedProxies(t, proxyTier)}
	got, ok = trusted.ClientIP(&http.Request{RemoteAddr: "10.0.0.1:443"})
	require.True(t, ok)
	assert.Equal(t, netip.MustParseAddr("10.0.0.1"), got)
}

func TestClientIPZeroPrefixIgnored(t *testing.T) {
	resolver := ClientIPResolver{TrustedProxies: []netip.Prefix{{}}}
	got, ok := resolver.ClientIP(newClientIPRequest("10.0.0.1:443", http.Header{"X-Forwarded-For": {"203.0.113.9"}}))
	require.True(t, ok)
	assert.Equal(t, netip.MustParseAddr("10.0.0.1"), got)
}

func TestClientIPDoesNotAllocate(t *testing.T) {
	trusted := ClientIPResolver{TrustedProxies: mustTrustedProxies(t, proxyTier)}
	cases := []struct {
		name     string
		resolver ClientIPResolver
		request  *http.Request
	}{
		{"ipv4 peer", ClientIPResolver{}, newClientIPRequest("192.0.2.7:5678", nil)},
		{"ipv6 peer", ClientIPResolver{}, newClientIPRequest("[2001:db8::7]:5678", nil)},
		{"zoned peer", ClientIPResolver{}, newClientIPRequest("[fe80::7%eth0]:5678", nil)},
		{"trusted x-forwarded-for", trusted, newClientIPRequest("10.0.0.1:443", http.Header{"X-Forwarded-For": {"198.51.100.1, 203.0.113.9, 10.0.0.2"}})},
		{"trusted forwarded", trusted, newClientIPRequest("10.0.0.1:443", http.Header{"Forwarded": {`for=198.51.100.1, for="[2001:db8::9]:80";proto=https, for=10.0.0.2`}})},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			allocs := testing.AllocsPerRun(100, func() {
				_, _ = tc.resolver.ClientIP(tc.request)
			})
			assert.Equal(t, 0.0, allocs)
		})
	}
}

func TestParseTrustedProxies(t *testing.T) {
	cases := []struct {
		name  string
		input string
		want  []string
	}{
		{name: "empty", input: "", want: nil},
		{name: "blank", input: "  \t ", want: nil},
		{name: "mixed list", input: "10.0.0.0/8, 127.0.0.1, ::1", want: []string{"10.0.0.0/8", "127.0.0.1/32", "::1/128"}},
		{name: "no spaces", input: "192.168.0.0/16,2001:db8::/32", want: []string{"192.168.0.0/16", "2001:db8::/32"}},
		{name: "host bits masked", input: "10.1.2.3/8", want: []string{"10.0.0.0/8"}},
		{name: "mapped address becomes ipv4", input: "::ffff:10.0.0.1", want: []string{"10.0.0.1/32"}},
		{name: "mapped prefix becomes ipv4", input: "::ffff:10.0.0.0/104", want: []string{"10.0.0.0/8"}},
		{name: "everything", input: "0.0.0.0/0, ::/0", want: []string{"0.0.0.0/0", "::/0"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseTrustedProxies(tc.input)
			require.NoError(t, err)
			if tc.want == nil {
				assert.Nil(t, got)
				return
			}
			want := make([]netip.Prefix, len(tc.want))
			for i, s := range tc.want {
				want[i] = netip.MustParsePrefix(s)
			}
			assert.Equal(t, want, got)
			assert.NoError(t, (&ClientIPResolver{TrustedProxies: got}).Validate())
		})
	}
}

func TestParseTrustedProxiesInvalid(t *testing.T) {
	cases := []struct {
		name  string
		input string
		quote string
	}{
		{name: "host name", input: "10.0.0.0/8, proxy.local", quote: `"proxy.local"`},
		{name: "prefix too long", input: "10.0.0.0/33", quote: `"10.0.0.0/33"`},
		{name: "prefix missing bits", input: "10.0.0.0/", quote: `"10.0.0.0/"`},
		{name: "empty entry", input: "10.0.0.0/8,,127.0.0.1", quote: `""`},
		{name: "trailing comma", input: "10.0.0.0/8,", quote: `""`},
		{name: "zone", input: "fe80::1%eth0", quote: `"fe80::1%eth0"`},
		{name: "zone in prefix", input: "fe80::1%eth0/64", quote: `"fe80::1%eth0/64"`},
		{name: "port", input: "127.0.0.1:80", quote: `"127.0.0.1:80"`},
		{name: "mapped prefix shorter than /96", input: "::ffff:0:0/80", quote: `"::ffff:0:0/80"`},
		{name: "quote in entry", input: `1.2.3.4"`, quote: `"1.2.3.4\""`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseTrustedProxies(tc.input)
			require.Error(t, err)
			assert.Nil(t, got)
			assert.Contains(t, err.Error(), tc.quote)
		})
	}
}

func TestClientIPResolverValidate(t *testing.T) {
	cases := []struct {
		name     string
		resolver ClientIPResolver
		// wantErr is a substring of the expected error, or "" for none.
		wantErr string
	}{
		{name: "zero value", resolver: ClientIPResolver{}},
		{name: "prefix 1", resolver: ClientIPResolver{IPv6Prefix: 1}},
		{name: "prefix 128", resolver: ClientIPResolver{IPv6Prefix: 128}},
		{name: "prefix 129", resolver: ClientIPResolver{IPv6Prefix: 129}, wantErr: "IPv6Prefix: invalid value 129: must be between 1 and 128"},
		{name: "prefix 200", resolver: ClientIPResolver{IPv6Prefix: 200}, wantErr: "IPv6Prefix: invalid value 200: must be between 1 and 128"},
		{name: "prefix negative", resolver: ClientIPResolver{IPv6Prefix: -1}, wantErr: "IPv6Prefix: invalid value -1"},
		{name: "trusted proxies", resolver: ClientIPResolver{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("::1/128")}}},
		{name: "zero prefix", resolver: ClientIPResolver{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), {}}}, wantErr: "TrustedProxies[1]: invalid prefix"},
		{name: "mapped prefix", resolver: ClientIPResolver{TrustedProxies: []netip.Prefix{netip.MustParsePrefix("::ffff:10.0.0.0/104")}}, wantErr: "TrustedProxies[0]: invalid prefix ::ffff:10.0.0.0/104"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.resolver.Validate()
			if tc.wantErr == "" {
				assert.NoError(t, err)
				return
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.wantErr)
		})
	}

	var nilResolver *ClientIPResolver
	assert.NoError(t, nilResolver.Validate())
}

func BenchmarkClientIP(b *testing.B) {
	trusted := ClientIPResolver{TrustedProxies: mustTrustedProxies(b, proxyTier)}
	cases := []struct {
		name     string
		resolver ClientIPResolver
		request  *http.Request
	}{
		{"ipv4 peer", ClientIPResolver{}, newClientIPRequest("1.2.3.4:5678", nil)},
		{"ipv6 peer", ClientIPResolver{}, newClientIPRequest("[2001:db8::7]:5678", nil)},
		{"trusted x-forwarded-for", trusted, newClientIPRequest("10.0.0.1:443", http.Header{"X-Forwarded-For": {"198.51.100.1, 203.0.113.9, 10.0.0.2"}})},
		{"trusted forwarded", trusted, newClientIPRequest("10.0.0.1:443", http.Header{"Forwarded": {`for=198.51.100.1, for="[2001:db8::9]:80";proto=https, for=10.0.0.2`}})},
	}
	for _, tc := range cases {
		b.Run(tc.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_, _ = tc.resolver.ClientIP(tc.request)
			}
		})
	}
}

func FuzzClientIP(f *testing.F) {
	seeds := []struct{ remoteAddr, xff, forwarded string }{
		{"1.2.3.4:5678", "", ""},
		{"[2001:db8::1]:80", "203.0.113.9", ""},
		{"[fe80::1%eth0]:80", "", ""},
		{"[::ffff:10.0.0.1]:80", "198.51.100.1, 203.0.113.9, 10.0.0.2", ""},
		{"10.0.0.1:443", "198.51.100.1, garbage, 10.0.0.2", ""},
		{"10.0.0.1:443", "1.2.3.4:notaport", ""},
		{"10.0.0.1:443", ", ,", ""},
		{"10.0.0.1:443", "", `for="[2001:db8:cafe::17]:4711", For=192.0.2.60;proto=http`},
		{"10.0.0.1:443", "", `for=unknown, for="_hidden", for=10.0.0.2`},
		{"10.0.0.1:443", "", `for=", for=198.51.100.1`},
		{"127.0.0.1", "fe80::1%a]b", `for="\"`},
		{"garbage", "203.0.113.9", ""},
		{"", "", ""},
	}
	for _, s := range seeds {
		f.Add(s.remoteAddr, s.xff, s.forwarded)
	}

	plain := ClientIPResolver{}
	trusted := ClientIPResolver{TrustedProxies: mustTrustedProxies(f, proxyTier)}

	f.Fuzz(func(t *testing.T, remoteAddr, xff, forwarded string) {
		header := http.Header{}
		if xff != "" {
			header["X-Forwarded-For"] = strings.Split(xff, "\n")
		}
		if forwarded != "" {
			header["Forwarded"] = strings.Split(forwarded, "\n")
		}

		peer, peerOK := plain.ClientIP(newClientIPRequest(remoteAddr, nil))
		got, ok := plain.ClientIP(newClientIPRequest(remoteAddr, header))
		require.Equal(t, peerOK, ok, "headers changed whether an untrusted peer resolves")
		require.Equal(t, peer, got, "headers changed the client of an untrusted peer")

		// Whenever the standard library accepts RemoteAddr, so must ClientIP.
		if addrPort, err := netip.ParseAddrPort(remoteAddr); err == nil {
			require.True(t, ok)
			require.Equal(t, groupAddr(addrPort.Addr().Unmap().WithZone(""), 0), got)
		}

		trustedGot, trustedOK := trusted.ClientIP(newClientIPRequest(remoteAddr, header))
		require.Equal(t, peerOK, trustedOK, "trusting proxies changed whether the peer resolves")
		if ok && !trusted.isTrusted(peer) {
			require.Equal(t, peer, trustedGot, "headers changed the client of a peer outside the trusted proxies")
		}

		if !ok {
			return
		}
		for _, addr := range []netip.Addr{got, trustedGot} {
			require.True(t, addr.IsValid())
			require.Empty(t, addr.Zone())
			require.False(t, addr.Is4In6())
		}
	})
}

func FuzzParseTrustedProxies(f *testing.F) {
	for _, seed := range []string{
		"", " ", "10.0.0.0/8, 127.0.0.1, ::1", "10.0.0.0/8,", ",", "::ffff:10.0.0.0/104",
		"::ffff:0:0/80", "fe80::1%eth0", "10.1.2.3/8", "1.2.3.4/33", "garbage",
	} {
		f.Add(seed)
	}

	f.Fuzz(func(t *testing.T, s string) {
		prefixes, err := ParseTrustedProxies(s)
		if err != nil {
			require.Nil(t, prefixes)
			return
		}
		require.NoError(t, (&ClientIPResolver{TrustedProxies: prefixes}).Validate())
		for _, p := range prefixes {
			require.True(t, p.IsValid())
			require.Equal(t, p.Masked(), p)
			require.False(t, p.Addr().Is4In6())
		}
	})
}
