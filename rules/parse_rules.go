package rules

import (
	"cmp"
	"net/netip"
	"slices"
	"strings"
)

// rule validates one [[container.rule]]; ok is false if anything was wrong.
func (p *parser) rule(m map[string]any, at string, ids map[string]string) (ruleSpec, bool) {
	n := len(p.errs)
	p.checkKeys(m, at, &ruleKeys)
	var r ruleSpec
	if id, ok := p.requiredStr(m, at, "id"); ok {
		idKey := joinPath(at, "id")
		switch {
		case id == "":
			p.errorf(idKey, "must not be empty")
		case id == RuleIDDefault:
			p.errorf(idKey, "%q is reserved for the default verdict; choose another id", id)
		case id == RuleIDDockerUnreachable:
			p.errorf(idKey, "%q is reserved for flows judged while Docker cannot be asked; choose another id", id)
		case id == RuleIDUndecided:
			p.errorf(idKey, "%q is reserved for flows deep inspection could not settle; choose another id", id)
		case !cleanName(id):
			p.errorf(idKey, "%q must not contain spaces or control characters", id)
		case ids[id] != "":
			first := parentPath(ids[id])
			p.errorf(idKey, "duplicate rule id %q (first used at %s, line %d)", id, first, p.lineOf(ids[id]))
		default:
			ids[id] = idKey
			r.id = id
		}
	}
	if s, ok := p.requiredStr(m, at, "direction"); ok {
		switch s {
		case "ingress":
			r.dir = Ingress
		case "egress":
			r.dir = Egress
		default:
			p.errorf(joinPath(at, "direction"), `%q is not a direction; use "ingress" or "egress"`, s)
		}
	}
	r.proto = "any"
	if s, ok := p.str(m, at, "proto"); ok {
		switch s {
		case "tcp", "udp", "icmp", "any":
			r.proto = s
		default:
			p.errorf(joinPath(at, "proto"), `%q is not a protocol; use "tcp", "udp", "icmp" or "any"`, s)
		}
	}
	p.eachPort(m, at, func(key, s string) {
		if pr, ok := p.portRange(key, s); ok {
			r.ports = append(r.ports, pr)
		}
	})
	if r.proto == "icmp" && nonEmpty(m["ports"]) {
		p.errorf(joinPath(at, "ports"), `ports cannot be used with proto "icmp"`)
	}
	p.l7Fields(m, at, &r)
	switch r.proto {
	case "tcp":
		r.protos = classTCP
	case "udp":
		r.protos = classUDP
	case "icmp":
		r.protos = classICMP
	default:
		r.protos = classAll
		if len(r.ports) > 0 || r.l7 != 0 {
			r.protos = classTCP | classUDP // only they have ports, or L7 protocols
		}
	}
	r.ports = mergePorts(r.ports)
	for _, peerKey := range []string{"from", "to"} {
		if !has(m, peerKey) {
			continue
		}
		if r.dir == Ingress && peerKey == "to" {
			p.errorf(joinPath(at, "to"), `"to" is for egress rules; an ingress rule names its peers with "from"`)
		}
		if r.dir == Egress && peerKey == "from" {
			p.errorf(joinPath(at, "from"), `"from" is for ingress rules; an egress rule names its peers with "to"`)
		}
		p.eachString(m, at, peerKey, func(key, s string) {
			if pfx, ok := p.prefix(key, s); ok {
				r.peers = append(r.peers, pfx)
			}
		})
	}
	p.toNames(m, at, &r)
	if a, ok := p.action(m, at, "action"); ok {
		r.action = a
	} else if !has(m, "action") {
		p.errorf(joinPath(at, "action"), `missing required key "action" ("allow" or "drop")`)
	}
	if v, ok := p.boolean(m, at, "log"); ok {
		r.log = v
	}
	return r, len(p.errs) == n
}

