package bench

import (
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"math"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/nfqguard/nfqguard/internal/netlab"
	"github.com/nfqguard/nfqguard/queue"
)

// Report is everything one bench run measured: its options, the host, and
// for every setup the raw numbers of each repetition and their summary.
// It is what bench.json holds.
type Report struct {
	Options ReportOptions `json:"options"` // what the run was asked to do
	Host    HostInfo      `json:"host"`    // where it ran
	Started time.Time     `json:"started"` // when it started (UTC)
	Seconds float64       `json:"seconds"` // wall time of the run
	// LabPrefix is the name prefix of the lab's network namespaces (all
	// removed when Run returns).
	LabPrefix string        `json:"lab_prefix"`
	Setups    []SetupResult `json:"setups"` // in SetupNames order, skipped ones included
	Ratios    []Ratio       `json:"ratios"` // against the project's targets
}

// ReportOptions are the options a report was made with.
type ReportOptions struct {
	Config    string    `json:"config"`      // the rule file
	Quick     bool      `json:"quick"`       // --quick
	Reps      int       `json:"repetitions"` // repetitions of every setup
	Binary    string    `json:"binary"`      // the nfqguard executable run
	Lab       string    `json:"lab_binary"`  // the nfqguard-lab executable whose floor-go was run
	Durations Durations `json:"durations"`   // workload sizes, defaults resolved
}

// HostInfo describes the machine a report was made on.
type HostInfo struct {
	Kernel    string `json:"kernel"`              // release and version (uname)
	CPUs      int    `json:"cpus"`                // logical CPUs
	CPUModel  string `json:"cpu_model,omitempty"` // from /proc/cpuinfo
	GoVersion string `json:"go_version"`          // of the bench binary
	Commit    string `json:"commit,omitempty"`    // git commit of the working tree, "+dirty" when modified
	GCC       string `json:"gcc,omitempty"`       // gcc --version, first line
	Backend   string `json:"iptables_backend"`    // the lab's iptables backend
	// DockerFirewall is the Docker firewall backend the lab imitates
	// (iptables: DOCKER-USER; nftables: Docker 29's docker-bridges table).
	DockerFirewall string `json:"docker_firewall"`
}

// SetupResult is one setup's repetitions and their summary.
type SetupResult struct {
	Name        string      `json:"name"`              // one of SetupNames
	Description string      `json:"description"`       // what runs
	Skipped     string      `json:"skipped,omitempty"` // why the setup was not measured
	Reps        []RepResult `json:"repetitions"`
	// Summary condenses the repetitions, keyed by metric (the Metric… constants).
	// A metric that was measured in no repetition is absent.
	Summary map[string]*Stat `json:"summary"`
}

// RepResult is what one repetition of one setup measured. A workload that
// failed has an entry in Errors instead of a result.
type RepResult struct {
	Rep   int          `json:"rep"` // 1-based
	RR    *RRResult    `json:"rr,omitempty"`
	Added *Percentiles `json:"added_latency_us,omitempty"` // per queue traversal, against the same repetition's kernel
	Conns *RateResult  `json:"conns,omitempty"`
	UDP   *UDPResult   `json:"udp,omitempty"`
	Bulk  *BulkResult  `json:"bulk,omitempty"`
	CPU   *CPUResult   `json:"cpu,omitempty"`
	// TLS and QUIC are the new-connection workloads to web's 443, run
	// under l7Setups only.
	TLS  *HandshakeResult `json:"tls,omitempty"`
	QUIC *HandshakeResult `json:"quic,omitempty"`
	// Queue are the kernel's counters of the setup's queues just before
	// its consumer stopped (since it bound them).
	Queue *QueueCounters `json:"queue,omitempty"`
	// Engine is nfqguard's own --stats-json summary.
	Engine *queue.Summary    `json:"engine,omitempty"`
	Errors map[string]string `json:"errors,omitempty"`
}

// CPUResult is the consumer's CPU time per queued packet during the udp
// workload.
type CPUResult struct {
	CPUSeconds float64 `json:"cpu_seconds"` // utime+stime of the consumer process
	Packets    uint64  `json:"packets"`     // packets queued meanwhile (id_sequence delta)
	// USPerPacket is CPUSeconds/Packets in µs; absent when fewer than
	// minCPUPackets were queued (the fast path queues a flow's first
	// packets only).
	USPerPacket *float64 `json:"us_per_packet,omitempty"`
}

// minCPUPackets is the fewest queued packets CPU time is divided by: below
// it, the consumer's idle CPU time would be the whole result.
const minCPUPackets = 1000

