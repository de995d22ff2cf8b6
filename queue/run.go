package queue

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"math/bits"
	"os"
	"strconv"
	"strings"
	"time"

	"golang.org/x/sync/errgroup"

	"github.com/nfqguard/nfqguard/firewall"
	"github.com/nfqguard/nfqguard/inspect"
	"github.com/nfqguard/nfqguard/inspect/names"
)

// ErrNotPermitted is returned when the process lacks CAP_NET_ADMIN.
var ErrNotPermitted = errors.New("not permitted: nfqguard needs CAP_NET_ADMIN (root has it) to bind NFQUEUE queues, " +
	"change iptables rules and update conntrack")

// bridgeRefresh is how often the list of bridges is re-read, so that
// networks Docker creates later are recognised.
const bridgeRefresh = 5 * time.Second

// Options configure Run.
type Options struct {
	Tables   inspect.TableSource // the current table; Run reads the engine settings once at start
	Sink     inspect.Sink        // blocked-flow events
	Capture  inspect.Capture     // packets of blocked flows (a pcap file); may be nil
	Monitor  *Monitor            // filled with the running engine's view; may be nil
	Firewall firewall.Options    // how to find (or create) the chains the redirect goes in
	Logger   *slog.Logger
	// Names is the store of names learned from DNS answers, shared by the
	// workers' engines; nil: nothing is learned.
	Names *names.Store
}

// hook is what Run needs of the host's firewall: the redirect to the queues
// installed and removed, and the queues a redirect already sends to. It is
// *firewall.IPTables (Docker's DOCKER-USER chains) today; openFirewall is
// where another backend comes in.
type hook interface {
	Families() []string
	HasIPv6() bool
	InstalledQueues() ([]uint16, error)
	Install(firewall.RuleSpec) error
	Remove() error
	UndoCreate() error
	// Watch keeps the rules in place until ctx ends, reporting each look
	// that found something wrong; Health is what it knows now.
	Watch(ctx context.Context, spec firewall.RuleSpec, report func(firewall.Event))
	Health() firewall.Health
}

// openFirewall opens the firewall Run hooks into.
func openFirewall(o firewall.Options) (hook, error) {
	fw, err := firewall.OpenIPTables(o)
	if err != nil {
		return nil, err // not a nil *IPTables in a non-nil hook
	}
	return fw, nil
}

// status describes a running engine. Its counters are live.
type status struct {
	fw       hook
	families []string
	started  time.Time
	tables   inspect.TableSource
	workers  []*WorkerStats
	engines  []*inspect.Engine
	runners  []*worker
}

// Summary is what a run did, reported when it ends.
type Summary struct {
	Packets       uint64         `json:"packets"`
	Allowed       uint64         `json:"allowed"`
	Dropped       uint64         `json:"dropped"`
	Flows         uint64         `json:"flows"`
	BlockedFlows  uint64         `json:"blocked_flows"`
	Malformed     uint64         `json:"malformed"`
	Evictions     uint64         `json:"evictions"`
	ENOBUFS       uint64         `json:"enobufs"`
	VerdictErrors uint64         `json:"verdict_errors"`
	Latency       LatencySummary `json:"verdict_latency_ns"`

	// Deep inspection.
	Inspected      uint64 `json:"inspected_flows"` // flows whose verdict needed an L7 fact
	HeldPackets    uint64 `json:"held_packets"`    // packets held while a fact was sought
	Decided        uint64 `json:"l7_decided"`      // flows and DNS queries judged by their fact
	Undecided      uint64 `json:"l7_undecided"`    // ... judged by [inspect] undecided
	BlockedQueries uint64 `json:"blocked_queries"` // DNS queries over UDP dropped
	Resets         uint64 `json:"resets"`          // dropped flows cut with RSTs
}

// LatencySummary condenses a Histogram; durations are in nanoseconds, each
// percentile an upper bound within 25% of the true value.
type LatencySummary struct {
	Count uint64 `json:"count"`
	Mean  int64  `json:"mean"`
	P50   int64  `json:"p50"`
	P90   int64  `json:"p90"`
	P99   int64  `json:"p99"`
	P999  int64  `json:"p999"`
}

