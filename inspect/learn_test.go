package inspect

import (
	"fmt"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/nfqguard/nfqguard/inspect/names"
	"github.com/nfqguard/nfqguard/rules"
)

const learnConfig = `
[engine]
workers = 1

[dns]
min_ttl = "1s"
grace = "10s"

[[container]]
name = "builder"
ips = ["172.17.0.5", "fd00::5"]
egress = "drop"

  [[container.rule]]
  id = "dns"
  direction = "egress"
  ports = ["53"]
  action = "allow"

  [[container.rule]]
  id = "builder-github"
  direction = "egress"
  to_names = ["github.com", "*.githubusercontent.com"]
  proto = "tcp"
  ports = ["22", "443"]
  action = "allow"
`

// dnsAnswer builds a response to a question for name of type typ: a CNAME
// chain through cnames, then addrs (A or AAAA by length) owned by the
// chain's last name, every record with ttl seconds.
func dnsAnswer(tb testing.TB, id uint16, name string, typ dnsmessage.Type, ttl uint32, cnames []string, addrs ...[]byte) []byte {
	tb.Helper()
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: id, Response: true, RecursionDesired: true, RecursionAvailable: true})
	must := func(err error) {
		if err != nil {
			tb.Fatal(err)
		}
	}
	must(b.StartQuestions())
	must(b.Question(dnsmessage.Question{Name: dnsmessage.MustNewName(name), Type: typ, Class: dnsmessage.ClassINET}))
	must(b.StartAnswers())
	owner := name
	for _, c := range cnames {
		h := dnsmessage.ResourceHeader{Name: dnsmessage.MustNewName(owner), Class: dnsmessage.ClassINET, TTL: ttl}
		must(b.CNAMEResource(h, dnsmessage.CNAMEResource{CNAME: dnsmessage.MustNewName(c)}))
		owner = c
	}
	for _, a := range addrs {
		h := dnsmessage.ResourceHeader{Name: dnsmessage.MustNewName(owner), Class: dnsmessage.ClassINET, TTL: ttl}
		if len(a) == 4 {
			must(b.AResource(h, dnsmessage.AResource{A: [4]byte(a)}))
		} else {
			must(b.AAAAResource(h, dnsmessage.AAAAResource{AAAA: [16]byte(a)}))
		}
	}
	msg, err := b.Finish()
	must(err)
	return msg
}

func dnsQueryType(tb testing.TB, id uint16, name string, typ dnsmessage.Type) []byte {
	tb.Helper()
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: id, RecursionDesired: true})
	if err := b.StartQuestions(); err != nil {
		tb.Fatal(err)
	}
	if err := b.Question(dnsmessage.Question{Name: dnsmessage.MustNewName(name), Type: typ, Class: dnsmessage.ClassINET}); err != nil {
		tb.Fatal(err)
	}
	msg, err := b.Finish()
	if err != nil {
		tb.Fatal(err)
	}
	return msg
}

type learnRig struct {
	*deepRig
	store *names.Store
}

func newLearnRig(t *testing.T) *learnRig {
	store := names.New(rules.DefaultMaxNames)
	return &learnRig{deepRig: newDeepRigWith(t, learnConfig, Options{Names: store}), store: store}
}

var (
	resolver = pkt{src: "172.17.0.5", dst: "198.51.100.53", sport: 40000, dport: 53, proto: "udp"}
	ghAddr   = []byte{140, 82, 121, 4}
)

// ask sends a query through the engine and checks it passes, not bypassed.
func (r *learnRig) send(p pkt, m Meta, msg []byte) Verdict {
	r.t.Helper()
	p.payload = msg
	v := r.judge(p, m).v
	if !v.Allow || v.Bypass || v.Hold {
		r.t.Fatalf("DNS packet %+v: verdict %+v, want allowed and never bypassed", p, v)
	}
	return v
}

