package e2e

// End-to-end fault tests: the engine SIGKILLed under traffic and started
// again (fail-closed: nothing passes unjudged while it is down), and the
// rule file reloaded 100 times under a steady flow mix (no flow judged by
// a half-swapped table, no error, no leak).

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/nfqguard/nfqguard/flowlog"
	"github.com/nfqguard/nfqguard/internal/netlab"
	"github.com/nfqguard/nfqguard/internal/netlab/netlabtest"
)

// --- servers and clients of the fault tests --------------------------------

// tagServer is a UDP echo server in a lab namespace that remembers every
// datagram (a tag) it received and whom from, so that a test can tell
// which requests reached the container, whatever happened to the answers.
type tagServer struct {
	mu    sync.Mutex
	seen  map[string]bool
	peers map[netip.AddrPort]bool
}

// serveTags starts a tagServer on addr in ns; it stops in cleanup.
func serveTags(t *testing.T, l *netlab.Lab, ns string, addr netip.AddrPort) *tagServer {
	t.Helper()
	s := &tagServer{seen: map[string]bool{}, peers: map[netip.AddrPort]bool{}}
	var pc *net.UDPConn
	must(t, l.Do(ns, func() error {
		var err error
		pc, err = net.ListenUDP("udp", net.UDPAddrFromAddrPort(addr))
		return err
	}))
	done := make(chan struct{})
	go func() {
		defer close(done)
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFromUDPAddrPort(buf)
			if errors.Is(err, net.ErrClosed) {
				return
			}
			if err != nil {
				continue
			}
			s.mu.Lock()
			s.seen[string(buf[:n])] = true
			s.peers[netip.AddrPortFrom(from.Addr().Unmap(), from.Port())] = true
			s.mu.Unlock()
			_, _ = pc.WriteToUDPAddrPort(buf[:n], from)
		}
	}()
	t.Cleanup(func() { pc.Close(); <-done })
	return s
}

func (s *tagServer) got(tag string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.seen[tag]
}

// heard reports whether a datagram came from peer.
func (s *tagServer) heard(peer netip.AddrPort) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.peers[peer]
}

func (s *tagServer) count() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.seen)
}

// peerServer is a TCP echo server in a lab namespace that counts the
// connections it accepted by peer address, and remembers each peer's
// address and port.
type peerServer struct {
	mu    sync.Mutex
	peers map[netip.Addr]int
	conns map[netip.AddrPort]bool
}

// servePeers starts a peerServer on addr in ns; it stops in cleanup.
func servePeers(t *testing.T, l *netlab.Lab, ns string, addr netip.AddrPort) *peerServer {
	t.Helper()
	s := &peerServer{peers: map[netip.Addr]int{}, conns: map[netip.AddrPort]bool{}}
	var ln net.Listener
	must(t, l.Do(ns, func() error {
		var err error
		ln, err = net.Listen("tcp", addr.String())
		return err
	}))
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if errors.Is(err, net.ErrClosed) {
				return
			}
			if err != nil {
				continue
			}
			peer := c.RemoteAddr().(*net.TCPAddr).AddrPort()
			peer = netip.AddrPortFrom(peer.Addr().Unmap(), peer.Port())
			s.mu.Lock()
			s.peers[peer.Addr()]++
			s.conns[peer] = true
			s.mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				_ = c.SetDeadline(time.Now().Add(30 * time.Second))
				_, _ = io.Copy(c, c)
			}()
		}
	}()
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	return s
}

// accepted reports whether a connection came from peer.
func (s *peerServer) accepted(peer netip.AddrPort) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.conns[peer]
}

func (s *peerServer) from(a netip.Addr) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.peers[a]
}

// talker keeps exchanging lines on an open connection until stopped,
// remembering when each exchange completed and the first error.
type talker struct {
	mu   sync.Mutex
	ok   []time.Time
	err  error
	done chan struct{}
}

// talk starts a talker on c, one line every 20 ms, each given 5 s.
func talk(c *net.TCPConn, stop <-chan struct{}) *talker {
	tk := &talker{done: make(chan struct{})}
	go func() {
		defer close(tk.done)
		buf := make([]byte, 64)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			msg := fmt.Sprintf("line %06d\n", i)
			err := c.SetDeadline(time.Now().Add(5 * time.Second))
			if err == nil {
				_, err = c.Write([]byte(msg))
			}
			if err == nil {
				_, err = io.ReadFull(c, buf[:len(msg)])
			}
			if err == nil && string(buf[:len(msg)]) != msg {
				err = fmt.Errorf("echo mismatch: sent %q, got %q", msg, buf[:len(msg)])
			}
			tk.mu.Lock()
			if err != nil {
				tk.err = fmt.Errorf("exchange %d at %s: %w", i, time.Now().Format(time.StampMicro), err)
				tk.mu.Unlock()
				return
			}
			tk.ok = append(tk.ok, time.Now())
			tk.mu.Unlock()
		}
	}()
	return tk
}

// between counts the exchanges completed in [from, to).
func (tk *talker) between(from, to time.Time) int {
	tk.mu.Lock()
	defer tk.mu.Unlock()
	n := 0
	for _, at := range tk.ok {
		if !at.Before(from) && at.Before(to) {
			n++
		}
	}
	return n
}

func (tk *talker) failure() error {
	tk.mu.Lock()
	defer tk.mu.Unlock()
	return tk.err
}