// Summarize condenses h.
func (h *Histogram) Summarize() LatencySummary {
	return LatencySummary{
		Count: h.Count(), Mean: int64(h.Mean()),
		P50: int64(h.Quantile(0.5)), P90: int64(h.Quantile(0.9)),
		P99: int64(h.Quantile(0.99)), P999: int64(h.Quantile(0.999)),
	}
}

// Run binds the queues, installs the redirect, judges packets until ctx is
// cancelled, then removes the redirect and unbinds. If it fails before the
// redirect is installed, the host's firewall is as it was and the summary
// is nil.
func Run(ctx context.Context, o Options) (*Summary, error) {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	t := o.Tables.Load()
	cfg := t.Engine
	if err := CheckPrivileges(); err != nil {
		return nil, err
	}
	bridgeNF := checkBridgeNF(log)

	fw, err := openFirewall(o.Firewall)
	if err != nil {
		return nil, err
	}
	bridges := &Bridges{}
	if err := bridges.Refresh(); err != nil {
		log.Warn("unlisted containers will not be recognised", "err", err)
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st := &status{fw: fw, families: fw.Families(), tables: o.Tables}
	var workers []*worker
	var g errgroup.Group
	// shutdown stops the workers, waits for them and unbinds the queues.
	shutdown := func() error {
		for _, w := range workers {
			w.stop()
		}
		err := g.Wait()
		for _, w := range workers {
			err = errors.Join(err, w.close())
		}
		return err
	}
	resets := true
	for i := 0; i < cfg.Workers; i++ {
		q := cfg.Queue + uint16(i)
		eo := inspect.Options{Tables: o.Tables, Bridges: bridges, Sink: o.Sink, Capture: o.Capture, Names: o.Names}
		var rst *resetter
		if resets {
			if rst, err = newResetter(); err != nil {
				log.Warn("TCP flows dropped mid-stream (by deep inspection, or rejudged by a reload) cannot be cut with RSTs: "+
					"they are dropped until they expire", "err", err)
				resets = false
			} else {
				eo.Resetter = rst
			}
		}
		eng := inspect.New(eo, cfg.MaxFlows)
		w, err := openWorker(workerConfig{
			queue: q, queueLen: cfg.QueueLen, failOpen: cfg.FailOpen,
			mark: cfg.Mark, bypass: cfg.BypassMark, engine: eng, resetter: rst,
		})
		if err != nil {
			if rst != nil {
				err = errors.Join(err, rst.close())
			}
			return nil, errors.Join(err, shutdown(), fw.UndoCreate())
		}
		workers = append(workers, w)
		st.workers = append(st.workers, w.stats)
		st.engines = append(st.engines, eng)
		st.runners = append(st.runners, w)
	}
	for _, w := range workers {
		g.Go(func() error {
			err := w.run()
			if err != nil {
				cancel() // a broken queue ends the run
			}
			return err
		})
	}

	if err := checkNoOtherEngine(fw, cfg.Queue, cfg.Workers, log); err != nil {
		return nil, errors.Join(err, shutdown(), fw.UndoCreate())
	}
	if _, err := queueDrops(); errors.Is(err, fs.ErrPermission) {
		log.Warn("the kernel's per-queue drop counters (queue full, could not be sent) are readable by root only: "+
			"they read 0 in status and metrics", "err", err)
	}

	// Connections that exist now were never judged; they keep going as if
	// nfqguard were not there.
	if n, err := firewall.AdoptExisting(cfg.BypassMark); err != nil {
		log.Warn("existing connections not adopted: they will be judged from their next packet", "err", err)
	} else {
		log.Info("adopted existing connections", "count", n)
	}

	spec := firewall.RuleSpec{
		FirstQueue: cfg.Queue, Queues: cfg.Workers, Mark: cfg.Mark, BypassMark: cfg.BypassMark,
		FastPath: cfg.FastPath, FailOpen: cfg.FailOpen, GuardMark: cfg.GuardMark, DropInvalid: cfg.DropInvalid,
	}
	if err := fw.Install(spec); err != nil {
		return nil, errors.Join(err, shutdown())
	}
	watchCtx, stopWatch := context.WithCancel(ctx)
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		fw.Watch(watchCtx, spec, func(ev firewall.Event) { logRedirectEvent(log, ev) })
	}()
	// The watcher stops before the rules are removed: it would put them back.
	unwatch := func() { stopWatch(); <-watched }
	defer unwatch()
	st.started = time.Now()
	o.Monitor.attach(st)
	log.Info("nfqguard running", "queues", queueRange(cfg.Queue, cfg.Workers), "firewall", strings.Join(st.families, "; "),
		"fast_path", cfg.FastPath, "fail_open", cfg.FailOpen, "mark", fmt.Sprintf("0x%x", cfg.Mark),
		"bypass_mark", fmt.Sprintf("0x%x", cfg.BypassMark), "bridge_nf_call_iptables", bridgeNF,
		"ipv6_docker_user", ipv6Status(fw), "guard", guardStatus(spec), "invalid", invalidStatus(spec))

	tick := time.NewTicker(bridgeRefresh)
	defer tick.Stop()
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case <-tick.C:
			if err := bridges.Refresh(); err != nil {
				log.Warn("refresh bridges", "err", err)
			}
		}
	}
	// Remove the redirect before unbinding, so no packet meets a queue with
	// no listener on the way out.
	unwatch()
	rmErr := fw.Remove()
	runErr := shutdown()
	o.Monitor.attach(nil)
	sum := st.summary()
	log.Info("nfqguard stopped", "packets", sum.Packets, "allowed", sum.Allowed, "dropped", sum.Dropped,
		"flows", sum.Flows, "blocked_flows", sum.BlockedFlows, "malformed", sum.Malformed, "enobufs", sum.ENOBUFS,
		"inspected_flows", sum.Inspected, "l7_undecided", sum.Undecided, "resets", sum.Resets,
		"verdict_p50", time.Duration(sum.Latency.P50), "verdict_p99", time.Duration(sum.Latency.P99))
	return sum, errors.Join(runErr, rmErr)
}

