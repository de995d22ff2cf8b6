package rules

import (
	"encoding/binary"
	"math/bits"
	"net/netip"
)

// addrIndex maps container addresses to the containers' hot data. It
// replaces a map[netip.Addr]int32 because it is built once and only read: an
// open-addressed table with a fixed hash and load factor ≤ 1/2 answers in
// one or two probes, and as the slot holds the container itself rather than
// an index, a lookup in a large table costs one cache miss instead of three.
// A map spent about half of Judge's time hashing and matching control bytes.
//
// Keys are the 16-byte form of the address (As16), in which an IPv4 address
// and its IPv4-mapped IPv6 form coincide, which is exactly the equivalence
// the table promises. Zones are ignored.
//
// Only the file's addresses are inserted, so probe lengths are fixed when the
// table is built; packet-supplied query addresses cannot lengthen them.
type addrIndex struct {
	slots []addrSlot // length is a power of two, or 0
}

type addrSlot struct {
	hi, lo uint64
	c      container // c.def[0] == 0 (not a valid Action) marks an empty slot
}

func newAddrIndex(n int) addrIndex {
	if n == 0 {
		return addrIndex{}
	}
	size := 1 << bits.Len(uint(2*n-1)) // ≥ 2n: at least half the slots stay empty
	return addrIndex{slots: make([]addrSlot, size)}
}

// addrWords returns the 16-byte form of ip as two big-endian words, so an
// IPv4 address and its IPv4-mapped form give the same key. IPv4 takes a
// detour through As4 because copying As16's array costs a store-forwarding
// stall that showed up as a fifth of Judge's time.
func addrWords(ip netip.Addr) (hi, lo uint64) {
	if ip.Is4() || ip.Is4In6() {
		b := ip.As4()
		return 0, 0xffff<<32 | uint64(binary.BigEndian.Uint32(b[:]))
	}
	b := ip.As16()
	return binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])
}

// hash mixes all 128 bits; the low bits pick the slot, and container
// addresses often differ only in their last byte.
func hash(hi, lo uint64) uint64 {
	h := lo*0x9e3779b97f4a7c15 ^ hi
	h ^= h >> 29
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 32
	return h
}

// insert adds ip; the caller guarantees the key is new and the table has
// room (validation rejects duplicate addresses).
func (x addrIndex) insert(ip netip.Addr, c container) {
	hi, lo := addrWords(ip)
	mask := uint64(len(x.slots) - 1)
	i := hash(hi, lo) & mask
	for x.slots[i].c.def[0] != 0 {
		i = (i + 1) & mask
	}
	x.slots[i] = addrSlot{hi: hi, lo: lo, c: c}
}

// get returns the container owning ip, or nil. It terminates because at
// least half the slots are empty.
func (x addrIndex) get(ip netip.Addr) *container {
	if len(x.slots) == 0 {
		return nil
	}
	hi, lo := addrWords(ip)
	mask := uint64(len(x.slots) - 1)
	for i := hash(hi, lo) & mask; ; i = (i + 1) & mask {
		s := &x.slots[i]
		if s.c.def[0] == 0 {
			return nil
		}
		if s.hi == hi && s.lo == lo {
			return &s.c
		}
	}
}
