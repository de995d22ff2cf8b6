// Package dockertest adapts package dockerlab to Go tests: a private Docker
// engine per test (or per group of subtests), and containers, networks and
// servers that are removed when the test that made them ends.
package dockertest

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nfqguard/nfqguard/bench/dockerlab"
	"golang.org/x/sys/unix"
)

// cleanupTimeout bounds each removal done in cleanup (a fresh context: the
// test's own is already canceled by then).
const cleanupTimeout = 30 * time.Second

var (
	checkOnce sync.Once
	checkErr  error
)

// check reports why a private Docker cannot run in this process, or nil.
func check() error {
	checkOnce.Do(func() {
		if os.Geteuid() != 0 {
			checkErr = errors.New("private Docker tests need root")
			return
		}
		for _, bin := range []string{"dockerd", "docker", "containerd", "runc", "nsenter", "ip", "iptables"} {
			if _, err := exec.LookPath(bin); err != nil {
				checkErr = fmt.Errorf("private Docker tests need %s (apt-get install docker.io): %w", bin, err)
				return
			}
		}
		// Try to create a network namespace on a throwaway thread: the
		// goroutine exits with the thread still locked, so the runtime
		// discards the thread instead of reusing it in the new namespace.
		done := make(chan error, 1)
		go func() {
			runtime.LockOSThread()
			done <- unix.Unshare(unix.CLONE_NEWNET)
		}()
		if err := <-done; err != nil {
			checkErr = fmt.Errorf("cannot create a network namespace: %w", err)
		}
	})
	return checkErr
}

// Require fails the test (t.Fatal) when CI=true and the process is not
// root, cannot create a network namespace or lacks dockerd, docker and
// their helpers; outside CI it skips (t.Skip) with the reason.
func Require(t testing.TB) {
	t.Helper()
	err := check()
	if err == nil {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("dockertest: %v", err)
	}
	t.Skipf("dockertest: %v", err)
}

// Start starts a private Docker with opts, registers Close with t.Cleanup
// (it runs even when the test fails) and fails the test on error. It calls
// Require first. On failure, dockerd's log is printed.
func Start(t testing.TB, opts dockerlab.Options) *dockerlab.Docker {
	t.Helper()
	Require(t)
	d, err := dockerlab.Start(t.Context(), opts)
	if err != nil {
		t.Fatalf("dockertest: %v", err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			if b, err := os.ReadFile(d.LogPath()); err == nil {
				t.Logf("dockerd log (%s):\n%s", d.LogPath(), tail(string(b), 60))
			}
		}
		if err := d.Close(); err != nil {
			t.Errorf("dockertest: close Docker %s: %v", d.Prefix(), err)
		}
	})
	return d
}

// Image returns the test image's reference, building it if needed.
func Image(t testing.TB, d *dockerlab.Docker) string {
	t.Helper()
	img, err := d.Image(t.Context())
	if err != nil {
		t.Fatalf("dockertest: %v", err)
	}
	return img
}

// Run starts a container (see dockerlab.Docker.Run) and force-removes it
// when the test ends.
func Run(t testing.TB, d *dockerlab.Docker, name string, args ...string) *dockerlab.Container {
	t.Helper()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
		defer cancel()
		// The container may not exist if run failed early.
		if _, err := d.Inspect(ctx, name); err != nil {
			return
		}
		if err := d.Remove(ctx, name); err != nil {
			t.Errorf("dockertest: %v", err)
		}
	})
	c, err := d.Run(t.Context(), name, args...)
	if err != nil {
		t.Fatalf("dockertest: %v", err)
	}
	return c
}

// RunServer starts a container of the test image serving on its default
// ports, with the extra run options opts (before the image), waits until
// its servers listen and removes it when the test ends.
func RunServer(t testing.TB, d *dockerlab.Docker, name string, opts ...string) *dockerlab.Container {
	t.Helper()
	img := Image(t, d)
	c := Run(t, d, name, slices.Concat(opts, []string{img})...)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := c.WaitListening(ctx, "tcp", 80, 81, 8000, 9000); err != nil {
		t.Fatalf("dockertest: %v", err)
	}
	if err := c.WaitListening(ctx, "udp", 53); err != nil {
		t.Fatalf("dockertest: %v", err)
	}
	return c
}

// Network creates a Docker network (see dockerlab.Docker.NetworkCreate)
// and removes it when the test ends. Register it before the containers
// attached to it, so that they are removed first.
func Network(t testing.TB, d *dockerlab.Docker, name string, args ...string) *dockerlab.Network {
	t.Helper()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
		defer cancel()
		if _, err := d.InspectNetwork(ctx, name); err != nil {
			return
		}
		if err := d.NetworkRemove(ctx, name); err != nil {
			t.Errorf("dockertest: %v", err)
		}
	})
	n, err := d.NetworkCreate(t.Context(), name, args...)
	if err != nil {
		t.Fatalf("dockertest: %v", err)
	}
	return n
}

// ServeTCPEcho starts a TCP echo server in the namespace at nsPath and
// stops it when the test ends.
func ServeTCPEcho(t testing.TB, nsPath string, addr netip.AddrPort) {
	t.Helper()
	s, err := dockerlab.ServeTCPEcho(nsPath, addr)
	if err != nil {
		t.Fatalf("dockertest: %v", err)
	}
	t.Cleanup(func() { s.Close() })
}

// ServeUDPEcho starts a UDP echo server in the namespace at nsPath and
// stops it when the test ends.
func ServeUDPEcho(t testing.TB, nsPath string, addr netip.AddrPort) {
	t.Helper()
	s, err := dockerlab.ServeUDPEcho(nsPath, addr)
	if err != nil {
		t.Fatalf("dockertest: %v", err)
	}
	t.Cleanup(func() { s.Close() })
}

// tail returns the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
