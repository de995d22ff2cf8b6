package e2e

// End-to-end tests against a real Docker engine: a private dockerd in its
// own network namespace (package internal/dockerlab), containers of a static
// test image, Docker's own chains and NAT, and the nfqguard binary judging
// real traffic in that namespace. They need root and docker.io; without
// them they skip (or fail under CI=true, see dockerlabtest.Require).
//
// One dockerd serves the subtests of TestDocker, which run one after the
// other: an engine owns the namespace's DOCKER-USER and queues while it
// runs. Each subtest removes the containers and networks it made, and uses
// source ports of its own (below 32768, outside the ephemeral range) so
// that no flow of one subtest meets conntrack state another left behind.

import (
	"context"
	"fmt"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nfqguard/nfqguard/internal/dockerlab"
	"github.com/nfqguard/nfqguard/internal/dockerlab/dockerlabtest"
	"github.com/nfqguard/nfqguard/internal/netns"
	"github.com/nfqguard/nfqguard/internal/traffic"
)

// Addresses of the outside link (see package dockerlab).
var (
	dkHost  = dockerlab.HostOutside
	dkOut   = dockerlab.Outside
	dkHost6 = dockerlab.HostOutside6
	dkOut6  = dockerlab.Outside6
)

// dockerEngines are the engines TestDocker runs its subtests against:
// Debian's Docker 20.10 and Docker 29 (its iptables backend, the default),
// each a private dockerd of its own, in parallel.
var dockerEngines = []dockerlab.Engine{dockerlab.Debian, dockerlab.Docker29}

func TestDocker(t *testing.T) {
	t.Parallel()
	for _, eng := range dockerEngines {
		t.Run(eng.String(), func(t *testing.T) {
			t.Parallel()
			d := dockerlabtest.Start(t, dockerlab.Options{Engine: eng})
			dockerlabtest.Image(t, d)
			t.Logf("Docker %s (%s) in namespace %s", d.Version(), eng, d.NS())

			t.Run("StartupFindsDockerUser", func(t *testing.T) { testDockerStartup(t, d) })
			t.Run("UnpublishedPortStaysClosed", func(t *testing.T) { testDockerUnpublished(t, d) })
			testDockerAnyBackend(t, d)
		})
	}
	// Docker 29's nftables backend has no DOCKER-USER: the engine hooks
	// mangle NFQGUARD (hookChain), and the subtests that do not look at
	// DOCKER-USER itself run there too (TestDocker29Nftables has the
	// rest: Docker's own drops, its restart, the ruleset after a stop).
	t.Run("docker29-nftables", func(t *testing.T) {
		t.Parallel()
		d := dockerlabtest.Start(t, dockerlab.Options{Engine: dockerlab.Docker29, FirewallBackend: dockerlab.NFTables})
		dockerlabtest.Image(t, d)
		t.Logf("Docker %s (%s backend) in namespace %s", d.Version(), d.FirewallBackend(), d.NS())
		testDockerAnyBackend(t, d)
	})
}

// testDockerAnyBackend runs the subtests of TestDocker that hold whatever
// Docker's firewall backend.
func testDockerAnyBackend(t *testing.T, d *dockerlab.Docker) {
	t.Run("GoldenRules", func(t *testing.T) { testDockerGoldenRules(t, d) })
	t.Run("PublishedPort", func(t *testing.T) { testDockerPublishedPort(t, d) })
	t.Run("Egress", func(t *testing.T) { testDockerEgress(t, d) })
	t.Run("ContainerToContainer", func(t *testing.T) { testDockerContainerToContainer(t, d) })
	t.Run("TwoNetworks", func(t *testing.T) { testDockerTwoNetworks(t, d) })
	t.Run("NetworksStayIsolated", func(t *testing.T) { testDockerNetworksIsolated(t, d) })
	t.Run("KillAndRestart", func(t *testing.T) { testDockerKillRestart(t, d) })
	t.Run("Reload", func(t *testing.T) { testDockerReload(t, d) })
	// IPv6 needs, for Docker 20.10, dockerd --ip6tables --experimental: a
	// Docker of its own.
	t.Run("IPv6", func(t *testing.T) {
		testDockerIPv6(t, dockerlab.Options{Engine: d.Engine(), FirewallBackend: d.FirewallBackend()})
	})
}

