package l7

import (
	"golang.org/x/net/dns/dnsmessage"
)

// DNS queries are parsed with golang.org/x/net/dns/dnsmessage, the Go
// project's own well-kept, bounds-checked DNS wire parser (it also backs the
// standard library's resolver), rather than by hand. It follows compression
// pointers with a loop limit and rejects labels containing '.', so a name's
// text form is unambiguous.

// MaxDNSQuestions is the number of questions DNSQuery holds. A query with
// more is Malformed: resolvers answer only single-question queries, and
// judging only some of the names would let the rest through.
const MaxDNSQuestions = 4

// DNSQuery is what ParseDNSQuery learns from a query. It is a value type
// with fixed-size arrays (about 1 KiB), so parsing into it allocates nothing;
// reuse one per worker.
type DNSQuery struct {
	ID    uint16                           // message ID (per-query "flow" key for UDP)
	Count int                              // number of valid entries in Names and Types
	Names [MaxDNSQuestions]dnsmessage.Name // question names, text form with trailing dot
	Types [MaxDNSQuestions]dnsmessage.Type // question types (A, AAAA, …)
}

// Name returns question name i without its trailing dot ("" for the root)
// as a slice of q's own storage, case as sent: compare case-insensitively.
// Bytes are raw label bytes (dnsmessage does not escape them), except that no
// label contains '.'. It panics if i is not below q.Count.
func (q *DNSQuery) Name(i int) []byte {
	if i >= q.Count {
		panic("l7: DNSQuery.Name index out of range")
	}
	n := &q.Names[i]
	b := n.Data[:n.Length]
	if len(b) > 0 && b[len(b)-1] == '.' {
		b = b[:len(b)-1]
	}
	return b
}

// ParseDNSQuery parses one DNS message carried in a UDP datagram b.
//
// It returns Done for a standard query (QR=0, opcode QUERY) whose whole
// message parses, with every question in out (Count may be 0: e.g. a
// cookie-only query has no question). It returns NotMatch for a response
// (QR=1): a client does not send responses, and a response carries no
// query to judge. It returns Malformed for a message that does not parse
// (truncated, bad compression pointer, a label containing '.', a name too
// long, a bad record in a later section), for another opcode (UPDATE,
// NOTIFY, …) and for more than MaxDNSQuestions questions. Bytes after the
// message are ignored, as resolvers do.
func ParseDNSQuery(b []byte, out *DNSQuery) Status {
	out.ID, out.Count = 0, 0
	var p dnsmessage.Parser
	h, err := p.Start(b)
	if err != nil {
		return Malformed
	}
	if h.Response {
		return NotMatch
	}
	if h.OpCode != 0 {
		return Malformed
	}
	n := 0
	for {
		q, err := p.Question()
		if err == dnsmessage.ErrSectionDone {
			break
		}
		if err != nil || n == MaxDNSQuestions {
			return Malformed
		}
		out.Names[n], out.Types[n] = q.Name, q.Type
		n++
	}
	// The rest of the message (usually just an EDNS OPT record) must parse
	// too: a resolver rejects a message that does not.
	if p.SkipAllAnswers() != nil || p.SkipAllAuthorities() != nil || p.SkipAllAdditionals() != nil {
		return Malformed
	}
	out.ID, out.Count = h.ID, n
	return Done
}

// ParseDNSOverTCP parses the first DNS message of a TCP stream, given the
// in-order prefix b: a 2-byte big-endian length followed by the message
// (RFC 1035 §4.2.2). It returns NeedMore until the whole message is in b,
// then what ParseDNSQuery returns for it. As soon as the 12-byte header is
// in b a response (NotMatch) or another opcode (Malformed) is reported
// without waiting, and a length below 12 is Malformed at once. Later
// messages on the same connection are out of scope.
func ParseDNSOverTCP(b []byte, out *DNSQuery) Status {
	out.ID, out.Count = 0, 0
	if len(b) < 2 {
		return NeedMore
	}
	n := int(b[0])<<8 | int(b[1])
	if n < 12 {
		return Malformed
	}
	m := b[2:]
	if len(m) < n {
		if len(m) >= 12 {
			// Flags: QR is the top bit of byte 2, opcode the next four.
			if m[2]&0x80 != 0 {
				return NotMatch
			}
			if m[2]&0x78 != 0 {
				return Malformed
			}
		}
		return NeedMore
	}
	return ParseDNSQuery(m[:n], out)
}