// udpTagged sends tag in one datagram from ns (source port sport) to dst
// and waits up to timeout for it to come back. begin is taken before the
// socket is made and sent when the write returned: the datagram crossed
// the host in between, or just after.
func udpTagged(l *netlab.Lab, ns string, sport uint16, dst netip.AddrPort, tag string, timeout time.Duration) (begin, sent time.Time, err error) {
	begin = time.Now()
	var c *net.UDPConn
	err = l.Do(ns, func() error {
		var err error
		c, err = net.DialUDP("udp", &net.UDPAddr{Port: int(sport)}, net.UDPAddrFromAddrPort(dst))
		return err
	})
	if err != nil {
		return begin, begin, err
	}
	defer c.Close()
	if _, err := c.Write([]byte(tag)); err != nil {
		return begin, begin, err
	}
	sent = time.Now()
	_ = c.SetDeadline(sent.Add(timeout))
	buf := make([]byte, len(tag)+1)
	n, err := c.Read(buf)
	if err == nil && string(buf[:n]) != tag {
		err = fmt.Errorf("echo mismatch: sent %q, got %q", tag, buf[:n])
	}
	return begin, sent, err
}

// --- crash and restart under traffic ----------------------------------------

// crashConfig: two queues, fail-closed, fast path; web's udp/54 (published
// on 5354) is dropped, the rest allowed. No rate limit on the flow log, so
// that every blocked flow has its record.
const crashConfig = `
[engine]
queue = 0
workers = 2
fail_open = false
fast_path = true

[log]
rate = 0

[defaults]
ingress = "allow"
egress = "allow"

[[container]]
name = "web"
ips = ["172.17.0.2", "fd00:17::2"]

  [[container.rule]]
  id = "web-no-54"
  direction = "ingress"
  proto = "udp"
  ports = ["54"]
  action = "drop"
`

// tagged is one request of the crash test's stream: a new UDP flow.
type tagged struct {
	tag         string
	sport, port uint16 // port: the host port dialled, 5353 (allowed) or 5354 (dropped)
	begin, sent time.Time
	err         error // nil: the echo came back
}

