package l7

import (
	"net/netip"

	"golang.org/x/net/dns/dnsmessage"
)

// DNS responses: what a resolver answered a container, for rules by the
// names a container resolved (issue 18). ParseDNSResponse reads the
// question, follows its CNAME chain through the answer section and keeps
// the A and AAAA records of the names on that chain, each with the TTL the
// binding may be trusted for. Records of other owners in the answer
// section are ignored: a response binds an address only to the name that
// was asked and the names the answer itself says it is.

// Limits of DNSResponse. A response with more answer records than
// MaxDNSRecords is Malformed (no resolver sends one to a stub: a full
// message of 512 bytes holds about 30 A records); longer CNAME chains are
// cut at MaxDNSChain names and further addresses are left out.
const (
	MaxDNSRecords = 32
	MaxDNSChain   = 8
	MaxDNSAddrs   = 16
)

// dnsRecord is one answer record as parsed.
type dnsRecord struct {
	owner  dnsmessage.Name
	typ    dnsmessage.Type
	ttl    uint32
	target dnsmessage.Name // CNAME
	addr   netip.Addr      // A, AAAA
}

// DNSResponse is what ParseDNSResponse learns from a response. It is a
// value type with fixed-size arrays (about 30 KiB), so parsing into it
// allocates nothing; reuse one per worker.
type DNSResponse struct {
	ID    uint16
	RCode dnsmessage.RCode
	QType dnsmessage.Type
	// Chain is the question name and the names its CNAME records lead to,
	// in order: Chain[0] is the question. ChainTTL[i] is the smallest TTL
	// of the CNAME records that lead from the question to Chain[i] (the
	// largest uint32 for the question itself).
	NChain   int
	Chain    [MaxDNSChain]dnsmessage.Name
	ChainTTL [MaxDNSChain]uint32
	// Addrs are the A and AAAA records of names on the chain, in answer
	// order, with the TTL each binding holds for: the smaller of its own
	// and its owner's ChainTTL. Owner is the index of its owner in Chain.
	NAddrs int
	Addrs  [MaxDNSAddrs]netip.Addr
	TTLs   [MaxDNSAddrs]uint32
	Owner  [MaxDNSAddrs]int8

	recs [MaxDNSRecords]dnsRecord
}

// ChainName returns Chain[i] without its trailing dot, as a slice of r's
// own storage, case as sent.
func (r *DNSResponse) ChainName(i int) []byte {
	n := &r.Chain[i]
	b := n.Data[:n.Length]
	if len(b) > 0 && b[len(b)-1] == '.' {
		b = b[:len(b)-1]
	}
	return b
}

// ParseDNSResponse parses one DNS response message b (a UDP datagram, or
// a TCP message without its length prefix).
//
// Done: a response (QR=1, opcode QUERY) with exactly one question whose
// whole message parses; out holds the chain and the addresses (none for
// NXDOMAIN, an empty answer, or a truncated response that carries none).
// NotMatch: a query. Malformed: anything that does not parse, another
// opcode, no question or more than one, or more than MaxDNSRecords answer
// records.
func ParseDNSResponse(b []byte, out *DNSResponse) Status {
	out.ID, out.NChain, out.NAddrs = 0, 0, 0
	var p dnsmessage.Parser
	h, err := p.Start(b)
	if err != nil {
		return Malformed
	}
	if !h.Response {
		return NotMatch
	}
	if h.OpCode != 0 {
		return Malformed
	}
	q, err := p.Question()
	if err != nil {
		return Malformed
	}
	if _, err := p.Question(); err != dnsmessage.ErrSectionDone {
		return Malformed // a second question, or a bad one
	}
	n := 0
	for {
		ah, err := p.AnswerHeader()
		if err == dnsmessage.ErrSectionDone {
			break
		}
		if err != nil || n == MaxDNSRecords {
			return Malformed
		}
		rec := &out.recs[n]
		rec.owner, rec.typ, rec.ttl = ah.Name, ah.Type, ah.TTL
		switch {
		case ah.Type == dnsmessage.TypeA && ah.Class == dnsmessage.ClassINET:
			a, err := p.AResource()
			if err != nil {
				return Malformed
			}
			rec.addr = netip.AddrFrom4(a.A)
		case ah.Type == dnsmessage.TypeAAAA && ah.Class == dnsmessage.ClassINET:
			a, err := p.AAAAResource()
			if err != nil {
				return Malformed
			}
			rec.addr = netip.AddrFrom16(a.AAAA)
		case ah.Type == dnsmessage.TypeCNAME && ah.Class == dnsmessage.ClassINET:
			c, err := p.CNAMEResource()
			if err != nil {
				return Malformed
			}
			rec.target = c.CNAME
		default:
			if err := p.SkipAnswer(); err != nil {
				return Malformed
			}
			rec.typ = 0 // nothing to learn from it
		}
		n++
	}
	if p.SkipAllAuthorities() != nil || p.SkipAllAdditionals() != nil {
		return Malformed
	}
	out.ID, out.RCode, out.QType = h.ID, h.RCode, q.Type

	// The chain: the question, then each CNAME whose owner is the last
	// name on it, as long as it leads somewhere new.
	out.Chain[0], out.ChainTTL[0], out.NChain = q.Name, ^uint32(0), 1
	for out.NChain < MaxDNSChain {
		last := &out.Chain[out.NChain-1]
		next := -1
		for i := range n {
			if out.recs[i].typ == dnsmessage.TypeCNAME && nameEqualFold(&out.recs[i].owner, last) {
				next = i
				break
			}
		}
		if next < 0 || out.chainIndex(&out.recs[next].target) >= 0 {
			break // the end, or a loop
		}
		out.Chain[out.NChain] = out.recs[next].target
		out.ChainTTL[out.NChain] = min(out.ChainTTL[out.NChain-1], out.recs[next].ttl)
		out.NChain++
	}
	for i := range n {
		rec := &out.recs[i]
		if rec.typ != dnsmessage.TypeA && rec.typ != dnsmessage.TypeAAAA || out.NAddrs == MaxDNSAddrs {
			continue
		}
		owner := out.chainIndex(&rec.owner)
		if owner < 0 {
			continue // an address of a name nobody asked for
		}
		out.Addrs[out.NAddrs] = rec.addr
		out.TTLs[out.NAddrs] = min(rec.ttl, out.ChainTTL[owner])
		out.Owner[out.NAddrs] = int8(owner)
		out.NAddrs++
	}
	return Done
}

// chainIndex is the index of name in the chain, or -1.
func (r *DNSResponse) chainIndex(name *dnsmessage.Name) int {
	for i := range r.NChain {
		if nameEqualFold(&r.Chain[i], name) {
			return i
		}
	}
	return -1
}

// nameEqualFold compares two names ignoring ASCII case (RFC 4343).
func nameEqualFold(a, b *dnsmessage.Name) bool {
	if a.Length != b.Length {
		return false
	}
	for i := range int(a.Length) {
		x, y := a.Data[i], b.Data[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}
