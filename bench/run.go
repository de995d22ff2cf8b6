package bench

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	"github.com/nfqguard/nfqguard/internal/netlab"
	"github.com/nfqguard/nfqguard/queue"
	"github.com/nfqguard/nfqguard/rules"
)

// Options configure Run.
type Options struct {
	// Config is the rule file nfqguard runs with; it must let the bench's
	// traffic reach web (tcp 80, 8000, 8001; udp 53). Empty means
	// "config.toml".
	Config string
	// Out is the directory bench.json and latency-cdf.png are written to
	// (created if needed); empty writes nothing.
	Out string
	// Binary is the nfqguard daemon executable run for the nfqguard
	// setups (cmd/nfqguard); it must be set.
	Binary string
	// Lab is the nfqguard-lab executable whose floor-go command is the Go
	// floor (cmd/nfqguard-lab); empty means this process's own executable.
	Lab string
	// Quick selects short workloads: the whole run takes under a minute.
	Quick bool
	// DockerFirewall is the Docker firewall backend the lab imitates:
	// netlab.DockerIPTables (empty too: the redirect in DOCKER-USER) or
	// netlab.DockerNftables (Docker 29's nftables backend: the redirect
	// in mangle NFQGUARD, the floors' rule at the top of mangle FORWARD).
	DockerFirewall string
	// Reps is the number of repetitions; 0 means 3.
	Reps int
	// Durations override the workload sizes of the mode; zero fields keep
	// the mode's defaults.
	Durations Durations
	// Progress receives a line per setup and repetition; nil discards.
	Progress io.Writer
}

// defaultReps is the number of repetitions: medians need at least three.
const defaultReps = 3

// Run measures every setup under every workload, Reps times, interleaved:
// in each repetition each setup's consumer is started, all workloads run,
// and the consumer is stopped. It needs root. The lab, the servers, the
// consumers and the bench's firewall rules are removed before Run
// returns, also on error and when ctx is cancelled. A workload that fails
// under a setup is recorded in the report, not returned as an error.
func Run(ctx context.Context, o Options) (*Report, error) {
	started := time.Now()
	if o.Config == "" {
		o.Config = "config.toml"
	}
	if o.Reps <= 0 {
		o.Reps = defaultReps
	}
	def := fullDurations
	if o.Quick {
		def = quickDurations
	}
	o.Durations = o.Durations.withDefaults(def)
	progress := o.Progress
	if progress == nil {
		progress = io.Discard
	}
	if os.Geteuid() != 0 {
		return nil, errors.New("bench needs root: it builds network namespaces and changes iptables rules inside them")
	}
	if o.Binary == "" {
		return nil, errors.New("no nfqguard binary to measure (Options.Binary)")
	}
	if o.Lab == "" {
		self, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("find own executable: %w", err)
		}
		o.Lab = self
	}
	src, err := os.ReadFile(o.Config)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	if _, err := rules.Load(o.Config); err != nil {
		return nil, err
	}

	tmp, err := os.MkdirTemp("", "nfqguard-bench-")
	if err != nil {
		return nil, fmt.Errorf("create work directory: %w", err)
	}
	defer os.RemoveAll(tmp)
	b := &bencher{o: o, tmp: tmp, progress: progress, started: started, src: src}
	for _, on := range []bool{false, true} {
		path := filepath.Join(tmp, fmt.Sprintf("config-fast-path-%t.toml", on))
		if err := os.WriteFile(path, []byte(setFastPath(string(src), on)), 0o644); err != nil {
			return nil, fmt.Errorf("write config copy: %w", err)
		}
		b.configs[boolIndex(on)] = path
	}
	b.floorC, err = buildFloorC(ctx, tmp)
	if errors.Is(err, errFloorCMissing) {
		b.floorCSkip = err.Error()
		fmt.Fprintf(progress, "bench: %s: skipping floor-c\n", err)
	} else if err != nil {
		return nil, err
	}

	r := &Report{
		Options: ReportOptions{Config: o.Config, Quick: o.Quick, Reps: o.Reps, Binary: o.Binary, Lab: o.Lab, Durations: o.Durations},
		Host:    hostInfo(),
		Started: started.UTC(),
	}
	if err := b.measure(ctx, r); err != nil {
		return nil, err
	}
	r.summarize()
	r.Seconds = time.Since(started).Seconds()
	if o.Out != "" {
		if err := r.writeFiles(o.Out); err != nil {
			return nil, err
		}
	}
	return r, nil
}

