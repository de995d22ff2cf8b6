package e2e

// End-to-end tests of the nftables hook in the lab: a host whose Docker
// uses its nftables firewall backend (Docker 29), imitated by
// netlab.DockerNftables: table ip docker-bridges, no DOCKER-USER and no
// iptables rules at all. nfqguard hooks a chain of its own, NFQGUARD, in
// the iptables-nft mangle table, jumped to from mangle FORWARD (priority
// -150, before Docker's filter-FORWARD at 0).

import (
	"context"
	"fmt"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/nfqguard/nfqguard/control"
	"github.com/nfqguard/nfqguard/internal/netlab"
	"github.com/nfqguard/nfqguard/internal/netlab/netlabtest"
	"github.com/nfqguard/nfqguard/internal/netns"
)

// nftRuleset returns the lab host's `nft list ruleset`, without counters,
// and without the empty table ip mangle that iptables-nft cannot delete
// (it holds no chain, so it hooks nothing).
func nftRuleset(t testing.TB, l *netlab.Lab) string {
	t.Helper()
	out, err := l.Command(context.Background(), l.Host, "nft", "-s", "list", "ruleset").Output()
	if err != nil {
		t.Fatalf("nft list ruleset: %v", err)
	}
	return strings.Replace(string(out), "table ip mangle {\n}\n", "", 1)
}

// nftHookRules returns the rules of the mangle NFQGUARD chain and the jumps
// to it, as iptables -S prints them; nil when the chain does not exist.
func nftHookRules(t testing.TB, l *netlab.Lab) (hook, jumps []string) {
	t.Helper()
	if out, err := l.IPTables(context.Background(), "-t", "mangle", "-S", "NFQGUARD"); err == nil {
		for _, r := range strings.Split(strings.TrimSpace(out), "\n") {
			if strings.HasPrefix(r, "-A ") {
				hook = append(hook, r)
			}
		}
	}
	out, err := l.IPTables(context.Background(), "-t", "mangle", "-S", "FORWARD")
	if err != nil {
		t.Fatalf("iptables -t mangle -S FORWARD: %v", err)
	}
	for _, r := range strings.Split(out, "\n") {
		if strings.HasSuffix(r, "-j NFQGUARD") {
			jumps = append(jumps, r)
		}
	}
	return hook, jumps
}

// requireNftHook fails unless NFQGUARD starts with the one redirect,
// followed by the one companion, and mangle FORWARD jumps to it once.
func requireNftHook(t testing.TB, l *netlab.Lab, when string) {
	t.Helper()
	hook, jumps := nftHookRules(t, l)
	if len(hook) < 2 || !strings.Contains(hook[0], "nfqguard-redirect") || !strings.Contains(hook[1], "nfqguard-fastpath") ||
		strings.Count(strings.Join(hook, "\n"), "NFQUEUE") != 1 || len(jumps) != 1 {
		t.Fatalf("%s: mangle NFQGUARD:\n%s\njumps to it: %q; want one redirect first, one companion, one jump", when,
			strings.Join(hook, "\n"), jumps)
	}
}

