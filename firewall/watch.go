package firewall

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// How often the watcher looks at the rules without being told of a change:
// iptables-legacy announces nothing, so it is polled; nf_tables announces
// every change on netlink, and the poll is only a safety net.
const (
	PollLegacy  = 200 * time.Millisecond
	PollNetlink = time.Second
)

// nfnlgrpNftables is the nfnetlink multicast group of nf_tables changes
// (linux/netfilter/nfnetlink.h: NFNLGRP_NFTABLES).
const nfnlgrpNftables = 7

// Event is one look at a family's rules that found something wrong.
type Event struct {
	Time   time.Time `json:"time"`
	Family string    `json:"family"` // "IPv4" or "IPv6"
	// Found are the event kinds (EventRemoved, …), in EventKinds order.
	Found []string `json:"found"`
	// Rule is the shadowing rule, as iptables -S prints it, when Found
	// holds EventShadowed.
	Rule string `json:"rule,omitempty"`
	// Took is how long it took from noticing (a netlink message, or the
	// poll) to having the rules back; 0 when nothing was put back.
	Took time.Duration `json:"took_ns"`
	// Err says why the rules could not be put back (EventRestoreFailed).
	Err string `json:"error,omitempty"`
	// Moved says where the redirect was moved from and to
	// (EventBackendChanged): "filter DOCKER-USER -> mangle NFQGUARD".
	Moved string `json:"moved,omitempty"`
	// Mismatch says what Docker uses and what the setting wants
	// (EventBackendMismatch).
	Mismatch string `json:"mismatch,omitempty"`
}

// Restored reports whether the event put rules back (as opposed to a
// report only, or a failure).
func (e Event) Restored() bool {
	return e.Err == "" && slices.ContainsFunc(e.Found, func(k string) bool {
		return k != EventShadowed && k != EventBackendMismatch
	})
}

// Health is what the watcher knows of the redirect. Take one with
// IPTables.Health.
type Health struct {
	Watching bool   `json:"watching"`
	Method   string `json:"method"` // how changes are noticed
	// InPlace: at the last look, in every family, the redirect was there
	// once and nothing above it could end a packet's walk first.
	InPlace bool `json:"in_place"`
	// State is "in place", "shadowed", "restore failed" or "not watched".
	State      string `json:"state"`
	ShadowedBy string `json:"shadowed_by,omitempty"` // "IPv4: -A DOCKER-USER -j ACCEPT"
	// Mismatch is set while Docker uses another firewall backend than
	// [engine] firewall insists on: "IPv4: Docker uses nftables, the
	// setting is iptables".
	Mismatch string `json:"mismatch,omitempty"`
	// Events counts events by kind (EventKinds); Total is their number of
	// looks that found anything (one look may find several kinds).
	Events map[string]uint64 `json:"by_event"`
	Total  uint64            `json:"events"`
	Last   *Event            `json:"last_event,omitempty"`
	// Dropped counts packets dropped by nfqguard's own rules: "invalid"
	// and "untracked" (conntrack states the redirect cannot see), "guard"
	// (unjudged packets met while the redirect was away).
	Dropped map[string]uint64 `json:"dropped_packets"`
	Checks  uint64            `json:"checks"`
	// Hooks says, per family, where the redirect is hooked, as Families
	// does: "IPv4: /usr/sbin/iptables-nft (nft), filter DOCKER-USER".
	Hooks []string `json:"hooks"`
}

// DropKinds are the keys of Health.Dropped.
var DropKinds = []string{"invalid", "untracked", "guard"}

var dropKindOf = map[string]string{commentInvalid: "invalid", commentUntracked: "untracked", commentGuardDrop: "guard"}

// watchState is the part of a family the watcher keeps between looks.
type watchState struct {
	shadow   string
	mismatch string // Docker's backend while it is not the setting's
	// counters of our rules: last value read, and what rules that were
	// replaced had counted before.
	last, base map[string]uint64
}

// Health returns the watcher's view now. It is safe for concurrent use.
func (fw *IPTables) Health() Health {
	fw.mu.Lock()
	defer fw.mu.Unlock()
	h := fw.health
	for _, f := range fw.families {
		h.Hooks = append(h.Hooks, f.String())
	}
	h.Events = maps.Clone(h.Events)
	h.Dropped = maps.Clone(h.Dropped)
	if h.Last != nil {
		last := *h.Last
		h.Last = &last
	}
	if !h.Watching {
		h.State = "not watched"
	}
	return h
}

// Watch keeps spec's rules in place until ctx ends: it looks at every
// family's rules when nf_tables announces a change and at every poll, puts
// back a rule that is gone or removes a duplicate (the way Install writes
// them), inserts a FORWARD jump of its own while Docker's is missing, and
// reports a rule that shadows the redirect without touching it. Each look
// that found something is passed to report, on Watch's goroutine. Watch
// returns when ctx ends; Remove is called after it.
func (fw *IPTables) Watch(ctx context.Context, spec RuleSpec, report func(Event)) {
	wake := make(chan struct{}, 1)
	method, interval := fmt.Sprintf("poll every %v", PollLegacy), PollLegacy
	var nlErr chan error
	if fw.usesNft() {
		if c, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{Groups: 1 << (nfnlgrpNftables - 1)}); err != nil {
			method = fmt.Sprintf("poll every %v (nf_tables change events unavailable: %v)", PollLegacy, err)
		} else {
			method, interval = fmt.Sprintf("nf_tables change events, and a poll every %v", PollNetlink), PollNetlink
			nlErr = make(chan error, 1)
			listening := make(chan struct{})
			go func() {
				defer close(listening)
				listenChanges(c, wake, nlErr)
			}()
			// Closing the socket ends listenChanges; Watch returns after it.
			defer func() { c.Close(); <-listening }()
		}
	}
	fw.mu.Lock()
	fw.health.Watching, fw.health.Method = true, method
	fw.mu.Unlock()
	defer func() {
		fw.mu.Lock()
		fw.health.Watching = false
		fw.mu.Unlock()
	}()

	tick := time.NewTicker(interval)
	defer tick.Stop()
	for {
		fw.look(ctx, spec, report, time.Now())
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		case <-wake:
		case err := <-nlErr:
			if ctx.Err() != nil {
				return
			}
			nlErr = nil
			tick.Reset(PollLegacy)
			fw.mu.Lock()
			fw.health.Method = fmt.Sprintf("poll every %v (nf_tables change events lost: %v)", PollLegacy, err)
			fw.mu.Unlock()
		}
	}
}

