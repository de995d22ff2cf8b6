package inspect

import (
	"crypto/tls"
	"io"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/nfqguard/nfqguard/rules"
)

const deepConfig = `
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
  proto = "tcp"
  ports = ["443", "80"]
  tls_sni = ["pastebin.com", "*.paste.ee"]
  http_host = ["pastebin.com"]
  http_path = ["/raw/"]
  http_method = ["POST"]
  action = "drop"

  [[container.rule]]
  id = "dns-deny"
  direction = "egress"
  ports = ["53"]
  dns_qname = ["*.evil.example"]
  action = "drop"

  [[container.rule]]
  id = "web-allowed"
  direction = "egress"
  proto = "tcp"
  ports = ["443", "80"]
  action = "allow"
  log = true
`

// fakeResetter records the resets the engine asks for.
type fakeResetter struct {
	calls []resetCall
}

type resetCall struct {
	client, server       netip.AddrPort
	clientSeq, serverSeq uint32
}

func (r *fakeResetter) Reset(client, server netip.AddrPort, clientSeq, serverSeq uint32) {
	r.calls = append(r.calls, resetCall{client, server, clientSeq, serverSeq})
}

type deepRig struct {
	t     *testing.T
	e     *Engine
	rec   *recorder
	rst   *fakeResetter
	now   time.Time
	id    uint32
	table *atomic.Pointer[rules.Table]
}

func newDeepRig(t *testing.T, config string) *deepRig {
	t.Helper()
	return newDeepRigWith(t, config, Options{})
}

// newDeepRigWith is newDeepRig with the engine's options o, to which it
// adds the tables, the recorder and the resetter.
func newDeepRigWith(t *testing.T, config string, o Options) *deepRig {
	t.Helper()
	tbl, err := rules.Parse("deep.toml", []byte(config))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	var p atomic.Pointer[rules.Table]
	p.Store(tbl)
	r := &deepRig{t: t, rec: &recorder{}, rst: &fakeResetter{}, now: time.Now(), table: &p}
	o.Tables, o.Sink, o.Resetter = &p, r.rec, r.rst
	r.e = New(o, 4096)
	return r
}

// judged is one Judge call's outcome: the packet's own verdict and the
// held packets it released.
type judged struct {
	id       uint32
	v        Verdict
	released []Released
}

func (r *deepRig) judge(p pkt, m Meta) judged {
	r.t.Helper()
	r.id++
	m.ID, m.Mark = r.id, 0x100
	v := r.e.Judge(p.bytes(r.t), m, r.now)
	return judged{id: r.id, v: v, released: slices.Clone(r.e.Released())}
}

// tcpConn is one TCP connection from the container app to a server.
type tcpConn struct {
	r          *deepRig
	c          pkt // client → server template
	cseq, sseq uint32
}

func (r *deepRig) dial(dst string, sport, dport uint16) *tcpConn {
	src := "172.17.0.5"
	if strings.Contains(dst, ":") {
		src = "fd00::5"
	}
	return &tcpConn{r: r, c: pkt{src: src, dst: dst, sport: sport, dport: dport, proto: "tcp"}, cseq: 1000, sseq: 50000}
}

// handshake runs the three-way handshake and checks that it passes without
// being bypassed (the flow still needs its fact).
func (c *tcpConn) handshake() {
	c.r.t.Helper()
	syn := c.c
	syn.flags, syn.seq = TCPFlagSYN, c.cseq-1
	synack := c.c.reply(TCPFlagSYN | TCPFlagACK)
	synack.seq, synack.ack = c.sseq-1, c.cseq
	ack := c.c
	ack.flags, ack.seq, ack.ack = TCPFlagACK, c.cseq, c.sseq
	for _, s := range []struct {
		p pkt
		m Meta
	}{{syn, fromContainer}, {synack, toContainer}, {ack, fromContainer}} {
		if got := c.r.judge(s.p, s.m); !got.v.Allow || got.v.Bypass || got.v.Hold || len(got.released) != 0 {
			c.r.t.Fatalf("handshake packet %+v: %+v", s.p.flags, got)
		}
	}
}

