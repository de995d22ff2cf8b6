package firewall_test

import (
	"context"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/nfqguard/nfqguard/firewall"
	"github.com/nfqguard/nfqguard/internal/netlab"
	"github.com/nfqguard/nfqguard/internal/netlab/netlabtest"
	"github.com/nfqguard/nfqguard/internal/netns"
)

// watched is the spec of the watch tests: the guard and the drops of
// packets without a connection are on, as run installs them by default.
var watched = func() firewall.RuleSpec {
	s := spec
	s.GuardMark, s.DropInvalid = 0x40000000, true
	return s
}()

// watcher is a lab whose firewall nfqguard watches; events holds what the
// watcher reported.
type watcher struct {
	t      *testing.T
	l      *netlab.Lab
	fw     *firewall.IPTables
	bin    string // the lab's iptables binary
	events chan firewall.Event
}

// startWatch installs watched's rules in a fresh lab of the given backend
// and watches them until the test ends; on the way out it checks that
// Remove leaves the firewall as it was before Install.
func startWatch(t *testing.T, backend string) *watcher {
	return startWatchIn(t, netlabtest.New(t, netlab.Options{Backend: backend}), backend, firewall.Options{})
}

// startWatchIn is startWatch in a lab of the caller's, with opts.
func startWatchIn(t *testing.T, l *netlab.Lab, backend string, opts firewall.Options) *watcher {
	w := &watcher{t: t, l: l, bin: "iptables", events: make(chan firewall.Event, 64)}
	if backend == netlab.BackendLegacy {
		w.bin = "iptables-legacy"
	}
	before := netns.WithoutEmptyTable(save(t, l, w.bin+"-save"), "mangle")
	in(t, l, func() (err error) {
		if w.fw, err = firewall.OpenIPTables(opts); err != nil {
			return err
		}
		return w.fw.Install(watched)
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		err := l.Do(l.Host, func() error {
			w.fw.Watch(ctx, watched, func(ev firewall.Event) { w.events <- ev })
			return nil
		})
		if err != nil {
			t.Errorf("watch in the lab: %v", err)
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		if err := l.Do(l.Host, w.fw.Remove); err != nil {
			t.Errorf("Remove: %v", err)
		}
		if after := netns.WithoutEmptyTable(save(t, l, w.bin+"-save"), "mangle"); after != before {
			t.Errorf("Remove after watching left the firewall changed:\n%s", cmp.Diff(before, after))
		}
		if backend == netlab.BackendNFT {
			// The guard's chains are gone, not left as empty hooks (the
			// restore of an old ruleset above made the others).
			out, err := l.Command(context.Background(), l.Host, "nft", "list", "table", "ip", "mangle").CombinedOutput()
			if err != nil || strings.Contains(string(out), "chain FORWARD") || strings.Contains(string(out), "chain POSTROUTING") {
				t.Errorf("nft list table ip mangle after Remove: %v\n%s\nwant no FORWARD or POSTROUTING chain", err, out)
			}
		}
	})
	w.waitHealth("the first look", func(h firewall.Health) bool { return h.Checks > 0 })
	return w
}

// with returns w reporting failures to t (a subtest).
func (w *watcher) with(t *testing.T) *watcher {
	c := *w
	c.t = t
	return &c
}

// run runs one iptables command of the lab's backend in its host.
func (w *watcher) run(args ...string) {
	w.t.Helper()
	if out, err := w.l.Command(w.t.Context(), w.l.Host, w.bin, append([]string{"-w"}, args...)...).CombinedOutput(); err != nil {
		w.t.Fatalf("%s %s: %v\n%s", w.bin, strings.Join(args, " "), err, out)
	}
}

// restoreScript feeds script to the backend's iptables-restore.
func (w *watcher) restoreScript(script string, args ...string) {
	w.t.Helper()
	cmd := w.l.Command(w.t.Context(), w.l.Host, w.bin+"-restore", args...)
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		w.t.Fatalf("%s-restore: %v\n%s", w.bin, err, out)
	}
}

// chain lists a chain of table as iptables -S prints it.
func (w *watcher) chain(table, name string) []string {
	w.t.Helper()
	out, err := w.l.Command(w.t.Context(), w.l.Host, w.bin, "-w", "-t", table, "-S", name).Output()
	if err != nil {
		w.t.Fatalf("%s -t %s -S %s: %v", w.bin, table, name, err)
	}
	return strings.Split(strings.TrimSpace(string(out)), "\n")
}

// waitEvent waits for an event that found kind and returns it.
func (w *watcher) waitEvent(kind string) firewall.Event {
	w.t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		select {
		case ev := <-w.events:
			if slices.Contains(ev.Found, kind) {
				w.t.Logf("%s: event %v (rule %q) put right in %v", kind, ev.Found, ev.Rule, ev.Took)
				return ev
			}
			w.t.Logf("event %v while waiting for %s", ev.Found, kind)
		case <-deadline:
			w.t.Fatalf("no %s event within 10s; health %+v", kind, w.fw.Health())
		}
	}
}