// testDockerStartup: with Docker's own chains the engine needs no
// --create-chain; its start-up line names the backend, and a clean stop
// leaves Docker's firewall exactly as it was.
func testDockerStartup(t *testing.T, d *dockerlab.Docker) {
	original := dkSave(t, d, false)
	if fwd := nonEmptyLines(iptables(t, d, false, "-S", "FORWARD")); len(fwd) < 2 || fwd[1] != "-A FORWARD -j DOCKER-USER" {
		t.Fatalf("Docker's FORWARD does not jump to DOCKER-USER first:\n%s", strings.Join(fwd, "\n"))
	}
	e := startDockerEngine(t, d, allowAllConfig(true, false))
	var running string
	for _, line := range strings.Split(e.stderr(), "\n") {
		if strings.Contains(line, `msg="nfqguard running"`) {
			running = line
		}
	}
	if !strings.Contains(running, "IPv4: ") || !strings.Contains(running, "(nft)") {
		t.Errorf("start-up line does not name the IPv4 DOCKER-USER in the nft backend:\n%s", running)
	}
	if strings.Contains(e.stderr(), "level=ERROR") || strings.Contains(e.stderr(), "bridge-nf-call-iptables") {
		t.Errorf("start-up logged an error or a bridge netfilter warning with Docker's defaults:\n%s", e.stderr())
	}
	checkDockerUserLayout(t, d, false, "engine running")
	for _, r := range chainRules(t, d, false) {
		if strings.Contains(r, "nfqguard-created-chain") {
			t.Errorf("the engine created DOCKER-USER although Docker's exists: %s", r)
		}
	}
	e.stopClean()
	if after := dkSave(t, d, false); after != original {
		t.Errorf("iptables-save of the Docker namespace changed after a clean stop.\nbefore:\n%s\nafter:\n%s", original, after)
	}
}

// testDockerPublishedPort: "-p 8080:80" reached from outside is judged by
// the rules of the container's port 80, after Docker's DNAT.
func testDockerPublishedPort(t *testing.T, d *dockerlab.Docker) {
	web := dockerlabtest.RunServer(t, d, "web", "-p", "8080:80", "-p", "8000:8000")
	ip := ipv4Of(t, web, "bridge")
	must(t, dkTCP(d.OutPath(), 0, ap(dkHost, 8080), allowTimeout)) // Docker alone lets it in

	t.Run("AllowedByRule", func(t *testing.T) {
		e := startDockerEngine(t, d, engineSection(true, false)+fmt.Sprintf(`
[defaults]
ingress = "allow"
egress = "allow"

[[container]]
name = "web"
ips = ["%s"]
ingress = "drop"

  [[container.rule]]
  id = "web-http"
  direction = "ingress"
  proto = "tcp"
  ports = ["80"]
  action = "allow"
`, ip))
		expectAllowed(t, "outside -> 203.0.113.1:8080 (web:80, allowed by web-http)",
			dkTCP(d.OutPath(), 22001, ap(dkHost, 8080), allowTimeout))
		expectBlocked(t, "outside -> 203.0.113.1:8000 (web:8000, web's ingress default drop)",
			dkTCP(d.OutPath(), 22002, ap(dkHost, 8000), blockTimeout))
		cases := []flowCase{
			{name: "outside -> 8080", proto: "tcp", src: dkOut, sport: 22001, dst: ap(ip, 80)},
			{name: "outside -> 8000", proto: "tcp", src: dkOut, sport: 22002, dst: ap(ip, 8000),
				want: rec("blocked", "default", "web", "ingress", "tcp", dkOut, 22002, ap(ip, 8000))},
		}
		e.waitRecord(2*time.Second, cases[1].matches)
		checkRecords(t, cases, e.records())
		e.stopClean()
	})
	t.Run("DroppedByRule", func(t *testing.T) {
		e := startDockerEngine(t, d, engineSection(true, false)+fmt.Sprintf(`
[defaults]
ingress = "allow"
egress = "allow"

[[container]]
name = "web"
ips = ["%s"]

  [[container.rule]]
  id = "web-no-80"
  direction = "ingress"
  proto = "tcp"
  ports = ["80"]
  action = "drop"
`, ip))
		expectBlocked(t, "outside -> 203.0.113.1:8080 with a drop rule on web's port 80",
			dkTCP(d.OutPath(), 22003, ap(dkHost, 8080), blockTimeout))
		expectAllowed(t, "outside -> 203.0.113.1:8000 (no rule, defaults allow)",
			dkTCP(d.OutPath(), 22004, ap(dkHost, 8000), allowTimeout))
		cases := []flowCase{
			// The record carries the container's address and port 80, as
			// Docker's DNAT left the packet, not 203.0.113.1:8080.
			{name: "outside -> 8080", proto: "tcp", src: dkOut, sport: 22003, dst: ap(ip, 80),
				want: rec("blocked", "web-no-80", "web", "ingress", "tcp", dkOut, 22003, ap(ip, 80))},
			{name: "outside -> 8000", proto: "tcp", src: dkOut, sport: 22004, dst: ap(ip, 8000)},
		}
		if _, ok := e.waitRecord(2*time.Second, cases[0].matches); !ok {
			t.Errorf("no blocked record for %s:22003 -> %s:80; records:\n%s", dkOut, ip, fmtRecords(e.records()))
		}
		checkRecords(t, cases, e.records())
		e.stopClean()
	})
}