// Metric names: the keys of SetupResult.Summary.
const (
	MetricAddedP50     = "added_p50_us"
	MetricAddedP90     = "added_p90_us"
	MetricAddedP99     = "added_p99_us"
	MetricAddedP999    = "added_p999_us"
	MetricRTTP50       = "rtt_p50_us"
	MetricRTTP90       = "rtt_p90_us"
	MetricRTTP99       = "rtt_p99_us"
	MetricRTTP999      = "rtt_p999_us"
	MetricConns        = "conns_per_s"
	MetricUDP          = "udp_kpps"
	MetricBulk         = "bulk_gbps"
	MetricCPU          = "cpu_us_per_packet"
	MetricTLSConns     = "tls_conns_per_s"
	MetricTLSTTFB      = "tls_ttfb_p50_us"
	MetricQUICConns    = "quic_conns_per_s"
	MetricQUICTTFB     = "quic_ttfb_p50_us"
	MetricEngineP50    = "engine_verdict_p50_us"
	MetricEngineP90    = "engine_verdict_p90_us"
	MetricEngineP99    = "engine_verdict_p99_us"
	MetricEngineP999   = "engine_verdict_p999_us"
	MetricEngineENOBUF = "engine_enobufs"
	MetricKernelDrops  = "kernel_drops"
	MetricQueueDropped = "queue_dropped"
	MetricUserDropped  = "user_dropped"
)

// metric extracts one number from a repetition; ok is false when the
// repetition did not measure it.
type metric struct {
	name     string
	workload string // whose error explains a missing value
	get      func(r *RepResult) (v float64, ok bool)
}

func ptile(p *Percentiles, i int) (float64, bool) {
	if p == nil {
		return 0, false
	}
	return p.values()[i], true
}

func engineTile(r *RepResult, i int) (float64, bool) {
	if r.Engine == nil || r.Engine.Latency.Count == 0 {
		return 0, false
	}
	l := r.Engine.Latency
	return float64([4]int64{l.P50, l.P90, l.P99, l.P999}[i]) / 1e3, true
}

// metrics lists every summarised metric.
var metrics = []metric{
	{MetricAddedP50, wRR, func(r *RepResult) (float64, bool) { return ptile(r.Added, 0) }},
	{MetricAddedP90, wRR, func(r *RepResult) (float64, bool) { return ptile(r.Added, 1) }},
	{MetricAddedP99, wRR, func(r *RepResult) (float64, bool) { return ptile(r.Added, 2) }},
	{MetricAddedP999, wRR, func(r *RepResult) (float64, bool) { return ptile(r.Added, 3) }},
	{MetricRTTP50, wRR, func(r *RepResult) (float64, bool) { return rrTile(r, 0) }},
	{MetricRTTP90, wRR, func(r *RepResult) (float64, bool) { return rrTile(r, 1) }},
	{MetricRTTP99, wRR, func(r *RepResult) (float64, bool) { return rrTile(r, 2) }},
	{MetricRTTP999, wRR, func(r *RepResult) (float64, bool) { return rrTile(r, 3) }},
	{MetricConns, wConns, func(r *RepResult) (float64, bool) {
		if r.Conns == nil {
			return 0, false
		}
		return r.Conns.PerSec, true
	}},
	{MetricUDP, wUDP, func(r *RepResult) (float64, bool) {
		if r.UDP == nil {
			return 0, false
		}
		return r.UDP.Kpps, true
	}},
	{MetricBulk, wBulk, func(r *RepResult) (float64, bool) {
		if r.Bulk == nil {
			return 0, false
		}
		return r.Bulk.Gbps, true
	}},
	{MetricCPU, wCPU, func(r *RepResult) (float64, bool) {
		if r.CPU == nil || r.CPU.USPerPacket == nil {
			return 0, false
		}
		return *r.CPU.USPerPacket, true
	}},
	{MetricTLSConns, wTLS, func(r *RepResult) (float64, bool) { return handshakeMetric(r.TLS, false) }},
	{MetricTLSTTFB, wTLS, func(r *RepResult) (float64, bool) { return handshakeMetric(r.TLS, true) }},
	{MetricQUICConns, wQUIC, func(r *RepResult) (float64, bool) { return handshakeMetric(r.QUIC, false) }},
	{MetricQUICTTFB, wQUIC, func(r *RepResult) (float64, bool) { return handshakeMetric(r.QUIC, true) }},
	{MetricEngineP50, wEngine, func(r *RepResult) (float64, bool) { return engineTile(r, 0) }},
	{MetricEngineP90, wEngine, func(r *RepResult) (float64, bool) { return engineTile(r, 1) }},
	{MetricEngineP99, wEngine, func(r *RepResult) (float64, bool) { return engineTile(r, 2) }},
	{MetricEngineP999, wEngine, func(r *RepResult) (float64, bool) { return engineTile(r, 3) }},
	{MetricEngineENOBUF, wEngine, func(r *RepResult) (float64, bool) {
		if r.Engine == nil {
			return 0, false
		}
		return float64(r.Engine.ENOBUFS), true
	}},
	{MetricKernelDrops, wQueue, func(r *RepResult) (float64, bool) {
		if r.Queue == nil {
			return 0, false
		}
		return float64(r.Queue.QueueDropped + r.Queue.UserDropped), true
	}},
	{MetricQueueDropped, wQueue, func(r *RepResult) (float64, bool) {
		if r.Queue == nil {
			return 0, false
		}
		return float64(r.Queue.QueueDropped), true
	}},
	{MetricUserDropped, wQueue, func(r *RepResult) (float64, bool) {
		if r.Queue == nil {
			return 0, false
		}
		return float64(r.Queue.UserDropped), true
	}},
}

