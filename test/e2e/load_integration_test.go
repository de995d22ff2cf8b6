package e2e

// End-to-end tests of nfqguard under load and at its limits, in the netns
// lab: a 30-second flood of small datagrams through the per-packet path
// with the kernel queue overflowing, fail-closed and fail-open; many more
// flows than the flow table has slots; and a worker holding as many flows
// as it may for deep inspection while it judges plain ones. Every flood
// stays inside the lab.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/nfqguard/nfqguard/flowlog"
	"github.com/nfqguard/nfqguard/internal/netlab"
	"github.com/nfqguard/nfqguard/internal/netlab/netlabtest"
)

// judgedWithin is the functional bound: once a flood has stopped,
// a new flow is judged (allowed and answered, or blocked and logged)
// within a second.
const judgedWithin = time.Second

// Memory of an engine, for the RSS bounds. The engine allocates its tables
// once, at start, from the configuration; a flood must not make it grow
// beyond them:
//
//	flow table   max_flows × (64-byte slot + 32-byte info)          per worker
//	receive      32 buffers × (65535 + 4096) bytes                   per worker
//	holds        max_held_flows × (max_bytes + max_packets × 16)     per worker
//
// The tables live on the Go heap, which the runtime lets grow to twice its
// live size before collecting (GOGC=100), so they count twice; runtimeRSS
// covers the rest: the binary's text and data, goroutine stacks, the
// metrics registry, the log's buffers and the runtime's own. For the flood
// below (2 workers, 65,536 flows, the [inspect] defaults) that is 97 MiB;
// the engine measures about 28 MiB idle and 30 MiB at the flood's peak
// here. For the flow-table test (1 worker, 1,024 flows) it is 60 MiB.
//
// Under -race the engine is built with the race detector, whose shadow
// memory multiplies all of it: the bound is then raceMemFactor times as
// large, the low end of the 5-10x the Go documentation gives (measured
// here: 71 MiB idle, 93 MiB at the flood's peak).
const (
	flowSlotBytes = 64 + 32
	recvBufBytes  = 32 * (65535 + 4096)
	heldPktBytes  = 16
	runtimeRSS    = 48 << 20
	raceMemFactor = 5
)

// rssBound is the RSS an engine with these settings may not exceed.
func rssBound(workers, maxFlows, maxHeldFlows, maxBytes, maxPackets int) uint64 {
	perWorker := maxFlows*flowSlotBytes + recvBufBytes + maxHeldFlows*(maxBytes+maxPackets*heldPktBytes)
	b := uint64(2*workers*perWorker + runtimeRSS)
	if raceBuild {
		b *= raceMemFactor
	}
	return b
}

// floodConfig: the per-packet path (fast_path = false) with two workers
// and a short kernel queue, so that a flood from one machine overflows it.
// web's udp 9999 (published on the host) takes the flood; tcp 80 and 81
// (published as 8080 and 8081) are allowed and blocked, for the checks
// after it. %[1]d is workers, %[2]v fail_open.
const floodConfig = `
[engine]
queue = 0
workers = %[1]d
fail_open = %[2]v
fast_path = false
queue_len = 64

[metrics]
listen = "127.0.0.1:9477"

[defaults]
ingress = "allow"
egress = "allow"

[[container]]
name = "web"
ips = ["172.17.0.2"]

  [[container.rule]]
  id = "flood-in"
  direction = "ingress"
  proto = "udp"
  ports = ["9999"]
  action = "allow"

  [[container.rule]]
  id = "web-http"
  direction = "ingress"
  proto = "tcp"
  ports = ["80"]
  action = "allow"

  [[container.rule]]
  id = "no-81"
  direction = "ingress"
  proto = "tcp"
  ports = ["81"]
  action = "drop"
`

// Flood settings: floodFor of floodFlows flows from the outside client to
// web's published udp 9999, from two senders at the highest rate the lab
// takes (about 100,000 datagrams a second here without an engine).
const (
	floodFor     = 30 * time.Second
	floodFlows   = 8
	floodWorkers = 2
	floodMaxFlow = 65536 // the [engine] max_flows default
)

// TestFlood floods the per-packet path for 30 s with the queue too short
// to keep up, once fail-closed and once fail-open. It is not parallel: two
// cores flat out for a minute would starve the timed exchanges of the other
// end-to-end tests, and theirs would blur this one's counts.
func TestFlood(t *testing.T) {
	for _, failOpen := range []bool{false, true} {
		t.Run(fmt.Sprintf("fail_open=%v", failOpen), func(t *testing.T) { testFlood(t, failOpen) })
	}
}

