package queue

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	nfqueue "github.com/florianl/go-nfqueue/v2"
	"github.com/google/go-cmp/cmp"
	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"golang.org/x/sys/unix"

	"github.com/nfqguard/nfqguard/inspect"
	"github.com/nfqguard/nfqguard/rules"
)

// workerRules: the container app may not send mail (a drop on the SYN),
// nor talk HTTP to pastebin.com (a drop on the Host, after its packets were
// held), and may go anywhere else (allowed and bypassed).
const workerRules = `
[engine]
workers = 1
fast_path = true

[inspect]
max_wait = "1m"

[defaults]
ingress = "allow"
egress = "allow"

[[container]]
name = "app"
ips = ["172.17.0.5"]

  [[container.rule]]
  id = "no-smtp"
  direction = "egress"
  proto = "tcp"
  ports = ["25"]
  action = "drop"

  [[container.rule]]
  id = "no-pastebin"
  direction = "egress"
  proto = "tcp"
  ports = ["80"]
  http_host = ["pastebin.com"]
  action = "drop"
`

// The worker's marks, and the mark every test packet arrives with (a bit
// of someone else's, which the allow verdict must keep).
const (
	testMark   = 0x10000000
	testBypass = 0x20000000
	otherMark  = 0x4
)

// events records what the engine reports; safe for concurrent use.
type events struct {
	mu  sync.Mutex
	evs []inspect.Event
}

func (e *events) Emit(ev inspect.Event) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.evs = append(e.evs, ev)
	return true
}

// kinds lists the events as "verdict RULE" and "end RULE", in order.
func (e *events) kinds() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []string
	for _, ev := range e.evs {
		k := "verdict "
		if ev.Kind == inspect.EventEnd {
			k = "end "
		}
		out = append(out, k+ev.RuleID)
	}
	return out
}

// workerRig is a worker on a fakeSocket, judging with a real engine.
type workerRig struct {
	t      *testing.T
	w      *worker
	sock   *fakeSocket
	engine *inspect.Engine
	events *events
	id     uint32 // the last packet id handed out
}

func newWorkerRig(t *testing.T, config string) *workerRig {
	t.Helper()
	tbl, err := rules.Parse("worker.toml", []byte(config))
	if err != nil {
		t.Fatalf("Parse: %v", err)
	}
	var tables atomic.Pointer[rules.Table]
	tables.Store(tbl)
	r := &workerRig{t: t, sock: &fakeSocket{}, events: &events{}}
	r.engine = inspect.New(inspect.Options{Tables: &tables, Sink: r.events}, 1024)
	r.w = newWorker(r.sock, workerConfig{queue: 7, mark: testMark, bypass: testBypass, engine: r.engine})
	r.sock.end = r.w.stop
	return r
}

// run plays script to the worker, stops it once the script is played,
// and returns what run returned.
func (r *workerRig) run(script ...step) error {
	r.sock.script = script
	return r.w.run()
}

// packet hands out the next packet id for data.
func (r *workerRig) packet(data []byte) fakePacket {
	r.id++
	return fakePacket{id: r.id, mark: otherMark, payload: data}
}

// tcpFlow is one TCP connection from app (172.17.0.5) to dst.
type tcpFlow struct {
	r          *workerRig
	client     netip.AddrPort
	server     netip.AddrPort
	cseq, sseq uint32
}

func (r *workerRig) dial(dst string, sport uint16) *tcpFlow {
	return &tcpFlow{r: r, client: netip.AddrPortFrom(netip.MustParseAddr("172.17.0.5"), sport),
		server: netip.MustParseAddrPort(dst), cseq: 1000, sseq: 50000}
}

func (f *tcpFlow) syn() fakePacket {
	return f.r.packet(tcpPacket(f.r.t, f.client, f.server, seg{syn: true, seq: f.cseq - 1}))
}

// handshake is the three packets that open the connection.
func (f *tcpFlow) handshake() []fakePacket {
	return []fakePacket{
		f.syn(),
		f.r.packet(tcpPacket(f.r.t, f.server, f.client, seg{syn: true, ack: true, seq: f.sseq - 1, ackNum: f.cseq})),
		f.r.packet(tcpPacket(f.r.t, f.client, f.server, seg{ack: true, seq: f.cseq, ackNum: f.sseq})),
	}
}