// handshakeMetric is h's connections per second, or its median time to
// first byte with ttfb.
func handshakeMetric(h *HandshakeResult, ttfb bool) (float64, bool) {
	if h == nil {
		return 0, false
	}
	if ttfb {
		return h.TTFB.P50, true
	}
	return h.PerSec, true
}

func rrTile(r *RepResult, i int) (float64, bool) {
	if r.RR == nil {
		return 0, false
	}
	return ptile(&r.RR.RTT, i)
}

func metricByName(name string) metric {
	i := slices.IndexFunc(metrics, func(m metric) bool { return m.name == name })
	return metrics[i]
}

// Setup returns the result of the named setup, or nil.
func (r *Report) Setup(name string) *SetupResult {
	for i := range r.Setups {
		if r.Setups[i].Name == name {
			return &r.Setups[i]
		}
	}
	return nil
}

// summarize computes the added latencies against the kernel of the same
// repetition, every setup's summary and the ratios.
func (r *Report) summarize() {
	kernel := r.Setup(SetupKernel)
	for i := range r.Setups {
		s := &r.Setups[i]
		if s.Name != SetupKernel && kernel != nil {
			for j := range s.Reps {
				rep := &s.Reps[j]
				rep.Added = nil
				k := kernel.rep(rep.Rep)
				if rep.RR != nil && k != nil && k.RR != nil {
					a := addedLatency(rep.RR.RTT, k.RR.RTT)
					rep.Added = &a
				}
			}
		}
		s.Summary = map[string]*Stat{}
		for _, m := range metrics {
			var vs []float64
			for j := range s.Reps {
				if v, ok := m.get(&s.Reps[j]); ok {
					vs = append(vs, v)
				}
			}
			if st := newStat(vs); st != nil {
				s.Summary[m.name] = st
			}
		}
	}
	r.Ratios = nil
	for _, d := range ratioDefs {
		r.Ratios = append(r.Ratios, r.ratio(d))
	}
}

func (s *SetupResult) rep(n int) *RepResult {
	for i := range s.Reps {
		if s.Reps[i].Rep == n {
			return &s.Reps[i]
		}
	}
	return nil
}

// Ratio compares a setup with another against one of the project's
// targets. Value condenses the ratio of each repetition (paired: both
// setups of one repetition ran back to back); Met compares its median
// with the target. Nothing fails on it: it is for reading.
type Ratio struct {
	Name   string  `json:"name"`            // "bulk Gbit/s: nfqguard / kernel"
	Target string  `json:"target"`          // "≥ 0.95", "≤ 1.25"
	Value  *Stat   `json:"value,omitempty"` // absent when a setup lacks the metric
	Met    *bool   `json:"met,omitempty"`   // Value.Median against Goal
	Goal   float64 `json:"goal"`            // the target's number
	// AtLeast is true when the ratio should be at least Goal, false
	// when at most.
	AtLeast bool `json:"at_least"`
}

type ratioDef struct {
	name, num, den, metric string
	goal                   float64
	atLeast                bool
	// diff compares num - den instead of num / den (an added time).
	diff bool
}

