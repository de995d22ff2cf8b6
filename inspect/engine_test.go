package inspect

import (
	"fmt"
	"net/netip"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/nfqguard/nfqguard/rules"
)

const testConfig = `
[engine]
workers = 1
fast_path = true

[defaults]
ingress = "allow"
egress = "allow"

[[container]]
name = "web"
ips = ["172.17.0.2", "fd00::2"]
ingress = "drop"

  [[container.rule]]
  id = "web-http"
  direction = "ingress"
  proto = "tcp"
  ports = ["80", "8000-8100"]
  from = ["0.0.0.0/0", "::/0"]
  action = "allow"

  [[container.rule]]
  id = "web-no-smtp"
  direction = "egress"
  proto = "tcp"
  ports = ["25"]
  action = "drop"

  [[container.rule]]
  id = "web-ping"
  direction = "ingress"
  proto = "icmp"
  from = ["172.17.0.0/16"]
  action = "allow"
  log = true

[[container]]
name = "db"
ips = ["172.17.0.3"]
ingress = "drop"
egress = "drop"

  [[container.rule]]
  id = "db-from-web"
  direction = "ingress"
  proto = "tcp"
  ports = ["5432"]
  from = ["172.17.0.2"]
  action = "allow"
`

type recorder struct{ events []Event }

func (r *recorder) Emit(ev Event) bool { r.events = append(r.events, ev); return true }

type fakeBridges map[uint32]bool

func (b fakeBridges) IsBridge(i uint32) bool { return b[i] }

// Interface indexes used by the tests: 2 is the uplink, 3 is docker0.
const (
	ifUplink = 2
	ifBridge = 3
)

var (
	toContainer   = Meta{InDev: ifUplink, OutDev: ifBridge}
	fromContainer = Meta{InDev: ifBridge, OutDev: ifUplink}
	betweenC      = Meta{InDev: ifBridge, OutDev: ifBridge}
)

func newTestEngine(tb testing.TB, config string) (*Engine, *recorder) {
	tb.Helper()
	tbl, err := rules.Parse("test.toml", []byte(config))
	if err != nil {
		tb.Fatalf("Parse: %v", err)
	}
	var p atomic.Pointer[rules.Table]
	p.Store(tbl)
	rec := &recorder{}
	return New(Options{Tables: &p, Bridges: fakeBridges{ifBridge: true}, Sink: rec}, 4096), rec
}

