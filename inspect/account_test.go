package inspect

import (
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nfqguard/nfqguard/rules"
)

// captureRec records what the engine captures.
type captureRec struct{ pkts [][]byte }

func (c *captureRec) Capture(data []byte, _ time.Time) {
	c.pkts = append(c.pkts, append([]byte(nil), data...))
}

// pickySink takes events while take is true.
type pickySink struct {
	take   bool
	events []Event
}

func (s *pickySink) Emit(ev Event) bool {
	if s.take {
		s.events = append(s.events, ev)
	}
	return s.take
}

type accountRig struct {
	t     *testing.T
	e     *Engine
	sink  *pickySink
	capt  *captureRec
	rst   *fakeResetter
	table atomic.Pointer[rules.Table]
}

func newAccountRig(t *testing.T, config string) *accountRig {
	t.Helper()
	r := &accountRig{t: t, sink: &pickySink{take: true}, capt: &captureRec{}, rst: &fakeResetter{}}
	r.load(config, 0)
	r.e = New(Options{Tables: &r.table, Bridges: fakeBridges{ifBridge: true}, Sink: r.sink, Capture: r.capt, Resetter: r.rst}, 4096)
	return r
}

// load swaps in config as generation gen, as a reload does.
func (r *accountRig) load(config string, gen uint64) {
	r.t.Helper()
	tbl, err := rules.Parse("test.toml", []byte(config))
	if err != nil {
		r.t.Fatal(err)
	}
	tbl.Generation = gen
	r.table.Store(tbl)
}

func (r *accountRig) ruleCount(rule string) RuleCount {
	for _, c := range r.e.RuleCounts(nil) {
		if c.RuleID == rule {
			return c
		}
	}
	return RuleCount{}
}

func (r *accountRig) ends() []Event {
	var out []Event
	for _, ev := range r.sink.events {
		if ev.Kind == EventEnd {
			out = append(out, ev)
		}
	}
	return out
}

// TestBlockedFlowSummary: a blocked flow whose verdict was logged gets one
// end event with its packets, bytes and span when its slot expires, found
// by the sweep without another packet of its own.
func TestBlockedFlowSummary(t *testing.T) {
	r := newAccountRig(t, testConfig)
	start := time.Now()
	syn := pkt{src: "203.0.113.2", dst: "172.17.0.2", sport: 40001, dport: 22, proto: "tcp", flags: TCPFlagSYN}
	b := syn.bytes(t)
	for i := range 3 {
		if v := r.e.Judge(b, toContainer, start.Add(time.Duration(i)*time.Second)); v.Allow {
			t.Fatal("ssh to web allowed")
		}
	}
	if n := len(r.ends()); n != 0 {
		t.Fatalf("%d end events while the flow lives", n)
	}
	// Idle past the dropped-flow timeout: the sweep finds the slot.
	later := start.Add(2*time.Second + droppedTimeout + time.Second)
	for i := range len(r.e.flows.slots)/sweepSlots + 1 {
		r.e.Tick(later.Add(time.Duration(i) * sweepEvery))
	}
	ends := r.ends()
	if len(ends) != 1 {
		t.Fatalf("end events = %+v, want 1", ends)
	}
	ev := ends[0]
	want := Event{Kind: EventEnd, Time: ev.Time, Start: ev.Start, Action: rules.Drop, RuleID: "default", Container: "web",
		Direction: rules.Ingress, Proto: rules.ProtoTCP, Src: netip.MustParseAddrPort("203.0.113.2:40001"),
		Dst: netip.MustParseAddrPort("172.17.0.2:22"), Packets: 3, Bytes: uint64(3 * len(b))}
	if ev != want {
		t.Errorf("end = %+v\nwant  %+v", ev, want)
	}
	if d := ev.Time.Sub(ev.Start); d < 2*time.Second-time.Millisecond || d > 2*time.Second+time.Millisecond {
		t.Errorf("span %v, want 2s", d)
	}
	if got := r.e.Counts().FlowTableFlows; got != 0 {
		t.Errorf("flow table holds %d flows after the sweep, want 0", got)
	}
}