// logRedirectEvent writes one log line for a watcher event: what was
// found and whether the rules are back.
func logRedirectEvent(log *slog.Logger, ev firewall.Event) {
	attrs := []any{"found", strings.Join(ev.Found, ","), "family", ev.Family}
	if ev.Rule != "" {
		attrs = append(attrs, "rule", ev.Rule)
	}
	switch {
	case ev.Err != "":
		log.Error("redirect restore failed: container traffic may pass unjudged", append(attrs, "err", ev.Err)...)
	case ev.Moved != "":
		log.Warn("redirect moved: Docker changed its firewall backend", append(attrs, "moved", ev.Moved, "took", ev.Took)...)
	case ev.Mismatch != "":
		log.Error("firewall backend mismatch: container traffic is judged where the setting says; check [engine] firewall",
			append(attrs, "mismatch", ev.Mismatch)...)
	case ev.Restored():
		log.Warn("redirect restored", append(attrs, "took", ev.Took)...)
	default:
		log.Warn("redirect shadowed: traffic this rule ends the walk for is not judged", attrs...)
	}
}

// guardStatus says whether the guard drops new flows while the redirect is
// away.
func guardStatus(s firewall.RuleSpec) string {
	switch {
	case s.FailOpen:
		return "off (fail_open)"
	case s.GuardMark == 0:
		return "off (guard_mark = 0)"
	}
	return fmt.Sprintf("mark 0x%x", s.GuardMark)
}

// invalidStatus says what happens to packets without a connection.
func invalidStatus(s firewall.RuleSpec) string {
	if s.DropInvalid {
		return "drop"
	}
	return "docker (INVALID and untracked packets get Docker's verdict, unjudged)"
}

// ipv6Status says whether IPv6 container traffic is inspected.
func ipv6Status(fw hook) string {
	if fw.HasIPv6() {
		return "present"
	}
	return "absent: IPv6 container traffic is not inspected"
}

func queueRange(first uint16, n int) string {
	if n <= 1 {
		return strconv.Itoa(int(first))
	}
	return fmt.Sprintf("%d-%d", first, int(first)+n-1)
}