// toNames validates to_names into r, whose direction and peers are set:
// name patterns as tls_sni takes them, for egress rules without "to".
func (p *parser) toNames(m map[string]any, at string, r *ruleSpec) {
	if !has(m, "to_names") {
		return
	}
	key := joinPath(at, "to_names")
	switch {
	case r.dir == Ingress:
		p.errorf(key, "to_names is for egress rules: a container learns the names of the addresses it resolves and connects to")
	case has(m, "to"):
		p.errorf(key, `cannot be used with "to" in one rule: write a rule for the addresses and one for the names`)
	}
	if arr, ok := m["to_names"].([]any); ok && len(arr) == 0 {
		p.errorf(key, "is empty: leave the key out")
		return
	}
	p.eachString(m, at, "to_names", func(key, s string) {
		if np, ok := p.namePattern(key, s, false); ok {
			r.names = append(r.names, np)
		}
	})
}

// prefix parses one entry of from/to. A bare address means a single host;
// host bits after the prefix length are masked off, as iptables does.
func (p *parser) prefix(key, s string) (netip.Prefix, bool) {
	var pfx netip.Prefix
	if strings.Contains(s, "/") {
		var err error
		if pfx, err = netip.ParsePrefix(s); err != nil {
			p.errorf(key, "%q is not a CIDR prefix: %s", s, netipReason(err))
			return pfx, false
		}
	} else {
		a, err := netip.ParseAddr(s)
		if err != nil {
			p.errorf(key, "%q is not an IP address or CIDR prefix", s)
			return pfx, false
		}
		if a.Zone() != "" {
			p.errorf(key, "%q: zones are not allowed in peer addresses", s)
			return pfx, false
		}
		pfx = netip.PrefixFrom(a, a.BitLen())
	}
	// Peers are unmapped before matching, so a v4-mapped prefix must become
	// the IPv4 prefix it describes or it could never match.
	if a := pfx.Addr(); a.Is4In6() {
		if pfx.Bits() < 96 {
			p.errorf(key, "%q mixes IPv4-mapped and IPv6 space; write the IPv4 prefix instead", s)
			return pfx, false
		}
		pfx = netip.PrefixFrom(a.Unmap(), pfx.Bits()-96)
	}
	return pfx.Masked(), true
}

// netipReason strips netip's `netip.ParsePrefix("..."): ` preamble, which
// would repeat the value we already quote.
func netipReason(err error) string {
	msg := err.Error()
	if i := strings.Index(msg, "): "); i >= 0 {
		return msg[i+3:]
	}
	return msg
}

// portRange parses "80" or "8000-8100".
func (p *parser) portRange(key, s string) (portRange, bool) {
	loStr, hiStr, isRange := strings.Cut(s, "-")
	lo, okLo := parsePort(loStr)
	hi, okHi := lo, okLo
	if isRange {
		hi, okHi = parsePort(hiStr)
	}
	if !okLo || !okHi {
		p.errorf(key, `%q is not a port or range; write "80" or "8000-8100"`, s)
		return portRange{}, false
	}
	for _, n := range []int{lo, hi} {
		if n < 1 || n > 65535 {
			p.errorf(key, "%q: port %d is out of range 1..65535", s, n)
			return portRange{}, false
		}
	}
	if lo > hi {
		p.errorf(key, "%q: start %d is greater than end %d", s, lo, hi)
		return portRange{}, false
	}
	return portRange{uint16(lo), uint16(hi)}, true
}

// parsePort accepts only decimal digits: no signs, spaces or hex, so that
// "0x50" or " 80" are reported rather than guessed at.
func parsePort(s string) (int, bool) {
	if s == "" || len(s) > 6 {
		return 0, false
	}
	n := 0
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

// mergePorts sorts ranges and merges overlapping or adjacent ones, which
// keeps portsContain's early exit correct and its scan short.
func mergePorts(rs []portRange) []portRange {
	if len(rs) == 0 {
		return nil
	}
	slices.SortFunc(rs, func(a, b portRange) int { return cmp.Compare(a.lo, b.lo) })
	out := rs[:1]
	for _, r := range rs[1:] {
		last := &out[len(out)-1]
		if int(r.lo) <= int(last.hi)+1 {
			last.hi = max(last.hi, r.hi)
			continue
		}
		out = append(out, r)
	}
	return slices.Clip(out)
}
