package main

import (
	"fmt"
	"log/slog"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nfqguard/nfqguard/control"
	"github.com/nfqguard/nfqguard/firewall"
	"github.com/nfqguard/nfqguard/flowlog"
	"github.com/nfqguard/nfqguard/metrics"
	"github.com/nfqguard/nfqguard/pcaplog"
	"github.com/nfqguard/nfqguard/queue"
	"github.com/nfqguard/nfqguard/rules"
)

// daemon is what a running "nfqguard run" shares between its signal
// handlers, its status socket and its metrics: it reloads the rule file
// and reports the engine's state.
type daemon struct {
	path    string
	log     *slog.Logger
	tables  *atomic.Pointer[rules.Table]
	updater *tableUpdater // nil when Docker is not watched
	mon     *queue.Monitor
	sampler *control.Sampler
	reloads *metrics.Reloads

	mu      sync.Mutex   // serialises reloads
	running *rules.Table // the file's table in force, as parsed
	gen     uint64
	last    *control.ReloadResult
}

// Reload loads the rule file again. A file that does not load changes
// nothing: the rules in force stay, the error (with file:line:col) is
// logged and returned, and the failure is counted. A good file is swapped
// in atomically: each packet is judged by the old table or the new one,
// never a mix. Settings that only take effect at start keep their running
// values and are reported.
func (d *daemon) Reload() control.ReloadResult {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := time.Now()
	r := d.reload(now)
	d.reloads.Observe(r.OK, now)
	d.last = &r
	return r
}

func (d *daemon) reload(now time.Time) control.ReloadResult {
	// A file others could have changed since the start is refused like a
	// malformed one: the rules in force stay.
	t, err := loadRuleFile(d.path)
	if err != nil {
		d.log.Error("reload refused: the rules in force stay", "err", err)
		return control.ReloadResult{Time: now, Error: err.Error(), Generation: d.gen}
	}
	restart := keepStartOnly(d.running, t)
	d.gen++
	t.Generation = d.gen
	if d.updater != nil {
		d.updater.rebase(t)
	} else {
		d.tables.Store(t)
	}
	d.running = t
	r := control.ReloadResult{Time: now, OK: true, Generation: d.gen, Restart: restart}
	args := []any{"file", d.path, "generation", d.gen}
	if len(restart) > 0 {
		args = append(args, "restart_needed", restart)
	}
	if t.Engine.RejudgeOnReload && t.Engine.FastPath {
		n, err := firewall.ReturnFastPathFlows(t.Engine.BypassMark)
		if err != nil {
			d.log.Warn("rejudge_on_reload: fast-path flows stay on the fast path", "err", err)
		}
		r.Returned = n
		args = append(args, "fast_path_returned", n)
	}
	d.log.Info("rules reloaded", args...)
	return r
}

// keepStartOnly copies into next the settings of running that a running
// engine cannot change (queues, table sizes, the log's and listeners'
// places), and names those that differ, so that the next restart applies
// them. What can change live stays next's: rules, defaults,
// engine.malformed, engine.rejudge_on_reload and inspect.undecided.
func keepStartOnly(running, next *rules.Table) []string {
	var diff []string
	note := func(changed bool, key string) {
		if changed {
			diff = append(diff, key)
		}
	}
	re, ne := running.Engine, next.Engine
	note(re.Queue != ne.Queue, "engine.queue")
	note(re.Workers != ne.Workers, "engine.workers")
	note(re.FailOpen != ne.FailOpen, "engine.fail_open")
	note(re.Mark != ne.Mark, "engine.mark")
	note(re.BypassMark != ne.BypassMark, "engine.bypass_mark")
	note(re.FastPath != ne.FastPath, "engine.fast_path")
	note(re.MaxFlows != ne.MaxFlows, "engine.max_flows")
	note(re.QueueLen != ne.QueueLen, "engine.queue_len")
	malformed, rejudge := ne.Malformed, ne.RejudgeOnReload
	next.Engine = re
	next.Engine.Malformed, next.Engine.RejudgeOnReload = malformed, rejudge

	ri, ni := running.Inspect, next.Inspect
	note(ri.MaxPackets != ni.MaxPackets, "inspect.max_packets")
	note(ri.MaxBytes != ni.MaxBytes, "inspect.max_bytes")
	note(ri.MaxWait != ni.MaxWait, "inspect.max_wait")
	note(ri.MaxHeldFlows != ni.MaxHeldFlows, "inspect.max_held_flows")
	undecided := ni.Undecided
	next.Inspect = ri
	next.Inspect.Undecided = undecided

	note(running.Log != next.Log, "log")
	note(running.Metrics != next.Metrics, "metrics")
	note(running.Status != next.Status, "status")
	note(running.Docker != next.Docker, "docker")
	next.Log, next.Metrics, next.Status, next.Docker = running.Log, running.Metrics, running.Status, running.Docker
	return diff
}

// Status is the status socket's view of the engine.
func (d *daemon) Status(top int) (*control.Status, error) {
	snap, ok := d.mon.Snapshot()
	if !ok {
		return nil, fmt.Errorf("the engine is not running (starting or stopping)")
	}
	flows, _ := d.mon.TopBlocked(top)
	st := control.Build(snap, flows, d.sampler, top)
	st.PID, st.Config = os.Getpid(), d.path
	d.mu.Lock()
	if d.last != nil {
		r := *d.last
		st.LastReload = &r
	}
	d.mu.Unlock()
	return st, nil
}

// logStats and pcapStats adapt the log's and the capture's counters for
// the metrics.
type logStats struct{ l *flowlog.Log }

func (s logStats) LogStats() metrics.LogStats {
	st := s.l.Stats()
	return metrics.LogStats{
		Blocked: st.Blocked, Allowed: st.Allowed, Ends: st.Ends,
		Suppressed: st.Suppressed, SuppressedRecords: st.SuppressedRecords,
		Dropped: st.Dropped, WriteErrors: st.WriteErrors, Reopens: st.Reopens,
	}
}

type pcapStats struct{ w *pcaplog.Writer }

func (s pcapStats) PcapStats() metrics.PcapStats {
	st := s.w.Stats()
	return metrics.PcapStats{Packets: st.Packets, Dropped: st.Dropped, Bytes: st.Bytes, Rotations: st.Rotations, WriteErrors: st.WriteErrors}
}