// data sends client bytes at offset off of the client's stream.
func (c *tcpConn) data(off int, b []byte, flags uint8) judged {
	c.r.t.Helper()
	p := c.c
	p.flags, p.seq, p.ack, p.payload = TCPFlagACK|flags, c.cseq+uint32(off), c.sseq, b
	return c.r.judge(p, fromContainer)
}

// reply sends server bytes.
func (c *tcpConn) reply(b []byte) judged {
	c.r.t.Helper()
	p := c.c.reply(TCPFlagACK)
	p.seq, p.ack, p.payload = c.sseq, c.cseq, b
	return c.r.judge(p, toContainer)
}

func clientHello(tb testing.TB, sni string) []byte {
	tb.Helper()
	client, server := net.Pipe()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_ = tls.Client(client, &tls.Config{ServerName: sni, InsecureSkipVerify: true}).Handshake()
	}()
	hdr := make([]byte, 5)
	if _, err := io.ReadFull(server, hdr); err != nil {
		tb.Fatalf("read record header: %v", err)
	}
	rec := make([]byte, 5+(int(hdr[3])<<8|int(hdr[4])))
	copy(rec, hdr)
	if _, err := io.ReadFull(server, rec[5:]); err != nil {
		tb.Fatalf("read record body: %v", err)
	}
	server.Close()
	client.Close()
	wg.Wait()
	return rec
}

func wantReleased(t *testing.T, got judged, allow bool, ids ...uint32) {
	t.Helper()
	if !got.v.Hold {
		t.Fatalf("deciding packet not held: %+v", got.v)
	}
	var gotIDs []uint32
	for _, r := range got.released {
		gotIDs = append(gotIDs, r.ID)
		if r.Verdict.Allow != allow || r.Verdict.Bypass != allow || r.Mark != 0x100 {
			t.Fatalf("released %+v, want allow=%t with bypass, mark kept", r, allow)
		}
	}
	if !slices.Equal(gotIDs, ids) {
		t.Fatalf("released ids %v, want %v (arrival order)", gotIDs, ids)
	}
}

func TestDeepTLSBlockedBySNI(t *testing.T) {
	for _, dst := range []string{"198.51.100.7", "2001:db8::7"} {
		r := newDeepRig(t, deepConfig)
		c := r.dial(dst, 40000, 443)
		c.handshake()
		got := c.data(0, clientHello(t, "PasteBin.COM"), 0)
		wantReleased(t, got, false, got.id)
		if len(r.rec.events) != 1 {
			t.Fatalf("events = %+v", r.rec.events)
		}
		ev := r.rec.events[0]
		if ev.RuleID != "no-pastebins" || ev.Action != rules.Drop || ev.L7 != rules.L7TLS || ev.SNI != "PasteBin.COM" ||
			ev.Src != netip.AddrPortFrom(mustAddr(c.c.src), 40000) || ev.Reason != "" {
			t.Fatalf("event = %+v", ev)
		}
		if want := (resetCall{ev.Src, ev.Dst, c.cseq, c.sseq}); len(r.rst.calls) != 1 || r.rst.calls[0] != want {
			t.Fatalf("resets = %+v, want %+v", r.rst.calls, want)
		}
		// Both directions stay dropped afterwards.
		if got := c.reply([]byte("late")); got.v.Allow {
			t.Fatal("server packet of a dropped flow allowed")
		}
		if got := c.data(0, []byte("again"), 0); got.v.Allow || got.v.Hold {
			t.Fatalf("client packet of a dropped flow: %+v", got.v)
		}
	}
}

