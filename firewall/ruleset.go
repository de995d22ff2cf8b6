package firewall

import (
	"fmt"
	"strings"
)

// The comments that tag the rules nfqguard writes besides the redirect and
// its companion, and the tables and chains they go in.
const (
	mangleTable      = "mangle"
	nfqguardChain    = "NFQGUARD"
	postroutingChain = "POSTROUTING"
	commentInvalid   = "nfqguard-invalid"
	commentUntracked = "nfqguard-untracked"
	commentJump      = "nfqguard-jump"
	commentGuard     = "nfqguard-guard"
	commentGuardDrop = "nfqguard-guard-drop"
	tagPrefix        = "nfqguard-"
	restoreSuffix    = "-restore"
)

// ourRule is one rule nfqguard keeps exactly once while it runs: where it
// goes, the comment that finds it again, and its arguments.
type ourRule struct {
	table, chain, tag string
	args              []string
}

// hook is the chain the redirect goes in, and the table that holds it and
// the FORWARD chain that jumps to it.
type hook struct {
	table, chain string
	// own: the chain is nfqguard's: it creates the chain and the only jump
	// to it, and deletes both on exit.
	own bool
}

// dockerUserHook is Docker's iptables backend: DOCKER-USER, jumped to
// first thing in filter FORWARD, by Docker.
var dockerUserHook = hook{table: filterTable, chain: dockerUserChain}

// nftablesHook is Docker's nftables backend, which has no DOCKER-USER: a
// chain of nfqguard's own in the iptables-nft mangle table, jumped to
// from mangle FORWARD. That base chain (forward hook, priority -150) runs
// before Docker's filter-FORWARD (priority 0) in its table docker-bridges;
// an accept there ends only mangle FORWARD, so a packet nfqguard allows
// still meets every rule of Docker's. Docker never touches the table.
var nftablesHook = hook{table: mangleTable, chain: nfqguardChain, own: true}

// String names the hook for logs and status, e.g. "filter DOCKER-USER".
func (h hook) String() string { return h.table + " " + h.chain }

// hookRules are the rules that go at the top of the hook's chain, in this
// order: the redirect; the companion (fast path); with DropInvalid, the
// drops of packets conntrack calls INVALID or does not track, which the
// redirect's connmark match cannot see (the match is false for a packet
// without a connection).
func (s RuleSpec) hookRules(h hook) []ourRule {
	rs := []ourRule{{h.table, h.chain, commentRedirect, s.redirect()}}
	if s.FastPath {
		rs = append(rs, ourRule{h.table, h.chain, commentFastPath, s.companion()})
	}
	if s.DropInvalid {
		rs = append(rs,
			ourRule{h.table, h.chain, commentInvalid, ctstateDrop("INVALID", commentInvalid)},
			ourRule{h.table, h.chain, commentUntracked, ctstateDrop("UNTRACKED", commentUntracked)})
	}
	return rs
}

func ctstateDrop(state, tag string) []string {
	return []string{"-m", "conntrack", "--ctstate", state, "-m", "comment", "--comment", tag, "-j", "DROP"}
}

// guarded reports whether the spec asks for the guard: a fail-open engine
// lets unjudged packets through by choice, so it has none.
func (s RuleSpec) guarded() bool { return s.GuardMark != 0 && !s.FailOpen }

// guardRules are the two mangle rules of the guard. The first marks, as
// it enters FORWARD (mangle runs before filter), every packet of a
// connection that is not on the fast path; the second drops, on the way
// out, every packet that still carries that mark without the "judged"
// mark of a verdict. While the redirect is in place every such packet went
// through a queue and carries the judged mark; while it is gone (a flush,
// a restore of an old ruleset) new flows are dropped instead of passing
// unjudged, until the watcher has put the redirect back.
func (s RuleSpec) guardRules() []ourRule {
	return []ourRule{
		{mangleTable, forwardChain, commentGuard, []string{
			"-m", "connmark", "!", "--mark", maskArg(s.BypassMark),
			"-m", "comment", "--comment", commentGuard,
			"-j", "MARK", "--set-xmark", maskArg(s.GuardMark)}},
		{mangleTable, postroutingChain, commentGuardDrop, []string{
			"-m", "mark", "--mark", fmt.Sprintf("0x%x/0x%x", s.GuardMark, s.GuardMark|s.Mark),
			"-m", "comment", "--comment", commentGuardDrop, "-j", "DROP"}},
	}
}

// jumpRule is the FORWARD jump to the hook's chain that nfqguard inserts:
// always to a chain of its own; to DOCKER-USER while Docker's is missing
// (moby/libnetwork#2631: some releases skip it when DOCKER-USER already
// exists).
func jumpRule(h hook) ourRule {
	return ourRule{h.table, forwardChain, commentJump, []string{"-m", "comment", "--comment", commentJump, "-j", h.chain}}
}

// tagOf returns the nfqguard comment a rule carries, or "".
func tagOf(args []string) string {
	for i := 0; i+1 < len(args); i++ {
		if args[i] == "--comment" && strings.HasPrefix(args[i+1], tagPrefix) {
			return args[i+1]
		}
	}
	return ""
}
