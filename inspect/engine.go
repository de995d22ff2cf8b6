package inspect

import (
	"math/rand/v2"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/nfqguard/nfqguard/inspect/l7"
	"github.com/nfqguard/nfqguard/inspect/names"
	"github.com/nfqguard/nfqguard/rules"
)

// Idle timeouts after which a flow is forgotten. They bound how long a
// dropped flow stays dropped without a new log line, and, with the fast
// path off, how long an idle allowed flow keeps its verdict.
const (
	tcpTimeout     = time.Hour
	tcpEndTimeout  = 30 * time.Second // after FIN or RST
	udpTimeout     = 3 * time.Minute
	icmpTimeout    = 30 * time.Second
	droppedTimeout = time.Minute
)

// TableSource hands out the current rule table. *atomic.Pointer[rules.Table]
// satisfies it, so a reload swaps the table under running engines.
type TableSource interface {
	Load() *rules.Table
}

// Bridges tells whether a network interface is a container network's bridge
// (docker0, br-…). It lets the engine recognise traffic of containers that
// no [[container]] lists, so that [defaults] apply to them. It must be safe
// for concurrent use and must not allocate.
type Bridges interface {
	IsBridge(ifindex uint32) bool
}

// Meta is what the kernel says about a packet besides its bytes.
type Meta struct {
	InDev, OutDev uint32 // interface indexes; 0 when unknown
	// ID and Mark are the queue's packet id and the packet's mark. The
	// engine only hands them back, in Released, for packets it held.
	ID, Mark uint32
}

// Verdict is the engine's answer for one packet.
type Verdict struct {
	Allow bool
	// Bypass asks for the flow to be marked so that the kernel stops
	// queueing it (the connmark fast path). Only set on allowed packets.
	Bypass bool
	// Hold means the engine keeps the packet until its flow is decided:
	// answer nothing now; its verdict comes later through Released.
	Hold bool
}

// EventKind says what an Event reports.
type EventKind uint8

const (
	// EventVerdict is a flow's verdict, emitted once per flow: for every
	// blocked flow (or DNS query), and for allowed flows whose rule has
	// log = true.
	EventVerdict EventKind = iota
	// EventEnd closes a blocked flow whose EventVerdict the sink took: the
	// flow went idle and expired, was evicted, or the engine stopped.
	// Packets and Bytes count the whole flow, Start is its first packet's
	// time and Time its last's.
	EventEnd
)

// Event describes a flow worth logging: every blocked flow, and allowed
// flows whose rule has log = true.
type Event struct {
	Kind      EventKind
	Time      time.Time
	Action    rules.Action
	RuleID    string
	Container string // "" when the container is not listed
	Direction rules.Direction
	Proto     uint8
	Src, Dst  netip.AddrPort // initiator → responder
	Packets   uint32
	Bytes     uint64    // EventEnd: IP bytes of the flow's packets seen
	Start     time.Time // EventEnd: when the flow's first packet was seen
	Reason    string    // why, beyond its rule ("undecided: …", "rejudged after a reload")

	// Docker's view of the container end (Dst for Ingress, Src for
	// Egress), from the table's Meta; empty when the table was not
	// resolved against Docker or no container has that address.
	DockerName string // the container's Docker name
	Image      string // the image reference it was created from
	// Published names, for Ingress, the host addresses and ports on which
	// Dst's port is published ("0.0.0.0:8080,[::]:8080"): the packet
	// carries the container's port after DNAT, not the one the client
	// dialled. Set whenever the port is published, including for a peer
	// that reached the container directly rather than through the host.
	Published string

	// L7 is the protocol deep inspection found the flow (or DNS query) to
	// speak, 0 if the flow was decided on its L4 key alone; the fields
	// after it hold the facts it was decided by. Reason says why an
	// inspected flow was decided by [inspect] undecided (RuleID
	// "undecided").
	L7         rules.L7
	SNI        string // TLS server name as sent; "" when the ClientHello has none
	JA4        string // with L7 TLS: the ClientHello's JA4 fingerprint
	ECH        bool   // SNI is the outer name of an Encrypted Client Hello
	HTTPHost   string // HTTP Host (without port)
	HTTPPath   string // HTTP path (without query)
	HTTPMethod string
	App        rules.AppProto // the application protocol identified (app_proto), 0 if none was looked for
	QUIC       uint32         // with L7 TLS: the QUIC version whose Initial carried the ClientHello; 0 over TCP
	QName      string         // the DNS question name that matched, else the first
	QueryID    uint16         // DNS message id of a query decided on its own (UDP)

	// Names are the DNS names the container end resolved the other end's
	// address from (see [dns]), latest expiry first; empty when none is
	// bound.
	Names names.List
}