// waitEvents waits until events found every one of kinds, in one look
// or several, in any order.
func (w *watcher) waitEvents(kinds ...string) {
	w.t.Helper()
	missing := slices.Clone(kinds)
	deadline := time.After(10 * time.Second)
	for len(missing) > 0 {
		select {
		case ev := <-w.events:
			w.t.Logf("event %v (rule %q) put right in %v", ev.Found, ev.Rule, ev.Took)
			missing = slices.DeleteFunc(missing, func(k string) bool { return slices.Contains(ev.Found, k) })
		case <-deadline:
			w.t.Fatalf("no %v event within 10s; health %+v", missing, w.fw.Health())
		}
	}
}

// waitHealth waits until the watcher's health satisfies ok.
func (w *watcher) waitHealth(what string, ok func(firewall.Health) bool) firewall.Health {
	w.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		h := w.fw.Health()
		if ok(h) {
			return h
		}
		if time.Now().After(deadline) {
			w.t.Fatalf("%s: not within 10s; health %+v", what, h)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// waitRules waits until the chain of table satisfies ok.
func (w *watcher) waitRules(table, chain, what string, ok func([]string) bool) {
	w.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		rs := w.chain(table, chain)
		if ok(rs) {
			return
		}
		if time.Now().After(deadline) {
			w.t.Fatalf("%s: not within 10s; %s %s:\n%s", what, table, chain, strings.Join(rs, "\n"))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// checkOurs checks that the watched rules are each there once, nfqguard's
// at the top of DOCKER-USER, and the guard in mangle.
func (w *watcher) checkOurs() {
	w.t.Helper()
	du := w.chain("filter", "DOCKER-USER")
	want := []string{"nfqguard-redirect", "nfqguard-fastpath", "nfqguard-invalid", "nfqguard-untracked"}
	if len(du) < 1+len(want) {
		w.t.Fatalf("DOCKER-USER:\n%s\nwant %v at the top", strings.Join(du, "\n"), want)
	}
	for i, tag := range want {
		if !strings.Contains(du[1+i], "--comment "+tag+" ") || strings.Count(strings.Join(du, "\n"), tag) != 1 {
			w.t.Errorf("DOCKER-USER:\n%s\nwant %s once, as rule %d", strings.Join(du, "\n"), tag, i+1)
		}
	}
	for _, c := range []struct{ chain, tag string }{{"FORWARD", "nfqguard-guard "}, {"POSTROUTING", "nfqguard-guard-drop"}} {
		if rs := strings.Join(w.chain("mangle", c.chain), "\n"); strings.Count(rs, c.tag) != 1 {
			w.t.Errorf("mangle %s:\n%s\nwant %s once", c.chain, rs, c.tag)
		}
	}
}

func inPlace(h firewall.Health) bool { return h.InPlace && h.State == "in place" }

func TestWatchRestoresRedirect(t *testing.T) {
	for _, backend := range []string{netlab.BackendNFT, netlab.BackendLegacy} {
		t.Run(backend, func(t *testing.T) {
			w := startWatch(t, backend)
			h := w.fw.Health()
			if !h.Watching || !inPlace(h) {
				t.Fatalf("health after the first look: %+v, want watching and in place", h)
			}
			wantMethod := "poll every 200ms"
			if backend == netlab.BackendNFT {
				wantMethod = "nf_tables change events"
			}
			if !strings.HasPrefix(h.Method, wantMethod) {
				t.Errorf("method %q, want %q…", h.Method, wantMethod)
			}
			w.checkOurs()

			t.Run("flush", func(t *testing.T) {
				w := w.with(t)
				w.run("-F", "DOCKER-USER")
				w.waitEvent(firewall.EventRemoved)
				w.checkOurs()
				w.run("-A", "DOCKER-USER", "-j", "RETURN") // Docker's, flushed too
			})
			t.Run("mangle flush", func(t *testing.T) {
				w := w.with(t)
				w.run("-t", "mangle", "-F")
				w.waitEvent(firewall.EventGuardRemoved)
				w.checkOurs()
			})
			t.Run("duplicate", func(t *testing.T) {
				w := w.with(t)
				redirect := strings.Fields(strings.TrimPrefix(w.chain("filter", "DOCKER-USER")[1], "-A "))
				w.run(append([]string{"-A"}, redirect...)...)
				w.waitEvent(firewall.EventDuplicated)
				w.checkOurs()
			})
			t.Run("restore of an old ruleset", func(t *testing.T) {
				w := w.with(t)
				// A saved ruleset from before nfqguard: Docker's chains, none of ours.
				out, err := w.l.Command(t.Context(), w.l.Host, w.bin+"-save").Output()
				if err != nil {
					t.Fatal(err)
				}
				var old []string
				for _, line := range strings.Split(string(out), "\n") {
					if !strings.Contains(line, "nfqguard-") {
						old = append(old, line)
					}
				}
				w.restoreScript(strings.Join(old, "\n") + "\n")
				// iptables-nft-restore commits table by table: the watcher
				// may see the mangle table's change first.
				w.waitEvents(firewall.EventRemoved, firewall.EventGuardRemoved)
				w.checkOurs()
			})
			t.Run("jump missing", func(t *testing.T) {
				w := w.with(t)
				w.run("-D", "FORWARD", "-j", "DOCKER-USER")
				w.waitEvent(firewall.EventJumpMissing)
				fwd := w.chain("filter", "FORWARD")
				if len(fwd) < 2 || !strings.Contains(fwd[1], "nfqguard-jump") || !strings.HasSuffix(fwd[1], "-j DOCKER-USER") {
					t.Fatalf("FORWARD:\n%s\nwant nfqguard's jump to DOCKER-USER first", strings.Join(fwd, "\n"))
				}
				// Docker puts its jump back (as dockerd does on start): ours goes.
				w.run("-I", "FORWARD", "-j", "DOCKER-USER")
				w.waitRules("filter", "FORWARD", "our jump removed once Docker's is back", func(rs []string) bool {
					return !strings.Contains(strings.Join(rs, "\n"), "nfqguard-jump") && slices.Contains(rs, "-A FORWARD -j DOCKER-USER")
				})
				w.checkOurs()
			})
			t.Run("chain deleted", func(t *testing.T) {
				w := w.with(t)
				// In one transaction: one at a time, the watcher would put
				// the jump back before the chain can go.
				w.restoreScript("*filter\n-D FORWARD -j DOCKER-USER\n-F DOCKER-USER\n-X DOCKER-USER\nCOMMIT\n", "--noflush")
				w.waitEvents(firewall.EventChainRecreated, firewall.EventJumpMissing)
				w.checkOurs()
				w.run("-I", "FORWARD", "-j", "DOCKER-USER")
				w.waitRules("filter", "FORWARD", "our jump removed once Docker's is back", func(rs []string) bool {
					return !strings.Contains(strings.Join(rs, "\n"), "nfqguard-jump")
				})
				w.run("-A", "DOCKER-USER", "-j", "RETURN")
			})
			t.Run("shadowed", func(t *testing.T) {
				w := w.with(t)
				w.run("-I", "DOCKER-USER", "-s", "10.99.0.0/16", "-j", "ACCEPT")
				ev := w.waitEvent(firewall.EventShadowed)
				if ev.Rule != "-A DOCKER-USER -s 10.99.0.0/16 -j ACCEPT" {
					t.Errorf("shadowed by %q, want the operator's rule", ev.Rule)
				}
				h := w.waitHealth("state shadowed", func(h firewall.Health) bool { return h.State == "shadowed" })
				if h.InPlace || !strings.Contains(h.ShadowedBy, "-s 10.99.0.0/16 -j ACCEPT") {
					t.Errorf("health while shadowed: %+v", h)
				}
				// Not fought: the operator's rule stays first…
				if du := w.chain("filter", "DOCKER-USER"); du[1] != "-A DOCKER-USER -s 10.99.0.0/16 -j ACCEPT" {
					t.Errorf("the operator's rule was moved:\n%s", strings.Join(du, "\n"))
				}
				// …and the guard, which would drop what it accepts, is away.
				w.waitRules("mangle", "POSTROUTING", "guard away while shadowed", func(rs []string) bool {
					return !strings.Contains(strings.Join(rs, "\n"), "nfqguard-guard-drop")
				})
				select {
				case ev := <-w.events:
					t.Errorf("a second event for the same shadowing rule: %+v", ev)
				case <-time.After(3 * firewall.PollLegacy):
				}
				w.run("-D", "DOCKER-USER", "-s", "10.99.0.0/16", "-j", "ACCEPT")
				w.waitHealth("in place again", inPlace)
				w.waitRules("mangle", "POSTROUTING", "guard back", func(rs []string) bool {
					return strings.Contains(strings.Join(rs, "\n"), "nfqguard-guard-drop")
				})
				w.checkOurs()
			})
			h = w.fw.Health()
			for _, k := range []string{firewall.EventRemoved, firewall.EventDuplicated, firewall.EventChainRecreated,
				firewall.EventJumpMissing, firewall.EventShadowed, firewall.EventGuardRemoved} {
				if h.Events[k] == 0 {
					t.Errorf("health counts no %s event: %v", k, h.Events)
				}
			}
			if h.Events[firewall.EventRestoreFailed] != 0 || h.Last == nil || h.Total < 7 {
				t.Errorf("health after the disturbances: %+v", h)
			}
		})
	}
}