// TestEndAllAndRefusedVerdicts: stopping summarises live blocked flows, but
// not those whose verdict the sink refused (rate-limited), nor allowed ones.
func TestEndAllAndRefusedVerdicts(t *testing.T) {
	r := newAccountRig(t, testConfig)
	now := time.Now()
	r.e.Judge(pkt{src: "203.0.113.2", dst: "172.17.0.2", sport: 40001, dport: 22, proto: "tcp", flags: TCPFlagSYN}.bytes(t), toContainer, now)
	r.sink.take = false
	r.e.Judge(pkt{src: "203.0.113.2", dst: "172.17.0.2", sport: 40002, dport: 22, proto: "tcp", flags: TCPFlagSYN}.bytes(t), toContainer, now)
	r.sink.take = true
	r.e.Judge(pkt{src: "203.0.113.2", dst: "172.17.0.2", sport: 40003, dport: 80, proto: "tcp", flags: TCPFlagSYN}.bytes(t), toContainer, now)
	if got := r.e.Counts().FlowTableFlows; got != 3 {
		t.Errorf("flow table flows = %d, want 3", got)
	}
	r.e.EndAll()
	ends := r.ends()
	if len(ends) != 1 || ends[0].Src.Port() != 40001 {
		t.Fatalf("ends = %+v, want only the flow from port 40001", ends)
	}
	r.e.EndAll()
	if n := len(r.ends()); n != 1 {
		t.Errorf("a second EndAll logged %d ends in all, want 1", n)
	}
}

// TestRuleCounts: flows and packets are counted by the rule that judged
// them, including the engine's own "default".
func TestRuleCounts(t *testing.T) {
	r := newAccountRig(t, testConfig)
	now := time.Now()
	http := pkt{src: "203.0.113.2", dst: "172.17.0.2", sport: 40001, dport: 80, proto: "tcp", flags: TCPFlagSYN}
	r.e.Judge(http.bytes(t), toContainer, now)
	r.e.Judge(http.reply(TCPFlagSYN|TCPFlagACK).bytes(t), fromContainer, now)
	r.e.Judge(pkt{src: "203.0.113.2", dst: "172.17.0.2", sport: 40002, dport: 80, proto: "tcp", flags: TCPFlagSYN}.bytes(t), toContainer, now)
	ssh := pkt{src: "203.0.113.2", dst: "172.17.0.2", sport: 40003, dport: 22, proto: "tcp", flags: TCPFlagSYN}.bytes(t)
	for range 4 {
		r.e.Judge(ssh, toContainer, now)
	}
	if c := r.ruleCount("web-http"); c.Flows != 2 || c.Packets != 3 || c.Action != rules.Allow || c.Container != "web" || c.Direction != rules.Ingress {
		t.Errorf("web-http = %+v, want 2 flows, 3 packets, allow, web, ingress", c)
	}
	if c := r.ruleCount("default"); c.Flows != 1 || c.Packets != 4 || c.Action != rules.Drop {
		t.Errorf("default = %+v, want 1 flow, 4 packets, drop", c)
	}
	c := r.e.Counts()
	if c.FastPath != 2 || c.Blocked != 1 || c.Flows != 3 {
		t.Errorf("counts: fast path %d, blocked %d, flows %d; want 2, 1, 3", c.FastPath, c.Blocked, c.Flows)
	}
}

