package e2e

// End-to-end tests of operating nfqguard: the Prometheus endpoint, the
// blocked-flow log under a flood and across log rotation, the pcap of
// blocked packets, hot reload, and the status socket, against a real
// engine in the netns lab.

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/nfqguard/nfqguard/control"
	"github.com/nfqguard/nfqguard/flowlog"
	"github.com/nfqguard/nfqguard/internal/netlab"
	"github.com/nfqguard/nfqguard/internal/netlab/netlabtest"
)

// opsConfig: web's port 80 is open to the outside (web-http, which the
// reload test turns to drop); web may not send to outside:9000 (no-9000,
// the traffic the metrics, status and pcap checks count) nor to udp
// 20000-39999 of the outside (flood). %s are the log and pcap paths, %s
// web-http's action, and %s extra [engine] keys.
const opsConfig = `
[engine]
queue = 0
workers = 2
%[4]s

[log]
blocked = %[1]q
format = "json"
rate = 20
burst = 50
pcap = %[2]q
pcap_packets = 2

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
  action = %[3]q

  [[container.rule]]
  id = "no-9000"
  direction = "egress"
  proto = "udp"
  ports = ["9000"]
  action = "drop"

  [[container.rule]]
  id = "flood"
  direction = "egress"
  proto = "udp"
  ports = ["7000"]
  action = "drop"
`

