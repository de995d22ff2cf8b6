package firewall

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// watchSpec is the spec of the golden listings: two queues, the fast
// path, the INVALID drops and the guard, default marks.
var watchSpec = RuleSpec{FirstQueue: 0, Queues: 2, Mark: 0x10000000, BypassMark: 0x20000000, FastPath: true,
	GuardMark: 0x40000000, DropInvalid: true}

// readListing splits a golden file into its filter and mangle tables, as
// `iptables -t T -S -v` prints them. A first line "# was-shadowed" says the
// previous look found a shadowing rule.
func readListing(t *testing.T, path string) (filter, mangle *table, wasShadowed bool) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	parts := map[string]*strings.Builder{"filter": {}, "mangle": {}}
	cur := ""
	for _, line := range strings.Split(string(b), "\n") {
		switch {
		case line == "# was-shadowed":
			wasShadowed = true
		case strings.HasPrefix(line, "*"):
			cur = line[1:]
		case cur != "":
			parts[cur].WriteString(line + "\n")
		}
	}
	if filter, err = parseTable(parts["filter"].String()); err != nil {
		t.Fatalf("%s: filter: %v", path, err)
	}
	if mangle, err = parseTable(parts["mangle"].String()); err != nil {
		t.Fatalf("%s: mangle: %v", path, err)
	}
	return filter, mangle, wasShadowed
}

// applyScript runs an iptables-restore --noflush transaction on a table in
// memory, as iptables does: ":C - [0:0]" creates (or flushes) a chain, -I
// inserts at a position, -D deletes the first rule with exactly these
// arguments and fails when there is none.
func applyScript(tb *table, lines []string) error {
	for _, line := range lines {
		w, err := splitWords(line)
		if err != nil {
			return err
		}
		switch {
		case strings.HasPrefix(line, ":"):
			tb.chains[strings.Fields(line)[0][1:]] = nil
		case w[0] == "-X":
			if len(tb.chains[w[1]]) > 0 {
				return fmt.Errorf("%q: chain not empty", line)
			}
			for _, rs := range tb.chains {
				for _, r := range rs {
					if tgt, _ := r.target(); tgt == w[1] {
						return fmt.Errorf("%q: chain still referenced by %s", line, r.line)
					}
				}
			}
			delete(tb.chains, w[1])
		case w[0] == "-I":
			if !tb.has(w[1]) {
				return fmt.Errorf("%q: no chain", line)
			}
			pos, err := strconv.Atoi(w[2])
			if err != nil || pos < 1 || pos > len(tb.chains[w[1]])+1 {
				return fmt.Errorf("%q: bad position", line)
			}
			r := listedRule{chain: w[1], args: w[3:], line: "-A " + w[1] + " " + joinWords(w[3:])}
			tb.chains[w[1]] = slices.Insert(tb.chains[w[1]], pos-1, r)
		case w[0] == "-D":
			i := slices.IndexFunc(tb.chains[w[1]], func(r listedRule) bool { return slices.Equal(r.args, w[2:]) })
			if i < 0 {
				return fmt.Errorf("%q: no such rule", line)
			}
			tb.chains[w[1]] = slices.Delete(tb.chains[w[1]], i, i+1)
		default:
			return fmt.Errorf("%q: not a command reconcile should write", line)
		}
	}
	return nil
}

// render prints what reconcile decided, for the golden files.
func render(h hook, f finding) string {
	var b strings.Builder
	fmt.Fprintf(&b, "events: %s\n", strings.Join(f.events, " "))
	fmt.Fprintf(&b, "shadow: %s\n", f.shadow)
	for _, tag := range slices.Sorted(maps.Keys(f.counts)) {
		fmt.Fprintf(&b, "count %s: %d\n", tag, f.counts[tag])
	}
	b.WriteString(script(h.table, f.hook))
	b.WriteString(script(mangleTable, f.mangle))
	return b.String()
}