func testFlood(t *testing.T, failOpen bool) {
	publish := append(netlab.DefaultPublish(),
		netlab.Publish{HostPort: 9999, Container: 0, ContainerPort: 9999, Proto: "udp"},
		netlab.Publish{HostPort: 8081, Container: 0, ContainerPort: 81, Proto: "tcp"})
	l := netlabtest.New(t, netlab.Options{Publish: publish})
	web := l.Containers[0]
	must(t, l.ServeTCPEcho(web.NS, ap(web.Addr, 80)))
	must(t, l.ServeTCPEcho(web.NS, ap(web.Addr, 81)))
	sink, err := l.CountUDP(web.NS, ap(web.Addr, 9999))
	must(t, err)
	e := startTestEngine(t, l, fmt.Sprintf(floodConfig, floodWorkers, failOpen))
	pid := e.cmd.Process.Pid

	// Before: one exchange through the engine and one scrape, so that what
	// starts lazily has started, then the baseline.
	expectAllowed(t, "outside -> 8080 before the flood", tcpExchange(l, l.Out, 0, ap(l.HostOutside, 8080), allowTimeout))
	scrapeOK(t, l)
	goroutines0 := metricValue(scrapeOK(t, l), "go_goroutines")
	fds0 := openFDs(t, pid)

	// One flow from each of floodFlows addresses: --queue-balance spreads
	// flows over the queues by their addresses, not their ports.
	srcs, err := l.AddOutsideAddrs(floodFlows)
	must(t, err)
	var flows []netlab.FloodFlow
	for i, a := range srcs {
		flows = append(flows, netlab.FloodFlow{Src: ap(a, 40000+uint16(i)), Dst: ap(l.HostOutside, 9999)})
	}
	rule0, queued0 := ruleCounter(t, l), queuedSoFar(kernelQueues(t, l))
	link0, err := l.ContainerLinkStats(0)
	must(t, err)
	rss0, err := vmRSS(pid)
	must(t, err)
	mem := sampleRSS(t, e)
	res, err := l.Flood(context.Background(), l.Out, netlab.Flood{Flows: flows, Duration: floodFor, Senders: 2})
	mem.stop()
	must(t, err)
	t.Logf("flood: %d datagrams in %v (%.0f a second); engine RSS %d KiB before, peak %d KiB over %d samples",
		res.Sent, res.Elapsed.Round(time.Millisecond), float64(res.Sent)/res.Elapsed.Seconds(), rss0/1024, mem.peak/1024, mem.samples)
	if mem.died {
		t.Fatalf("the engine exited during the flood (%v); stderr:\n%s", e.exitErr(), e.stderr())
	}

	// Let what is in flight arrive: the sink's count settles. Then account
	// for every datagram sent: each crossed the redirect rule (its iptables
	// counter); the kernel queued some (the queues' packet ids), which the
	// engine judged; what it did not queue it dropped and counted
	// (fail-closed) or passed to web uncounted (fail-open). Delivered
	// counts what the host forwarded to web: received, dropped by the
	// sink's full socket, or by web's full backlog (the veth's tx_dropped);
	// a loaded machine may lose some there, after every firewall decision.
	// (A datagram the outside's veth cannot take is refused to the sender,
	// which sends it again: it is not counted as sent.)
	received := settle(sink.Received)
	sinkDrops, err := sink.Drops()
	must(t, err)
	link, err := l.ContainerLinkStats(0)
	must(t, err)
	linkDrops := link.TxDropped - link0.TxDropped
	delivered := received + sinkDrops + linkDrops
	kq := kernelQueues(t, l)
	var kDropped, kUser uint64
	for _, q := range kq {
		kDropped += q.dropped
		kUser += q.userDropped
	}
	crossed, queued := ruleCounter(t, l)-rule0, queuedSoFar(kq)-queued0
	m := scrapeOK(t, l)
	judged := uint64(metricValue(m, "nfqguard_rule_packets_total", "rule", "flood-in"))
	t.Logf("kernel queues %+v; sent %d, crossed the redirect %d, queued %d, judged %d, delivered %d (%d dropped by the sink's socket, %d by web's backlog)",
		kq, res.Sent, crossed, queued, judged, delivered, sinkDrops, linkDrops)
	if len(kq) != floodWorkers {
		t.Fatalf("%d queues bound in the kernel, want %d: %+v", len(kq), floodWorkers, kq)
	}
	if got := metricValue(m, "nfqguard_queue_kernel_dropped_total"); got != float64(kDropped) {
		t.Errorf("nfqguard_queue_kernel_dropped_total = %v, the kernel says %d", got, kDropped)
	}
	if got := metricValue(m, "nfqguard_queue_user_dropped_total"); got != float64(kUser) {
		t.Errorf("nfqguard_queue_user_dropped_total = %v, the kernel says %d", got, kUser)
	}
	if crossed != res.Sent || queued != judged || judged == 0 {
		t.Errorf("of %d datagrams sent, %d crossed the redirect and %d were queued, %d judged; want all sent crossing it and every one queued judged",
			res.Sent, crossed, queued, judged)
	}
	if !failOpen {
		// The queue overflowed; what did not fit was dropped, every one
		// counted and exported; web got exactly what was judged.
		if kDropped == 0 {
			t.Errorf("fail_open = false: the kernel dropped nothing from the queue (queue_dropped = 0): the flood did not overflow it")
		}
		if crossed-queued != kDropped+kUser {
			t.Errorf("fail_open = false: %d datagrams not queued but %d counted as dropped (%d queue full, %d socket)", crossed-queued, kDropped+kUser, kDropped, kUser)
		}
		if delivered != judged || received >= res.Sent {
			t.Errorf("fail_open = false: web got %d datagrams of %d sent, %d judged; want exactly the judged ones (the excess dropped)", delivered, res.Sent, judged)
		}
	} else {
		// The kernel passed what did not fit in the queue: web got
		// datagrams the engine never saw, and nothing was dropped. Kernel
		// fact: with the fail-open flag an overflowing packet is accepted
		// without being counted in queue_dropped (or user_dropped), and
		// without taking a packet id.
		if delivered <= judged {
			t.Errorf("fail_open = true: web got %d datagrams, no more than the %d judged: nothing passed the full queue", delivered, judged)
		}
		if kDropped != 0 || kUser != 0 {
			t.Errorf("fail_open = true: the kernel dropped %d (queue full) and %d (socket) packets, want none", kDropped, kUser)
		}
		if delivered != res.Sent || delivered-judged != crossed-queued {
			t.Errorf("fail_open = true: web got %d of %d datagrams sent, %d more than judged, with %d not queued; want all, the unqueued ones included",
				delivered, res.Sent, delivered-judged, crossed-queued)
		}
	}

	bound := rssBound(floodWorkers, floodMaxFlow, 256, 16384, 8)
	if mem.peak == 0 || mem.peak > bound {
		t.Errorf("engine RSS peaked at %d KiB during the flood, want at most %d KiB", mem.peak/1024, bound/1024)
	}
	// The flood is over: the engine's goroutines and descriptors are back
	// to what they were.
	// Goroutines that end on their own (a scrape's connection, a timer's
	// callback) may outlast the flood by seconds on this loaded machine;
	// a leak stays for good. One full-suite run in seven still saw 17 for
	// 16 after 5 s, hence the longer wait. Fewer than before is no leak:
	// the first count caught short-lived ones (a CI run saw 24 before, 20
	// after).
	var goroutines float64
	if !eventually(20*time.Second, func() bool {
		goroutines = metricValue(scrapeOK(t, l), "go_goroutines")
		return goroutines <= goroutines0
	}) {
		t.Errorf("go_goroutines = %v twenty seconds after the flood, %v before", goroutines, goroutines0)
	}
	var fds int
	// A leak shows as more descriptors; fewer only means the first count
	// caught a short-lived one (a scrape's connection closing).
	if !eventually(5*time.Second, func() bool { fds = openFDs(t, pid); return fds <= fds0 }) {
		t.Errorf("%d open descriptors five seconds after the flood, %d before", fds, fds0)
	}

	// Normal traffic is judged correctly, and at once.
	start := time.Now()
	err = tcpExchange(l, l.Out, 0, ap(l.HostOutside, 8080), allowTimeout)
	expectAllowed(t, "outside -> 8080 after the flood", err)
	if d := time.Since(start); err == nil && d >= judgedWithin {
		t.Errorf("outside -> 8080 after the flood took %v, want under %v", d, judgedWithin)
	}
	start = time.Now()
	const sport = 61081 // above the ephemeral range: never in TIME_WAIT from an earlier exchange
	blocked := make(chan error, 1)
	go func() { blocked <- tcpExchange(l, l.Out, sport, ap(l.HostOutside, 8081), 2*blockTimeout) }()
	rec, ok := e.waitRecord(allowTimeout, func(r flowlog.Record) bool {
		return r.Event == "blocked" && r.Rule == "no-81" && r.SrcPort == sport
	})
	if d := time.Since(start); !ok || d >= judgedWithin {
		t.Errorf("outside -> 8081 after the flood: blocked record %v after %v, want one within %v", ok, d, judgedWithin)
	} else {
		t.Logf("after the flood: allowed exchange and blocked record (%s) each within %v", rec.Rule, judgedWithin)
	}
	expectBlocked(t, "outside -> 8081 after the flood", <-blocked)

	e.stopClean()
}

