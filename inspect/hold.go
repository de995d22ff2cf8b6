package inspect

import (
	"github.com/nfqguard/nfqguard/inspect/l7"
	"github.com/nfqguard/nfqguard/rules"
)

// A held flow is one whose verdict waits for an L7 fact (TLS server name,
// HTTP host, DNS name): the packets of its initiator that carry data are
// kept in the kernel queue, their verdicts withheld, while the engine goes
// on judging other packets. This file holds the bounded store of such
// flows and the per-flow reassembly of the initiator's stream.

// heldPacket is a packet whose verdict waits for its flow's decision.
type heldPacket struct {
	id, mark uint32
}

// segment is a received range of the stream, relative to the stream's
// first byte.
type segment struct {
	off, n uint32
}

// hold is the inspection state of one held flow.
type hold struct {
	used     bool
	idx      int32 // position in the table
	key      flowKey
	hash     uint64
	deadline int64 // engine clock: decided by [inspect] undecided then

	// The flow as its initiator sees it, for judging it once the fact is
	// known and for cutting it.
	tuple
	need rules.L7 // the facts the flow's candidate rules need

	base uint32 // sequence number of the stream's first byte
	ack  uint32 // latest acknowledgement number sent by the client

	buf   []byte       // reassembly buffer, max_bytes long
	have  int          // bytes of buf contiguous from the stream's start
	segs  []segment    // ranges received, at most max_packets
	pkts  []heldPacket // packets whose verdicts are withheld, arrival order
	bytes int          // payload bytes of the held packets
	seen  uint32       // packets of the flow in both directions so far

	// QUIC (stateQUIC): the CRYPTO stream, reassembled into buf, and the
	// version of the Initial packets it came in (0 until one opened).
	quic    l7.QUICCryptoStream
	version uint32
}

// holdTable is a fixed pool of holds, allocated once: max_held_flows holds
// of max_bytes each. It never allocates afterwards.
type holdTable struct {
	holds      []hold
	unused     []int32 // stack of unused indexes
	maxPackets int
	maxBytes   int
	used       int
}

func newHoldTable(flows, maxPackets, maxBytes int) *holdTable {
	t := &holdTable{
		holds:      make([]hold, flows),
		unused:     make([]int32, flows),
		maxPackets: maxPackets,
		maxBytes:   maxBytes,
	}
	// One slab per kind keeps the pool to a handful of allocations. The
	// byte slab is only virtual memory until holds touch it.
	buf := make([]byte, flows*maxBytes)
	segs := make([]segment, flows*maxPackets)
	pkts := make([]heldPacket, flows*maxPackets)
	for i := range t.holds {
		h := &t.holds[i]
		h.buf = buf[i*maxBytes : (i+1)*maxBytes : (i+1)*maxBytes]
		h.segs = segs[i*maxPackets : i*maxPackets : (i+1)*maxPackets]
		h.pkts = pkts[i*maxPackets : i*maxPackets : (i+1)*maxPackets]
		t.unused[i] = int32(flows - 1 - i)
	}
	return t
}

// get returns hold i if it is in use for key k.
func (t *holdTable) get(i uint32, k *flowKey) *hold {
	if int(i) >= len(t.holds) {
		return nil
	}
	h := &t.holds[i]
	if !h.used || h.key != *k {
		return nil
	}
	return h
}

// alloc takes a free hold, or returns -1 when all are in use.
func (t *holdTable) alloc() (int32, *hold) {
	n := len(t.unused)
	if n == 0 {
		return -1, nil
	}
	i := t.unused[n-1]
	t.unused = t.unused[:n-1]
	h := &t.holds[i]
	*h = hold{used: true, idx: i, buf: h.buf, segs: h.segs[:0], pkts: h.pkts[:0]}
	t.used++
	return i, h
}

// free returns h to the pool.
func (t *holdTable) free(h *hold) {
	if !h.used {
		return
	}
	h.used = false
	t.used--
	t.unused = append(t.unused, h.idx)
}

// addResult is what adding a segment did.
type addResult uint8

const (
	addNew       addResult = iota // held; the stream may have grown
	addDuplicate                  // every byte was already received: not held
	addFull                       // the packet budget is spent: not held
)

// add records a segment starting at sequence number seq. The packet is
// held (its id and mark are kept) unless it only repeats bytes already
// received. Bytes of the contiguous prefix are never overwritten: the first
// copy of a byte is what is parsed, as it is what the server will receive
// first when the held packets are released in order.
func (h *hold) add(seq uint32, payload []byte, id, mark uint32) addResult {
	rel := int64(int32(seq - h.base))
	end := rel + int64(len(payload))
	if end <= 0 || h.covered(rel, end) {
		return addDuplicate
	}
	if len(h.pkts) == cap(h.pkts) {
		return addFull
	}
	h.pkts = append(h.pkts, heldPacket{id: id, mark: mark})
	h.bytes += len(payload)
	if rel < 0 { // starts before the stream: keep only the new part
		payload, rel = payload[-rel:], 0
	}
	// Copy only what fits and is not part of the fixed prefix.
	from := max(rel, int64(h.have))
	if from < int64(len(h.buf)) && from < end {
		copy(h.buf[from:min(end, int64(len(h.buf)))], payload[from-rel:])
	}
	if rel < int64(len(h.buf)) && len(h.segs) < cap(h.segs) {
		h.segs = append(h.segs, segment{off: uint32(rel), n: uint32(min(end, int64(len(h.buf))) - rel)})
		h.grow()
	}
	return addNew
}

// addMarker holds a packet that carries no stream bytes (a bare FIN).
func (h *hold) addMarker(id, mark uint32) bool {
	if len(h.pkts) == cap(h.pkts) {
		return false
	}
	h.pkts = append(h.pkts, heldPacket{id: id, mark: mark})
	return true
}

// covered reports whether [from, to) lies inside the received prefix or one
// received segment.
func (h *hold) covered(from, to int64) bool {
	if to <= int64(h.have) {
		return true
	}
	for _, s := range h.segs {
		if from >= int64(s.off) && to <= int64(s.off)+int64(s.n) {
			return true
		}
	}
	return false
}

// grow extends the contiguous prefix over the segments that now touch it.
func (h *hold) grow() {
	for changed := true; changed; {
		changed = false
		for _, s := range h.segs {
			if int(s.off) <= h.have && int(s.off+s.n) > h.have {
				h.have = int(s.off + s.n)
				changed = true
			}
		}
	}
}

// stream returns the contiguous prefix of the initiator's stream.
func (h *hold) stream() []byte { return h.buf[:h.have] }