// Sink receives events. Emit is called on the packet path: it must not
// block (drop and count instead). It reports whether the event will be
// written; for the EventVerdict of a blocked flow, false means that the
// flow's EventEnd is not wanted either (it was rate-limited).
type Sink interface {
	Emit(Event) bool
}

// Capture records packets of blocked flows (a pcap file): the first
// [log] pcap_packets packets of each. Capture is called on the packet path:
// it must copy data, not keep it, and must not block.
type Capture interface {
	Capture(data []byte, t time.Time)
}

// Options configure an Engine.
type Options struct {
	Tables  TableSource // required
	Bridges Bridges     // nil: only listed containers are recognised
	Sink    Sink        // nil: events are discarded
	Capture Capture     // nil: packets of blocked flows are not captured
	// Resetter cuts TCP flows dropped after their handshake; nil: they
	// are dropped until they expire.
	Resetter Resetter
	// Names is the store of names learned from DNS answers, shared by
	// every engine of the daemon; nil: nothing is learned, and rules with
	// to_names match nothing.
	Names *names.Store
}

// Stats are an engine's counters. They are updated by the engine's goroutine
// and may be read from any other.
type Stats struct {
	Packets     atomic.Uint64
	Allowed     atomic.Uint64
	Dropped     atomic.Uint64
	Flows       atomic.Uint64 // flows decided by rules
	Blocked     atomic.Uint64 // flows decided drop
	Midstream   atomic.Uint64 // TCP flows first seen after their SYN
	ICMPErrors  atomic.Uint64 // all ICMP and ICMPv6 errors: matched + unmatched + bad quote
	Evictions   atomic.Uint64 // live flows pushed out of a full table
	Malformed   atomic.Uint64 // packets that could not be decoded (all kinds)
	NotConsumed atomic.Uint64 // neither side is a container

	// MalformedKinds counts malformed packets by MalformedKind; they sum
	// to Malformed.
	MalformedKinds [MalformedKinds]atomic.Uint64
	// ICMP errors by what their quote led to: a live flow whose verdict
	// they followed, no such flow (judged as ICMP), or a quote that could
	// not be read (judged as ICMP).
	ICMPErrorsMatched, ICMPErrorsUnmatched, ICMPErrorsBadQuote atomic.Uint64

	// Deep inspection.
	Inspected      atomic.Uint64 // flows whose verdict needed an L7 fact
	HeldFlows      atomic.Uint64 // flows that had packets held
	HeldPackets    atomic.Uint64 // packets held
	HeldDuplicates atomic.Uint64 // retransmissions of held bytes, dropped
	HoldFull       atomic.Uint64 // flows not held because max_held_flows were
	Decided        atomic.Uint64 // flows and queries decided by their L7 fact
	Undecided      atomic.Uint64 // flows and queries decided by [inspect] undecided
	Queries        atomic.Uint64 // DNS datagrams decided one by one
	AllowedQueries atomic.Uint64
	BlockedQueries atomic.Uint64
	Resets         atomic.Uint64 // dropped flows cut with RSTs
	// QUIC counts QUIC outcomes by QUICInspected, QUICUnsupportedVersion
	// and QUICVersionNegotiation.
	QUIC [QUICOutcomes]atomic.Uint64

	FastPath atomic.Uint64 // flows allowed onto the connmark fast path
	Rejudged atomic.Uint64 // flows whose verdict a reloaded table changed

	// DNSAnswers counts the answers of DNS flows that learn, by
	// DNSAnswerAccepted, DNSAnswerUnsolicited and DNSAnswerMalformed;
	// DNSUntracked the queries not remembered because maxExpected were.
	DNSAnswers   [DNSAnswerOutcomes]atomic.Uint64
	DNSUntracked atomic.Uint64

	heldNow, heldPacketsNow atomic.Int64 // gauges, for Counts
}