// TestCaptureFirstPackets: the first pcap_packets packets of a blocked flow
// are captured, nothing of an allowed one.
func TestCaptureFirstPackets(t *testing.T) {
	r := newAccountRig(t, testConfig+"\n[log]\npcap = \"x.pcap\"\npcap_packets = 2\n")
	now := time.Now()
	ssh := pkt{src: "203.0.113.2", dst: "172.17.0.2", sport: 40003, dport: 22, proto: "tcp", flags: TCPFlagSYN}.bytes(t)
	for range 5 {
		r.e.Judge(ssh, toContainer, now)
	}
	r.e.Judge(pkt{src: "203.0.113.2", dst: "172.17.0.2", sport: 40001, dport: 80, proto: "tcp", flags: TCPFlagSYN}.bytes(t), toContainer, now)
	if len(r.capt.pkts) != 2 {
		t.Fatalf("captured %d packets, want 2", len(r.capt.pkts))
	}
	for _, p := range r.capt.pkts {
		if string(p) != string(ssh) {
			t.Error("captured a packet that is not the blocked flow's")
		}
	}
}

// TestRejudgeOnReload: after a reload, a dropped flow is judged again by
// the new table; an allowed one keeps its verdict unless
// rejudge_on_reload is set, then it is dropped, logged and cut.
func TestRejudgeOnReload(t *testing.T) {
	dropSSH := strings.Replace(testConfig, `ports = ["80", "8000-8100"]`, `ports = ["80", "22", "8000-8100"]`, 1)
	dropHTTP := strings.Replace(testConfig, `ports = ["80", "8000-8100"]`, `ports = ["8000-8100"]`, 1)
	ssh := pkt{src: "203.0.113.2", dst: "172.17.0.2", sport: 40003, dport: 22, proto: "tcp", flags: TCPFlagACK, seq: 100, ack: 200}
	http := pkt{src: "203.0.113.2", dst: "172.17.0.2", sport: 40001, dport: 80, proto: "tcp", flags: TCPFlagSYN}
	httpData := http
	httpData.flags, httpData.seq, httpData.ack = TCPFlagACK, 1001, 5001

	for _, rejudge := range []bool{false, true} {
		r := newAccountRig(t, testConfig)
		now := time.Now()
		if v := r.e.Judge(pkt{src: "203.0.113.2", dst: "172.17.0.2", sport: 40003, dport: 22, proto: "tcp", flags: TCPFlagSYN}.bytes(t), toContainer, now); v.Allow {
			t.Fatal("ssh allowed before the reload")
		}
		if v := r.e.Judge(http.bytes(t), toContainer, now); !v.Allow {
			t.Fatal("http dropped before the reload")
		}
		extra := ""
		if rejudge {
			extra = "\n[engine]\nrejudge_on_reload = true\n"
		}
		// The same generation changes nothing: Docker swaps keep it.
		r.load(strings.Replace(dropSSH, "[engine]\n", "[engine]\n"+strings.TrimPrefix(strings.TrimPrefix(extra, "\n[engine]\n"), "\n"), 1), 0)
		if v := r.e.Judge(ssh.bytes(t), toContainer, now); v.Allow {
			t.Fatalf("rejudge=%v: a dropped flow was judged again without a new generation", rejudge)
		}
		r.load(strings.Replace(dropSSH, "[engine]\n", "[engine]\n"+strings.TrimPrefix(extra, "\n[engine]\n"), 1), 1)
		if v := r.e.Judge(ssh.bytes(t), toContainer, now); !v.Allow {
			t.Errorf("rejudge=%v: dropped ssh flow still dropped after a reload that allows it", rejudge)
		}
		if ends := r.ends(); len(ends) != 1 || ends[0].Dst.Port() != 22 {
			t.Errorf("rejudge=%v: ends %+v, want the ssh flow's blocked span", rejudge, ends)
		}
		r.load(strings.Replace(dropHTTP, "[engine]\n", "[engine]\n"+strings.TrimPrefix(extra, "\n[engine]\n"), 1), 2)
		v := r.e.Judge(httpData.bytes(t), toContainer, now)
		if v.Allow == rejudge {
			t.Errorf("rejudge=%v: allowed http flow after a reload that drops it: allow=%v", rejudge, v.Allow)
		}
		if !rejudge {
			continue
		}
		last := r.sink.events[len(r.sink.events)-1]
		if last.Kind != EventVerdict || last.Action != rules.Drop || last.Reason == "" || last.Dst.Port() != 80 {
			t.Errorf("rejudged flow logged as %+v", last)
		}
		want := resetCall{netip.MustParseAddrPort("203.0.113.2:40001"), netip.MustParseAddrPort("172.17.0.2:80"), 1001, 5001}
		if len(r.rst.calls) != 1 || r.rst.calls[0] != want {
			t.Errorf("resets = %+v, want %+v", r.rst.calls, want)
		}
		if c := r.e.Counts(); c.Rejudged != 2 {
			t.Errorf("rejudged = %d, want 2", c.Rejudged)
		}
	}
}

