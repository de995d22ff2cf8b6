package netlab_test

import (
	"bufio"
	"context"
	"errors"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"net/netip"

	"github.com/nfqguard/nfqguard/internal/netlab"
	"github.com/nfqguard/nfqguard/internal/netlab/netlabtest"
	"github.com/nfqguard/nfqguard/internal/netns"
	"github.com/nfqguard/nfqguard/internal/traffic"
)

const (
	okTimeout   = 3 * time.Second
	failTimeout = 500 * time.Millisecond
)

var ap = netip.AddrPortFrom

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestDockerLayout checks that, with no engine present, the lab behaves like
// a Docker host: published ports are DNATed, unpublished ports are dropped by
// the FORWARD policy, egress is masqueraded, and containers talk to each other
// across the bridge.
func TestDockerLayout(t *testing.T) {
	t.Parallel()
	// The default published ports plus one for a whoami server.
	publish := append(netlab.DefaultPublish(), netlab.Publish{HostPort: 8088, Container: 0, ContainerPort: 88, Proto: "tcp"})
	l := netlabtest.New(t, netlab.Options{Publish: publish})
	c1, c2 := l.Containers[0], l.Containers[1]

	must(t, l.ServeTCPEcho(c1.NS, ap(c1.Addr, 80)))
	must(t, l.ServeTCPWhoAmI(c1.NS, ap(c1.Addr, 88)))
	must(t, l.ServeTCPEcho(c1.NS, ap(c1.Addr, 81)))
	must(t, l.ServeUDPEcho(c1.NS, ap(c1.Addr, 53)))
	must(t, l.ServeTCPEcho(c2.NS, ap(c2.Addr, 7000)))
	must(t, l.ServeTCPWhoAmI(c2.NS, ap(c2.Addr, 7001)))
	must(t, l.ServeTCPWhoAmI(l.Out, ap(l.Outside, 9000)))
	payload := []byte("hello through docker0")

	t.Run("PublishedTCP", func(t *testing.T) {
		must(t, traffic.TCPExchange(l.NSPath(l.Out), 0, ap(l.HostOutside, 8080), payload, okTimeout))
		expectSeenAs(t, l, l.Out, ap(l.HostOutside, 8088), l.Outside, "the outside client's real address")
	})
	t.Run("UnpublishedDropped", func(t *testing.T) {
		// Positive control: the server is up and reachable over the bridge.
		must(t, traffic.TCPExchange(l.NSPath(c2.NS), 0, ap(c1.Addr, 81), payload, okTimeout))
		// Routing from outside straight to a container works: Docker's
		// DOCKER chain accepts the published container port 80 ...
		must(t, traffic.TCPExchange(l.NSPath(l.Out), 0, ap(c1.Addr, 80), payload, okTimeout))
		// ... but port 81 is not published and falls to FORWARD's DROP policy.
		err := traffic.TCPExchange(l.NSPath(l.Out), 0, ap(c1.Addr, 81), payload, failTimeout)
		if err == nil {
			t.Fatal("outside client reached unpublished port c1:81 directly; want FORWARD DROP")
		}
		t.Logf("as expected: %v", err)
	})
	t.Run("EgressMasquerade", func(t *testing.T) {
		expectSeenAs(t, l, c1.NS, ap(l.Outside, 9000), l.HostOutside, "the masqueraded source")
	})
	t.Run("ContainerToContainer", func(t *testing.T) {
		must(t, traffic.TCPExchange(l.NSPath(c1.NS), 0, ap(c2.Addr, 7000), payload, okTimeout))
		expectSeenAs(t, l, c1.NS, ap(c2.Addr, 7001), c1.Addr, "c1's address")
		// With bridge netfilter on, bridged traffic traverses FORWARD.
		out, err := l.IPTables(t.Context(), "-L", "FORWARD", "-v", "-n", "-x")
		must(t, err)
		if n := bridgedPackets(out); n == 0 {
			t.Errorf("FORWARD -i docker0 -o docker0 counted no packets; bridge netfilter inactive?\n%s", out)
		}
	})
	t.Run("PublishedUDP", func(t *testing.T) {
		must(t, traffic.UDPExchange(l.NSPath(l.Out), 0, ap(l.HostOutside, 5353), payload, okTimeout))
	})
	t.Run("Ping", func(t *testing.T) {
		must(t, l.Ping(c2.NS, c1.Addr, okTimeout))
	})
	t.Run("DockerUserPresent", func(t *testing.T) {
		out, err := l.IPTables(t.Context(), "-S", "DOCKER-USER")
		must(t, err)
		if !strings.Contains(out, "-A DOCKER-USER -j RETURN") {
			t.Errorf("DOCKER-USER = %q", out)
		}
	})
	t.Run("BridgeNF", func(t *testing.T) {
		if v := readSysctl(t, l, l.Host, "net/bridge/bridge-nf-call-iptables"); v != "1" {
			t.Errorf("bridge-nf-call-iptables = %q, want 1", v)
		}
	})
}