// testDockerUnpublished: with the engine allowing everything, a container
// port Docker did not publish stays unreachable from outside (allow is
// NF_REPEAT, so Docker's FORWARD rules still run), while published ports
// and container-to-container traffic work.
func testDockerUnpublished(t *testing.T, d *dockerlab.Docker) {
	web := dockerlabtest.RunServer(t, d, "web", "-p", "8080:80")
	probe := dockerlabtest.RunServer(t, d, "probe")
	ip := ipv4Of(t, web, "bridge")
	expectBlocked(t, "without the engine: outside -> web:81 routed directly (Docker drops it)",
		dkTCP(d.OutPath(), 0, ap(ip, 81), blockTimeout))
	// Docker 28 and later drop direct routing to a container's address
	// from any other interface in raw PREROUTING, before FORWARD: those
	// packets never reach the queue, published container port or not.
	// Docker 20.10 lets them reach FORWARD, where DOCKER-USER sees them
	// first (and Docker drops the unpublished port after).
	rawDrops := d.Engine() == dockerlab.Docker29
	fw := netns.IPTables{Path: d.NSPath()}
	rawRule := "-d " + ip.String() + "/32 ! -i docker0"
	if rawDrops {
		t.Logf("Docker %s raw PREROUTING:\n%s", d.Version(), iptables(t, d, false, "-t", "raw", "-S", "PREROUTING"))
	}

	for i, fast := range []bool{true, false} {
		t.Run(fmt.Sprintf("fast_path=%v", fast), func(t *testing.T) {
			sp := uint16(23001 + 10*i)
			e := startDockerEngine(t, d, allowAllConfig(fast, false))
			before := ruleCounter(t, d)
			var raw0 uint64
			if rawDrops {
				raw0 = ruleCounterOf(t, fw, "raw", "PREROUTING", rawRule)
			}
			expectBlocked(t, "outside -> web:81 routed directly (not published)",
				dkTCP(d.OutPath(), sp, ap(ip, 81), blockTimeout))
			switch queued := ruleCounter(t, d) != before; {
			case rawDrops && queued:
				t.Errorf("Docker %s: the SYN routed directly to web reached the queue; want it dropped by Docker's raw PREROUTING first", d.Version())
			case rawDrops && ruleCounterOf(t, fw, "raw", "PREROUTING", rawRule) == raw0:
				t.Errorf("Docker %s: the SYN routed directly to web was not dropped by Docker's raw PREROUTING rule %q", d.Version(), rawRule)
			case !rawDrops && !queued:
				t.Fatalf("the SYN to the unpublished port never reached the queue; the test proves nothing")
			}
			expectAllowed(t, "outside -> 203.0.113.1:8080 (published)", dkTCP(d.OutPath(), sp+1, ap(dkHost, 8080), allowTimeout))
			if rawDrops {
				expectBlocked(t, "outside -> web:80 routed directly (Docker 28+ drops direct routing)",
					dkTCP(d.OutPath(), sp+2, ap(ip, 80), blockTimeout))
			} else {
				expectAllowed(t, "outside -> web:80 routed directly (published container port)",
					dkTCP(d.OutPath(), sp+2, ap(ip, 80), allowTimeout))
			}
			before = ruleCounter(t, d)
			expectAllowed(t, "probe -> web:81 (same bridge)", dkTCP(probe.NSPath(), sp+3, ap(ip, 81), allowTimeout))
			if ruleCounter(t, d) == before {
				t.Errorf("probe -> web:81 (same bridge) never reached the queue")
			}
			if recs := e.records(); len(recs) != 0 {
				t.Errorf("allow-all config wrote flow-log records:\n%s", fmtRecords(recs))
			}
			s := summary(t, e.stopClean())
			if s["dropped"] != 0 || s["blocked_flows"] != 0 {
				t.Errorf("engine dropped %d packets (%d flows); with defaults allow it must drop none", s["dropped"], s["blocked_flows"])
			}
		})
	}
}