// TestTopBlocked orders live blocked flows by packets.
func TestTopBlocked(t *testing.T) {
	r := newAccountRig(t, testConfig)
	now := time.Now()
	for i, n := range []int{2, 5, 1, 3} {
		b := pkt{src: "203.0.113.2", dst: "172.17.0.2", sport: uint16(40000 + i), dport: 22, proto: "tcp", flags: TCPFlagSYN}.bytes(t)
		for range n {
			r.e.Judge(b, toContainer, now)
		}
	}
	top := r.e.TopBlocked(3, now)
	if len(top) != 3 {
		t.Fatalf("top = %+v", top)
	}
	for i, want := range []uint32{5, 3, 2} {
		if top[i].Packets != want || top[i].RuleID != "default" || top[i].Container != "web" || top[i].Dst.Port() != 22 {
			t.Errorf("top[%d] = %+v, want %d packets of web's default", i, top[i], want)
		}
	}
}

// TestAccountingDoesNotAllocate: counting packets of judged flows, allowed
// and dropped, costs no allocation once each rule has its counters.
func TestAccountingDoesNotAllocate(t *testing.T) {
	r := newAccountRig(t, testConfig)
	now := time.Now()
	ssh := pkt{src: "203.0.113.2", dst: "172.17.0.2", sport: 40003, dport: 22, proto: "tcp", flags: TCPFlagSYN}.bytes(t)
	http := pkt{src: "203.0.113.2", dst: "172.17.0.2", sport: 40001, dport: 80, proto: "tcp", flags: TCPFlagSYN}.bytes(t)
	r.e.Judge(ssh, toContainer, now)
	r.e.Judge(http, toContainer, now)
	r.sink.take = false // keep the recorder from growing
	if n := testing.AllocsPerRun(100, func() {
		r.e.Judge(ssh, toContainer, now)
		r.e.Judge(http, toContainer, now)
		r.e.Tick(now)
	}); n != 0 {
		t.Errorf("%v allocations per round", n)
	}
}

// TestRuleCountersBoundedAcrossReloads: each reload's table has strings of
// its own; the counters still add up per rule, and the index of string
// pointers does not grow with the number of reloads.
func TestRuleCountersBoundedAcrossReloads(t *testing.T) {
	r := ruleCounters{index: map[ruleRef]uint32{}, byKey: map[ruleKey]uint32{}}
	names := []string{"web-http", "db-from-web", "default"}
	const reloads = 1000
	for range reloads {
		for _, n := range names {
			// strings.Clone: a new copy, as a reloaded file's table has.
			m := rules.Match{Container: strings.Clone("web"), RuleID: strings.Clone(n), Action: rules.Allow}
			r.count(&m, rules.Ingress, 2)
		}
	}
	if len(r.list) != len(names) {
		t.Fatalf("%d counters for %d rules", len(r.list), len(names))
	}
	for _, c := range r.list {
		if c.flows.Load() != reloads || c.packets.Load() != 2*reloads {
			t.Errorf("%s: %d flows, %d packets; want %d and %d", c.key.rule, c.flows.Load(), c.packets.Load(), reloads, 2*reloads)
		}
	}
	if limit := indexSlack * len(names); len(r.index) > limit {
		t.Errorf("index holds %d entries after %d reloads of %d rules, want at most %d", len(r.index), reloads, len(names), limit)
	}
}