func (r *learnRig) syn(dst string, sport, dport uint16) bool {
	r.t.Helper()
	src := "172.17.0.5"
	if len(dst) > 15 || dst[0] == '2' && dst[1] != '0' || dst[:3] == "200" {
		src = "fd00::5"
	}
	return r.judge(pkt{src: src, dst: dst, sport: sport, dport: dport, proto: "tcp", flags: TCPFlagSYN}, fromContainer).v.Allow
}

func TestLearnFromAnswer(t *testing.T) {
	r := newLearnRig(t)
	if r.syn("140.82.121.4", 50000, 443) {
		t.Fatal("a connection before any lookup was allowed")
	}
	r.send(resolver, fromContainer, dnsQueryType(t, 7, "GitHub.com.", dnsmessage.TypeA))
	r.send(resolver.reply(0), toContainer, dnsAnswer(t, 7, "github.com.", dnsmessage.TypeA, 60,
		[]string{"edge.github.example."}, ghAddr))
	if !r.syn("140.82.121.4", 50001, 443) {
		t.Fatal("a connection after the lookup was dropped")
	}
	if r.syn("140.82.121.4", 50002, 80) {
		t.Error("a port the rule does not list was allowed")
	}
	if got, want := r.store.Names(mustAddr("172.17.0.5"), mustAddr("140.82.121.4"), r.now), []string{"github.com", "edge.github.example"}; !slices.Equal(got, want) {
		t.Errorf("names = %q, want %q", got, want)
	}
	// The blocked flow's record carries the names.
	ev := r.rec.events[len(r.rec.events)-1]
	if ev.Dst.Port() != 80 || !slices.Equal(ev.Names.Strings(), []string{"github.com", "edge.github.example"}) {
		t.Errorf("last event %+v: names %q", ev, ev.Names.Strings())
	}
	if n := r.e.Stats().DNSAnswers[DNSAnswerAccepted].Load(); n != 1 {
		t.Errorf("accepted answers %d, want 1", n)
	}

	// After TTL + grace a new connection is dropped; the one opened in
	// time goes on.
	r.now = r.now.Add(71 * time.Second)
	if r.syn("140.82.121.4", 50003, 443) {
		t.Error("a connection after TTL + grace was allowed")
	}
	ack := pkt{src: "172.17.0.5", dst: "140.82.121.4", sport: 50001, dport: 443, proto: "tcp", flags: TCPFlagACK, payload: []byte("x")}
	if !r.judge(ack, fromContainer).v.Allow {
		t.Error("the connection opened while the binding held was cut at its expiry")
	}
}

func TestLearnIPv6AndWildcard(t *testing.T) {
	r := newLearnRig(t)
	v6 := pkt{src: "fd00::5", dst: "2001:db8::53", sport: 40000, dport: 53, proto: "udp"}
	addr := []byte{0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x77}
	r.send(v6, fromContainer, dnsQueryType(t, 9, "objects.githubusercontent.com.", dnsmessage.TypeAAAA))
	r.send(v6.reply(0), toContainer, dnsAnswer(t, 9, "objects.githubusercontent.com.", dnsmessage.TypeAAAA, 60, nil, addr))
	if !r.syn("2001:db8::77", 50000, 22) {
		t.Error("ssh to an IPv6 address learned from a wildcard name was dropped")
	}
}