func TestOperations(t *testing.T) {
	t.Parallel()
	l := netlabtest.New(t, netlab.Options{})
	web, out := l.Containers[0], l.Outside
	must(t, l.ServeTCPEcho(web.NS, ap(web.Addr, 80)))

	dir := t.TempDir()
	logPath, pcapPath := filepath.Join(dir, "blocked.log"), filepath.Join(dir, "blocked.pcap")
	cfg := filepath.Join(dir, "config.toml")
	writeOps := func(action, engineExtra string) {
		t.Helper()
		must(t, os.WriteFile(cfg, []byte(fmt.Sprintf(opsConfig, logPath, pcapPath, action, engineExtra)), 0o644))
	}
	writeOps("allow", "")
	sock := testSocket(t)
	e := runEngine(t, l.Command(context.Background(), l.Host, binary(t), "run", "-c", cfg, "--status-socket", sock))

	// An established, allowed connection, for the reload test: it must
	// outlive a reload that drops its port.
	early, err := dialTCP(l, l.Out, 0, ap(web.Addr, 80), time.Now().Add(2*time.Second))
	must(t, err)
	defer early.Close()
	expectAllowed(t, "connection opened before the reloads", echo(early))

	// --- traffic the counters must reflect -----------------------------
	const allowed, blockedFlows, perFlow = 5, 3, 4
	for i := range allowed {
		expectAllowed(t, fmt.Sprintf("outside → web:80 #%d", i), tcpExchange(l, l.Out, 0, ap(web.Addr, 80), 2*time.Second))
	}
	for i := range blockedFlows {
		must(t, sendUDP(l, web.NS, uint16(41000+i), ap(out, 9000), perFlow))
	}
	scrape := func() map[string]*dto.MetricFamily {
		t.Helper()
		mf, err := scrapeMetrics(l)
		if err != nil {
			t.Fatal(err)
		}
		return mf
	}
	var mf map[string]*dto.MetricFamily
	// The log and the capture are written by goroutines of their own: wait
	// for them too. A packet is counted when it is judged and timed when
	// its batch's verdicts have been written: a scrape may fall in between
	// (a worker descheduled on a busy machine), so wait for the histogram
	// to catch up as well.
	if !eventually(5*time.Second, func() bool {
		mf = scrape()
		h := mf["nfqguard_verdict_latency_seconds"].GetMetric()
		return metricValue(mf, "nfqguard_rule_packets_total", "rule", "no-9000") == blockedFlows*perFlow &&
			metricValue(mf, "nfqguard_log_records_total", "event", "blocked") >= blockedFlows &&
			metricValue(mf, "nfqguard_pcap_packets_total") >= blockedFlows*2 &&
			len(h) == 1 && float64(h[0].GetHistogram().GetSampleCount()) == metricValue(mf, "nfqguard_packets_total")
	}) {
		t.Fatalf("metrics never settled: no-9000 packets %v (want %d), blocked records %v, pcap packets %v, latency %v for %v packets",
			metricValue(mf, "nfqguard_rule_packets_total", "rule", "no-9000"), blockedFlows*perFlow,
			metricValue(mf, "nfqguard_log_records_total", "event", "blocked"), metricValue(mf, "nfqguard_pcap_packets_total"),
			mf["nfqguard_verdict_latency_seconds"].GetMetric(), metricValue(mf, "nfqguard_packets_total"))
	}

	t.Run("metrics", func(t *testing.T) {
		checks := []struct {
			name   string
			labels []string
			want   float64
		}{
			{"nfqguard_rule_flows_total", []string{"rule", "no-9000", "container", "web", "direction", "egress", "verdict", "drop"}, blockedFlows},
			{"nfqguard_rule_packets_total", []string{"rule", "no-9000", "verdict", "drop"}, blockedFlows * perFlow},
			// Each allowed connection, plus the early one, is one flow:
			// its first packet is judged, the rest take the fast path.
			{"nfqguard_rule_flows_total", []string{"rule", "web-http", "verdict", "allow"}, allowed + 1},
			{"nfqguard_packets_total", []string{"verdict", "drop"}, blockedFlows * perFlow},
			{"nfqguard_flows_blocked_total", nil, blockedFlows},
			{"nfqguard_config_reloads_total", []string{"result", "success"}, 0},
			{"nfqguard_config_reloads_total", []string{"result", "failure"}, 0},
			{"nfqguard_config_last_reload_successful", nil, 1},
			{"nfqguard_queue_kernel_dropped_total", nil, 0},
			{"nfqguard_log_records_total", []string{"event", "blocked"}, blockedFlows},
			{"nfqguard_pcap_packets_total", nil, blockedFlows * 2},
		}
		for _, c := range checks {
			if got := metricValue(mf, c.name, c.labels...); got != c.want {
				t.Errorf("%s%v = %v, want %v", c.name, c.labels, got, c.want)
			}
		}
		if n := len(mf["nfqguard_queue_kernel_dropped_total"].GetMetric()); n != 2 {
			t.Errorf("kernel drop counters for %d queues, want 2", n)
		}
		// Every verdict sent was timed.
		packets := metricValue(mf, "nfqguard_packets_total")
		h := mf["nfqguard_verdict_latency_seconds"].GetMetric()
		if len(h) != 1 || float64(h[0].GetHistogram().GetSampleCount()) != packets || packets == 0 {
			t.Errorf("latency histogram %v samples, want the %v packets judged", h, packets)
		}
		if metricValue(mf, "nfqguard_flow_table_flows") < blockedFlows+allowed {
			t.Errorf("flow table holds %v flows, want at least %d", metricValue(mf, "nfqguard_flow_table_flows"), blockedFlows+allowed)
		}
		if metricValue(mf, "go_goroutines") == 0 || metricValue(mf, "process_resident_memory_bytes") == 0 {
			t.Error("Go and process metrics missing")
		}
	})

	t.Run("status", func(t *testing.T) {
		outb, err := exec.Command(binary(t), "status", "--socket", sock, "--json", "--top", "5").Output()
		if err != nil {
			t.Fatalf("nfqguard status --json: %v", err)
		}
		var st control.Status
		if err := json.Unmarshal(outb, &st); err != nil {
			t.Fatalf("status --json output: %v\n%s", err, outb)
		}
		if st.PID != e.cmd.Process.Pid || st.Config != cfg || len(st.Queues) != 2 || st.Dropped != blockedFlows*perFlow ||
			st.BlockedFlows != blockedFlows || st.Latency.Count == 0 || st.Latency.P50 <= 0 || st.Latency.P99 < st.Latency.P50 {
			t.Errorf("status = %s", outb)
		}
		if len(st.TopBlocked) != blockedFlows {
			t.Fatalf("top blocked flows = %+v, want the %d no-9000 flows", st.TopBlocked, blockedFlows)
		}
		for _, f := range st.TopBlocked {
			if f.Rule != "no-9000" || f.Container != "web" || f.Packets != perFlow || f.Proto != "udp" || f.Dst != ap(out, 9000).String() {
				t.Errorf("top blocked flow %+v, want no-9000's, %d packets", f, perFlow)
			}
		}
		if len(st.TopRules) != 1 || st.TopRules[0].Rule != "no-9000" || st.TopRules[0].Flows != blockedFlows {
			t.Errorf("top rules = %+v", st.TopRules)
		}
		text, err := exec.Command(binary(t), "status", "--socket", sock).Output()
		if err != nil || !strings.Contains(string(text), "top blocked flows") || !strings.Contains(string(text), "no-9000") {
			t.Errorf("nfqguard status: %v\n%s", err, text)
		}
	})

	t.Run("pcap", func(t *testing.T) {
		// The writer counts a packet before it flushes it to the file.
		var pkts []gopacket.Packet
		eventually(2*time.Second, func() bool { pkts = readPcap(t, pcapPath); return len(pkts) >= blockedFlows*2 })
		perSport := map[uint16]int{}
		for _, p := range pkts {
			ip, _ := p.Layer(layers.LayerTypeIPv4).(*layers.IPv4)
			udp, _ := p.Layer(layers.LayerTypeUDP).(*layers.UDP)
			if ip == nil || udp == nil || netip.AddrFrom4([4]byte(ip.SrcIP.To4())) != web.Addr || udp.DstPort != 9000 {
				t.Errorf("captured a packet that is not a blocked one: %v", p)
				continue
			}
			perSport[uint16(udp.SrcPort)]++
		}
		if len(perSport) != blockedFlows {
			t.Errorf("pcap holds packets of %d flows, want %d", len(perSport), blockedFlows)
		}
		for sport, n := range perSport {
			if n != 2 {
				t.Errorf("flow from port %d: %d packets in the pcap, want pcap_packets = 2", sport, n)
			}
		}
	})

	t.Run("log reopened on SIGUSR1", func(t *testing.T) {
		var before []flowlog.Record
		eventually(2*time.Second, func() bool {
			before = readRecords(t, logPath)
			return countRecords(before, "blocked", "no-9000") >= blockedFlows
		})
		if countRecords(before, "blocked", "no-9000") != blockedFlows {
			t.Fatalf("log before rotation:\n%s", fmtRecords(before))
		}
		must(t, os.Rename(logPath, logPath+".1"))
		must(t, e.cmd.Process.Signal(syscall.SIGUSR1))
		if !eventually(5*time.Second, func() bool { _, err := os.Stat(logPath); return err == nil }) {
			t.Fatal("log file not recreated after SIGUSR1")
		}
		must(t, sendUDP(l, web.NS, 42000, ap(out, 9000), 1))
		if !eventually(5*time.Second, func() bool { return countRecords(readRecords(t, logPath), "blocked", "no-9000") == 1 }) {
			t.Errorf("new blocked flow not in the reopened log:\n%s", fmtRecords(readRecords(t, logPath)))
		}
		if got := readRecords(t, logPath+".1"); countRecords(got, "blocked", "no-9000") != blockedFlows {
			t.Errorf("rotated log changed:\n%s", fmtRecords(got))
		}
	})

	t.Run("flood of blocked flows", func(t *testing.T) {
		const flows = 10000
		start := time.Now()
		for i := 0; i < flows; i += 2500 {
			must(t, sendUDPFlows(l, web.NS, uint16(20000+i), 2500, ap(out, 7000)))
		}
		var judged, kernelDrops float64
		eventually(15*time.Second, func() bool {
			m := scrape()
			judged = metricValue(m, "nfqguard_rule_flows_total", "rule", "flood")
			kernelDrops = metricValue(m, "nfqguard_queue_kernel_dropped_total") + metricValue(m, "nfqguard_queue_user_dropped_total")
			return judged+kernelDrops >= flows
		})
		if judged < flows/2 || judged+kernelDrops < flows {
			t.Fatalf("flood: %v flows judged, %v packets dropped by the kernel; want %d in all", judged, kernelDrops, flows)
		}
		// Let the once-a-second suppression record come out.
		time.Sleep(1500 * time.Millisecond)
		elapsed := time.Since(start).Seconds()
		recs := readRecords(t, logPath)
		written := countRecords(recs, "blocked", "flood")
		suppressed := 0
		for _, r := range recs {
			if r.Event == "suppressed" && r.Rule == "flood" {
				suppressed += int(r.Suppressed)
			}
		}
		// burst 50, then 20 a second.
		if limit := 50 + int(20*elapsed) + 20; written > limit || written == 0 {
			t.Errorf("flood: %d blocked records written in %.1fs, want 1..%d", written, elapsed, limit)
		}
		if written+suppressed != int(judged) {
			t.Errorf("flood: %d written + %d suppressed = %d, want the %v flows judged", written, suppressed, written+suppressed, judged)
		}
		if fi, err := os.Stat(logPath); err != nil || fi.Size() > 100<<10 {
			t.Errorf("log file after a flood of %d flows: %v bytes (%v), want well under 100 KiB", flows, fi.Size(), err)
		}
		if got := metricValue(scrape(), "nfqguard_log_suppressed_events_total"); int(got) != suppressed {
			t.Errorf("nfqguard_log_suppressed_events_total = %v, want %d", got, suppressed)
		}
	})

	t.Run("reload", func(t *testing.T) {
		// Steady new connections to web:80 while the file turns web-http
		// to drop and SIGHUP is sent.
		writeOps("drop", "")
		reloaded := time.Now()
		must(t, e.cmd.Process.Signal(syscall.SIGHUP))
		var lastAllowed time.Time
		for time.Since(reloaded) < 2*time.Second {
			at := time.Now()
			if tcpExchange(l, l.Out, 0, ap(web.Addr, 80), 300*time.Millisecond) == nil {
				lastAllowed = at
			}
			time.Sleep(50 * time.Millisecond)
		}
		if d := lastAllowed.Sub(reloaded); d >= time.Second {
			t.Errorf("a new connection was allowed %v after SIGHUP, want the drop within 1s", d)
		}
		expectBlocked(t, "new connection after the reload", tcpExchange(l, l.Out, 0, ap(web.Addr, 80), 500*time.Millisecond))
		expectAllowed(t, "connection established before the reload (no rejudge_on_reload)", echo(early))

		// A broken file is refused: the drop stays, the failure is told
		// with the place and counted.
		must(t, os.WriteFile(cfg, []byte(fmt.Sprintf(opsConfig, logPath, pcapPath, "allow", "")+"\n[[container]\n"), 0o644))
		outb, err := exec.Command(binary(t), "reload", "--socket", sock).CombinedOutput()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(string(outb), cfg+":") {
			t.Errorf("nfqguard reload of a broken file: %v\n%s\nwant exit 1 and the file's place", err, outb)
		}
		expectBlocked(t, "new connection after a broken reload", tcpExchange(l, l.Out, 0, ap(web.Addr, 80), 500*time.Millisecond))
		if !strings.Contains(e.stderr(), "reload refused") {
			t.Error("the refused reload was not logged")
		}
		m := scrape()
		if s, f := metricValue(m, "nfqguard_config_reloads_total", "result", "success"), metricValue(m, "nfqguard_config_reloads_total", "result", "failure"); s != 1 || f != 1 {
			t.Errorf("reloads: %v success, %v failure; want 1 and 1", s, f)
		}
		if metricValue(m, "nfqguard_config_last_reload_successful") != 0 {
			t.Error("nfqguard_config_last_reload_successful should be 0 after a failed reload")
		}

		// rejudge_on_reload: an allowed fast-path connection is judged
		// again and cut when the new file drops it.
		writeOps("allow", "")
		outb, err = exec.Command(binary(t), "reload", "--socket", sock).CombinedOutput()
		if err != nil || !strings.Contains(string(outb), "generation 2") {
			t.Fatalf("reload: %v\n%s", err, outb)
		}
		late, err := dialTCP(l, l.Out, 0, ap(web.Addr, 80), time.Now().Add(2*time.Second))
		must(t, err)
		defer late.Close()
		expectAllowed(t, "connection opened after the allow reload", echo(late))
		writeOps("drop", "rejudge_on_reload = true")
		outb, err = exec.Command(binary(t), "reload", "--socket", sock).CombinedOutput()
		if err != nil || !strings.Contains(string(outb), "fast-path connections sent back") {
			t.Fatalf("reload with rejudge_on_reload: %v\n%s", err, outb)
		}
		if err := echo(late); err == nil {
			t.Error("an allowed connection survived a reload that drops it with rejudge_on_reload = true")
		}
	})

	stderr := e.stopClean()
	if strings.Contains(stderr, "level=ERROR") && !strings.Contains(stderr, "reload refused") {
		t.Errorf("errors logged:\n%s", stderr)
	}
	// Ends: every blocked flow whose verdict was written gets its summary
	// when the engine stops, and no other.
	recs := readRecords(t, logPath)
	ends := map[string]flowlog.Record{}
	for _, r := range recs {
		if r.Event == "end" {
			ends[fmt.Sprintf("%s:%d", r.Src, r.SrcPort)] = r
		}
	}
	blocked := 0
	for _, r := range recs {
		if r.Event != "blocked" || r.Proto != "udp" {
			continue
		}
		blocked++
		end, ok := ends[fmt.Sprintf("%s:%d", r.Src, r.SrcPort)]
		if !ok {
			t.Errorf("no end record for blocked flow %+v", r)
			continue
		}
		if end.Rule != r.Rule || end.Packets == 0 || end.Bytes == 0 {
			t.Errorf("end record %+v for %+v", end, r)
		}
	}
	if blocked == 0 {
		t.Error("no blocked records in the log after the rotation")
	}
}