// listenChanges turns every nf_tables change message into a wake-up, until
// the connection is closed or fails.
func listenChanges(c *netlink.Conn, wake chan<- struct{}, failed chan<- error) {
	for {
		_, err := c.Receive()
		if err != nil && !errors.Is(err, unix.ENOBUFS) { // ENOBUFS: changes were lost; look anyway
			failed <- err
			return
		}
		select {
		case wake <- struct{}{}:
		default:
		}
	}
}

func (fw *IPTables) usesNft() bool {
	for _, f := range fw.families {
		if f.backend == "nft" {
			return true
		}
	}
	return false
}

// look checks every family once and updates the health.
func (fw *IPTables) look(ctx context.Context, spec RuleSpec, report func(Event), noticed time.Time) {
	inPlace, failed := true, false
	var shadows, mismatches []string
	dropped := map[string]uint64{}
	for _, f := range fw.families {
		ev, ok := fw.followDocker(ctx, f, spec)
		if ok && len(ev.Found) == 0 {
			ev, ok = f.look(ctx, spec)
		}
		if ctx.Err() != nil {
			return
		}
		if len(ev.Found) > 0 {
			if ev.Restored() {
				ev.Took = time.Since(noticed)
			}
			ev.Time = time.Now()
			fw.mu.Lock()
			fw.health.Total++
			for _, k := range ev.Found {
				fw.health.Events[k]++
			}
			fw.health.Last = &ev
			fw.mu.Unlock()
			report(ev)
		}
		if !ok {
			inPlace, failed = false, true
		}
		if f.watch.shadow != "" {
			inPlace = false
			shadows = append(shadows, f.name+": "+f.watch.shadow)
		}
		if f.watch.mismatch != "" {
			mismatches = append(mismatches, fmt.Sprintf("%s: Docker uses %s, [engine] firewall is %s", f.name, f.watch.mismatch, fw.setting))
		}
		for tag, kind := range dropKindOf {
			dropped[kind] += f.watch.base[tag] + f.watch.last[tag]
		}
	}
	fw.mu.Lock()
	defer fw.mu.Unlock()
	fw.health.Checks++
	fw.health.InPlace = inPlace
	fw.health.ShadowedBy = strings.Join(shadows, "; ")
	fw.health.Mismatch = strings.Join(mismatches, "; ")
	fw.health.Dropped = dropped
	switch {
	case failed:
		fw.health.State = "restore failed"
	case len(shadows) > 0:
		fw.health.State = "shadowed"
	case len(mismatches) > 0:
		fw.health.State = "backend mismatch"
	default:
		fw.health.State = "in place"
	}
}

// look reads the family's tables, puts right what is wrong, and returns
// what it found; ok is false when the rules could not be read or put back.
func (f *family) look(ctx context.Context, spec RuleSpec) (ev Event, ok bool) {
	ev.Family = f.name
	fail := func(err error) (Event, bool) {
		ev.Found = append(ev.Found, EventRestoreFailed)
		ev.Err = err.Error()
		return ev, false
	}
	var hooked, mangle *table
	var err error
	switch {
	case f.hook.table == mangleTable || spec.guarded():
		hooked, mangle, err = f.listTables(ctx, true)
	default:
		mangle = &table{chains: map[string][]listedRule{}}
		hooked, err = listTable(ctx, f.path, f.hook.table)
	}
	if err != nil {
		return fail(err)
	}
	fd := reconcile(f.hook, hooked, mangle, spec, modeWatch, f.watch.shadow != "")
	f.watch.count(fd.counts)
	for _, k := range fd.events {
		if k == EventShadowed && fd.shadow == f.watch.shadow {
			continue // reported when it appeared
		}
		ev.Found = append(ev.Found, k)
	}
	if fd.shadow != "" {
		ev.Rule = fd.shadow
	}
	f.watch.shadow = fd.shadow
	if err := restore(ctx, f.path, script(f.hook.table, fd.hook)+script(mangleTable, fd.mangle)); err != nil {
		if ctx.Err() != nil {
			return ev, true
		}
		return fail(fmt.Errorf("%s: put the redirect back: %w", f.name, err))
	}
	return ev, true
}

// count folds the counters of our rules read now into the totals: a
// counter that went down belongs to a rule that was replaced.
func (w *watchState) count(now map[string]uint64) {
	if w.last == nil {
		w.last, w.base = map[string]uint64{}, map[string]uint64{}
	}
	for tag := range dropKindOf {
		n := now[tag]
		if n < w.last[tag] {
			w.base[tag] += w.last[tag]
		}
		w.last[tag] = n
	}
}