// --- flow-table exhaustion -------------------------------------------------

// tableConfig: one worker with the smallest flow table, and the fast path.
// web's tcp 80 (published as 8080) is allowed, for long-lived connections;
// udp 7000, 7001 and 7002 (published the same) are dropped, for the flood,
// the idle flows and the active flow, each by a rule of its own so that
// each is counted on its own.
const tableConfig = `
[engine]
queue = 0
workers = 1
max_flows = 1024

[metrics]
listen = "127.0.0.1:9477"

[defaults]
ingress = "allow"
egress = "allow"

[[container]]
name = "web"
ips = ["172.17.0.2"]

  [[container.rule]]
  id = "web-http"
  direction = "ingress"
  proto = "tcp"
  ports = ["80"]
  action = "allow"

  [[container.rule]]
  id = "flood"
  direction = "ingress"
  proto = "udp"
  ports = ["7000"]
  action = "drop"

  [[container.rule]]
  id = "idle"
  direction = "ingress"
  proto = "udp"
  ports = ["7001"]
  action = "drop"

  [[container.rule]]
  id = "active"
  direction = "ingress"
  proto = "udp"
  ports = ["7002"]
  action = "drop"
`

// Flow-table test settings. The table has tableSlots slots, in buckets of
// 8; a new flow may take any of 16 slots (two buckets) and evicts the least
// recently seen of them when all are taken. The active flow sends one
// datagram after every activeEvery new flows: for it to be evicted, at
// least 7 of those 16 new flows would have to land in its bucket of 128,
// which does not happen (about 10^-9 a gap). The idle flows see 10 times
// the table's worth of new flows after their one datagram.
const (
	tableSlots   = 1024
	tableFlood   = 10 * tableSlots // distinct new flows
	tableAddrs   = 4               // outside addresses added for them
	idleFlows    = 16
	activeEvery  = 16
	tableRate    = 5000 // datagrams a second: the 4,096-packet queue absorbs a worker stalled for 0.8 s
	longLived    = 3
	keepAliveGap = 100 * time.Millisecond
)

