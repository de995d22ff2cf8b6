package e2e

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/nfqguard/nfqguard/control"
	"github.com/nfqguard/nfqguard/flowlog"
	"github.com/nfqguard/nfqguard/internal/dockerlab"
	"github.com/nfqguard/nfqguard/internal/dockerlab/dockerlabtest"
	"github.com/nfqguard/nfqguard/internal/netns"
)

// dkRuleset returns `nft list ruleset` of the Docker namespace without
// counters, handles and the empty tables iptables-nft leaves (they hold no
// chain, so they hook nothing).
func dkRuleset(t testing.TB, d *dockerlab.Docker) string {
	t.Helper()
	out, err := netns.Run(context.Background(), d.NSPath(), "nft", "-s", "list", "ruleset")
	if err != nil {
		t.Fatal(err)
	}
	return regexp.MustCompile(`(?m)^table (ip|ip6) (mangle|filter) \{\n\}\n`).ReplaceAllString(out, "")
}

// dkNftHook returns nfqguard's rules in the Docker namespace's mangle
// table (the NFQGUARD chain and the jump to it) of one family, as
// iptables -S prints them.
func dkNftHook(t testing.TB, d *dockerlab.Docker, v6 bool) []string {
	t.Helper()
	run := d.IPTables
	if v6 {
		run = d.IP6Tables
	}
	out, err := run(context.Background(), "-t", "mangle", "-S")
	if err != nil {
		return nil // no mangle table
	}
	var ours []string
	for _, r := range nonEmptyLines(out) {
		if strings.Contains(r, "NFQGUARD") && strings.HasPrefix(r, "-A ") {
			ours = append(ours, r)
		}
	}
	return ours
}

// requireDkNftHook fails unless the family has one jump to NFQGUARD and
// NFQGUARD starts with the one redirect.
func requireDkNftHook(t testing.TB, d *dockerlab.Docker, v6 bool, when string) {
	t.Helper()
	rules := dkNftHook(t, d, v6)
	var jumps, redirects int
	first := ""
	for _, r := range rules {
		switch {
		case strings.HasPrefix(r, "-A FORWARD ") && strings.HasSuffix(r, "-j NFQGUARD"):
			jumps++
		case strings.HasPrefix(r, "-A NFQGUARD "):
			if first == "" {
				first = r
			}
			if strings.Contains(r, "-j NFQUEUE") {
				redirects++
			}
		}
	}
	if jumps != 1 || redirects != 1 || !strings.Contains(first, "nfqguard-redirect") {
		t.Errorf("%s (v6=%v): nfqguard's mangle rules:\n%s\nwant one jump to NFQGUARD and one redirect, first in it", when, v6,
			strings.Join(rules, "\n"))
	}
}