func TestJudgeFlows(t *testing.T) {
	type step struct {
		p     pkt
		meta  Meta
		allow bool
	}
	in := pkt{src: "203.0.113.2", dst: "172.17.0.2", sport: 40000, dport: 80, proto: "tcp", flags: TCPFlagSYN}
	blocked := pkt{src: "203.0.113.2", dst: "172.17.0.2", sport: 40001, dport: 22, proto: "tcp", flags: TCPFlagSYN}
	smtp := pkt{src: "172.17.0.2", dst: "198.51.100.7", sport: 40002, dport: 25, proto: "tcp", flags: TCPFlagSYN}
	web2db := pkt{src: "172.17.0.2", dst: "172.17.0.3", sport: 40003, dport: 5432, proto: "tcp", flags: TCPFlagSYN}
	db2web := pkt{src: "172.17.0.3", dst: "172.17.0.2", sport: 40004, dport: 80, proto: "tcp", flags: TCPFlagSYN}
	dbOut := pkt{src: "172.17.0.3", dst: "198.51.100.7", sport: 40005, dport: 443, proto: "tcp", flags: TCPFlagSYN}
	unlisted := pkt{src: "172.17.0.9", dst: "198.51.100.7", sport: 40006, dport: 443, proto: "tcp", flags: TCPFlagSYN}
	v6 := pkt{src: "2001:db8::7", dst: "fd00::2", sport: 40007, dport: 8080, proto: "tcp", flags: TCPFlagSYN}
	v6blocked := pkt{src: "2001:db8::7", dst: "fd00::2", sport: 40008, dport: 8101, proto: "tcp", flags: TCPFlagSYN}
	udp := pkt{src: "203.0.113.2", dst: "172.17.0.2", sport: 5000, dport: 53, proto: "udp"}
	ping := pkt{src: "172.17.0.9", dst: "172.17.0.2", sport: 9, proto: "icmp"}
	tests := []struct {
		name      string
		steps     []step
		wantRules []string // rule ids of logged events, in order
	}{
		{"ingress allowed, reply passes although egress default would not matter", []step{
			{in, toContainer, true}, {in.reply(TCPFlagSYN | TCPFlagACK), fromContainer, true}, {in.reply(TCPFlagACK), fromContainer, true},
		}, nil},
		{"ingress to unlisted port hits container default, retransmission logged once", []step{
			{blocked, toContainer, false}, {blocked, toContainer, false},
		}, []string{"default"}},
		{"egress drop rule by remote port", []step{{smtp, fromContainer, false}}, []string{"web-no-smtp"}},
		{"container to container judged by both: db allows web on 5432", []step{
			{web2db, betweenC, true}, {web2db.reply(TCPFlagSYN | TCPFlagACK), betweenC, true},
		}, nil},
		{"container to container: db's egress default drop wins over web's ingress allow", []step{
			{db2web, betweenC, false},
		}, []string{"default"}},
		{"reply of an allowed flow passes even though db's egress default is drop", []step{
			{web2db, betweenC, true}, {web2db.reply(TCPFlagACK), betweenC, true},
		}, nil},
		{"listed container egress default drop", []step{{dbOut, fromContainer, false}}, []string{"default"}},
		{"unlisted container on a bridge gets [defaults]", []step{{unlisted, fromContainer, true}}, nil},
		{"ipv6 port range", []step{{v6, toContainer, true}, {v6blocked, toContainer, false}}, []string{"default"}},
		{"udp to container with ingress default drop", []step{{udp, toContainer, false}}, []string{"default"}},
		{"icmp allowed by rule with log = true", []step{{ping, betweenC, true}, {ping.reply(0), betweenC, true}}, []string{"web-ping"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, rec := newTestEngine(t, testConfig)
			now := time.Now()
			for i, s := range tt.steps {
				v := e.Judge(s.p.bytes(t), s.meta, now.Add(time.Duration(i)*time.Millisecond))
				if v.Allow != s.allow {
					t.Errorf("step %d (%s→%s:%d): allow = %v, want %v", i, s.p.src, s.p.dst, s.p.dport, v.Allow, s.allow)
				}
				if v.Bypass != s.allow {
					t.Errorf("step %d: bypass = %v, want %v (fast path on)", i, v.Bypass, s.allow)
				}
			}
			var got []string
			for _, ev := range rec.events {
				got = append(got, ev.RuleID)
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.wantRules) {
				t.Errorf("logged rules = %v, want %v", got, tt.wantRules)
			}
		})
	}
}

func TestJudgeEventFields(t *testing.T) {
	e, rec := newTestEngine(t, testConfig)
	p := pkt{src: "203.0.113.2", dst: "172.17.0.2", sport: 40001, dport: 22, proto: "tcp", flags: TCPFlagSYN}
	e.Judge(p.bytes(t), toContainer, time.Now())
	if len(rec.events) != 1 {
		t.Fatalf("got %d events, want 1", len(rec.events))
	}
	r := rec.events[0]
	want := Event{Time: r.Time, Action: rules.Drop, RuleID: "default", Container: "web", Direction: rules.Ingress, Proto: rules.ProtoTCP,
		Src: netip.MustParseAddrPort("203.0.113.2:40001"), Dst: netip.MustParseAddrPort("172.17.0.2:22"), Packets: 1}
	if r != want {
		t.Errorf("event = %+v\nwant    %+v", r, want)
	}
}

