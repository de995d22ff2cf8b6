package inspect

import (
	"net/netip"
	"time"

	"github.com/nfqguard/nfqguard/rules"
)

// work is what the engine knows of the packet it is judging, carried by
// pointer from Judge through its helpers instead of in long parameter
// lists (wireguard-go's QueueInboundElement). Each Engine owns one and
// reuses it for every packet, so carrying it allocates nothing. Tick and
// ReleaseAll, which judge no packet, use only its table and time.
type work struct {
	// Set for every call.
	t     *rules.Table // the table in force
	now   time.Time
	clock int64 // now on the engine clock

	// Set by Judge.
	p      Packet // the decoded packet
	data   []byte // its bytes, from the IP header; nil between calls
	m      Meta
	key    flowKey
	hash   uint64 // of key
	srcIsA bool   // the packet's source is endpoint a of key

	// The flow's slot and its info, set once the packet has one (never for
	// malformed packets and ICMP errors); stale until then.
	f  *flow
	fi *flowInfo
}

// begin readies the engine's work for a call at now that judges no packet
// (Tick, ReleaseAll): the table in force and the time. Judge does the same
// by hand.
func (e *Engine) begin(now time.Time) *work {
	w := &e.w
	w.t, w.now, w.clock = e.tables.Load(), now, int64(now.Sub(e.base))
	return w
}

// fromInit reports whether the packet was sent by its flow's initiator.
func (w *work) fromInit() bool { return w.f.aIsInit == w.srcIsA }

// payload is the packet's L4 payload.
func (w *work) payload() []byte { return w.data[w.p.PayloadOff : w.p.PayloadOff+w.p.PayloadLen] }

// sent is the packet's flow as the packet goes: from its source to its
// destination.
func (w *work) sent() tuple {
	p := &w.p
	return tuple{
		client: netip.AddrPortFrom(p.Src, p.SrcPort), server: netip.AddrPortFrom(p.Dst, p.DstPort),
		proto: p.Proto, in: w.m.InDev, out: w.m.OutDev,
	}
}

// initiated is the packet's flow as its initiator sees it.
func (w *work) initiated() tuple {
	tu := w.sent()
	if !w.fromInit() {
		tu = tu.reversed()
	}
	return tu
}

// tuple is a flow as its initiator (the client) sees it: what the rules
// judge it by, what its events name and what a reset cuts.
type tuple struct {
	client, server netip.AddrPort
	proto          uint8
	in, out        uint32 // interfaces of the client's packets
}

// reversed is the flow read the other way: the server as its initiator.
func (tu tuple) reversed() tuple {
	return tuple{client: tu.server, server: tu.client, proto: tu.proto, in: tu.out, out: tu.in}
}

// event is the Event that names the flow, at now, with packets seen.
func (tu *tuple) event(now time.Time, packets uint32) Event {
	return Event{Time: now, Proto: tu.proto, Src: tu.client, Dst: tu.server, Packets: packets}
}