// testDockerEgress: a container's connections to the outside are judged by
// remote port; replies of allowed flows pass although the container's
// ingress default is drop. Traffic comes both from sockets in the
// container's namespace and from a process in the container (docker exec).
func testDockerEgress(t *testing.T, d *dockerlab.Docker) {
	dockerlabtest.ServeTCPEcho(t, d.OutPath(), ap(dkOut, 9000))
	dockerlabtest.ServeTCPEcho(t, d.OutPath(), ap(dkOut, 25))
	dockerlabtest.ServeUDPEcho(t, d.OutPath(), ap(dkOut, 5300))
	web := dockerlabtest.RunServer(t, d, "web", "-p", "8080:80")
	ip := ipv4Of(t, web, "bridge")
	must(t, dkTCP(web.NSPath(), 0, ap(dkOut, 25), allowTimeout)) // Docker alone lets it out

	e := startDockerEngine(t, d, engineSection(true, false)+fmt.Sprintf(`
[defaults]
ingress = "allow"
egress = "allow"

[[container]]
name = "web"
ips = ["%s"]
ingress = "drop"

  [[container.rule]]
  id = "web-no-smtp"
  direction = "egress"
  proto = "tcp"
  ports = ["25"]
  action = "drop"
`, ip))
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	expectAllowed(t, "web -> outside:9000/tcp", dkTCP(web.NSPath(), 24001, ap(dkOut, 9000), allowTimeout))
	expectAllowed(t, "web -> outside:5300/udp", dkUDP(web.NSPath(), 24002, ap(dkOut, 5300), allowTimeout))
	expectBlocked(t, "web -> outside:25/tcp", dkTCP(web.NSPath(), 24003, ap(dkOut, 25), blockTimeout))
	if out, err := d.Exec(ctx, "web", "/srv", "connect", "-sport", "24004", dkOut.String()+":9000"); err != nil {
		t.Errorf("docker exec web /srv connect outside:9000: want allowed, got %v %s", err, out)
	}
	if _, err := d.Exec(ctx, "web", "/srv", "connect", "-sport", "24005", "-timeout", "700ms", dkOut.String()+":25"); err == nil {
		t.Errorf("docker exec web /srv connect outside:25: want blocked, but it succeeded")
	}
	expectBlocked(t, "outside -> 8080 (web's ingress default drop)", dkTCP(d.OutPath(), 24006, ap(dkHost, 8080), blockTimeout))
	cases := []flowCase{
		{name: "web -> outside:9000", proto: "tcp", src: ip, sport: 24001, dst: ap(dkOut, 9000)},
		{name: "web -> outside:5300/udp", proto: "udp", src: ip, sport: 24002, dst: ap(dkOut, 5300)},
		{name: "web -> outside:25", proto: "tcp", src: ip, sport: 24003, dst: ap(dkOut, 25),
			want: rec("blocked", "web-no-smtp", "web", "egress", "tcp", ip, 24003, ap(dkOut, 25))},
		{name: "exec: web -> outside:9000", proto: "tcp", src: ip, sport: 24004, dst: ap(dkOut, 9000)},
		{name: "exec: web -> outside:25", proto: "tcp", src: ip, sport: 24005, dst: ap(dkOut, 25),
			want: rec("blocked", "web-no-smtp", "web", "egress", "tcp", ip, 24005, ap(dkOut, 25))},
		{name: "outside -> 8080", proto: "tcp", src: dkOut, sport: 24006, dst: ap(ip, 80),
			want: rec("blocked", "default", "web", "ingress", "tcp", dkOut, 24006, ap(ip, 80))},
	}
	for _, c := range cases {
		if c.want != nil {
			e.waitRecord(2*time.Second, c.matches)
		}
	}
	checkRecords(t, cases, e.records())
	s := summary(t, e.stopClean())
	if s["blocked_flows"] != 3 {
		t.Errorf("engine blocked %d flows, want 3 (replies of allowed flows must not count)", s["blocked_flows"])
	}
}

// testDockerContainerToContainer: traffic between two containers on a
// user-defined bridge crosses FORWARD (bridge netfilter) and is judged;
// with net.bridge.bridge-nf-call-iptables = 0 it is invisible, and the
// engine says so at start.
func testDockerContainerToContainer(t *testing.T, d *dockerlab.Docker) {
	n := dockerlabtest.Network(t, d, "c2c")
	a := dockerlabtest.RunServer(t, d, "c2c-a", "--network", "c2c")
	b := dockerlabtest.RunServer(t, d, "c2c-b", "--network", "c2c")
	aip, bip := ipv4Of(t, a, "c2c"), ipv4Of(t, b, "c2c")
	if !strings.HasPrefix(n.Bridge, "br-") {
		t.Fatalf("user-defined network's bridge is %q, want br-…", n.Bridge)
	}
	const key = "net.bridge.bridge-nf-call-iptables"
	if v, err := netns.ReadSysctl(d.NSPath(), key); err != nil || v != "1" {
		t.Fatalf("%s in the Docker namespace = %q (%v), want 1 (Docker's setting)", key, v, err)
	}
	must(t, dkTCP(a.NSPath(), 0, ap(bip, 80), allowTimeout)) // Docker alone lets it through
	cfg := engineSection(true, false) + fmt.Sprintf(`
[defaults]
ingress = "allow"
egress = "allow"

[[container]]
name = "c2c-b"
ips = ["%s"]

  [[container.rule]]
  id = "b-no-80"
  direction = "ingress"
  proto = "tcp"
  ports = ["80"]
  action = "drop"
`, bip)

	t.Run("Judged", func(t *testing.T) {
		e := startDockerEngine(t, d, cfg)
		expectBlocked(t, "c2c-a -> c2c-b:80 (b-no-80)", dkTCP(a.NSPath(), 25001, ap(bip, 80), blockTimeout))
		expectAllowed(t, "c2c-a -> c2c-b:81", dkTCP(a.NSPath(), 25002, ap(bip, 81), allowTimeout))
		cases := []flowCase{
			{name: "a -> b:80", proto: "tcp", src: aip, sport: 25001, dst: ap(bip, 80),
				want: rec("blocked", "b-no-80", "c2c-b", "ingress", "tcp", aip, 25001, ap(bip, 80))},
			{name: "a -> b:81", proto: "tcp", src: aip, sport: 25002, dst: ap(bip, 81)},
		}
		e.waitRecord(2*time.Second, cases[0].matches)
		checkRecords(t, cases, e.records())
		e.stopClean()
	})
	t.Run("BridgeNFOff", func(t *testing.T) {
		must(t, netns.Sysctl(d.NSPath(), key, "0"))
		t.Cleanup(func() {
			if err := netns.Sysctl(d.NSPath(), key, "1"); err != nil {
				t.Error(err)
			}
		})
		e := startDockerEngine(t, d, cfg)
		if s := e.stderr(); !strings.Contains(s, "level=WARN") || !strings.Contains(s, "bridge-nf-call-iptables = 0") {
			t.Errorf("bridge-nf-call-iptables = 0 in the Docker namespace, but no warning at start:\n%s", s)
		}
		// What the warning says: the engine cannot see this traffic.
		expectAllowed(t, "c2c-a -> c2c-b:80 with bridge netfilter off (invisible to nfqguard)",
			dkTCP(a.NSPath(), 25003, ap(bip, 80), allowTimeout))
		if recs := e.records(); len(recs) != 0 {
			t.Errorf("bridged traffic was judged with bridge netfilter off:\n%s", fmtRecords(recs))
		}
		e.stopClean()
	})
}

