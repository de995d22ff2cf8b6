package firewall

import (
	"fmt"
	"strconv"
	"strings"
)

// Event kinds: what the watcher found wrong with the redirect. They label
// nfqguard_redirect_events_total.
const (
	// EventRemoved: a rule of nfqguard's was gone from its chain (a flush,
	// a restore of a ruleset without it, a delete).
	EventRemoved = "removed"
	// EventDuplicated: a rule of nfqguard's was there more than once.
	EventDuplicated = "duplicated"
	// EventChainRecreated: the redirect's chain (DOCKER-USER, or
	// nfqguard's NFQGUARD) was gone; nfqguard created it again.
	EventChainRecreated = "chain_recreated"
	// EventJumpMissing: FORWARD no longer jumped to the redirect's chain;
	// nfqguard inserted its own jump (until Docker's is back, for
	// DOCKER-USER).
	EventJumpMissing = "jump_missing"
	// EventJumpMisplaced: Docker's FORWARD jump to DOCKER-USER was below a
	// jump of Docker's own that accepts (DOCKER-FORWARD); nfqguard
	// inserted its own jump at the top until Docker's is first again.
	EventJumpMisplaced = "jump_misplaced"
	// EventShadowed: a rule above the redirect (in DOCKER-USER, or above
	// the jump to it in FORWARD) may end the walk before the redirect for
	// some traffic. It is reported, not removed.
	EventShadowed = "shadowed"
	// EventGuardRemoved: a rule of the guard (mangle table) was gone.
	EventGuardRemoved = "guard_removed"
	// EventRestoreFailed: nfqguard could not put its rules back.
	EventRestoreFailed = "restore_failed"
	// EventBackendChanged: Docker changed firewall backend (restarted with
	// the other firewall-backend); nfqguard moved its redirect to the
	// hook of the new one (Event.Moved).
	EventBackendChanged = "backend_changed"
	// EventBackendMismatch: Docker uses the other firewall backend than
	// the one [engine] firewall insists on. The redirect stays where the
	// setting puts it, and is reported, not moved.
	EventBackendMismatch = "backend_mismatch"
)

// EventKinds lists every event kind, for metrics that start at zero.
var EventKinds = []string{EventRemoved, EventDuplicated, EventChainRecreated, EventJumpMissing, EventJumpMisplaced,
	EventShadowed, EventGuardRemoved, EventRestoreFailed, EventBackendChanged, EventBackendMismatch}

// finding is what one look at a family's tables found.
type finding struct {
	events []string // in EventKinds order
	shadow string   // the first rule that may end the walk before the redirect
	// hook and mangle put things right (empty: nothing to do): for the
	// hook's table and the mangle table, each one iptables-restore
	// transaction (two on mangle when the hook is there too).
	hook, mangle []string
	counts       map[string]uint64 // packets counted by our rules, by tag
}

// mode is what reconcile makes of the tables.
type mode int

const (
	modeWatch   mode = iota // keep exactly one of each rule; report
	modeInstall             // replace every rule of ours with fresh ones
	modeRemove              // delete every rule of ours
)