// data is the client's bytes s at offset off of its stream.
func (f *tcpFlow) data(off int, s string) fakePacket {
	return f.r.packet(tcpPacket(f.r.t, f.client, f.server, seg{ack: true, seq: f.cseq + uint32(off), ackNum: f.sseq, payload: s}))
}

type seg struct {
	syn, ack    bool
	seq, ackNum uint32
	payload     string
}

// tcpPacket builds an IPv4 TCP packet from src to dst.
func tcpPacket(tb testing.TB, src, dst netip.AddrPort, s seg) []byte {
	tb.Helper()
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolTCP,
		SrcIP: net.IP(src.Addr().AsSlice()), DstIP: net.IP(dst.Addr().AsSlice())}
	tcp := &layers.TCP{SrcPort: layers.TCPPort(src.Port()), DstPort: layers.TCPPort(dst.Port()), Window: 1000,
		SYN: s.syn, ACK: s.ack, Seq: s.seq, Ack: s.ackNum}
	if err := tcp.SetNetworkLayerForChecksum(ip); err != nil {
		tb.Fatal(err)
	}
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
		ip, tcp, gopacket.Payload(s.payload)); err != nil {
		tb.Fatalf("serialize: %v", err)
	}
	return slices.Clone(buf.Bytes())
}

// The verdicts a worker sends, as the kernel must get them.
func allowed(p fakePacket) sentVerdict {
	return sentVerdict{id: p.id, verdict: nfqueue.NfRepeat, mark: p.mark | testMark | testBypass, withMark: true}
}

func allowedNoBypass(p fakePacket) sentVerdict {
	return sentVerdict{id: p.id, verdict: nfqueue.NfRepeat, mark: p.mark | testMark, withMark: true}
}

func dropped(p fakePacket) sentVerdict { return sentVerdict{id: p.id, verdict: nfqueue.NfDrop} }

func passed(ps []fakePacket) []sentVerdict {
	var out []sentVerdict
	for _, p := range ps {
		out = append(out, allowedNoBypass(p))
	}
	return out
}

func wantFlushes(t *testing.T, s *fakeSocket, want ...[]sentVerdict) {
	t.Helper()
	if diff := cmp.Diff(want, s.flushes, cmp.AllowUnexported(sentVerdict{})); diff != "" {
		t.Errorf("verdicts by flush (-want +got):\n%s", diff)
	}
}

// TestWorkerVerdicts: allow is NF_REPEAT with the packet's mark, the judged
// mark and, when the verdict bypasses, the bypass mark; drop is NF_DROP
// with no mark.
func TestWorkerVerdicts(t *testing.T) {
	for _, fastPath := range []bool{true, false} {
		t.Run(fmt.Sprintf("fast_path=%t", fastPath), func(t *testing.T) {
			config := workerRules
			if !fastPath {
				config = strings.Replace(config, "fast_path = true", "fast_path = false", 1)
			}
			r := newWorkerRig(t, config)
			web, mail, http := r.dial("198.51.100.7:443", 40000).syn(), r.dial("198.51.100.7:25", 40001).syn(),
				r.dial("198.51.100.7:80", 40002).syn()
			if err := r.run(step{batch: []fakePacket{web, mail, http}}); err != nil {
				t.Fatal(err)
			}
			webVerdict := allowed(web)
			if !fastPath {
				webVerdict = allowedNoBypass(web)
			}
			// The HTTP flow's handshake passes, not bypassed: its verdict
			// waits for the Host.
			wantFlushes(t, r.sock, []sentVerdict{webVerdict, dropped(mail), allowedNoBypass(http)})
		})
	}
}

