package metrics

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"runtime"
	"sort"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/client_golang/prometheus/testutil/promlint"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/nfqguard/nfqguard/firewall"
	"github.com/nfqguard/nfqguard/inspect"
	"github.com/nfqguard/nfqguard/queue"
	"github.com/nfqguard/nfqguard/rules"
)

var (
	_ Source               = (*queue.Monitor)(nil)
	_ prometheus.Collector = (*Collector)(nil)
)

// fakeSource returns a fixed snapshot, or false when off.
type fakeSource struct {
	mu  sync.Mutex
	s   queue.Snapshot
	off bool
}

func (f *fakeSource) Snapshot() (queue.Snapshot, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.off {
		return queue.Snapshot{}, false
	}
	return f.s, true
}

func (f *fakeSource) set(s queue.Snapshot) {
	f.mu.Lock()
	f.s = s
	f.mu.Unlock()
}

type fakeLog LogStats

func (f fakeLog) LogStats() LogStats { return LogStats(f) }

type fakePcap PcapStats

func (f fakePcap) PcapStats() PcapStats { return PcapStats(f) }

var started = time.Date(2025, 3, 1, 12, 0, 0, 500_000_000, time.UTC)

func testSnapshot() queue.Snapshot {
	return queue.Snapshot{
		Time:       started.Add(time.Hour),
		Started:    started,
		Generation: 7,
		Docker:     rules.DockerStatus{Dynamic: true, Resolved: true, Unresolved: []string{"api", "db"}},
		Queues: []queue.QueueStats{
			{
				Queue: 0,
				Engine: inspect.Counts{
					Packets: 1000, Allowed: 900, Dropped: 100,
					Flows: 50, Blocked: 5, Midstream: 2, ICMPErrors: 3, Evictions: 4,
					Malformed: 6, Truncated: 3, Fragments: 2, BadVersion: 1,
					MalformedKinds: [inspect.MalformedKinds]uint64{
						inspect.MalformedBadVersion: 1, inspect.MalformedFragment: 2,
						inspect.MalformedTruncatedTCP: 1, inspect.MalformedBadIHL: 1, inspect.MalformedIPv6ExtChain: 1,
					},
					ICMPErrorsMatched: 1, ICMPErrorsUnmatched: 0, ICMPErrorsBadQuote: 2,
					NotConsumed: 8, FastPath: 40,
					Inspected: 20, HeldFlows: 10, HeldPackets: 15,
					HeldDuplicates: 1, HoldFull: 2, Decided: 18, Undecided: 2,
					Queries: 30, AllowedQueries: 26, BlockedQueries: 4, Resets: 3, Rejudged: 9,
					QUIC:           [inspect.QUICOutcomes]uint64{6, 2, 1, 3},
					FlowTableFlows: 45, FlowTableSize: 65536,
					HeldNow: 1, HeldPacketsNow: 2,
				},
				ENOBUFS: 11, RecvErrors: 12, VerdictErrors: 13, KernelDropped: 14, UserDropped: 15,
			},
			{
				Queue: 1,
				Engine: inspect.Counts{
					Packets: 2000, Allowed: 1999, Dropped: 1,
					Flows: 70, FlowTableFlows: 60, FlowTableSize: 32768,
					Queries: 5, AllowedQueries: 0, BlockedQueries: 5,
				},
				KernelDropped: 24,
			},
		},
		Rules: []queue.RuleStats{
			{Container: "web", Rule: "allow-https", Direction: "egress", Verdict: "allow", Flows: 42, Packets: 4200},
			{Container: "web", Rule: "default", Direction: "egress", Verdict: "drop", Flows: 5, Packets: 9},
			{Container: "", Rule: "none", Direction: "ingress", Verdict: "allow", Flows: 8, Packets: 80},
		},
		Latency: queue.LatencyStats{
			Count:   10,
			Sum:     1500 * time.Microsecond,
			Bounds:  []time.Duration{10 * time.Microsecond, 100 * time.Microsecond, time.Millisecond},
			Buckets: []uint64{2, 7, 9},
		},
	}
}

// serve starts a Server on a free port and returns its address. The server
// stops at the end of the test, and the test fails if Serve fails.
func serve(t *testing.T, o Options) string {
	t.Helper()
	s := New(o)
	ln, err := s.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return ln.Addr().String()
}