// TestReconcileGolden: on each golden listing (Docker 20.10 and 29 layouts,
// after a flush, a restore of an old ruleset, a duplicate, a deleted chain
// or jump, a shadowing rule, a flushed guard; in testdata/watch for the
// DOCKER-USER hook, in testdata/watch-nft for nfqguard's own NFQGUARD chain
// in mangle), the watcher finds the events and writes the scripts in the
// .golden files. Applying the scripts leaves exactly one of each of
// nfqguard's rules, the redirect first in the hook's chain, a jump to it in
// FORWARD, and a second look that finds nothing to do and no new event.
func TestReconcileGolden(t *testing.T) {
	for _, c := range []struct {
		dir   string
		h     hook
		least int
	}{{"watch", dockerUserHook, 10}, {"watch-nft", nftablesHook, 7}} {
		files, err := filepath.Glob(filepath.Join("testdata", c.dir, "*.rules"))
		if err != nil || len(files) < c.least {
			t.Fatalf("golden listings: %v, %d files", err, len(files))
		}
		for _, path := range files {
			name := c.dir + "/" + strings.TrimSuffix(filepath.Base(path), ".rules")
			t.Run(name, func(t *testing.T) {
				filter, mangle, was := readListing(t, path)
				hooked := filter
				if c.h.table == mangleTable {
					hooked = mangle
				}
				f := reconcile(c.h, hooked, mangle, watchSpec, modeWatch, was)
				got := render(c.h, f)
				golden := strings.TrimSuffix(path, ".rules") + ".golden"
				if *update {
					if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
						t.Fatal(err)
					}
				}
				want, err := os.ReadFile(golden)
				if err != nil {
					t.Fatalf("%v (run with -update to create it)", err)
				}
				if diff := cmp.Diff(string(want), got); diff != "" {
					t.Errorf("reconcile of %s (-want +got):\n%s", path, diff)
				}
				if err := applyScript(hooked, f.hook); err != nil {
					t.Fatalf("hook script: %v", err)
				}
				if err := applyScript(mangle, f.mangle); err != nil {
					t.Fatalf("mangle script: %v", err)
				}
				requireInstalled(t, c.h, hooked, mangle, f.shadow != "")
				again := reconcile(c.h, hooked, mangle, watchSpec, modeWatch, f.shadow != "")
				if again.shadow != f.shadow || len(again.hook)+len(again.mangle) > 0 ||
					slices.ContainsFunc(again.events, func(k string) bool { return k != EventShadowed }) {
					t.Errorf("second look is not quiet:\n%s", render(c.h, again))
				}
			})
		}
	}
}

// requireInstalled checks that the tables hold exactly one of each rule of
// watchSpec, the redirect above every rule that is not the operator's, a
// jump to the hook's chain, and the guard unless a rule shadows the
// redirect.
func requireInstalled(t *testing.T, h hook, hooked, mangle *table, shadowed bool) {
	t.Helper()
	for _, r := range watchSpec.hookRules(h) {
		if n := count(hooked.chains[h.chain], r.tag); n != 1 {
			t.Errorf("%d rules tagged %s in %s, want 1", n, r.tag, h)
		}
	}
	if i := slices.IndexFunc(hooked.chains[h.chain], func(r listedRule) bool { return tagOf(r.args) != "" }); i < 0 ||
		tagOf(hooked.chains[h.chain][i].args) != commentRedirect {
		t.Errorf("the first rule of nfqguard's in %s is not the redirect", h)
	}
	wantGuard := 1
	if shadowed {
		wantGuard = 0
	}
	for _, r := range watchSpec.guardRules() {
		if n := count(mangle.chains[r.chain], r.tag); n != wantGuard {
			t.Errorf("%d rules tagged %s in mangle %s, want %d", n, r.tag, r.chain, wantGuard)
		}
	}
	// One jump (Docker's or nfqguard's), or nfqguard's at the top while
	// Docker's is below a Docker chain that accepts; the first jump before
	// any such chain.
	jumps, ours, first, dockerAccepts := 0, 0, -1, -1
	for i, r := range hooked.chains[forwardChain] {
		tgt, _ := r.target()
		switch {
		case tgt == h.chain:
			jumps++
			if tagOf(r.args) == commentJump {
				ours++
			}
			if first < 0 {
				first = i
			}
		case dockerAccepts < 0 && strings.HasPrefix(tgt, "DOCKER") && accepts(hooked, tgt, map[string]bool{}):
			dockerAccepts = i
		}
	}
	if jumps == 0 || ours > 1 || (jumps > 1 && ours != 1) || (dockerAccepts >= 0 && first > dockerAccepts) {
		t.Errorf("%d jumps from %s FORWARD to %s (%d of nfqguard's), the first at %d, a Docker chain that accepts at %d: "+
			"want one, or nfqguard's first while Docker's is misplaced", jumps, h.table, h.chain, ours, first, dockerAccepts)
	}
}

