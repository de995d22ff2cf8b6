package inspect

import (
	"bytes"
	"testing"
)

func newTestHold(t *testing.T, maxPackets, maxBytes int) (*holdTable, *hold) {
	t.Helper()
	ht := newHoldTable(2, maxPackets, maxBytes)
	_, h := ht.alloc()
	if h == nil {
		t.Fatal("alloc failed on an empty table")
	}
	h.base = 1000
	return ht, h
}

func TestHoldReassemblesInOrder(t *testing.T) {
	_, h := newTestHold(t, 8, 64)
	if r := h.add(1000, []byte("hello "), 1, 0); r != addNew {
		t.Fatalf("add = %v", r)
	}
	if r := h.add(1006, []byte("world"), 2, 0); r != addNew {
		t.Fatalf("add = %v", r)
	}
	if got := string(h.stream()); got != "hello world" {
		t.Fatalf("stream = %q", got)
	}
	if len(h.pkts) != 2 || h.pkts[0].id != 1 || h.pkts[1].id != 2 {
		t.Fatalf("held packets = %+v", h.pkts)
	}
}

func TestHoldOutOfOrder(t *testing.T) {
	_, h := newTestHold(t, 8, 64)
	h.add(1006, []byte("world"), 2, 0)
	if got := h.stream(); len(got) != 0 {
		t.Fatalf("stream before the first segment = %q", got)
	}
	h.add(1011, []byte("!"), 3, 0)
	h.add(1000, []byte("hello "), 1, 0)
	if got := string(h.stream()); got != "hello world!" {
		t.Fatalf("stream = %q", got)
	}
	// Released in arrival order.
	var ids []uint32
	for _, p := range h.pkts {
		ids = append(ids, p.id)
	}
	if !bytes.Equal([]byte{byte(ids[0]), byte(ids[1]), byte(ids[2])}, []byte{2, 3, 1}) {
		t.Fatalf("held ids = %v, want arrival order 2 3 1", ids)
	}
}

func TestHoldRetransmissionIsDuplicate(t *testing.T) {
	_, h := newTestHold(t, 8, 64)
	h.add(1000, []byte("hello "), 1, 0)
	if r := h.add(1000, []byte("hello "), 2, 0); r != addDuplicate {
		t.Fatalf("exact retransmission: %v, want duplicate", r)
	}
	if r := h.add(1002, []byte("ll"), 3, 0); r != addDuplicate {
		t.Fatalf("retransmission inside: %v, want duplicate", r)
	}
	h.add(1010, []byte("xyz"), 4, 0) // out of order
	if r := h.add(1010, []byte("xyz"), 5, 0); r != addDuplicate {
		t.Fatalf("retransmission of an out-of-order segment: %v, want duplicate", r)
	}
	if r := h.add(990, []byte("0123456789"), 6, 0); r != addDuplicate {
		t.Fatalf("bytes before the stream: %v, want duplicate", r)
	}
	if len(h.pkts) != 2 {
		t.Fatalf("held %d packets, want 2", len(h.pkts))
	}
}

// An overlapping segment with other bytes must not change what was parsed:
// the server gets the first copy first, so the first copy is the truth.
func TestHoldFirstCopyWins(t *testing.T) {
	_, h := newTestHold(t, 8, 64)
	h.add(1000, []byte("GET /good"), 1, 0)
	if r := h.add(1004, []byte("/evil HTTP"), 2, 0); r != addNew {
		t.Fatalf("overlap extending the stream: %v", r)
	}
	if got := string(h.stream()); got != "GET /good HTTP" {
		t.Fatalf("stream = %q, want the first copy kept", got)
	}
}

func TestHoldStartsBeforeBase(t *testing.T) {
	_, h := newTestHold(t, 8, 64)
	// Starts 2 bytes before the stream (e.g. a wrong guess of the base).
	if r := h.add(998, []byte("xxabc"), 1, 0); r != addNew {
		t.Fatalf("add = %v", r)
	}
	if got := string(h.stream()); got != "abc" {
		t.Fatalf("stream = %q", got)
	}
}

func TestHoldSequenceWrap(t *testing.T) {
	_, h := newTestHold(t, 8, 64)
	h.base = 0xfffffffe
	h.add(0xfffffffe, []byte("ab"), 1, 0)
	h.add(0, []byte("cd"), 2, 0)
	if got := string(h.stream()); got != "abcd" {
		t.Fatalf("stream across the wrap = %q", got)
	}
}

func TestHoldBudget(t *testing.T) {
	_, h := newTestHold(t, 2, 8)
	h.add(1000, []byte("0123"), 1, 0)
	h.add(1004, []byte("456789ab"), 2, 0) // beyond max_bytes: clipped
	if got := string(h.stream()); got != "01234567" {
		t.Fatalf("stream = %q, want clipped to 8 bytes", got)
	}
	if r := h.add(1012, []byte("c"), 3, 0); r != addFull {
		t.Fatalf("third packet with max_packets 2: %v, want full", r)
	}
	if h.addMarker(4, 0) {
		t.Fatal("addMarker past the budget succeeded")
	}
}

func TestHoldTableReuse(t *testing.T) {
	ht := newHoldTable(2, 4, 16)
	_, a := ht.alloc()
	_, b := ht.alloc()
	if _, c := ht.alloc(); c != nil {
		t.Fatal("third alloc from a table of 2 succeeded")
	}
	a.add(a.base, []byte("data"), 1, 0)
	ht.free(a)
	ht.free(a) // twice is harmless
	if ht.used != 1 {
		t.Fatalf("used = %d, want 1", ht.used)
	}
	_, c := ht.alloc()
	if c == nil || c == b {
		t.Fatal("alloc after release failed")
	}
	if c.have != 0 || len(c.pkts) != 0 || len(c.segs) != 0 {
		t.Fatalf("reused hold not reset: have %d, pkts %d, segs %d", c.have, len(c.pkts), len(c.segs))
	}
	k := flowKey{aPort: 1}
	c.key = k
	if ht.get(uint32(c.idx), &k) != c {
		t.Fatal("get by index and key failed")
	}
	other := flowKey{aPort: 2}
	if ht.get(uint32(c.idx), &other) != nil || ht.get(99, &k) != nil {
		t.Fatal("get returned a hold for the wrong key or index")
	}
}

func TestHoldAddDoesNotAllocate(t *testing.T) {
	ht := newHoldTable(1, 8, 64)
	seg := []byte("0123456789")
	allocs := testing.AllocsPerRun(100, func() {
		_, h := ht.alloc()
		h.base = 1
		for i := range 6 {
			h.add(1+uint32(i*10), seg, uint32(i), 0)
		}
		ht.free(h)
	})
	if allocs != 0 {
		t.Fatalf("alloc/add/release allocates %v times", allocs)
	}
}
