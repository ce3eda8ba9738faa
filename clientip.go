package throttle

import (
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"strings"
)

// maxForwardedHops is the maximum number of forwarding entries ClientIP
// examines, counted from the right. It bounds the work per request, so a
// client cannot make the resolver walk a header of a million entries.
const maxForwardedHops = 64

// maxNodeLen is the maximum length of a forwarding entry. Longer entries are
// treated as malformed without parsing them. The longest real entry, an IPv6
// address with an embedded IPv4 part, a Linux interface name as zone and a
// port, has about 70 bytes.
const maxNodeLen = 128

// defaultIPv6Prefix is the prefix length that IPv6 clients are grouped by when
// ClientIPResolver.IPv6Prefix is 0. A /64 is the standard size of one IPv6
// subnet, so a host cannot escape its counter by picking new addresses.
const defaultIPv6Prefix = 64

// ClientIPResolver derives the client address of a request, for per-IP counters.
//
// The peer is the address in Request.RemoteAddr, which the net/http server
// takes from the TCP connection. If the peer is not one of TrustedProxies, the
// peer is the client, and X-Forwarded-For and Forwarded are ignored, because
// anyone can write those headers and a client must never choose its own
// counter. If the peer is trusted, ClientIP reads X-Forwarded-For, or
// Forwarded (RFC 7239) when the request has no X-Forwarded-For, and walks the
// entries from the right. Entries that are trusted proxies are skipped, and the
// first entry that is not one is the client. The walk stops at a malformed
// entry and returns the last trusted hop, never an address left of the
// malformed entry. If every entry is a trusted proxy, the leftmost entry is the
// client. At most 64 entries are examined, counted from the right. When all of
// them are trusted proxies, the 64th is the client.
//
// Each trusted proxy must append the address of its own peer to the header it
// forwards. A proxy that writes only Forwarded must also remove any
// X-Forwarded-For, because X-Forwarded-For takes precedence.
//
// IPv4-mapped IPv6 addresses are converted to IPv4 and zones are dropped
// before any comparison. An IPv4 client is returned unchanged, and an IPv6
// client is masked to IPv6Prefix bits, so that all addresses of one
// subscriber's block share a counter.
//
// The zero value trusts no proxy and groups IPv6 clients by /64. A
// ClientIPResolver is safe for concurrent use as long as its fields are not
// modified.
type ClientIPResolver struct {
	// TrustedProxies lists the peers whose forwarding headers are believed.
	// When it is empty, the default, only RemoteAddr is used.
	TrustedProxies []netip.Prefix

	// IPv6Prefix is the prefix length that IPv6 clients are grouped by, from
	// 1 to 128. The zero value selects 64.
	IPv6Prefix int
}

// ClientIP returns the client's address, grouped for counting as the type
// documentation describes, and true. It returns the zero Addr and false for a
// nil request and for a RemoteAddr that is not an IP address with an optional
// port. A nil resolver behaves like the zero value, and an IPv6Prefix outside
// 0..128 is treated as 0, which Validate would report.
func (c *ClientIPResolver) ClientIP(r *http.Request) (netip.Addr, bool) {
	if r == nil {
		return netip.Addr{}, false
	}
	peer, ok := parseNode(r.RemoteAddr, false)
	if !ok {
		return netip.Addr{}, false
	}
	if c == nil {
		return groupAddr(peer, 0), true
	}

	client := peer
	if c.isTrusted(peer) {
		client = c.forwardedClient(r.Header, peer)
	}
	return groupAddr(client, c.IPv6Prefix), true
}

// forwardedClient walks the forwarding headers of a request that came from the
// trusted peer and returns the client address.
//
// NOTE: X-Forwarded-For takes precedence over Forwarded. If your proxies
// write only Forwarded, they must remove any X-Forwarded-For that a client
// sends, otherwise the client chooses its own counter.
func (c *ClientIPResolver) forwardedClient(h http.Header, peer netip.Addr) netip.Addr {
	if lines := h["X-Forwarded-For"]; len(lines) > 0 {
		return c.walkXForwardedFor(lines, peer)
	}
	if lines := h["Forwarded"]; len(lines) > 0 {
		return c.walkForwarded(lines, peer)
	}
	return peer
}

