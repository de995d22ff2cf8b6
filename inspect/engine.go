package inspect

import (
	"math/rand/v2"
	"net/netip"
	"sync/atomic"
	"time"

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
	Reason    string    // why a packet was judged without rules (malformed, …)

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
	// speak, 0 if the flow was judged on its L4 key alone; the fields after
	// it hold the facts it was judged by. Reason says why an inspected flow
	// was judged by [inspect] undecided (RuleID "undecided").
	L7         rules.L7
	SNI        string // TLS server name as sent
	ECH        bool   // SNI is the outer name of an Encrypted Client Hello
	HTTPHost   string // HTTP Host (without port)
	HTTPPath   string // HTTP path (without query)
	HTTPMethod string
	QName      string // the DNS question name that matched, else the first
	QueryID    uint16 // DNS message id of a query judged on its own (UDP)
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
}

// Stats are an engine's counters. They are updated by the engine's goroutine
// and may be read from any other.
type Stats struct {
	Packets     atomic.Uint64
	Allowed     atomic.Uint64
	Dropped     atomic.Uint64
	Flows       atomic.Uint64 // flows judged by rules
	Blocked     atomic.Uint64 // flows judged drop
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
	Decided        atomic.Uint64 // flows and queries judged by their L7 fact
	Undecided      atomic.Uint64 // flows and queries judged by [inspect] undecided
	Queries        atomic.Uint64 // DNS datagrams judged one by one
	AllowedQueries atomic.Uint64
	BlockedQueries atomic.Uint64
	Resets         atomic.Uint64 // dropped flows cut with RSTs

	FastPath atomic.Uint64 // flows allowed onto the connmark fast path
	Rejudged atomic.Uint64 // flows whose verdict a reloaded table changed

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
	Rejudged                                     uint64 // flows whose verdict a reloaded table changed
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
	pkt     Packet
	stats   Stats
	deep    *deep
	rules   ruleCounters
	capt    Capture
	spare   flowInfo // for a flow or query that has no slot

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
	e.flows = newFlowTable(maxFlows, rand.Uint64(), e.ended)
	return e
}

// Stats returns the engine's counters.
func (e *Engine) Stats() *Stats { return &e.stats }