// expectSeenAs fails t unless the ServeTCPWhoAmI server at dst, reached
// from namespace ns, sees the client as want (what says what want is).
func expectSeenAs(t *testing.T, l *netlab.Lab, ns string, dst netip.AddrPort, want netip.Addr, what string) {
	t.Helper()
	got, err := l.TCPWhoAmI(ns, dst, okTimeout)
	must(t, err)
	if got.Addr() != want {
		t.Errorf("server %s saw client %v, want %s %v", dst, got, what, want)
	}
}

// bridgedPackets returns the packet counter of "FORWARD -i docker0 -o docker0 -j ACCEPT".
func bridgedPackets(listing string) int {
	sc := bufio.NewScanner(strings.NewReader(listing))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		// pkts bytes target prot opt in out source destination
		if len(f) >= 7 && f[2] == "ACCEPT" && f[5] == "docker0" && f[6] == "docker0" {
			n, _ := strconv.Atoi(f[0])
			return n
		}
	}
	return 0
}

func readSysctl(t *testing.T, l *netlab.Lab, ns, key string) string {
	t.Helper()
	v, err := netns.ReadSysctl(l.NSPath(ns), key)
	must(t, err)
	return v
}

func TestIPv6(t *testing.T) {
	t.Parallel()
	l := netlabtest.New(t, netlab.Options{IPv6: true})
	c1, c2 := l.Containers[0], l.Containers[1]
	if !c1.Addr6.IsValid() || !l.Outside6.IsValid() {
		t.Fatalf("IPv6 addresses missing: %+v %v", c1, l.Outside6)
	}
	must(t, l.ServeTCPWhoAmI(l.Out, ap(l.Outside6, 9000)))
	must(t, l.ServeTCPEcho(c1.NS, ap(c1.Addr6, 80)))
	payload := []byte("v6")

	t.Run("Egress", func(t *testing.T) {
		expectSeenAs(t, l, c1.NS, ap(l.Outside6, 9000), l.HostOutside6, "the masqueraded source")
	})
	t.Run("PublishedTCP", func(t *testing.T) {
		must(t, traffic.TCPExchange(l.NSPath(l.Out), 0, ap(l.HostOutside6, 8080), payload, okTimeout))
	})
	t.Run("Ping6", func(t *testing.T) {
		must(t, l.Ping(c2.NS, c1.Addr6, okTimeout))
	})
	t.Run("IPv4StillWorks", func(t *testing.T) {
		must(t, l.Ping(c2.NS, c1.Addr, okTimeout))
	})
}

func TestNoDockerUser(t *testing.T) {
	t.Parallel()
	off := false
	l := netlabtest.New(t, netlab.Options{NoDockerUser: true, BridgeNF: &off, Containers: 1})
	if out, err := l.IPTables(t.Context(), "-S", "DOCKER-USER"); err == nil {
		t.Errorf("iptables -S DOCKER-USER succeeded without the chain:\n%s", out)
	}
	out, err := l.IPTables(t.Context(), "-S", "FORWARD")
	must(t, err)
	if strings.Contains(out, "DOCKER-USER") {
		t.Errorf("FORWARD still references DOCKER-USER:\n%s", out)
	}
	if !strings.Contains(out, "-P FORWARD DROP") {
		t.Errorf("FORWARD policy is not DROP:\n%s", out)
	}
	// bridge-nf sysctls are per network namespace: 0 here, untouched elsewhere.
	if v := readSysctl(t, l, l.Host, "net/bridge/bridge-nf-call-iptables"); v != "0" {
		t.Errorf("bridge-nf-call-iptables in host ns = %q, want 0", v)
	}
	if v := readSysctl(t, l, l.Out, "net/bridge/bridge-nf-call-iptables"); v != "1" {
		t.Errorf("bridge-nf-call-iptables in outside ns = %q, want default 1", v)
	}
}