// walkXForwardedFor scans the X-Forwarded-For lines backwards, so that only
// the rightmost entries of a huge header are touched, and without splitting
// the header into a slice.
func (c *ClientIPResolver) walkXForwardedFor(lines []string, peer netip.Addr) netip.Addr {
	lastTrusted := peer
	hops := 0
	for i := len(lines) - 1; i >= 0; i-- {
		rest := lines[i]
		for {
			if hops == maxForwardedHops {
				return lastTrusted
			}
			hops++

			entry := rest
			comma := strings.LastIndexByte(rest, ',')
			if comma >= 0 {
				entry = rest[comma+1:]
			}
			addr, ok := parseNode(trimOWS(entry), false)
			if !ok {
				// The entries left of this one were written by a hop that
				// is not known to be trusted, so none of them is believed.
				// Clients that send garbage thus share the counter of the
				// last trusted hop, which is the price of never trusting
				// an address that a client may have written.
				return lastTrusted
			}
			if !c.isTrusted(addr) {
				return addr
			}
			lastTrusted = addr

			if comma < 0 {
				break
			}
			rest = rest[:comma]
		}
	}
	return lastTrusted
}

// forwardedRing keeps the "for" values of the last maxForwardedHops elements
// of a Forwarded header. The header is scanned forwards because quoted strings
// may contain commas, and backwards scanning cannot tell an escaped quote from
// a closing one.
type forwardedRing struct {
	nodes [maxForwardedHops]string
	count int
}

func (f *forwardedRing) push(node string) {
	f.nodes[f.count%maxForwardedHops] = node
	f.count++
}

// walkForwarded collects the "for" values of the Forwarded lines and walks
// them from the right like walkXForwardedFor. A malformed element is stored as
// an empty string, which parseNode rejects.
func (c *ClientIPResolver) walkForwarded(lines []string, peer netip.Addr) netip.Addr {
	var ring forwardedRing
	for _, line := range lines {
		collectForwarded(line, &ring)
	}

	lastTrusted := peer
	hops := min(ring.count, maxForwardedHops)
	for i := 1; i <= hops; i++ {
		node := ring.nodes[(ring.count-i)%maxForwardedHops]
		addr, ok := parseNode(node, true)
		if !ok {
			return lastTrusted
		}
		if !c.isTrusted(addr) {
			return addr
		}
		lastTrusted = addr
	}
	return lastTrusted
}

// collectForwarded pushes the "for" value of every element of one Forwarded
// line. Elements are separated by commas and pairs by semicolons, and both
// separators are ignored inside quoted strings.
//
// An empty element is pushed as malformed, although RFC 7230 section 7
// requires recipients to ignore a reasonable number of empty list elements,
// because a missing hop must stop the walk rather than let it continue to
// entries left of the gap.
func collectForwarded(line string, ring *forwardedRing) {
	for start := 0; ; {
		end, closed := indexUnquoted(line, start, ',')
		node, ok := "", false
		if closed {
			node, ok = forwardedFor(line[start:end])
		}
		if !ok {
			node = ""
		}
		ring.push(node)

		if end >= len(line) {
			return
		}
		start = end + 1
	}
}

// forwardedFor returns the unquoted value of the "for" parameter of one
// Forwarded element. It reports false when the element has no "for"
// parameter, has it twice, has a pair without "=", or has a quoted value with
// escapes, which no IP address or port needs.
func forwardedFor(element string) (string, bool) {
	value, found := "", false
	for start := 0; start <= len(element); {
		end, _ := indexUnquoted(element, start, ';')
		pair := trimOWS(element[start:end])
		start = end + 1

		if pair == "" {
			// RFC 7239 allows empty pairs, as in "for=192.0.2.1;;proto=http".
			continue
		}
		eq := strings.IndexByte(pair, '=')
		if eq < 0 {
			return "", false
		}
		if !strings.EqualFold(trimOWS(pair[:eq]), "for") {
			continue
		}
		if found {
			return "", false
		}
		found = true

		raw := trimOWS(pair[eq+1:])
		if len(raw) >= 2 && raw[0] == '"' && raw[len(raw)-1] == '"' {
			raw = raw[1 : len(raw)-1]
		}
		if strings.ContainsAny(raw, "\"\\") {
			return "", false
		}
		value = raw
	}
	return value, found
}