// TestCrashRestartUnderTraffic SIGKILLs a fail-closed engine in the middle
// of a stream of new flows, keeps the stream going while it is down, and
// starts it again with the same file.
func TestCrashRestartUnderTraffic(t *testing.T) {
	t.Parallel()
	l := netlabtest.New(t, netlab.Options{IPv6: true, Publish: []netlab.Publish{
		{HostPort: 8080, Container: 0, ContainerPort: 80, Proto: "tcp"},
		{HostPort: 5353, Container: 0, ContainerPort: 53, Proto: "udp"},
		{HostPort: 5354, Container: 0, ContainerPort: 54, Proto: "udp"},
	}})
	web := l.Containers[0]
	must(t, l.ServeTCPEcho(web.NS, ap(web.Addr, 80)))
	allowedSrv := serveTags(t, l, web.NS, ap(web.Addr, 53))
	droppedSrv := serveTags(t, l, web.NS, ap(web.Addr, 54))
	original := iptablesSave(t, l, false)
	original6 := iptablesSave(t, l, true)

	e1 := startTestEngine(t, l, crashConfig)
	requireOurRules(t, l, false, 1, 1)
	requireOurRules(t, l, true, 1, 1)

	// Long-lived connections, decided (and put on the fast path) by e1.
	stopTalk := make(chan struct{})
	var talkers []*talker
	for i := range 2 {
		c, err := dialTCP(l, l.Out, uint16(41001+i), ap(l.HostOutside, 8080), time.Now().Add(5*time.Second))
		must(t, err)
		t.Cleanup(func() { c.Close() })
		talkers = append(talkers, talk(c, stopTalk))
	}
	t.Cleanup(func() {
		select {
		case <-stopTalk:
		default:
			close(stopTalk)
		}
		for _, tk := range talkers {
			<-tk.done
		}
	})

	// The stream: every 5 ms a new flow from a port of its own, to the
	// allowed and the dropped port in turn, each waiting 2 s for its echo.
	var (
		mu      sync.Mutex
		reqs    []*tagged
		reqWG   sync.WaitGroup
		stopGen = make(chan struct{})
		genDone = make(chan struct{})
	)
	go func() {
		defer close(genDone)
		tick := time.NewTicker(5 * time.Millisecond)
		defer tick.Stop()
		for seq := 0; ; seq++ {
			select {
			case <-stopGen:
				return
			case <-tick.C:
			}
			r := &tagged{tag: fmt.Sprintf("req-%05d", seq), sport: uint16(20000 + seq), port: 5353}
			if seq%2 == 1 {
				r.port = 5354
			}
			if r.sport >= 32000 {
				return // far more than the test needs; the checks below count what was sent
			}
			mu.Lock()
			reqs = append(reqs, r)
			mu.Unlock()
			reqWG.Add(1)
			go func() {
				defer reqWG.Done()
				begin, sent, err := udpTagged(l, l.Out, r.sport, ap(l.HostOutside, r.port), r.tag, 2*time.Second)
				mu.Lock()
				r.begin, r.sent, r.err = begin, sent, err
				mu.Unlock()
			}()
		}
	}()
	stopStream := func() {
		select {
		case <-stopGen:
		default:
			close(stopGen)
		}
		<-genDone
		reqWG.Wait()
	}
	t.Cleanup(stopStream)

	time.Sleep(2500 * time.Millisecond)
	killAt := time.Now()
	e1.kill()
	deadAt := time.Now()
	// Stale rules stay: the redirect now leads to queues nobody listens
	// on, and without --queue-bypass the kernel drops what it sends there.
	requireOurRules(t, l, false, 1, 1)
	requireOurRules(t, l, true, 1, 1)
	expectBlocked(t, "new TCP connection outside -> 8080 while the engine is down",
		tcpExchange(l, l.Out, 41010, ap(l.HostOutside, 8080), blockTimeout))
	time.Sleep(2*time.Second - time.Since(deadAt))
	restartAt := time.Now()
	e2 := startTestEngine(t, l, crashConfig)
	readyAt := time.Now()
	requireOurRules(t, l, false, 1, 1)
	requireOurRules(t, l, true, 1, 1)
	time.Sleep(1500 * time.Millisecond)
	stopStream()

	// New flows are judged again: TCP through the queue, UDP by the rules.
	before := ruleCounter(t, l)
	expectAllowed(t, "new TCP connection outside -> 8080 after the restart",
		tcpExchange(l, l.Out, 41011, ap(l.HostOutside, 8080), allowTimeout))
	if ruleCounter(t, l) == before {
		t.Error("after the restart the NFQUEUE rule counted no packet of a new flow")
	}
	endTalk := time.Now()
	close(stopTalk)
	for i, tk := range talkers {
		<-tk.done
		if err := tk.failure(); err != nil {
			t.Errorf("long-lived connection %d broke: %v", i, err)
		}
		down, after := tk.between(deadAt, restartAt), tk.between(readyAt, endTalk)
		t.Logf("long-lived connection %d: %d exchanges while the engine was down, %d after the restart", i, down, after)
		if down < 10 || after < 10 {
			t.Errorf("long-lived connection %d: %d exchanges while the engine was down and %d after the restart, want at least 10 each (one every 20 ms)",
				i, down, after)
		}
	}

	// Judge the stream, by when each request was sent. stopStream waited
	// for every request: reqs no longer changes.
	var upBefore, down, restarting, upAfter, dropAfter []*tagged
	for _, r := range reqs {
		switch {
		case r.err != nil && r.sent.IsZero():
			t.Errorf("%s: could not send: %v", r.tag, r.err)
		case r.sent.Before(killAt.Add(-time.Second)):
			upBefore = append(upBefore, r)
		case !r.begin.Before(deadAt) && r.sent.Before(restartAt):
			down = append(down, r)
		case !r.begin.Before(restartAt) && r.sent.Before(readyAt):
			restarting = append(restarting, r)
		case !r.begin.Before(readyAt):
			upAfter = append(upAfter, r)
			if r.port == 5354 {
				dropAfter = append(dropAfter, r)
			}
		}
	}
	t.Logf("requests: %d in all, %d sent before the kill, %d while down, %d during the restart, %d after it",
		len(reqs), len(upBefore), len(down), len(restarting), len(upAfter))
	if len(upBefore) < 50 || len(down) < 50 || len(upAfter) < 50 {
		t.Fatalf("too few requests to judge: %d before the kill, %d while down, %d after the restart; want 50 of each",
			len(upBefore), len(down), len(upAfter))
	}
	// Every request to the dropped port, whenever it was sent (the engine
	// up, down or starting), never reached the container.
	for _, r := range reqs {
		if r.port == 5354 && (r.err == nil || droppedSrv.got(r.tag)) {
			t.Errorf("%s to the dropped port 5354 (sent %s) reached the container: answered=%v",
				r.tag, r.sent.Format(time.StampMicro), r.err == nil)
		}
	}
	// While the engine was down nothing got through: counted at the
	// client (no answer) and at the server (no request).
	passed := 0
	for _, r := range down {
		if r.err == nil || allowedSrv.got(r.tag) || droppedSrv.got(r.tag) {
			passed++
			t.Errorf("%s to port %d sent while the engine was down (%s, down %s..%s) got through: answered=%v",
				r.tag, r.port, r.sent.Format(time.StampMicro), deadAt.Format(time.StampMicro), restartAt.Format(time.StampMicro), r.err == nil)
		} else if !isTimeout(r.err) {
			t.Errorf("%s sent while the engine was down: want a timeout, got %v", r.tag, r.err)
		}
	}
	t.Logf("while the engine was down: %d new flows sent, %d reached the container", len(down), passed)
	// With the engine up, the allowed port answered every request.
	for _, r := range slices.Concat(upBefore, upAfter) {
		if r.port == 5353 && (r.err != nil || !allowedSrv.got(r.tag)) {
			t.Errorf("%s to the allowed port 5353 sent with the engine up (%s): %v", r.tag, r.sent.Format(time.StampMicro), r.err)
		}
	}
	// The new engine judged and logged every dropped flow sent after it
	// was ready, and never saw one sent while it was down.
	last := dropAfter[len(dropAfter)-1]
	if _, ok := e2.waitRecord(5*time.Second, func(r flowlog.Record) bool {
		return r.Event == "blocked" && r.SrcPort == last.sport
	}); !ok {
		t.Errorf("no blocked record for the last dropped flow (port %d)", last.sport)
	}
	blocked := map[uint16]flowlog.Record{}
	for _, r := range e2.records() {
		if r.Event == "blocked" {
			blocked[r.SrcPort] = r
		}
	}
	for _, r := range dropAfter {
		rec, ok := blocked[r.sport]
		if !ok {
			t.Errorf("%s (port %d) dropped after the restart has no blocked record", r.tag, r.sport)
			continue
		}
		if rec.Rule != "web-no-54" || rec.Src != l.Outside.String() || rec.Dst != web.Addr.String() || rec.DstPort != 54 || rec.Proto != "udp" {
			t.Errorf("%s: record %+v, want web-no-54 for %s -> %s:54/udp", r.tag, rec, l.Outside, web.Addr)
		}
	}
	for _, r := range down {
		if _, ok := blocked[r.sport]; ok {
			t.Errorf("%s sent while the engine was down reached the new engine", r.tag)
		}
	}

	e2.stopClean()
	checkSameFirewall(t, l, false, original, "after the restarted engine stopped")
	checkSameFirewall(t, l, true, original6, "after the restarted engine stopped")

	// SIGKILL during start-up, at several points, then a normal start:
	// still one redirect and one companion, traffic judged, and a clean
	// stop leaves the firewall as it was.
	cfgPath := writeConfig(t, crashConfig)
	for _, delay := range []time.Duration{0, 20 * time.Millisecond, 60 * time.Millisecond, 150 * time.Millisecond, -1} {
		killDuringStart(t, l, cfgPath, delay)
	}
	e3 := startTestEngine(t, l, crashConfig)
	requireOurRules(t, l, false, 1, 1)
	requireOurRules(t, l, true, 1, 1)
	expectAllowed(t, "outside -> 8080 after kills during start-up", tcpExchange(l, l.Out, 41012, ap(l.HostOutside, 8080), allowTimeout))
	expectBlocked(t, "outside -> 5354 after kills during start-up",
		udpExchange(l, l.Out, 41013, ap(l.HostOutside, 5354), blockTimeout))
	e3.stopClean()
	checkSameFirewall(t, l, false, original, "after kills during start-up and a clean stop")
	checkSameFirewall(t, l, true, original6, "after kills during start-up and a clean stop")
}