func get(t *testing.T, url string) (int, string, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header.Get("Content-Type"), string(b)
}

// scrape fetches /metrics and parses it.
func scrape(t *testing.T, addr string) (map[string]*dto.MetricFamily, string) {
	t.Helper()
	code, ctype, body := get(t, "http://"+addr+"/metrics")
	if code != http.StatusOK {
		t.Fatalf("GET /metrics: %d\n%s", code, body)
	}
	if !strings.HasPrefix(ctype, "text/plain") {
		t.Errorf("Content-Type %q", ctype)
	}
	p := expfmt.NewTextParser(model.LegacyValidation)
	mfs, err := p.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("parse: %v\n%s", err, body)
	}
	return mfs, body
}

// find returns the metric of family name with exactly the labels given
// (name, value pairs).
func find(t *testing.T, mfs map[string]*dto.MetricFamily, name string, labels ...string) *dto.Metric {
	t.Helper()
	mf := mfs[name]
	if mf == nil {
		t.Fatalf("no family %s", name)
	}
	want := map[string]string{}
	for i := 0; i < len(labels); i += 2 {
		want[labels[i]] = labels[i+1]
	}
	var seen []string
	for _, m := range mf.GetMetric() {
		got := map[string]string{}
		for _, l := range m.GetLabel() {
			got[l.GetName()] = l.GetValue()
		}
		if fmt.Sprint(got) == fmt.Sprint(want) {
			return m
		}
		seen = append(seen, fmt.Sprint(got))
	}
	t.Fatalf("%s%v not found; have %v", name, want, seen)
	return nil
}

func value(t *testing.T, mfs map[string]*dto.MetricFamily, name string, labels ...string) float64 {
	t.Helper()
	m := find(t, mfs, name, labels...)
	switch mfs[name].GetType() {
	case dto.MetricType_COUNTER:
		return m.GetCounter().GetValue()
	case dto.MetricType_GAUGE:
		return m.GetGauge().GetValue()
	}
	t.Fatalf("%s is a %v", name, mfs[name].GetType())
	return 0
}

func checkType(t *testing.T, mfs map[string]*dto.MetricFamily, name string, typ dto.MetricType) {
	t.Helper()
	if mf := mfs[name]; mf == nil {
		t.Errorf("no family %s", name)
	} else if mf.GetType() != typ {
		t.Errorf("%s is a %v, want %v", name, mf.GetType(), typ)
	}
}