// TestFlowTableExhaustion sends ten times more distinct flows than the flow
// table has slots, from several addresses and many ports (a UDP flood: each
// flow's first datagram is judged and dropped), and checks that the table
// stays within its slots and memory, that every flow judged beyond them
// evicted one and was counted, that the least recently seen flows go first
// (an idle flow is evicted and judged again when it comes back; a flow
// active throughout is never judged twice), and that long-lived connections
// on the connmark fast path never notice.
func TestFlowTableExhaustion(t *testing.T) {
	t.Parallel()
	publish := append(netlab.DefaultPublish(),
		netlab.Publish{HostPort: 7000, Container: 0, ContainerPort: 7000, Proto: "udp"},
		netlab.Publish{HostPort: 7001, Container: 0, ContainerPort: 7001, Proto: "udp"},
		netlab.Publish{HostPort: 7002, Container: 0, ContainerPort: 7002, Proto: "udp"})
	l := netlabtest.New(t, netlab.Options{Publish: publish})
	web := l.Containers[0]
	must(t, l.ServeTCPEcho(web.NS, ap(web.Addr, 80)))
	var sinks []*netlab.UDPCounter
	for _, port := range []uint16{7000, 7001, 7002} {
		s, err := l.CountUDP(web.NS, ap(web.Addr, port))
		must(t, err)
		sinks = append(sinks, s)
	}
	extra, err := l.AddOutsideAddrs(tableAddrs)
	must(t, err)
	e := startTestEngine(t, l, tableConfig)
	scrape := func() map[string]*dto.MetricFamily { t.Helper(); return scrapeOK(t, l) }

	// Long-lived allowed connections: judged on their SYN, then on the
	// connmark fast path, so their packets no longer reach the queue.
	var conns []*net.TCPConn
	for range longLived {
		c, err := dialTCP(l, l.Out, 0, ap(l.HostOutside, 8080), time.Now().Add(allowTimeout))
		must(t, err)
		t.Cleanup(func() { c.Close() })
		expectAllowed(t, "long-lived connection, first echo", echo(c))
		conns = append(conns, c)
	}
	// Idle flows: one datagram each, then nothing.
	for i := range uint16(idleFlows) {
		must(t, sendUDP(l, l.Out, 41000+i, ap(l.HostOutside, 7001), 1))
	}
	if !eventually(5*time.Second, func() bool {
		return metricValue(scrape(), "nfqguard_rule_flows_total", "rule", "idle") == idleFlows
	}) {
		t.Fatalf("the %d idle flows were not all judged", idleFlows)
	}
	httpPackets0 := metricValue(scrape(), "nfqguard_rule_packets_total", "rule", "web-http")

	// The flood: tableFlood new flows from tableAddrs+1 addresses and
	// many ports, with the active flow's datagram after every activeEvery.
	active := netlab.FloodFlow{Src: ap(l.Outside, 42000), Dst: ap(l.HostOutside, 7002)}
	flows := []netlab.FloodFlow{active}
	addrs := append(extra, l.Outside)
	for i := range tableFlood {
		a := addrs[i%len(addrs)]
		flows = append(flows, netlab.FloodFlow{Src: ap(a, uint16(10000+i/len(addrs))), Dst: ap(l.HostOutside, 7000)})
		if (i+1)%activeEvery == 0 {
			flows = append(flows, active)
		}
	}
	activeSent := 1 + tableFlood/activeEvery

	// The long-lived connections carry traffic throughout.
	keepDone := make(chan struct{})
	var keepWG sync.WaitGroup
	var keepMu sync.Mutex
	var keepErrs []error
	echoes := 0
	for _, c := range conns {
		keepWG.Add(1)
		go func() {
			defer keepWG.Done()
			tick := time.NewTicker(keepAliveGap)
			defer tick.Stop()
			for {
				select {
				case <-keepDone:
					return
				case <-tick.C:
				}
				err := echo(c)
				keepMu.Lock()
				echoes++
				if err != nil {
					keepErrs = append(keepErrs, err)
				}
				keepMu.Unlock()
			}
		}()
	}
	mem := sampleRSS(t, e)
	res, err := l.Flood(context.Background(), l.Out, netlab.Flood{Flows: flows, Count: len(flows), Rate: tableRate})
	if err == nil {
		// Keep the connections busy a little longer, while the queue drains.
		time.Sleep(500 * time.Millisecond)
	}
	close(keepDone)
	keepWG.Wait()
	mem.stop()
	must(t, err)
	if mem.died {
		t.Fatalf("the engine exited during the flood (%v); stderr:\n%s", e.exitErr(), e.stderr())
	}
	var m map[string]*dto.MetricFamily
	if !eventually(10*time.Second, func() bool {
		m = scrape()
		return metricValue(m, "nfqguard_rule_flows_total", "rule", "flood") == tableFlood &&
			metricValue(m, "nfqguard_rule_packets_total", "rule", "active") == float64(activeSent)
	}) {
		t.Fatalf("after the flood (%d datagrams sent): %v flood flows and %v active datagrams judged, want %d and %d; "+
			"kernel queue drops %v (the flood must not overflow the queue)",
			res.Sent, metricValue(m, "nfqguard_rule_flows_total", "rule", "flood"), metricValue(m, "nfqguard_rule_packets_total", "rule", "active"),
			tableFlood, activeSent, metricValue(m, "nfqguard_queue_kernel_dropped_total"))
	}

	slots := metricValue(m, "nfqguard_flow_table_slots")
	live := metricValue(m, "nfqguard_flow_table_flows")
	evictions := metricValue(m, "nfqguard_flow_table_evictions_total")
	judgedFlows := metricValue(m, "nfqguard_flows_total")
	t.Logf("%d datagrams in %v; flow table: %v of %v slots, %v evictions, %v flows judged; RSS peak %d KiB",
		res.Sent, res.Elapsed.Round(time.Millisecond), live, slots, evictions, judgedFlows, mem.peak/1024)
	if slots != tableSlots {
		t.Errorf("nfqguard_flow_table_slots = %v, want max_flows = %d", slots, tableSlots)
	}
	if live > slots {
		t.Errorf("nfqguard_flow_table_flows = %v, more than the %v slots", live, slots)
	}
	// No flow expires during the test (a dropped flow is kept a minute, an
	// allowed one longer): every flow judged took a free slot or evicted
	// one.
	if evictions != judgedFlows-live || evictions < tableFlood-tableSlots {
		t.Errorf("nfqguard_flow_table_evictions_total = %v, want the %v flows judged minus the %v in the table (at least %d)",
			evictions, judgedFlows, live, tableFlood-tableSlots)
	}
	if bound := rssBound(1, tableSlots, 256, 16384, 8); mem.peak == 0 || mem.peak > bound {
		t.Errorf("engine RSS peaked at %d KiB, want at most %d KiB", mem.peak/1024, bound/1024)
	}

	// The active flow was never evicted: judged once, every datagram of it
	// dropped by that one verdict, logged once.
	if got := metricValue(m, "nfqguard_rule_flows_total", "rule", "active"); got != 1 {
		t.Errorf("the active flow was judged %v times, want once: it was evicted while active", got)
	}
	if n := countSrc(e.records(), "blocked", "active", active.Src.Port()); n != 1 {
		t.Errorf("%d blocked records of the active flow, want 1:\n%s", n, fmtRecords(e.records()))
	}
	// The idle flows were: each summarised when it left the table, and
	// judged (and logged) again when it comes back.
	for i := range uint16(idleFlows) {
		must(t, sendUDP(l, l.Out, 41000+i, ap(l.HostOutside, 7001), 1))
	}
	if !eventually(5*time.Second, func() bool {
		return metricValue(scrape(), "nfqguard_rule_flows_total", "rule", "idle") == 2*idleFlows
	}) {
		t.Errorf("idle flows judged %v times after coming back, want each twice (%d): they were not evicted",
			metricValue(scrape(), "nfqguard_rule_flows_total", "rule", "idle"), 2*idleFlows)
	}
	for i := range uint16(idleFlows) {
		port := 41000 + i
		if !e.waitFor(5*time.Second, func() bool { return countSrc(e.recs, "blocked", "idle", port) == 2 }) {
			t.Errorf("idle flow from port %d: %d blocked records, want 2 (judged again after its eviction)", port, countSrc(e.records(), "blocked", "idle", port))
		}
		if n := countSrc(e.records(), "end", "idle", port); n != 1 {
			t.Errorf("idle flow from port %d: %d end records, want 1 (from its eviction)", port, n)
		}
	}
	// Dropped means dropped: nothing of the UDP flows reached web.
	for i, s := range sinks {
		if n := s.Received(); n != 0 {
			t.Errorf("web's udp %d received %d datagrams of dropped flows", 7000+i, n)
		}
	}

	// The fast-path connections never noticed: every echo worked, none of
	// their packets came back to the queue, and they still work.
	keepMu.Lock()
	if len(keepErrs) > 0 || echoes == 0 {
		t.Errorf("long-lived connections during the flood: %d of %d echoes failed: %v", len(keepErrs), echoes, keepErrs)
	}
	keepMu.Unlock()
	if got := metricValue(scrape(), "nfqguard_rule_packets_total", "rule", "web-http"); got != httpPackets0 {
		t.Errorf("web-http packets in the queue went from %v to %v: fast-path connections came back to the queue", httpPackets0, got)
	}
	for i, c := range conns {
		expectAllowed(t, fmt.Sprintf("long-lived connection %d after the flood", i), echo(c))
	}
	e.stopClean()
}

