package rules

import (
	"math"
	"net/netip"
	"strconv"
	"strings"
)

// L7 is a set of application protocols that deep inspection recognises.
type L7 uint8

// Protocols. A rule's L7 fields are grouped by them: tls_sni and tls_ja4
// are TLS;
// http_host, http_path and http_method are HTTP (HTTP/1.x); dns_qname is
// DNS.
const (
	L7TLS L7 = 1 << iota
	L7HTTP
	L7DNS
	// L7App is app_proto: the flow's application protocol must be
	// identified, whichever it is.
	L7App
)

const l7All = L7TLS | L7HTTP | L7DNS | L7App

// String returns the protocols as "tls", "http" and "dns" joined with "|"
// ("tls|http"), and "none" for the empty set.
func (l L7) String() string {
	switch l { // one protocol, the common case, without allocating
	case 0:
		return "none"
	case L7TLS:
		return "tls"
	case L7HTTP:
		return "http"
	case L7DNS:
		return "dns"
	case L7App:
		return "app"
	}
	var parts []string
	for _, p := range [...]struct {
		bit  L7
		name string
	}{{L7TLS, "tls"}, {L7HTTP, "http"}, {L7DNS, "dns"}, {L7App, "app"}} {
		if l&p.bit != 0 {
			parts = append(parts, p.name)
		}
	}
	if rest := l &^ l7All; rest != 0 {
		parts = append(parts, "L7(0x"+strconv.FormatUint(uint64(rest), 16)+")")
	}
	return strings.Join(parts, "|")
}

// MarshalText makes an L7 appear as "tls|http" in JSON logs rather than as
// a number.
func (l L7) MarshalText() ([]byte, error) { return []byte(l.String()), nil }

// MaxFactNames is how many DNS question names Facts holds.
const MaxFactNames = 4

// Facts are what deep inspection learnt about a flow. The table reads them
// only during JudgeFacts and keeps no reference to them.
type Facts struct {
	Proto  L7                   // the protocol whose fields were read: one of L7TLS, L7HTTP, L7DNS, or 0 (SSH, unknown)
	App    AppProto             // the application protocol identified: exactly one AppProto
	QUIC   uint32               // with L7TLS: the QUIC version whose Initial carried the ClientHello, 0 over TCP
	SNI    []byte               // TLS server_name as sent (case and trailing dot as sent)
	JA4    []byte               // with L7TLS: the ClientHello's JA4 fingerprint (36 bytes)
	Host   []byte               // HTTP host without port/brackets (case as sent)
	Path   []byte               // HTTP path without query
	Method []byte               // HTTP method as sent
	Names  [MaxFactNames][]byte // DNS question names, without trailing dot
	NNames int                  // how many of Names are set
}

// l7Rule is the compiled L7 part of a rule. Its slices are shared with the
// rule's ruleSpec; nothing writes them after Parse.
type l7Rule struct {
	action Action // the rule's; rule.action is 0
	protos L7     // protocols the rule has fields for
	sni    []namePattern
	ja4    []ja4Pattern
	host   []namePattern
	path   []string
	method []string
	qname  []namePattern
	app    AppProto      // app_proto; 0 when absent
	names  []namePattern // to_names; nil when absent
}

// applicable returns the protocols whose fields can apply to a flow of
// class c: over UDP DNS, TLS as QUIC carries it (tls_sni matches the
// ClientHello of a QUIC Initial) and app_proto, so that a rule with only
// HTTP fields never matches a UDP flow. (Rules with L7 fields match TCP
// and UDP flows only, see parser.rule.)
func (l *l7Rule) applicable(c protoSet) L7 {
	if l.app != 0 && l.app&appsOver(c) == 0 {
		return 0 // app_proto lists only protocols of the other transport
	}
	if c == classUDP {
		return l.protos & (L7DNS | L7TLS | L7App)
	}
	return l.protos
}