func boolIndex(b bool) int {
	if b {
		return 1
	}
	return 0
}

// bencher is one Run's state.
type bencher struct {
	o          Options
	tmp        string
	progress   io.Writer
	started    time.Time
	configs    [2]string // nfqguard configs with fast_path false and true
	src        []byte    // the rule file as read
	l7Configs  map[string]string
	floorC     string // floor-c binary, "" when skipped
	floorCSkip string
	l          *netlab.Lab
	clients    *clients
}

// measure builds the lab and fills r.Setups; everything it started is
// gone when it returns.
func (b *bencher) measure(ctx context.Context, r *Report) (err error) {
	fmt.Fprintf(b.progress, "bench: building the lab (%d repetitions × %d setups)\n", b.o.Reps, len(SetupNames))
	l, err := netlab.New(ctx, netlab.Options{Containers: 1, Publish: publish, DockerFirewall: b.o.DockerFirewall})
	if err != nil {
		return fmt.Errorf("build lab: %w", err)
	}
	defer func() {
		if cerr := l.Close(); cerr != nil {
			err = errors.Join(err, fmt.Errorf("remove lab: %w", cerr))
		}
	}()
	b.l = l
	r.LabPrefix = l.Prefix
	r.Host.Backend = l.Backend
	r.Host.DockerFirewall = l.DockerFirewall
	// Many short connections: reuse TIME_WAIT ports and use a wide
	// ephemeral range in the client, so conns never runs out of ports.
	for k, v := range map[string]string{"net.ipv4.tcp_tw_reuse": "1", "net.ipv4.ip_local_port_range": "10000 65000"} {
		if err := l.Sysctl(l.Out, k, v); err != nil {
			return err
		}
	}
	web := l.Containers[0]
	srv, err := startServers(l, web.NS, web.Addr)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, srv.Close()) }()
	l7srv, err := startL7Servers(l, web.NS, web.Addr)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, l7srv.Close()) }()
	if err := b.writeL7Configs(web.Addr); err != nil {
		return err
	}
	b.clients = &clients{l: l, srv: srv, host: l.HostOutside, d: b.o.Durations}

	for _, name := range SetupNames {
		s := SetupResult{Name: name, Description: setupDescriptions[name], Reps: []RepResult{}}
		if name == SetupFloorC && b.floorC == "" {
			s.Skipped = b.floorCSkip
		}
		r.Setups = append(r.Setups, s)
	}
	run := 0
	for rep := 1; rep <= b.o.Reps; rep++ {
		for i := range r.Setups {
			s := &r.Setups[i]
			if s.Skipped != "" {
				continue
			}
			res, err := b.runSetup(ctx, s.Name, rep, run)
			run++
			if err != nil {
				return fmt.Errorf("repetition %d, %s: %w", rep, s.Name, err)
			}
			s.Reps = append(s.Reps, res)
			b.report(s.Name, &res)
		}
	}
	return nil
}

// udpPortBase is the first UDP source port of the udp workload; each run
// of it takes the next udpSenders ports (below the client's ephemeral
// range).
const udpPortBase = 2000

