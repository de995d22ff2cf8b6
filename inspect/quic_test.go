package inspect

import (
	"bytes"
	"fmt"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nfqguard/nfqguard/inspect/internal/quictest"
	"github.com/nfqguard/nfqguard/rules"
)

const quicConfig = `
[engine]
workers = 1

[inspect]
max_packets = 4
max_bytes = 4096
max_wait = "1s"
max_held_flows = 2

[defaults]
ingress = "allow"
egress = "allow"

[[container]]
name = "app"
ips = ["172.17.0.5", "fd00::5"]

  [[container.rule]]
  id = "no-pastebins"
  direction = "egress"
  proto = "any"
  ports = ["443"]
  tls_sni = ["pastebin.com", "*.paste.ee"]
  action = "drop"
  log = true

  [[container.rule]]
  id = "sni-or-dns"
  direction = "egress"
  proto = "udp"
  ports = ["853"]
  tls_sni = ["dns.example"]
  dns_qname = ["*.evil.example"]
  action = "drop"

  [[container.rule]]
  id = "quic-out"
  direction = "egress"
  proto = "udp"
  ports = ["443", "853"]
  action = "allow"
  log = true
`

// quicFlow is one QUIC connection from the container app.
type quicFlow struct {
	r *deepRig
	c pkt // client → server template
}

func (r *deepRig) quicDial(dst string, sport, dport uint16) *quicFlow {
	src := "172.17.0.5"
	if strings.Contains(dst, ":") {
		src = "fd00::5"
	}
	return &quicFlow{r: r, c: pkt{src: src, dst: dst, sport: sport, dport: dport, proto: "udp"}}
}

func (q *quicFlow) send(b []byte) judged {
	q.r.t.Helper()
	p := q.c
	p.payload = b
	return q.r.judge(p, fromContainer)
}

func (q *quicFlow) reply(b []byte) judged {
	q.r.t.Helper()
	p := q.c.reply(0)
	p.payload = b
	return q.r.judge(p, toContainer)
}

func quicHello(tb testing.TB, sni string) []byte {
	tb.Helper()
	hello, err := quictest.ClientHello(sni, "h3")
	if err != nil {
		tb.Fatal(err)
	}
	return hello
}

// quicHeldThenReleased sends datagrams ds: every one but the last must be
// held with nothing released; the last releases them all, in order, with
// allow.
func quicHeldThenReleased(t *testing.T, q *quicFlow, ds [][]byte, allow bool) {
	t.Helper()
	var ids []uint32
	for i, d := range ds {
		got := q.send(d)
		ids = append(ids, got.id)
		if i < len(ds)-1 {
			if !got.v.Hold || len(got.released) != 0 {
				t.Fatalf("datagram %d of %d: %+v, released %v; want held", i+1, len(ds), got.v, got.released)
			}
			// The server's datagrams pass meanwhile, not bypassed.
			if r := q.reply([]byte{0x40, 1, 2, 3}); !r.v.Allow || r.v.Bypass || r.v.Hold {
				t.Fatalf("server datagram during the hold: %+v", r.v)
			}
			continue
		}
		wantReleased(t, got, allow, ids...)
	}
}

func TestQUICBlockedBySNI(t *testing.T) {
	hello := quicHello(t, "PasteBin.COM")
	for _, version := range []uint32{quictest.V1, quictest.V2} {
		for _, dst := range []string{"198.51.100.7", "2001:db8::7"} {
			t.Run(fmt.Sprintf("%#x/%s", version, dst), func(t *testing.T) {
				r := newDeepRig(t, quicConfig)
				q := r.quicDial(dst, 40000, 443)
				ds := quictest.Datagrams(version, []byte{1, 2, 3, 4, 5, 6, 7, 8}, hello, []int{len(hello) / 2}, nil, 1)
				quicHeldThenReleased(t, q, ds, false)
				if len(r.rec.events) != 1 {
					t.Fatalf("events = %+v", r.rec.events)
				}
				ev := r.rec.events[0]
				if ev.RuleID != "no-pastebins" || ev.Action != rules.Drop || ev.L7 != rules.L7TLS || ev.QUIC != version ||
					ev.SNI != "PasteBin.COM" || ev.Proto != rules.ProtoUDP || ev.Reason != "" {
					t.Fatalf("event = %+v", ev)
				}
				if len(r.rst.calls) != 0 {
					t.Fatalf("a UDP flow was reset: %+v", r.rst.calls)
				}
				// The flow stays dropped: the client's next Initial (a
				// retransmission) and the server's datagrams alike.
				if got := q.send(ds[0]); got.v.Allow || got.v.Hold {
					t.Fatalf("client datagram of a dropped flow: %+v", got.v)
				}
				if got := q.reply([]byte{0xc0, 0, 0, 0, 1}); got.v.Allow {
					t.Fatal("server datagram of a dropped flow allowed")
				}
				if n := r.e.Stats().QUIC[QUICInspected].Load(); n != 1 {
					t.Fatalf("inspected QUIC flows %d, want 1", n)
				}
			})
		}
	}
}

