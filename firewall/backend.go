package firewall

import (
	"context"
	"fmt"
)

// dockerBackendNow says which firewall backend Docker's rules in the
// kernel show for the family now: BackendNftables when its docker-bridges
// table exists and no FORWARD rule of Docker's jumps to DOCKER-USER,
// BackendIPTables for the other way round, "" when it cannot tell: both
// (Docker leaves the old backend's rules when it is restarted with the
// other one; then Docker's own word, says, decides) or neither (Docker is
// starting or stopping).
func (f *family) dockerBackendNow(ctx context.Context, says func() string) (string, error) {
	filter, err := listTable(ctx, f.path, filterTable)
	if err != nil {
		return "", err
	}
	jump := false
	for _, r := range filter.chains[forwardChain] {
		if tgt, _ := r.target(); tgt == dockerUserChain && tagOf(r.args) == "" {
			jump = true
		}
	}
	nft := dockerNftables(f.proto)
	switch {
	case nft && !jump:
		return BackendNftables, nil
	case jump && !nft:
		return BackendIPTables, nil
	case jump && nft && says != nil:
		if b := says(); b == BackendIPTables || b == BackendNftables {
			return b, nil
		}
	}
	return "", nil
}

// hookOf is the hook for Docker's backend b.
func hookOf(b string) hook {
	if b == BackendNftables {
		return nftablesHook
	}
	return dockerUserHook
}

// followDocker looks at which backend Docker uses now for an nft family
// (the nftables hook needs iptables-nft; a legacy family stays where it
// is). When it is not the one the family is hooked for, and the setting
// is auto, it moves the redirect to the other hook the way Install writes
// it (the new one in before the old one goes) and returns the event;
// with a setting that insists, it reports the mismatch once. An event
// with nothing found means the family is as it should be.
func (fw *IPTables) followDocker(ctx context.Context, f *family, spec RuleSpec) (ev Event, ok bool) {
	ev.Family = f.name
	if f.backend != "nft" {
		return ev, true
	}
	now, err := f.dockerBackendNow(ctx, fw.dockerSays)
	if err != nil || now == "" || hookOf(now) == f.hook {
		if err == nil && now != "" {
			f.watch.mismatch = ""
		}
		return ev, true
	}
	if !fw.follow {
		if f.watch.mismatch != now {
			ev.Found = []string{EventBackendMismatch}
			ev.Mismatch = fmt.Sprintf("Docker uses %s, [engine] firewall is %s: the redirect stays at %s", now, fw.setting, f.hook)
		}
		f.watch.mismatch = now
		return ev, true
	}
	from, to := f.hook, hookOf(now)
	fw.setHook(f, to)
	if err := f.apply(spec, modeInstall); err != nil {
		fw.setHook(f, from)
		ev.Found = []string{EventRestoreFailed}
		ev.Err = fmt.Sprintf("%s: move the redirect to %s (Docker uses %s now): %v", f.name, to, now, err)
		return ev, false
	}
	f.watch.shadow, f.watch.mismatch = "", ""
	ev.Found = []string{EventBackendChanged}
	ev.Moved = fmt.Sprintf("%s -> %s", from, to)
	return ev, true
}

// setHook changes where a family's redirect goes, under the lock Health
// and Families read it with.
func (fw *IPTables) setHook(f *family, h hook) {
	fw.mu.Lock()
	defer fw.mu.Unlock()
	f.hook = h
}