func TestScrape(t *testing.T) {
	src := &fakeSource{s: testSnapshot()}
	reloads := &Reloads{}
	loaded := time.Date(2025, 3, 1, 11, 0, 0, 0, time.UTC)
	reloads.SetLoaded(loaded)
	addr := serve(t, Options{
		Source:  src,
		Reloads: reloads,
		Log: fakeLog{Blocked: 1, Allowed: 2, Ends: 3, Suppressed: 4, SuppressedRecords: 5,
			Dropped: 6, WriteErrors: 7, Reopens: 8},
		Pcap: fakePcap{Packets: 101, Dropped: 102, Bytes: 103, Rotations: 104, WriteErrors: 105},
	})

	mfs, body := scrape(t, addr)
	tests := []struct {
		name   string
		labels []string
		want   float64
	}{
		{"nfqguard_packets_total", []string{"queue", "0", "verdict", "accept"}, 900},
		{"nfqguard_packets_total", []string{"queue", "0", "verdict", "drop"}, 100},
		{"nfqguard_packets_total", []string{"queue", "1", "verdict", "accept"}, 1999},
		{"nfqguard_packets_total", []string{"queue", "1", "verdict", "drop"}, 1},
		{"nfqguard_rule_flows_total", []string{"container", "web", "rule", "allow-https", "direction", "egress", "verdict", "allow"}, 42},
		{"nfqguard_rule_packets_total", []string{"container", "web", "rule", "allow-https", "direction", "egress", "verdict", "allow"}, 4200},
		{"nfqguard_rule_flows_total", []string{"container", "web", "rule", "default", "direction", "egress", "verdict", "drop"}, 5},
		// Exposed as container="", which Prometheus stores as no label.
		{"nfqguard_rule_flows_total", []string{"container", "", "rule", "none", "direction", "ingress", "verdict", "allow"}, 8},
		{"nfqguard_flows_total", []string{"queue", "1"}, 70},
		{"nfqguard_flows_blocked_total", []string{"queue", "0"}, 5},
		{"nfqguard_flows_fast_path_total", []string{"queue", "0"}, 40},
		{"nfqguard_flows_midstream_total", []string{"queue", "0"}, 2},
		{"nfqguard_flows_rejudged_total", []string{"queue", "0"}, 9},
		{"nfqguard_inspect_flows_total", []string{"queue", "0"}, 20},
		{"nfqguard_inspect_held_flows_total", []string{"queue", "0"}, 10},
		{"nfqguard_inspect_held_packets_total", []string{"queue", "0"}, 15},
		{"nfqguard_inspect_decided_total", []string{"queue", "0", "result", "fact"}, 18},
		{"nfqguard_inspect_decided_total", []string{"queue", "0", "result", "undecided"}, 2},
		{"nfqguard_inspect_held_flows", []string{"queue", "0"}, 1},
		{"nfqguard_inspect_held_packets", []string{"queue", "0"}, 2},
		{"nfqguard_inspect_hold_full_total", []string{"queue", "0"}, 2},
		{"nfqguard_inspect_duplicates_total", []string{"queue", "0"}, 1},
		{"nfqguard_inspect_quic_total", []string{"queue", "0", "result", "inspected"}, 6},
		{"nfqguard_inspect_quic_total", []string{"queue", "0", "result", "unsupported_version"}, 2},
		{"nfqguard_inspect_quic_total", []string{"queue", "0", "result", "version_negotiation"}, 1},
		{"nfqguard_inspect_quic_total", []string{"queue", "0", "result", "retry"}, 3},
		{"nfqguard_dns_queries_total", []string{"queue", "0", "verdict", "accept"}, 26},
		{"nfqguard_dns_queries_total", []string{"queue", "0", "verdict", "drop"}, 4},
		{"nfqguard_dns_queries_total", []string{"queue", "1", "verdict", "accept"}, 0},
		{"nfqguard_resets_total", []string{"queue", "0"}, 3},
		{"nfqguard_malformed_packets_total", []string{"queue", "0", "kind", "bad_version"}, 1},
		{"nfqguard_malformed_packets_total", []string{"queue", "0", "kind", "truncated_ipv4"}, 0},
		{"nfqguard_malformed_packets_total", []string{"queue", "0", "kind", "bad_ihl"}, 1},
		{"nfqguard_malformed_packets_total", []string{"queue", "0", "kind", "bad_ip_length"}, 0},
		{"nfqguard_malformed_packets_total", []string{"queue", "0", "kind", "truncated_ipv6"}, 0},
		{"nfqguard_malformed_packets_total", []string{"queue", "0", "kind", "ipv6_ext_chain"}, 1},
		{"nfqguard_malformed_packets_total", []string{"queue", "0", "kind", "fragment"}, 2},
		{"nfqguard_malformed_packets_total", []string{"queue", "0", "kind", "truncated_tcp"}, 1},
		{"nfqguard_malformed_packets_total", []string{"queue", "0", "kind", "bad_data_offset"}, 0},
		{"nfqguard_malformed_packets_total", []string{"queue", "0", "kind", "truncated_udp"}, 0},
		{"nfqguard_malformed_packets_total", []string{"queue", "0", "kind", "bad_udp_length"}, 0},
		{"nfqguard_malformed_packets_total", []string{"queue", "0", "kind", "truncated_icmp"}, 0},
		{"nfqguard_malformed_packets_total", []string{"queue", "1", "kind", "fragment"}, 0},
		{"nfqguard_icmp_errors_total", []string{"queue", "0", "result", "matched"}, 1},
		{"nfqguard_icmp_errors_total", []string{"queue", "0", "result", "unmatched"}, 0},
		{"nfqguard_icmp_errors_total", []string{"queue", "0", "result", "bad_quote"}, 2},
		{"nfqguard_foreign_flows_total", []string{"queue", "0"}, 8},
		{"nfqguard_queue_kernel_dropped_total", []string{"queue", "0"}, 14},
		{"nfqguard_queue_kernel_dropped_total", []string{"queue", "1"}, 24},
		{"nfqguard_queue_user_dropped_total", []string{"queue", "0"}, 15},
		{"nfqguard_queue_enobufs_total", []string{"queue", "0"}, 11},
		{"nfqguard_queue_receive_errors_total", []string{"queue", "0"}, 12},
		{"nfqguard_verdict_errors_total", []string{"queue", "0"}, 13},
		{"nfqguard_flow_table_flows", []string{"queue", "0"}, 45},
		{"nfqguard_flow_table_flows", []string{"queue", "1"}, 60},
		{"nfqguard_flow_table_slots", []string{"queue", "0"}, 65536},
		{"nfqguard_flow_table_slots", []string{"queue", "1"}, 32768},
		{"nfqguard_flow_table_evictions_total", []string{"queue", "0"}, 4},
		{"nfqguard_rule_table_generation", nil, 7},
		{"nfqguard_start_time_seconds", nil, 1740830400.5},
		{"nfqguard_config_reloads_total", []string{"result", "success"}, 0},
		{"nfqguard_config_reloads_total", []string{"result", "failure"}, 0},
		{"nfqguard_config_last_reload_success_timestamp_seconds", nil, float64(loaded.Unix())},
		{"nfqguard_config_last_reload_successful", nil, 1},
		{"nfqguard_log_records_total", []string{"event", "blocked"}, 1},
		{"nfqguard_log_records_total", []string{"event", "allowed"}, 2},
		{"nfqguard_log_records_total", []string{"event", "end"}, 3},
		{"nfqguard_log_records_total", []string{"event", "suppressed"}, 5},
		{"nfqguard_log_suppressed_events_total", nil, 4},
		{"nfqguard_log_dropped_events_total", nil, 6},
		{"nfqguard_log_write_errors_total", nil, 7},
		{"nfqguard_log_reopens_total", nil, 8},
		{"nfqguard_pcap_packets_total", nil, 101},
		{"nfqguard_pcap_dropped_packets_total", nil, 102},
		{"nfqguard_pcap_bytes_total", nil, 103},
		{"nfqguard_pcap_rotations_total", nil, 104},
		{"nfqguard_pcap_write_errors_total", nil, 105},
	}
	for _, tt := range tests {
		if got := value(t, mfs, tt.name, tt.labels...); got != tt.want {
			t.Errorf("%s%v = %v, want %v", tt.name, tt.labels, got, tt.want)
		}
	}
	if n := len(mfs["nfqguard_packets_total"].GetMetric()); n != 4 {
		t.Errorf("%d nfqguard_packets_total series, want 4", n)
	}
	// Every kind of every queue, zeros included, so that rates start at 0.
	if n := len(mfs["nfqguard_malformed_packets_total"].GetMetric()); n != 2*inspect.MalformedKinds {
		t.Errorf("%d nfqguard_malformed_packets_total series, want %d", n, 2*inspect.MalformedKinds)
	}
	if n := len(mfs["nfqguard_icmp_errors_total"].GetMetric()); n != 2*3 {
		t.Errorf("%d nfqguard_icmp_errors_total series, want 6", n)
	}
	if n := len(mfs["nfqguard_rule_flows_total"].GetMetric()); n != 3 {
		t.Errorf("%d nfqguard_rule_flows_total series, want 3", n)
	}
	checkType(t, mfs, "nfqguard_packets_total", dto.MetricType_COUNTER)
	checkType(t, mfs, "nfqguard_flow_table_flows", dto.MetricType_GAUGE)
	checkType(t, mfs, "nfqguard_inspect_held_flows", dto.MetricType_GAUGE)
	checkType(t, mfs, "nfqguard_config_last_reload_successful", dto.MetricType_GAUGE)

	// Every family has help text.
	for name, mf := range mfs {
		if strings.TrimSpace(mf.GetHelp()) == "" {
			t.Errorf("%s has no help", name)
		}
	}

	// The histogram, in seconds.
	checkType(t, mfs, "nfqguard_verdict_latency_seconds", dto.MetricType_HISTOGRAM)
	h := find(t, mfs, "nfqguard_verdict_latency_seconds").GetHistogram()
	if h.GetSampleCount() != 10 {
		t.Errorf("latency count %d, want 10", h.GetSampleCount())
	}
	if math.Abs(h.GetSampleSum()-0.0015) > 1e-12 {
		t.Errorf("latency sum %v, want 0.0015", h.GetSampleSum())
	}
	var got []string
	for _, b := range h.GetBucket() {
		got = append(got, fmt.Sprintf("%g:%d", b.GetUpperBound(), b.GetCumulativeCount()))
	}
	if want := "1e-05:2 0.0001:7 0.001:9 +Inf:10"; strings.Join(got, " ") != want {
		t.Errorf("latency buckets %v, want %s", got, want)
	}
	if !strings.Contains(body, `nfqguard_verdict_latency_seconds_bucket{le="+Inf"} 10`) {
		t.Errorf("no +Inf bucket in\n%s", body)
	}

	// The Go and process collectors are there.
	for _, name := range []string{"go_goroutines", "go_memstats_alloc_bytes", "promhttp_metric_handler_requests_total"} {
		if mfs[name] == nil {
			t.Errorf("no %s", name)
		}
	}
	if runtime.GOOS == "linux" && mfs["process_resident_memory_bytes"] == nil {
		t.Error("no process_resident_memory_bytes")
	}

	// What is served passes promtool's lint.
	problems, err := promlint.New(strings.NewReader(body)).Lint()
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}

	// Reloads show up at the next scrape.
	reloads.Observe(true, loaded.Add(time.Minute))
	reloads.Observe(false, loaded.Add(2*time.Minute))
	mfs, _ = scrape(t, addr)
	for _, tt := range []struct {
		name   string
		labels []string
		want   float64
	}{
		{"nfqguard_config_reloads_total", []string{"result", "success"}, 1},
		{"nfqguard_config_reloads_total", []string{"result", "failure"}, 1},
		{"nfqguard_config_last_reload_success_timestamp_seconds", nil, float64(loaded.Add(time.Minute).Unix())},
		{"nfqguard_config_last_reload_successful", nil, 0},
	} {
		if got := value(t, mfs, tt.name, tt.labels...); got != tt.want {
			t.Errorf("after reloads: %s%v = %v, want %v", tt.name, tt.labels, got, tt.want)
		}
	}
	reloads.Observe(true, loaded.Add(3*time.Minute))
	mfs, _ = scrape(t, addr)
	if got := value(t, mfs, "nfqguard_config_last_reload_successful"); got != 1 {
		t.Errorf("after a good reload: nfqguard_config_last_reload_successful = %v, want 1", got)
	}
	if got := value(t, mfs, "nfqguard_config_reloads_total", "result", "success"); got != 2 {
		t.Errorf("after a good reload: successes = %v, want 2", got)
	}
}