// echo sends a line on an open connection and expects it back.
func echo(c *net.TCPConn) error {
	_ = c.SetDeadline(time.Now().Add(time.Second))
	if _, err := c.Write([]byte("ping\n")); err != nil {
		return err
	}
	buf := make([]byte, 5)
	_, err := io.ReadFull(c, buf)
	return err
}

// sendUDP sends n datagrams from ns, source port sport, to dst: one flow.
func sendUDP(l *netlab.Lab, ns string, sport uint16, dst netip.AddrPort, n int) error {
	return l.Do(ns, func() error {
		c, err := net.DialUDP("udp4", &net.UDPAddr{Port: int(sport)}, net.UDPAddrFromAddrPort(dst))
		if err != nil {
			return err
		}
		defer c.Close()
		for range n {
			if _, err := c.Write([]byte("blocked?")); err != nil {
				return err
			}
		}
		return nil
	})
}

// sendUDPFlows sends one datagram from each of n source ports from first:
// n flows.
func sendUDPFlows(l *netlab.Lab, ns string, first uint16, n int, dst netip.AddrPort) error {
	return l.Do(ns, func() error {
		for i := range n {
			c, err := net.DialUDP("udp4", &net.UDPAddr{Port: int(first) + i}, net.UDPAddrFromAddrPort(dst))
			if err != nil {
				return err
			}
			_, err = c.Write([]byte("flood"))
			c.Close()
			if err != nil {
				return err
			}
		}
		return nil
	})
}