// TestNftablesBackend: on a host whose Docker uses nftables, run hooks
// mangle NFQGUARD and says so; the rules judge each flow as on the
// iptables side; an allowed packet still meets Docker's own rules (an
// unpublished port stays closed with an allow-all table, while the queue
// saw the packet); Docker's table is never touched; SIGKILL leaves the
// hook (fail closed) and the next start replaces it with exactly one; a
// clean stop leaves the ruleset as it was. [engine] firewall = "iptables"
// is refused there before anything is written.
func TestNftablesBackend(t *testing.T) {
	t.Parallel()
	l := netlabtest.New(t, netlab.Options{DockerFirewall: netlab.DockerNftables})
	web, db := l.Containers[0], l.Containers[1]
	out, host := l.Outside, l.HostOutside
	must(t, l.ServeTCPEcho(web.NS, ap(web.Addr, 80)))
	must(t, l.ServeTCPEcho(web.NS, ap(web.Addr, 81)))
	must(t, l.ServeUDPEcho(web.NS, ap(web.Addr, 53)))
	must(t, l.ServeTCPEcho(db.NS, ap(db.Addr, 5432)))
	must(t, l.ServeTCPEcho(db.NS, ap(db.Addr, 6379)))
	must(t, l.ServeTCPEcho(l.Out, ap(out, 9000)))
	must(t, l.ServeTCPEcho(l.Out, ap(out, 25)))
	before := nftRuleset(t, l)
	if !strings.Contains(before, "table ip docker-bridges") || strings.Contains(before, "DOCKER-USER") {
		t.Fatalf("the lab does not look like Docker's nftables backend:\n%s", before)
	}
	// Docker's rules alone: the published port is open, the unpublished
	// one closed from outside.
	expectAllowed(t, "without the engine: outside -> 8080 (published)", tcpExchange(l, l.Out, 44001, ap(host, 8080), allowTimeout))
	expectBlocked(t, "without the engine: outside -> web:81 routed directly (unpublished)", tcpExchange(l, l.Out, 44002, ap(web.Addr, 81), blockTimeout))

	t.Run("iptables refused", func(t *testing.T) {
		stderr, code := runEngineExpectFail(t, l, "[engine]\nfirewall = \"iptables\"\n\n"+allowAllConfig(true, false)[len("[engine]\n"):])
		if code != 1 || !strings.Contains(stderr, "nftables firewall backend") || !strings.Contains(stderr, "[engine] firewall") {
			t.Errorf("firewall = \"iptables\" with Docker's nftables backend: exit %d, stderr %q; want exit 1 naming [engine] firewall", code, stderr)
		}
		if after := nftRuleset(t, l); after != before {
			t.Errorf("the refused start changed the ruleset:\n%s", cmp.Diff(before, after))
		}
	})

	t.Run("rules", func(t *testing.T) {
		cases := []flowCase{
			{name: "outside -> web:80 via published 8080 (web-http, logged)", proto: "tcp", ns: l.Out, src: out, sport: 44011,
				dst: ap(web.Addr, 80), via: ap(host, 8080), allowed: true,
				want: rec("allowed", "web-http", "web", "ingress", "tcp", out, 44011, ap(web.Addr, 80))},
			{name: "outside -> web:53/udp via published 5353 (web ingress default drop)", proto: "udp", ns: l.Out, src: out, sport: 44012,
				dst: ap(web.Addr, 53), via: ap(host, 5353),
				want: rec("blocked", "default", "web", "ingress", "udp", out, 44012, ap(web.Addr, 53))},
			{name: "web -> outside:9000 (egress default allow)", proto: "tcp", ns: web.NS, src: web.Addr, sport: 44013,
				dst: ap(out, 9000), allowed: true},
			{name: "web -> outside:25 (web-no-smtp)", proto: "tcp", ns: web.NS, src: web.Addr, sport: 44014, dst: ap(out, 25),
				want: rec("blocked", "web-no-smtp", "web", "egress", "tcp", web.Addr, 44014, ap(out, 25))},
			{name: "web -> db:5432 (db-from-web)", proto: "tcp", ns: web.NS, src: web.Addr, sport: 44015,
				dst: ap(db.Addr, 5432), allowed: true},
			{name: "web -> db:6379 (db ingress default drop)", proto: "tcp", ns: web.NS, src: web.Addr, sport: 44016, dst: ap(db.Addr, 6379),
				want: rec("blocked", "default", "db", "ingress", "tcp", web.Addr, 44016, ap(db.Addr, 6379))},
		}
		sock := testSocket(t)
		e := startTestEngine(t, l, verdictsConfig, "--status-socket", sock)
		if !strings.Contains(e.stderr(), `firewall="IPv4: /usr/sbin/iptables-nft (nft), mangle NFQGUARD"`) {
			t.Errorf("the start line does not name the hook mangle NFQGUARD:\n%s", e.stderr())
		}
		requireNftHook(t, l, "running")
		for _, c := range cases {
			if c.allowed {
				expectAllowed(t, c.name, c.exchange(l, c.sport, allowTimeout))
			} else {
				expectBlocked(t, c.name, c.exchange(l, c.sport, blockTimeout))
			}
		}
		for _, c := range cases {
			if c.want != nil {
				if _, ok := e.waitRecord(blockTimeout, c.matches); !ok {
					t.Errorf("%s: no flow-log record", c.name)
				}
			}
		}
		checkRecords(t, cases, e.records())
		if st := waitStatus(t, sock, "the redirect in place", func(st control.Status) bool { return st.Redirect.State == "in place" }); !strings.Contains(strings.Join(st.Redirect.Hooks, ";"), "mangle NFQGUARD") {
			t.Errorf("status firewall %q does not name the hook mangle NFQGUARD", st.Redirect.Hooks)
		}
		e.stopClean()
		if hook, jumps := nftHookRules(t, l); len(hook)+len(jumps) > 0 {
			t.Errorf("after a clean stop: NFQGUARD %q, jumps %q", hook, jumps)
		}
		if after := nftRuleset(t, l); after != before {
			t.Errorf("a clean stop left the ruleset changed:\n%s", cmp.Diff(before, after))
		}
	})

	t.Run("allow-all meets Docker's rules", func(t *testing.T) {
		for _, fast := range []bool{true, false} {
			e := startTestEngine(t, l, allowAllConfig(fast, false))
			fw := netns.IPTables{Path: l.NSPath(l.Host)}
			sport := uint16(44021)
			if !fast {
				sport += 10
			}
			seen := ruleCounterOf(t, fw, "mangle", "NFQGUARD", "nfqguard-redirect")
			expectBlocked(t, fmt.Sprintf("fast_path=%v: outside -> web:81 routed directly (unpublished)", fast),
				tcpExchange(l, l.Out, sport, ap(web.Addr, 81), blockTimeout))
			if ruleCounterOf(t, fw, "mangle", "NFQGUARD", "nfqguard-redirect") == seen {
				t.Fatalf("fast_path=%v: the SYN to the unpublished port never reached the queue; the test proves nothing", fast)
			}
			expectAllowed(t, fmt.Sprintf("fast_path=%v: outside -> 8080 (published)", fast),
				tcpExchange(l, l.Out, sport+1, ap(host, 8080), allowTimeout))
			expectAllowed(t, fmt.Sprintf("fast_path=%v: db -> web:81", fast),
				tcpExchange(l, db.NS, sport+2, ap(web.Addr, 81), allowTimeout))
			s := summary(t, e.stopClean())
			if s["dropped"] != 0 {
				t.Errorf("fast_path=%v: the engine dropped %d packets; with an allow-all table the drop must be Docker's", fast, s["dropped"])
			}
		}
	})

	t.Run("kill -9 and restart", func(t *testing.T) {
		cfg := allowAllConfig(true, false) + "\n[[container]]\nname = \"web\"\nips = [\"172.17.0.2\"]\ningress = \"drop\"\n"
		e := startTestEngine(t, l, cfg)
		if _, err := e.stop(syscall.SIGKILL); err == nil {
			t.Fatal("SIGKILL: engine exited 0")
		}
		requireNftHook(t, l, "after SIGKILL (the hook stays: fail closed)")
		expectBlocked(t, "engine killed: outside -> 8080", tcpExchange(l, l.Out, 44041, ap(host, 8080), blockTimeout))
		e2 := startTestEngine(t, l, cfg)
		requireNftHook(t, l, "after a start over the killed run's hook")
		expectBlocked(t, "second engine: outside -> 8080 (web ingress drop)", tcpExchange(l, l.Out, 44042, ap(host, 8080), blockTimeout))
		expectAllowed(t, "second engine: web -> outside:9000", tcpExchange(l, web.NS, 44043, ap(out, 9000), allowTimeout))
		e2.stopClean()
		if after := nftRuleset(t, l); after != before {
			t.Errorf("a clean stop after a kill left the ruleset changed:\n%s", cmp.Diff(before, after))
		}
	})
}