// Counts is a copy of Stats as plain numbers, plus the engine's gauges.
type Counts struct {
	Packets, Allowed, Dropped             uint64
	Flows, Blocked, Midstream, ICMPErrors uint64
	Evictions                             uint64
	Malformed                             uint64
	// Truncated, Fragments and BadVersion condense MalformedKinds:
	// fragments, bad versions, and every other kind.
	Truncated, Fragments, BadVersion             uint64
	MalformedKinds                               [MalformedKinds]uint64 // indexed by MalformedKind
	ICMPErrorsMatched, ICMPErrorsUnmatched       uint64
	ICMPErrorsBadQuote                           uint64
	NotConsumed                                  uint64
	FastPath                                     uint64 // flows handed to the connmark fast path
	Inspected, HeldFlows, HeldPackets            uint64
	HeldDuplicates, HoldFull, Decided, Undecided uint64
	Queries, AllowedQueries, BlockedQueries      uint64
	Resets                                       uint64
	QUIC                                         [QUICOutcomes]uint64      // indexed like Stats.QUIC
	Rejudged                                     uint64                    // flows whose verdict a reloaded table changed
	DNSAnswers                                   [DNSAnswerOutcomes]uint64 // indexed like Stats.DNSAnswers
	DNSUntracked                                 uint64
	FlowTableFlows, FlowTableSize                uint64 // gauges: live flows, slots
	HeldNow, HeldPacketsNow                      uint64 // gauges: flows and packets held now
}

// Engine judges the packets of one queue. It is not safe for concurrent use:
// each queue's worker owns one.
type Engine struct {
	tables  TableSource
	bridges Bridges
	sink    Sink
	dec     *Decoder
	flows   *flowTable
	base    time.Time
	w       work // the packet being judged; reused, so that judging allocates nothing
	stats   Stats
	deep    *deep
	rules   ruleCounters
	capt    Capture
	spare   flowInfo // for a flow or query that has no slot
	// learn is the engine's part in learning names, nil without a store;
	// learned is it as the tables' Learned, a nil interface then.
	learn   *learner
	learned rules.Learned

	nextSweep int64 // engine clock of the next sweep of the flow table
}

// New returns an Engine with a flow table of maxFlows slots.
func New(o Options, maxFlows int) *Engine {
	if o.Bridges == nil {
		o.Bridges = noBridges{}
	}
	if o.Sink == nil {
		o.Sink = discard{}
	}
	e := &Engine{
		tables:  o.Tables,
		bridges: o.Bridges,
		sink:    o.Sink,
		capt:    o.Capture,
		dec:     NewDecoder(),
		base:    time.Now(),
		deep:    newDeep(o.Tables.Load().Inspect, o.Resetter),
		rules:   ruleCounters{index: map[ruleRef]uint32{}, byKey: map[ruleKey]uint32{}},
	}
	e.flows = newFlowTable(maxFlows, rand.Uint64(), e.endFlow)
	if o.Names != nil {
		e.learn = newLearner(o.Names, &e.w)
		e.learned = e.learn
	}
	return e
}

// Stats returns the engine's counters.
func (e *Engine) Stats() *Stats { return &e.stats }

// Judge decides the fate of one packet. data starts with the IP header.
func (e *Engine) Judge(data []byte, m Meta, now time.Time) Verdict {
	e.stats.Packets.Add(1)
	// begin, by hand: it does not inline, and this is the hot path.
	w := &e.w
	w.t, w.now, w.clock = e.tables.Load(), now, int64(now.Sub(e.base))
	w.data, w.m = data, m
	v := e.count(e.judge(w))
	w.data = nil // the engine keeps no packet's memory alive between calls
	return v
}