// killDuringStart starts `nfqguard run -c cfgPath` and SIGKILLs it after
// delay or, for a negative delay, as soon as it has changed DOCKER-USER
// (over rules a killed run left there, in the middle of replacing them,
// if the kill is quick enough).
func killDuringStart(t *testing.T, l *netlab.Lab, cfgPath string, delay time.Duration) {
	t.Helper()
	before := len(ourRules(t, l, false))
	cmd := l.Command(context.Background(), l.Host, binary(t), "run", "-c", cfgPath, "--blocked-log", "stdout",
		"--status-socket", testSocket(t), "--metrics-listen", "off")
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	must(t, cmd.Start())
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		<-done
	})
	if delay >= 0 {
		time.Sleep(delay)
	} else {
		deadline := time.Now().Add(readyTimeout)
		for len(ourRules(t, l, false)) == before && time.Now().Before(deadline) {
			time.Sleep(time.Millisecond)
		}
	}
	// The whole process group, as systemd kills a service's cgroup: an
	// iptables child left running could still change DOCKER-USER.
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	select {
	case <-done:
		done <- nil // for the cleanup
	case <-time.After(stopTimeout):
		t.Fatalf("nfqguard did not die within %v of SIGKILL", stopTimeout)
	}
	t.Logf("SIGKILL during start-up (delay %v): DOCKER-USER held %d rules of nfqguard before, %d after",
		delay, before, len(ourRules(t, l, false)))
}

// --- reloads under traffic --------------------------------------------------

// reloadConfig is table A or B of the reload test. web is 172.17.0.2, db
// 172.17.0.3, cache 172.17.0.4; everything not listed is allowed.
//
//   - db -> web tcp/80 and udp/5300 ("mixed"): A allows web's ingress and
//     drops db's egress, B the other way round. Both drop it; a verdict
//     taking web's ingress from A and db's egress from B would allow it.
//   - cache -> web udp/9000: dropped by both.
//   - cache -> db udp/7: A allows, B drops; cache -> web tcp/8000: A
//     drops, B allows ("flips").
//
// Every rule logs, and its id starts with its table's name, so each
// record says which table judged the flow. The flow table is small
// (max_flows = 4096), so that the traffic before the leak check's first
// reading has touched all its pages: a big one would make RSS grow for
// a while as new flows land on slots never written.
func reloadConfig(table string) string {
	a := table == "A"
	act := func(allow bool) string {
		if allow {
			return "allow"
		}
		return "drop"
	}
	rule := func(id, dir, proto, port, peerKey, peer string, allow bool) string {
		return fmt.Sprintf(`
  [[container.rule]]
  id = "%s-%s"
  direction = %q
  proto = %q
  ports = [%q]
  %s = [%q]
  action = %q
  log = true
`, table, id, dir, proto, port, peerKey, peer, act(allow))
	}
	return `
[engine]
queue = 0
workers = 2
fail_open = false
fast_path = true
max_flows = 4096

[log]
rate = 0

[defaults]
ingress = "allow"
egress = "allow"

[[container]]
name = "web"
ips = ["172.17.0.2"]
` + rule("web-in-80", "ingress", "tcp", "80", "from", "172.17.0.3", a) +
		rule("web-in-5300", "ingress", "udp", "5300", "from", "172.17.0.3", a) +
		rule("web-in-8000", "ingress", "tcp", "8000", "from", "172.17.0.4", !a) +
		rule("web-in-9000", "ingress", "udp", "9000", "from", "0.0.0.0/0", false) + `
[[container]]
name = "db"
ips = ["172.17.0.3"]
` + rule("db-eg-80", "egress", "tcp", "80", "to", "172.17.0.2", !a) +
		rule("db-eg-5300", "egress", "udp", "5300", "to", "172.17.0.2", !a) +
		rule("db-in-7", "ingress", "udp", "7", "from", "172.17.0.4", a) + `
[[container]]
name = "cache"
ips = ["172.17.0.4"]
`
}

// verdictOf is a flow-log record's verdict: its event and its rule.
type verdictOf struct{ event, rule string }

// flowKind is one kind of flow of the reload test's mix.
type flowKind struct {
	name    string
	proto   string // "tcp" or "udp"
	ns      string
	src     netip.Addr
	dst     netip.AddrPort // as dialled
	judged  netip.AddrPort // as the engine sees it (after DNAT)
	workers int
	timeout time.Duration
	// want is the verdict by table A and by table B; nil for flows that
	// are always allowed (by the defaults, which do not log).
	want map[string]verdictOf
	// reached reports whether the server heard from the flow's source
	// address and port (flips only).
	reached func(netip.AddrPort) bool
}