// TestReconcileInstallRemove: installing over what a killed run left
// (other settings, duplicates) ends with exactly the new rules, and
// removing leaves none of nfqguard's rules and everything else as it was.
func TestReconcileInstallRemove(t *testing.T) {
	for _, name := range []string{"clean", "duplicated", "flushed", "jump-missing", "docker29-clean", "not-shadowed-drop-and-log"} {
		t.Run(name, func(t *testing.T) {
			filter, mangle, _ := readListing(t, filepath.Join("testdata", "watch", name+".rules"))
			other := RuleSpec{FirstQueue: 7, Queues: 1, Mark: 0x1, BypassMark: 0x2, GuardMark: 0x4, DropInvalid: true}
			for _, spec := range []RuleSpec{other, watchSpec} {
				f := reconcile(dockerUserHook, filter, mangle, spec, modeInstall, false)
				if len(f.events) > 0 {
					t.Errorf("install reports events %q", f.events)
				}
				if err := errorsOf(applyScript(filter, f.hook), applyScript(mangle, f.mangle)); err != nil {
					t.Fatal(err)
				}
				if got := filter.chains[dockerUserChain][0].args; !slices.Equal(got, spec.redirect()) {
					t.Errorf("first rule of DOCKER-USER after install: %q, want the redirect %q", got, spec.redirect())
				}
			}
			requireInstalled(t, dockerUserHook, filter, mangle, false)
			before, beforeMangle, _ := readListing(t, filepath.Join("testdata", "watch", name+".rules"))
			f := reconcile(dockerUserHook, filter, mangle, RuleSpec{}, modeRemove, false)
			if err := errorsOf(applyScript(filter, f.hook), applyScript(mangle, f.mangle)); err != nil {
				t.Fatal(err)
			}
			strip := func(tb *table) map[string][]string {
				out := map[string][]string{}
				for c, rs := range tb.chains {
					out[c] = []string{}
					for _, r := range rs {
						if tag := tagOf(r.args); tag == "" || tag == commentCreated {
							out[c] = append(out[c], r.line)
						}
					}
				}
				return out
			}
			if diff := cmp.Diff(strip(before), strip(filter)); diff != "" {
				t.Errorf("filter after remove differs from before, ignoring nfqguard's rules (-before +after):\n%s", diff)
			}
			for c, rs := range filter.chains {
				for _, r := range rs {
					if tagOf(r.args) != "" {
						t.Errorf("after remove, %s still holds %s", c, r.line)
					}
				}
			}
			if diff := cmp.Diff(strip(beforeMangle), strip(mangle)); diff != "" {
				t.Errorf("mangle after remove (-before +after):\n%s", diff)
			}
		})
	}
}

func errorsOf(errs ...error) error {
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

// TestReconcileScriptsHoldNoForeignWords: over random listings that mix
// Docker's rules, the operator's (with quoted, spaced words) and nfqguard's
// in random order and number, every line reconcile writes is a chain
// creation of DOCKER-USER, an insert of one of the spec's own rules, or a
// delete of a rule it read that carries an nfqguard tag: never anything
// that could touch a rule of someone else's.
func TestReconcileScriptsHoldNoForeignWords(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	filter, mangle, _ := readListing(t, filepath.Join("testdata", "watch", "not-shadowed-drop-and-log.rules"))
	pool := append(slices.Clone(filter.chains[dockerUserChain]), filter.chains[forwardChain]...)
	pool = append(pool, mangle.chains[forwardChain]...)
	pool = append(pool, mangle.chains[postroutingChain]...)
	pool = append(pool, listedRule{chain: dockerUserChain, args: []string{"-m", "comment", "--comment", `x" -j ACCEPT`, "-j", "ACCEPT"}})
	for range 2000 {
		spec := watchSpec
		spec.FastPath, spec.DropInvalid, spec.FailOpen = rng.IntN(2) == 0, rng.IntN(2) == 0, rng.IntN(4) == 0
		f, m := &table{chains: map[string][]listedRule{forwardChain: nil}}, &table{chains: map[string][]listedRule{forwardChain: nil, postroutingChain: nil}}
		if rng.IntN(5) > 0 {
			f.chains[dockerUserChain] = nil
		}
		for range rng.IntN(12) {
			r := pool[rng.IntN(len(pool))]
			tb := f
			if tagOf(r.args) == commentGuard || tagOf(r.args) == commentGuardDrop {
				tb = m
			}
			if tb.has(r.chain) {
				tb.chains[r.chain] = append(tb.chains[r.chain], r)
			}
		}
		allowed := map[string]bool{":" + dockerUserChain + " - [0:0]": true}
		for _, r := range append(append(spec.hookRules(dockerUserHook), spec.guardRules()...), jumpRule(dockerUserHook)) {
			for pos := 1; pos <= 4; pos++ {
				allowed[insertLine(r, pos)] = true
			}
		}
		for _, tb := range []*table{f, m} {
			for _, rs := range tb.chains {
				for _, r := range rs {
					if tagOf(r.args) != "" {
						allowed[deleteLine(r)] = true
					}
				}
			}
		}
		for _, md := range []mode{modeWatch, modeInstall, modeRemove} {
			fd := reconcile(dockerUserHook, f, m, spec, md, rng.IntN(2) == 0)
			for _, line := range append(fd.hook, fd.mangle...) {
				if !allowed[line] {
					t.Fatalf("mode %d, spec %+v: reconcile wrote %q, which is neither one of its rules nor a delete of one", md, spec, line)
				}
			}
		}
	}
}

func TestSplitWordsRoundTrip(t *testing.T) {
	for _, line := range []string{
		`-A DOCKER-USER -m comment --comment "block \"bad\" net" -j DROP`,
		`-A AUDIT -j LOG --log-prefix "audit: "`,
		`-A X -m comment --comment "a\\b" -j RETURN`,
	} {
		w, err := splitWords(line)
		if err != nil {
			t.Fatal(err)
		}
		if got := joinWords(w); got != line {
			t.Errorf("joinWords(splitWords(%q)) = %q", line, got)
		}
	}
	if _, err := splitWords(`-A X -m comment --comment "open`); err == nil {
		t.Error("an unterminated quote was accepted")
	}
}