// indexUnquoted returns the index of the first sep in s[start:] that is not
// inside a quoted string, or len(s) if there is none. closed is false when a
// quoted string is not terminated before the returned index.
func indexUnquoted(s string, start int, sep byte) (index int, closed bool) {
	inQuote := false
	for i := start; i < len(s); i++ {
		switch {
		case inQuote && s[i] == '\\':
			i++ // The escaped character cannot end the quoted string.
		case s[i] == '"':
			inQuote = !inQuote
		case !inQuote && s[i] == sep:
			return i, true
		}
	}
	return len(s), !inQuote
}

// trimOWS removes the spaces and tabs that HTTP allows around list elements.
func trimOWS(s string) string {
	for len(s) > 0 && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for len(s) > 0 && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}

// isTrusted reports whether addr, already normalized, is in TrustedProxies.
// The list is searched linearly, which is fast for the handful of prefixes
// that describe a proxy tier.
func (c *ClientIPResolver) isTrusted(addr netip.Addr) bool {
	for _, p := range c.TrustedProxies {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// parseNode parses a peer or forwarding entry and returns the normalized
// address. It accepts "1.2.3.4", "1.2.3.4:80", "2001:db8::1", "[2001:db8::1]"
// and "[2001:db8::1]:80", each IPv6 form optionally with a zone. With
// obfuscatedPort, a port may also be an RFC 7239 obfuscated identifier such as
// "_port1".
func parseNode(s string, obfuscatedPort bool) (netip.Addr, bool) {
	if s == "" || len(s) > maxNodeLen {
		return netip.Addr{}, false
	}

	host, port, bracketed := s, "", false
	if s[0] == '[' {
		// The last ']' matches netip.ParseAddrPort, which allows ']' in zones.
		end := strings.LastIndexByte(s, ']')
		if end < 0 {
			return netip.Addr{}, false
		}
		host, bracketed = s[1:end], true
		if rest := s[end+1:]; rest != "" {
			if rest[0] != ':' {
				return netip.Addr{}, false
			}
			port = rest[1:]
			if port == "" {
				return netip.Addr{}, false
			}
		}
	} else if colon := strings.IndexByte(s, ':'); colon >= 0 && strings.IndexByte(s[colon+1:], ':') < 0 {
		// Exactly one colon: an IPv4 address with a port. Two or more colons
		// make an IPv6 address without brackets, which has no port.
		host, port = s[:colon], s[colon+1:]
		if port == "" {
			return netip.Addr{}, false
		}
	}
	if port != "" && !validPort(port, obfuscatedPort) {
		return netip.Addr{}, false
	}

	addr, ok := parseAddrDropZone(host)
	if !ok {
		return netip.Addr{}, false
	}
	if bracketed && !addr.Is6() {
		return netip.Addr{}, false
	}
	if port != "" && !bracketed && !addr.Is4() {
		return netip.Addr{}, false
	}
	return addr.Unmap(), true
}

// parseAddrDropZone parses an IP address and drops its zone. It cuts the zone
// off before calling netip.ParseAddr, because ParseAddr interns zones and a
// client could otherwise fill the intern table with headers of random zones.
func parseAddrDropZone(s string) (netip.Addr, bool) {
	hasZone := false
	if i := strings.IndexByte(s, '%'); i >= 0 {
		if i == len(s)-1 {
			return netip.Addr{}, false // An empty zone is invalid.
		}
		s, hasZone = s[:i], true
	}
	addr, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}, false
	}
	if hasZone && !addr.Is6() {
		return netip.Addr{}, false // IPv4 addresses have no zones.
	}
	return addr, true
}

// validPort reports whether s is a decimal port number up to 65535, leading
// zeros allowed as in netip.ParseAddrPort, or, if obfuscated is set, an RFC
// 7239 obfuscated port: "_" followed by letters, digits, ".", "_" or "-".
func validPort(s string, obfuscated bool) bool {
	if obfuscated && len(s) > 1 && s[0] == '_' {
		for i := 1; i < len(s); i++ {
			ch := s[i]
			if !('a' <= ch && ch <= 'z' || 'A' <= ch && ch <= 'Z' || '0' <= ch && ch <= '9' || ch == '.' || ch == '_' || ch == '-') {
				return false
			}
		}
		return true
	}

	if s == "" {
		return false
	}
	n := 0
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
		n = n*10 + int(s[i]-'0')
		if n > 65535 {
			return false
		}
	}
	return true
}