func TestQUICAllowedMovesToFastPath(t *testing.T) {
	hello := quicHello(t, "example.org")
	r := newDeepRig(t, quicConfig)
	q := r.quicDial("198.51.100.7", 40001, 443)
	ds := quictest.Datagrams(quictest.V1, []byte{9, 9, 9, 9}, hello, []int{len(hello) / 2}, nil, 1)
	quicHeldThenReleased(t, q, ds, true)
	if ev := r.rec.events; len(ev) != 1 || ev[0].RuleID != "quic-out" || ev[0].SNI != "example.org" || ev[0].QUIC != quictest.V1 {
		t.Fatalf("events = %+v", ev)
	}
	if got := q.send([]byte{0x40, 1, 2, 3}); !got.v.Allow || !got.v.Bypass {
		t.Fatalf("a later datagram of the allowed flow: %+v, want allowed onto the fast path", got.v)
	}
}

// TestQUICSplitAndReordered: the ClientHello in three packets that arrive
// last first, the server name cut across CRYPTO frames.
func TestQUICSplitAndReordered(t *testing.T) {
	hello := quicHello(t, "a.paste.ee")
	sni := bytes.Index(hello, []byte("a.paste.ee"))
	ds := quictest.Datagrams(quictest.V2, []byte{7, 7, 7, 7, 7, 7, 7, 7}, hello, []int{sni + 2, sni + 6, len(hello) / 2}, []int{3, 1, 0, 2}, 2)
	slices.Reverse(ds)
	r := newDeepRig(t, quicConfig)
	quicHeldThenReleased(t, r.quicDial("198.51.100.7", 40002, 443), ds, false)
	if ev := r.rec.events; len(ev) != 1 || ev[0].RuleID != "no-pastebins" || ev[0].SNI != "a.paste.ee" {
		t.Fatalf("events = %+v", ev)
	}
}

func TestQUICUndecided(t *testing.T) {
	hello := quicHello(t, "example.org")
	dcid := []byte{1, 1, 1, 1}
	ds := quictest.Datagrams(quictest.V1, dcid, hello, []int{len(hello) / 2}, nil, 1)
	tampered := bytes.Clone(ds[1])
	tampered[len(tampered)-1] ^= 1
	unknown := bytes.Clone(ds[0])
	copy(unknown[1:5], []byte{0xff, 0, 0, 0x1d})
	for _, c := range []struct {
		name   string
		ds     [][]byte
		reason string
		held   bool // the first datagram is held (it is QUIC)
	}{
		{"not QUIC", [][]byte{[]byte("SSH-2.0-OpenSSH_9.6\r\n")}, reasonNotProto, false},
		{"a short header first", [][]byte{{0x40, 1, 2, 3, 4, 5, 6, 7, 8}}, reasonNotProto, false},
		{"unknown version", [][]byte{unknown}, reasonQUICVersion, false},
		{"an Initial that does not decrypt", [][]byte{append([]byte{0xc0}, tampered[1:]...)}, reasonMalformed, false},
		{"tampered second packet", [][]byte{ds[0], tampered}, reasonMalformed, true},
		{"max_packets spent", [][]byte{ds[0], ds[0], ds[0], ds[0]}, reasonPackets, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := newDeepRig(t, quicConfig)
			q := r.quicDial("198.51.100.7", 40003, 443)
			var got judged
			for i, d := range c.ds {
				got = q.send(d)
				if i < len(c.ds)-1 && !got.v.Hold {
					t.Fatalf("datagram %d not held: %+v", i+1, got.v)
				}
			}
			if c.held {
				if !got.v.Hold || len(got.released) != len(c.ds) || got.released[0].Verdict.Allow {
					t.Fatalf("last datagram: %+v, released %+v; want all %d dropped", got.v, got.released, len(c.ds))
				}
			} else if got.v.Allow || got.v.Hold {
				t.Fatalf("first datagram: %+v, want dropped at once", got.v)
			}
			if len(r.rec.events) != 1 || r.rec.events[0].RuleID != rules.RuleIDUndecided || r.rec.events[0].Reason != c.reason {
				t.Fatalf("events %+v, want one undecided with %q", r.rec.events, c.reason)
			}
			if got := q.send(ds[0]); got.v.Allow || got.v.Hold {
				t.Fatalf("the flow did not stay dropped: %+v", got.v)
			}
			if n, want := r.e.Stats().QUIC[QUICUnsupportedVersion].Load(), uint64(0); c.reason == reasonQUICVersion && n != 1 || c.reason != reasonQUICVersion && n != want {
				t.Fatalf("unsupported versions counted: %d", n)
			}
		})
	}
	t.Run("max_wait", func(t *testing.T) {
		r := newDeepRig(t, quicConfig)
		q := r.quicDial("198.51.100.7", 40004, 443)
		if got := q.send(ds[0]); !got.v.Hold {
			t.Fatalf("first datagram: %+v", got.v)
		}
		r.e.Tick(r.now.Add(2 * time.Second))
		if rel := r.e.Released(); len(rel) != 1 || rel[0].Verdict.Allow {
			t.Fatalf("released at max_wait: %+v", rel)
		}
		if ev := r.rec.events; len(ev) != 1 || ev[0].Reason != reasonWait {
			t.Fatalf("events %+v", ev)
		}
	})
}