// reconcile compares a family's tables with what spec wants in hook h and
// returns what is wrong and the scripts that fix it. hooked is the listing
// of h's table (the same *table as mangle when h is in mangle).
// wasShadowed says the guard was taken away on purpose at the last look
// (a shadowing rule), so that its absence is not an event. It is pure: the
// watcher's decisions are tested on golden listings.
func reconcile(h hook, hooked, mangle *table, spec RuleSpec, m mode, wasShadowed bool) finding {
	f := finding{counts: map[string]uint64{}}
	ev := map[string]bool{}
	chainMissing := !hooked.has(h.chain)
	if chainMissing && m != modeRemove {
		ev[EventChainRecreated] = true
		f.hook = append(f.hook, ":"+h.chain+" - [0:0]")
	}
	tables := []*table{hooked}
	if mangle != hooked {
		tables = append(tables, mangle)
	}
	for _, t := range tables {
		for _, rules := range t.chains {
			for _, r := range rules {
				if tag := tagOf(r.args); tag != "" {
					f.counts[tag] += r.packets
				}
			}
		}
	}

	// The hook's chain: exactly one of each wanted rule, or (re)write them
	// all in one transaction: delete every one found, insert fresh ones at
	// the top. The transaction is atomic, so the chain never lacks a
	// redirect.
	want := spec.hookRules(h)
	if m == modeRemove {
		want = nil
	}
	found := ours(hooked, h.chain)
	rewrite := m != modeWatch
	wanted := map[string]bool{}
	for _, w := range want {
		wanted[w.tag] = true
		switch n := count(found, w.tag); {
		case n == 0 && !chainMissing:
			ev[EventRemoved], rewrite = true, true
		case n == 0:
			rewrite = true
		case n > 1:
			ev[EventDuplicated], rewrite = true, true
		}
	}
	for _, r := range found {
		if !wanted[tagOf(r.args)] {
			rewrite = true // a rule this spec does not have (another run's settings)
		}
	}
	if rewrite {
		for _, r := range found {
			f.hook = append(f.hook, deleteLine(r))
		}
		for i, w := range want {
			f.hook = append(f.hook, insertLine(w, i+1))
		}
	}

	// The FORWARD jump to the hook's chain: Docker's, or nfqguard's while
	// Docker's is missing or below a jump of Docker's own that accepts
	// (Docker 29 started again over a DOCKER-USER jump it left puts
	// DOCKER-FORWARD above it, as moby/moby#48560); always nfqguard's to a
	// chain of its own.
	var jumps, ourJumps []listedRule
	firstDocker, firstOurs, acceptingAbove := -1, -1, -1
	for i, r := range hooked.chains[forwardChain] {
		tgt, _ := r.target()
		switch {
		case tgt == h.chain && tagOf(r.args) == commentJump:
			ourJumps = append(ourJumps, r)
			if firstOurs < 0 {
				firstOurs = i
			}
		case tgt == h.chain:
			jumps = append(jumps, r)
			if firstDocker < 0 {
				firstDocker = i
			}
		case acceptingAbove < 0 && !h.own && strings.HasPrefix(tgt, "DOCKER") && hooked.has(tgt) && accepts(hooked, tgt, map[string]bool{}):
			acceptingAbove = i
		}
	}
	below := func(i int) bool { return acceptingAbove >= 0 && i > acceptingAbove }
	misplaced := len(jumps) > 0 && below(firstDocker)
	keepOurs, insertedJump := 0, false
	if m != modeRemove && (len(jumps) == 0 || misplaced) {
		keepOurs = 1
		if len(ourJumps) == 0 || below(firstOurs) {
			switch {
			case len(jumps) == 0:
				ev[EventJumpMissing] = true
			default:
				ev[EventJumpMisplaced] = true
			}
			insertedJump, keepOurs = true, 0
			f.hook = append(f.hook, insertLine(jumpRule(h), 1))
		}
	}
	for i, r := range ourJumps {
		if i >= keepOurs {
			f.hook = append(f.hook, deleteLine(r))
		}
	}
	if m == modeRemove && h.own && !chainMissing {
		f.hook = append(f.hook, "-X "+h.chain)
	}

	if m != modeRemove {
		// A rewrite puts the redirect at the top of the hook's chain:
		// only FORWARD can shadow it then. Likewise a jump of ours goes
		// in at the top of FORWARD.
		f.shadow = shadowOf(hooked, h, !insertedJump, !rewrite)
		if f.shadow != "" {
			ev[EventShadowed] = true
		}
	}

	// The guard: wanted while nothing shadows the redirect. A rule of the
	// operator's that lets some traffic past the redirect is meant to let
	// it through; the guard would drop it.
	wantGuard := m != modeRemove && spec.guarded() && f.shadow == ""
	var guards []ourRule
	if wantGuard {
		guards = spec.guardRules()
	}
	var foundGuard []listedRule
	for _, chain := range []string{forwardChain, postroutingChain} {
		foundGuard = append(foundGuard, ours(mangle, chain)...)
	}
	rewriteGuard := m == modeInstall || (len(guards) == 0 && len(foundGuard) > 0)
	for _, g := range guards {
		if n := count(foundGuard, g.tag); n != 1 {
			rewriteGuard = true
			if n == 0 && m == modeWatch && !wasShadowed {
				ev[EventGuardRemoved] = true
			}
			if n > 1 {
				ev[EventDuplicated] = true
			}
		}
	}
	if rewriteGuard {
		for _, r := range foundGuard {
			f.mangle = append(f.mangle, deleteLine(r))
		}
		for _, g := range guards {
			f.mangle = append(f.mangle, insertLine(g, 1))
		}
	}

	if m == modeWatch {
		for _, k := range EventKinds {
			if ev[k] {
				f.events = append(f.events, k)
			}
		}
	}
	return f
}