func TestDeepTLSAllowedMovesToFastPath(t *testing.T) {
	r := newDeepRig(t, deepConfig)
	c := r.dial("198.51.100.7", 40001, 443)
	c.handshake()
	got := c.data(0, clientHello(t, "example.org"), 0)
	wantReleased(t, got, true, got.id)
	if len(r.rec.events) != 1 || r.rec.events[0].RuleID != "web-allowed" || r.rec.events[0].SNI != "example.org" {
		t.Fatalf("events = %+v (web-allowed has log = true)", r.rec.events)
	}
	if got := c.reply([]byte("server hello")); !got.v.Allow || !got.v.Bypass {
		t.Fatalf("packet after the decision: %+v, want allowed and bypassed", got.v)
	}
	if r.e.Held() != 0 || len(r.rst.calls) != 0 {
		t.Fatalf("held %d, resets %d", r.e.Held(), len(r.rst.calls))
	}
}

func TestDeepWildcardIsNotTheBareSuffix(t *testing.T) {
	r := newDeepRig(t, deepConfig)
	c := r.dial("198.51.100.7", 40002, 443)
	c.handshake()
	wantReleased(t, c.data(0, clientHello(t, "paste.ee"), 0), true, 4)
	c = r.dial("198.51.100.7", 40003, 443)
	c.handshake()
	got := c.data(0, clientHello(t, "x.y.paste.ee"), 0)
	wantReleased(t, got, false, got.id)
}

func TestDeepSplitOutOfOrderAndRetransmitted(t *testing.T) {
	r := newDeepRig(t, deepConfig)
	c := r.dial("198.51.100.7", 40004, 443)
	c.handshake()
	hello := clientHello(t, "pastebin.com")
	a, b := len(hello)/3, 2*len(hello)/3
	second := c.data(a, hello[a:b], 0)
	third := c.data(b, hello[b:], 0)
	if !second.v.Hold || !third.v.Hold || len(second.released)+len(third.released) != 0 {
		t.Fatalf("out-of-order segments not held: %+v %+v", second, third)
	}
	if got := c.data(a, hello[a:b], 0); got.v.Allow || got.v.Hold {
		t.Fatalf("retransmitted held segment: %+v, want dropped (the first copy is held)", got.v)
	}
	if got := c.reply(nil); !got.v.Allow || got.v.Hold {
		t.Fatalf("server's packet while the client's are held: %+v", got.v)
	}
	first := c.data(0, hello[:a], 0)
	wantReleased(t, first, false, second.id, third.id, first.id)
	if ev := r.rec.events; len(ev) != 1 || ev[0].SNI != "pastebin.com" {
		t.Fatalf("events = %+v", ev)
	}
	if s := r.e.Stats(); s.HeldDuplicates.Load() != 1 || s.HeldPackets.Load() != 3 {
		t.Fatalf("duplicates %d, held packets %d", s.HeldDuplicates.Load(), s.HeldPackets.Load())
	}
}

func TestDeepHTTP(t *testing.T) {
	tests := []struct {
		req   string
		allow bool
	}{
		{"POST /raw/abc HTTP/1.1\r\nHost: pastebin.com\r\n\r\n", false},
		{"POST /raw/abc HTTP/1.1\r\nHost: PASTEBIN.com:80\r\n\r\n", false},
		{"GET /raw/abc HTTP/1.1\r\nHost: pastebin.com\r\n\r\n", true},  // method differs
		{"POST /archive HTTP/1.1\r\nHost: pastebin.com\r\n\r\n", true}, // path differs
		{"POST /raw/abc HTTP/1.1\r\nHost: example.org\r\n\r\n", true},  // host differs
	}
	for i, tc := range tests {
		r := newDeepRig(t, deepConfig)
		c := r.dial("198.51.100.7", uint16(41000+i), 80)
		c.handshake()
		// Request line and Host in separate segments.
		cut := strings.Index(tc.req, "\r\n") + 2
		if got := c.data(0, []byte(tc.req[:cut]), 0); !got.v.Hold {
			t.Fatalf("%q: request line alone decided: %+v", tc.req, got)
		}
		got := c.data(cut, []byte(tc.req[cut:]), 0)
		wantReleased(t, got, tc.allow, got.id-1, got.id)
		ev := r.rec.events[len(r.rec.events)-1]
		if !tc.allow && (ev.RuleID != "no-pastebins" || ev.HTTPMethod != "POST" || ev.L7 != rules.L7HTTP || ev.HTTPPath == "") {
			t.Fatalf("%q: event = %+v", tc.req, ev)
		}
	}
}