// TestQUICAbsentSNI: a QUIC ClientHello without server name passes the
// deny-list, by the next rule.
func TestQUICAbsentSNI(t *testing.T) {
	r := newDeepRig(t, quicConfig)
	hello := quicHello(t, "")
	quicHeldThenReleased(t, r.quicDial("198.51.100.7", 40010, 443), quictest.Datagrams(quictest.V1, []byte{2, 2, 2, 2}, hello, []int{600}, nil, 1), true)
	if ev := r.rec.events; len(ev) != 1 || ev[0].RuleID != "quic-out" || ev[0].SNI != "" || !strings.HasPrefix(ev[0].JA4, "q13i") {
		t.Fatalf("events %+v, want quic-out with no SNI and a q13i… JA4", ev)
	}
}

// TestQUICOrDNS: a UDP port whose rules need both tls_sni and dns_qname
// reads QUIC as QUIC and anything else as DNS queries.
func TestQUICOrDNS(t *testing.T) {
	r := newDeepRig(t, quicConfig)
	q := r.quicDial("198.51.100.53", 40005, 853)
	if got := q.send(dnsQuery(t, 7, "a.evil.example.")); got.v.Allow || got.v.Hold {
		t.Fatalf("DNS query by name: %+v, want dropped", got.v)
	}
	if got := q.send(dnsQuery(t, 8, "example.org.")); !got.v.Allow || got.v.Hold {
		t.Fatalf("DNS query: %+v, want allowed", got.v)
	}
	hello := quicHello(t, "dns.example")
	q2 := r.quicDial("198.51.100.53", 40006, 853)
	quicHeldThenReleased(t, q2, quictest.Datagrams(quictest.V1, []byte{3, 3, 3, 3}, hello, []int{len(hello) / 2}, nil, 1), false)
}

// TestQUICVersionNegotiation: the server answers the client's first
// Initial with Version Negotiation; the client starts again with another
// version, and that ClientHello decides.
func TestQUICVersionNegotiation(t *testing.T) {
	r := newDeepRig(t, quicConfig)
	q := r.quicDial("198.51.100.7", 40007, 443)
	v2 := quictest.Datagrams(quictest.V2, []byte{4, 4, 4, 4}, quicHello(t, "example.org"), []int{300}, nil, 1)
	v1 := quictest.Datagrams(quictest.V1, []byte{5, 5, 5, 5}, quicHello(t, "pastebin.com"), []int{300}, nil, 1)
	first := q.send(v2[0])
	if !first.v.Hold {
		t.Fatalf("first Initial: %+v", first.v)
	}
	vn := []byte{0x80, 0, 0, 0, 0, 4, 4, 4, 4, 4, 0x11, 0x22, 0, 0, 0, 1}
	if got := q.reply(vn); !got.v.Allow {
		t.Fatalf("Version Negotiation: %+v", got.v)
	}
	if n := r.e.Stats().QUIC[QUICVersionNegotiation].Load(); n != 1 {
		t.Fatalf("version negotiations counted: %d", n)
	}
	q.send(v1[0])
	got := q.send(v1[1])
	wantReleased(t, got, false, first.id, first.id+2, got.id)
	if ev := r.rec.events; len(ev) != 1 || ev[0].SNI != "pastebin.com" || ev[0].QUIC != quictest.V1 {
		t.Fatalf("events %+v", ev)
	}
}