// match reports whether f satisfies the rule: its app_proto, if it has
// one, lists the flow's protocol, and every field it gives for the flow's
// protocol matches one of its values. A rule with app_proto and no fields
// for the flow's protocol matches on app_proto alone; one without
// app_proto must have fields for it. name is the index of the first
// question name that matched for DNS, else -1.
func (l *l7Rule) match(c protoSet, f *Facts) (name int8, ok bool) {
	if l.app != 0 && l.app&f.App == 0 {
		return -1, false
	}
	switch l.applicable(c) & f.Proto {
	case L7TLS:
		return -1, (l.sni == nil || namesMatch(l.sni, f.SNI)) &&
			(l.ja4 == nil || ja4Match(l.ja4, f.JA4))
	case L7HTTP:
		return -1, (l.host == nil || hostsMatch(l.host, f.Host)) &&
			(l.path == nil || pathsMatch(l.path, f.Path)) &&
			(l.method == nil || methodsMatch(l.method, f.Method))
	case L7DNS:
		for i := range min(f.NNames, MaxFactNames) {
			if namesMatch(l.qname, f.Names[i]) {
				return int8(i), true
			}
		}
		return -1, false
	}
	return -1, l.app != 0
}

// namePattern is a validated tls_sni, http_host or dns_qname entry.
type namePattern struct {
	// s is the name in lower case without a trailing dot; for a wildcard
	// "*.suffix" it is ".suffix", which a matching name ends with.
	s        string
	wildcard bool
	addr     netip.Addr // http_host only: an address literal, unmapped; s is then its text
}

// String returns the pattern as the file would write it, normalised.
func (p *namePattern) String() string {
	if p.wildcard {
		return "*" + p.s
	}
	return p.s
}

// matches reports whether name, ASCII lower case and without a trailing
// dot, matches p: exactly, or for a wildcard by ending in ".suffix" after
// at least one more byte (so not the bare suffix).
func (p *namePattern) matches(name []byte) bool { return nameMatches(p, name) }

// nameMatches is namePattern.matches for a name of either type.
func nameMatches[S ~string | ~[]byte](p *namePattern, name S) bool {
	if p.wildcard {
		return len(name) > len(p.s) && equalFold(name[len(name)-len(p.s):], p.s)
	}
	return len(name) == len(p.s) && equalFold(name, p.s)
}

// learnedMatch reports whether one of the learned names, lower case
// without trailing dot, matches one of ps.
func learnedMatch(ps []namePattern, learned []string) bool {
	for _, n := range learned {
		for i := range ps {
			if nameMatches(&ps[i], n) {
				return true
			}
		}
	}
	return false
}

// namesMatch reports whether name, as observed (any case, one trailing dot
// ignored), matches one of ps.
func namesMatch(ps []namePattern, name []byte) bool {
	name = trimDot(name)
	for i := range ps {
		if ps[i].matches(name) {
			return true
		}
	}
	return false
}

// hostsMatch is namesMatch for http_host, whose address literals match a
// host that is the same address in any spelling.
func hostsMatch(ps []namePattern, host []byte) bool {
	host = trimDot(host)
	var addr netip.Addr
	parsed := false
	for i := range ps {
		p := &ps[i]
		if !p.addr.IsValid() {
			if p.matches(host) {
				return true
			}
			continue
		}
		if !parsed {
			addr, _ = parseAddr(host)
			addr, parsed = addr.Unmap(), true
		}
		if addr == p.addr {
			return true
		}
	}
	return false
}

func pathsMatch(prefixes []string, path []byte) bool {
	for _, p := range prefixes {
		if len(path) >= len(p) && string(path[:len(p)]) == p {
			return true
		}
	}
	return false
}

func methodsMatch(methods []string, method []byte) bool {
	for _, m := range methods {
		if string(method) == m {
			return true
		}
	}
	return false
}