// testDockerTwoNetworks: containers on the default bridge and on a
// user-defined network, each with its own rules, judged by one engine.
func testDockerTwoNetworks(t *testing.T, d *dockerlab.Docker) {
	net2 := dockerlabtest.Network(t, d, "net2")
	n1 := dockerlabtest.RunServer(t, d, "n1", "-p", "8081:80", "-p", "8083:8000")
	n2 := dockerlabtest.RunServer(t, d, "n2", "--network", "net2", "-p", "8082:80", "-p", "8084:8000")
	ip1, ip2 := ipv4Of(t, n1, "bridge"), ipv4Of(t, n2, "net2")
	if len(net2.Subnets) == 0 || !net2.Subnets[0].Contains(ip2) || net2.Subnets[0].Contains(ip1) {
		t.Fatalf("want n1 (%s) and n2 (%s) on different subnets; net2 has %v", ip1, ip2, net2.Subnets)
	}
	e := startDockerEngine(t, d, engineSection(true, false)+fmt.Sprintf(`
[defaults]
ingress = "allow"
egress = "allow"

[[container]]
name = "n1"
ips = ["%s"]
ingress = "drop"

  [[container.rule]]
  id = "n1-http"
  direction = "ingress"
  proto = "tcp"
  ports = ["80"]
  action = "allow"

[[container]]
name = "n2"
ips = ["%s"]
ingress = "drop"

  [[container.rule]]
  id = "n2-alt"
  direction = "ingress"
  proto = "tcp"
  ports = ["8000"]
  action = "allow"
`, ip1, ip2))
	expectAllowed(t, "outside -> 8081 (n1:80 on docker0)", dkTCP(d.OutPath(), 26001, ap(dkHost, 8081), allowTimeout))
	expectBlocked(t, "outside -> 8083 (n1:8000 on docker0)", dkTCP(d.OutPath(), 26002, ap(dkHost, 8083), blockTimeout))
	expectBlocked(t, "outside -> 8082 (n2:80 on "+net2.Bridge+")", dkTCP(d.OutPath(), 26003, ap(dkHost, 8082), blockTimeout))
	expectAllowed(t, "outside -> 8084 (n2:8000 on "+net2.Bridge+")", dkTCP(d.OutPath(), 26004, ap(dkHost, 8084), allowTimeout))
	cases := []flowCase{
		{name: "outside -> n1:80", proto: "tcp", src: dkOut, sport: 26001, dst: ap(ip1, 80)},
		{name: "outside -> n1:8000", proto: "tcp", src: dkOut, sport: 26002, dst: ap(ip1, 8000),
			want: rec("blocked", "default", "n1", "ingress", "tcp", dkOut, 26002, ap(ip1, 8000))},
		{name: "outside -> n2:80", proto: "tcp", src: dkOut, sport: 26003, dst: ap(ip2, 80),
			want: rec("blocked", "default", "n2", "ingress", "tcp", dkOut, 26003, ap(ip2, 80))},
		{name: "outside -> n2:8000", proto: "tcp", src: dkOut, sport: 26004, dst: ap(ip2, 8000)},
	}
	for _, c := range cases {
		if c.want != nil {
			e.waitRecord(2*time.Second, c.matches)
		}
	}
	checkRecords(t, cases, e.records())
	e.stopClean()
}

