package inspect

import (
	"encoding/binary"

	"github.com/nfqguard/nfqguard/inspect/l7"
	"github.com/nfqguard/nfqguard/rules"
)

// QUIC: a UDP flow whose candidate rules need tls_sni is read as QUIC when
// its first datagram starts with a long header of a version nfqguard
// opens (v1, v2). The initiator's datagrams are then held, like a TCP
// flow's data: each is decrypted (Initial packets are protected with keys
// anyone can derive from the header), its CRYPTO frames are put in place
// in the hold's buffer, and once the ClientHello is whole the flow is
// decided by it, its held datagrams released in arrival order and an
// allowed flow moved to the fast path. The responder's datagrams pass
// meanwhile. A dropped QUIC flow stays dropped for its lifetime, like any
// dropped flow. The budget is [inspect]'s: max_packets datagrams, a
// ClientHello of at most max_bytes, max_wait.
//
// A first datagram that is not QUIC goes on as DNS queries when the rules
// also need dns_qname, and is decided by [inspect] undecided otherwise:
// with reasonQUICVersion when it is a long header of a version nfqguard
// cannot open (counted: a client cannot pass an SNI rule by offering a
// version nobody reads), reasonMalformed when it is a v1/v2 Initial that
// does not decrypt. A server's Retry before the ClientHello is whole is
// let through and counted; the client's Initials after it (under a new
// connection ID, so new keys) carry on the same CRYPTO stream. Initials
// after the decision follow the flow's verdict. A ClientHello without server name is judged with
// the name absent, as over TCP.

// reasonQUICVersion is the undecided reason of a flow that starts with a
// QUIC long header of a version nfqguard does not open.
const reasonQUICVersion = "undecided: QUIC version not supported"

// QUIC outcomes counted in Stats.QUIC, by index.
const (
	QUICInspected          = iota // UDP flows held as QUIC until their ClientHello was read
	QUICUnsupportedVersion        // flows that started with a long header of a version nfqguard cannot open
	QUICVersionNegotiation        // Version Negotiation packets seen from the server of a held flow
	QUICRetry                     // Retry packets seen from the server of a held flow
	QUICOutcomes
)

// startUDP sets up the new UDP flow of w, whose verdict needs the L7
// facts need, and judges its first datagram.
func (e *Engine) startUDP(w *work, need rules.L7) Verdict {
	f, p, dp := w.f, &w.p, e.deep
	if need&(rules.L7TLS|rules.L7App) != 0 {
		st := dp.quic.Open(w.payload(), &dp.qpkt)
		if st == l7.Done || st == l7.NotMatch && dp.qpkt.Type != 0 {
			// An Initial, or another packet type of a known version (a
			// 0-RTT packet that overtook its Initial): QUIC.
			e.stats.QUIC[QUICInspected].Add(1)
			return e.inspectQUIC(w, st)
		}
		if need&(rules.L7DNS|rules.L7App) == 0 {
			reason := reasonNotProto
			switch {
			case st == l7.Malformed:
				reason = reasonMalformed
			case dp.qpkt.Version != 0:
				reason = reasonQUICVersion
				e.stats.QUIC[QUICUnsupportedVersion].Add(1)
			}
			tu := w.sent()
			d := e.decideInspected(w.t, &tu, nil, reason)
			allow := e.settleInspected(w, f, &d, &tu, 1)
			if !allow {
				e.capture(w, w.fi)
			}
			return e.verdict(w.t, allow)
		}
	}
	f.state = stateQuery
	f.expires = w.clock + timeout(p, f.state)
	return e.judgeQuery(w)
}