// judge gives the packet of w its verdict, before it is counted.
func (e *Engine) judge(w *work) Verdict {
	p := &w.p
	if err := e.dec.Decode(w.data, p); err != nil {
		return e.malformed(w.t, err)
	}
	if p.IsICMPError() {
		return e.judgeICMPError(w)
	}
	w.key, w.srcIsA = makeKey(p.Src, p.SrcPort, p.Dst, p.DstPort, p.Proto)
	w.hash = e.flows.hashOf(&w.key)
	f := e.flows.lookup(&w.key, w.hash, w.clock)
	if f == nil {
		return e.judgeNew(w)
	}
	fi := e.flows.infoOf(f)
	w.f, w.fi = f, fi
	f.lastSeen = w.clock
	fi.bytes += uint64(len(w.data))
	switch f.state {
	case stateAllowed, stateDropped:
		if fi.gen != uint32(w.t.Generation) {
			e.rejudge(w)
		}
		f.packets++
		e.countPacket(fi)
		f.expires = w.clock + timeout(p, f.state)
		if f.state == stateDropped {
			e.capture(w, fi)
		} else if f.learn {
			e.learnPacket(w)
			return Verdict{Allow: true}
		}
		return e.verdict(w.t, f.state == stateAllowed)
	case stateQuery:
		f.expires = w.clock + timeout(p, f.state)
		return e.judgeQuery(w)
	case stateQUIC:
		f.expires = w.clock + timeout(p, f.state)
		return e.inspectQUIC(w, l7.NeedMore)
	}
	f.expires = w.clock + timeout(p, f.state)
	return e.inspectTCP(w)
}

// judgeNew judges the first packet of a flow the table does not hold:
// decides the flow and gives it a slot.
func (e *Engine) judgeNew(w *work) Verdict {
	t, p := w.t, &w.p
	sent := w.sent()
	var d decision
	aIsInit := w.srcIsA
	if p.Proto == rules.ProtoTCP && p.TCPFlags&(TCPFlagSYN|TCPFlagACK) != TCPFlagSYN {
		// Not an opening SYN: a flow that started before we saw it (before
		// start-up, or evicted). Which end opened it is unknown, so it may
		// go on if either reading of it is allowed; a TCP peer cannot open
		// a new connection without a SYN, which is always judged.
		e.stats.Midstream.Add(1)
		d = e.decide(t, &sent, nil)
		if d.m.Action == rules.Drop && d.need == 0 {
			back := sent.reversed()
			if r := e.decide(t, &back, nil); r.m.Action == rules.Allow || r.need != 0 {
				d, aIsInit = r, !w.srcIsA
			}
		}
	} else {
		d = e.decide(t, &sent, nil)
	}

	f, evicted := e.flows.insert(&w.key, w.hash, w.clock)
	if evicted {
		e.stats.Evictions.Add(1)
	}
	f.aIsInit = aIsInit
	fi := e.flows.infoOf(f)
	w.f, w.fi = f, fi
	fi.bytes, fi.gen = uint64(len(w.data)), uint32(t.Generation)
	if e.learn != nil {
		tu := w.initiated()
		f.learn = e.learns(t, &tu)
	}
	if d.need != 0 {
		return e.startInspection(w, d.need)
	}
	e.stats.Flows.Add(1)
	allow := e.settle(t, f, fi, &d, 1)
	f.expires = w.clock + timeout(p, f.state)
	if !allow {
		e.capture(w, fi)
	}
	if d.logged() {
		tu := w.initiated()
		fi.logged = e.logDecision(t, &d, tu.event(w.now, 1)) && !allow
	}
	if allow && f.learn {
		e.learnPacket(w)
		return Verdict{Allow: true}
	}
	return e.verdict(t, allow)
}

