package inspect

import (
	"encoding/binary"
	"net/netip"

	"github.com/google/gopacket/layers"

	"github.com/nfqguard/nfqguard/rules"
)

// ICMP errors quote the packet they are about. The engine reads the quote
// (decodeQuoted) to find the flow the error belongs to, and the error
// follows that flow's verdict. ICMP echo identifiers (echoPorts) stand in
// for ports, in echoes and in quoted echoes alike.

// IsICMPError reports whether p is an ICMP or ICMPv6 error message (as
// opposed to an echo or informational message).
func (p *Packet) IsICMPError() bool {
	switch p.Proto {
	case rules.ProtoICMP:
		switch p.ICMPType {
		case layers.ICMPv4TypeDestinationUnreachable, layers.ICMPv4TypeSourceQuench,
			layers.ICMPv4TypeRedirect, layers.ICMPv4TypeTimeExceeded, layers.ICMPv4TypeParameterProblem:
			return true
		}
	case rules.ProtoICMPv6:
		return p.ICMPType < 128
	}
	return false
}

// judgeICMPError follows the verdict of the flow an ICMP error quotes, so
// that "port unreachable" or "fragmentation needed" reach the peers of an
// allowed flow, and errors about unknown flows are judged as ICMP.
func (e *Engine) judgeICMPError(w *work) Verdict {
	p := &w.p
	e.stats.ICMPErrors.Add(1)
	switch {
	case !p.Inner:
		e.stats.ICMPErrorsBadQuote.Add(1)
	case p.Dst != p.InnerSrc.Addr():
		// An error goes back to the sender of the packet it quotes (after
		// the kernel undid NAT on both). One sent elsewhere is not about
		// that flow: following its verdict would let anyone who knows an
		// allowed flow reach any container with ICMP.
		e.stats.ICMPErrorsUnmatched.Add(1)
	default:
		k, _ := makeKey(p.InnerSrc.Addr(), p.InnerSrc.Port(), p.InnerDst.Addr(), p.InnerDst.Port(), p.InnerPro)
		if f := e.flows.lookup(&k, e.flows.hashOf(&k), w.clock); f != nil {
			e.stats.ICMPErrorsMatched.Add(1)
			// A flow under inspection has not been dropped: its ICMP
			// errors (fragmentation needed, …) go through.
			return Verdict{Allow: f.state != stateDropped}
		}
		e.stats.ICMPErrorsUnmatched.Add(1)
	}
	tu := w.sent() // its port is not matched: the protocol is ICMP
	d := e.decide(w.t, &tu, nil)
	// Never bypass on an ICMP error: its conntrack entry is the quoted
	// flow's, and a mark set here would let that flow skip judgement.
	return Verdict{Allow: d.m.Action == rules.Allow}
}

// decodeQuoted reads the IP header and the first transport bytes that an
// ICMP error quotes, so the error can be matched to the flow it is about.
// It stays hand-written: the quote is a packet cut short by design (an
// ICMPv4 error need quote only 8 bytes past the IP header), which
// gopacket's layers cannot decode as a packet (its TCP layer wants 20
// bytes, and refusing builds an error). The quoted lengths are therefore
// not held against it; but every byte read is checked to be there. A
// quote that cannot be read leaves p.Inner false.
func decodeQuoted(b []byte, p *Packet) {
	if len(b) < 1 {
		return
	}
	var src, dst netip.Addr
	var proto uint8
	var l4 []byte
	switch b[0] >> 4 {
	case 4:
		if len(b) < 20 {
			return
		}
		ihl := int(b[0]&0x0f) * 4
		if ihl < 20 || len(b) < ihl {
			return
		}
		if binary.BigEndian.Uint16(b[6:8])&0x1fff != 0 {
			return // a later fragment quoted: it has no ports
		}
		src = netip.AddrFrom4([4]byte(b[12:16]))
		dst = netip.AddrFrom4([4]byte(b[16:20]))
		proto = b[9]
		l4 = b[ihl:]
	case 6:
		if len(b) < 40 {
			return
		}
		src = netip.AddrFrom16([16]byte(b[8:24]))
		dst = netip.AddrFrom16([16]byte(b[24:40]))
		next, rest, _, kind := walkIPv6Ext(b[6], b[40:])
		if kind != kindNone {
			return
		}
		proto, l4 = next, rest
	default:
		return
	}
	var sp, dp uint16
	switch proto {
	case rules.ProtoTCP, rules.ProtoUDP:
		if len(l4) < 4 {
			return
		}
		sp = binary.BigEndian.Uint16(l4[0:2])
		dp = binary.BigEndian.Uint16(l4[2:4])
	case rules.ProtoICMP, rules.ProtoICMPv6:
		if len(l4) < 6 {
			return
		}
		sp, dp = echoPorts(l4[0], binary.BigEndian.Uint16(l4[4:6]))
	default:
		return
	}
	p.Inner = true
	p.InnerSrc = netip.AddrPortFrom(src, sp)
	p.InnerDst = netip.AddrPortFrom(dst, dp)
	p.InnerPro = proto
}

// echoPorts places an ICMP or ICMPv6 echo identifier on the requester's
// side (see Packet.SrcPort). Other ICMP messages have no identifier.
func echoPorts(icmpType uint8, id uint16) (src, dst uint16) {
	switch icmpType {
	case layers.ICMPv4TypeEchoRequest, layers.ICMPv6TypeEchoRequest:
		return id, 0
	case layers.ICMPv4TypeEchoReply, layers.ICMPv6TypeEchoReply:
		return 0, id
	}
	return 0, 0
}