func TestDeepUndecided(t *testing.T) {
	noSNI := clientHello(t, "")
	tests := []struct {
		name   string
		stream []byte
		flags  uint8
		reason string
	}{
		{"another protocol", []byte("SSH-2.0-OpenSSH_9.6\r\n"), 0, reasonNotProto},
		{"closed early", noSNI[:20], TCPFlagFIN, reasonClosed},
		{"malformed TLS", []byte{0x16, 0x02, 0x01, 0x00, 0x05, 1, 2, 3, 4, 5}, 0, reasonMalformed},
	}
	for _, undecided := range []string{"drop", "allow"} {
		for i, tc := range tests {
			r := newDeepRig(t, strings.Replace(deepConfig, `max_wait = "1s"`, `max_wait = "1s"`+"\nundecided = \""+undecided+"\"", 1))
			c := r.dial("198.51.100.7", uint16(42000+i), 443)
			c.handshake()
			got := c.data(0, tc.stream, tc.flags)
			wantReleased(t, got, undecided == "allow", got.id)
			if undecided == "drop" {
				ev := r.rec.events[len(r.rec.events)-1]
				if ev.RuleID != rules.RuleIDUndecided || ev.Reason != tc.reason || ev.Action != rules.Drop {
					t.Fatalf("%s: event = %+v, want reason %q", tc.name, ev, tc.reason)
				}
			}
		}
	}
}

// TestDeepAbsentFields: a whole ClientHello without server name, or a
// whole request without Host, is judged with the field absent: no value of
// it matches, so a deny-list lets it through and an allow-list drops it,
// by the rules, not by [inspect] undecided.
func TestDeepAbsentFields(t *testing.T) {
	allowList := `
[inspect]
max_packets = 4

[defaults]
egress = "drop"

[[container]]
name = "app"
ips = ["172.17.0.5"]

  [[container.rule]]
  id = "only-github"
  direction = "egress"
  proto = "tcp"
  ports = ["443", "80"]
  tls_sni = ["github.com"]
  http_host = ["github.com"]
  action = "allow"
`
	noSNI, noHost := clientHello(t, ""), []byte("GET /raw/x HTTP/1.0\r\n\r\n")
	for _, c := range []struct {
		name, config string
		stream       []byte
		allow        bool
		rule         string
	}{
		{"deny-list, ClientHello without SNI", deepConfig, noSNI, true, "web-allowed"},
		{"deny-list, request without Host", deepConfig, noHost, true, "web-allowed"},
		{"allow-list, ClientHello without SNI", allowList, noSNI, false, rules.RuleIDDefault},
		{"allow-list, request without Host", allowList, noHost, false, rules.RuleIDDefault},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := newDeepRig(t, c.config)
			conn := r.dial("198.51.100.7", 42100, 443)
			conn.handshake()
			got := conn.data(0, c.stream, 0)
			wantReleased(t, got, c.allow, got.id)
			if n := r.e.Stats().Undecided.Load(); n != 0 {
				t.Fatalf("%d flows undecided, want the rules to judge", n)
			}
			if !c.allow && len(r.rec.events) == 0 {
				t.Fatal("a dropped flow was not logged")
			}
			if len(r.rec.events) > 0 {
				ev := r.rec.events[0]
				if ev.RuleID != c.rule || ev.SNI != "" || ev.HTTPHost != "" || ev.Reason != "" {
					t.Fatalf("event %+v, want rule %s with the field absent", ev, c.rule)
				}
				if ev.L7 == rules.L7TLS && len(ev.JA4) != 36 {
					t.Fatalf("TLS event without its JA4: %+v", ev)
				}
			}
		})
	}
}

