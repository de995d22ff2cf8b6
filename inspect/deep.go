package inspect

import (
	"math"
	"net/netip"
	"time"

	"github.com/nfqguard/nfqguard/inspect/l7"
	"github.com/nfqguard/nfqguard/rules"
)

// Deep inspection: flows whose verdict depends on an L7 fact.
//
// TCP: the handshake passes (allowed, not bypassed). The initiator's packets
// that carry data, and a FIN or RST of the initiator, are held: their
// verdicts are withheld while their bytes are reassembled in order; the
// responder's packets pass meanwhile (so a server that speaks first is not
// stalled). Each time the in-order prefix grows, the parsers the candidate
// rules need run over it from its start. When one reads its message whole
// the flow is decided by what it found: a field the message does not
// carry (a ClientHello without server name, a request without Host) is
// absent, a fact no value of that field matches, so the rules go on to the
// next. When the message cannot be read (another protocol, malformed, the
// budget spent, the connection closed) the flow gets [inspect] undecided.
// Then every held
// packet is released with the verdict, in arrival order, and an allowed
// flow moves to the connmark fast path. A dropped flow is cut: its held
// packets are dropped, the Resetter (if any) sends a RST to each end, and
// every later packet of the flow is dropped until the flow expires.
//
// UDP: a QUIC flow is held like a TCP one until its ClientHello is read
// (see quic.go). Otherwise every datagram of the initiator is one DNS
// query, decided on its own by its question names; the flow is never
// bypassed, and the responder's datagrams pass.

// Released is the verdict for a packet the engine held.
type Released struct {
	ID, Mark uint32 // the packet's id and mark, as given in Meta
	Verdict  Verdict
}

// Resetter aborts a TCP connection on both ends, for flows dropped after
// their handshake. client and server are the flow's ends as its initiator
// sees them; clientSeq is the sequence number the server expects next from
// the client and serverSeq the one the client expects from the server. It
// is called on the packet path: it must not block.
type Resetter interface {
	Reset(client, server netip.AddrPort, clientSeq, serverSeq uint32)
}

// Reasons an inspected flow (or DNS query) was decided by [inspect]
// undecided.
const (
	reasonNoQuestion = "undecided: DNS query without question"
	reasonNotProto   = "undecided: not the protocol the rules inspect"
	reasonMalformed  = "undecided: malformed"
	reasonPackets    = "undecided: max_packets spent before the fact was seen"
	reasonBytes      = "undecided: max_bytes spent before the fact was seen"
	reasonWait       = "undecided: max_wait passed before the fact was seen"
	reasonClosed     = "undecided: connection closed before the fact was seen"
	reasonHoldFull   = "undecided: max_held_flows flows already held"
	reasonStopping   = "undecided: engine stopping"
)

// deep is an Engine's deep-inspection state.
type deep struct {
	holds      *holdTable
	maxWait    int64 // nanoseconds
	nextExpiry int64 // engine clock of the earliest hold deadline
	released   []Released
	resetter   Resetter

	// Parser outputs, reused so that parsing allocates nothing.
	hello   l7.ClientHello
	ja4     [l7.JA4Len]byte // the fingerprint of hello, which facts.JA4 points into
	scratch []byte
	http    l7.HTTPRequest
	dns     l7.DNSQuery
	facts   rules.Facts
	quic    *l7.QUICOpener
	qpkt    l7.QUICPacket
	qframes l7.QUICFrames
}

func newDeep(c rules.InspectConfig, r Resetter) *deep {
	return &deep{
		holds:      newHoldTable(c.MaxHeldFlows, c.MaxPackets, c.MaxBytes),
		maxWait:    int64(c.MaxWait),
		nextExpiry: math.MaxInt64,
		released:   make([]Released, 0, 2*c.MaxPackets),
		resetter:   r,
		scratch:    make([]byte, 0, c.MaxBytes),
		quic:       l7.NewQUICOpener(),
	}
}

// Released returns the verdicts of held packets decided by the last call of
// Judge, Tick or ReleaseAll. Answer them before the packet Judge was given
// (if Judge did not hold it too), so that the flow's packets leave in
// order. The slice is reused: it is valid until the next call of Judge,
// Tick or ReleaseAll.
func (e *Engine) Released() []Released {
	r := e.deep.released
	e.deep.released = e.deep.released[:0]
	return r
}

// Held returns the number of flows whose packets are held.
func (e *Engine) Held() int { return e.deep.holds.used }