// runSetup starts setup name's consumer, runs every workload and stops it.
// run numbers the calls, for fresh UDP source ports. Errors of workloads
// and consumers go into the result; the error returned ends the whole
// bench (cancelled, or the lab's firewall could not be restored).
func (b *bencher) runSetup(ctx context.Context, name string, rep, run int) (res RepResult, err error) {
	res = RepResult{Rep: rep, Errors: map[string]string{}}
	fail := func(workload string, err error) { res.Errors[workload] = err.Error() }
	stats := filepath.Join(b.tmp, "engine-stats.json")
	_ = os.Remove(stats)

	var c *consumer
	switch name {
	case SetupFloorC:
		c, err = startFloor(ctx, b.l, name, b.floorC, fmt.Sprint(floorQueue))
	case SetupFloorGo:
		c, err = startFloor(ctx, b.l, name, b.o.Lab, "floor-go", "--queue", fmt.Sprint(floorQueue))
	case SetupPerPacket:
		c, err = startEngine(ctx, b.l, name, b.o.Binary, b.configs[0], stats)
	case SetupNfqguard:
		c, err = startEngine(ctx, b.l, name, b.o.Binary, b.configs[1], stats)
	case SetupPort443, SetupSNI443:
		c, err = startEngine(ctx, b.l, name, b.o.Binary, b.l7Configs[name], stats)
	}
	if err != nil {
		if ctx.Err() != nil {
			return res, ctx.Err()
		}
		fail(wStart, err)
		return res, nil
	}
	// stop stops the consumer once: at the end, or on the way out of an
	// early return. A firewall it could not restore ends the bench.
	stopped := false
	stop := func() error {
		if c == nil || stopped {
			return nil
		}
		stopped = true
		serr := c.stop()
		var ce *cleanupError
		if errors.As(serr, &ce) {
			return serr
		}
		if serr != nil && ctx.Err() == nil {
			fail(wStop, serr)
		}
		return nil
	}
	defer func() { err = errors.Join(err, stop()) }()

	cl := b.clients
	var werr error // a workload's failure: recorded, the run goes on
	if res.RR, werr = cl.rr(ctx); werr != nil {
		fail(wRR, werr)
	}
	if err := ctx.Err(); err != nil {
		return res, err
	}
	if res.Conns, werr = cl.conns(ctx); werr != nil {
		fail(wConns, werr)
	}
	if err := ctx.Err(); err != nil {
		return res, err
	}
	var before cpuSnapshot
	if c != nil {
		if before, werr = b.snapshot(c); werr != nil {
			fail(wCPU, werr)
		}
	}
	firstPort := uint16(udpPortBase + (run*udpSenders)%(10000-udpPortBase-udpSenders))
	if res.UDP, werr = cl.udp(ctx, firstPort); werr != nil {
		fail(wUDP, werr)
	}
	if c != nil && res.Errors[wCPU] == "" {
		if after, err := b.snapshot(c); err != nil {
			fail(wCPU, err)
		} else {
			res.CPU = cpuResult(before, after)
		}
	}
	if err := ctx.Err(); err != nil {
		return res, err
	}
	if res.Bulk, werr = cl.bulk(ctx); werr != nil {
		fail(wBulk, werr)
	}
	if err := ctx.Err(); err != nil {
		return res, err
	}
	if slices.Contains(l7Setups, name) {
		if res.TLS, werr = cl.tlsConns(ctx); werr != nil {
			fail(wTLS, werr)
		}
		if res.QUIC, werr = cl.quicConns(ctx); werr != nil {
			fail(wQUIC, werr)
		}
		if err := ctx.Err(); err != nil {
			return res, err
		}
	}
	if c == nil {
		return res, nil
	}

	var q QueueCounters
	if err := b.l.Do(b.l.Host, func() error {
		var err error
		q, err = readQueueCounters()
		return err
	}); err != nil {
		fail(wQueue, err)
	} else {
		res.Queue = &q
	}
	if err := stop(); err != nil {
		return res, err
	}
	if name != SetupKernel && name != SetupFloorC && name != SetupFloorGo {
		sum, err := readEngineStats(stats)
		if err != nil {
			fail(wEngine, err)
		}
		res.Engine = sum
	}
	return res, nil
}

// writeL7Configs writes the rule files of SetupPort443 and SetupSNI443:
// the rule file with the fast path on and the setup's rule first for web,
// checked as the daemon will load it.
func (b *bencher) writeL7Configs(web netip.Addr) error {
	b.l7Configs = map[string]string{}
	for _, name := range []string{SetupPort443, SetupSNI443} {
		src, err := withWebRule([]byte(setFastPath(string(b.src), true)), web, l7Rules[name])
		if err != nil {
			return fmt.Errorf("%s: rule file: %w", name, err)
		}
		path := filepath.Join(b.tmp, "config-"+name+".toml")
		if err := os.WriteFile(path, []byte(src), 0o644); err != nil {
			return fmt.Errorf("%s: write rule file: %w", name, err)
		}
		if _, err := rules.Load(path); err != nil {
			return fmt.Errorf("%s: %w", name, err)
		}
		b.l7Configs[name] = path
	}
	return nil
}

// cpuSnapshot is a consumer's CPU time and its queues' packet ids at one
// moment.
type cpuSnapshot struct {
	cpu float64
	ids uint64
}

