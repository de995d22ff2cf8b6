package firewall_test

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/nfqguard/nfqguard/firewall"
	"github.com/nfqguard/nfqguard/internal/netlab"
	"github.com/nfqguard/nfqguard/internal/netlab/netlabtest"
)

// dockerNftLab is a lab whose Docker uses its nftables backend, as far as
// the firewall can tell: no DOCKER-USER and no FORWARD jump to one, and a
// table ip docker-bridges with Docker's filter-FORWARD base chain.
func dockerNftLab(t *testing.T) *netlab.Lab {
	t.Helper()
	l := netlabtest.New(t, netlab.Options{NoDockerUser: true})
	nft(t, l, "add table ip docker-bridges")
	nft(t, l, "add chain ip docker-bridges filter-FORWARD { type filter hook forward priority 0; policy accept; }")
	return l
}

// nft runs one nft command in the lab's host namespace.
func nft(t *testing.T, l *netlab.Lab, command string) string {
	t.Helper()
	cmd := l.Command(context.Background(), l.Host, "nft", "-f", "-")
	cmd.Stdin = strings.NewReader(command + "\n")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("nft %s: %v\n%s", command, err, out)
	}
	return string(out)
}

// ruleset returns `nft list ruleset` of the lab's host without counters.
func ruleset(t *testing.T, l *netlab.Lab) string {
	t.Helper()
	out, err := l.Command(context.Background(), l.Host, "nft", "-s", "list", "ruleset").Output()
	if err != nil {
		t.Fatalf("nft list ruleset: %v", err)
	}
	return string(out)
}

// TestFirewallNftablesHook: where Docker uses its nftables backend, auto
// hooks a chain of nfqguard's own in mangle, jumped to from mangle FORWARD
// (priority -150, before Docker's filter-FORWARD at 0), and never touches
// Docker's table; a redirect a killed run left in DOCKER-USER goes; Remove
// leaves the ruleset exactly as it was.
func TestFirewallNftablesHook(t *testing.T) {
	l := dockerNftLab(t)
	// A killed run of an older setting left its redirect in a DOCKER-USER
	// (made here, empty, before the snapshot).
	run(t, l, "iptables", "-w", "-N", "DOCKER-USER")
	before := ruleset(t, l)
	run(t, l, "iptables", "-w", "-I", "DOCKER-USER", "-m", "comment", "--comment", "nfqguard-redirect", "-j", "NFQUEUE", "--queue-num", "9")

	var fw *firewall.IPTables
	in(t, l, func() (err error) { fw, err = firewall.OpenIPTables(firewall.Options{}); return err })
	if got := fw.Families(); len(got) != 1 || !strings.Contains(got[0], "mangle NFQGUARD") {
		t.Fatalf("Families = %q, want IPv4 hooked at mangle NFQGUARD", got)
	}
	in(t, l, func() error { return fw.Install(spec) })
	in(t, l, func() error { return fw.Install(spec) })
	want := []string{
		"-N NFQGUARD",
		"-A NFQGUARD -m mark ! --mark 0x10000000/0x10000000 -m connmark ! --mark 0x20000000/0x20000000 -m comment --comment nfqguard-redirect -j NFQUEUE --queue-balance 0:1",
		"-A NFQGUARD -m mark --mark 0x20000000/0x20000000 -m comment --comment nfqguard-fastpath -j CONNMARK --set-xmark 0x20000000/0x20000000",
	}
	if diff := cmp.Diff(want, mangleChain(t, l, "NFQGUARD")); diff != "" {
		t.Errorf("mangle NFQGUARD after two installs (-want +got):\n%s", diff)
	}
	fwd := mangleChain(t, l, "FORWARD")
	if n := strings.Count(strings.Join(fwd, "\n"), "-j NFQGUARD"); n != 1 || !strings.HasSuffix(fwd[1], "-j NFQGUARD") {
		t.Errorf("mangle FORWARD:\n%s\nwant one jump to NFQGUARD, first", strings.Join(fwd, "\n"))
	}
	if got := strings.Join(chain(t, l, "iptables", "DOCKER-USER"), "\n"); strings.Contains(got, "nfqguard") {
		t.Errorf("the old run's redirect is still in DOCKER-USER:\n%s", got)
	}
	rs := ruleset(t, l)
	if !strings.Contains(rs, "type filter hook forward priority mangle") {
		t.Errorf("no mangle FORWARD base chain (priority -150) in the ruleset:\n%s", rs)
	}
	docker := func(rs string) string {
		_, after, _ := strings.Cut(rs, "table ip docker-bridges {")
		block, _, _ := strings.Cut(after, "\n}\n")
		return block
	}
	if docker(rs) != docker(before) {
		t.Errorf("Docker's table changed:\n%s", cmp.Diff(docker(before), docker(rs)))
	}
	in(t, l, func() error {
		if rules, err := fw.Rules(); err != nil || len(rules) != 2 {
			t.Errorf("Rules = %q, %v; want the redirect and the companion", rules, err)
		}
		return nil
	})

	in(t, l, func() error { return fw.Remove() })
	// iptables-nft cannot delete a table: an empty one stays, and hooks
	// nothing (no chain, so no base chain).
	if after := strings.Replace(ruleset(t, l), "table ip mangle {\n}\n", "", 1); after != before {
		t.Errorf("Remove left the ruleset changed:\n%s", cmp.Diff(before, after))
	}
}