// countSrc counts records of event and rule from source port sport.
func countSrc(rs []flowlog.Record, event, rule string, sport uint16) int {
	n := 0
	for _, r := range rs {
		if r.Event == event && r.Rule == rule && r.SrcPort == sport {
			n++
		}
	}
	return n
}

// --- slow consumer ---------------------------------------------------------

// slowConfig: one worker, every packet through it (fast_path = false), and
// web's HTTP to port 80 of the outside judged by its Host. Port 9000 has no
// rule: plain flows, judged on their first packet. %d is max_held_flows.
const slowConfig = `
[engine]
queue = 0
workers = 1
fast_path = false

[inspect]
max_wait = "3s"
max_held_flows = %d
max_packets = 8
undecided = "drop"

[metrics]
listen = "127.0.0.1:9477"

[defaults]
ingress = "allow"
egress = "allow"

[[container]]
name = "web"
ips = ["172.17.0.2"]

  [[container.rule]]
  id = "no-pastebin"
  direction = "egress"
  proto = "tcp"
  ports = ["80"]
  http_host = ["pastebin.com"]
  action = "drop"
`

// Slow-consumer settings. plainBound is the bound: a plain flow's
// whole exchange (connect, echo, close) must take less than half the time
// a held flow waits. A held flow's reset may come late on a loaded
// machine, never early.
const (
	slowMaxWait = 3 * time.Second
	slowHeld    = 64
	plainBound  = slowMaxWait / 2
	partialHTTP = "GET /index.html HTTP/1.1\r\nUser-Agent: slow\r\n" // no Host, no end: the parser waits for more
	waitSlack   = 10 * time.Millisecond                              // clock granularity between the test and the engine
	resetLatest = slowMaxWait + 5*time.Second
	// Source ports of the held flows and of the one beyond the limit:
	// above the ephemeral range (32768-60999), so that no earlier
	// exchange's TIME_WAIT holds them.
	heldPort  = 61000
	extraPort = 61999
)

