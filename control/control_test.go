package control

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/nfqguard/nfqguard/inspect"
	"github.com/nfqguard/nfqguard/queue"
	"github.com/nfqguard/nfqguard/rules"
)

type fakeHandler struct {
	reloads int
}

func (h *fakeHandler) Status(top int) (*Status, error) {
	return &Status{PID: 42, Config: "x.toml", TopRules: make([]Rule, 0, top)}, nil
}

func (h *fakeHandler) Reload() ReloadResult {
	h.reloads++
	if h.reloads == 1 {
		return ReloadResult{OK: true, Generation: 1}
	}
	return ReloadResult{Error: "x.toml:3:1: bad", Generation: 1}
}

func serve(t *testing.T, path string, h Handler) {
	t.Helper()
	s, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, h) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
		if _, err := os.Stat(path); !os.IsNotExist(err) {
			t.Errorf("socket left behind: %v", err)
		}
	})
}

func TestServerRoundTrip(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "run")
	path := filepath.Join(dir, "nfqguard.sock")
	h := &fakeHandler{}
	serve(t, path, h)

	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Errorf("socket mode %o, want 600", perm)
	}
	if di, _ := os.Stat(dir); di.Mode().Perm() != 0o700 {
		t.Errorf("directory mode %o, want 700", di.Mode().Perm())
	}

	r, err := Ask(path, Request{Cmd: "status", Top: 3}, time.Second)
	if err != nil || !r.OK || r.Status == nil || r.Status.PID != 42 || cap(r.Status.TopRules) != 0 {
		t.Fatalf("status: %+v, %v", r, err)
	}
	r, err = Ask(path, Request{Cmd: "reload"}, time.Second)
	if err != nil || !r.OK || r.Reload == nil || r.Reload.Generation != 1 {
		t.Fatalf("first reload: %+v, %v", r, err)
	}
	r, err = Ask(path, Request{Cmd: "reload"}, time.Second)
	if err != nil || r.OK || r.Error != "x.toml:3:1: bad" {
		t.Fatalf("failed reload: %+v, %v", r, err)
	}
	r, err = Ask(path, Request{Cmd: "shutdown"}, time.Second)
	if err != nil || r.OK || !strings.Contains(r.Error, `unknown command "shutdown"`) {
		t.Fatalf("unknown command: %+v, %v", r, err)
	}
	// Not JSON: an error, and the server goes on.
	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	c.Write([]byte("hello\n"))
	buf := make([]byte, 200)
	n, _ := c.Read(buf)
	c.Close()
	if !strings.Contains(string(buf[:n]), `"ok":false`) {
		t.Errorf("garbage request answered %q", buf[:n])
	}
	if _, err := Ask(path, Request{Cmd: "status"}, time.Second); err != nil {
		t.Errorf("server gone after a bad request: %v", err)
	}
}

