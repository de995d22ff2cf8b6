package inspect

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/nfqguard/nfqguard/rules"
)

// Accounting: what the engine counts and remembers about each flow for
// the metrics, the status view and the blocked-flow log's summaries, and
// the periodic sweep that finds flows which ended.

// flowInfo is what the engine keeps about a flow besides its slot (which
// stays one cache line for the lookup): one per slot, in a parallel array.
type flowInfo struct {
	start    int64  // engine clock of the flow's first packet
	bytes    uint64 // IP bytes of its packets seen
	rule     uint32 // index+1 into the engine's rule counters; 0 until decided
	gen      uint32 // low bits of the generation of the table that decided it
	logged   bool   // its blocked verdict was logged: its end is wanted
	captured uint8  // packets given to the capture
}

// Sweep: the flow table frees expired slots lazily; the sweep walks it a
// little at a time so that the end of a blocked flow is logged within
// about a second of its expiry even when no packet touches its slot.
const (
	sweepEvery = 10 * time.Millisecond
	sweepSlots = 1024 // per sweep: a 65,536-slot table every 0.64 s
)

// RuleCount is what one rule decided in one engine: flows (and DNS queries)
// and their packets that reached the queue.
type RuleCount struct {
	Container string // [[container]] entry; "" for RuleID "none"
	RuleID    string // a rule id, "default", "undecided" or "none"
	Direction rules.Direction
	Action    rules.Action
	Flows     uint64
	Packets   uint64
}

type ruleKey struct {
	container, rule string
	dir             rules.Direction
	action          rules.Action
}

// ruleRef identifies a rule's counters by the addresses of its strings,
// which the compiled table and its resolved copies share: hashing two
// pointers is cheaper than hashing two strings, on every new flow. Two
// different strings with the same contents (a reloaded file) get their own
// entry in index, and share the counters through the key.
type ruleRef struct {
	container, rule *byte
	nc, nr          int32
	dir             rules.Direction
	action          rules.Action
}

func refOf(k *ruleKey) ruleRef {
	return ruleRef{
		container: unsafe.StringData(k.container), rule: unsafe.StringData(k.rule),
		nc: int32(len(k.container)), nr: int32(len(k.rule)), dir: k.dir, action: k.action,
	}
}

// indexSlack bounds ruleCounters.index to this many entries per rule: room
// for the tables of a few reloads at once (flows decided by the old table
// and the new one meet in the same worker for a moment).
const indexSlack = 4

type ruleCounter struct {
	key            ruleKey
	flows, packets atomic.Uint64
}

// ruleCounters counts flows and packets per rule. The engine's goroutine
// is the only writer; RuleCounts may read from any goroutine.
type ruleCounters struct {
	index   map[ruleRef]uint32 // → index+1; the engine's goroutine only
	byKey   map[ruleKey]uint32 // → index+1, for a ruleRef not seen yet
	last    ruleRef            // cache of the last lookup: new flows come in runs
	lastIdx uint32

	mu   sync.Mutex
	list []*ruleCounter // appended under mu
}

// of returns the index+1 of the counters of k, creating them the first
// time (the only allocation, once per rule).
func (r *ruleCounters) of(k ruleKey) uint32 {
	ref := refOf(&k)
	if r.lastIdx != 0 && ref == r.last {
		return r.lastIdx
	}
	i, ok := r.index[ref]
	if !ok {
		if i, ok = r.byKey[k]; !ok {
			r.mu.Lock()
			r.list = append(r.list, &ruleCounter{key: k})
			i = uint32(len(r.list))
			r.mu.Unlock()
			r.byKey[k] = i
		}
		// Every reload brings new strings, hence new entries, and the
		// entries' pointers keep the old tables' strings alive: a daemon
		// reloaded every hour would grow for ever. Once the index holds
		// indexSlack entries per rule, it starts again empty; the rules in
		// use find their counters through byKey again. clear keeps the
		// map's memory, so refilling it does not allocate.
		if len(r.index) >= indexSlack*len(r.byKey) {
			clear(r.index)
		}
		r.index[ref] = i
	}
	r.last, r.lastIdx = ref, i
	return i
}