// TestWorkerBatchLeavesInOneFlush: all the verdicts of a batch leave in one
// write, in the order of its packets, and each of its packets is observed
// once in the latency histogram, with the time the batch took.
func TestWorkerBatchLeavesInOneFlush(t *testing.T) {
	r := newWorkerRig(t, workerRules)
	a, b := r.dial("198.51.100.7:443", 40000), r.dial("198.51.100.8:443", 40001)
	first := []fakePacket{a.syn(), r.dial("198.51.100.7:25", 40002).syn(), b.syn()}
	second := []fakePacket{a.data(0, "hello"), b.data(0, "hello")}
	const slow = 20 * time.Millisecond
	if err := r.run(step{batch: first}, step{batch: second, flushDelay: slow}); err != nil {
		t.Fatal(err)
	}
	wantFlushes(t, r.sock,
		[]sentVerdict{allowed(first[0]), dropped(first[1]), allowed(first[2])},
		[]sentVerdict{allowed(second[0]), allowed(second[1])})
	lat := &r.w.stats.Latency
	if lat.Count() != 5 {
		t.Errorf("latency observations = %d, want 5 (one per packet)", lat.Count())
	}
	if p90 := lat.Quantile(0.9); p90 < slow {
		t.Errorf("latency p90 = %v, want at least %v: the second batch's two packets waited for its slow write", p90, slow)
	}
	if c := r.engine.Counts(); c.Packets != 5 {
		t.Errorf("engine judged %d packets, want 5", c.Packets)
	}
}

// TestWorkerReleasedBeforeCurrent: packets held earlier and decided by the
// packet being judged are answered at once, before the packets after it,
// so that a flow's packets leave in the order they came.
func TestWorkerReleasedBeforeCurrent(t *testing.T) {
	r := newWorkerRig(t, workerRules)
	http := r.dial("198.51.100.7:80", 40000)
	hs := http.handshake()
	other := r.dial("198.51.100.8:443", 40001)
	head := http.data(0, "GET /raw/x HTTP/1.1\r\nHo")                               // held: no Host yet
	otherSyn := other.syn()                                                         // another flow, in between
	host := http.data(len("GET /raw/x HTTP/1.1\r\nHo"), "st: pastebin.com\r\n\r\n") // decides the flow
	after := other.data(0, "x")
	if err := r.run(step{batch: hs}, step{batch: []fakePacket{head, otherSyn, host, after}}); err != nil {
		t.Fatal(err)
	}
	wantFlushes(t, r.sock, passed(hs),
		[]sentVerdict{allowed(otherSyn), dropped(head), dropped(host), allowed(after)})
}

// TestWorkerStopReleasesHeld: a worker told to stop answers its held
// packets as undecided before the queue goes (the kernel would drop them),
// summarises its blocked flows, runs the calls still asked of it, and
// closes its socket on close.
func TestWorkerStopReleasesHeld(t *testing.T) {
	r := newWorkerRig(t, workerRules)
	http := r.dial("198.51.100.7:80", 40000)
	hs := http.handshake()
	held := http.data(0, "GET / HTTP/1.1\r\n")
	mail := r.dial("198.51.100.7:25", 40001).syn()
	ran := make(chan bool, 1)
	stop := step{before: func() {
		// Asked while the worker waits for packets, which it never gets
		// to handle: the call must still run.
		go func() { ran <- r.w.call(func() {}, 5*time.Second) }()
		waitQueued(t, r.w)
		r.w.stop()
	}}
	if err := r.run(step{batch: append(hs, held)}, step{batch: []fakePacket{mail}}, stop); err != nil {
		t.Fatal(err)
	}
	wantFlushes(t, r.sock, passed(hs), []sentVerdict{dropped(mail)}, []sentVerdict{dropped(held)})
	if !<-ran {
		t.Error("a call queued when the worker stopped did not run")
	}
	want := []string{"verdict no-smtp", "verdict undecided", "end no-smtp", "end undecided"}
	got := r.events.kinds()
	slices.Sort(got[2:]) // EndAll walks the flow table in slot order
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("events (-want +got):\n%s", diff)
	}
	r.events.mu.Lock()
	if reason := r.events.evs[1].Reason; reason != "undecided: engine stopping" {
		t.Errorf("held flow judged with reason %q, want the engine stopping", reason)
	}
	r.events.mu.Unlock()
	if err := r.w.close(); err != nil || !r.sock.closed {
		t.Errorf("close = %v, socket closed = %t", err, r.sock.closed)
	}
}

