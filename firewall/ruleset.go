package firewall

import (
	"fmt"
	"strings"
)

// The comments that tag the rules nfqguard writes besides the redirect and
// its companion, and the tables and chains they go in.
const (
	mangleTable      = "mangle"
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

// dockerUserRules are the rules that go at the top of DOCKER-USER, in this
// order: the redirect; the companion (fast path); with DropInvalid, the
// drops of packets conntrack calls INVALID or does not track, which the
// redirect's connmark match cannot see (the match is false for a packet
// without a connection).
func (s RuleSpec) dockerUserRules() []ourRule {
	rs := []ourRule{{filterTable, dockerUserChain, commentRedirect, s.redirect()}}
	if s.FastPath {
		rs = append(rs, ourRule{filterTable, dockerUserChain, commentFastPath, s.companion()})
	}
	if s.DropInvalid {
		rs = append(rs,
			ourRule{filterTable, dockerUserChain, commentInvalid, ctstateDrop("INVALID", commentInvalid)},
			ourRule{filterTable, dockerUserChain, commentUntracked, ctstateDrop("UNTRACKED", commentUntracked)})
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

// jumpRule is the FORWARD jump to DOCKER-USER that nfqguard inserts while
// Docker's own is missing (moby/libnetwork#2631: some releases skip it
// when DOCKER-USER already exists).
func jumpRule() ourRule {
	return ourRule{filterTable, forwardChain, commentJump, []string{"-m", "comment", "--comment", commentJump, "-j", dockerUserChain}}
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