func TestListenRefusesRunningDaemonAndReplacesStale(t *testing.T) {
	path := filepath.Join(t.TempDir(), "s.sock")
	serve(t, path, &fakeHandler{})
	if _, err := Listen(path); !errors.Is(err, ErrRunning) || !strings.Contains(err.Error(), "another nfqguard is running") {
		t.Errorf("second Listen: %v", err)
	}

	stale := filepath.Join(t.TempDir(), "stale.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: stale, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close() // the file stays, nobody listens: a dead daemon's socket
	serve(t, stale, &fakeHandler{})
	if _, err := Ask(stale, Request{Cmd: "status"}, time.Second); err != nil {
		t.Errorf("stale socket not replaced: %v", err)
	}

	plain := filepath.Join(t.TempDir(), "file")
	os.WriteFile(plain, nil, 0o600)
	if _, err := Listen(plain); !errors.Is(err, ErrNotSocket) || !strings.Contains(err.Error(), "not a socket") {
		t.Errorf("Listen over a plain file: %v", err)
	}
}

func TestAskWithoutDaemon(t *testing.T) {
	_, err := Ask(filepath.Join(t.TempDir(), "none.sock"), Request{Cmd: "status"}, time.Second)
	if err == nil || !strings.Contains(err.Error(), "no nfqguard is running") || !strings.Contains(err.Error(), `"status socket unavailable"`) {
		t.Errorf("Ask without a daemon: %v", err)
	}
}

func TestBuild(t *testing.T) {
	t0 := time.Date(2026, 11, 22, 10, 0, 0, 0, time.UTC)
	snap := func(at time.Time, p0, p1 uint64) queue.Snapshot {
		return queue.Snapshot{
			Time: at, Started: t0, Generation: 2,
			Queues: []queue.QueueStats{
				{Queue: 0, Engine: inspect.Counts{Packets: p0, Allowed: p0 - 1, Dropped: 1, Flows: 5, Blocked: 2, FastPath: 3, HeldNow: 1, FlowTableFlows: 4, FlowTableSize: 1024}, KernelDropped: 7},
				{Queue: 1, Engine: inspect.Counts{Packets: p1, Allowed: p1, Flows: 1}},
			},
			Rules: []queue.RuleStats{
				{Container: "web", Rule: "default", Direction: "ingress", Verdict: "drop", Flows: 1, Packets: 9},
				{Container: "web", Rule: "web-http", Direction: "ingress", Verdict: "allow", Flows: 50, Packets: 90},
				{Container: "web", Rule: "no-smtp", Direction: "egress", Verdict: "drop", Flows: 3, Packets: 3},
			},
			Percentiles: queue.LatencySummary{Count: 10, P50: 20000, P99: 80000},
		}
	}
	s := &Sampler{}
	s.add(snap(t0.Add(time.Second), 100, 10))
	top := []queue.BlockedFlow{{Queue: 0, BlockedFlow: inspect.BlockedFlow{
		Src: netip.MustParseAddrPort("203.0.113.2:40000"), Dst: netip.MustParseAddrPort("172.18.0.2:22"),
		Proto: rules.ProtoTCP, Container: "web", RuleID: "default", Direction: rules.Ingress, Packets: 9, Bytes: 540,
		Start: t0, Last: t0.Add(3 * time.Second)}}}
	st := Build(snap(t0.Add(5*time.Second), 500, 30), top, s, 1)
	if st.RateWindowSeconds != 4 || st.PacketsPerSecond != 105 || st.Queues[0].PacketsPerSecond != 100 || st.Queues[1].PacketsPerSecond != 5 {
		t.Errorf("rates: window %v, total %v, queues %+v", st.RateWindowSeconds, st.PacketsPerSecond, st.Queues)
	}
	if st.Packets != 530 || st.Dropped != 1 || st.BlockedFlows != 2 || st.FastPathFlows != 3 || st.HeldFlows != 1 || st.Queues[0].KernelDropped != 7 {
		t.Errorf("totals: %+v", st)
	}
	if len(st.TopRules) != 1 || st.TopRules[0].Rule != "no-smtp" {
		t.Errorf("top rules = %+v, want no-smtp only (most blocked flows, top 1)", st.TopRules)
	}
	if len(st.TopBlocked) != 1 || st.TopBlocked[0].Src != "203.0.113.2:40000" || st.TopBlocked[0].Proto != "tcp" {
		t.Errorf("top blocked = %+v", st.TopBlocked)
	}
	if st.Latency.P50 != 20e-6 || st.Latency.P99 != 80e-6 {
		t.Errorf("latency = %+v", st.Latency)
	}
	var b bytes.Buffer
	if err := st.WriteText(&b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"packets/s  105 (over the last 4s)", "203.0.113.2:40000", "no-smtp", "p50 20µs", "KERNEL DROPS"} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("text lacks %q:\n%s", want, b.String())
		}
	}
}

// TestBuildDocker: what the table in force knows of Docker reaches status,
// in JSON and in text, so that an operator sees at once that container
// traffic is not judged as configured.
func TestBuildDocker(t *testing.T) {
	t0 := time.Date(2026, 12, 6, 3, 0, 0, 0, time.UTC)
	for _, tt := range []struct {
		name     string
		d        rules.DockerStatus
		want     Docker
		wantText string
	}{
		{"static file, no Docker", rules.DockerStatus{},
			Docker{State: "not watched", Unresolved: []string{}}, "docker     not watched\n"},
		{"resolved", rules.DockerStatus{Dynamic: true, Resolved: true, Unresolved: []string{"api"}},
			Docker{State: "reachable", Unresolved: []string{"api"}},
			"docker     reachable; unresolved (their rules match nothing): api\n"},
		{"unreachable, unlisted dropped", rules.DockerStatus{Dynamic: true, UnreachableSince: t0, DropUnlisted: true, Unresolved: []string{"web", "api"}},
			Docker{State: "unreachable", UnreachableSince: &t0, Unlisted: "dropped", Unresolved: []string{"web", "api"}},
			"docker     unreachable since 2026-12-06T03:00:00Z (1m30s): traffic of addresses no entry lists is DROPPED until Docker answers; unresolved (their rules match nothing): web, api\n"},
		{"unreachable, defaults", rules.DockerStatus{Dynamic: true, Resolved: true, UnreachableSince: t0},
			Docker{State: "unreachable", UnreachableSince: &t0, Unlisted: "defaults", Unresolved: []string{}},
			"docker     unreachable since 2026-12-06T03:00:00Z (1m30s): addresses no entry lists get [defaults]; entries resolved through Docker keep the last known containers\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			st := Build(queue.Snapshot{Time: t0.Add(90 * time.Second), Started: t0, Docker: tt.d}, nil, nil, 5)
			if diff := cmp.Diff(tt.want, st.Docker); diff != "" {
				t.Errorf("Docker (-want +got):\n%s", diff)
			}
			var b bytes.Buffer
			if err := st.WriteText(&b); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(b.String(), "\n"+tt.wantText) {
				t.Errorf("text lacks %q:\n%s", tt.wantText, b.String())
			}
			js, err := json.Marshal(st)
			if err != nil {
				t.Fatal(err)
			}
			var back Status
			if err := json.Unmarshal(js, &back); err != nil || back.Docker.State != tt.want.State {
				t.Errorf("JSON round trip: %v, docker %+v", err, back.Docker)
			}
		})
	}
}