func TestDeepBudgets(t *testing.T) {
	hello := clientHello(t, "pastebin.com")
	t.Run("max_packets", func(t *testing.T) {
		r := newDeepRig(t, deepConfig) // max_packets = 4
		c := r.dial("198.51.100.7", 43000, 443)
		c.handshake()
		var ids []uint32
		for i := range 3 {
			got := c.data(i*10, hello[i*10:(i+1)*10], 0)
			if !got.v.Hold {
				t.Fatalf("segment %d not held", i)
			}
			ids = append(ids, got.id)
		}
		got := c.data(30, hello[30:40], 0)
		wantReleased(t, got, false, append(ids, got.id)...)
		if ev := r.rec.events[0]; ev.Reason != reasonPackets {
			t.Fatalf("reason = %q", ev.Reason)
		}
	})
	t.Run("max_bytes", func(t *testing.T) {
		r := newDeepRig(t, strings.Replace(deepConfig, "max_bytes = 4096", "max_bytes = 256", 1))
		c := r.dial("198.51.100.7", 43001, 443)
		c.handshake()
		if len(hello) < 300 {
			t.Fatalf("ClientHello of %d bytes is too short for this test", len(hello))
		}
		got := c.data(0, hello[:300], 0)
		wantReleased(t, got, false, got.id)
		if ev := r.rec.events[0]; ev.Reason != reasonBytes {
			t.Fatalf("reason = %q", ev.Reason)
		}
	})
	t.Run("max_wait", func(t *testing.T) {
		r := newDeepRig(t, deepConfig)
		c := r.dial("198.51.100.7", 43002, 443)
		c.handshake()
		first := c.data(0, hello[:10], 0)
		r.e.Tick(r.now.Add(900 * time.Millisecond))
		if n := len(r.e.Released()); n != 0 || r.e.Held() != 1 {
			t.Fatalf("decided before max_wait: released %d, held %d", n, r.e.Held())
		}
		r.e.Tick(r.now.Add(time.Second))
		rel := r.e.Released()
		if len(rel) != 1 || rel[0].ID != first.id || rel[0].Verdict.Allow || r.e.Held() != 0 {
			t.Fatalf("after max_wait: released %+v, held %d", rel, r.e.Held())
		}
		if ev := r.rec.events[0]; ev.Reason != reasonWait {
			t.Fatalf("reason = %q", ev.Reason)
		}
	})
	t.Run("max_held_flows", func(t *testing.T) {
		r := newDeepRig(t, deepConfig) // max_held_flows = 2
		for i := range 2 {
			c := r.dial("198.51.100.7", uint16(43010+i), 443)
			c.handshake()
			if got := c.data(0, hello[:10], 0); !got.v.Hold {
				t.Fatalf("flow %d not held", i)
			}
		}
		c := r.dial("198.51.100.7", 43012, 443)
		c.handshake()
		got := c.data(0, hello[:10], 0)
		if got.v.Hold || got.v.Allow {
			t.Fatalf("third flow with two held: %+v, want undecided drop at once", got.v)
		}
		ev := r.rec.events[len(r.rec.events)-1]
		if ev.Reason != reasonHoldFull || r.e.Stats().HoldFull.Load() != 1 {
			t.Fatalf("event = %+v", ev)
		}
		// Dropped after its handshake, like any inspected flow: both ends
		// are reset rather than left retransmitting into the drop.
		if want := (resetCall{ev.Src, ev.Dst, c.cseq, c.sseq}); len(r.rst.calls) != 1 || r.rst.calls[0] != want {
			t.Fatalf("resets = %+v, want %+v", r.rst.calls, want)
		}
		if got := c.data(0, hello[:10], 0); got.v.Allow || got.v.Hold || len(r.rst.calls) != 1 {
			t.Fatalf("retransmission of the dropped flow: %+v, %d resets; want dropped, no new reset", got.v, len(r.rst.calls))
		}
		r.e.ReleaseAll(r.now)
		if n := len(r.e.Released()); n != 2 || r.e.Held() != 0 {
			t.Fatalf("ReleaseAll released %d, held %d", n, r.e.Held())
		}
	})
}