// TestLearnPoisoning: answers that no query of the container asked for,
// with the same id, flow and question, are not learned.
func TestLearnPoisoning(t *testing.T) {
	r := newLearnRig(t)
	// An answer without any query: not even a DNS flow of the container
	// (it would be one from the "resolver" to port 39999).
	a := resolver.reply(0)
	a.dport = 39999
	a.payload = dnsAnswer(t, 7, "github.com.", dnsmessage.TypeA, 60, nil, ghAddr)
	r.judge(a, toContainer)
	// A query for one name, answered for another.
	r.send(resolver, fromContainer, dnsQueryType(t, 8, "example.org.", dnsmessage.TypeA))
	r.send(resolver.reply(0), toContainer, dnsAnswer(t, 8, "github.com.", dnsmessage.TypeA, 60, nil, ghAddr))
	// The right question, the wrong id.
	r.send(resolver, fromContainer, dnsQueryType(t, 10, "github.com.", dnsmessage.TypeA))
	r.send(resolver.reply(0), toContainer, dnsAnswer(t, 11, "github.com.", dnsmessage.TypeA, 60, nil, ghAddr))
	// The right question and id, on another flow (another source port).
	other := resolver
	other.sport = 40001
	r.send(other, fromContainer, dnsQueryType(t, 12, "example.org.", dnsmessage.TypeA))
	r.send(resolver.reply(0), toContainer, dnsAnswer(t, 12, "github.com.", dnsmessage.TypeA, 60, nil, ghAddr))
	if r.syn("140.82.121.4", 50000, 443) {
		t.Fatal("an answer no query asked for was learned")
	}
	if n := r.e.Stats().DNSAnswers[DNSAnswerUnsolicited].Load(); n != 3 {
		t.Errorf("unsolicited answers %d, want 3", n)
	}
	// A query answered once: a second copy of the answer is unsolicited.
	r.send(resolver, fromContainer, dnsQueryType(t, 10, "github.com.", dnsmessage.TypeA))
	r.send(resolver.reply(0), toContainer, dnsAnswer(t, 10, "github.com.", dnsmessage.TypeA, 60, nil, ghAddr))
	r.send(resolver.reply(0), toContainer, dnsAnswer(t, 10, "github.com.", dnsmessage.TypeA, 60, nil, []byte{192, 0, 2, 66}))
	if !r.syn("140.82.121.4", 50001, 443) || r.syn("192.0.2.66", 50002, 443) {
		t.Error("want the first answer learned and its replay ignored")
	}
	// Garbage from the resolver is counted.
	r.send(resolver.reply(0), toContainer, []byte("not dns"))
	if n := r.e.Stats().DNSAnswers[DNSAnswerMalformed].Load(); n != 1 {
		t.Errorf("malformed answers %d, want 1", n)
	}
}

// TestLearnParallelAAndAAAA: glibc sends both queries of a lookup from one
// socket before either answer; both answers are learned.
func TestLearnParallelAAndAAAA(t *testing.T) {
	r := newLearnRig(t)
	addr6 := []byte{0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0x04}
	r.send(resolver, fromContainer, dnsQueryType(t, 20, "github.com.", dnsmessage.TypeA))
	r.send(resolver, fromContainer, dnsQueryType(t, 20, "github.com.", dnsmessage.TypeAAAA)) // same id: glibc may reuse it
	r.send(resolver.reply(0), toContainer, dnsAnswer(t, 20, "github.com.", dnsmessage.TypeAAAA, 60, nil, addr6))
	r.send(resolver.reply(0), toContainer, dnsAnswer(t, 20, "github.com.", dnsmessage.TypeA, 60, nil, ghAddr))
	c := mustAddr("172.17.0.5")
	if r.store.Names(c, mustAddr("140.82.121.4"), r.now) == nil || r.store.Names(c, mustAddr("2001:db8::4"), r.now) == nil {
		t.Error("one of the two answers was not learned")
	}
}