// Tick decides the held flows whose max_wait has passed. Call it regularly
// (the workers do at least every 100 ms) and answer Released afterwards.
func (e *Engine) Tick(now time.Time) {
	d := e.deep
	clock := int64(now.Sub(e.base))
	e.sweep(clock)
	if e.learn != nil {
		e.learn.store.Sweep(now)
	}
	if clock < d.nextExpiry {
		return
	}
	w := e.begin(now)
	next := int64(math.MaxInt64)
	for i := range d.holds.holds {
		h := &d.holds.holds[i]
		if !h.used {
			continue
		}
		if h.deadline <= clock {
			e.release(w, h, nil, reasonWait)
			continue
		}
		next = min(next, h.deadline)
	}
	d.nextExpiry = next
}

// ReleaseAll decides every held flow as undecided, for a worker that stops:
// the kernel would otherwise drop their packets when the queue is unbound.
func (e *Engine) ReleaseAll(now time.Time) {
	w := e.begin(now)
	for i := range e.deep.holds.holds {
		if h := &e.deep.holds.holds[i]; h.used {
			e.release(w, h, nil, reasonStopping)
		}
	}
	e.deep.nextExpiry = math.MaxInt64
}

// startInspection sets up the new flow of w, whose verdict needs the L7
// facts need, and judges its first packet.
func (e *Engine) startInspection(w *work, need rules.L7) Verdict {
	f, p := w.f, &w.p
	e.stats.Inspected.Add(1)
	if p.Proto == rules.ProtoUDP {
		return e.startUDP(w, need)
	}
	if w.fromInit() && p.TCPFlags&(TCPFlagSYN|TCPFlagACK) == TCPFlagSYN {
		f.state, f.packets = stateAwait, p.Seq+1
	} else {
		// First seen after its handshake (evicted, or a retransmission after
		// the flow expired): the stream is taken to start at the first
		// data the initiator sends, which for a client retrying its
		// ClientHello or request is where it does start.
		f.state = stateAwaitMid
	}
	f.expires = w.clock + timeout(p, f.state)
	return e.inspectTCP(w)
}

// inspectTCP judges a packet of a TCP flow under inspection.
func (e *Engine) inspectTCP(w *work) Verdict {
	t, f, p := w.t, w.f, &w.p
	pass := Verdict{Allow: true} // judged, but not bypassed: later packets still come here
	if !w.fromInit() {
		if hd := e.heldOf(f, &w.key); hd != nil {
			hd.seen++
		}
		return pass
	}
	payload := w.data[p.PayloadOff : p.PayloadOff+p.PayloadLen]
	end := p.TCPFlags&(TCPFlagFIN|TCPFlagRST) != 0
	if p.TCPFlags&TCPFlagSYN != 0 {
		if f.state == stateAwait {
			f.packets = p.Seq + 1 // a retransmitted SYN may carry a new ISN
		}
		return pass
	}
	hd := e.heldOf(f, &w.key)
	if hd == nil {
		if len(payload) == 0 && !end {
			return pass // the handshake's last ACK, or a window update
		}
		if f.state == stateHeld {
			// Its hold was decided while the flow slot was evicted and
			// reused: judge again from here.
			f.state = stateAwaitMid
		}
		tu := w.sent() // the initiator's packet: its flow as the initiator sees it
		var idx int32
		idx, hd = e.deep.holds.alloc()
		if hd == nil {
			e.stats.HoldFull.Add(1)
			// What the server expects next from the client, for a reset: this
			// packet's first byte, as nothing of the stream has passed.
			clientSeq := p.Seq
			if f.state == stateAwait {
				clientSeq = f.packets
			}
			d := e.decideInspected(t, &tu, nil, reasonHoldFull)
			allow := e.settleInspected(w, f, &d, &tu, 1)
			// Dropped after its handshake like a held flow: reset both ends,
			// or they retransmit into the drop until their own timeouts.
			if !allow && p.TCPFlags&TCPFlagRST == 0 {
				e.reset(&tu, clientSeq, p.Ack)
			}
			return e.verdict(t, allow)
		}
		hd.key, hd.hash = w.key, w.hash
		hd.tuple = tu
		hd.need = e.decide(t, &tu, nil).need
		hd.deadline = w.clock + e.deep.maxWait
		hd.base = p.Seq
		if f.state == stateAwait {
			hd.base = f.packets
		}
		e.deep.nextExpiry = min(e.deep.nextExpiry, hd.deadline)
		f.state, f.packets = stateHeld, uint32(idx)
		e.stats.HeldFlows.Add(1)
		e.stats.heldNow.Add(1)
	}
	hd.seen++
	hd.ack = p.Ack
	if len(payload) == 0 && !end {
		return pass
	}
	if len(payload) > 0 {
		switch hd.add(p.Seq, payload, w.m.ID, w.m.Mark) {
		case addDuplicate:
			// A retransmission of held bytes: the first copy is held and
			// will be released; this one would only arrive out of order.
			e.stats.HeldDuplicates.Add(1)
			return Verdict{Allow: false}
		case addFull:
			// Not reachable while the budget check below ends a hold at
			// max_packets; kept so a mistake cannot hold unbounded packets.
			e.release(w, hd, nil, reasonPackets)
			return e.decidedVerdict(w)
		}
	} else if !hd.addMarker(w.m.ID, w.m.Mark) {
		e.release(w, hd, nil, reasonPackets)
		return e.decidedVerdict(w)
	}
	e.stats.HeldPackets.Add(1)
	e.stats.heldPacketsNow.Add(1)

	facts, reason := e.parse(hd)
	switch {
	case facts != nil || reason != "":
	case end:
		reason = reasonClosed
	case len(hd.pkts) >= cap(hd.pkts):
		reason = reasonPackets
	case hd.bytes >= len(hd.buf) || hd.have >= len(hd.buf):
		reason = reasonBytes
	default:
		return Verdict{Hold: true}
	}
	e.release(w, hd, facts, reason)
	if f.state == stateDropped {
		// The packet that decided a drop (usually the whole request) is
		// what a capture is for.
		e.capture(w, e.flows.infoOf(f))
	}
	return Verdict{Hold: true}
}

