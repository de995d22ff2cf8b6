package dockerlab_test

// Self-tests of the private Docker: real dockerd, real containers, real
// traffic. They need root; without it they skip (or fail under CI=true,
// see dockerlabtest.Require).

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nfqguard/nfqguard/internal/dockerlab"
	"github.com/nfqguard/nfqguard/internal/dockerlab/dockerlabtest"
	"github.com/nfqguard/nfqguard/internal/netns"
	"github.com/nfqguard/nfqguard/internal/traffic"
)

var payload = []byte("hello through Docker")

const (
	allowTimeout = 3 * time.Second
	blockTimeout = 700 * time.Millisecond
)

func TestDocker(t *testing.T) {
	t.Parallel()
	dockerlabtest.Require(t)
	d, err := dockerlab.Start(t.Context(), dockerlab.Options{})
	if err != nil {
		t.Fatal(err)
	}
	closed := false
	t.Cleanup(func() {
		if !closed {
			_ = d.Close()
		}
	})
	dir, prefix := d.Dir(), d.Prefix()

	t.Run("Firewall", func(t *testing.T) {
		// Docker's own chains, in the Docker namespace: the DROP policy and
		// the DOCKER-USER jump first in FORWARD, as Docker installs them on a
		// fresh host (docs/how-it-works.md, Packet path).
		fwd, err := d.IPTables(t.Context(), "-S", "FORWARD")
		if err != nil {
			t.Fatal(err)
		}
		lines := strings.Split(strings.TrimSpace(fwd), "\n")
		if len(lines) < 2 || lines[0] != "-P FORWARD DROP" || lines[1] != "-A FORWARD -j DOCKER-USER" {
			t.Errorf("FORWARD: want policy DROP and the DOCKER-USER jump first, got:\n%s", fwd)
		}
		if v, err := netns.ReadSysctl(d.NSPath(), "net.ipv4.ip_forward"); err != nil || v != "1" {
			t.Errorf("ip_forward in the Docker namespace = %q (%v), want 1 (set by Docker)", v, err)
		}
	})

	t.Run("Traffic", func(t *testing.T) {
		web := dockerlabtest.RunServer(t, d, "web", "-p", "8080:80", "-p", "5353:53/udp")
		ip, err := web.IPv4("bridge")
		if err != nil {
			t.Fatal(err)
		}
		if !netip.MustParsePrefix("172.17.0.0/16").Contains(ip) {
			t.Errorf("web's address %s is not on docker0's default subnet", ip)
		}
		if got := web.Ports["80/tcp"]; len(got) == 0 || got[0] != "8080" {
			t.Errorf("web's port 80/tcp published on %v, want 8080", got)
		}
		if err := traffic.TCPExchange(d.OutPath(), 0, netip.AddrPortFrom(dockerlab.HostOutside, 8080), payload, allowTimeout); err != nil {
			t.Errorf("outside -> published 8080: %v", err)
		}
		if err := traffic.UDPExchange(d.OutPath(), 0, netip.AddrPortFrom(dockerlab.HostOutside, 5353), payload, allowTimeout); err != nil {
			t.Errorf("outside -> published 5353/udp: %v", err)
		}
		if err := traffic.TCPExchange(d.OutPath(), 0, netip.AddrPortFrom(ip, 80), payload, allowTimeout); err != nil {
			t.Errorf("outside -> %s:80 routed directly (a published container port): %v", ip, err)
		}
		err = traffic.TCPExchange(d.OutPath(), 0, netip.AddrPortFrom(ip, 81), payload, blockTimeout)
		if !isTimeout(err) {
			t.Errorf("outside -> %s:81 routed directly (not published): want a timeout (Docker's FORWARD policy), got %v", ip, err)
		}
		// From inside the container: the test program's connect mode, and a
		// socket of this process in the container's namespace.
		dockerlabtest.ServeTCPEcho(t, d.OutPath(), netip.AddrPortFrom(dockerlab.Outside, 9000))
		if out, err := d.Exec(t.Context(), "web", "/srv", "connect", dockerlab.Outside.String()+":9000"); err != nil {
			t.Errorf("docker exec web /srv connect outside:9000: %v %s", err, out)
		}
		if _, err := d.Exec(t.Context(), "web", "/srv", "connect", "-timeout", "300ms", dockerlab.Outside.String()+":9001"); err == nil {
			t.Errorf("docker exec web /srv connect outside:9001 (nothing listens) succeeded")
		}
		if err := traffic.TCPExchange(web.NSPath(), 23001, netip.AddrPortFrom(dockerlab.Outside, 9000), payload, allowTimeout); err != nil {
			t.Errorf("web -> outside:9000 from web's namespace: %v", err)
		}
	})

	t.Run("UserNetwork", func(t *testing.T) {
		n := dockerlabtest.Network(t, d, "selftest")
		if !strings.HasPrefix(n.Bridge, "br-") || len(n.Subnets) == 0 {
			t.Errorf("network: bridge %q, subnets %v", n.Bridge, n.Subnets)
		}
		a := dockerlabtest.RunServer(t, d, "peer-a", "--network", "selftest")
		b := dockerlabtest.RunServer(t, d, "peer-b", "--network", "selftest")
		bip, err := b.IPv4("selftest")
		if err != nil {
			t.Fatal(err)
		}
		if err := traffic.TCPExchange(a.NSPath(), 0, netip.AddrPortFrom(bip, 81), payload, allowTimeout); err != nil {
			t.Errorf("a -> b:81 on a user-defined network: %v", err)
		}
	})

	if err := d.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	closed = true
	if err := d.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	checkGone(t, prefix, dir, d.NS(), d.Out())
}