// at returns counters i (an index+1 from of); the engine's goroutine only.
func (r *ruleCounters) at(i uint32) *ruleCounter { return r.list[i-1] }

// count adds a flow (or query) decided by match m with its packets, and returns the
// index+1 of its counters.
func (r *ruleCounters) count(m *rules.Match, dir rules.Direction, packets uint32) uint32 {
	i := r.of(ruleKey{container: m.Container, rule: m.RuleID, dir: dir, action: m.Action})
	c := r.at(i)
	c.flows.Add(1)
	c.packets.Add(uint64(packets))
	return i
}

// RuleCounts appends the engine's per-rule counts to dst. It is safe to
// call from any goroutine.
func (e *Engine) RuleCounts(dst []RuleCount) []RuleCount {
	r := &e.rules
	r.mu.Lock()
	list := r.list
	r.mu.Unlock()
	for _, c := range list {
		dst = append(dst, RuleCount{
			Container: c.key.container, RuleID: c.key.rule, Direction: c.key.dir, Action: c.key.action,
			Flows: c.flows.Load(), Packets: c.packets.Load(),
		})
	}
	return dst
}

// Counts returns the engine's counters and gauges. It is safe to call
// from any goroutine.
func (e *Engine) Counts() Counts {
	s := &e.stats
	c := Counts{
		Packets: s.Packets.Load(), Allowed: s.Allowed.Load(), Dropped: s.Dropped.Load(),
		Flows: s.Flows.Load(), Blocked: s.Blocked.Load(), Midstream: s.Midstream.Load(), ICMPErrors: s.ICMPErrors.Load(),
		Evictions:         s.Evictions.Load(),
		Malformed:         s.Malformed.Load(),
		ICMPErrorsMatched: s.ICMPErrorsMatched.Load(), ICMPErrorsUnmatched: s.ICMPErrorsUnmatched.Load(), ICMPErrorsBadQuote: s.ICMPErrorsBadQuote.Load(),
		NotConsumed: s.NotConsumed.Load(), FastPath: s.FastPath.Load(),
		Inspected: s.Inspected.Load(), HeldFlows: s.HeldFlows.Load(), HeldPackets: s.HeldPackets.Load(),
		HeldDuplicates: s.HeldDuplicates.Load(), HoldFull: s.HoldFull.Load(), Decided: s.Decided.Load(), Undecided: s.Undecided.Load(),
		Queries: s.Queries.Load(), AllowedQueries: s.AllowedQueries.Load(), BlockedQueries: s.BlockedQueries.Load(), Resets: s.Resets.Load(),
		Rejudged: s.Rejudged.Load(), DNSUntracked: s.DNSUntracked.Load(),
		FlowTableFlows: uint64(max(e.flows.live.Load(), 0)), FlowTableSize: uint64(len(e.flows.slots)),
		HeldNow: uint64(max(s.heldNow.Load(), 0)), HeldPacketsNow: uint64(max(s.heldPacketsNow.Load(), 0)),
	}
	for i := range s.QUIC {
		c.QUIC[i] = s.QUIC[i].Load()
	}
	for i := range s.DNSAnswers {
		c.DNSAnswers[i] = s.DNSAnswers[i].Load()
	}
	for i := range s.MalformedKinds {
		n := s.MalformedKinds[i].Load()
		c.MalformedKinds[i] = n
		switch MalformedKind(i) {
		case MalformedFragment:
			c.Fragments = n
		case MalformedBadVersion:
			c.BadVersion = n
		default:
			c.Truncated += n
		}
	}
	return c
}

// countRule records the rule that decided a flow in the flow's info, and
// counts the flow with packets on that rule.
func (e *Engine) countRule(fi *flowInfo, m *rules.Match, dir rules.Direction, packets uint32) {
	fi.rule = e.rules.count(m, dir, packets)
}