// decidedVerdict is the verdict of the packet of w, whose flow was just
// decided: the flow's, if its slot is still the flow's.
func (e *Engine) decidedVerdict(w *work) Verdict {
	if g := e.flows.lookup(&w.key, w.hash, w.clock); g != nil && g == w.f {
		return e.verdict(w.t, w.f.state == stateAllowed)
	}
	return Verdict{Allow: false}
}

// heldOf returns the hold of flow f, if it has one.
func (e *Engine) heldOf(f *flow, k *flowKey) *hold {
	if f.state != stateHeld && f.state != stateQUIC {
		return nil
	}
	return e.deep.holds.get(f.packets, k)
}

// parse runs the parsers the flow's candidate rules need over its stream.
// It returns the facts once one parser has them, a reason when none can,
// and neither while more bytes are needed. A flow that no longer needs any
// fact (the table was reloaded) gets a reason at once, and release then
// decides it by the new table's rules.
func (e *Engine) parse(hd *hold) (*rules.Facts, string) {
	need := hd.need
	app := need&rules.L7App != 0 // app_proto: every protocol is looked for
	s := hd.stream()
	dp := e.deep
	f := &dp.facts
	*f = rules.Facts{}
	waiting, malformed, tooLong := false, false, false
	if need&rules.L7TLS != 0 || app {
		switch l7.ParseClientHelloScratch(s, dp.scratch[:0], &dp.hello) {
		case l7.Done:
			// A ClientHello without server name is judged so: no
			// tls_sni value matches it (absent is a fact, not undecided).
			f.Proto, f.App, f.SNI = rules.L7TLS, rules.AppTLS, dp.hello.SNI
			f.JA4 = dp.hello.AppendJA4(dp.ja4[:0], l7.JA4TCP)
			return f, ""
		case l7.NeedMore:
			waiting = true
		case l7.Malformed:
			malformed = true
		}
	}
	if need&rules.L7HTTP != 0 || app {
		switch l7.ParseHTTPRequest(s, &dp.http) {
		case l7.Done:
			// A request without Host: no http_host value matches it.
			f.Proto, f.App = rules.L7HTTP, rules.AppHTTP
			f.Host, f.Path, f.Method = dp.http.HostName(), dp.http.Path(), dp.http.Method
			return f, ""
		case l7.NeedMore:
			waiting = true
		case l7.Malformed:
			malformed = true
		}
	}
	if app {
		switch l7.ParseSSHBanner(s) {
		case l7.Done:
			f.App = rules.AppSSH
			return f, ""
		case l7.NeedMore:
			waiting = true
		}
	}
	if need&rules.L7DNS != 0 || app {
		switch l7.ParseDNSOverTCP(s, &dp.dns) {
		case l7.Done:
			return e.dnsFacts()
		case l7.NeedMore:
			// A length prefix longer than the hold's buffer is a message
			// that cannot be read within max_bytes: no use waiting for it
			// (any stream starting with a TLS record header claims 5 KiB
			// or more).
			if len(s) < 2 || 2+(int(s[0])<<8|int(s[1])) <= len(hd.buf) {
				waiting = true
			} else {
				tooLong = true
			}
		case l7.Malformed:
			malformed = true
		}
	}
	switch {
	case need == 0:
		return nil, reasonNotProto
	case waiting:
		return nil, ""
	case app:
		// Every protocol ruled out (a malformed message is not the
		// protocol it claims): app_proto "unknown" is a fact.
		f.App = rules.AppUnknown
		return f, ""
	case tooLong:
		return nil, reasonBytes
	case malformed:
		return nil, reasonMalformed
	}
	return nil, reasonNotProto
}

