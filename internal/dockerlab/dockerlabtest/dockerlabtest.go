// Package dockerlabtest adapts package dockerlab to Go tests: a private Docker
// engine per test (or per group of subtests), and containers, networks and
// servers that are removed when the test that made them ends.
package dockerlabtest

import (
	"context"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nfqguard/nfqguard/internal/dockerlab"
	"github.com/nfqguard/nfqguard/internal/netns/netnstest"
	"github.com/nfqguard/nfqguard/internal/traffic"
)

// cleanupTimeout bounds each removal done in cleanup (a fresh context: the
// test's own is already canceled by then).
const cleanupTimeout = 30 * time.Second

// Require fails the test (t.Fatal) when CI=true and the process is not
// root, cannot create a network namespace or lacks dockerd, docker and
// their helpers; outside CI it skips (t.Skip) with the reason.
func Require(t testing.TB) {
	t.Helper()
	netnstest.Require(t, "ip", "iptables", "nsenter", "dockerd", "docker", "containerd", "runc")
}

// RequireDocker29 is Require for the Docker 29 engine (dockerlab.Docker29):
// it fails the test under CI=true, and skips it otherwise, when the process
// cannot run namespace tests or the engine has not been built ("make deps"
// builds it). It returns the directory of the engine's binaries.
func RequireDocker29(t testing.TB) string {
	t.Helper()
	netnstest.Require(t, "ip", "iptables", "nft", "nsenter", "unshare", "mount")
	dir, err := dockerlab.Docker29Dir()
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("dockerlabtest: %v", err)
		}
		t.Skipf("dockerlabtest: %v", err)
	}
	return dir
}

// Start starts a private Docker with opts, registers Close with t.Cleanup
// (it runs even when the test fails) and fails the test on error. It calls
// Require (RequireDocker29 for that engine) first. On failure, dockerd's
// log is printed.
func Start(t testing.TB, opts dockerlab.Options) *dockerlab.Docker {
	t.Helper()
	if opts.Engine == dockerlab.Docker29 {
		RequireDocker29(t)
	} else {
		Require(t)
	}
	d := netnstest.Open(t, "dockerlabtest", func(ctx context.Context) (*dockerlab.Docker, error) {
		return dockerlab.Start(ctx, opts)
	})
	// Registered after Close, so it runs first, while the log still exists.
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		if b, err := os.ReadFile(d.LogPath()); err == nil {
			t.Logf("dockerd log (%s):\n%s", d.LogPath(), tail(string(b), 60))
		}
	})
	return d
}

// Image returns the test image's reference, building it if needed.
func Image(t testing.TB, d *dockerlab.Docker) string {
	t.Helper()
	img, err := d.Image(t.Context())
	if err != nil {
		t.Fatalf("dockerlabtest: %v", err)
	}
	return img
}

// Run starts a container (see dockerlab.Docker.Run) and force-removes it
// when the test ends.
func Run(t testing.TB, d *dockerlab.Docker, name string, args ...string) *dockerlab.Container {
	t.Helper()
	removeAtEnd(t, name, d.Inspect, func(ctx context.Context, name string) error { return d.Remove(ctx, name) })
	c, err := d.Run(t.Context(), name, args...)
	if err != nil {
		t.Fatalf("dockerlabtest: %v", err)
	}
	return c
}

// removeAtEnd registers the removal of the container or network name
// for when the test ends. Registered before name is made, it runs even
// when making it failed half way: then inspect finds nothing and nothing
// is removed. It has a context of its own (the test's is canceled by then)
// and reports remove's error.
func removeAtEnd[T any](t testing.TB, name string, inspect func(context.Context, string) (T, error), remove func(context.Context, string) error) {
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
		defer cancel()
		if _, err := inspect(ctx, name); err != nil {
			return
		}
		if err := remove(ctx, name); err != nil {
			t.Errorf("dockerlabtest: %v", err)
		}
	})
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
		t.Fatalf("dockerlabtest: %v", err)
	}
	if err := c.WaitListening(ctx, "udp", 53); err != nil {
		t.Fatalf("dockerlabtest: %v", err)
	}
	return c
}

// Network creates a Docker network (see dockerlab.Docker.NetworkCreate)
// and removes it when the test ends. Register it before the containers
// attached to it, so that they are removed first.
func Network(t testing.TB, d *dockerlab.Docker, name string, args ...string) *dockerlab.Network {
	t.Helper()
	removeAtEnd(t, name, d.InspectNetwork, d.NetworkRemove)
	n, err := d.NetworkCreate(t.Context(), name, args...)
	if err != nil {
		t.Fatalf("dockerlabtest: %v", err)
	}
	return n
}

// ServeTCPEcho starts a TCP echo server (traffic.ServeTCPEcho) in the
// namespace at nsPath and stops it when the test ends.
func ServeTCPEcho(t testing.TB, nsPath string, addr netip.AddrPort) {
	t.Helper()
	serve(t, traffic.ServeTCPEcho, nsPath, addr)
}

// ServeUDPEcho starts a UDP echo server (traffic.ServeUDPEcho) in the
// namespace at nsPath and stops it when the test ends.
func ServeUDPEcho(t testing.TB, nsPath string, addr netip.AddrPort) {
	t.Helper()
	serve(t, traffic.ServeUDPEcho, nsPath, addr)
}

func serve(t testing.TB, start func(string, netip.AddrPort) (*traffic.Server, error), nsPath string, addr netip.AddrPort) {
	t.Helper()
	s, err := start(nsPath, addr)
	if err != nil {
		t.Fatalf("dockerlabtest: %v", err)
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
