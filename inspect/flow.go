package inspect

import (
	"encoding/binary"
	"math/bits"
	"net/netip"
	"sync/atomic"
	"unsafe"
)

// flowKey identifies a flow independent of direction: endpoint a is the one
// that sorts lower, so both directions of a flow produce the same key.
type flowKey struct {
	a, b         [16]byte
	aPort, bPort uint16
	proto        uint8
}

func makeKey(src netip.Addr, sport uint16, dst netip.Addr, dport uint16, proto uint8) (k flowKey, srcIsA bool) {
	s, d := src.As16(), dst.As16()
	k.proto = proto
	if less(s, sport, d, dport) {
		k.a, k.aPort, k.b, k.bPort = s, sport, d, dport
		return k, true
	}
	k.a, k.aPort, k.b, k.bPort = d, dport, s, sport
	return k, false
}

func less(a [16]byte, ap uint16, b [16]byte, bp uint16) bool {
	for i := range a {
		if a[i] != b[i] {
			return a[i] < b[i]
		}
	}
	return ap < bp
}

// hash mixes the key with a per-table seed so that remote peers cannot aim
// many flows at one bucket without knowing the seed.
func (k *flowKey) hash(seed uint64) uint64 {
	h := seed
	h = mix(h, binary.LittleEndian.Uint64(k.a[0:8]))
	h = mix(h, binary.LittleEndian.Uint64(k.a[8:16]))
	h = mix(h, binary.LittleEndian.Uint64(k.b[0:8]))
	h = mix(h, binary.LittleEndian.Uint64(k.b[8:16]))
	h = mix(h, uint64(k.aPort)<<24|uint64(k.bPort)<<8|uint64(k.proto))
	return h
}

// mix is one round of a multiply-xorshift hash (as in wyhash/rapidhash).
func mix(h, v uint64) uint64 {
	hi, lo := bits.Mul64(h^v, 0x9E3779B97F4A7C15)
	return hi ^ lo
}

// flowState is what the engine remembers about a flow.
type flowState uint8

const (
	stateFree flowState = iota
	stateAllowed
	stateDropped
	// Deep inspection (see deep.go). In these states packets does not
	// count packets: for stateAwait it is the sequence number of the
	// initiator's first stream byte (ISN+1), for stateHeld and stateQUIC
	// the index of the flow's hold.
	stateAwait    // TCP, waiting for the initiator's first data
	stateAwaitMid // the same, first seen after its SYN: the stream starts at the first data seen
	stateHeld     // TCP, packets held while the fact is sought
	stateQuery    // UDP, each datagram of the initiator decided as a DNS query
	stateQUIC     // UDP, the initiator's datagrams held while its QUIC ClientHello is read
)

// flow is one slot of the flow table: 64 bytes, one cache line.
type flow struct {
	key      flowKey
	state    flowState
	aIsInit  bool   // endpoint a sent the flow's first packet
	learn    bool   // a container's DNS flow whose answers are learned: never bypassed
	tag      uint32 // bits of the key's hash, compared before the key
	packets  uint32
	lastSeen int64 // nanoseconds, engine clock
	expires  int64 // nanoseconds, engine clock
}

// ends returns the flow's initiator and responder, for its log and the
// status view (off the packet path).
func (f *flow) ends() (initiator, responder netip.AddrPort) {
	a := netip.AddrPortFrom(netip.AddrFrom16(f.key.a).Unmap(), f.key.aPort)
	b := netip.AddrPortFrom(netip.AddrFrom16(f.key.b).Unmap(), f.key.bPort)
	if !f.aIsInit {
		return b, a
	}
	return a, b
}

// ways is the associativity of a bucket: a key lives in one of the ways
// slots of one of its two buckets, so a lookup touches at most four cache
// lines.
const ways = 8

// flowTable is a fixed-size table of flows. It never allocates after
// construction and never needs a sweep: an expired slot is free. Each key
// has two candidate buckets (two-choice hashing), which lets the table fill
// to nearly its size before a new flow has to evict the least recently seen
// of the 16 slots it may use. It is owned by one goroutine.
type flowTable struct {
	slots []flow
	info  []flowInfo // parallel to slots
	mask  uint64     // number of buckets - 1
	seed  uint64
	live  atomic.Int64 // slots in use, expired ones not yet freed included
	next  int          // where the sweep goes on
	// endFlow is told of a flow before its slot is freed or reused.
	endFlow func(*flow, *flowInfo)
}