func TestJudgeMidstream(t *testing.T) {
	e, _ := newTestEngine(t, testConfig)
	now := time.Now()
	// A reply-direction ACK of a connection opened before start-up: allowed,
	// because opened the other way (outside → web:80) the rules allow it.
	ack := pkt{src: "172.17.0.2", dst: "203.0.113.2", sport: 80, dport: 40000, proto: "tcp", flags: TCPFlagACK}
	if v := e.Judge(ack.bytes(t), fromContainer, now); !v.Allow {
		t.Error("mid-stream packet of an allowed connection dropped")
	}
	if v := e.Judge(ack.reply(TCPFlagACK).bytes(t), toContainer, now); !v.Allow {
		t.Error("other direction of the adopted connection dropped")
	}
	// Neither reading allows db:22 ↔ outside: db drops ingress and egress.
	bad := pkt{src: "203.0.113.2", dst: "172.17.0.3", sport: 40001, dport: 22, proto: "tcp", flags: TCPFlagACK}
	if v := e.Judge(bad.bytes(t), toContainer, now); v.Allow {
		t.Error("mid-stream packet that no reading allows was allowed")
	}
	if got := e.Stats().Midstream.Load(); got != 2 {
		t.Errorf("Midstream = %d, want 2", got)
	}
}

func TestJudgePingIsDirectional(t *testing.T) {
	// b may ping a, a may not ping b. a's request with the identifier b's
	// allowed ping used is a new flow, not a reply of b's.
	e, _ := newTestEngine(t, `
[[container]]
name = "a"
ips = ["172.17.0.2"]
ingress = "drop"
  [[container.rule]]
  id = "a-ping-from-b"
  direction = "ingress"
  proto = "icmp"
  from = ["172.17.0.3"]
  action = "allow"
[[container]]
name = "b"
ips = ["172.17.0.3"]
ingress = "drop"
`)
	now := time.Now()
	if v := e.Judge(icmpEcho(t, "172.17.0.3", "172.17.0.2", 8, 4242), betweenC, now); !v.Allow {
		t.Fatal("b → a ping dropped")
	}
	if v := e.Judge(icmpEcho(t, "172.17.0.2", "172.17.0.3", 0, 4242), betweenC, now); !v.Allow {
		t.Error("echo reply of b's allowed ping dropped")
	}
	if v := e.Judge(icmpEcho(t, "172.17.0.2", "172.17.0.3", 8, 4242), betweenC, now); v.Allow {
		t.Error("a → b echo request rode on b's allowed ping with the same identifier")
	}
}

func TestJudgeICMPErrorFollowsFlow(t *testing.T) {
	e, _ := newTestEngine(t, testConfig)
	now := time.Now()
	// web → outside:443 allowed (egress default allow); the outside router's
	// "port unreachable" about it must reach web although web's ingress
	// default is drop.
	out := pkt{src: "172.17.0.2", dst: "198.51.100.7", sport: 40010, dport: 443, proto: "udp"}
	if v := e.Judge(out.bytes(t), fromContainer, now); !v.Allow {
		t.Fatal("egress flow dropped")
	}
	errPkt := icmpError(t, "198.51.100.7", "172.17.0.2", out.bytes(t))
	if v := e.Judge(errPkt, toContainer, now); !v.Allow || v.Bypass {
		t.Errorf("ICMP error about an allowed flow: %+v, want allow without bypass", v)
	}
	// An error quoting a flow nobody saw is judged as ICMP ingress: dropped.
	stray := icmpError(t, "198.51.100.7", "172.17.0.2", pkt{src: "172.17.0.2", dst: "198.51.100.7", sport: 1, dport: 2, proto: "udp"}.bytes(t))
	if v := e.Judge(stray, toContainer, now); v.Allow {
		t.Error("ICMP error about an unknown flow allowed past ingress default drop")
	}
}

func TestJudgeMalformedPolicy(t *testing.T) {
	for _, policy := range []string{"drop", "allow"} {
		t.Run(policy, func(t *testing.T) {
			e, _ := newTestEngine(t, strings.Replace(testConfig, "workers = 1", "workers = 1\nmalformed = \""+policy+"\"", 1))
			syn := pkt{src: "203.0.113.2", dst: "172.17.0.2", sport: 1, dport: 80, proto: "tcp", flags: TCPFlagSYN}.bytes(t)
			v := e.Judge(syn[:30], toContainer, time.Now())
			if v.Allow != (policy == "allow") || v.Bypass {
				t.Errorf("truncated packet: %+v under malformed = %q", v, policy)
			}
			if n := e.Counts().Truncated; n != 1 {
				t.Errorf("Truncated = %d, want 1", n)
			}
		})
	}
}

