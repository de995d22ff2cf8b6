package queue

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/nfqguard/nfqguard/inspect"
)

// ErrNotPermitted is returned when the process lacks CAP_NET_ADMIN.
var ErrNotPermitted = errors.New("not permitted: nfqguard needs root or CAP_NET_ADMIN to bind NFQUEUE queues and change iptables rules")

// bridgeRefresh is how often the list of bridges is re-read, so that
// networks Docker creates later are recognised.
const bridgeRefresh = 5 * time.Second

// Options configure Run.
type Options struct {
	Tables   inspect.TableSource // the current table; Run reads the engine settings once at start
	Sink     inspect.Sink        // blocked-flow events
	Firewall FirewallOptions
	Logger   *slog.Logger
}

// status describes a running engine. Its counters are live.
type status struct {
	families []string
	workers  []*WorkerStats
	engines  []*inspect.Engine
}

// Run binds the queues, installs the redirect, judges packets until ctx is
// cancelled, then removes the redirect and unbinds. If it fails before the
// redirect is installed, the host's firewall is as it was.
func Run(ctx context.Context, o Options) error {
	log := o.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	t := o.Tables.Load()
	cfg := t.Engine
	if err := checkNetAdmin(); err != nil {
		return err
	}
	warnBridgeNF(log)

	fw, err := OpenFirewall(o.Firewall)
	if err != nil {
		return err
	}
	bridges := &Bridges{}
	if err := bridges.Refresh(); err != nil {
		log.Warn("unlisted containers will not be recognised", "err", err)
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	fatal := make(chan error, cfg.Workers)
	st := &status{families: fw.Families()}
	var workers []*worker
	closeAll := func() error {
		var errs []error
		for _, w := range workers {
			errs = append(errs, w.close())
		}
		return errors.Join(errs...)
	}
	for i := 0; i < cfg.Workers; i++ {
		q := cfg.Queue + uint16(i)
		eng := inspect.New(inspect.Options{Tables: o.Tables, Bridges: bridges, Sink: o.Sink}, cfg.MaxFlows)
		w, err := openWorker(ctx, workerConfig{
			queue: q, queueLen: cfg.QueueLen, failOpen: cfg.FailOpen,
			mark: cfg.Mark, bypass: cfg.BypassMark, engine: eng, fatal: fatal,
		})
		if err != nil {
			return errors.Join(err, closeAll(), fw.UndoCreate())
		}
		workers = append(workers, w)
		st.workers = append(st.workers, w.stats)
		st.engines = append(st.engines, eng)
	}

	if err := checkNoOtherEngine(fw, cfg.Queue, cfg.Workers); err != nil {
		return errors.Join(err, closeAll(), fw.UndoCreate())
	}

	// Connections that exist now were never judged; they keep going as if
	// nfqguard were not there.
	if n, err := adoptExisting(cfg.BypassMark); err != nil {
		log.Warn("existing connections not adopted: they will be judged from their next packet", "err", err)
	} else {
		log.Info("adopted existing connections", "count", n)
	}

	spec := RuleSpec{
		FirstQueue: cfg.Queue, Queues: cfg.Workers, Mark: cfg.Mark, BypassMark: cfg.BypassMark,
		FastPath: cfg.FastPath, FailOpen: cfg.FailOpen,
	}
	if err := fw.Install(spec); err != nil {
		return errors.Join(err, closeAll())
	}
	log.Info("nfqguard running", "queues", queueRange(cfg.Queue, cfg.Workers), "firewall", strings.Join(st.families, "; "),
		"fast_path", cfg.FastPath, "fail_open", cfg.FailOpen, "mark", fmt.Sprintf("0x%x", cfg.Mark),
		"bypass_mark", fmt.Sprintf("0x%x", cfg.BypassMark))

	var runErr error
	tick := time.NewTicker(bridgeRefresh)
	defer tick.Stop()
loop:
	for {
		select {
		case <-ctx.Done():
			break loop
		case runErr = <-fatal:
			break loop
		case <-tick.C:
			if err := bridges.Refresh(); err != nil {
				log.Warn("refresh bridges", "err", err)
			}
		}
	}
	// Remove the redirect before unbinding, so no packet meets a queue with
	// no listener on the way out.
	rmErr := fw.Remove()
	cancel()
	closeErr := closeAll()
	logSummary(log, st)
	return errors.Join(runErr, rmErr, closeErr)
}

func queueRange(first uint16, n int) string {
	if n <= 1 {
		return strconv.Itoa(int(first))
	}
	return fmt.Sprintf("%d-%d", first, int(first)+n-1)
}

func logSummary(log *slog.Logger, st *status) {
	var lat Histogram
	var pkts, allowed, dropped, flows, blocked, enobufs uint64
	for i, w := range st.workers {
		lat.Merge(&w.Latency)
		s := st.engines[i].Stats()
		pkts += s.Packets.Load()
		allowed += s.Allowed.Load()
		dropped += s.Dropped.Load()
		flows += s.Flows.Load()
		blocked += s.Blocked.Load()
		enobufs += w.ENOBUFS.Load()
	}
	log.Info("nfqguard stopped", "packets", pkts, "allowed", allowed, "dropped", dropped, "flows", flows,
		"blocked_flows", blocked, "enobufs", enobufs,
		"verdict_p50", lat.Quantile(0.5), "verdict_p99", lat.Quantile(0.99))
}

// checkNetAdmin fails early, before anything is touched, when the process
// lacks CAP_NET_ADMIN in its effective set.
func checkNetAdmin() error {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return nil // cannot tell; the kernel will say no later
	}
	for _, line := range strings.Split(string(b), "\n") {
		hex, ok := strings.CutPrefix(line, "CapEff:")
		if !ok {
			continue
		}
		caps, err := strconv.ParseUint(strings.TrimSpace(hex), 16, 64)
		if err != nil {
			return nil
		}
		const capNetAdmin = 12
		if caps&(1<<capNetAdmin) == 0 {
			return ErrNotPermitted
		}
	}
	return nil
}

// warnBridgeNF warns when bridged (container-to-container) traffic skips
// iptables, and so nfqguard.
func warnBridgeNF(log *slog.Logger) {
	b, err := os.ReadFile("/proc/sys/net/bridge/bridge-nf-call-iptables")
	switch {
	case err != nil:
		log.Warn("br_netfilter is not loaded: container-to-container traffic on a bridge is invisible to nfqguard")
	case strings.TrimSpace(string(b)) == "0":
		log.Warn("net.bridge.bridge-nf-call-iptables = 0: container-to-container traffic on a bridge is invisible to nfqguard")
	}
}