// unhook returns the lines that take the redirect out of hook h without
// touching the guard: when the redirect moves to another hook (Docker
// changed backend, or a killed run used the other one). Empty when h
// holds nothing of nfqguard's.
func unhook(h hook, hooked *table) []string {
	var lines []string
	for _, r := range ours(hooked, h.chain) {
		lines = append(lines, deleteLine(r))
	}
	for _, r := range hooked.chains[forwardChain] {
		if tgt, _ := r.target(); tgt == h.chain && tagOf(r.args) == commentJump {
			lines = append(lines, deleteLine(r))
		}
	}
	if h.own && hooked.has(h.chain) {
		lines = append(lines, "-X "+h.chain)
	}
	return lines
}

// ours returns the rules of chain that carry an nfqguard tag of that
// chain (the created-chain rules are not counted: they are Docker's
// stand-ins, removed with the chain).
func ours(t *table, chain string) []listedRule {
	var out []listedRule
	for _, r := range t.chains[chain] {
		tag := tagOf(r.args)
		if tag == "" || tag == commentCreated || tag == commentJump {
			continue
		}
		out = append(out, r)
	}
	return out
}

func count(rs []listedRule, tag string) int {
	n := 0
	for _, r := range rs {
		if tagOf(r.args) == tag {
			n++
		}
	}
	return n
}

func deleteLine(r listedRule) string { return "-D " + r.chain + " " + joinWords(r.args) }

func insertLine(r ourRule, pos int) string {
	return "-I " + r.chain + " " + strconv.Itoa(pos) + " " + strings.Join(r.args, " ")
}

// shadowOf returns the first rule that may end a packet's walk before the
// redirect: in FORWARD above the first jump (with inForward) to the hook's
// chain, or in that chain above the redirect (with inHook), a rule that
// accepts, returns, or jumps to a chain that (through any further jumps)
// accepts. Rules that drop, reject, log or mark let nothing through
// unjudged. "" when none does.
func shadowOf(hooked *table, h hook, inForward, inHook bool) string {
	walk := func(chain string, stop func(listedRule) bool) string {
		for _, r := range hooked.chains[chain] {
			if stop(r) {
				return ""
			}
			tgt, _ := r.target()
			switch {
			case tgt == "ACCEPT", tgt == "RETURN":
				return r.line
			case hooked.has(tgt) && accepts(hooked, tgt, map[string]bool{}):
				return r.line
			}
		}
		return ""
	}
	if inForward {
		if s := walk(forwardChain, func(r listedRule) bool { t, _ := r.target(); return t == h.chain }); s != "" {
			return s
		}
	}
	if !inHook {
		return ""
	}
	return walk(h.chain, func(r listedRule) bool { return tagOf(r.args) == commentRedirect })
}

// accepts reports whether a packet may be accepted in chain or in a chain
// it jumps to.
func accepts(filter *table, chain string, seen map[string]bool) bool {
	if seen[chain] {
		return false
	}
	seen[chain] = true
	for _, r := range filter.chains[chain] {
		tgt, _ := r.target()
		if tgt == "ACCEPT" || (filter.has(tgt) && accepts(filter, tgt, seen)) {
			return true
		}
	}
	return false
}

// script wraps a table's lines in an iptables-restore transaction.
func script(tableName string, lines []string) string {
	if len(lines) == 0 {
		return ""
	}
	return fmt.Sprintf("*%s\n%s\nCOMMIT\n", tableName, strings.Join(lines, "\n"))
}