func TestLegacyBackend(t *testing.T) {
	t.Parallel()
	netlabtest.Require(t)
	if _, err := exec.LookPath("iptables-legacy-restore"); err != nil {
		t.Skip("iptables-legacy not installed")
	}
	l := netlabtest.New(t, netlab.Options{Backend: netlab.BackendLegacy, Containers: 1})
	c1 := l.Containers[0]
	out, err := l.IPTables(t.Context(), "-S", "DOCKER-USER")
	must(t, err)
	if !strings.Contains(out, "-A DOCKER-USER -j RETURN") {
		t.Errorf("legacy DOCKER-USER = %q", out)
	}
	must(t, l.ServeTCPEcho(c1.NS, ap(c1.Addr, 80)))
	must(t, traffic.TCPExchange(l.NSPath(l.Out), 0, ap(l.HostOutside, 8080), []byte("legacy"), okTimeout))
}

func TestCloseRemovesEverything(t *testing.T) {
	t.Parallel()
	netlabtest.Require(t)
	l, err := netlab.New(t.Context(), netlab.Options{Containers: 1})
	must(t, err)
	names := []string{l.Host, l.Out, l.Containers[0].NS}
	t.Cleanup(func() { l.Close() })

	listed := netnsList(t)
	for _, n := range names {
		if !listed[n] {
			t.Fatalf("namespace %s missing after New; have %v", n, listed)
		}
	}
	cmd := l.Command(context.Background(), l.Host, "sleep", "60")
	must(t, cmd.Start())
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	must(t, l.ServeTCPEcho(l.Containers[0].NS, ap(l.Containers[0].Addr, 80)))

	must(t, l.Close())
	must(t, l.Close())

	listed = netnsList(t)
	for _, n := range names {
		if listed[n] {
			t.Errorf("namespace %s still listed after Close", n)
		}
	}
	select {
	case err := <-waited:
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.Sys().(syscall.WaitStatus).Signal() != syscall.SIGKILL {
			t.Errorf("command ended with %v, want killed by SIGKILL", err)
		}
	case <-time.After(5 * time.Second):
		t.Error("command started by Command still running after Close")
	}
	if err := l.Do(l.Host, func() error { return nil }); err == nil {
		t.Error("Do succeeded on a closed lab")
	}
}

func netnsList(t *testing.T) map[string]bool {
	t.Helper()
	out, err := exec.Command("ip", "netns", "list").Output()
	must(t, err)
	m := map[string]bool{}
	for line := range strings.Lines(string(out)) {
		if f := strings.Fields(line); len(f) > 0 {
			m[f[0]] = true
		}
	}
	return m
}

// TestNewFailureCleansUp is not parallel: it changes PATH.
func TestNewFailureCleansUp(t *testing.T) {
	netlabtest.Require(t)
	if _, err := netlab.New(t.Context(), netlab.Options{Publish: []netlab.Publish{{HostPort: 1, Container: 5, ContainerPort: 1, Proto: "tcp"}}}); err == nil {
		t.Error("New accepted a publish entry for a missing container")
	}

	// A prefix already in use is refused without touching the existing lab.
	l := netlabtest.New(t, netlab.Options{Containers: 1})
	if _, err := netlab.New(t.Context(), netlab.Options{Prefix: l.Prefix, Containers: 1}); err == nil {
		t.Fatal("New succeeded with a prefix already in use")
	}
	if !netnsList(t)[l.Host] {
		t.Errorf("existing lab's namespace %s removed by failed New", l.Host)
	}

	// A failure after the namespaces and links exist: ip is available but
	// iptables-restore is not, so loading the ruleset fails.
	ipPath, err := exec.LookPath("ip")
	must(t, err)
	dir := t.TempDir()
	must(t, os.Symlink(ipPath, dir+"/ip"))
	t.Setenv("PATH", dir)
	prefix := "nfqgfail" + strconv.Itoa(os.Getpid()%100000) + "-"
	_, err = netlab.New(t.Context(), netlab.Options{Prefix: prefix, Containers: 1})
	if err == nil {
		t.Fatal("New succeeded without iptables-restore")
	}
	if !strings.Contains(err.Error(), "iptables-restore") {
		t.Errorf("error does not mention the failing step: %v", err)
	}
	t.Logf("as expected: %v", err)
	for n := range netnsList(t) {
		if strings.HasPrefix(n, prefix) {
			t.Errorf("namespace %s left behind by failed New", n)
		}
	}
}