// ratioDefs are the targets that the bench measures.
var ratioDefs = []ratioDef{
	{"bulk Gbit/s: nfqguard / kernel", SetupNfqguard, SetupKernel, MetricBulk, 0.95, true, false},
	{"added latency p50: nfqguard-per-packet / floor-c", SetupPerPacket, SetupFloorC, MetricAddedP50, 1.25, false, false},
	{"added latency p99: nfqguard-per-packet / floor-c", SetupPerPacket, SetupFloorC, MetricAddedP99, 1.25, false, false},
	{"UDP kpps: nfqguard-per-packet / floor-c", SetupPerPacket, SetupFloorC, MetricUDP, 1.0, true, false},
	{"conns/s: nfqguard / kernel", SetupNfqguard, SetupKernel, MetricConns, 0.6, true, false},
	{"inspected TLS conns/s: nfqguard-443-sni / nfqguard-443-port", SetupSNI443, SetupPort443, MetricTLSConns, 0.8, true, false},
	{"added TLS time to first byte p50 (µs): nfqguard-443-sni - nfqguard-443-port", SetupSNI443, SetupPort443, MetricTLSTTFB, 30, false, true},
	{"inspected QUIC conns/s: nfqguard-443-sni / nfqguard-443-port", SetupSNI443, SetupPort443, MetricQUICConns, 0.8, true, false},
	{"added QUIC time to first byte p50 (µs): nfqguard-443-sni - nfqguard-443-port", SetupSNI443, SetupPort443, MetricQUICTTFB, 30, false, true},
}

func (r *Report) ratio(d ratioDef) Ratio {
	op := "≤"
	if d.atLeast {
		op = "≥"
	}
	out := Ratio{Name: d.name, Target: fmt.Sprintf("%s %g", op, d.goal), Goal: d.goal, AtLeast: d.atLeast}
	num, den := r.Setup(d.num), r.Setup(d.den)
	if num == nil || den == nil {
		return out
	}
	m := metricByName(d.metric)
	var vs []float64
	for i := range num.Reps {
		a := &num.Reps[i]
		b := den.rep(a.Rep)
		if b == nil {
			continue
		}
		x, ok1 := m.get(a)
		y, ok2 := m.get(b)
		switch {
		case ok1 && ok2 && d.diff:
			vs = append(vs, x-y)
		case ok1 && ok2 && y != 0:
			vs = append(vs, x/y)
		}
	}
	out.Value = newStat(vs)
	if out.Value != nil {
		met := out.Value.Median >= d.goal
		if !d.atLeast {
			met = out.Value.Median <= d.goal
		}
		out.Met = &met
	}
	return out
}