func newFlowTable(size int, seed uint64, endFlow func(*flow, *flowInfo)) *flowTable {
	buckets := 1
	for buckets*ways < size {
		buckets <<= 1
	}
	n := buckets * ways
	return &flowTable{slots: make([]flow, n), info: make([]flowInfo, n), mask: uint64(buckets - 1), seed: seed, endFlow: endFlow}
}

// infoOf returns the info of slot f.
func (t *flowTable) infoOf(f *flow) *flowInfo {
	i := (uintptr(unsafe.Pointer(f)) - uintptr(unsafe.Pointer(&t.slots[0]))) / unsafe.Sizeof(flow{})
	return &t.info[i]
}

// free forgets the flow in slot f.
func (t *flowTable) free(f *flow) {
	t.endFlow(f, t.infoOf(f))
	f.state = stateFree
	t.live.Add(-1)
}

// sweep frees the expired slots among the next n.
func (t *flowTable) sweep(n int, now int64) {
	for range min(n, len(t.slots)) {
		f := &t.slots[t.next]
		if t.next++; t.next == len(t.slots) {
			t.next = 0
		}
		if f.state != stateFree && f.expires <= now {
			t.free(f)
		}
	}
}

// hashOf hashes k for lookup and insert; compute it once per packet.
func (t *flowTable) hashOf(k *flowKey) uint64 { return k.hash(t.seed) }

// buckets returns the two candidate buckets of hash h (the same one twice
// in a one-bucket table).
func (t *flowTable) buckets(h uint64) (b1, b2 []flow) {
	i := h & t.mask
	j := (h >> 32) & t.mask
	if j == i {
		j = i ^ 1&t.mask
	}
	i, j = i*ways, j*ways
	return t.slots[i : i+ways : i+ways], t.slots[j : j+ways : j+ways]
}

func tagOf(h uint64) uint32 { return uint32(h >> 16) }

// lookup returns the live flow for k (whose hash is h), or nil.
func (t *flowTable) lookup(k *flowKey, h uint64, now int64) *flow {
	b1, b2 := t.buckets(h)
	tag := tagOf(h)
	if f := t.find(b1, k, tag, now); f != nil {
		return f
	}
	return t.find(b2, k, tag, now)
}

func (t *flowTable) find(b []flow, k *flowKey, tag uint32, now int64) *flow {
	for i := range b {
		f := &b[i]
		// The tag filters out nearly every other key before the 37-byte
		// comparison.
		if f.tag == tag && f.state != stateFree && f.key == *k {
			if f.expires <= now {
				t.free(f)
				return nil
			}
			return f
		}
	}
	return nil
}

// insert claims a slot for k (whose hash is h), which must not be live in
// the table: a free or expired slot in the emptier of its buckets if there
// is one, else the least recently seen flow of both, in which case evicted
// is true.
func (t *flowTable) insert(k *flowKey, h uint64, now int64) (f *flow, evicted bool) {
	b1, b2 := t.buckets(h)
	free1, n1, old1 := scan(b1, now)
	free2, n2, old2 := scan(b2, now)
	switch {
	case free1 != nil && (free2 == nil || n1 >= n2):
		f = free1
	case free2 != nil:
		f = free2
	case old1.lastSeen <= old2.lastSeen:
		f, evicted = old1, true
	default:
		f, evicted = old2, true
	}
	fi := t.infoOf(f)
	if f.state != stateFree {
		t.endFlow(f, fi) // expired or evicted: reused, still counted live
	} else {
		t.live.Add(1)
	}
	*f = flow{key: *k, tag: tagOf(h), lastSeen: now}
	*fi = flowInfo{start: now}
	return f, evicted
}

// scan returns a free (or expired) slot of b, how many b has, and b's least
// recently seen flow.
func scan(b []flow, now int64) (free *flow, nfree int, oldest *flow) {
	oldest = &b[0]
	for i := range b {
		f := &b[i]
		if f.state == stateFree || f.expires <= now {
			if free == nil {
				free = f
			}
			nfree++
			continue
		}
		if f.lastSeen < oldest.lastSeen {
			oldest = f
		}
	}
	return free, nfree, oldest
}