// TestSlowConsumer holds as many flows as the worker may (max_held_flows)
// at their budget, each waiting for an HTTP request that never completes,
// and checks that plain flows on the same worker are judged as if they were
// not there, while the held ones wait their max_wait and are then judged
// undecided.
func TestSlowConsumer(t *testing.T) {
	t.Parallel()
	l := netlabtest.New(t, netlab.Options{})
	web, out := l.Containers[0], l.Outside
	must(t, l.ServeTCPEcho(l.Out, ap(out, 80)))
	must(t, l.ServeTCPEcho(l.Out, ap(out, 9000)))
	e := startTestEngine(t, l, fmt.Sprintf(slowConfig, slowHeld))

	// A plain exchange first, so that the flows after it compare with a
	// warm engine.
	expectAllowed(t, "web -> outside:9000 before", tcpExchange(l, web.NS, 0, ap(out, 9000), allowTimeout))

	// Each connection is watched from the moment it sends: the reset must
	// come, and not before max_wait.
	type result struct {
		err   error
		after time.Duration
	}
	watch := func(c *net.TCPConn, sent time.Time) <-chan result {
		done := make(chan result, 1)
		go func() {
			err := readUntilReset(c, sent.Add(resetLatest))
			done <- result{err, time.Since(sent)}
		}()
		return done
	}
	// Plain flows, one after another, from before the first flow is held
	// until the last is released: while holds are set up, while they wait,
	// and while they are all decided at once.
	plainStop := make(chan struct{})
	plainDone := make(chan []error, 1)
	var rtts []time.Duration
	go func() {
		var errs []error
		for {
			select {
			case <-plainStop:
				plainDone <- errs
				return
			default:
			}
			start := time.Now()
			err := tcpExchange(l, web.NS, 0, ap(out, 9000), allowTimeout)
			d := time.Since(start)
			if err != nil {
				errs = append(errs, fmt.Errorf("plain flow %d: %w", len(rtts), err))
				continue
			}
			rtts = append(rtts, d)
			if d >= plainBound {
				errs = append(errs, fmt.Errorf("plain flow %d took %v, want under max_wait/2 = %v", len(rtts), d, plainBound))
			}
		}
	}()
	stopPlain := sync.OnceValue(func() []error { close(plainStop); return <-plainDone })
	t.Cleanup(func() { stopPlain() })

	var held []<-chan result
	for i := range slowHeld {
		c, err := dialTCP(l, web.NS, heldPort+uint16(i), ap(out, 80), time.Now().Add(allowTimeout))
		must(t, err)
		t.Cleanup(func() { c.Close() })
		sent := time.Now()
		if _, err := c.Write([]byte(partialHTTP)); err != nil {
			t.Fatalf("held flow %d: write: %v", i, err)
		}
		held = append(held, watch(c, sent))
	}
	var m map[string]*dto.MetricFamily
	if !eventually(slowMaxWait/2, func() bool {
		m = scrapeOK(t, l)
		return metricValue(m, "nfqguard_inspect_held_flows") == slowHeld
	}) {
		t.Fatalf("%v flows held, want %d (max_held_flows)", metricValue(m, "nfqguard_inspect_held_flows"), slowHeld)
	}
	// One more: the worker holds no more than max_held_flows, so this one
	// is judged undecided at once rather than held.
	extra, err := dialTCP(l, web.NS, extraPort, ap(out, 80), time.Now().Add(allowTimeout))
	must(t, err)
	t.Cleanup(func() { extra.Close() })
	extraSent := time.Now()
	_, err = extra.Write([]byte(partialHTTP))
	must(t, err)
	extraDone := watch(extra, extraSent)

	// The flow over the limit was not held: judged undecided and cut at
	// once.
	if r := <-extraDone; !errors.Is(r.err, syscall.ECONNRESET) {
		t.Errorf("flow beyond max_held_flows: %v after %v, want a reset", r.err, r.after)
	} else if r.after >= plainBound {
		t.Errorf("flow beyond max_held_flows reset after %v, want at once (under %v)", r.after, plainBound)
	}
	if _, ok := e.waitRecord(allowTimeout, func(r flowlog.Record) bool {
		return r.Event == "blocked" && r.Rule == "undecided" && r.SrcPort == extraPort && strings.Contains(r.Reason, "max_held_flows")
	}); !ok {
		t.Errorf("no undecided record for the flow beyond max_held_flows:\n%s", fmtRecords(e.records()))
	}

	// The held flows waited their max_wait, then were judged undecided
	// (drop) and reset.
	var slowest time.Duration
	for i, done := range held {
		r := <-done
		if !errors.Is(r.err, syscall.ECONNRESET) {
			t.Errorf("held flow %d: %v after %v, want a reset after max_wait", i, r.err, r.after)
			continue
		}
		slowest = max(slowest, r.after)
		if r.after < slowMaxWait-waitSlack {
			t.Errorf("held flow %d reset after %v, before max_wait = %v", i, r.after, slowMaxWait)
		}
	}
	t.Logf("held flows reset at most %v after they sent", slowest)
	for _, err := range stopPlain() {
		t.Errorf("while %d flows were held: %v", slowHeld, err)
	}
	if len(rtts) < 10 {
		t.Fatalf("only %d plain exchanges ran while the flows were held", len(rtts))
	}
	t.Logf("%d plain exchanges while %d flows were held, set up and released: slowest %v", len(rtts), slowHeld, slices.Max(rtts))
	for i := range slowHeld {
		port := heldPort + uint16(i)
		if _, ok := e.waitRecord(allowTimeout, func(r flowlog.Record) bool {
			return r.Event == "blocked" && r.Rule == "undecided" && r.SrcPort == port
		}); !ok {
			t.Errorf("held flow %d: no undecided record", i)
		}
	}
	for _, r := range e.records() {
		if r.Rule == "undecided" && r.SrcPort != extraPort && !strings.Contains(r.Reason, "max_wait") {
			t.Errorf("held flow judged undecided for another reason than max_wait: %+v", r)
		}
	}
	m = scrapeOK(t, l)
	if got := metricValue(m, "nfqguard_inspect_decided_total", "result", "undecided"); got != slowHeld+1 {
		t.Errorf("nfqguard_inspect_decided_total{result=undecided} = %v, want %d", got, slowHeld+1)
	}
	if got := metricValue(m, "nfqguard_inspect_held_flows"); got != 0 {
		t.Errorf("%v flows still held", got)
	}
	// The verdict-latency histogram times each batch from its receipt to
	// its verdicts: a held packet is counted with the batch that releases
	// it, so no sample carries the hold time, the plain flows' least of
	// all. (The held packets' own wait is not in it either.)
	lat := m["nfqguard_verdict_latency_seconds"].GetMetric()
	if len(lat) != 1 {
		t.Fatalf("nfqguard_verdict_latency_seconds: %d series, want 1", len(lat))
	}
	h, under := lat[0].GetHistogram(), -1.0
	for _, b := range h.GetBucket() {
		if b.GetUpperBound() == time.Second.Seconds() {
			under = float64(b.GetCumulativeCount())
		}
	}
	if under != float64(h.GetSampleCount()) || h.GetSampleCount() == 0 {
		t.Errorf("verdict latency: %v of %d samples within 1 s, want all (max_wait is %v)", under, h.GetSampleCount(), slowMaxWait)
	}
	e.stopClean()
}