// TestStartFailureCleansUp starts dockerd with a flag it rejects: Start
// fails and leaves nothing behind.
func TestStartFailureCleansUp(t *testing.T) {
	t.Parallel()
	dockerlabtest.Require(t)
	prefix := "nfqgbad" + strconv.Itoa(os.Getpid()%100000) + "-"
	_, err := dockerlab.Start(t.Context(), dockerlab.Options{Prefix: prefix, DockerdArgs: []string{"--no-such-flag"}})
	if err == nil || !strings.Contains(err.Error(), "dockerd exited") {
		t.Fatalf("Start with a bad dockerd flag: want \"dockerd exited\", got %v", err)
	}
	matches, _ := filepath.Glob(filepath.Join(os.TempDir(), prefix+"docker-*"))
	checkGone(t, prefix, "", prefix+"dk", prefix+"out")
	if len(matches) != 0 {
		t.Errorf("state directories left: %v", matches)
	}
}

// checkGone fails unless the namespaces, the state directory, the mounts
// under it and every process mentioning the prefix or the directory are
// gone.
func checkGone(t *testing.T, prefix, dir string, namespaces ...string) {
	t.Helper()
	for _, ns := range namespaces {
		if _, err := os.Stat("/var/run/netns/" + ns); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("namespace %s still exists (%v)", ns, err)
		}
	}
	if dir != "" {
		if _, err := os.Stat(dir); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("state directory %s still exists (%v)", dir, err)
		}
		if mps, err := dockerlab.MountsUnder(dir); err != nil || len(mps) > 0 {
			t.Errorf("mounts left under %s: %v (%v)", dir, mps, err)
		}
	}
	entries, err := os.ReadDir("/proc")
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil {
			continue
		}
		cmd := strings.ReplaceAll(string(b), "\x00", " ")
		if strings.Contains(cmd, prefix) || (dir != "" && strings.Contains(cmd, dir)) {
			t.Errorf("process %s survives Close: %s", e.Name(), cmd)
		}
	}
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) ||
		(errors.As(err, &ne) && ne.Timeout())
}
