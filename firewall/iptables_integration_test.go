package firewall_test

import (
	"context"
	"errors"
	"os"
	"regexp"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/nfqguard/nfqguard/firewall"
	"github.com/nfqguard/nfqguard/internal/netlab"
	"github.com/nfqguard/nfqguard/internal/netlab/netlabtest"
)

var spec = firewall.RuleSpec{FirstQueue: 0, Queues: 2, Mark: 0x10000000, BypassMark: 0x20000000, FastPath: true}

// in runs fn inside the lab's host namespace; iptables children inherit it.
func in(t *testing.T, l *netlab.Lab, fn func() error) {
	t.Helper()
	if err := l.Do(l.Host, fn); err != nil {
		t.Fatal(err)
	}
}

// save returns iptables-save (or ip6tables-save) output without counters
// and comments, to compare the firewall before and after.
func save(t *testing.T, l *netlab.Lab, bin string) string {
	t.Helper()
	out, err := l.Command(context.Background(), l.Host, bin).Output() // also from Cleanup
	if err != nil {
		t.Fatalf("%s: %v", bin, err)
	}
	counters := regexp.MustCompile(`\[\d+:\d+\]`)
	var keep []string
	for _, line := range strings.Split(string(out), "\n") {
		if !strings.HasPrefix(line, "#") {
			keep = append(keep, counters.ReplaceAllString(line, ""))
		}
	}
	return strings.Join(keep, "\n")
}

func chain(t *testing.T, l *netlab.Lab, bin, name string) []string {
	t.Helper()
	out, err := l.Command(t.Context(), l.Host, bin, "-w", "-S", name).Output()
	if err != nil {
		t.Fatalf("%s -S %s: %v", bin, name, err)
	}
	return strings.Split(strings.TrimSpace(string(out)), "\n")
}

func TestFirewallInstallReplaceRemove(t *testing.T) {
	l := netlabtest.New(t, netlab.Options{})
	before := save(t, l, "iptables-save")
	var fw *firewall.IPTables
	in(t, l, func() (err error) { fw, err = firewall.OpenIPTables(firewall.Options{}); return err })
	if got := fw.Families(); len(got) != 1 || !strings.Contains(got[0], "IPv4") || !strings.Contains(got[0], "(nft)") {
		t.Errorf("Families = %q, want one IPv4 nft family (the lab has no IPv6)", got)
	}
	if fw.HasIPv6() {
		t.Error("HasIPv6 without an IPv6 DOCKER-USER")
	}
	// Looking for Docker's chain must not instantiate legacy tables.
	in(t, l, func() error {
		for _, f := range []string{"ip_tables_names", "ip6_tables_names"} {
			if b, err := os.ReadFile("/proc/thread-self/net/" + f); err == nil && len(b) > 0 {
				t.Errorf("OpenIPTables created legacy tables (%s: %q)", f, b)
			}
		}
		return nil
	})
	// Twice, as a restart after a kill would: still exactly one of each.
	in(t, l, func() error { return fw.Install(spec) })
	in(t, l, func() error { return fw.Install(spec) })
	want := []string{
		"-N DOCKER-USER",
		"-A DOCKER-USER -m mark ! --mark 0x10000000/0x10000000 -m connmark ! --mark 0x20000000/0x20000000 -m comment --comment nfqguard-redirect -j NFQUEUE --queue-balance 0:1",
		"-A DOCKER-USER -m mark --mark 0x20000000/0x20000000 -m comment --comment nfqguard-fastpath -j CONNMARK --set-xmark 0x20000000/0x20000000",
		"-A DOCKER-USER -j RETURN",
	}
	if diff := cmp.Diff(want, chain(t, l, "iptables", "DOCKER-USER")); diff != "" {
		t.Errorf("DOCKER-USER after two installs (-want +got):\n%s", diff)
	}
	// A changed spec (a restart with other settings) replaces the old rules.
	other := spec
	other.Queues, other.FailOpen = 1, true
	in(t, l, func() error { return fw.Install(other) })
	var rules []string
	in(t, l, func() (err error) { rules, err = fw.Rules(); return err })
	if len(rules) != 2 || !strings.Contains(rules[0], "--queue-num 0 --queue-bypass") {
		t.Errorf("rules after reinstall = %q, want the new redirect and companion only", rules)
	}
	in(t, l, func() error { return fw.Remove() })
	if after := save(t, l, "iptables-save"); after != before {
		t.Errorf("firewall not restored after Remove:\n%s", cmp.Diff(before, after))
	}
}