func (b *bencher) snapshot(c *consumer) (cpuSnapshot, error) {
	cpu, err := processCPU(c.pid())
	if err != nil {
		return cpuSnapshot{}, err
	}
	var q QueueCounters
	err = b.l.Do(b.l.Host, func() error {
		var err error
		q, err = readQueueCounters()
		return err
	})
	if err != nil {
		return cpuSnapshot{}, err
	}
	return cpuSnapshot{cpu: cpu, ids: q.IDSequence}, nil
}

func cpuResult(before, after cpuSnapshot) *CPUResult {
	r := &CPUResult{CPUSeconds: after.cpu - before.cpu}
	if after.ids > before.ids {
		r.Packets = after.ids - before.ids
	}
	if r.Packets >= minCPUPackets {
		us := r.CPUSeconds * 1e6 / float64(r.Packets)
		r.USPerPacket = &us
	}
	return r
}

func readEngineStats(path string) (*queue.Summary, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read engine stats: %w", err)
	}
	var s queue.Summary
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("parse engine stats %s: %w", path, err)
	}
	return &s, nil
}

// report prints one setup's repetition as a progress line.
func (b *bencher) report(name string, r *RepResult) {
	var parts []string
	if r.RR != nil {
		parts = append(parts, fmt.Sprintf("rtt p50 %sµs p99.9 %sµs", num(r.RR.RTT.P50), num(r.RR.RTT.P999)))
	}
	if r.Conns != nil {
		parts = append(parts, fmt.Sprintf("%.0f conns/s", r.Conns.PerSec))
	}
	if r.UDP != nil {
		parts = append(parts, fmt.Sprintf("udp %s kpps", num(r.UDP.Kpps)))
	}
	if r.Bulk != nil {
		parts = append(parts, fmt.Sprintf("bulk %s Gbit/s", num(r.Bulk.Gbps)))
	}
	if r.CPU != nil && r.CPU.USPerPacket != nil {
		parts = append(parts, fmt.Sprintf("cpu %s µs/pkt", num(*r.CPU.USPerPacket)))
	}
	if len(r.Errors) > 0 {
		parts = append(parts, fmt.Sprintf("%d errors", len(r.Errors)))
	}
	fmt.Fprintf(b.progress, "bench: [%5.1fs] rep %d/%d %-20s %s\n", time.Since(b.started).Seconds(), r.Rep, b.o.Reps, name, strings.Join(parts, ", "))
}

// writeFiles writes bench.json and, when there are RTT samples,
// latency-cdf.png into dir.
func (r *Report) writeFiles(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create output directory: %w", err)
	}
	if err := r.WriteJSON(filepath.Join(dir, "bench.json")); err != nil {
		return err
	}
	if !r.hasSamples() {
		return nil
	}
	return r.WritePlot(filepath.Join(dir, "latency-cdf.png"))
}

// hostInfo describes this machine; what cannot be found is left empty.
func hostInfo() HostInfo {
	h := HostInfo{CPUs: runtime.NumCPU(), GoVersion: runtime.Version()}
	var u unix.Utsname
	if unix.Uname(&u) == nil {
		h.Kernel = unix.ByteSliceToString(u.Release[:]) + " " + unix.ByteSliceToString(u.Version[:])
	}
	if b, err := os.ReadFile("/proc/cpuinfo"); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
				h.CPUModel = strings.TrimSpace(v)
				break
			}
		}
	}
	h.Commit = gitCommit()
	if out, err := exec.Command("gcc", "--version").Output(); err == nil {
		h.GCC = firstLine(string(out))
	}
	return h
}

// gitCommit is the commit the binary was built from, if the build recorded
// it, else the commit of the working directory's repository.
func gitCommit() string {
	if bi, ok := debug.ReadBuildInfo(); ok {
		var rev, dirty string
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.modified":
				if s.Value == "true" {
					dirty = "+dirty"
				}
			}
		}
		if rev != "" {
			return rev + dirty
		}
	}
	out, err := exec.Command("git", "rev-parse", "HEAD").Output()
	if err != nil {
		return ""
	}
	rev := strings.TrimSpace(string(out))
	if st, err := exec.Command("git", "status", "--porcelain", "--untracked-files=no").Output(); err == nil && len(strings.TrimSpace(string(st))) > 0 {
		rev += "+dirty"
	}
	return rev
}