func TestLint(t *testing.T) {
	c := NewCollector(Options{
		Source:       &fakeSource{s: testSnapshot()},
		Reloads:      &Reloads{},
		StatusSocket: &StatusSocket{},
		Log:          fakeLog{},
		Pcap:         fakePcap{},
	})
	c.o.Reloads.SetLoaded(started)
	problems, err := testutil.CollectAndLint(c)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("lint: %s: %s", p.Metric, p.Text)
	}
	// Every family described is collected (none forgotten in Collect), and
	// a pedantic registry finds what is collected consistent with Describe.
	reg := prometheus.NewPedanticRegistry()
	reg.MustRegister(c)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	if len(mfs) != len(allDescs) {
		var names []string
		for _, mf := range mfs {
			names = append(names, mf.GetName())
		}
		sort.Strings(names)
		t.Errorf("%d families collected, %d described: %v", len(mfs), len(allDescs), names)
	}
}

// TestDocker: the two Docker gauges say whether the rules in force were
// resolved against Docker, and how many entries resolve to nothing; they
// are absent when Docker is not watched or the file has no such entry.
func TestDocker(t *testing.T) {
	const head = `# HELP nfqguard_docker_reachable 1 while the rules in force were resolved against Docker's last listing, 0 while Docker cannot be asked (then, with docker.unreachable = "drop", traffic of addresses no entry lists is dropped: rule docker-unreachable). Absent when Docker is not watched.
# TYPE nfqguard_docker_reachable gauge
`
	const headUnresolved = `# HELP nfqguard_docker_unresolved_entries [[container]] entries resolved through Docker (by name, image or label) that have no address now: their rules match nothing. Absent when the file has none.
# TYPE nfqguard_docker_unresolved_entries gauge
`
	for _, tt := range []struct {
		name string
		d    rules.DockerStatus
		want string
	}{
		{"not watched", rules.DockerStatus{}, ""},
		{"watched for names only", rules.DockerStatus{Resolved: true}, head + "nfqguard_docker_reachable 1\n"},
		{"resolved", rules.DockerStatus{Dynamic: true, Resolved: true, Unresolved: []string{"api"}},
			head + "nfqguard_docker_reachable 1\n" + headUnresolved + "nfqguard_docker_unresolved_entries 1\n"},
		{"unreachable", rules.DockerStatus{Dynamic: true, Resolved: true, UnreachableSince: started, DropUnlisted: true, Unresolved: []string{"api", "web"}},
			head + "nfqguard_docker_reachable 0\n" + headUnresolved + "nfqguard_docker_unresolved_entries 2\n"},
		{"unreachable since start", rules.DockerStatus{Dynamic: true, UnreachableSince: started, Unresolved: []string{"web"}},
			head + "nfqguard_docker_reachable 0\n" + headUnresolved + "nfqguard_docker_unresolved_entries 1\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			c := NewCollector(Options{Source: &fakeSource{s: queue.Snapshot{Time: started, Started: started, Docker: tt.d}}})
			if err := testutil.CollectAndCompare(c, strings.NewReader(tt.want), "nfqguard_docker_reachable", "nfqguard_docker_unresolved_entries"); err != nil {
				t.Error(err)
			}
		})
	}
}