// TestWorkerTimeoutTicksHeldFlows: when no packet comes, held flows still
// time out (max_wait) and their packets are answered.
func TestWorkerTimeoutTicksHeldFlows(t *testing.T) {
	r := newWorkerRig(t, strings.Replace(workerRules, `max_wait = "1m"`, `max_wait = "10ms"`, 1))
	http := r.dial("198.51.100.7:80", 40000)
	hs := http.handshake()
	held := http.data(0, "GET / HTTP/1.1\r\n")
	later := r.dial("198.51.100.7:443", 40001).syn()
	if err := r.run(
		step{batch: append(hs, held)},
		step{err: errTimeout}, // within max_wait: nothing to send
		step{err: errTimeout, before: func() { time.Sleep(30 * time.Millisecond) }},
		step{batch: []fakePacket{later}},
	); err != nil {
		t.Fatal(err)
	}
	wantFlushes(t, r.sock, passed(hs), []sentVerdict{dropped(held)}, []sentVerdict{allowed(later)})
	r.events.mu.Lock()
	if len(r.events.evs) == 0 || r.events.evs[0].Reason != "undecided: max_wait passed before the fact was seen" {
		t.Errorf("events %+v, want the held flow judged when max_wait passed", r.events.evs)
	}
	r.events.mu.Unlock()
	if n := r.w.stats.Latency.Count(); n != 4 {
		t.Errorf("latency observations = %d, want 4: the batches' own verdicts, not the timed-out one", n)
	}
}

// TestWorkerENOBUFSIsNotFatal: overruns are counted and the worker goes on,
// however many come in a row.
func TestWorkerENOBUFSIsNotFatal(t *testing.T) {
	r := newWorkerRig(t, workerRules)
	var script []step
	for range 2 * maxRecvErrors {
		script = append(script, step{err: unix.ENOBUFS})
	}
	syn := r.dial("198.51.100.7:443", 40000).syn()
	if err := r.run(append(script, step{batch: []fakePacket{syn}})...); err != nil {
		t.Fatalf("run after %d ENOBUFS: %v", 2*maxRecvErrors, err)
	}
	wantFlushes(t, r.sock, []sentVerdict{allowed(syn)})
	if n, e := r.w.stats.ENOBUFS.Load(), r.w.stats.RecvErrors.Load(); n != 2*maxRecvErrors || e != 0 {
		t.Errorf("ENOBUFS = %d, RecvErrors = %d; want %d and 0", n, e, 2*maxRecvErrors)
	}
}

// TestWorkerReceiveErrors: failed receives are counted; maxRecvErrors in a
// row end the worker with the error, and a good receive starts the count
// again.
func TestWorkerReceiveErrors(t *testing.T) {
	fails := func(n int) []step {
		s := make([]step, n)
		for i := range s {
			s[i] = step{err: unix.EIO}
		}
		return s
	}
	t.Run("reset by a good receive", func(t *testing.T) {
		r := newWorkerRig(t, workerRules)
		syn := r.dial("198.51.100.7:443", 40000).syn()
		script := append(fails(maxRecvErrors-1), step{batch: []fakePacket{syn}})
		if err := r.run(append(script, fails(maxRecvErrors-1)...)...); err != nil {
			t.Fatalf("run: %v, want nil: no %d failures in a row", err, maxRecvErrors)
		}
		wantFlushes(t, r.sock, []sentVerdict{allowed(syn)})
		if n := r.w.stats.RecvErrors.Load(); n != 2*(maxRecvErrors-1) {
			t.Errorf("RecvErrors = %d, want %d", n, 2*(maxRecvErrors-1))
		}
	})
	t.Run("too many in a row", func(t *testing.T) {
		r := newWorkerRig(t, workerRules)
		syn := r.dial("198.51.100.7:443", 40000).syn()
		err := r.run(append(fails(maxRecvErrors), step{batch: []fakePacket{syn}})...)
		if !errors.Is(err, unix.EIO) || !strings.Contains(err.Error(), "queue 7: receive") {
			t.Fatalf("run = %v, want queue 7's receive error wrapping EIO", err)
		}
		if r.sock.received != maxRecvErrors || len(r.sock.flushes) != 0 {
			t.Errorf("received %d steps and flushed %d times after the last failure, want %d and 0",
				r.sock.received, len(r.sock.flushes), maxRecvErrors)
		}
		if n := r.w.stats.RecvErrors.Load(); n != maxRecvErrors {
			t.Errorf("RecvErrors = %d, want %d", n, maxRecvErrors)
		}
	})
}