// testDockerNetworksIsolated: with an allow-all table, containers of two
// user networks still cannot reach each other (Docker's isolation stands
// after the engine's accept), while containers of one network can. Docker
// 20.10 drops the packet in FORWARD after DOCKER-USER, so it reached the
// queue first; Docker 28 and later drop it in the raw table before any
// forward hook (direct routing from another interface), so it never does.
func testDockerNetworksIsolated(t *testing.T, d *dockerlab.Docker) {
	dockerlabtest.Network(t, d, "isoa")
	dockerlabtest.Network(t, d, "isob")
	a := dockerlabtest.RunServer(t, d, "isoa1", "--network", "isoa")
	a2 := dockerlabtest.RunServer(t, d, "isoa2", "--network", "isoa")
	b := dockerlabtest.RunServer(t, d, "isob1", "--network", "isob")
	a2ip, bip := ipv4Of(t, a2, "isoa"), ipv4Of(t, b, "isob")
	expectBlocked(t, "without the engine: isoa1 -> isob1:80 (another network)", dkTCP(a.NSPath(), 0, ap(bip, 80), blockTimeout))
	expectAllowed(t, "without the engine: isoa1 -> isoa2:80 (same network)", dkTCP(a.NSPath(), 0, ap(a2ip, 80), allowTimeout))

	e := startDockerEngine(t, d, allowAllConfig(true, false))
	before := ruleCounter(t, d)
	expectBlocked(t, "allow-all: isoa1 -> isob1:80 (another network)", dkTCP(a.NSPath(), 27201, ap(bip, 80), blockTimeout))
	queued := ruleCounter(t, d) != before
	if wantQueued := d.Engine() == dockerlab.Debian; queued != wantQueued {
		t.Errorf("Docker %s: isoa1 -> isob1:80 reached the queue = %v, want %v", d.Version(), queued, wantQueued)
	}
	before = ruleCounter(t, d)
	expectAllowed(t, "allow-all: isoa1 -> isoa2:80 (same network)", dkTCP(a.NSPath(), 27202, ap(a2ip, 80), allowTimeout))
	if ruleCounter(t, d) == before {
		t.Errorf("isoa1 -> isoa2:80 never reached the queue: the test proves nothing")
	}
	s := summary(t, e.stopClean())
	if s["dropped"] != 0 || s["blocked_flows"] != 0 {
		t.Errorf("engine dropped %d packets (%d flows); with defaults allow it must drop none", s["dropped"], s["blocked_flows"])
	}
}

// testDockerKillRestart: SIGKILL leaves the engine's rules behind (traffic
// fails closed); the next start replaces them with exactly one redirect and
// one companion, judges again, keeps a connection fast-pathed before the
// kill, and a clean stop restores Docker's firewall.
func testDockerKillRestart(t *testing.T, d *dockerlab.Docker) {
	web := dockerlabtest.RunServer(t, d, "web", "-p", "8080:80", "-p", "8000:8000")
	ip := ipv4Of(t, web, "bridge")
	original := dkSave(t, d, false)
	cfg := engineSection(true, false) + fmt.Sprintf(`
[defaults]
ingress = "allow"
egress = "allow"

[[container]]
name = "web"
ips = ["%s"]

  [[container.rule]]
  id = "web-no-8000"
  direction = "ingress"
  proto = "tcp"
  ports = ["8000"]
  action = "drop"
`, ip)

	e1 := startDockerEngine(t, d, cfg)
	checkDockerUserLayout(t, d, false, "first engine")
	expectAllowed(t, "first engine: outside -> 8080", dkTCP(d.OutPath(), 27001, ap(dkHost, 8080), allowTimeout))
	expectBlocked(t, "first engine: outside -> 8000", dkTCP(d.OutPath(), 27002, ap(dkHost, 8000), blockTimeout))
	open, err := traffic.DialTCP(d.OutPath(), 27003, ap(dkHost, 8080), time.Now().Add(allowTimeout))
	must(t, err)
	defer open.Close()

	e1.kill()
	checkDockerUserLayout(t, d, false, "after SIGKILL (stale rules stay)")
	expectBlocked(t, "engine killed, fail_open = false: outside -> 8080", dkTCP(d.OutPath(), 27004, ap(dkHost, 8080), blockTimeout))

	e2 := startDockerEngine(t, d, cfg)
	checkDockerUserLayout(t, d, false, "after a start over stale rules")
	before := ruleCounter(t, d)
	expectAllowed(t, "second engine: outside -> 8080", dkTCP(d.OutPath(), 27005, ap(dkHost, 8080), allowTimeout))
	if ruleCounter(t, d) == before {
		t.Errorf("second engine: the NFQUEUE rule counted no packet of a new flow")
	}
	expectBlocked(t, "second engine: outside -> 8000", dkTCP(d.OutPath(), 27006, ap(dkHost, 8000), blockTimeout))
	expectAllowed(t, "connection opened before the kill", traffic.Echo(open, payload, time.Now().Add(allowTimeout)))
	cases := []flowCase{
		{name: "outside -> 8080", proto: "tcp", src: dkOut, sport: 27005, dst: ap(ip, 80)},
		{name: "outside -> 8000", proto: "tcp", src: dkOut, sport: 27006, dst: ap(ip, 8000),
			want: rec("blocked", "web-no-8000", "web", "ingress", "tcp", dkOut, 27006, ap(ip, 8000))},
	}
	e2.waitRecord(2*time.Second, cases[1].matches)
	checkRecords(t, cases, e2.records())
	e2.stopClean()
	if rules := ourRules(t, d, false); len(rules) != 0 {
		t.Fatalf("after SIGTERM nfqguard rules remain:\n%s", strings.Join(rules, "\n"))
	}
	if after := dkSave(t, d, false); after != original {
		t.Errorf("iptables-save of the Docker namespace changed.\nbefore:\n%s\nafter:\n%s", original, after)
	}
}