// inspectQUIC judges a datagram of a QUIC flow under inspection. For the
// flow's first datagram, st is what the opener made of it (the packet is
// in deep.qpkt); for later ones st is l7.NeedMore, which Open never
// returns, and the datagram is opened here.
func (e *Engine) inspectQUIC(w *work, st l7.Status) Verdict {
	t, f, dp := w.t, w.f, e.deep
	pass := Verdict{Allow: true} // judged, but not bypassed
	hd := e.heldOf(f, &w.key)
	if !w.fromInit() {
		if hd != nil {
			hd.seen++
			e.countServerQUIC(w.payload())
		}
		return pass
	}
	payload := w.payload()
	if hd == nil {
		tu := w.sent()
		var idx int32
		idx, hd = dp.holds.alloc()
		if hd == nil {
			e.stats.HoldFull.Add(1)
			d := e.decideInspected(t, &tu, nil, reasonHoldFull)
			return e.verdict(t, e.settleInspected(w, f, &d, &tu, 1))
		}
		hd.key, hd.hash, hd.tuple = w.key, w.hash, tu
		hd.need = e.decide(t, &tu, nil).need
		hd.deadline = w.clock + dp.maxWait
		hd.quic.Reset(hd.buf)
		dp.nextExpiry = min(dp.nextExpiry, hd.deadline)
		f.state, f.packets = stateQUIC, uint32(idx)
		f.expires = w.clock + timeout(&w.p, f.state)
		e.stats.HeldFlows.Add(1)
		e.stats.heldNow.Add(1)
	}
	if st == l7.NeedMore { // not opened yet (Open never says NeedMore)
		st = dp.quic.Open(payload, &dp.qpkt)
	}
	hd.seen++
	if !hd.addMarker(w.m.ID, w.m.Mark) {
		e.release(w, hd, nil, reasonPackets)
		return e.decidedVerdict(w)
	}
	hd.bytes += len(payload)
	e.stats.HeldPackets.Add(1)
	e.stats.heldPacketsNow.Add(1)

	facts, reason := e.readQUIC(hd, payload, st)
	switch {
	case facts != nil || reason != "":
	case len(hd.pkts) >= cap(hd.pkts):
		reason = reasonPackets
	case hd.quic.Full():
		reason = reasonBytes
	default:
		return Verdict{Hold: true}
	}
	e.release(w, hd, facts, reason)
	if f.state == stateDropped {
		e.capture(w, e.flows.infoOf(f))
	}
	return Verdict{Hold: true}
}

// countServerQUIC counts a server's Version Negotiation and Retry packets
// (a long header of version 0, or of a known version with the Retry
// type). Both pass: after a Version Negotiation the client starts again
// with another version, after a Retry it sends its Initials again under
// the connection ID the server chose (new keys, which the opener derives)
// with the same CRYPTO data at the same offsets.
func (e *Engine) countServerQUIC(d []byte) {
	if len(d) < 5 || d[0]&0x80 == 0 {
		return
	}
	switch v := binary.BigEndian.Uint32(d[1:5]); {
	case v == 0:
		e.stats.QUIC[QUICVersionNegotiation].Add(1)
	case (v == l7.QUICv1 && d[0]&0x30 == 0x30) || (v == l7.QUICv2 && d[0]&0x30 == 0):
		e.stats.QUIC[QUICRetry].Add(1)
	}
}

// readQUIC adds the CRYPTO data of the Initial packets of datagram
// payload (the first opened with status st, into deep.qpkt) to the flow's
// stream, and reads the ClientHello once it is whole. It returns the facts
// once they are known, a reason when they cannot be, and neither while
// more is needed.
func (e *Engine) readQUIC(hd *hold, payload []byte, st l7.Status) (*rules.Facts, string) {
	dp := e.deep
	for off := 0; ; {
		if off > 0 {
			st = dp.quic.Open(payload[off:], &dp.qpkt)
		}
		if st == l7.Malformed && off == 0 {
			return nil, reasonMalformed
		}
		if st != l7.Done {
			// A 0-RTT or Handshake packet, or what follows the
			// coalesced packets (padding, a packet that does not open:
			// RFC 9000 §12.2 lets a receiver drop those).
			break
		}
		if dp.qpkt.Version != hd.version {
			// The first Initial, or the first of another version after
			// the server's Version Negotiation: a new ClientHello.
			hd.version = dp.qpkt.Version
			hd.quic.Reset(hd.buf)
		}
		dp.qframes.Reset(dp.qpkt.Frames)
		for {
			o, data, ok := dp.qframes.NextCrypto()
			if !ok {
				break
			}
			if hd.quic.Add(o, data) != l7.Done {
				return nil, reasonMalformed
			}
		}
		if dp.qframes.Status() != l7.Done {
			return nil, reasonMalformed
		}
		if off += dp.qpkt.Size; off >= len(payload) {
			break
		}
	}
	switch l7.ParseHandshakeClientHello(hd.quic.Prefix(), &dp.hello) {
	case l7.Done:
		f := &dp.facts
		*f = rules.Facts{Proto: rules.L7TLS, App: rules.AppQUIC, QUIC: hd.version, SNI: dp.hello.SNI,
			JA4: dp.hello.AppendJA4(dp.ja4[:0], l7.JA4QUIC)}
		return f, ""
	case l7.Malformed:
		return nil, reasonMalformed
	}
	return nil, ""
}