// TestWorkerVerdictErrors: verdicts the kernel refused (reported with a
// later batch) and failed writes, after a batch or a timeout, are counted.
func TestWorkerVerdictErrors(t *testing.T) {
	r := newWorkerRig(t, strings.Replace(workerRules, `max_wait = "1m"`, `max_wait = "10ms"`, 1))
	http := r.dial("198.51.100.7:80", 40000)
	hs := http.handshake()
	held := http.data(0, "GET / HTTP/1.1\r\n")
	if err := r.run(
		step{batch: hs[:1], refused: 2, flushErr: unix.ENOENT},
		step{batch: append(hs[1:], held)},
		step{err: errTimeout, flushErr: unix.ENOENT, before: func() { time.Sleep(30 * time.Millisecond) }},
	); err != nil {
		t.Fatal(err)
	}
	if n := r.w.stats.VerdictErrors.Load(); n != 4 {
		t.Errorf("VerdictErrors = %d, want 4: 2 refused, a failed write after a batch and one after a timeout", n)
	}
	wantFlushes(t, r.sock, passed(hs[:1]), passed(hs[1:]), []sentVerdict{dropped(held)})
}

// TestWorkerCall: a function asked of the worker runs on its goroutine
// between two batches, when no verdict is waiting to be sent; a call the
// worker does not get to gives up.
func TestWorkerCall(t *testing.T) {
	r := newWorkerRig(t, workerRules)
	var flushesSeen, pendingSeen int
	ran := make(chan bool, 1)
	go func() {
		ran <- r.w.call(func() { flushesSeen, pendingSeen = len(r.sock.flushes), len(r.sock.pending) }, 5*time.Second)
	}()
	a, b := r.dial("198.51.100.7:443", 40000), r.dial("198.51.100.8:443", 40001)
	if err := r.run(
		step{batch: []fakePacket{a.syn(), b.syn()}, before: func() { waitQueued(t, r.w) }},
		step{batch: []fakePacket{a.data(0, "x")}},
	); err != nil {
		t.Fatal(err)
	}
	if !<-ran {
		t.Fatal("call did not run")
	}
	if flushesSeen != 1 || pendingSeen != 0 {
		t.Errorf("call ran after %d flushes with %d verdicts pending, want after the first batch's flush and none pending",
			flushesSeen, pendingSeen)
	}

	idle := newWorkerRig(t, workerRules) // never run
	if idle.w.call(func() { t.Error("call ran on a worker that does not run") }, 10*time.Millisecond) {
		t.Error("call to a worker that does not run reported success")
	}
}

// waitQueued waits until a call is waiting for w.
func waitQueued(t *testing.T, w *worker) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); len(w.calls) == 0; time.Sleep(time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("no call queued")
		}
	}
}

// TestWorkerBatchDoesNotAllocate: judging a full batch from a real nfq,
// through the socket interface, and writing its verdicts allocates
// nothing.
func TestWorkerBatchDoesNotAllocate(t *testing.T) {
	r := newWorkerRig(t, workerRules)
	devNull, err := unix.Open(os.DevNull, unix.O_WRONLY|unix.O_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	n := &nfq{fd: devNull, out: make([]byte, 0, recvBatch*verdictLen)}
	t.Cleanup(func() { _ = n.close() })
	web, mail := r.dial("198.51.100.7:443", 40000), r.dial("198.51.100.7:25", 40001)
	msgs := [][]byte{
		packetMsg(1, otherMark, 0, 0, web.syn().payload),
		packetMsg(2, otherMark, 0, 0, web.data(0, "hello").payload),
		packetMsg(3, otherMark, 0, 0, mail.syn().payload),
	}
	for i := range n.bufs {
		n.bufs[i] = make([]byte, recvBuf)
		n.hdrs[i].len = uint32(copy(n.bufs[i], msgs[i%len(msgs)]))
	}
	n.n = recvBatch
	r.w.q = n
	if a := testing.AllocsPerRun(100, r.w.batch); a != 0 {
		t.Errorf("a batch of %d packets allocates %v times", recvBatch, a)
	}
	if c := r.engine.Counts(); c.Allowed == 0 || c.Dropped == 0 {
		t.Errorf("engine counts %+v: want both verdicts judged", c)
	}
}