// TestFirewallNftablesChoice: the backend setting and Docker's answer
// decide the hook; insisting on iptables where Docker uses nftables fails
// before anything is written.
func TestFirewallNftablesChoice(t *testing.T) {
	l := dockerNftLab(t)
	before := ruleset(t, l)
	in(t, l, func() error {
		_, err := firewall.OpenIPTables(firewall.Options{Backend: firewall.BackendIPTables})
		if !errors.Is(err, firewall.ErrDockerNftables) {
			t.Errorf("Backend iptables where Docker uses nftables: %v, want ErrDockerNftables", err)
		}
		return nil
	})
	if after := ruleset(t, l); after != before {
		t.Errorf("a refused start changed the ruleset:\n%s", cmp.Diff(before, after))
	}

	// A host whose Docker uses iptables: forced nftables hooks NFQGUARD
	// anyway, and Docker saying nftables does too.
	ipt := netlabtest.New(t, netlab.Options{})
	for _, o := range []firewall.Options{{Backend: firewall.BackendNftables}, {DockerBackend: firewall.BackendNftables}, {}} {
		var fw *firewall.IPTables
		in(t, ipt, func() (err error) { fw, err = firewall.OpenIPTables(o); return err })
		wantHook := "mangle NFQGUARD"
		if o.Backend == "" && o.DockerBackend == "" {
			wantHook = "filter DOCKER-USER"
		}
		if got := fw.Families(); len(got) != 1 || !strings.Contains(got[0], wantHook) {
			t.Errorf("%+v: Families = %q, want %s", o, got, wantHook)
		}
	}
}

// TestFirewallNftablesWatch: the watcher puts the own chain back after a
// flush of it, of the whole mangle table, and after the chain is deleted.
func TestFirewallNftablesWatch(t *testing.T) {
	w := startWatchIn(t, dockerNftLab(t), netlab.BackendNFT, firewall.Options{})
	w.checkNftHook()
	w.run("-t", "mangle", "-F", "NFQGUARD")
	if ev := w.waitEvent(firewall.EventRemoved); ev.Took <= 0 {
		t.Errorf("event %+v: no restore time", ev)
	}
	w.waitHealth("in place after the flush of NFQGUARD", inPlace)
	w.checkNftHook()
	// In one transaction: between two commands the watcher may put the
	// jump back, and the chain could not be deleted.
	w.restoreScript("*mangle\n-F\n-X NFQGUARD\nCOMMIT\n", "--noflush")
	w.waitEvents(firewall.EventChainRecreated, firewall.EventJumpMissing)
	w.waitHealth("in place after mangle was emptied", inPlace)
	w.checkNftHook()
}

// checkNftHook checks one redirect first in NFQGUARD and one jump to it.
func (w *watcher) checkNftHook() {
	w.t.Helper()
	w.waitRules("mangle", "NFQGUARD", "one redirect, first", func(rs []string) bool {
		return len(rs) > 1 && strings.Contains(rs[1], "nfqguard-redirect") &&
			strings.Count(strings.Join(rs, "\n"), "nfqguard-redirect") == 1
	})
	w.waitRules("mangle", "FORWARD", "one jump to NFQGUARD", func(rs []string) bool {
		return slices.ContainsFunc(rs, func(r string) bool { return strings.HasSuffix(r, "-j NFQGUARD") }) &&
			strings.Count(strings.Join(rs, "\n"), "-j NFQGUARD") == 1
	})
}

