package daemon

// Reload semantics without the kernel: a Daemon opened by New but never
// Run has its table, its log and its counters, which is all Reload
// touches (rejudge_on_reload with the fast path, which edits conntrack,
// is left to the end-to-end tests).

import (
	"errors"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/nfqguard/nfqguard/queue"
	"github.com/nfqguard/nfqguard/rules"
)

// newTestDaemon opens a Daemon on a rule file holding cfg, with no
// listeners, logging to log. New checks for CAP_NET_ADMIN: without it
// the test is skipped, except under CI=true, where it fails.
func newTestDaemon(t *testing.T, cfg string, log io.Writer) (*Daemon, string) {
	t.Helper()
	if err := queue.CheckPrivileges(); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true: %v", err)
		}
		t.Skipf("needs CAP_NET_ADMIN: %v", err)
	}
	dir := filepath.Join(t.TempDir(), "etc")
	must(t, os.Mkdir(dir, 0o755))
	path := filepath.Join(dir, "config.toml")
	must(t, os.WriteFile(path, []byte(cfg), 0o644))
	t.Setenv("DOCKER_HOST", "unix://"+filepath.Join(t.TempDir(), "no-docker.sock"))
	d, err := New(t.Context(), Options{Config: path, StatusSocket: "off", MetricsListen: "off", Stdout: io.Discard, Stderr: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := d.Close(); err != nil {
			t.Errorf("close: %v", err)
		}
	})
	return d, path
}

const reloadA = `
[engine]
queue = 7
workers = 2

[[container]]
name = "web"
ips = ["172.17.0.2"]
ingress = "allow"
`

// reloadB changes a live setting (the rules: web's ingress), a
// restart-only one (engine.workers) and the log section.
const reloadB = `
[engine]
queue = 7
workers = 3

[log]
rate = 5

[[container]]
name = "web"
ips = ["172.17.0.2"]
ingress = "drop"
`

func webIngress(d *Daemon) rules.Action {
	return d.tables.Load().Judge(netip.MustParseAddr("172.17.0.2"), rules.Ingress, rules.ProtoTCP, 80,
		netip.MustParseAddr("203.0.113.2")).Action
}

func TestReload(t *testing.T) {
	var log logBuffer
	d, path := newTestDaemon(t, reloadA, &log)
	if got := webIngress(d); got != rules.Allow {
		t.Fatalf("before any reload: web ingress %v, want allow", got)
	}
	if _, err := d.Status(5); err == nil {
		t.Error("Status of a daemon whose queues are not running: no error")
	}

	// A good file: swapped in, the generation counts up, and the settings
	// that need a restart keep their running values and are named.
	must(t, os.WriteFile(path, []byte(reloadB), 0o644))
	r := d.Reload()
	if !r.OK || r.Generation != 1 || r.Error != "" {
		t.Fatalf("reload of a good file: %+v", r)
	}
	if diff := cmp.Diff([]string{"engine.workers", "log"}, r.Restart); diff != "" {
		t.Errorf("restart_needed (-want +got):\n%s", diff)
	}
	tbl := d.tables.Load()
	if got := webIngress(d); got != rules.Drop {
		t.Errorf("after the reload: web ingress %v, want drop", got)
	}
	if tbl.Generation != 1 || tbl.Engine.Workers != 2 || tbl.Log.Rate != rules.DefaultLogRate {
		t.Errorf("table in force: generation %d, workers %d, log rate %v; want 1, the running 2, the running rate",
			tbl.Generation, tbl.Engine.Workers, tbl.Log.Rate)
	}
	if l := log.take(); !strings.Contains(l, `msg="rules reloaded"`) || !strings.Contains(l, "generation=1") ||
		!strings.Contains(l, "restart_needed") {
		t.Errorf("log after a good reload:\n%s", l)
	}

	// A broken file changes nothing and says where it is broken.
	must(t, os.WriteFile(path, []byte("[engine]\nqueue = 7\nqueue = 8\n"), 0o644))
	r = d.Reload()
	if r.OK || r.Generation != 1 || !strings.Contains(r.Error, path+":3:") {
		t.Errorf("reload of a broken file: %+v, want refused at %s:3, generation 1", r, path)
	}
	if d.tables.Load() != tbl {
		t.Error("a broken file replaced the table in force")
	}
	if l := log.take(); !strings.Contains(l, `msg="reload refused: the rules in force stay"`) {
		t.Errorf("log after a refused reload:\n%s", l)
	}

	// A file others could change is refused like a broken one.
	must(t, os.WriteFile(path, []byte(reloadA), 0o644))
	must(t, os.Chmod(path, 0o666))
	r = d.Reload()
	if r.OK || !strings.Contains(r.Error, "chmod go-w "+path) || d.tables.Load() != tbl {
		t.Errorf("reload of a world-writable file: %+v; want refused with the fix and the table kept", r)
	}
	_, err := LoadRuleFile(path)
	if !errors.Is(err, ErrInsecureConfig) {
		t.Errorf("LoadRuleFile of a world-writable file: %v, want ErrInsecureConfig", err)
	}

	// Fixed again: the next generation, back to allow.
	must(t, os.Chmod(path, 0o644))
	if r = d.Reload(); !r.OK || r.Generation != 2 || webIngress(d) != rules.Allow {
		t.Errorf("reload after the fix: %+v, web ingress %v; want generation 2, allow", r, webIngress(d))
	}
	if d.last == nil || d.last.Generation != 2 {
		t.Errorf("last reload kept for status: %+v", d.last)
	}
}