// rejudge decides the flow of w again by w's table, of another generation
// than the one that decided it (a reloaded file): a dropped flow always,
// since the new file may allow it; an allowed one when [engine]
// rejudge_on_reload is set. A flow whose verdict waits for L7 facts by the
// new table keeps its verdict: its facts are not kept. An allowed TCP flow
// that is now dropped is cut with RSTs, like one dropped by deep
// inspection.
func (e *Engine) rejudge(w *work) {
	t, f, fi, p := w.t, w.f, w.fi, &w.p
	fi.gen = uint32(t.Generation)
	if f.state == stateAllowed && !t.Engine.RejudgeOnReload {
		return
	}
	tu := w.initiated()
	d := e.decide(t, &tu, nil)
	allow := d.m.Action != rules.Drop
	if d.need != 0 || allow == (f.state == stateAllowed) {
		return
	}
	e.stats.Rejudged.Add(1)
	e.endFlow(f, fi) // a dropped flow's blocked span ends here
	*fi = flowInfo{start: w.clock, bytes: uint64(len(w.data)), gen: fi.gen}
	e.settle(t, f, fi, &d, 0)
	if !allow && p.Proto == rules.ProtoTCP && p.TCPFlags&TCPFlagRST == 0 {
		clientSeq, serverSeq := p.Seq, p.Ack
		if !w.fromInit() {
			clientSeq, serverSeq = p.Ack, p.Seq
		}
		e.reset(&tu, clientSeq, serverSeq)
	}
	if d.logged() {
		ev := tu.event(w.now, 1)
		ev.Reason = "rejudged after a reload"
		fi.logged = e.logDecision(t, &d, ev) && !allow
	}
}

// settle records decision d of flow f, whose info is fi, with its first
// packets: the flow's state (f is nil for a flow whose slot is gone: it is
// counted, not remembered), its rule's counters and the engine's. It
// reports whether d allows the flow.
func (e *Engine) settle(t *rules.Table, f *flow, fi *flowInfo, d *decision, packets uint32) bool {
	allow := d.m.Action != rules.Drop
	if f != nil {
		f.state, f.packets = stateDropped, packets
		if allow {
			f.state = stateAllowed
		}
	}
	e.countRule(fi, &d.m, d.dir, packets)
	if !allow {
		e.stats.Blocked.Add(1)
	} else if t.Engine.FastPath {
		e.stats.FastPath.Add(1)
	}
	return allow
}

// describe adds Docker's metadata of the event's container end, and the
// names the container learned for the other end. It runs only for flows
// that are logged, and does not allocate.
func (e *Engine) describe(t *rules.Table, ev *Event) {
	c, peer := ev.Dst, ev.Src
	if ev.Direction == rules.Egress {
		c, peer = ev.Src, ev.Dst
	}
	if e.learn != nil {
		ev.Names = e.learn.store.List(c.Addr(), peer.Addr(), ev.Time)
	}
	m, ok := t.Meta(c.Addr())
	if !ok {
		return
	}
	ev.DockerName, ev.Image = m.Name, m.Image
	if ev.Direction == rules.Ingress {
		ev.Published = m.Published(ev.Proto, c.Port())
	}
}

// decision is what decide found for a flow from both of its ends.
type decision struct {
	m       rules.Match
	dir     rules.Direction
	foreign bool     // neither end is a container
	need    rules.L7 // the verdict waits for these L7 facts (m is the fallback)

	// For a flow or query decided by deep inspection: the facts it was
	// decided by, or, when they could not be had, why (a reason… string).
	facts  *rules.Facts
	reason string
}

// logged reports whether the flow's verdict is logged: every drop, and
// allows by rules with log = true, of flows with a container at one end.
func (d *decision) logged() bool {
	return (d.m.Action == rules.Drop || d.m.Log) && !d.foreign
}