// readUntilReset reads c until an error or the deadline and returns the
// error.
func readUntilReset(c *net.TCPConn, deadline time.Time) error {
	if err := c.SetReadDeadline(deadline); err != nil {
		return err
	}
	_, err := io.Copy(io.Discard, c)
	if err == nil {
		return io.EOF
	}
	return err
}

// --- engine process and kernel state ---------------------------------------

// scrapeOK scrapes the engine's metrics, failing the test on error.
func scrapeOK(t testing.TB, l *netlab.Lab) map[string]*dto.MetricFamily {
	t.Helper()
	m, err := scrapeMetrics(l)
	if err != nil {
		t.Fatalf("scrape metrics: %v", err)
	}
	return m
}

// rssSampler samples an engine's resident memory every 100 ms.
type rssSampler struct {
	done    chan struct{}
	stopped chan struct{}
	peak    uint64 // bytes
	samples int
	died    bool
}

// sampleRSS samples e's VmRSS until stop, noting whether it exited.
func sampleRSS(t testing.TB, e *engine) *rssSampler {
	s := &rssSampler{done: make(chan struct{}), stopped: make(chan struct{})}
	pid := e.cmd.Process.Pid
	go func() {
		defer close(s.stopped)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-e.done:
				s.died = true
				return
			default:
			}
			if rss, err := vmRSS(pid); err == nil {
				s.peak = max(s.peak, rss)
				s.samples++
			}
			select {
			case <-s.done:
				return
			case <-tick.C:
			}
		}
	}()
	t.Cleanup(s.stop)
	return s
}