// summary condenses the engine's last snapshot for the end of a run.
func (st *status) summary() *Summary {
	snap := st.snapshot()
	sum := Summary{Latency: snap.Percentiles}
	for _, q := range snap.Queues {
		c := &q.Engine
		sum.Packets += c.Packets
		sum.Allowed += c.Allowed
		sum.Dropped += c.Dropped
		sum.Flows += c.Flows
		sum.BlockedFlows += c.Blocked
		sum.Malformed += c.Malformed
		sum.Evictions += c.Evictions
		sum.Inspected += c.Inspected
		sum.HeldPackets += c.HeldPackets
		sum.Decided += c.Decided
		sum.Undecided += c.Undecided
		sum.BlockedQueries += c.BlockedQueries
		sum.Resets += c.Resets
		sum.ENOBUFS += q.ENOBUFS
		sum.VerdictErrors += q.VerdictErrors
	}
	return &sum
}

// Capabilities nfqguard uses, by their bit in the kernel's capability sets
// (linux/capability.h).
const (
	capNetAdmin = 12 // NFQUEUE, conntrack (ctnetlink), iptables
	capNetRaw   = 13 // raw sockets: TCP resets, and iptables-legacy
)

// CheckPrivileges fails early, before anything is touched, when the
// process lacks CAP_NET_ADMIN in its effective set (an error wrapping
// ErrNotPermitted that names what is missing and what the process has).
// It looks at capabilities, not at the user id: root without CAP_NET_ADMIN
// (a bounding set without it) fails, a user holding it as an ambient
// capability passes. CAP_NET_RAW is optional (TCP resets); Run warns when
// it is missing. Run calls CheckPrivileges too; a caller that opens other
// things first (listeners, files) calls it before them.
func CheckPrivileges() error {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return nil // cannot tell; the kernel will say no later
	}
	return checkCaps(string(b), os.Geteuid())
}

// checkCaps is CheckPrivileges on the text of /proc/self/status.
func checkCaps(status string, euid int) error {
	for _, line := range strings.Split(status, "\n") {
		hex, ok := strings.CutPrefix(line, "CapEff:")
		if !ok {
			continue
		}
		eff, err := strconv.ParseUint(strings.TrimSpace(hex), 16, 64)
		if err != nil {
			return nil
		}
		if eff&(1<<capNetAdmin) == 0 {
			return fmt.Errorf("%w: CAP_NET_ADMIN is missing from the effective capabilities (uid %d has %s); "+
				"as a user other than root, grant it as an ambient capability (systemd: AmbientCapabilities=CAP_NET_ADMIN CAP_NET_RAW)",
				ErrNotPermitted, euid, capNames(eff))
		}
		return nil
	}
	return nil
}

// capNames describes a capability set for error messages: the capabilities
// nfqguard cares about by name, the rest as a count.
func capNames(set uint64) string {
	if set == 0 {
		return "none"
	}
	var names []string
	for _, c := range []struct {
		bit  uint
		name string
	}{{capNetAdmin, "CAP_NET_ADMIN"}, {capNetRaw, "CAP_NET_RAW"}} {
		if set&(1<<c.bit) != 0 {
			names = append(names, c.name)
			set &^= 1 << c.bit
		}
	}
	if n := bits.OnesCount64(set); n > 0 {
		names = append(names, fmt.Sprintf("%d other", n))
	}
	return strings.Join(names, ", ")
}

// checkBridgeNF returns net.bridge.bridge-nf-call-iptables for the start-up
// report ("1", "0", or "unset" when br_netfilter is not loaded), and warns
// when bridged (container-to-container) traffic skips iptables, and so
// nfqguard.
func checkBridgeNF(log *slog.Logger) string {
	b, err := os.ReadFile("/proc/sys/net/bridge/bridge-nf-call-iptables")
	v := strings.TrimSpace(string(b))
	switch {
	case err != nil:
		log.Warn("br_netfilter is not loaded: container-to-container traffic on a bridge is invisible to nfqguard")
		return "unset"
	case v == "0":
		log.Warn("net.bridge.bridge-nf-call-iptables = 0: container-to-container traffic on a bridge is invisible to nfqguard")
	}
	return v
}