// decide works out the decision of flow tu. Each end that is a container
// matches it against its rules (egress for the client, ingress for the
// server); drop wins. With facts nil, rules with L7 fields are not
// matched: if the verdict depends on them, need says which facts it waits
// for, unless one end already drops the flow for good.
func (e *Engine) decide(t *rules.Table, tu *tuple, facts *rules.Facts) decision {
	src, dst, dport, proto := tu.client.Addr(), tu.server.Addr(), tu.server.Port(), tu.proto
	if proto != rules.ProtoTCP && proto != rules.ProtoUDP {
		dport = 0
	}
	// d is set field by field: it is returned by value on every new flow.
	d := decision{foreign: true}
	if t.Listed(dst) || e.bridges.IsBridge(tu.out) {
		d.m, d.dir, d.foreign = e.matchEnd(t, dst, rules.Ingress, proto, dport, src, facts), rules.Ingress, false
		d.need = d.m.Need
	}
	if t.Listed(src) || e.bridges.IsBridge(tu.in) {
		eg := e.matchEnd(t, src, rules.Egress, proto, dport, dst, facts)
		finalDrop := func(m rules.Match) bool { return m.Action == rules.Drop && m.Need == 0 }
		switch {
		case d.foreign:
			d.m, d.dir, d.foreign, d.need = eg, rules.Egress, false, eg.Need
		case finalDrop(d.m):
		case finalDrop(eg):
			d.m, d.dir, d.need = eg, rules.Egress, 0
		default:
			if eg.Action == rules.Drop && d.m.Action != rules.Drop {
				d.m, d.dir = eg, rules.Egress
			}
			d.need |= eg.Need
		}
	}
	if d.foreign {
		e.stats.NotConsumed.Add(1)
		d.m = rules.Match{Action: rules.Allow, RuleID: "none"}
	}
	return d
}

// matchEnd is Table.JudgeLearned, or Table.JudgeFactsLearned when facts
// are known, with the names learned from DNS.
func (e *Engine) matchEnd(t *rules.Table, c netip.Addr, dir rules.Direction, proto uint8, port uint16, peer netip.Addr, facts *rules.Facts) rules.Match {
	if facts != nil {
		return t.JudgeFactsLearned(e.learned, c, dir, proto, port, peer, facts)
	}
	return t.JudgeLearned(e.learned, c, dir, proto, port, peer)
}

// malformed counts a packet the decoder refused, by kind, and answers
// the [engine] malformed setting. Nothing else is known of the packet's
// flow: it is not looked up, and its verdict is not bypassed.
func (e *Engine) malformed(t *rules.Table, err error) Verdict {
	e.stats.Malformed.Add(1)
	k, ok := err.(MalformedKind)
	if !ok || int(k) >= MalformedKinds {
		k = MalformedTruncatedIPv4 // not a decoder's error: unreachable, but counted
	}
	e.stats.MalformedKinds[k].Add(1)
	return Verdict{Allow: t.Engine.Malformed == rules.Allow}
}

func (e *Engine) verdict(t *rules.Table, allow bool) Verdict {
	return Verdict{Allow: allow, Bypass: allow && t.Engine.FastPath}
}

func (e *Engine) count(v Verdict) Verdict {
	if v.Hold {
		return v // counted when released
	}
	if v.Allow {
		e.stats.Allowed.Add(1)
	} else {
		e.stats.Dropped.Add(1)
	}
	return v
}

func timeout(p *Packet, s flowState) int64 {
	switch s {
	case stateDropped, stateAwait, stateAwaitMid, stateHeld, stateQUIC:
		// Until decided, an idle flow is forgotten soon, like a dropped
		// one; if it comes back it is inspected from its next data.
		return int64(droppedTimeout)
	}
	switch p.Proto {
	case rules.ProtoTCP:
		if p.TCPFlags&(TCPFlagFIN|TCPFlagRST) != 0 {
			return int64(tcpEndTimeout)
		}
		return int64(tcpTimeout)
	case rules.ProtoICMP, rules.ProtoICMPv6:
		return int64(icmpTimeout)
	}
	return int64(udpTimeout)
}

type noBridges struct{}

func (noBridges) IsBridge(uint32) bool { return false }

type discard struct{}

func (discard) Emit(Event) bool { return false }