func TestJudgePerPacketMode(t *testing.T) {
	e, _ := newTestEngine(t, strings.Replace(testConfig, "fast_path = true", "fast_path = false", 1))
	in := pkt{src: "203.0.113.2", dst: "172.17.0.2", sport: 40000, dport: 80, proto: "tcp", flags: TCPFlagSYN}
	for i, p := range []pkt{in, in.reply(TCPFlagSYN | TCPFlagACK), in.reply(TCPFlagACK).reply(TCPFlagACK)} {
		if v := e.Judge(p.bytes(t), toContainer, time.Now()); !v.Allow || v.Bypass {
			t.Errorf("packet %d: %+v, want allow without bypass", i, v)
		}
	}
}

func TestJudgeDoesNotAllocate(t *testing.T) {
	e, _ := newTestEngine(t, testConfig)
	now := time.Now()
	first := pkt{src: "203.0.113.2", dst: "172.17.0.2", sport: 40000, dport: 80, proto: "tcp", flags: TCPFlagSYN}.bytes(t)
	reply := pkt{src: "172.17.0.2", dst: "203.0.113.2", sport: 80, dport: 40000, proto: "tcp", flags: TCPFlagACK, payload: make([]byte, 100)}.bytes(t)
	e.Judge(first, toContainer, now)
	if n := testing.AllocsPerRun(1000, func() { e.Judge(reply, fromContainer, now) }); n != 0 {
		t.Errorf("Judge of a known flow allocates %v times per packet", n)
	}
	// New flows, each judged by the rules and inserted into the table.
	news := make([][]byte, 1001)
	for i := range news {
		news[i] = pkt{src: "203.0.113.2", dst: "172.17.0.2", sport: uint16(1000 + i), dport: 8000, proto: "tcp", flags: TCPFlagSYN}.bytes(t)
	}
	i := 0
	if n := testing.AllocsPerRun(1000, func() { e.Judge(news[i], toContainer, now); i++ }); n != 0 {
		t.Errorf("Judge of a new flow allocates %v times per packet", n)
	}
}

func TestFlowTableEvictsLeastRecentlySeen(t *testing.T) {
	ft := newFlowTable(ways, 1, func(*flow, *flowInfo) {}) // one bucket
	keys := make([]flowKey, ways+1)
	for i := range keys {
		keys[i], _ = makeKey(mustAddr("10.0.0.1"), uint16(i), mustAddr("10.0.0.2"), 80, 6)
	}
	for i := 0; i < ways; i++ {
		f, ev := ft.insert(&keys[i], ft.hashOf(&keys[i]), int64(i+1))
		if ev {
			t.Fatalf("eviction while the bucket had room (insert %d)", i)
		}
		f.state, f.expires = stateAllowed, 1000
	}
	ft.lookup(&keys[0], ft.hashOf(&keys[0]), 20).lastSeen = 20 // key 0 is now the most recent
	if _, ev := ft.insert(&keys[ways], ft.hashOf(&keys[ways]), 21); !ev {
		t.Fatal("full bucket: no eviction reported")
	}
	if ft.lookup(&keys[1], ft.hashOf(&keys[1]), 22) != nil {
		t.Error("least recently seen flow (1) survived eviction")
	}
	if ft.lookup(&keys[0], ft.hashOf(&keys[0]), 22) == nil {
		t.Error("recently seen flow (0) was evicted")
	}
	// Expired slots are reused before any live flow is evicted.
	if ft.lookup(&keys[2], ft.hashOf(&keys[2]), 1000) != nil {
		t.Error("expired flow still found")
	}
}

func TestFlowKeyIsDirectionless(t *testing.T) {
	a, b := mustAddr("172.17.0.2"), mustAddr("203.0.113.2")
	k1, s1 := makeKey(a, 80, b, 40000, 6)
	k2, s2 := makeKey(b, 40000, a, 80, 6)
	if k1 != k2 || s1 == s2 {
		t.Errorf("keys differ by direction: %v/%v %v/%v", k1, s1, k2, s2)
	}
}

// The Judge benchmarks measure decode + flow lookup + rule lookup. Known:
// packets of 1,024 flows the table holds (the common case). New: 65,536
// distinct SYNs through a 4,096-slot table, so nearly every packet misses,
// consults the rules and evicts (the worst case). 10k: 10,000 containers x
// 10 rules loaded, packets spread over all of them.