// groupAddr drops the zone and masks an IPv6 address to bits, or to the
// default /64 when bits is out of range. IPv4 addresses are returned unchanged.
//
// A shorter prefix stops a subscriber with a large block from rotating
// through addresses to get fresh counters, but makes more subscribers share
// one counter. IPv4 clients behind one NAT share a counter whatever the
// setting.
func groupAddr(addr netip.Addr, bits int) netip.Addr {
	addr = addr.WithZone("")
	if !addr.Is6() {
		return addr
	}
	if bits < 1 || bits > 128 {
		bits = defaultIPv6Prefix
	}
	prefix, err := addr.Prefix(bits)
	if err != nil {
		return addr
	}
	return prefix.Addr()
}

// Validate reports impossible settings: an IPv6Prefix outside 0..128, a
// zero-value prefix in TrustedProxies, or an IPv4-mapped IPv6 prefix, which
// never matches because ClientIP compares IPv4 peers in their IPv4 form. The
// error names the field. A nil resolver is valid.
func (c *ClientIPResolver) Validate() error {
	if c == nil {
		return nil
	}
	if c.IPv6Prefix < 0 || c.IPv6Prefix > 128 {
		return fmt.Errorf("IPv6Prefix: invalid value %d: must be between 1 and 128", c.IPv6Prefix)
	}
	for i, p := range c.TrustedProxies {
		if !p.IsValid() {
			return fmt.Errorf("TrustedProxies[%d]: invalid prefix %v", i, p)
		}
		if p.Addr().Is4In6() {
			return fmt.Errorf("TrustedProxies[%d]: invalid prefix %v: an IPv4-mapped prefix never matches because IPv4 peers are compared in IPv4 form; write it as an IPv4 prefix", i, p)
		}
	}
	return nil
}

// ParseTrustedProxies parses a comma-separated list of CIDR prefixes or bare
// addresses, such as "10.0.0.0/8, 127.0.0.1, ::1", for
// ClientIPResolver.TrustedProxies. A bare address is a single-host prefix. An
// empty or blank string returns nil and no error. The error for a bad entry
// quotes it.
//
// Entries are trimmed of spaces, and an empty entry, as in "10.0.0.0/8,", is
// an error. Prefixes are masked, so "10.1.2.3/8" becomes 10.0.0.0/8.
// IPv4-mapped entries such as "::ffff:10.0.0.0/104" are converted to IPv4
// prefixes so that they match IPv4 peers. Zones are rejected because
// ClientIP compares addresses without zones.
func ParseTrustedProxies(s string) ([]netip.Prefix, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}

	var prefixes []netip.Prefix
	for entry := range strings.SplitSeq(s, ",") {
		entry = strings.TrimSpace(entry)
		prefix, err := parseTrustedProxy(entry)
		if err != nil {
			return nil, fmt.Errorf("trusted proxy %q: %w", entry, err)
		}
		prefixes = append(prefixes, prefix)
	}
	return prefixes, nil
}

// parseTrustedProxy parses one entry of ParseTrustedProxies. Its errors do not
// repeat the entry, which the caller quotes.
func parseTrustedProxy(entry string) (netip.Prefix, error) {
	const want = "expected a CIDR prefix such as 10.0.0.0/8 or an IP address such as 127.0.0.1"
	if entry == "" {
		return netip.Prefix{}, fmt.Errorf("empty entry: %s", want)
	}
	if strings.IndexByte(entry, '%') >= 0 {
		return netip.Prefix{}, errors.New("zones are not allowed because client addresses are compared without zones")
	}

	var prefix netip.Prefix
	if strings.IndexByte(entry, '/') >= 0 {
		p, err := netip.ParsePrefix(entry)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("invalid prefix: %s", want)
		}
		prefix = p
	} else {
		addr, err := netip.ParseAddr(entry)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("invalid address: %s", want)
		}
		prefix = netip.PrefixFrom(addr, addr.BitLen())
	}

	if prefix.Addr().Is4In6() {
		if prefix.Bits() < 96 {
			return netip.Prefix{}, errors.New("an IPv4-mapped prefix shorter than /96 is not an IPv4 range; write the IPv4 prefix instead")
		}
		prefix = netip.PrefixFrom(prefix.Addr().Unmap(), prefix.Bits()-96)
	}
	return prefix.Masked(), nil
}