func TestNoEngine(t *testing.T) {
	src := &fakeSource{off: true}
	addr := serve(t, Options{Source: src})
	mfs, _ := scrape(t, addr)
	for name := range mfs {
		if strings.HasPrefix(name, "nfqguard_") {
			t.Errorf("%s without an engine", name)
		}
	}
	if mfs["go_goroutines"] == nil {
		t.Error("no go_goroutines")
	}
	if runtime.GOOS == "linux" && mfs["process_resident_memory_bytes"] == nil {
		t.Error("no process_resident_memory_bytes")
	}

	// The engine starts.
	src.mu.Lock()
	src.off, src.s = false, testSnapshot()
	src.mu.Unlock()
	mfs, _ = scrape(t, addr)
	if got := value(t, mfs, "nfqguard_packets_total", "queue", "1", "verdict", "accept"); got != 1999 {
		t.Errorf("nfqguard_packets_total = %v, want 1999", got)
	}
	for _, name := range []string{"nfqguard_config_reloads_total", "nfqguard_status_socket_up", "nfqguard_log_records_total", "nfqguard_pcap_packets_total"} {
		if mfs[name] != nil {
			t.Errorf("%s without its source", name)
		}
	}
}

func TestNilOptions(t *testing.T) {
	addr := serve(t, Options{Source: queue.NewMonitor()}) // no engine attached
	mfs, _ := scrape(t, addr)
	for name := range mfs {
		if strings.HasPrefix(name, "nfqguard_") {
			t.Errorf("%s without a source", name)
		}
	}
}