// countPacket counts one more packet of a decided flow on its rule.
func (e *Engine) countPacket(fi *flowInfo) {
	if fi.rule != 0 {
		e.rules.at(fi.rule).packets.Add(1)
	}
}

// capture gives the packet of w, of a blocked flow whose info is fi, to
// the capture, for the first [log] pcap_packets packets of the flow.
func (e *Engine) capture(w *work, fi *flowInfo) {
	if e.capt == nil || int(fi.captured) >= w.t.Log.PcapPackets {
		return
	}
	fi.captured++
	e.capt.Capture(w.data, w.now)
}

// endFlow is called for a slot whose flow is about to be forgotten (expired,
// evicted, or the engine stops): a blocked flow whose verdict was logged
// gets its summary, an EventEnd.
func (e *Engine) endFlow(f *flow, fi *flowInfo) {
	if f.state != stateDropped || !fi.logged || fi.rule == 0 {
		return
	}
	fi.logged = false
	c := e.rules.at(fi.rule)
	a, b := f.ends()
	ev := Event{
		Kind: EventEnd, Time: e.base.Add(time.Duration(f.lastSeen)), Start: e.base.Add(time.Duration(fi.start)),
		Action: rules.Drop, RuleID: c.key.rule, Container: c.key.container, Direction: c.key.dir,
		Proto: f.key.proto, Src: a, Dst: b, Packets: f.packets, Bytes: fi.bytes,
	}
	e.describe(e.tables.Load(), &ev)
	e.sink.Emit(ev)
}

// sweep frees a slice of the flow table's expired slots, so that ended
// flows are summarised soon after they expire.
func (e *Engine) sweep(clock int64) {
	if clock < e.nextSweep {
		return
	}
	e.nextSweep = clock + int64(sweepEvery)
	e.flows.sweep(sweepSlots, clock)
}

// EndAll summarises every blocked flow still in the table, for an engine
// that stops: their ends would otherwise never be logged.
func (e *Engine) EndAll() {
	for i := range e.flows.slots {
		if f := &e.flows.slots[i]; f.state != stateFree {
			e.endFlow(f, &e.flows.info[i])
		}
	}
}

// BlockedFlow is a blocked flow in an engine's table, for the status view.
type BlockedFlow struct {
	Src, Dst  netip.AddrPort // initiator → responder
	Proto     uint8
	Container string
	RuleID    string
	Direction rules.Direction
	Packets   uint32
	Bytes     uint64
	Start     time.Time
	Last      time.Time
}

// TopBlocked returns up to n live blocked flows with the most packets.
// It must be called on the engine's goroutine (the workers run it between
// batches on request); it walks the whole flow table.
func (e *Engine) TopBlocked(n int, now time.Time) []BlockedFlow {
	if n <= 0 {
		return nil
	}
	clock := int64(now.Sub(e.base))
	top := make([]*flow, 0, n)
	for i := range e.flows.slots {
		f := &e.flows.slots[i]
		if f.state != stateDropped || f.expires <= clock {
			continue
		}
		if len(top) == n && f.packets <= top[n-1].packets {
			continue
		}
		if len(top) < n {
			top = append(top, f)
		} else {
			top[n-1] = f
		}
		for j := len(top) - 1; j > 0 && top[j].packets > top[j-1].packets; j-- {
			top[j], top[j-1] = top[j-1], top[j]
		}
	}
	out := make([]BlockedFlow, len(top))
	for i, f := range top {
		fi := e.flows.infoOf(f)
		a, b := f.ends()
		out[i] = BlockedFlow{Src: a, Dst: b, Proto: f.key.proto, Packets: f.packets, Bytes: fi.bytes,
			Start: e.base.Add(time.Duration(fi.start)), Last: e.base.Add(time.Duration(f.lastSeen))}
		if fi.rule != 0 {
			c := e.rules.at(fi.rule)
			out[i].Container, out[i].RuleID, out[i].Direction = c.key.container, c.key.rule, c.key.dir
		}
	}
	return out
}