// TestQUICRetry: the server answers the first of two Initials with a Retry;
// the client sends its Initials again under the connection ID the Retry
// gave (other keys), and the ClientHello they carry decides.
func TestQUICRetry(t *testing.T) {
	r := newDeepRig(t, quicConfig)
	q := r.quicDial("198.51.100.7", 40008, 443)
	hello := quicHello(t, "pastebin.com")
	first := quictest.Datagrams(quictest.V1, []byte{1, 2, 3, 4, 5, 6, 7, 8}, hello, []int{len(hello) / 2}, nil, 1)
	again := quictest.Datagrams(quictest.V1, []byte{9, 9, 9, 9, 9, 9, 9, 9}, hello, []int{len(hello) / 2}, nil, 1)
	held := q.send(first[0])
	if !held.v.Hold {
		t.Fatalf("first Initial: %+v", held.v)
	}
	retry := append([]byte{0xf0, 0, 0, 0, 1, 8}, make([]byte, 40)...) // v1 long header, type Retry
	if got := q.reply(retry); !got.v.Allow || got.v.Hold {
		t.Fatalf("Retry: %+v", got.v)
	}
	if n := r.e.Stats().QUIC[QUICRetry].Load(); n != 1 {
		t.Fatalf("retries counted: %d", n)
	}
	q.send(again[0])
	got := q.send(again[1])
	wantReleased(t, got, false, held.id, held.id+2, got.id)
	if ev := r.rec.events; len(ev) != 1 || ev[0].SNI != "pastebin.com" || ev[0].RuleID != "no-pastebins" {
		t.Fatalf("events %+v", ev)
	}
}

// TestQUICDoesNotAllocate: an allowed QUIC flow, two datagrams, costs
// nothing once the opener holds its keys, and the three allocations of
// the key schedule's ciphers when it does not.
func TestQUICDoesNotAllocate(t *testing.T) {
	r := newDeepRig(t, strings.ReplaceAll(quicConfig, "log = true", "log = false"))
	hello := quicHello(t, "example.org")
	same := quictest.Datagrams(quictest.V1, []byte{6, 6, 6, 6}, hello, []int{len(hello) / 2}, nil, 1)
	mk := func(i int, ds [][]byte) [][]byte {
		q := r.quicDial("198.51.100.7", uint16(20000+i), 443)
		var out [][]byte
		for _, d := range ds {
			p := q.c
			p.payload = d
			out = append(out, p.bytes(t))
		}
		return out
	}
	run := func(flows [][][]byte) float64 {
		i := 0
		return testing.AllocsPerRun(100, func() {
			for _, b := range flows[i] {
				r.e.Judge(b, Meta{InDev: ifBridge, OutDev: ifUplink}, r.now)
				r.e.Released()
			}
			i++
		})
	}
	known, fresh := make([][][]byte, 200), make([][][]byte, 200)
	for i := range known {
		known[i] = mk(i, same)
		fresh[i] = mk(1000+i, quictest.Datagrams(quictest.V1, []byte{8, 8, byte(i >> 8), byte(i)}, hello, []int{len(hello) / 2}, nil, 1))
	}
	if n := run(known); n != 0 {
		t.Errorf("an allowed QUIC flow whose keys the opener holds: %v allocations, want 0", n)
	}
	if n := run(fresh); n > 3 {
		t.Errorf("an allowed QUIC flow with a new connection ID: %v allocations, want at most 3", n)
	}
	if r.e.Stats().Decided.Load() < 200 {
		t.Fatal("flows were not inspected")
	}
}

func BenchmarkDeepQUICFlow(b *testing.B) {
	tbl, err := rules.Parse("quic.toml", []byte(strings.ReplaceAll(quicConfig, "log = true", "log = false")))
	if err != nil {
		b.Fatal(err)
	}
	hello := quicHello(b, "example.org")
	for _, fresh := range []bool{false, true} {
		b.Run(map[bool]string{false: "known connection ID", true: "new connection ID"}[fresh], func(b *testing.B) {
			var tp atomic.Pointer[rules.Table]
			tp.Store(tbl)
			e := New(Options{Tables: &tp}, 1<<16)
			const n = 1024
			flows := make([][][]byte, n)
			for i := range flows {
				dcid := []byte{6, 6, 6, 6}
				if fresh {
					dcid = []byte{8, 8, byte(i >> 8), byte(i)}
				}
				for _, d := range quictest.Datagrams(quictest.V1, dcid, hello, []int{len(hello) / 2}, nil, 1) {
					flows[i] = append(flows[i], pkt{src: "172.17.0.5", dst: "198.51.100.7", sport: uint16(10000 + i), dport: 443, proto: "udp", payload: d}.bytes(b))
				}
			}
			now := time.Now()
			b.ReportAllocs()
			i := 0
			for b.Loop() {
				for _, d := range flows[i%n] {
					e.Judge(d, Meta{InDev: ifBridge, OutDev: ifUplink}, now)
					e.Released()
				}
				i++
				if i%n == 0 {
					now = now.Add(2 * udpTimeout) // the old flows expire: the next round is new flows again
				}
			}
		})
	}
}
