package inspect

import (
	"encoding/binary"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nfqguard/nfqguard/rules"
)

// FuzzJudge feeds sequences of packets through Engine.Judge with a table
// that has L7 rules (so flows are held and reassembled), between clock
// steps and Ticks, and checks the engine's invariants: a verdict is allow
// (maybe bypassed), drop or hold; every held packet is released exactly
// once, at the latest by ReleaseAll; the counters agree with each other
// and with the verdicts given.
//
// The input is a sequence of records: a control byte, a 2-byte big-endian
// length, then that many packet bytes (fewer if the input ends). Control
// bit 0 picks the direction (to or from the container), bits 1-2 how far
// the clock moves before the packet (0, 10 ms, 600 ms, 2 s: beyond
// max_wait), bit 3 a Tick after it. The first byte of the input picks the
// [engine] malformed setting (even: drop, odd: allow).
func FuzzJudge(f *testing.F) {
	f.Add(encodeJudge(0, judgeRecord{0, hostileCases()[0].data}))
	tables := [2]*atomic.Pointer[rules.Table]{}
	for i, setting := range []string{"drop", "allow"} {
		cfg := strings.Replace(deepConfig, "workers = 1", "workers = 1\nmalformed = \""+setting+"\"", 1)
		tbl, err := rules.Parse("fuzz.toml", []byte(cfg))
		if err != nil {
			f.Fatalf("Parse: %v", err)
		}
		tables[i] = &atomic.Pointer[rules.Table]{}
		tables[i].Store(tbl)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		if len(in) == 0 {
			return
		}
		allowMalformed := in[0]&1 == 1
		e := New(Options{Tables: tables[in[0]&1], Bridges: fakeBridges{ifBridge: true}, Sink: &recorder{}, Resetter: &fakeResetter{}}, 1024)
		now := time.Unix(1_700_000_000, 0)
		held := map[uint32]bool{}
		release := func(when string) {
			for _, r := range e.Released() {
				if !held[r.ID] {
					t.Fatalf("%s: released packet %d, which is not held", when, r.ID)
				}
				if r.Verdict.Hold || (r.Verdict.Bypass && !r.Verdict.Allow) {
					t.Fatalf("%s: packet %d released with verdict %+v", when, r.ID, r.Verdict)
				}
				delete(held, r.ID)
			}
		}
		steps := [4]time.Duration{0, 10 * time.Millisecond, 600 * time.Millisecond, 2 * time.Second}
		b := in[1:]
		var id uint32
		for len(b) >= 3 && id < 64 {
			ctl, n := b[0], int(binary.BigEndian.Uint16(b[1:3]))
			b = b[3:]
			data := b[:min(n, len(b))]
			b = b[len(data):]
			id++
			m := toContainer
			if ctl&1 != 0 {
				m = fromContainer
			}
			m.ID, m.Mark = id, 0x100
			now = now.Add(steps[ctl>>1&3])
			before := e.Counts()
			v := e.Judge(data, m, now)
			after := e.Counts()
			switch {
			case v.Hold && (v.Allow || v.Bypass), v.Bypass && !v.Allow:
				t.Fatalf("packet %d: verdict %+v", id, v)
			case v.Hold:
				held[id] = true
			}
			if after.Malformed != before.Malformed {
				if v != (Verdict{Allow: allowMalformed}) {
					t.Fatalf("packet %d, malformed: verdict %+v, want allow = %v", id, v, allowMalformed)
				}
			}
			release("Judge")
			if ctl&8 != 0 {
				e.Tick(now)
				release("Tick")
			}
			checkCounts(t, e.Counts(), len(held))
		}
		e.ReleaseAll(now)
		release("ReleaseAll")
		if len(held) != 0 {
			t.Fatalf("%d packets still held after ReleaseAll", len(held))
		}
		c := e.Counts()
		checkCounts(t, c, 0)
		if c.HeldNow != 0 || e.Held() != 0 {
			t.Fatalf("after ReleaseAll: HeldNow %d, Held() %d", c.HeldNow, e.Held())
		}
		if c.Packets != uint64(id) {
			t.Fatalf("Packets = %d after %d packets", c.Packets, id)
		}
	})
}

// checkCounts checks the invariants between an engine's counters, with
// held packets given verdicts not yet given.
func checkCounts(t *testing.T, c Counts, held int) {
	t.Helper()
	var kinds uint64
	for _, n := range c.MalformedKinds {
		kinds += n
	}
	switch {
	case c.Malformed != kinds:
		t.Fatalf("Malformed %d, kinds sum to %d: %+v", c.Malformed, kinds, c.MalformedKinds)
	case c.Malformed != c.Truncated+c.Fragments+c.BadVersion:
		t.Fatalf("Malformed %d != Truncated %d + Fragments %d + BadVersion %d", c.Malformed, c.Truncated, c.Fragments, c.BadVersion)
	case c.Fragments != c.MalformedKinds[MalformedFragment] || c.BadVersion != c.MalformedKinds[MalformedBadVersion]:
		t.Fatalf("Fragments %d, BadVersion %d disagree with their kinds %+v", c.Fragments, c.BadVersion, c.MalformedKinds)
	case c.ICMPErrors != c.ICMPErrorsMatched+c.ICMPErrorsUnmatched+c.ICMPErrorsBadQuote:
		t.Fatalf("ICMPErrors %d != matched %d + unmatched %d + bad quote %d",
			c.ICMPErrors, c.ICMPErrorsMatched, c.ICMPErrorsUnmatched, c.ICMPErrorsBadQuote)
	case c.Packets != c.Allowed+c.Dropped+uint64(held):
		t.Fatalf("Packets %d != Allowed %d + Dropped %d + held %d", c.Packets, c.Allowed, c.Dropped, held)
	case c.HeldPacketsNow != uint64(held):
		t.Fatalf("HeldPacketsNow %d, %d packets held", c.HeldPacketsNow, held)
	}
}

// judgeRecord is one packet of a FuzzJudge input.
type judgeRecord struct {
	ctl  byte
	data []byte
}

// encodeJudge makes a FuzzJudge input.
func encodeJudge(setting byte, recs ...judgeRecord) []byte {
	out := []byte{setting}
	for _, r := range recs {
		out = append(out, r.ctl)
		out = binary.BigEndian.AppendUint16(out, uint16(len(r.data)))
		out = append(out, r.data...)
	}
	return out
}