// dnsFacts turns the parsed query into facts.
func (e *Engine) dnsFacts() (*rules.Facts, string) {
	dp := e.deep
	if dp.dns.Count == 0 {
		return nil, reasonNoQuestion
	}
	f := &dp.facts
	*f = rules.Facts{Proto: rules.L7DNS, App: rules.AppDNS, NNames: min(dp.dns.Count, rules.MaxFactNames)}
	for i := range f.NNames {
		f.Names[i] = dp.dns.Name(i)
	}
	return f, ""
}

// release decides held flow hd, by facts or, without them, by [inspect]
// undecided for reason; answers its held packets with the flow's verdict
// (see Released), and frees the hold.
func (e *Engine) release(w *work, hd *hold, facts *rules.Facts, reason string) {
	t := w.t
	d := e.decideInspected(t, &hd.tuple, facts, reason)
	var f *flow
	if g := e.flows.lookup(&hd.key, hd.hash, w.clock); g != nil && (g.state == stateHeld || g.state == stateQUIC) && g.packets == uint32(hd.idx) {
		f = g
	}
	allow := e.settleInspected(w, f, &d, &hd.tuple, hd.seen)
	v := e.verdict(t, allow)
	if f != nil && f.learn && allow {
		// A DNS flow over TCP judged by its first query: that query is
		// the one its first answer answers.
		v.Bypass = false
		if facts != nil && facts.Proto == rules.L7DNS {
			e.expectQuery(&hd.key, w.clock, &e.deep.dns)
		}
	}
	for _, p := range hd.pkts {
		e.deep.released = append(e.deep.released, Released{ID: p.id, Mark: p.mark, Verdict: v})
		e.count(v)
	}
	if !allow && hd.tuple.proto == rules.ProtoTCP {
		e.reset(&hd.tuple, hd.base, hd.ack)
	}
	e.stats.heldPacketsNow.Add(-int64(len(hd.pkts)))
	e.stats.heldNow.Add(-1)
	e.deep.holds.free(hd)
	if e.deep.holds.used == 0 {
		e.deep.nextExpiry = math.MaxInt64
	}
}

// decideInspected decides flow (or query) tu by its L7 facts, or, with
// facts nil because they could not be had, by [inspect] undecided for
// reason. A flow whose verdict no longer waits for facts (the table was
// reloaded) is decided by its rules.
func (e *Engine) decideInspected(t *rules.Table, tu *tuple, facts *rules.Facts, reason string) decision {
	d := e.decide(t, tu, facts)
	d.facts, d.reason = facts, reason
	if facts != nil {
		e.stats.Decided.Add(1)
	} else if d.need != 0 {
		d.m.Action, d.m.RuleID, d.m.Log, d.need = t.Inspect.Undecided, rules.RuleIDUndecided, false, 0
		e.stats.Undecided.Add(1)
	}
	return d
}

// settleInspected settles inspected flow tu with decision d: in its slot
// f (nil if the slot is gone) with its timeout, in the counters, and in
// the log with packets. It reports whether d allows the flow.
func (e *Engine) settleInspected(w *work, f *flow, d *decision, tu *tuple, packets uint32) bool {
	fi := &e.spare // a slot that is gone: counted, not remembered
	*fi = flowInfo{}
	if f != nil {
		fi = e.flows.infoOf(f)
	}
	e.stats.Flows.Add(1)
	allow := e.settle(w.t, f, fi, d, packets)
	if f != nil {
		f.expires = w.clock + int64(tcpTimeout)
		if tu.proto == rules.ProtoUDP {
			f.expires = w.clock + int64(udpTimeout)
		}
		if !allow {
			f.expires = w.clock + int64(droppedTimeout)
		}
	}
	logged := d.logged() && e.logDecision(w.t, d, tu.event(w.now, packets))
	fi.logged = logged && !allow
	return allow
}