// TestLearnOverTCP: one message per segment, with its length prefix.
func TestLearnOverTCP(t *testing.T) {
	r := newLearnRig(t)
	c := r.dial("198.51.100.53", 40000, 53)
	for _, p := range []pkt{
		{flags: TCPFlagSYN, seq: c.cseq - 1},
	} {
		q := c.c
		q.flags, q.seq = p.flags, p.seq
		if v := r.judge(q, fromContainer).v; !v.Allow || v.Bypass {
			t.Fatalf("SYN: %+v", v)
		}
	}
	framed := func(m []byte) []byte { return append([]byte{byte(len(m) >> 8), byte(len(m))}, m...) }
	q := c.c
	q.flags, q.payload = TCPFlagACK, framed(dnsQueryType(t, 30, "github.com.", dnsmessage.TypeA))
	if v := r.judge(q, fromContainer).v; !v.Allow || v.Bypass {
		t.Fatalf("query: %+v", v)
	}
	a := c.c.reply(TCPFlagACK)
	a.payload = framed(dnsAnswer(t, 30, "github.com.", dnsmessage.TypeA, 60, nil, ghAddr))
	if v := r.judge(a, toContainer).v; !v.Allow || v.Bypass {
		t.Fatalf("answer: %+v", v)
	}
	if !r.syn("140.82.121.4", 50000, 443) {
		t.Error("an answer over TCP was not learned")
	}
}

// TestLearnOffStaysFast: without a store, DNS flows take the fast path as
// before.
func TestLearnOffStaysFast(t *testing.T) {
	r := newDeepRig(t, learnConfig)
	p := resolver
	p.payload = dnsQueryType(t, 1, "github.com.", dnsmessage.TypeA)
	if v := r.judge(p, fromContainer).v; !v.Allow || !v.Bypass {
		t.Errorf("verdict %+v, want the fast path", v)
	}
}

func TestLearnDoesNotAllocate(t *testing.T) {
	r := newLearnRig(t)
	q, a := resolver, resolver.reply(0)
	q.payload = dnsQueryType(t, 7, "github.com.", dnsmessage.TypeA)
	a.payload = dnsAnswer(t, 7, "github.com.", dnsmessage.TypeA, 60, []string{"edge.github.example."}, ghAddr)
	qb, ab := q.bytes(t), a.bytes(t)
	syn := pkt{src: "172.17.0.5", dst: "140.82.121.4", sport: 50000, dport: 443, proto: "tcp", flags: TCPFlagSYN}.bytes(t)
	r.e.Judge(qb, fromContainer, r.now)
	r.e.Judge(ab, toContainer, r.now)
	n := testing.AllocsPerRun(200, func() {
		r.e.Judge(qb, fromContainer, r.now)
		r.e.Judge(ab, toContainer, r.now)
		if !r.e.Judge(syn, fromContainer, r.now).Allow {
			t.Fatal("dropped")
		}
	})
	if n != 0 {
		t.Errorf("a query, its answer and a flow judged by name allocate %.1f times, want 0", n)
	}
}

// BenchmarkJudgeNewNames10k is BenchmarkJudgeNew for flows allowed by a
// rule with to_names, with 10,000 bindings learned: the lookup the first
// packet pays. Compare it side by side with BenchmarkJudgeNew.
func BenchmarkJudgeNewNames10k(b *testing.B) {
	tbl, err := rules.Parse("learn.toml", []byte(learnConfig))
	if err != nil {
		b.Fatal(err)
	}
	var p atomic.Pointer[rules.Table]
	p.Store(tbl)
	store := names.New(10000)
	now := time.Now()
	c := mustAddr("172.17.0.5")
	dst := func(i int) string { return fmt.Sprintf("10.1.%d.%d", (i%10000)>>8, i%10000&255) }
	for i := range 10000 {
		store.Learn(c, &names.Answer{Addr: mustAddr(dst(i)), TTL: time.Hour, Names: []string{fmt.Sprintf("n%d.githubusercontent.com", i)}},
			names.Limits{MaxTTL: time.Hour}, now)
	}
	e := New(Options{Tables: &p, Names: store}, 65536)
	pkts := make([][]byte, 65536)
	for i := range pkts {
		pkts[i] = pkt{src: "172.17.0.5", dst: dst(i * 7919), sport: uint16(i), dport: 443, proto: "tcp", flags: TCPFlagSYN}.bytes(b)
	}
	if !e.Judge(pkts[0], fromContainer, now).Allow {
		b.Fatal("a flow to a learned address was dropped")
	}
	benchJudge(b, e, pkts)
}