func trimDot(name []byte) []byte {
	if n := len(name); n > 0 && name[n-1] == '.' {
		return name[:n-1]
	}
	return name
}

// equalFold reports whether b equals lower, a lower-case string of the same
// length, ignoring ASCII case in b.
func equalFold[S ~string | ~[]byte](b S, lower string) bool {
	for i := range len(b) {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != lower[i] {
			return false
		}
	}
	return true
}

// parseAddr parses an IPv4 or IPv6 address without zone, accepting exactly
// what netip.ParseAddr accepts, but without allocating: netip.ParseAddr
// allocates its error, and a Host header holds whatever a client sends.
func parseAddr(b []byte) (netip.Addr, bool) {
	for _, c := range b {
		if c == ':' {
			return parseAddr6(b)
		}
	}
	var ip [4]byte
	if !parseAddr4(b, ip[:]) {
		return netip.Addr{}, false
	}
	return netip.AddrFrom4(ip), true
}

// parseAddr4 parses dotted decimal into out (4 bytes), rejecting leading
// zeros as netip does.
func parseAddr4(b []byte, out []byte) bool {
	i := 0
	for k := range 4 {
		if k > 0 {
			if i >= len(b) || b[i] != '.' {
				return false
			}
			i++
		}
		start, v := i, 0
		for i < len(b) && b[i] >= '0' && b[i] <= '9' && i-start < 3 {
			v = v*10 + int(b[i]-'0')
			i++
		}
		if i == start || v > 255 || (i-start > 1 && b[start] == '0') {
			return false
		}
		out[k] = byte(v)
	}
	return i == len(b)
}

// parseAddr6 follows netip's parseIPv6, less zones.
func parseAddr6(s []byte) (netip.Addr, bool) {
	var ip [16]byte
	ellipsis := -1 // position of "::" in ip
	if len(s) >= 2 && s[0] == ':' && s[1] == ':' {
		ellipsis = 0
		s = s[2:]
		if len(s) == 0 {
			return netip.IPv6Unspecified(), true
		}
	}
	i := 0
	for i < 16 {
		off, acc := 0, uint32(0)
		for ; off < len(s); off++ {
			c := s[off]
			switch {
			case c >= '0' && c <= '9':
				acc = acc<<4 + uint32(c-'0')
			case c >= 'a' && c <= 'f':
				acc = acc<<4 + uint32(c-'a'+10)
			case c >= 'A' && c <= 'F':
				acc = acc<<4 + uint32(c-'A'+10)
			default:
				goto end
			}
			if off > 3 || acc > math.MaxUint16 {
				return netip.Addr{}, false
			}
		}
	end:
		if off == 0 {
			return netip.Addr{}, false
		}
		if off < len(s) && s[off] == '.' { // a trailing IPv4 address
			if (ellipsis < 0 && i != 12) || i+4 > 16 || !parseAddr4(s, ip[i:i+4]) {
				return netip.Addr{}, false
			}
			s = nil
			i += 4
			break
		}
		ip[i], ip[i+1] = byte(acc>>8), byte(acc)
		i += 2
		s = s[off:]
		if len(s) == 0 {
			break
		}
		if s[0] != ':' || len(s) == 1 {
			return netip.Addr{}, false
		}
		s = s[1:]
		if s[0] == ':' {
			if ellipsis >= 0 {
				return netip.Addr{}, false
			}
			ellipsis = i
			s = s[1:]
			if len(s) == 0 {
				break
			}
		}
	}
	if len(s) != 0 {
		return netip.Addr{}, false
	}
	if i < 16 {
		if ellipsis < 0 {
			return netip.Addr{}, false
		}
		n := 16 - i
		copy(ip[ellipsis+n:], ip[ellipsis:i])
		clear(ip[ellipsis : ellipsis+n])
	} else if ellipsis >= 0 {
		return netip.Addr{}, false // "::" must stand for at least one group
	}
	return netip.AddrFrom16(ip), true
}