// logDecision emits ev, which names the flow or query, for decision d
// (call it when d.logged()): the rule, the Docker names and the facts the
// flow was decided by. d's reason is added when it was decided by
// [inspect] undecided; a Reason already in ev is kept otherwise. It
// reports whether the sink took the event.
func (e *Engine) logDecision(t *rules.Table, d *decision, ev Event) bool {
	ev.Action, ev.RuleID, ev.Container, ev.Direction = d.m.Action, d.m.RuleID, d.m.Container, d.dir
	if d.facts == nil && d.m.RuleID == rules.RuleIDUndecided {
		ev.Reason = d.reason
	}
	describeFacts(&ev, d.facts, d.m)
	if d.facts != nil && d.facts.Proto == rules.L7TLS {
		ev.ECH = e.deep.hello.ECH // the hello facts were parsed from
	}
	e.describe(t, &ev)
	return e.sink.Emit(ev)
}

// describeFacts copies the facts a flow was decided by into its event. It
// runs only for flows that are logged.
func describeFacts(ev *Event, f *rules.Facts, m rules.Match) {
	if f == nil {
		return
	}
	ev.L7, ev.App, ev.QUIC = f.Proto, f.App, f.QUIC
	switch f.Proto {
	case rules.L7TLS:
		ev.SNI, ev.JA4 = string(f.SNI), string(f.JA4)
	case rules.L7HTTP:
		ev.HTTPHost, ev.HTTPPath, ev.HTTPMethod = string(f.Host), string(f.Path), string(f.Method)
	case rules.L7DNS:
		i := 0
		if m.Name >= 0 && int(m.Name) < f.NNames {
			i = int(m.Name)
		}
		if f.NNames > 0 {
			ev.QName = string(f.Names[i])
		}
	}
}

// judgeQuery judges one datagram of a UDP flow whose DNS queries are
// decided one by one.
func (e *Engine) judgeQuery(w *work) Verdict {
	if !w.fromInit() {
		if w.f.learn {
			e.learnPacket(w)
		}
		return Verdict{Allow: true} // responses to allowed queries; never bypassed
	}
	e.stats.Queries.Add(1)
	p, dp := &w.p, e.deep
	var facts *rules.Facts
	reason := reasonMalformed
	tu := w.sent()
	switch l7.ParseDNSQuery(w.data[p.PayloadOff:p.PayloadOff+p.PayloadLen], &dp.dns) {
	case l7.Done:
		facts, reason = e.dnsFacts()
	case l7.NotMatch:
		reason = reasonNotProto
	}
	if facts == nil && reason != reasonNoQuestion && e.decide(w.t, &tu, nil).need&rules.L7App != 0 {
		// Not DNS, and app_proto judges the flow: "unknown" is a fact.
		facts, reason = &dp.facts, ""
		*facts = rules.Facts{App: rules.AppUnknown}
	}
	d := e.decideInspected(w.t, &tu, facts, reason)
	allow := d.m.Action != rules.Drop
	e.rules.count(&d.m, d.dir, 1)
	if allow {
		e.stats.AllowedQueries.Add(1)
		if w.f.learn && facts != nil && facts.Proto == rules.L7DNS {
			e.expectQuery(&w.key, w.clock, &dp.dns)
		}
	} else {
		e.stats.BlockedQueries.Add(1)
		e.spare = flowInfo{} // each query is captured on its own
		e.capture(w, &e.spare)
	}
	if d.logged() {
		ev := tu.event(w.now, 1)
		ev.QueryID = dp.dns.ID
		e.logDecision(w.t, &d, ev)
	}
	return Verdict{Allow: allow}
}

// reset cuts TCP flow tu, dropped after its handshake: a RST to each end,
// with the sequence numbers each expects, when the engine has a Resetter.
func (e *Engine) reset(tu *tuple, clientSeq, serverSeq uint32) {
	if e.deep.resetter == nil {
		return
	}
	e.deep.resetter.Reset(tu.client, tu.server, clientSeq, serverSeq)
	e.stats.Resets.Add(1)
}