// Judge decides the fate of one packet. data starts with the IP header.
func (e *Engine) Judge(data []byte, m Meta, now time.Time) Verdict {
	e.stats.Packets.Add(1)
	t := e.tables.Load()
	p := &e.pkt
	if err := e.dec.Decode(data, p); err != nil {
		return e.count(e.malformed(t, err))
	}
	clock := int64(now.Sub(e.base))
	if p.IsICMPError() {
		return e.count(e.judgeICMPError(t, p, m, clock))
	}
	k, srcIsA := makeKey(p.Src, p.SrcPort, p.Dst, p.DstPort, p.Proto)
	h := e.flows.hashOf(&k)
	if f := e.flows.lookup(&k, h, clock); f != nil {
		f.lastSeen = clock
		fi := e.flows.infoOf(f)
		fi.bytes += uint64(len(data))
		switch f.state {
		case stateAllowed, stateDropped:
			if fi.gen != uint32(t.Generation) {
				e.rejudge(t, f, fi, p, len(data), m, srcIsA, now)
			}
			f.packets++
			e.seen(fi)
			f.expires = clock + timeout(p, f.state)
			if f.state == stateDropped {
				e.capture(t, fi, data, now)
			}
			return e.count(e.verdict(t, f.state == stateAllowed))
		case stateQuery:
			f.expires = clock + timeout(p, f.state)
			return e.count(e.judgeQuery(t, p, data, m, f.aIsInit == srcIsA, now))
		}
		f.expires = clock + timeout(p, f.state)
		return e.count(e.inspectTCP(t, f, &k, h, p, data, m, f.aIsInit == srcIsA, clock, now))
	}

	var d decision
	aIsInit := srcIsA
	if p.Proto == rules.ProtoTCP && p.TCPFlags&(TCPFlagSYN|TCPFlagACK) != TCPFlagSYN {
		// Not an opening SYN: a flow that started before we saw it (before
		// start-up, or evicted). Which end opened it is unknown, so it may
		// go on if either reading of it is allowed; a TCP peer cannot open
		// a new connection without a SYN, which is always judged.
		e.stats.Midstream.Add(1)
		d = e.decide(t, p.Src, p.Dst, p.DstPort, p.Proto, m.InDev, m.OutDev, nil)
		if d.m.Action == rules.Drop && d.need == 0 {
			if r := e.decide(t, p.Dst, p.Src, p.SrcPort, p.Proto, m.OutDev, m.InDev, nil); r.m.Action == rules.Allow || r.need != 0 {
				d, aIsInit = r, !srcIsA
			}
		}
	} else {
		d = e.decide(t, p.Src, p.Dst, p.DstPort, p.Proto, m.InDev, m.OutDev, nil)
	}

	f, evicted := e.flows.insert(&k, h, clock)
	if evicted {
		e.stats.Evictions.Add(1)
	}
	f.aIsInit = aIsInit
	fi := e.flows.infoOf(f)
	fi.bytes, fi.gen = uint64(len(data)), uint32(t.Generation)
	if d.need != 0 {
		return e.count(e.startInspection(t, f, &k, h, d, p, data, m, aIsInit == srcIsA, clock, now))
	}
	f.packets = 1
	f.state = stateAllowed
	if d.m.Action == rules.Drop {
		f.state = stateDropped
	}
	f.expires = clock + timeout(p, f.state)
	e.stats.Flows.Add(1)
	e.judged(fi, &d.m, d.dir, 1)
	if d.m.Action == rules.Drop {
		e.stats.Blocked.Add(1)
		e.capture(t, fi, data, now)
	} else if t.Engine.FastPath {
		e.stats.FastPath.Add(1)
	}
	if d.logged() {
		src := netip.AddrPortFrom(p.Src, p.SrcPort)
		dst := netip.AddrPortFrom(p.Dst, p.DstPort)
		if aIsInit != srcIsA {
			src, dst = dst, src
		}
		ev := Event{Time: now, Proto: p.Proto, Src: src, Dst: dst, Packets: 1}
		fi.logged = e.logDecision(t, &d, nil, "", ev) && d.m.Action == rules.Drop
	}
	return e.count(e.verdict(t, f.state == stateAllowed))
}

// rejudge judges flow f again by t, a table of another generation than the
// one that judged it (a reloaded file): a dropped flow always, since the
// new file may allow it; an allowed one when [engine] rejudge_on_reload is
// set. A flow whose verdict waits for L7 facts by the new table keeps its
// verdict: its facts are not kept. An allowed TCP flow that is now dropped
// is cut with RSTs, like one dropped by deep inspection.
func (e *Engine) rejudge(t *rules.Table, f *flow, fi *flowInfo, p *Packet, size int, m Meta, srcIsA bool, now time.Time) {
	fi.gen = uint32(t.Generation)
	if f.state == stateAllowed && !t.Engine.RejudgeOnReload {
		return
	}
	src, dst, sport, dport, in, out := p.Src, p.Dst, p.SrcPort, p.DstPort, m.InDev, m.OutDev
	fromInit := f.aIsInit == srcIsA
	if !fromInit {
		src, dst, sport, dport, in, out = dst, src, dport, sport, out, in
	}
	d := e.decide(t, src, dst, dport, p.Proto, in, out, nil)
	allow := d.m.Action != rules.Drop
	if d.need != 0 || allow == (f.state == stateAllowed) {
		return
	}
	e.stats.Rejudged.Add(1)
	e.ended(f, fi) // a dropped flow's blocked span ends here
	clock := int64(now.Sub(e.base))
	*fi = flowInfo{start: clock, bytes: uint64(size), gen: fi.gen}
	f.packets = 0
	e.judged(fi, &d.m, d.dir, 0)
	if allow {
		f.state = stateAllowed
		if t.Engine.FastPath {
			e.stats.FastPath.Add(1)
		}
	} else {
		f.state = stateDropped
		e.stats.Blocked.Add(1)
		if p.Proto == rules.ProtoTCP && p.TCPFlags&TCPFlagRST == 0 {
			clientSeq, serverSeq := p.Seq, p.Ack
			if !fromInit {
				clientSeq, serverSeq = p.Ack, p.Seq
			}
			e.reset(netip.AddrPortFrom(src, sport), netip.AddrPortFrom(dst, dport), clientSeq, serverSeq)
		}
	}
	if d.logged() {
		ev := Event{
			Time: now, Proto: p.Proto, Src: netip.AddrPortFrom(src, sport), Dst: netip.AddrPortFrom(dst, dport), Packets: 1,
			Reason: "rejudged after a reload",
		}
		fi.logged = e.logDecision(t, &d, nil, "", ev) && !allow
	}
}