// scrapeMetrics fetches /metrics from the engine's listener in the lab's
// host namespace and parses it with Prometheus' text parser.
func scrapeMetrics(l *netlab.Lab) (map[string]*dto.MetricFamily, error) {
	var c net.Conn
	if err := l.Do(l.Host, func() error {
		var err error
		c, err = net.DialTimeout("tcp", "127.0.0.1:9477", 2*time.Second)
		return err
	}); err != nil {
		return nil, err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte("GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")); err != nil {
		return nil, err
	}
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET /metrics: %s", resp.Status)
	}
	parser := expfmt.NewTextParser(model.LegacyValidation)
	return parser.TextToMetricFamilies(resp.Body)
}

// metricValue sums the values of family name's series whose labels
// include the given name/value pairs.
func metricValue(mf map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	var sum float64
	for _, m := range mf[name].GetMetric() {
		match := true
		for i := 0; i+1 < len(labels); i += 2 {
			found := false
			for _, lp := range m.GetLabel() {
				if lp.GetName() == labels[i] && lp.GetValue() == labels[i+1] {
					found = true
				}
			}
			match = match && found
		}
		if !match {
			continue
		}
		switch {
		case m.Counter != nil:
			sum += m.GetCounter().GetValue()
		case m.Gauge != nil:
			sum += m.GetGauge().GetValue()
		case m.Untyped != nil:
			sum += m.GetUntyped().GetValue()
		}
	}
	return sum
}

// readRecords parses a JSON-lines log file.
func readRecords(t testing.TB, path string) []flowlog.Record {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out []flowlog.Record
	for _, line := range strings.Split(string(b), "\n") {
		if line == "" {
			continue
		}
		var r flowlog.Record
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		out = append(out, r)
	}
	return out
}

func countRecords(rs []flowlog.Record, event, rule string) int {
	n := 0
	for _, r := range rs {
		if r.Event == event && r.Rule == rule {
			n++
		}
	}
	return n
}

// readPcap reads every packet of a pcap file with gopacket's reader.
func readPcap(t testing.TB, path string) []gopacket.Packet {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := pcapgo.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	if r.LinkType() != layers.LinkTypeRaw {
		t.Fatalf("pcap link type %v, want raw IP", r.LinkType())
	}
	var out []gopacket.Packet
	for {
		data, _, err := r.ReadPacketData()
		if err != nil {
			break
		}
		out = append(out, gopacket.NewPacket(data, layers.LayerTypeIPv4, gopacket.Default))
	}
	return out
}

// eventually polls cond every 100 ms until it holds or timeout passes.
func eventually(timeout time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(timeout)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(100 * time.Millisecond)
	}
}
