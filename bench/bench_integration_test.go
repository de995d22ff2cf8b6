package bench_test

// The whole bench, once, with tiny workloads: real traffic through the lab
// under every setup. Needs root (see netlabtest.Require).

import (
	"encoding/json"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nfqguard/nfqguard/bench"
	"github.com/nfqguard/nfqguard/internal/netlab"
	"github.com/nfqguard/nfqguard/internal/netlab/netlabtest"
)

// TestRunIntegration runs the bench in a lab whose Docker uses iptables,
// and in one whose Docker uses its nftables backend (the redirect and the
// floors' rule in mangle).
func TestRunIntegration(t *testing.T) {
	netlabtest.Require(t)
	for _, fw := range []string{netlab.DockerIPTables, netlab.DockerNftables} {
		t.Run(fw, func(t *testing.T) { runIntegration(t, fw) })
	}
}

func runIntegration(t *testing.T, dockerFW string) {
	tmp := t.TempDir()
	bin, labBin := filepath.Join(tmp, "nfqguard"), filepath.Join(tmp, "nfqguard-lab")
	for out, pkg := range map[string]string{bin: "../cmd/nfqguard", labBin: "../cmd/nfqguard-lab"} {
		if out, err := exec.Command("go", "build", "-tags", "leakcheck", "-o", out, pkg).CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", pkg, err, out)
		}
	}
	out := filepath.Join(tmp, "out")
	var progress strings.Builder
	r, err := bench.Run(t.Context(), bench.Options{
		Config: "../config.toml", Out: out, Binary: bin, Lab: labBin, Reps: 1, Progress: &progress, DockerFirewall: dockerFW,
		Durations: bench.Durations{RoundTrips: 200, Warmup: 20, Conns: 200 * time.Millisecond,
			UDP: 300 * time.Millisecond, Bulk: 300 * time.Millisecond},
	})
	t.Logf("progress:\n%s", progress.String())
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	checkCleanedUp(t, r.LabPrefix, bin, labBin)
	if r.Host.DockerFirewall != dockerFW {
		t.Errorf("report says Docker's firewall is %q, want %q", r.Host.DockerFirewall, dockerFW)
	}

	for _, name := range bench.SetupNames {
		s := r.Setup(name)
		if s == nil {
			t.Errorf("setup %s missing from the report", name)
			continue
		}
		if s.Skipped != "" {
			if name != bench.SetupFloorC {
				t.Errorf("%s skipped: %s", name, s.Skipped)
			} else if os.Getenv("CI") == "true" {
				t.Errorf("floor-c skipped under CI=true (make deps installs gcc and libnetfilter-queue-dev): %s", s.Skipped)
			} else {
				t.Logf("floor-c skipped: %s", s.Skipped)
			}
			continue
		}
		if len(s.Reps) != 1 {
			t.Errorf("%s: %d repetitions, want 1", name, len(s.Reps))
			continue
		}
		rep := s.Reps[0]
		if name != bench.SetupKernel && rep.Added == nil {
			t.Errorf("%s: no added latency (errors: %v)", name, rep.Errors)
		}
		if name == bench.SetupKernel || name == bench.SetupNfqguard {
			for _, m := range []string{bench.MetricRTTP50, bench.MetricConns, bench.MetricUDP, bench.MetricBulk} {
				if st := s.Summary[m]; st == nil || st.Median <= 0 {
					t.Errorf("%s: %s = %+v, want > 0 (errors: %v)", name, m, st, rep.Errors)
				}
			}
		}
		if name == bench.SetupKernel || name == bench.SetupPort443 || name == bench.SetupSNI443 {
			for _, m := range []string{bench.MetricTLSConns, bench.MetricTLSTTFB, bench.MetricQUICConns, bench.MetricQUICTTFB} {
				if st := s.Summary[m]; st == nil || st.Median <= 0 {
					t.Errorf("%s: %s = %+v, want > 0 (errors: %v)", name, m, st, rep.Errors)
				}
			}
		}
		if name == bench.SetupSNI443 {
			// The flows were held until their ClientHello was read: QUIC
			// flows counted as such, and nothing undecided.
			if e := rep.Engine; e == nil || e.Inspected == 0 || e.Decided == 0 || e.Undecided != 0 {
				t.Errorf("%s: engine summary %+v, want inspected flows and none undecided (errors: %v)", name, e, rep.Errors)
			}
		}
		if name == bench.SetupNfqguard || name == bench.SetupPerPacket {
			if rep.Engine == nil || rep.Engine.Latency.Count == 0 {
				t.Errorf("%s: no engine verdict latency: %+v (errors: %v)", name, rep.Engine, rep.Errors)
			}
		}
		if name == bench.SetupFloorC || name == bench.SetupFloorGo || name == bench.SetupPerPacket {
			if rep.Queue == nil || rep.CPU == nil || rep.CPU.Packets == 0 {
				t.Errorf("%s: kernel queue counters or CPU not read: %+v, %+v (errors: %v)", name, rep.Queue, rep.CPU, rep.Errors)
			}
		}
	}

	b, err := os.ReadFile(filepath.Join(out, "bench.json"))
	if err != nil {
		t.Fatal(err)
	}
	var back bench.Report
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatalf("bench.json: %v", err)
	}
	if len(back.Setups) != len(bench.SetupNames) || back.Options.Reps != 1 {
		t.Errorf("bench.json holds %d setups and %d repetitions, want %d and 1", len(back.Setups), back.Options.Reps, len(bench.SetupNames))
	}
	f, err := os.Open(filepath.Join(out, "latency-cdf.png"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := png.Decode(f); err != nil {
		t.Errorf("latency-cdf.png: %v", err)
	}
	var md strings.Builder
	if err := r.WriteMarkdown(&md); err != nil {
		t.Fatal(err)
	}
	t.Logf("report:\n%s", md.String())
}

// checkCleanedUp fails the test when a namespace of the lab or a process
// of the bench's binaries is left.
func checkCleanedUp(t *testing.T, prefix, bin, labBin string) {
	t.Helper()
	if prefix == "" {
		t.Error("report does not name the lab prefix")
	}
	out, err := exec.Command("ip", "netns", "list").Output()
	if err != nil {
		t.Fatalf("ip netns list: %v", err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if prefix != "" && strings.HasPrefix(line, prefix) {
			t.Errorf("lab namespace left behind: %s", line)
		}
	}
	procs, _ := filepath.Glob("/proc/[0-9]*/cmdline")
	for _, p := range procs {
		b, err := os.ReadFile(p)
		if err != nil {
			continue // gone meanwhile
		}
		args := strings.Split(string(b), "\x00")
		if len(args) > 0 && (args[0] == bin || args[0] == labBin || strings.HasSuffix(args[0], "/floor-c")) {
			t.Errorf("process left behind: %s: %s", p, strings.Join(args, " "))
		}
	}
}