// testDockerReload: SIGHUP with a changed file puts the new rules in
// force for new flows, and leaves the redirect where and as it was, once.
func testDockerReload(t *testing.T, d *dockerlab.Docker) {
	web := dockerlabtest.RunServer(t, d, "web", "-p", "8080:80", "-p", "8000:8000")
	ip := ipv4Of(t, web, "bridge")
	cfgDropping := func(port uint16) string {
		return engineSection(true, false) + fmt.Sprintf(`
[defaults]
ingress = "allow"
egress = "allow"

[[container]]
name = "web"
ips = ["%s"]

  [[container.rule]]
  id = "web-no-%d"
  direction = "ingress"
  proto = "tcp"
  ports = ["%d"]
  action = "drop"
`, ip, port, port)
	}
	e := startDockerEngine(t, d, cfgDropping(8000))
	expectAllowed(t, "before the reload: outside -> 8080 (web:80)", dkTCP(d.OutPath(), 27101, ap(dkHost, 8080), allowTimeout))
	expectBlocked(t, "before the reload: outside -> 8000 (web-no-8000)", dkTCP(d.OutPath(), 27102, ap(dkHost, 8000), blockTimeout))

	cfg := ""
	for i, a := range e.cmd.Args[:len(e.cmd.Args)-1] {
		if a == "-c" {
			cfg = e.cmd.Args[i+1]
		}
	}
	if cfg == "" {
		t.Fatalf("no -c FILE in the engine's arguments %q", e.cmd.Args)
	}
	must(t, os.WriteFile(cfg, []byte(cfgDropping(80)), 0o644))
	must(t, e.cmd.Process.Signal(syscall.SIGHUP))
	if !e.waitFor(readyTimeout, func() bool { return logHas(e.errOut.String(), "rules reloaded") }) {
		t.Fatalf("no \"rules reloaded\" line after SIGHUP:\n%s", e.stderr())
	}
	checkDockerUserLayout(t, d, false, "after the reload")
	expectBlocked(t, "after the reload: outside -> 8080 (web-no-80)", dkTCP(d.OutPath(), 27103, ap(dkHost, 8080), blockTimeout))
	expectAllowed(t, "after the reload: outside -> 8000", dkTCP(d.OutPath(), 27104, ap(dkHost, 8000), allowTimeout))
	cases := []flowCase{
		{name: "outside -> 8080 before", proto: "tcp", src: dkOut, sport: 27101, dst: ap(ip, 80)},
		{name: "outside -> 8000 before", proto: "tcp", src: dkOut, sport: 27102, dst: ap(ip, 8000),
			want: rec("blocked", "web-no-8000", "web", "ingress", "tcp", dkOut, 27102, ap(ip, 8000))},
		{name: "outside -> 8080 after", proto: "tcp", src: dkOut, sport: 27103, dst: ap(ip, 80),
			want: rec("blocked", "web-no-80", "web", "ingress", "tcp", dkOut, 27103, ap(ip, 80))},
		{name: "outside -> 8000 after", proto: "tcp", src: dkOut, sport: 27104, dst: ap(ip, 8000)},
	}
	e.waitRecord(2*time.Second, cases[2].matches)
	checkRecords(t, cases, e.records())
	e.stopClean()
}