// WriteJSON writes the report to path as indented JSON.
func (r *Report) WriteJSON(path string) error {
	b, err := json.MarshalIndent(r, "", "  ")
	if err != nil {
		return fmt.Errorf("encode report: %w", err)
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	return nil
}

// column is a column of the Markdown table.
type column struct {
	head   string
	metric string
	format func(float64) string
}

var columns = []column{
	{"added p50 (µs)", MetricAddedP50, num},
	{"added p99 (µs)", MetricAddedP99, num},
	{"RTT p50 (µs)", MetricRTTP50, num},
	{"RTT p99.9 (µs)", MetricRTTP999, num},
	{"conns/s", MetricConns, whole},
	{"UDP kpps", MetricUDP, num},
	{"bulk Gbit/s", MetricBulk, num},
	{"CPU µs/pkt", MetricCPU, num},
	{"engine p50 (µs)", MetricEngineP50, num},
	{"engine p99 (µs)", MetricEngineP99, num},
	{"kernel drops", MetricKernelDrops, whole},
}

// l7Columns are the columns of the deep-inspection table, whose rows are
// l7Setups.
var l7Columns = []column{
	{"TLS conns/s", MetricTLSConns, whole},
	{"TLS time to first byte p50 (µs)", MetricTLSTTFB, num},
	{"QUIC conns/s", MetricQUICConns, whole},
	{"QUIC time to first byte p50 (µs)", MetricQUICTTFB, num},
}

// num formats v with about three significant digits.
func num(v float64) string {
	switch a := math.Abs(v); {
	case a >= 100:
		return fmt.Sprintf("%.0f", v)
	case a >= 10:
		return fmt.Sprintf("%.1f", v)
	default:
		return fmt.Sprintf("%.2f", v)
	}
}

func whole(v float64) string { return fmt.Sprintf("%.0f", v) }

func cell(s *Stat, format func(float64) string) string {
	return fmt.Sprintf("%s (%s–%s)", format(s.Median), format(s.Min), format(s.Max))
}

// WriteMarkdown renders the report: a table with a row per setup, notes
// (skipped setups, errors), and the ratios against the targets.
func (r *Report) WriteMarkdown(w io.Writer) error {
	var b strings.Builder
	heads := []string{"setup"}
	for _, c := range columns {
		heads = append(heads, c.head)
	}
	row := func(cells []string) { b.WriteString("| " + strings.Join(cells, " | ") + " |\n") }
	row(heads)
	row(slices.Repeat([]string{"---"}, len(heads)))
	partial := false
	var notes []string
	for i := range r.Setups {
		s := &r.Setups[i]
		cells := []string{s.Name}
		for _, c := range columns {
			cells = append(cells, s.cell(c, &partial))
		}
		row(cells)
		if s.Skipped != "" {
			notes = append(notes, fmt.Sprintf("%s skipped: %s", s.Name, s.Skipped))
		}
		for _, rep := range s.Reps {
			for _, k := range slices.Sorted(maps.Keys(rep.Errors)) {
				notes = append(notes, fmt.Sprintf("%s, repetition %d, %s: %s", s.Name, rep.Rep, k, oneLine(rep.Errors[k])))
			}
		}
	}
	reps := fmt.Sprintf("%d interleaved repetitions", r.Options.Reps)
	if r.Options.Reps == 1 {
		reps = "1 repetition"
	}
	if r.Host.DockerFirewall == netlab.DockerNftables {
		b.WriteString("\nLab: Docker 29's nftables firewall backend (nfqguard hooked at mangle NFQGUARD, the floors at the top of mangle FORWARD).\n")
	}
	fmt.Fprintf(&b, "\nEach cell: median (min–max) over %s. "+
		"added = (RTT − kernel's RTT) / 2 at the same percentile and repetition: the latency one queue traversal adds "+
		"(a round trip crosses FORWARD twice). CPU µs/pkt: the consumer's CPU time during udp / packets queued meanwhile; "+
		"n/a for the kernel and under %d queued packets (the fast path). engine: nfqguard's verdict latency (received → verdict sent). "+
		"kernel drops: queue_dropped + user_dropped of the setup's queues.\n", reps, minCPUPackets)
	var l7b strings.Builder
	l7row := func(cells []string) { l7b.WriteString("| " + strings.Join(cells, " | ") + " |\n") }
	fmt.Fprintf(&l7b, "\nDeep inspection: new TLS (TCP) and QUIC connections to web's port %d (connect, full handshake, "+
		"the server's first byte, close; a new flow each), judged by a port rule or by a tls_sni rule in the same place:\n\n", l7Port)
	heads = []string{"setup"}
	for _, c := range l7Columns {
		heads = append(heads, c.head)
	}
	l7row(heads)
	l7row(slices.Repeat([]string{"---"}, len(heads)))
	for _, name := range l7Setups {
		s := r.Setup(name)
		if s == nil {
			continue
		}
		cells := []string{s.Name}
		for _, c := range l7Columns {
			cells = append(cells, s.cell(c, &partial))
		}
		l7row(cells)
	}

	if partial {
		notes = append(notes, "* measured in fewer repetitions than ran (see the errors above)")
	}
	if len(notes) > 0 {
		b.WriteString("\n")
		for _, n := range notes {
			b.WriteString("- " + n + "\n")
		}
	}

	b.WriteString(l7b.String())
	b.WriteString("\nTargets (ratios of this run; computed, not asserted):\n\n")
	row([]string{"ratio", "median (min–max)", "target", "met"})
	row([]string{"---", "---", "---", "---"})
	for _, rt := range r.Ratios {
		value, met := "n/a", "n/a"
		if rt.Value != nil {
			value = cell(rt.Value, func(v float64) string { return fmt.Sprintf("%.2f", v) })
		}
		if rt.Met != nil {
			met = map[bool]string{true: "yes", false: "no"}[*rt.Met]
		}
		row([]string{rt.Name, value, rt.Target, met})
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// cell renders column c of s's row.
func (s *SetupResult) cell(c column, partial *bool) string {
	if s.Skipped != "" {
		return "skipped"
	}
	m := metricByName(c.metric)
	st := s.Summary[c.metric]
	errored := 0
	for _, rep := range s.Reps {
		if _, ok := rep.Errors[m.workload]; ok {
			errored++
		} else if _, ok := rep.Errors[wStart]; ok {
			errored++
		}
	}
	switch {
	case st == nil && errored > 0:
		return "error"
	case st == nil:
		return "n/a"
	case errored > 0 && st.N < len(s.Reps):
		*partial = true
		return cell(st, c.format) + "*"
	}
	return cell(st, c.format)
}

// oneLine shortens a multi-line error (with a process's output, or one
// error per connect loop) to its first line for the table's notes;
// bench.json keeps it whole.
func oneLine(s string) string {
	line, _, more := strings.Cut(s, "\n")
	if more {
		return line + " (more in bench.json)"
	}
	return line
}