// TestStatusSocketUp: the gauge follows SetUp, 0 until the socket listens,
// and is there without an engine (a socket that could not be opened is
// worth an alert while the engine starts).
func TestStatusSocketUp(t *testing.T) {
	sock := &StatusSocket{}
	c := NewCollector(Options{Source: &fakeSource{off: true}, StatusSocket: sock})
	const head = `
# HELP nfqguard_status_socket_up 1 while the status socket ([status] socket) answers, 0 when it could not be opened or has stopped: the engine judges traffic without it, but nfqguard status and nfqguard reload cannot reach it. Absent when the socket is off.
# TYPE nfqguard_status_socket_up gauge
`
	check := func(when, want string) {
		t.Helper()
		if err := testutil.CollectAndCompare(c, strings.NewReader(head+"nfqguard_status_socket_up "+want+"\n")); err != nil {
			t.Errorf("%s: %v", when, err)
		}
	}
	check("before SetUp", "0")
	sock.SetUp(true)
	check("after SetUp(true)", "1")
	sock.SetUp(false)
	check("after SetUp(false)", "0")
}

func TestReloadsBeforeLoad(t *testing.T) {
	c := NewCollector(Options{Reloads: &Reloads{}})
	want := `
# HELP nfqguard_config_reloads_total Configuration reloads, by result (success or failure). The initial load is not counted.
# TYPE nfqguard_config_reloads_total counter
nfqguard_config_reloads_total{result="failure"} 0
nfqguard_config_reloads_total{result="success"} 0
`
	if err := testutil.CollectAndCompare(c, strings.NewReader(want)); err != nil {
		t.Error(err)
	}
	c.o.Reloads.Observe(false, started)
	if n := testutil.CollectAndCount(c, "nfqguard_config_last_reload_success_timestamp_seconds"); n != 0 {
		t.Errorf("a failed reload gave a last success time")
	}
	want += `
# HELP nfqguard_config_last_reload_successful Whether the last configuration load or reload succeeded (1) or failed (0): after a failure the previous configuration stays in use.
# TYPE nfqguard_config_last_reload_successful gauge
nfqguard_config_last_reload_successful 0
`
	want = strings.Replace(want, `{result="failure"} 0`, `{result="failure"} 1`, 1)
	if err := testutil.CollectAndCompare(c, strings.NewReader(want)); err != nil {
		t.Error(err)
	}
}

