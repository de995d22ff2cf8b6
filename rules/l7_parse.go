package rules

import (
	"fmt"
	"net/netip"
	"strings"
	"unicode/utf8"
)

// l7Fields validates a rule's L7 keys into r, whose proto is already set.
func (p *parser) l7Fields(m map[string]any, at string, r *ruleSpec) {
	for _, k := range ruleKeys.keys {
		if k.l7 == 0 || !has(m, k.name) {
			continue
		}
		key := joinPath(at, k.name)
		switch {
		case r.proto == "icmp":
			p.errorf(key, `%s cannot be used with proto "icmp"`, k.name)
		case r.proto == "udp" && k.l7 == L7HTTP:
			p.errorf(key, `%s cannot be used with proto "udp": HTTP/1.x runs over TCP`, k.name)
		}
		if arr, ok := m[k.name].([]any); ok && len(arr) == 0 {
			p.errorf(key, "is empty: leave the key out")
			continue
		}
		r.l7 |= k.l7
		p.eachString(m, at, k.name, func(key, s string) {
			switch k.name {
			case "tls_sni":
				if np, ok := p.namePattern(key, s, false); ok {
					r.sni = append(r.sni, np)
				}
			case "app_proto":
				if a, ok := p.appProtoValue(key, s); ok {
					switch {
					case r.proto == "udp" && a&(AppTLS|AppHTTP|AppSSH) != 0:
						p.errorf(key, `%q cannot be used with proto "udp": it runs over TCP`, s)
					case r.proto == "tcp" && a == AppQUIC:
						p.errorf(key, `"quic" cannot be used with proto "tcp": QUIC runs over UDP`)
					default:
						r.app |= a
					}
				}
			case "tls_ja4":
				if jp, ok := p.ja4Pattern(key, s); ok {
					r.ja4 = append(r.ja4, jp)
				}
			case "http_host":
				if np, ok := p.namePattern(key, s, true); ok {
					r.host = append(r.host, np)
				}
			case "dns_qname":
				if np, ok := p.namePattern(key, s, false); ok {
					r.qname = append(r.qname, np)
				}
			case "http_path":
				if p.httpPath(key, s) {
					r.path = append(r.path, s)
				}
			case "http_method":
				if p.httpMethod(key, s) {
					r.method = append(r.method, s)
				}
			}
		})
	}
}

// Limits of DNS names (RFC 1035), in their text form without the final dot.
const (
	maxNameLen  = 253
	maxLabelLen = 63
)

// namePattern validates a name: "name" or "*.name", letters, digits, "-",
// "_" and "." only, one trailing dot ignored, lower-cased. With host, an
// IPv4 or IPv6 address (without brackets) is accepted as well.
func (p *parser) namePattern(key, s string, host bool) (namePattern, bool) {
	if s == "" {
		p.errorf(key, "an empty string is not a name")
		return namePattern{}, false
	}
	if host {
		if a, err := netip.ParseAddr(s); err == nil {
			if a.Zone() != "" {
				p.errorf(key, "%q: zones are not allowed in host addresses", s)
				return namePattern{}, false
			}
			a = a.Unmap()
			return namePattern{s: a.String(), addr: a}, true
		}
		if strings.HasPrefix(s, "[") {
			p.errorf(key, "%q: write an IPv6 address without brackets", s)
			return namePattern{}, false
		}
		if h, port, ok := strings.Cut(s, ":"); ok {
			if h != "" && !strings.Contains(port, ":") {
				p.errorf(key, "%q: write the host without a port (%q)", s, h)
			} else {
				p.errorf(key, "%q is neither a name nor an IP address", s)
			}
			return namePattern{}, false
		}
	}
	name := strings.TrimSuffix(s, ".")
	wildcard := strings.HasPrefix(name, "*.")
	if wildcard {
		name = name[2:]
	}
	if name == "" || strings.Contains(name, "*") {
		if strings.Contains(s, "*") {
			p.errorf(key, `%q: a wildcard must be "*." followed by a name`, s)
		} else {
			p.errorf(key, "%q is not a name", s)
		}
		return namePattern{}, false
	}
	if n := len(strings.TrimSuffix(s, ".")); n > maxNameLen {
		p.errorf(key, "%q is %d bytes long; a name has at most %d", s, n, maxNameLen)
		return namePattern{}, false
	}
	for label := range strings.SplitSeq(name, ".") {
		if label == "" {
			p.errorf(key, "%q has an empty label", s)
			return namePattern{}, false
		}
		if len(label) > maxLabelLen {
			p.errorf(key, "%q: label %q is %d bytes long; a label has at most %d", s, label, len(label), maxLabelLen)
			return namePattern{}, false
		}
		for _, r := range label {
			if nameByte(r) {
				continue
			}
			msg := fmt.Sprintf(`%q: %q is not allowed in a name (letters, digits, "-", "_" and "." only)`, s, r)
			if r >= utf8.RuneSelf && r != utf8.RuneError {
				msg += `; write an internationalized name in its "xn--" form`
			}
			p.errorf(key, "%s", msg)
			return namePattern{}, false
		}
	}
	np := namePattern{s: strings.ToLower(name), wildcard: wildcard}
	if wildcard {
		np.s = "." + np.s
	}
	return np, true
}

func nameByte(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_'
}

// httpPath validates an http_path prefix.
func (p *parser) httpPath(key, s string) bool {
	switch {
	case !strings.HasPrefix(s, "/"):
		p.errorf(key, `%q must start with "/": write the path alone, without scheme or host`, s)
	case !cleanName(s):
		p.errorf(key, "%q must not contain spaces or control characters", s)
	case strings.Contains(s, "?"):
		p.errorf(key, `%q: the query is not matched; leave out "?" and what follows`, s)
	case strings.Contains(s, "#"):
		p.errorf(key, `%q: a fragment ("#...") is never sent to the server; leave it out`, s)
	default:
		return true
	}
	return false
}

// maxMethodLen bounds http_method. It leaves out only one registered
// method, WebDAV's UPDATEREDIRECTREF (17 bytes), which nothing uses.
const maxMethodLen = 16

// httpMethod validates an http_method: an HTTP token of 1..16 bytes.
func (p *parser) httpMethod(key, s string) bool {
	if s == "" {
		p.errorf(key, "an empty string is not a method")
		return false
	}
	if len(s) > maxMethodLen {
		p.errorf(key, "%q is %d bytes long; a method has at most %d", s, len(s), maxMethodLen)
		return false
	}
	for _, r := range s {
		if !tokenByte(r) {
			p.errorf(key, "%q: %q is not allowed in a method (an HTTP token: letters, digits and !#$%%&'*+-.^_`|~)", s, r)
			return false
		}
	}
	return true
}

// tokenByte reports whether r is an HTTP tchar (RFC 9110 5.6.2).
func tokenByte(r rune) bool {
	return r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' ||
		strings.ContainsRune("!#$%&'*+-.^_`|~", r)
}