// dnsQuery builds a DNS query message for names.
func dnsQuery(tb testing.TB, id uint16, names ...string) []byte {
	tb.Helper()
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: id, RecursionDesired: true})
	if err := b.StartQuestions(); err != nil {
		tb.Fatal(err)
	}
	for _, n := range names {
		if err := b.Question(dnsmessage.Question{Name: dnsmessage.MustNewName(n), Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET}); err != nil {
			tb.Fatal(err)
		}
	}
	msg, err := b.Finish()
	if err != nil {
		tb.Fatal(err)
	}
	return msg
}

func TestDeepDNSOverUDPPerQuery(t *testing.T) {
	r := newDeepRig(t, deepConfig)
	q := pkt{src: "172.17.0.5", dst: "198.51.100.53", sport: 5353, dport: 53, proto: "udp"}
	steps := []struct {
		payload []byte
		from    bool // from the client
		allow   bool
	}{
		{dnsQuery(t, 1, "example.org."), true, true},
		{[]byte("response"), false, true},
		{dnsQuery(t, 2, "a.Evil.Example."), true, false}, // same 5-tuple, judged on its own
		{dnsQuery(t, 3, "example.org.", "x.evil.example."), true, false},
		{dnsQuery(t, 4, "evil.example."), true, true}, // the bare suffix
		{[]byte("not dns"), true, false},              // undecided = drop
	}
	for i, s := range steps {
		p, m := q, fromContainer
		if !s.from {
			p, m = q.reply(0), toContainer
		}
		p.payload = s.payload
		got := r.judge(p, m)
		if got.v.Allow != s.allow || got.v.Bypass || got.v.Hold {
			t.Fatalf("step %d: %+v, want allow=%t never bypassed", i, got.v, s.allow)
		}
	}
	var qnames []string
	for _, ev := range r.rec.events {
		qnames = append(qnames, ev.QName+"/"+ev.RuleID)
	}
	want := []string{"a.Evil.Example/dns-deny", "x.evil.example/dns-deny", "/undecided"}
	if !slices.Equal(qnames, want) {
		t.Fatalf("logged %v, want %v", qnames, want)
	}
	if ev := r.rec.events[0]; ev.QueryID != 2 || ev.L7 != rules.L7DNS {
		t.Fatalf("event = %+v", ev)
	}
	if s := r.e.Stats(); s.Queries.Load() != 5 || s.BlockedQueries.Load() != 3 || s.AllowedQueries.Load() != 2 {
		t.Fatalf("queries %d, blocked %d, allowed %d", s.Queries.Load(), s.BlockedQueries.Load(), s.AllowedQueries.Load())
	}
}

func TestDeepDNSOverTCP(t *testing.T) {
	for _, tc := range []struct {
		name  string
		allow bool
	}{{"www.example.org.", true}, {"c2.evil.example.", false}} {
		r := newDeepRig(t, deepConfig)
		c := r.dial("198.51.100.53", 44000, 53)
		c.handshake()
		msg := dnsQuery(t, 7, tc.name)
		framed := append([]byte{byte(len(msg) >> 8), byte(len(msg))}, msg...)
		if got := c.data(0, framed[:2], 0); !got.v.Hold {
			t.Fatalf("%s: length prefix alone: %+v", tc.name, got.v)
		}
		got := c.data(2, framed[2:], 0)
		wantReleased(t, got, tc.allow, got.id-1, got.id)
	}
}

// A flow seen first after its handshake (the engine restarted, or the
// flow expired while its client kept retransmitting) is inspected from
// the first data it carries.
func TestDeepMidstream(t *testing.T) {
	r := newDeepRig(t, deepConfig)
	c := r.dial("198.51.100.7", 45000, 443)
	got := c.data(0, clientHello(t, "pastebin.com"), 0)
	wantReleased(t, got, false, got.id)
}

func TestDeepTablesWithoutL7StayFast(t *testing.T) {
	r := newDeepRig(t, testConfig)
	p := pkt{src: "203.0.113.2", dst: "172.17.0.2", sport: 40000, dport: 80, proto: "tcp", flags: TCPFlagSYN}
	if got := r.judge(p, toContainer); !got.v.Allow || !got.v.Bypass {
		t.Fatalf("first packet of a flow with no L7 rule: %+v, want decided at once", got.v)
	}
}