func BenchmarkJudgeKnown(b *testing.B) {
	e, _ := newTestEngine(b, testConfig)
	benchJudge(b, e, synPackets(b, 1024, func(int) (string, uint16) { return "172.17.0.2", 80 }))
}

func BenchmarkJudgeNew(b *testing.B) {
	e, _ := newTestEngine(b, testConfig)
	benchJudge(b, e, synPackets(b, 65536, func(int) (string, uint16) { return "172.17.0.2", 80 }))
}

func BenchmarkJudgeKnown10k(b *testing.B) {
	e, dst := engine10k(b)
	benchJudge(b, e, synPackets(b, 1024, dst))
}

func BenchmarkJudgeNew10k(b *testing.B) {
	e, dst := engine10k(b)
	benchJudge(b, e, synPackets(b, 65536, dst))
}

// engine10k loads 10,000 containers x 10 rules; dst spreads packet i over
// them, to a port one of their rules allows.
func engine10k(b *testing.B) (*Engine, func(int) (string, uint16)) {
	const containers = 10000
	addr := func(c int) string { return fmt.Sprintf("10.%d.%d.%d", c>>16, (c>>8)&255, c&255) }
	var sb strings.Builder
	for c := 0; c < containers; c++ {
		fmt.Fprintf(&sb, "[[container]]\nname = \"c%d\"\nips = [\"%s\"]\n", c, addr(c))
		for r := 0; r < 10; r++ {
			fmt.Fprintf(&sb, "[[container.rule]]\nid = \"c%d-r%d\"\ndirection = \"ingress\"\nproto = \"tcp\"\nports = [\"%d\"]\naction = \"allow\"\n", c, r, 1000+r)
		}
	}
	e, _ := newTestEngine(b, sb.String())
	return e, func(i int) (string, uint16) { return addr(i * 7919 % containers), uint16(1000 + i%10) }
}

// synPackets builds n SYNs from distinct source ports and addresses.
func synPackets(b *testing.B, n int, dst func(int) (string, uint16)) [][]byte {
	pkts := make([][]byte, n)
	for i := range pkts {
		d, port := dst(i)
		src := fmt.Sprintf("203.0.%d.%d", 113+i>>16, (i>>8)&255)
		pkts[i] = pkt{src: src, dst: d, sport: uint16(i), dport: port, proto: "tcp", flags: TCPFlagSYN}.bytes(b)
	}
	return pkts
}

func benchJudge(b *testing.B, e *Engine, pkts [][]byte) {
	now := time.Now()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		e.Judge(pkts[i%len(pkts)], toContainer, now)
	}
}

func TestFlowTableMemoryPerFlow(t *testing.T) {
	// Issue target: at most 256 bytes per tracked flow, with 1,000,000 flows.
	const flows = 1_000_000
	if testing.Short() {
		t.Skip("allocates about 64 MiB")
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	ft := newFlowTable(flows, 1, func(*flow, *flowInfo) {})
	dst := mustAddr("172.17.0.2")
	live := 0
	key := func(i int) flowKey {
		k, _ := makeKey(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), uint16(i), dst, 80, 6)
		return k
	}
	for i := 0; i < flows; i++ {
		k := key(i)
		f, _ := ft.insert(&k, ft.hashOf(&k), 1)
		f.state, f.expires = stateAllowed, 1<<62
	}
	runtime.ReadMemStats(&after)
	for i := 0; i < flows; i++ {
		if k := key(i); ft.lookup(&k, ft.hashOf(&k), 2) != nil {
			live++
		}
	}
	perFlow := float64(after.HeapAlloc-before.HeapAlloc) / float64(live)
	t.Logf("%d slots of %d bytes, %d live flows: %.0f bytes per tracked flow", len(ft.slots), unsafe.Sizeof(flow{}), live, perFlow)
	// Two-choice buckets keep nearly all: the table has 1,048,576 slots.
	if live < flows*97/100 {
		t.Errorf("only %d of %d flows found: the table evicts too early", live, flows)
	}
	if perFlow > 256 {
		t.Errorf("%.0f bytes per tracked flow, want at most 256", perFlow)
	}
	runtime.KeepAlive(ft)
}