// TestDocker29Nftables runs the engine against a real Docker 29 with its
// nftables firewall backend: auto takes Docker's word and hooks mangle
// NFQGUARD in both families; rules by container name judge published and
// container-to-container traffic; an allow-all table leaves Docker's own
// drops in force (an unpublished port, two networks isolated from each
// other, a network with inter-container traffic off); Docker's restart,
// which rebuilds its tables, leaves the hook alone; a clean stop leaves
// the ruleset as it was.
func TestDocker29Nftables(t *testing.T) {
	t.Parallel()
	d := dockerlabtest.Start(t, dockerlab.Options{Engine: dockerlab.Docker29, FirewallBackend: dockerlab.NFTables})
	dockerlabtest.Image(t, d)
	t.Logf("Docker %s (%s backend) in namespace %s", d.Version(), d.FirewallBackend(), d.NS())
	dockerlabtest.Network(t, d, "neta")
	dockerlabtest.Network(t, d, "netb")
	dockerlabtest.Network(t, d, "noicc", "-o", "com.docker.network.bridge.enable_icc=false")
	// web comes back when dockerd restarts (RulesByName restarts it).
	web := dockerlabtest.RunServer(t, d, "web", "--restart", "always", "--stop-timeout", "1", "-p", "8080:80", "-p", "8000:8000")
	a := dockerlabtest.RunServer(t, d, "na1", "--network", "neta", "--stop-timeout", "1")
	b := dockerlabtest.RunServer(t, d, "nb1", "--network", "netb", "--stop-timeout", "1")
	c1 := dockerlabtest.RunServer(t, d, "c1", "--network", "noicc", "--stop-timeout", "1")
	c2 := dockerlabtest.RunServer(t, d, "c2", "--network", "noicc", "--stop-timeout", "1")
	ip, aip, bip, c2ip := ipv4Of(t, web, "bridge"), ipv4Of(t, a, "neta"), ipv4Of(t, b, "netb"), ipv4Of(t, c2, "noicc")
	a2 := dockerlabtest.RunServer(t, d, "na2", "--network", "neta", "--stop-timeout", "1")
	a2ip := ipv4Of(t, a2, "neta")
	before := dkRuleset(t, d)
	if !strings.Contains(before, "table ip docker-bridges") || !strings.Contains(before, "table ip6 docker-bridges") {
		t.Fatalf("Docker 29's nftables backend made no ip and ip6 docker-bridges tables:\n%s", before)
	}

	// Docker's own drops, without the engine.
	expectAllowed(t, "without the engine: outside -> 8080", dkTCP(d.OutPath(), 0, ap(dkHost, 8080), allowTimeout))
	expectAllowed(t, "without the engine: a -> a2:80 (same network)", dkTCP(a.NSPath(), 0, ap(a2ip, 80), allowTimeout))
	dockerDrops := []struct {
		what string
		ns   string
		dst  netip.AddrPort
		// queued: the packet reaches the forward hook, so nfqguard
		// allows it before Docker's filter-FORWARD drops it. Direct
		// routing to a container's address from another interface
		// (outside, or another network's bridge) is dropped earlier by
		// Docker's raw-PREROUTING (priority -300), before any hook of
		// nfqguard's.
		queued bool
	}{
		{"outside -> web:81 routed directly (unpublished)", d.OutPath(), ap(ip, 81), false},
		{"a -> b:80 (another network)", a.NSPath(), ap(bip, 80), false},
		{"c1 -> c2:80 (enable_icc=false)", c1.NSPath(), ap(c2ip, 80), true},
	}
	for _, dd := range dockerDrops {
		expectBlocked(t, "without the engine: "+dd.what, dkTCP(dd.ns, 0, dd.dst, blockTimeout))
	}

	t.Run("AllowAllMeetsDockersRules", func(t *testing.T) {
		sock := testSocket(t)
		e := startDockerEngineAt(t, d, sock, engineSection(true, false)+fmt.Sprintf("[docker]\nsocket = %q\n\n", d.Socket())+
			"[defaults]\ningress = \"allow\"\negress = \"allow\"\n")
		if s := e.stderr(); !strings.Contains(s, "mangle NFQGUARD") || !strings.Contains(s, "IPv6: ") {
			t.Errorf("the start line does not name mangle NFQGUARD for both families:\n%s", s)
		}
		requireDkNftHook(t, d, false, "running")
		requireDkNftHook(t, d, true, "running")
		fw := netns.IPTables{Path: d.NSPath()}
		for i, dd := range dockerDrops {
			seen := ruleCounterOf(t, fw, "mangle", "NFQGUARD", "nfqguard-redirect")
			expectBlocked(t, "allow-all: "+dd.what, dkTCP(dd.ns, uint16(28101+i), dd.dst, blockTimeout))
			switch queued := ruleCounterOf(t, fw, "mangle", "NFQGUARD", "nfqguard-redirect") != seen; {
			case dd.queued && !queued:
				t.Errorf("allow-all: %s: the packet never reached the queue; the test proves nothing", dd.what)
			case !dd.queued && queued:
				t.Errorf("allow-all: %s: the packet reached the queue; want it dropped by Docker's raw-PREROUTING first", dd.what)
			}
		}
		expectAllowed(t, "allow-all: outside -> 8080", dkTCP(d.OutPath(), 28111, ap(dkHost, 8080), allowTimeout))
		expectAllowed(t, "allow-all: a -> a2:80", dkTCP(a.NSPath(), 28112, ap(a2ip, 80), allowTimeout))
		if st := statusJSON(t, sock); !strings.Contains(strings.Join(st.Redirect.Hooks, ";"), "mangle NFQGUARD") || st.Redirect.State != "in place" {
			t.Errorf("status redirect %+v: want in place, hooked at mangle NFQGUARD", st.Redirect)
		}
		s := summary(t, e.stopClean())
		if s["dropped"] != 0 {
			t.Errorf("allow-all: the engine dropped %d packets; the drops must be Docker's", s["dropped"])
		}
		if after := dkRuleset(t, d); after != before {
			t.Errorf("a clean stop left the ruleset changed:\n%s", cmp.Diff(before, after))
		}
	})

	t.Run("RulesByName", func(t *testing.T) {
		e := startDockerEngine(t, d, engineSection(true, false)+fmt.Sprintf("[docker]\nsocket = %q\n\n", d.Socket())+`
[defaults]
ingress = "allow"
egress = "allow"

[[container]]
name = "web"

  [[container.rule]]
  id = "web-no-8000"
  direction = "ingress"
  proto = "tcp"
  ports = ["8000"]
  action = "drop"

[[container]]
name = "na2"

  [[container.rule]]
  id = "na2-no-81"
  direction = "ingress"
  proto = "tcp"
  ports = ["81"]
  action = "drop"
`)
		if !waitLog(t, e, readyTimeout, "docker container matched", "entry=na2") {
			t.Fatalf("a2 never resolved:\n%s", e.stderr())
		}
		expectAllowed(t, "outside -> 8080 (web:80)", dkTCP(d.OutPath(), 28201, ap(dkHost, 8080), allowTimeout))
		expectBlocked(t, "outside -> 8000 (web-no-8000)", dkTCP(d.OutPath(), 28202, ap(dkHost, 8000), blockTimeout))
		expectAllowed(t, "a -> a2:80", dkTCP(a.NSPath(), 28203, ap(a2ip, 80), allowTimeout))
		expectBlocked(t, "a -> a2:81 (na2-no-81)", dkTCP(a.NSPath(), 28204, ap(a2ip, 81), blockTimeout))
		cases := []flowCase{
			{name: "outside -> web:8000", proto: "tcp", src: dkOut, sport: 28202, dst: ap(ip, 8000),
				want: rec("blocked", "web-no-8000", "web", "ingress", "tcp", dkOut, 28202, ap(ip, 8000))},
			{name: "a -> a2:81", proto: "tcp", src: aip, sport: 28204, dst: ap(a2ip, 81),
				want: rec("blocked", "na2-no-81", "na2", "ingress", "tcp", aip, 28204, ap(a2ip, 81))},
			{name: "outside -> web:80", proto: "tcp", src: dkOut, sport: 28201, dst: ap(ip, 80)},
			{name: "a -> a2:80", proto: "tcp", src: aip, sport: 28203, dst: ap(a2ip, 80)},
		}
		for _, c := range cases[:2] {
			if _, ok := e.waitRecord(blockTimeout, c.matches); !ok {
				t.Errorf("%s: no flow-log record", c.name)
			}
		}
		checkRecords(t, cases, e.records())

		// Docker restarts and rebuilds its tables: the hook, in a table
		// Docker does not own, stays; the rules still judge.
		must(t, d.Restart(t.Context()))
		requireDkNftHook(t, d, false, "after Docker's restart")
		if !waitLog(t, e, readyTimeout, "docker container matched", "entry=web") {
			t.Errorf("no relist after Docker's restart:\n%s", e.stderr())
		}
		web2, err := d.Inspect(t.Context(), "web")
		must(t, err)
		ip2 := ipv4Of(t, web2, "bridge")
		expectBlocked(t, "after Docker's restart: outside -> 8000 (web-no-8000)", dkTCP(d.OutPath(), 28205, ap(dkHost, 8000), blockTimeout))
		if _, ok := e.waitRecord(blockTimeout, func(r flowlog.Record) bool {
			return r.SrcPort == 28205 && r.Rule == "web-no-8000" && r.Dst == ip2.String()
		}); !ok {
			t.Errorf("after Docker's restart: no web-no-8000 record for outside -> 8000:\n%s", fmtRecords(e.records()))
		}
		e.stopClean()
		for _, v6 := range []bool{false, true} {
			if rules := dkNftHook(t, d, v6); len(rules) != 0 {
				t.Errorf("after a clean stop (v6=%v), nfqguard's rules are left:\n%s", v6, strings.Join(rules, "\n"))
			}
		}
	})
}