// The common case, an allowed TLS flow, must not allocate: handshake,
// ClientHello held and released, fast path.
func TestDeepDoesNotAllocate(t *testing.T) {
	r := newDeepRig(t, strings.Replace(deepConfig, "log = true", "log = false", 1))
	hello := clientHello(t, "example.org")
	mk := func(sport uint16) [][]byte {
		c := r.dial("198.51.100.7", sport, 443)
		syn := c.c
		syn.flags, syn.seq = TCPFlagSYN, c.cseq-1
		data := c.c
		data.flags, data.seq, data.payload = TCPFlagACK, c.cseq, hello
		return [][]byte{syn.bytes(t), data.bytes(t)}
	}
	flows := make([][][]byte, 200)
	for i := range flows {
		flows[i] = mk(uint16(46000 + i))
	}
	i := 0
	allocs := testing.AllocsPerRun(100, func() {
		for _, b := range flows[i] {
			r.e.Judge(b, Meta{InDev: ifBridge, OutDev: ifUplink}, r.now)
			r.e.Released()
		}
		i++
	})
	if allocs != 0 {
		t.Fatalf("an allowed TLS flow allocates %v times", allocs)
	}
	if r.e.Stats().Decided.Load() == 0 {
		t.Fatal("flows were not inspected")
	}
}

func BenchmarkDeepTLSFlow(b *testing.B) {
	tbl, err := rules.Parse("deep.toml", []byte(strings.Replace(deepConfig, "log = true", "log = false", 1)))
	if err != nil {
		b.Fatal(err)
	}
	var p atomic.Pointer[rules.Table]
	p.Store(tbl)
	e := New(Options{Tables: &p}, 1<<16)
	hello := clientHello(b, "example.org")
	const n = 4096
	syns, datas := make([][]byte, n), make([][]byte, n)
	for i := range n {
		c := pkt{src: "172.17.0.5", dst: "198.51.100.7", sport: uint16(10000 + i), dport: 443, proto: "tcp"}
		c.flags, c.seq = TCPFlagSYN, 999
		syns[i] = c.bytes(b)
		c.flags, c.seq, c.payload = TCPFlagACK, 1000, hello
		datas[i] = c.bytes(b)
	}
	now := time.Now()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		// A new clock per round lets flows of the previous round expire.
		j := i % n
		if j == 0 {
			now = now.Add(2 * tcpTimeout)
		}
		e.Judge(syns[j], Meta{InDev: ifBridge, OutDev: ifUplink}, now)
		e.Judge(datas[j], Meta{InDev: ifBridge, OutDev: ifUplink}, now)
		e.Released()
	}
}

// A held flow never delays another: while one flow's ClientHello is held,
// packets of other flows on the same engine are judged at once.
func TestDeepHeldFlowDoesNotBlockOthers(t *testing.T) {
	r := newDeepRig(t, deepConfig)
	held := r.dial("198.51.100.7", 47000, 443)
	held.handshake()
	hello := clientHello(t, "pastebin.com")
	if got := held.data(0, hello[:100], 0); !got.v.Hold {
		t.Fatalf("partial ClientHello not held: %+v", got.v)
	}
	other := pkt{src: "172.17.0.5", dst: "198.51.100.8", sport: 47001, dport: 22, proto: "tcp", flags: TCPFlagSYN}
	if got := r.judge(other, fromContainer); !got.v.Allow || !got.v.Bypass || got.v.Hold || len(got.released) != 0 {
		t.Fatalf("packet of another flow while one is held: %+v", got)
	}
	c := r.dial("198.51.100.7", 47002, 443)
	c.handshake()
	got := c.data(0, clientHello(t, "example.org"), 0)
	wantReleased(t, got, true, got.id)
	if r.e.Held() != 1 {
		t.Fatalf("held = %d, want the first flow still held", r.e.Held())
	}
}