// testDockerIPv6: a container on an IPv6-enabled network is judged by its
// IPv6 address, ingress through Docker's IPv6 DNAT and egress alike.
//
// Docker 20.10 (the Debian package) creates no IPv6 DOCKER-USER even with
// --ip6tables (moby/moby#42477, fixed in Docker 23 by moby/moby#44706),
// and nfqguard hooks IPv6 only where Docker made that chain. The test then
// creates it the way Docker 23 and later do (a chain ending in RETURN,
// jumped to first thing in FORWARD) before starting the engine.
func testDockerIPv6(t *testing.T, opts dockerlab.Options) {
	opts.IPv6 = true
	d := dockerlabtest.Start(t, opts)
	dockerlabtest.Network(t, d, "v6net", "--ipv6", "--subnet", "fd00:db8::/64")
	web := dockerlabtest.RunServer(t, d, "web6", "--network", "v6net", "-p", "8080:80")
	ip4 := ipv4Of(t, web, "v6net")
	ip6, err := web.IPv6("v6net")
	must(t, err)
	dockerlabtest.ServeTCPEcho(t, d.OutPath(), ap(dkOut6, 9000))
	dockerlabtest.ServeTCPEcho(t, d.OutPath(), ap(dkOut6, 25))
	dockerlabtest.ServeTCPEcho(t, d.OutPath(), ap(dkOut, 25))
	must(t, dkTCP(web.NSPath(), 0, ap(dkOut6, 25), allowTimeout))   // Docker alone lets it out
	must(t, dkTCP(d.OutPath(), 0, ap(dkHost6, 8080), allowTimeout)) // and in, through its IPv6 DNAT
	must(t, dkTCP(d.OutPath(), 0, ap(dkHost, 8080), allowTimeout))  // and IPv4

	if _, err := d.IP6Tables(t.Context(), "-S", "DOCKER-USER"); err != nil && d.FirewallBackend() != dockerlab.NFTables {
		t.Logf("Docker %s made no IPv6 DOCKER-USER (moby/moby#42477); creating it as Docker 23+ does", d.Version())
		for _, args := range [][]string{
			{"-N", "DOCKER-USER"},
			{"-A", "DOCKER-USER", "-j", "RETURN"},
			{"-I", "FORWARD", "1", "-j", "DOCKER-USER"},
		} {
			if _, err := d.IP6Tables(t.Context(), args...); err != nil {
				t.Fatal(err)
			}
		}
	}
	original6 := dkSave(t, d, true)

	e := startDockerEngine(t, d, engineSection(true, false)+fmt.Sprintf(`
[defaults]
ingress = "allow"
egress = "allow"

[[container]]
name = "web6"
ips = ["%s", "%s"]

  [[container.rule]]
  id = "web6-no-smtp"
  direction = "egress"
  proto = "tcp"
  ports = ["25"]
  action = "drop"

  [[container.rule]]
  id = "web6-no-http-over-ipv6"
  direction = "ingress"
  proto = "tcp"
  ports = ["80"]
  from = ["::/0"]
  action = "drop"
`, ip4, ip6))
	if !strings.Contains(e.stderr(), "IPv6: ") {
		t.Errorf("start-up log does not name the IPv6 DOCKER-USER:\n%s", e.stderr())
	}
	checkDockerUserLayout(t, d, true, "engine running")
	checkDockerUserLayout(t, d, false, "engine running")
	expectAllowed(t, "web6 -> [outside6]:9000", dkTCP(web.NSPath(), 28001, ap(dkOut6, 9000), allowTimeout))
	expectBlocked(t, "web6 -> [outside6]:25", dkTCP(web.NSPath(), 28002, ap(dkOut6, 25), blockTimeout))
	expectBlocked(t, "web6 -> outside:25 (IPv4 of the same container)", dkTCP(web.NSPath(), 28003, ap(dkOut, 25), blockTimeout))
	expectBlocked(t, "outside6 -> [host6]:8080 (IPv6 DNAT to web6:80)", dkTCP(d.OutPath(), 28004, ap(dkHost6, 8080), blockTimeout))
	expectAllowed(t, "outside -> 203.0.113.1:8080 (IPv4 DNAT to web6:80)", dkTCP(d.OutPath(), 28005, ap(dkHost, 8080), allowTimeout))
	cases := []flowCase{
		{name: "web6 -> [outside6]:9000", proto: "tcp", src: ip6, sport: 28001, dst: ap(dkOut6, 9000)},
		{name: "web6 -> [outside6]:25", proto: "tcp", src: ip6, sport: 28002, dst: ap(dkOut6, 25),
			want: rec("blocked", "web6-no-smtp", "web6", "egress", "tcp", ip6, 28002, ap(dkOut6, 25))},
		{name: "web6 -> outside:25", proto: "tcp", src: ip4, sport: 28003, dst: ap(dkOut, 25),
			want: rec("blocked", "web6-no-smtp", "web6", "egress", "tcp", ip4, 28003, ap(dkOut, 25))},
		{name: "outside6 -> [host6]:8080", proto: "tcp", src: dkOut6, sport: 28004, dst: ap(ip6, 80),
			want: rec("blocked", "web6-no-http-over-ipv6", "web6", "ingress", "tcp", dkOut6, 28004, ap(ip6, 80))},
		{name: "outside -> 8080", proto: "tcp", src: dkOut, sport: 28005, dst: ap(ip4, 80)},
	}
	for _, c := range cases {
		if c.want != nil {
			e.waitRecord(2*time.Second, c.matches)
		}
	}
	checkRecords(t, cases, e.records())
	e.stopClean()
	requireOurRules(t, d, true, 0, 0)
	if after := dkSave(t, d, true); after != original6 {
		t.Errorf("ip6tables-save of the Docker namespace changed.\nbefore:\n%s\nafter:\n%s", original6, after)
	}
}