// run runs a command in the lab's host namespace.
func run(t *testing.T, l *netlab.Lab, name string, args ...string) {
	t.Helper()
	if out, err := l.Command(context.Background(), l.Host, name, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
}

// mangleChain lists a chain of the mangle table as iptables -S prints it.
func mangleChain(t *testing.T, l *netlab.Lab, name string) []string {
	t.Helper()
	out, err := l.Command(context.Background(), l.Host, "iptables", "-w", "-t", "mangle", "-S", name).Output()
	if err != nil {
		t.Fatalf("iptables -t mangle -S %s: %v", name, err)
	}
	return strings.Split(strings.TrimSpace(string(out)), "\n")
}

// TestFirewallFollowsDockerBackend: Docker restarted with the other
// firewall backend under a running watcher: with auto, the redirect moves
// to the new backend's hook and leaves the old one; back again after the
// switch back. With a setting that insists, it stays and the mismatch is
// reported.
func TestFirewallFollowsDockerBackend(t *testing.T) {
	w := startWatchIn(t, netlabtest.New(t, netlab.Options{}), netlab.BackendNFT, firewall.Options{})
	toNftables := func() {
		w.run("-D", "FORWARD", "-j", "DOCKER-USER")
		nft(t, w.l, "add table ip docker-bridges")
	}
	toIPTables := func() {
		nft(t, w.l, "delete table ip docker-bridges")
		w.run("-I", "FORWARD", "1", "-j", "DOCKER-USER")
	}
	toNftables()
	if ev := w.waitEvent(firewall.EventBackendChanged); ev.Moved != "filter DOCKER-USER -> mangle NFQGUARD" {
		t.Errorf("event %+v: want moved filter DOCKER-USER -> mangle NFQGUARD", ev)
	}
	w.checkNftHook()
	w.waitRules("filter", "DOCKER-USER", "no rule of nfqguard's", func(rs []string) bool { return !strings.Contains(strings.Join(rs, "\n"), "nfqguard") })
	w.waitRules("filter", "FORWARD", "no jump of nfqguard's", func(rs []string) bool { return !strings.Contains(strings.Join(rs, "\n"), "nfqguard") })
	if h := w.waitHealth("in place at mangle NFQGUARD", inPlace); !strings.Contains(strings.Join(h.Hooks, ";"), "mangle NFQGUARD") {
		t.Errorf("Health.Hooks = %q, want mangle NFQGUARD", h.Hooks)
	}

	toIPTables()
	if ev := w.waitEvent(firewall.EventBackendChanged); ev.Moved != "mangle NFQGUARD -> filter DOCKER-USER" {
		t.Errorf("event %+v: want moved mangle NFQGUARD -> filter DOCKER-USER", ev)
	}
	w.waitRules("filter", "DOCKER-USER", "one redirect, first", func(rs []string) bool {
		return len(rs) > 1 && strings.Contains(rs[1], "nfqguard-redirect")
	})
	w.waitHealth("in place at filter DOCKER-USER", func(h firewall.Health) bool {
		return inPlace(h) && strings.Contains(strings.Join(h.Hooks, ";"), "filter DOCKER-USER")
	})
	if out, err := w.l.IPTables(context.Background(), "-t", "mangle", "-S", "NFQGUARD"); err == nil {
		t.Errorf("NFQGUARD left after the move back:\n%s", out)
	}

	t.Run("both tables: Docker's word decides", func(t *testing.T) {
		var says atomic.Pointer[string]
		word := func(b string) { says.Store(&b) }
		word(firewall.BackendIPTables)
		w := startWatchIn(t, netlabtest.New(t, netlab.Options{}), netlab.BackendNFT,
			firewall.Options{DockerSays: func() string { return *says.Load() }})
		// Docker restarted with nftables leaves its iptables rules: both
		// backends' tables are there. While Docker says iptables, nothing
		// moves.
		nft(t, w.l, "add table ip docker-bridges")
		w.waitHealth("a look after docker-bridges appeared", func(h firewall.Health) bool { return h.Checks > 2 })
		if h := w.fw.Health(); !strings.Contains(strings.Join(h.Hooks, ";"), "filter DOCKER-USER") || h.Events[firewall.EventBackendChanged] != 0 {
			t.Fatalf("with both tables and Docker saying iptables: %+v", h)
		}
		word(firewall.BackendNftables)
		nft(t, w.l, "add table ip poke") // any nf_tables change wakes the watcher
		if ev := w.waitEvent(firewall.EventBackendChanged); ev.Moved != "filter DOCKER-USER -> mangle NFQGUARD" {
			t.Errorf("event %+v: want moved filter DOCKER-USER -> mangle NFQGUARD", ev)
		}
		w.checkNftHook()
		word(firewall.BackendIPTables)
		nft(t, w.l, "delete table ip poke")
		if ev := w.waitEvent(firewall.EventBackendChanged); ev.Moved != "mangle NFQGUARD -> filter DOCKER-USER" {
			t.Errorf("event %+v: want moved back", ev)
		}
		w.waitHealth("in place at DOCKER-USER", inPlace)
		nft(t, w.l, "delete table ip docker-bridges")
	})

	t.Run("insisting", func(t *testing.T) {
		w := startWatchIn(t, netlabtest.New(t, netlab.Options{}), netlab.BackendNFT, firewall.Options{Backend: firewall.BackendIPTables})
		w.run("-D", "FORWARD", "-j", "DOCKER-USER")
		nft(t, w.l, "add table ip docker-bridges")
		if ev := w.waitEvent(firewall.EventBackendMismatch); !strings.Contains(ev.Mismatch, "Docker uses nftables") {
			t.Errorf("event %+v: want the mismatch named", ev)
		}
		w.waitHealth("backend mismatch", func(h firewall.Health) bool {
			return h.State == "backend mismatch" && strings.Contains(h.Mismatch, "IPv4: Docker uses nftables")
		})
		// The redirect stays where the setting puts it, reached again.
		w.waitRules("filter", "DOCKER-USER", "one redirect, first", func(rs []string) bool {
			return len(rs) > 1 && strings.Contains(rs[1], "nfqguard-redirect")
		})
		nft(t, w.l, "delete table ip docker-bridges")
		w.run("-I", "FORWARD", "1", "-j", "DOCKER-USER")
	})
}