// tried is one flow of the mix and how it went.
type tried struct {
	kind       *flowKind
	sport      uint16 // 0 for untracked kinds
	start, end time.Time
	err        error
}

// reloadEvent is one table swap: what was asked, when, and when the engine
// said it was done.
type reloadEvent struct {
	table       string
	sent, acked time.Time
}

// narrowToSwap moves each reload's acknowledgement back to the time the
// engine logged it, which it does just after the new table is stored:
// the reply to `nfqguard reload` and the next scrape of the reload
// counter come later, by a second or more on a loaded machine (seen in
// CI: the time in which the table was uncertain then held nearly all of
// one table's records). The log's times have millisecond precision,
// so the swap was done before the logged millisecond ended. A log line
// outside its reload's request and reply is an error.
func narrowToSwap(t *testing.T, events []reloadEvent, lines []map[string]string) {
	t.Helper()
	for _, ln := range lines {
		gen, err := strconv.Atoi(ln["generation"])
		if err != nil || gen < 1 || gen >= len(events) {
			t.Errorf("\"rules reloaded\" line with generation %q: want 1 to %d", ln["generation"], len(events)-1)
			continue
		}
		at, err := time.Parse(time.RFC3339Nano, ln["time"])
		if err != nil {
			t.Errorf("\"rules reloaded\" line with time %q: %v", ln["time"], err)
			continue
		}
		done := at.Truncate(time.Millisecond).Add(time.Millisecond)
		ev := &events[gen]
		if at.Before(ev.sent.Truncate(time.Millisecond)) || at.After(ev.acked) {
			t.Errorf("reload %d logged at %s, outside its request (%s) and acknowledgement (%s)", gen,
				at.Format(time.StampMicro), ev.sent.Format(time.StampMicro), ev.acked.Format(time.StampMicro))
			continue
		}
		if done.Before(ev.acked) {
			ev.acked = done
		}
	}
}

// logReloadLatency logs how long the reloads took from request to
// acknowledgement (what), by way of asking (odd: SIGHUP, even: nfqguard
// reload): the time between them is time in which the table in force is
// unknown.
func logReloadLatency(t *testing.T, what string, events []reloadEvent) {
	t.Helper()
	var byWay [2][]time.Duration
	for i, ev := range events[1:] {
		byWay[i%2] = append(byWay[i%2], ev.acked.Sub(ev.sent))
	}
	for way, name := range []string{"SIGHUP", "nfqguard reload"} {
		d := byWay[way]
		slices.Sort(d)
		if len(d) > 0 {
			t.Logf("reload by %s: %s min %v, median %v, max %v",
				name, what, d[0].Round(time.Millisecond), d[len(d)/2].Round(time.Millisecond), d[len(d)-1].Round(time.Millisecond))
		}
	}
}

// procUsage is what the leak check reads of the engine.
type procUsage struct {
	goroutines, fds int
	rss             int64 // bytes
}

func readUsage(t *testing.T, l *netlab.Lab, pid int) procUsage {
	t.Helper()
	mf, err := scrapeMetrics(l)
	if err != nil {
		t.Fatalf("scrape metrics: %v", err)
	}
	u := procUsage{goroutines: int(metricValue(mf, "go_goroutines"))}
	ents, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		t.Fatalf("open fds: %v", err)
	}
	u.fds = len(ents)
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatalf("status: %v", err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		if f := strings.Fields(line); len(f) == 3 && f[0] == "VmRSS:" && f[2] == "kB" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			if err != nil {
				t.Fatalf("VmRSS %q: %v", line, err)
			}
			u.rss = kb << 10
		}
	}
	if u.goroutines == 0 || u.rss == 0 {
		t.Fatalf("usage %+v: go_goroutines or VmRSS missing", u)
	}
	return u
}