// describe adds Docker's metadata of the event's container end. It runs
// only for flows that are logged, and does not allocate.
func describe(t *rules.Table, ev *Event) {
	c := ev.Dst
	if ev.Direction == rules.Egress {
		c = ev.Src
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

// decision is the combined judgement of a flow from both of its ends.
type decision struct {
	m       rules.Match
	dir     rules.Direction
	foreign bool     // neither end is a container
	need    rules.L7 // the verdict waits for these L7 facts (m is the fallback)
}

// logged reports whether the flow's verdict is logged: every drop, and
// allows by rules with log = true, of flows with a container at one end.
func (d *decision) logged() bool {
	return (d.m.Action == rules.Drop || d.m.Log) && !d.foreign
}

// decide judges a flow initiated by src towards dst on port dport. Each end
// that is a container judges it (egress for src, ingress for dst); drop wins.
// With facts nil, rules with L7 fields are not matched: if the verdict
// depends on them, need says which facts it waits for, unless one end
// already drops the flow for good.
func (e *Engine) decide(t *rules.Table, src, dst netip.Addr, dport uint16, proto uint8, in, out uint32, facts *rules.Facts) decision {
	if proto != rules.ProtoTCP && proto != rules.ProtoUDP {
		dport = 0
	}
	d := decision{foreign: true}
	if t.Listed(dst) || e.bridges.IsBridge(out) {
		d = decision{m: judge(t, dst, rules.Ingress, proto, dport, src, facts), dir: rules.Ingress}
		d.need = d.m.Need
	}
	if t.Listed(src) || e.bridges.IsBridge(in) {
		eg := judge(t, src, rules.Egress, proto, dport, dst, facts)
		finalDrop := func(m rules.Match) bool { return m.Action == rules.Drop && m.Need == 0 }
		switch {
		case d.foreign:
			d = decision{m: eg, dir: rules.Egress, need: eg.Need}
		case finalDrop(d.m):
		case finalDrop(eg):
			d = decision{m: eg, dir: rules.Egress}
		default:
			need := d.need | eg.Need
			if eg.Action == rules.Drop && d.m.Action != rules.Drop {
				d = decision{m: eg, dir: rules.Egress}
			}
			d.need = need
		}
	}
	if d.foreign {
		e.stats.NotConsumed.Add(1)
		d.m = rules.Match{Action: rules.Allow, RuleID: "none"}
	}
	return d
}

// judge is Table.Judge, or Table.JudgeFacts when facts are known.
func judge(t *rules.Table, c netip.Addr, dir rules.Direction, proto uint8, port uint16, peer netip.Addr, facts *rules.Facts) rules.Match {
	if facts != nil {
		return t.JudgeFacts(c, dir, proto, port, peer, facts)
	}
	return t.Judge(c, dir, proto, port, peer)
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
	case stateDropped, stateAwait, stateAwaitMid, stateHeld:
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
