package e2e

// Helpers of the end-to-end tests against a private Docker engine
// (package internal/dockerlab): the engine started in the Docker namespace,
// readers of that namespace's iptables state and traffic shorthands. The
// engine type, its output parsing and the record checks are shared with
// the netns-lab suite (e2e_helpers_test.go, e2e_integration_test.go).

import (
	"context"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/nfqguard/nfqguard/internal/dockerlab"
	"github.com/nfqguard/nfqguard/internal/netns"
	"github.com/nfqguard/nfqguard/internal/traffic"
)

// startDockerEngine writes cfgText to a file and runs
// `nfqguard run -c FILE --blocked-log stdout extra...` in d's Docker
// namespace, waiting until it logs "nfqguard running". The engine is killed
// in cleanup if the test has not stopped it; then any nfqguard rule still
// in DOCKER-USER (a killed engine's) is removed, so the next test on the
// same Docker starts from Docker's own layout.
func startDockerEngine(t testing.TB, d *dockerlab.Docker, cfgText string, extra ...string) *engine {
	t.Helper()
	return startDockerEngineAt(t, d, testSocket(t), cfgText, extra...)
}

// startDockerEngineAt is startDockerEngine with the status socket sock,
// for tests that ask the engine for its status.
func startDockerEngineAt(t testing.TB, d *dockerlab.Docker, sock, cfgText string, extra ...string) *engine {
	t.Helper()
	cfg := writeConfig(t, cfgText)
	args := append([]string{"run", "-c", cfg, "--blocked-log", "stdout", "--status-socket", sock}, extra...)
	// Registered first, so it runs after the engine's own cleanup.
	t.Cleanup(func() { scrubOurRules(t, d) })
	e := runEngine(t, d.Command(context.Background(), binary(t), args...))
	e.sock = sock
	return e
}

// --- the Docker namespace's iptables -------------------------------------

// dkSave returns iptables-save (ip6tables-save) of the Docker namespace
// without comments and counters, for before/after comparisons; with
// Docker's nftables backend, whose rules iptables-save does not show,
// `nft list ruleset` of both families (dkRuleset) instead.
func dkSave(t testing.TB, d *dockerlab.Docker, v6 bool) string {
	t.Helper()
	if d.FirewallBackend() == dockerlab.NFTables {
		return dkRuleset(t, d)
	}
	bin := "iptables-save"
	if v6 {
		bin = "ip6tables-save"
	}
	out, err := netns.Run(context.Background(), d.NSPath(), bin)
	if err != nil {
		t.Fatal(err)
	}
	return comparableSave(out)
}

// scrubOurRules deletes every nfqguard rule left in the Docker namespace's
// filter and mangle tables (after a killed engine: the redirect, its
// drops, a FORWARD jump, the guard) and logs what it removed.
func scrubOurRules(t testing.TB, d *dockerlab.Docker) {
	for _, v6 := range []bool{false, true} {
		run := d.IPTables
		if v6 {
			run = d.IP6Tables
		}
		for _, table := range []string{"filter", "mangle"} {
			out, err := run(context.Background(), "-t", table, "-S")
			if err != nil {
				continue // no such table (IPv6 without Docker's rules)
			}
			for _, r := range nonEmptyLines(out) {
				if !strings.Contains(r, "nfqguard") || !strings.HasPrefix(r, "-A ") {
					continue
				}
				args := append([]string{"-t", table}, splitRule(strings.Replace(r, "-A ", "-D ", 1))...)
				if _, err := run(context.Background(), args...); err != nil {
					t.Errorf("remove a stale nfqguard rule: %v", err)
					continue
				}
				t.Logf("removed a stale nfqguard rule (v6=%v, %s): %s", v6, table, r)
			}
		}
	}
}

// splitRule splits an iptables -S line into arguments, honouring the double
// quotes iptables puts around comments with spaces.
func splitRule(s string) []string {
	var out []string
	var cur strings.Builder
	inQuote, have := false, false
	for _, r := range s {
		switch {
		case r == '"':
			inQuote = !inQuote
			have = true
		case r == ' ' && !inQuote:
			if have {
				out = append(out, cur.String())
				cur.Reset()
				have = false
			}
		default:
			cur.WriteRune(r)
			have = true
		}
	}
	if have {
		out = append(out, cur.String())
	}
	return out
}

// --- traffic ----------------------------------------------------------------

// dkTCP exchanges payload over TCP from the namespace at nsPath, source
// port sport, with the echo server at dst.
func dkTCP(nsPath string, sport uint16, dst netip.AddrPort, timeout time.Duration) error {
	return traffic.TCPExchange(nsPath, sport, dst, payload, timeout)
}

// dkUDP is dkTCP for one UDP datagram.
func dkUDP(nsPath string, sport uint16, dst netip.AddrPort, timeout time.Duration) error {
	return traffic.UDPExchange(nsPath, sport, dst, payload, timeout)
}

// ipv4Of returns c's IPv4 address on network, failing the test if it has
// none.
func ipv4Of(t testing.TB, c *dockerlab.Container, network string) netip.Addr {
	t.Helper()
	a, err := c.IPv4(network)
	if err != nil {
		t.Fatal(err)
	}
	return a
}