// TestReloadUnderTraffic reloads the rule file 100 times, alternating
// tables A and B, while several goroutines open new flows of every kind
// without pause.
func TestReloadUnderTraffic(t *testing.T) {
	t.Parallel()
	bridgeNF := true // db -> web crosses FORWARD only with it
	l := netlabtest.New(t, netlab.Options{Containers: 3, BridgeNF: &bridgeNF})
	web, db, cache := l.Containers[0], l.Containers[1], l.Containers[2]
	web80 := servePeers(t, l, web.NS, ap(web.Addr, 80))
	web8000 := servePeers(t, l, web.NS, ap(web.Addr, 8000))
	must(t, l.ServeUDPEcho(web.NS, ap(web.Addr, 53)))
	web5300 := serveTags(t, l, web.NS, ap(web.Addr, 5300))
	web9000 := serveTags(t, l, web.NS, ap(web.Addr, 9000))
	must(t, l.ServeTCPEcho(db.NS, ap(db.Addr, 5432)))
	db7 := serveTags(t, l, db.NS, ap(db.Addr, 7))

	dir := t.TempDir()
	cfg := filepath.Join(dir, "config.toml")
	must(t, os.WriteFile(cfg, []byte(reloadConfig("A")), 0o644))
	sock := testSocket(t)
	cmd := l.Command(context.Background(), l.Host, binary(t), "run", "-c", cfg, "--blocked-log", "stdout", "--status-socket", sock)
	// GOGC=25 keeps the heap within a quarter of what is live: with the
	// default 100 the heap may double, garbage and all, between two
	// collections, and RSS would say more about the collector's pace than
	// about a leak (seen here: 30 MiB after 5 reloads, 50 MiB after 100,
	// for a live heap of 16 MiB throughout, by GODEBUG=gctrace=1).
	cmd.Env = append(os.Environ(), "GOGC=25")
	e := runEngine(t, cmd)
	pid := e.cmd.Process.Pid
	readyAt := time.Now()

	both := func(event, rule string) map[string]verdictOf {
		return map[string]verdictOf{"A": {event, "A-" + rule}, "B": {event, "B-" + rule}}
	}
	kinds := []*flowKind{
		{name: "outside -> web:80 (published 8080)", proto: "tcp", ns: l.Out, src: l.Outside, dst: ap(l.HostOutside, 8080), judged: ap(web.Addr, 80), workers: 1, timeout: 5 * time.Second},
		{name: "outside -> web:53 (published 5353)", proto: "udp", ns: l.Out, src: l.Outside, dst: ap(l.HostOutside, 5353), judged: ap(web.Addr, 53), workers: 1, timeout: 5 * time.Second},
		{name: "cache -> db:5432", proto: "tcp", ns: cache.NS, src: cache.Addr, dst: ap(db.Addr, 5432), workers: 1, timeout: 5 * time.Second},
		{name: "cache -> web:80", proto: "tcp", ns: cache.NS, src: cache.Addr, dst: ap(web.Addr, 80), workers: 1, timeout: 5 * time.Second},
		{name: "mixed db -> web:80", proto: "tcp", ns: db.NS, src: db.Addr, dst: ap(web.Addr, 80), workers: 3, timeout: 1500 * time.Millisecond,
			want: map[string]verdictOf{"A": {"blocked", "A-db-eg-80"}, "B": {"blocked", "B-web-in-80"}}},
		{name: "mixed db -> web:5300", proto: "udp", ns: db.NS, src: db.Addr, dst: ap(web.Addr, 5300), workers: 3, timeout: time.Second,
			want: map[string]verdictOf{"A": {"blocked", "A-db-eg-5300"}, "B": {"blocked", "B-web-in-5300"}}},
		{name: "dropped cache -> web:9000", proto: "udp", ns: cache.NS, src: cache.Addr, dst: ap(web.Addr, 9000), workers: 2, timeout: time.Second,
			want: both("blocked", "web-in-9000")},
		{name: "flip cache -> db:7", proto: "udp", ns: cache.NS, src: cache.Addr, dst: ap(db.Addr, 7), workers: 2, timeout: 1500 * time.Millisecond,
			want: map[string]verdictOf{"A": {"allowed", "A-db-in-7"}, "B": {"blocked", "B-db-in-7"}}, reached: db7.heard},
		// A SYN dropped under A is sent again after 1 s; if B is in force
		// by then, the dropped flow is judged again and let through. Each
		// dropped flow holds its worker for the whole timeout, so this kind
		// has four workers: with two, a loaded machine gave fewer than the
		// ten records well inside one table's time that the check wants.
		{name: "flip cache -> web:8000", proto: "tcp", ns: cache.NS, src: cache.Addr, dst: ap(web.Addr, 8000), workers: 4, timeout: 2500 * time.Millisecond,
			want: map[string]verdictOf{"A": {"blocked", "A-web-in-8000"}, "B": {"allowed", "B-web-in-8000"}}, reached: web8000.accepted},
	}
	for _, k := range kinds {
		if !k.judged.IsValid() {
			k.judged = k.dst
		}
	}

	// Tracked flows take source ports of their own, so that each record
	// names one flow.
	var nextPort atomic.Uint32
	nextPort.Store(10000)
	var (
		mu       sync.Mutex
		flows    []*tried
		wg       sync.WaitGroup
		stop     = make(chan struct{})
		stopOnce sync.Once
	)
	stopTraffic := func() { stopOnce.Do(func() { close(stop) }); wg.Wait() }
	t.Cleanup(stopTraffic)
	for _, k := range kinds {
		for range k.workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					case <-time.After(20 * time.Millisecond):
					}
					f := &tried{kind: k}
					if k.want != nil {
						p := nextPort.Add(1)
						if p > 32000 {
							f.err = errors.New("ran out of source ports")
							mu.Lock()
							flows = append(flows, f)
							mu.Unlock()
							return
						}
						f.sport = uint16(p)
					}
					f.start = time.Now()
					if k.proto == "tcp" {
						f.err = tcpExchange(l, k.ns, f.sport, k.dst, k.timeout)
					} else {
						f.err = udpExchange(l, k.ns, f.sport, k.dst, k.timeout)
					}
					f.end = time.Now()
					mu.Lock()
					flows = append(flows, f)
					mu.Unlock()
				}
			}()
		}
	}

	// 100 reloads, B, A, B, …: odd ones by SIGHUP, acknowledged by
	// nfqguard_config_reloads_total, even ones by `nfqguard reload`, which
	// answers when the new table is in force. Each table stays 300 ms.
	const reloads, dwell = 100, 300 * time.Millisecond
	time.Sleep(dwell)
	events := []reloadEvent{{table: "A", sent: readyAt, acked: readyAt}}
	var base procUsage
	for i := 1; i <= reloads; i++ {
		table := "B"
		if i%2 == 0 {
			table = "A"
		}
		// Written to a temporary file and renamed, as an editor or a
		// configuration manager does, so a reload never reads half a file.
		tmp := cfg + ".tmp"
		must(t, os.WriteFile(tmp, []byte(reloadConfig(table)), 0o644))
		must(t, os.Rename(tmp, cfg))
		ev := reloadEvent{table: table, sent: time.Now()}
		if i%2 == 1 {
			must(t, e.cmd.Process.Signal(syscall.SIGHUP))
			var got float64
			if !eventually(10*time.Second, func() bool {
				mf, err := scrapeMetrics(l)
				if err != nil {
					return false
				}
				got = metricValue(mf, "nfqguard_config_reloads_total", "result", "success")
				return got >= float64(i)
			}) {
				t.Fatalf("reload %d (SIGHUP): nfqguard_config_reloads_total{result=\"success\"} = %v after 10 s, want %d", i, got, i)
			}
			if got != float64(i) {
				t.Fatalf("reload %d (SIGHUP): %v successful reloads counted", i, got)
			}
		} else {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			out, err := l.Command(ctx, l.Host, binary(t), "reload", "--socket", sock).CombinedOutput()
			cancel()
			if err != nil || !strings.Contains(string(out), fmt.Sprintf("generation %d", i)) {
				t.Fatalf("reload %d: nfqguard reload: %v\n%s", i, err, out)
			}
		}
		ev.acked = time.Now()
		events = append(events, ev)
		if i == 5 {
			base = readUsage(t, l, pid)
		}
		time.Sleep(dwell)
	}
	final := readUsage(t, l, pid)
	stopTraffic()
	logReloadLatency(t, "request to acknowledgement", events)

	// No leak: within a small margin of the usage after the first five
	// reloads, both read with the traffic running. Goroutines and fds are
	// exact counts: the margin of 5 covers a status-socket client still
	// closing. RSS follows the heap, which with GOGC=25 moves between the
	// live heap (16 MiB here) and a quarter more: 8 MiB of slack. A leak
	// of 80 KiB per reload would pass it; the slow one this test led to
	// (the rule counters' index, about 1.5 KiB per reload) is
	// caught by inspect's TestRuleCountersBoundedAcrossReloads. Under
	// -race the engine is built with the race detector, whose shadow
	// memory takes 5 to 10 times what the program touches (81 MiB after 5
	// reloads, 97 after 100, seen here): 5 times the slack.
	rssMargin := int64(8 << 20)
	if raceBuild {
		rssMargin *= 5
	}
	t.Logf("engine after 5 reloads: %+v; after %d: %+v", base, reloads, final)
	if final.goroutines > base.goroutines+5 {
		t.Errorf("goroutines: %d after %d reloads, %d after 5: leak", final.goroutines, reloads, base.goroutines)
	}
	if final.fds > base.fds+5 {
		t.Errorf("open fds: %d after %d reloads, %d after 5: leak", final.fds, reloads, base.fds)
	}
	if final.rss > base.rss+rssMargin {
		t.Errorf("RSS: %.1f MiB after %d reloads, %.1f MiB after 5: leak", float64(final.rss)/(1<<20), reloads, float64(base.rss)/(1<<20))
	}

	mf, err := scrapeMetrics(l)
	must(t, err)
	if s, f := metricValue(mf, "nfqguard_config_reloads_total", "result", "success"), metricValue(mf, "nfqguard_config_reloads_total", "result", "failure"); s != reloads || f != 0 {
		t.Errorf("nfqguard_config_reloads_total: %v success, %v failure; want %d and 0", s, f, reloads)
	}
	// An allow by these rules can only come from a half-swapped table:
	// under either whole table the other end drops the flow first.
	for _, rule := range []string{"A-web-in-80", "A-web-in-5300", "B-db-eg-80", "B-db-eg-5300"} {
		if n := metricValue(mf, "nfqguard_rule_flows_total", "rule", rule, "verdict", "allow"); n != 0 {
			t.Errorf("nfqguard_rule_flows_total{rule=%q,verdict=\"allow\"} = %v: a flow was judged by a half-swapped table", rule, n)
		}
	}
	if n := metricValue(mf, "nfqguard_log_dropped_events_total"); n != 0 {
		t.Errorf("the flow log dropped %v events: the record checks below would miss flows", n)
	}

	stderr := e.stopClean()
	for _, line := range strings.Split(stderr, "\n") {
		if strings.Contains(line, "level=ERROR") || strings.Contains(line, "level=WARN") {
			t.Errorf("engine logged: %s", line)
		}
	}
	if n := strings.Count(stderr, `msg="rules reloaded"`); n != reloads {
		t.Errorf("engine logged %d \"rules reloaded\" lines, want %d", n, reloads)
	}
	narrowToSwap(t, events, logLines(stderr, "rules reloaded"))

	// Records by flow.
	type key struct {
		proto string
		src   netip.AddrPort
		dst   netip.AddrPort
	}
	byFlow := map[key][]flowlog.Record{}
	for _, r := range e.records() {
		if r.Event != "blocked" && r.Event != "allowed" {
			continue
		}
		src, err1 := netip.ParseAddr(r.Src)
		dst, err2 := netip.ParseAddr(r.Dst)
		if err1 != nil || err2 != nil {
			t.Errorf("record with bad addresses: %+v", r)
			continue
		}
		k := key{r.Proto, netip.AddrPortFrom(src, r.SrcPort), netip.AddrPortFrom(dst, r.DstPort)}
		byFlow[k] = append(byFlow[k], r)
	}
	tableOf := func(rule string) string { return rule[:1] }
	logReloadLatency(t, "request to the engine's log line", events)

	// tableAt is the table in force when a record was written, if that is
	// certain: the record's time is when its packet's batch was received,
	// and the engine loads the table just after. At or after a reload's
	// acknowledgement the new table is in force; the next swap is asked for
	// at sent, so records more than margin before it were judged by this
	// table (a worker would have to stall for margin between receiving a
	// packet and judging it to see the next one).
	const margin = 150 * time.Millisecond
	tableAt := func(at time.Time) (string, bool) {
		i := -1
		for j, ev := range events {
			if !ev.acked.After(at) {
				i = j
			}
		}
		if i < 0 || (i+1 < len(events) && !at.Before(events[i+1].sent.Add(-margin))) {
			return "", false
		}
		return events[i].table, true
	}

	// stopTraffic waited for every goroutine: flows no longer changes.
	type tally struct{ ok, failed, seen, timed, late int }
	tallies := map[*flowKind]*tally{}
	outcomes := map[*flowKind]map[verdictOf]int{}
	for _, k := range kinds {
		tallies[k], outcomes[k] = &tally{}, map[verdictOf]int{}
	}
	// At most 10 messages per kind of flow: a broken engine would
	// otherwise fill the log with thousands.
	flowErrs := map[*flowKind]int{}
	flowErr := func(k *flowKind, format string, args ...any) {
		t.Helper()
		if flowErrs[k]++; flowErrs[k] <= 10 {
			t.Errorf(format, args...)
		}
	}
	for _, f := range flows {
		k, tl := f.kind, tallies[f.kind]
		if f.err == nil {
			tl.ok++
		} else {
			tl.failed++
		}
		if k.want == nil {
			if f.err != nil {
				flowErr(k, "%s (always allowed), started %s: %v", k.name, f.start.Format(time.StampMicro), f.err)
			}
			continue
		}
		if f.sport == 0 {
			flowErr(k, "%s: %v", k.name, f.err)
			continue
		}
		recs := byFlow[key{k.proto, netip.AddrPortFrom(k.src, f.sport), k.judged}]
		if len(recs) == 0 {
			flowErr(k, "%s from port %d (%s..%s, err %v): no flow-log record", k.name, f.sport,
				f.start.Format(time.StampMicro), f.end.Format(time.StampMicro), f.err)
			continue
		}
		tl.seen++
		for _, r := range recs {
			v := verdictOf{r.Event, r.Rule}
			if v != k.want["A"] && v != k.want["B"] {
				flowErr(k, "%s from port %d: record %s by %s, want table A's %v or table B's %v (a half-swapped table?)",
					k.name, f.sport, r.Event, r.Rule, k.want["A"], k.want["B"])
				continue
			}
			outcomes[k][v]++
			if table, ok := tableAt(r.Time); ok {
				tl.timed++
				if tableOf(r.Rule) != table {
					flowErr(k, "%s from port %d: judged at %s by %s, but table %s was in force then",
						k.name, f.sport, r.Time.Local().Format(time.StampMicro), r.Rule, table)
				}
			}
		}
		// The flow's fate is the verdict of its last record (a dropped
		// SYN may be judged again after a reload): the server heard from
		// it if and only if it was allowed. A client that got its echo was
		// allowed; one that did not may still have been, and late (its
		// SYN let through on its retransmission, a second before the
		// deadline, on a loaded machine): the server says which.
		last := recs[len(recs)-1]
		allowed := last.Event == "allowed"
		if k.reached != nil && k.reached(netip.AddrPortFrom(k.src, f.sport)) != allowed {
			flowErr(k, "%s from port %d: the flow's last record is %s by %s, but the server heard from it: %v",
				k.name, f.sport, last.Event, last.Rule, !allowed)
		}
		switch {
		case f.err == nil && !allowed:
			flowErr(k, "%s from port %d: the client got its echo, but the flow's last record is %s by %s",
				k.name, f.sport, last.Event, last.Rule)
		case f.err != nil && allowed:
			tl.late++
		}
	}
	for _, k := range kinds {
		tl := tallies[k]
		if n := flowErrs[k]; n > 10 {
			t.Errorf("%s: %d more failures like the above", k.name, n-10)
		}
		t.Logf("%-36s %4d succeeded, %4d failed (%d of them allowed, too late for the client), %4d with records (%d records checked against the time of the reloads); outcomes %v",
			k.name, tl.ok, tl.failed, tl.late, tl.seen, tl.timed, outcomes[k])
		switch {
		case k.want == nil:
			if tl.failed > 0 || tl.ok < 50 {
				t.Errorf("%s: %d of %d always-allowed flows failed, want none of at least 50", k.name, tl.failed, tl.ok+tl.failed)
			}
		case k.want["A"].event == "blocked" && k.want["B"].event == "blocked":
			if tl.ok > 0 || tl.failed < 10 {
				t.Errorf("%s: %d of %d flows that every whole table drops succeeded; want none of at least 10", k.name, tl.ok, tl.ok+tl.failed)
			}
		default:
			// A flip: both tables' verdicts must have been seen, or the
			// reloads did not reach the traffic.
			if outcomes[k][k.want["A"]] == 0 || outcomes[k][k.want["B"]] == 0 {
				t.Errorf("%s: outcomes %v, want both table A's %v and table B's %v", k.name, outcomes[k], k.want["A"], k.want["B"])
			}
		}
		if k.want != nil && tl.timed < 10 {
			t.Errorf("%s: only %d records fell well inside one table's time; want at least 10", k.name, tl.timed)
		}
	}
	// Counted at the servers too.
	if n := web80.from(db.Addr); n != 0 {
		t.Errorf("web:80 accepted %d connections from db", n)
	}
	if web80.from(cache.Addr) == 0 || web80.from(l.Outside) == 0 {
		t.Errorf("web:80 accepted %d connections from cache and %d from outside, want some of each", web80.from(cache.Addr), web80.from(l.Outside))
	}
	if n := web5300.count(); n != 0 {
		t.Errorf("web:5300 received %d datagrams from db", n)
	}
	if n := web9000.count(); n != 0 {
		t.Errorf("web:9000 received %d datagrams", n)
	}
}