func TestFirewallPerPacketHasNoCompanion(t *testing.T) {
	l := netlabtest.New(t, netlab.Options{})
	s := spec
	s.FastPath = false
	in(t, l, func() error {
		fw, err := firewall.OpenIPTables(firewall.Options{})
		if err != nil {
			return err
		}
		return fw.Install(s)
	})
	got := strings.Join(chain(t, l, "iptables", "DOCKER-USER"), "\n")
	if strings.Count(got, "NFQUEUE") != 1 || strings.Contains(got, "CONNMARK") {
		t.Errorf("per-packet mode: DOCKER-USER =\n%s\nwant one NFQUEUE rule and no CONNMARK rule", got)
	}
}

func TestFirewallUsesDockersBackend(t *testing.T) {
	// Docker's rules live in iptables-legacy here; a rule written with
	// iptables-nft would silently do nothing.
	l := netlabtest.New(t, netlab.Options{Backend: netlab.BackendLegacy})
	var fw *firewall.IPTables
	in(t, l, func() (err error) {
		fw, err = firewall.OpenIPTables(firewall.Options{})
		if err != nil {
			return err
		}
		return fw.Install(spec)
	})
	if got := fw.Families(); len(got) != 1 || !strings.Contains(got[0], "(legacy)") {
		t.Errorf("Families = %q, want the legacy backend", got)
	}
	if got := strings.Join(chain(t, l, "iptables-legacy", "DOCKER-USER"), "\n"); !strings.Contains(got, "nfqguard-redirect") {
		t.Errorf("legacy DOCKER-USER has no redirect:\n%s", got)
	}
	if out, err := l.Command(t.Context(), l.Host, "iptables-nft", "-w", "-S", "DOCKER-USER").CombinedOutput(); err == nil {
		t.Errorf("nft backend gained a DOCKER-USER chain:\n%s", out)
	}
	in(t, l, func() error { return fw.Remove() })
}

func TestFirewallMissingChain(t *testing.T) {
	l := netlabtest.New(t, netlab.Options{NoDockerUser: true})
	before := save(t, l, "iptables-save")
	in(t, l, func() error {
		_, err := firewall.OpenIPTables(firewall.Options{})
		if !errors.Is(err, firewall.ErrNoChain) {
			t.Errorf("OpenIPTables without DOCKER-USER: %v, want ErrNoChain", err)
		}
		if err != nil && !strings.Contains(err.Error(), "--create-chain") {
			t.Errorf("error does not mention --create-chain: %v", err)
		}
		return nil
	})
	if after := save(t, l, "iptables-save"); after != before {
		t.Fatalf("failed OpenIPTables changed the firewall:\n%s", cmp.Diff(before, after))
	}

	var fw *firewall.IPTables
	in(t, l, func() (err error) {
		fw, err = firewall.OpenIPTables(firewall.Options{CreateChain: true})
		if err != nil {
			return err
		}
		return fw.Install(spec)
	})
	fwd := chain(t, l, "iptables", "FORWARD")
	if len(fwd) < 2 || !strings.HasSuffix(fwd[1], "-j DOCKER-USER") {
		t.Errorf("FORWARD does not jump to DOCKER-USER first:\n%s", strings.Join(fwd, "\n"))
	}
	in(t, l, func() error { return fw.Remove() })
	if after := save(t, l, "iptables-save"); after != before {
		t.Errorf("created chain not removed:\n%s", cmp.Diff(before, after))
	}
}

func TestFirewallIPv6(t *testing.T) {
	l := netlabtest.New(t, netlab.Options{IPv6: true})
	var fw *firewall.IPTables
	in(t, l, func() (err error) {
		fw, err = firewall.OpenIPTables(firewall.Options{})
		if err != nil {
			return err
		}
		return fw.Install(spec)
	})
	if got := fw.Families(); len(got) != 2 || !fw.HasIPv6() {
		t.Errorf("Families = %q, HasIPv6 = %v; want IPv4 and IPv6", got, fw.HasIPv6())
	}
	for _, bin := range []string{"iptables", "ip6tables"} {
		got := strings.Join(chain(t, l, bin, "DOCKER-USER"), "\n")
		if strings.Count(got, "nfqguard-redirect") != 1 || strings.Count(got, "nfqguard-fastpath") != 1 {
			t.Errorf("%s DOCKER-USER:\n%s\nwant one redirect and one companion", bin, got)
		}
	}
	in(t, l, func() error { return fw.Remove() })
	if got := strings.Join(chain(t, l, "ip6tables", "DOCKER-USER"), "\n"); strings.Contains(got, "nfqguard") {
		t.Errorf("ip6tables rules left after Remove:\n%s", got)
	}
}