// TestDocker29BackendSwitch: a real Docker 29 stopped and started again
// with the other firewall-backend under a running engine (auto): the
// engine notices, moves its redirect to the new backend's hook and logs it,
// both times; a port the rules block is never reachable at any moment
// (probed throughout); allowed flows resume.
func TestDocker29BackendSwitch(t *testing.T) {
	t.Parallel()
	d := dockerlabtest.Start(t, dockerlab.Options{Engine: dockerlab.Docker29, FirewallBackend: dockerlab.IPTables})
	dockerlabtest.Image(t, d)
	dockerlabtest.RunServer(t, d, "web", "--restart", "always", "--stop-timeout", "1", "-p", "8080:80", "-p", "8000:8000")
	sock := testSocket(t)
	e := startDockerEngineAt(t, d, sock, engineSection(true, false)+fmt.Sprintf("[docker]\nsocket = %q\n\n", d.Socket())+`
[defaults]
ingress = "allow"
egress = "allow"

[[container]]
name = "web"

  [[container.rule]]
  id = "web-no-8000"
  direction = "ingress"
  proto = "tcp"
  ports = ["8000"]
  action = "drop"
`)
	if n := len(ourRules(t, d, false)); n == 0 || !strings.Contains(e.stderr(), "filter DOCKER-USER") {
		t.Fatalf("not hooked at DOCKER-USER (%d rules of ours there):\n%s", n, e.stderr())
	}
	p := startProberFrom(t, d.OutPath(), ap(dkHost, 8000), ap(dkHost, 8080), 30000, 40000)
	defer p.close()

	for i, c := range []struct{ backend, hook string }{
		{dockerlab.NFTables, "mangle NFQGUARD"},
		{dockerlab.IPTables, "filter DOCKER-USER"},
	} {
		must(t, d.Stop(t.Context()))
		switched := time.Now()
		must(t, d.StartAgainWithFirewall(t.Context(), c.backend))
		back := time.Since(switched)
		if c.backend == dockerlab.NFTables {
			// Docker 29 moving to nftables removes its iptables chains but
			// DOCKER-USER, the FORWARD jump to it and the FORWARD policy
			// DROP, which then drops every forwarded packet, with or
			// without nfqguard: the operator sets it back, as here.
			_, err4 := d.IPTables(t.Context(), "-P", "FORWARD", "ACCEPT")
			_, err6 := d.IP6Tables(t.Context(), "-P", "FORWARD", "ACCEPT")
			must(t, errors.Join(err4, err6))
		}
		// One move per family: Docker 29 has IPv6 on by default.
		if !e.waitFor(30*time.Second, func() bool { return strings.Count(e.errOut.String(), "redirect moved") >= 2*(i+1) }) {
			t.Fatalf("Docker now uses %s; no \"redirect moved\" line:\n%s", c.backend, e.stderr())
		}
		moved := time.Since(switched)
		st := waitStatus(t, sock, "hooked at "+c.hook, func(st control.Status) bool {
			return st.Redirect.InPlace && strings.Contains(strings.Join(st.Redirect.Hooks, ";"), c.hook)
		})
		if st.Redirect.ByEvent["backend_changed"] != uint64(2*(i+1)) {
			t.Errorf("status counts %d backend_changed events, want %d", st.Redirect.ByEvent["backend_changed"], 2*(i+1))
		}
		if c.backend == dockerlab.NFTables {
			requireDkNftHook(t, d, false, "after Docker moved to nftables")
			if out, err := d.IPTables(t.Context(), "-S"); err != nil || strings.Contains(out, "nfqguard") {
				t.Errorf("after Docker moved to nftables, rules of ours are left in the filter table (%v):\n%s", err, out)
			}
		} else if rules := dkNftHook(t, d, false); len(rules) != 0 {
			t.Errorf("after Docker moved back to iptables, nfqguard's mangle rules are left:\n%s", strings.Join(rules, "\n"))
		}
		resumed := time.Now()
		if !eventually(30*time.Second, func() bool { return p.allowedSince(resumed) > 0 }) {
			t.Errorf("after the switch to %s, allowed probes never succeeded again", c.backend)
		}
		t.Logf("to %s: Docker back in %v, redirect moved %v after the stop ended", c.backend, back.Round(time.Millisecond), moved.Round(time.Millisecond))
	}
	// Back on iptables, Docker put DOCKER-FORWARD above the DOCKER-USER
	// jump it had left (moby/moby#48560): nfqguard's own jump at the top
	// keeps the redirect first (event jump_misplaced) instead of a shadow.
	waitStatus(t, sock, "in place, not shadowed", func(st control.Status) bool { return st.Redirect.State == "in place" })
	p.close()
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.blocked == 0 || p.blockedConnected != 0 {
		t.Errorf("%d probes of the blocked port 8000, %d of them connected; want some, none connected", p.blocked, p.blockedConnected)
	}
	t.Logf("probes: %d blocked (0 connected), %d allowed, %d of them succeeded", p.blocked, p.allowed, len(p.allowedOK))
}
