package dockerlab_test

import (
	"context"
	"errors"
	"net/netip"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nfqguard/nfqguard/internal/dockerlab"
	"github.com/nfqguard/nfqguard/internal/dockerlab/dockerlabtest"
	"github.com/nfqguard/nfqguard/internal/traffic"
)

// TestRestart restarts the private dockerd, then stops it and starts it
// again: each time the same engine comes back (its containers, image and
// chains), a container with --restart always runs again in a new network
// namespace and serves its published port, one without a restart policy
// stays stopped, and Close still removes everything afterwards.
func TestRestart(t *testing.T) {
	t.Parallel()
	d := dockerlabtest.Start(t, dockerlab.Options{})
	dir, prefix := d.Dir(), d.Prefix()
	version := d.Version()
	// The test image ignores SIGTERM: a short stop timeout keeps dockerd's
	// shutdown short.
	keep := dockerlabtest.RunServer(t, d, "keep", "--restart", "always", "--stop-timeout", "1", "-p", "8080:80")
	dockerlabtest.RunServer(t, d, "once", "--stop-timeout", "1")
	published := netip.AddrPortFrom(dockerlab.HostOutside, 8080)
	if err := traffic.TCPExchange(d.OutPath(), 0, published, payload, allowTimeout); err != nil {
		t.Fatalf("outside -> published 8080 before any restart: %v", err)
	}
	if !d.Running() {
		t.Fatal("Running() = false after Start")
	}
	if err := d.StartAgain(t.Context()); err == nil || !strings.Contains(err.Error(), "dockerd is running") {
		t.Errorf("StartAgain while dockerd runs: want \"dockerd is running\", got %v", err)
	}

	// comeBack checks the engine after Restart or StartAgain and returns
	// keep's new incarnation.
	comeBack := func(t *testing.T, old *dockerlab.Container) *dockerlab.Container {
		t.Helper()
		if !d.Running() {
			t.Fatal("Running() = false once dockerd is back")
		}
		if d.Version() != version {
			t.Errorf("Version() = %q after the restart, was %q", d.Version(), version)
		}
		ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
		defer cancel()
		c, err := d.WaitRunning(ctx, "keep", old.PID)
		if err != nil {
			t.Fatalf("keep (--restart always) did not come back: %v", err)
		}
		if c.ID != old.ID {
			t.Errorf("keep came back as container %s, was %s: want the same container", c.ID, old.ID)
		}
		if sameNetNS(t, c, old) {
			t.Errorf("keep's new process %d shares a network namespace with its old one", c.PID)
		}
		if err := c.WaitListening(ctx, "tcp", 80); err != nil {
			t.Fatal(err)
		}
		if err := traffic.TCPExchange(d.OutPath(), 0, published, payload, allowTimeout); err != nil {
			t.Errorf("outside -> published 8080 once keep is back: %v", err)
		}
		if o, err := d.Inspect(ctx, "once"); err != nil || o.PID != 0 {
			t.Errorf("once (no restart policy) after the restart: PID %v (%v), want it stopped", o, err)
		}
		fwd, err := d.IPTables(ctx, "-S", "FORWARD")
		if err != nil {
			t.Fatal(err)
		}
		if lines := strings.Split(strings.TrimSpace(fwd), "\n"); len(lines) < 2 || lines[0] != "-P FORWARD DROP" || lines[1] != "-A FORWARD -j DOCKER-USER" {
			t.Errorf("FORWARD after the restart: want policy DROP and the DOCKER-USER jump first, got:\n%s", fwd)
		}
		return c
	}

	t.Run("Restart", func(t *testing.T) {
		begin := time.Now()
		if err := d.Restart(t.Context()); err != nil {
			t.Fatal(err)
		}
		t.Logf("Restart took %v", time.Since(begin).Round(time.Millisecond))
		keep = comeBack(t, keep)
	})

	t.Run("StopThenStartAgain", func(t *testing.T) {
		begin := time.Now()
		if err := d.Stop(t.Context()); err != nil {
			t.Fatal(err)
		}
		t.Logf("Stop took %v", time.Since(begin).Round(time.Millisecond))
		if d.Running() {
			t.Error("Running() = true after Stop")
		}
		if _, err := os.Stat(d.Socket()); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("dockerd's socket after Stop: %v, want it gone", err)
		}
		if _, err := d.CLI(t.Context(), "version"); err == nil {
			t.Error("docker version answered while dockerd is stopped")
		}
		if err := d.Stop(t.Context()); err == nil || !strings.Contains(err.Error(), "not running") {
			t.Errorf("Stop of a stopped dockerd: want \"not running\", got %v", err)
		}
		if err := traffic.TCPExchange(d.OutPath(), 0, published, payload, blockTimeout); err == nil {
			t.Error("outside -> published 8080 succeeded while dockerd and its containers are stopped")
		}
		begin = time.Now()
		if err := d.StartAgain(t.Context()); err != nil {
			t.Fatal(err)
		}
		t.Logf("StartAgain took %v", time.Since(begin).Round(time.Millisecond))
		keep = comeBack(t, keep)
	})

	if err := d.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	checkGone(t, prefix, dir, d.NS(), d.Out())
	if d.Running() {
		t.Error("Running() = true after Close")
	}
	if err := d.StartAgain(t.Context()); err == nil {
		t.Error("StartAgain after Close succeeded")
	}
	if err := d.Restart(t.Context()); err == nil {
		t.Error("Restart after Close succeeded")
	}
}

// sameNetNS reports whether two processes of c and old (by PID) are in the
// same network namespace; false when old's is gone.
func sameNetNS(t *testing.T, c, old *dockerlab.Container) bool {
	t.Helper()
	cur, err := os.Stat(c.NSPath())
	if err != nil {
		t.Fatal(err)
	}
	prev, err := os.Stat(old.NSPath())
	if err != nil {
		return false // the old process is gone, and its namespace with it
	}
	return cur.Sys().(*syscall.Stat_t).Ino == prev.Sys().(*syscall.Stat_t).Ino
}