// stop ends the sampling; the fields are final afterwards.
func (s *rssSampler) stop() {
	select {
	case <-s.done:
	default:
		close(s.done)
	}
	<-s.stopped
}

// vmRSS reads a process's resident set size from /proc/PID/status.
func vmRSS(pid int) (uint64, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmRSS:"); ok {
			kb, err := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb * 1024, err
		}
	}
	return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
}

// openFDs counts a process's open file descriptors.
func openFDs(t testing.TB, pid int) int {
	t.Helper()
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatalf("open descriptors of %d: %v", pid, err)
	}
	return len(ents)
}

// kernelQueue is one line of /proc/net/netfilter/nfnetlink_queue.
type kernelQueue struct {
	queue       uint16
	waiting     uint64 // packets in the queue now
	dropped     uint64 // queue_dropped: the queue was full
	userDropped uint64 // user_dropped: the listener's socket was full
	lastID      uint64 // id of the last packet queued: packets queued so far
}

// kernelQueues reads the queues bound in l's host namespace.
func kernelQueues(t testing.TB, l *netlab.Lab) []kernelQueue {
	t.Helper()
	var b []byte
	must(t, l.Do(l.Host, func() error {
		var err error
		b, err = os.ReadFile("/proc/thread-self/net/netfilter/nfnetlink_queue")
		return err
	}))
	var out []kernelQueue
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.Fields(line)
		if len(f) < 8 {
			continue
		}
		var v [8]uint64
		for i, s := range f[:8] {
			n, err := strconv.ParseUint(s, 10, 64)
			if err != nil {
				t.Fatalf("nfnetlink_queue line %q: %v", line, err)
			}
			v[i] = n
		}
		out = append(out, kernelQueue{queue: uint16(v[0]), waiting: v[2], dropped: v[5], userDropped: v[6], lastID: v[7]})
	}
	return out
}

// queuedSoFar is how many packets the kernel has queued on qs since they
// were bound: the sum of their last packet ids.
func queuedSoFar(qs []kernelQueue) uint64 {
	var n uint64
	for _, q := range qs {
		n += q.lastID
	}
	return n
}

// settle polls n until it has not changed for 500 ms (at most 10 s) and
// returns its last value.
func settle(n func() uint64) uint64 {
	last, since := n(), time.Now()
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if v := n(); v != last {
			last, since = v, time.Now()
		} else if time.Since(since) >= 500*time.Millisecond {
			break
		}
	}
	return last
}