// The accepted count is the engine's own, not Queries - BlockedQueries:
// a query counted but not yet judged when the snapshot is taken must not
// make it go backwards (Prometheus would see a counter reset).
func TestDNSAcceptCounted(t *testing.T) {
	src := &fakeSource{}
	c := NewCollector(Options{Source: src})
	accepted := func(queries, allowed, blocked uint64) float64 {
		t.Helper()
		s := queue.Snapshot{Started: started, Queues: []queue.QueueStats{{Queue: 3,
			Engine: inspect.Counts{Queries: queries, AllowedQueries: allowed, BlockedQueries: blocked}}}}
		src.set(s)
		reg := prometheus.NewRegistry()
		reg.MustRegister(c)
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		byName := map[string]*dto.MetricFamily{}
		for _, mf := range mfs {
			byName[mf.GetName()] = mf
		}
		return value(t, byName, "nfqguard_dns_queries_total", "queue", "3", "verdict", "accept")
	}
	for i, step := range []struct {
		queries, allowed, blocked uint64
		want                      float64
	}{
		{10, 8, 2, 8},
		{11, 8, 2, 8}, // counted, not judged yet
		{11, 8, 3, 8}, // then blocked: Queries - BlockedQueries would say 8, then 7 below
		{12, 8, 4, 8},
		{13, 9, 4, 9},
	} {
		if got := accepted(step.queries, step.allowed, step.blocked); got != step.want {
			t.Errorf("step %d: accepted %v, want %v", i, got, step.want)
		}
	}
}

// Duplicate rule entries are summed, duplicate queues dropped, and label
// values that are not UTF-8 repaired: any of them would fail the scrape.
func TestBadSnapshot(t *testing.T) {
	s := testSnapshot()
	s.Rules = append(s.Rules,
		queue.RuleStats{Container: "web", Rule: "default", Direction: "egress", Verdict: "drop", Flows: 1, Packets: 1},
		queue.RuleStats{Container: "bad\xff", Rule: "r", Direction: "egress", Verdict: "drop", Flows: 1, Packets: 1},
	)
	s.Queues = append(s.Queues, queue.QueueStats{Queue: 1})
	s.Latency = queue.LatencyStats{Count: 1, Bounds: queue.LatencyBounds[:3], Buckets: []uint64{1}}
	addr := serve(t, Options{Source: &fakeSource{s: s}})
	mfs, _ := scrape(t, addr)
	if got := value(t, mfs, "nfqguard_rule_flows_total", "container", "web", "rule", "default", "direction", "egress", "verdict", "drop"); got != 6 {
		t.Errorf("summed rule flows = %v, want 6", got)
	}
	if got := value(t, mfs, "nfqguard_rule_flows_total", "container", "bad\uFFFD", "rule", "r", "direction", "egress", "verdict", "drop"); got != 1 {
		t.Errorf("repaired rule flows = %v, want 1", got)
	}
	if got := value(t, mfs, "nfqguard_packets_total", "queue", "1", "verdict", "accept"); got != 1999 {
		t.Errorf("queue 1 accepted %v, want the first entry's 1999", got)
	}
	if n := len(find(t, mfs, "nfqguard_verdict_latency_seconds").GetHistogram().GetBucket()); n != 2 {
		t.Errorf("%d buckets, want 2 (1 bound and +Inf)", n)
	}
}

func TestIndex(t *testing.T) {
	addr := serve(t, Options{})
	code, ctype, body := get(t, "http://"+addr+"/")
	if code != http.StatusOK || !strings.HasPrefix(ctype, "text/html") || !strings.Contains(body, `href="/metrics"`) {
		t.Errorf("GET /: %d %s\n%s", code, ctype, body)
	}
	if code, _, _ := get(t, "http://"+addr+"/nothing"); code != http.StatusNotFound {
		t.Errorf("GET /nothing: %d", code)
	}
	resp, err := http.Post("http://"+addr+"/", "text/plain", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST /: %d", resp.StatusCode)
	}
}

func TestServeStops(t *testing.T) {
	s := New(Options{Source: &fakeSource{s: testSnapshot()}})
	ln, err := s.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	scrape(t, addr)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve after cancel: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve still running after cancel")
	}
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Errorf("%s still accepts connections", addr)
	}
}

func TestListenInUse(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	addr := ln.Addr().String()
	s := New(Options{})

	ln2, err := s.Listen(addr)
	if err == nil {
		ln2.Close()
		t.Fatalf("Listen(%s) on a port in use succeeded", addr)
	}
	if !strings.HasPrefix(err.Error(), "metrics "+addr+": ") || !errors.Is(err, syscall.EADDRINUSE) {
		t.Errorf("Listen: %v", err)
	}

	err = s.ListenAndServe(context.Background(), addr)
	if err == nil || !errors.Is(err, syscall.EADDRINUSE) || !strings.HasPrefix(err.Error(), "metrics "+addr+": ") {
		t.Errorf("ListenAndServe: %v", err)
	}
}

// Concurrent scrapes while the source changes (for -race).
func TestConcurrentScrapes(t *testing.T) {
	src := &fakeSource{s: testSnapshot()}
	reloads := &Reloads{}
	addr := serve(t, Options{Source: src, Reloads: reloads})
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Go(func() {
			for j := range 5 {
				s := testSnapshot()
				s.Queues[0].Engine.Queries += uint64(i + j)
				src.set(s)
				reloads.Observe(j%2 == 0, time.Now())
				resp, err := http.Get("http://" + addr + "/metrics")
				if err != nil {
					t.Error(err)
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					t.Errorf("scrape: %d", resp.StatusCode)
				}
			}
		})
	}
	wg.Wait()
}

// TestBackendMismatch: the mismatch gauge is 1 exactly while the watcher
// reports one.
func TestBackendMismatch(t *testing.T) {
	const head = `# HELP nfqguard_redirect_backend_mismatch 1 while Docker uses another firewall backend than [engine] firewall insists on (the redirect stays where the setting puts it); 0 otherwise.
# TYPE nfqguard_redirect_backend_mismatch gauge
`
	for _, tt := range []struct {
		mismatch string
		want     string
	}{
		{"", "0"},
		{"IPv4: Docker uses nftables, [engine] firewall is iptables", "1"},
	} {
		snap := queue.Snapshot{Time: started, Started: started, Redirect: firewall.Health{Mismatch: tt.mismatch}}
		c := NewCollector(Options{Source: &fakeSource{s: snap}})
		if err := testutil.CollectAndCompare(c, strings.NewReader(head+"nfqguard_redirect_backend_mismatch "+tt.want+"\n"),
			"nfqguard_redirect_backend_mismatch"); err != nil {
			t.Errorf("mismatch %q: %v", tt.mismatch, err)
		}
	}
}
