package queue

import (
	"cmp"
	"slices"
	"sync"
	"time"

	"github.com/nfqguard/nfqguard/inspect"
)

// callTimeout bounds how long a status request waits for a worker to run
// it between batches (a worker gets to it within its receive timeout).
const callTimeout = 2 * time.Second

// Monitor gives other goroutines (the metrics endpoint, the status socket)
// a view of a running engine. Pass one in Options; it is safe for
// concurrent use, and reports nothing while no engine runs.
type Monitor struct {
	mu sync.Mutex
	st *status // nil while no engine runs
}

// NewMonitor returns a Monitor for Options.Monitor.
func NewMonitor() *Monitor { return &Monitor{} }

func (m *Monitor) attach(st *status) {
	if m == nil {
		return
	}
	m.mu.Lock()
	m.st = st
	m.mu.Unlock()
}

func (m *Monitor) status() *status {
	if m == nil {
		return nil
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.st
}

// Snapshot returns the engine's counters now, or false when no engine is
// running.
func (m *Monitor) Snapshot() (Snapshot, bool) {
	st := m.status()
	if st == nil {
		return Snapshot{}, false
	}
	return st.snapshot(), true
}

// BlockedFlow is a live blocked flow, with the queue whose engine holds it.
type BlockedFlow struct {
	Queue uint16
	inspect.BlockedFlow
}

// TopBlocked returns up to n live blocked flows with the most packets,
// across all queues. Each worker walks its flow table between two batches
// (about a millisecond for 65,536 slots), so do not call it in a loop.
func (m *Monitor) TopBlocked(n int) ([]BlockedFlow, bool) {
	st := m.status()
	if st == nil {
		return nil, false
	}
	var all []BlockedFlow
	for i, w := range st.runners {
		var top []inspect.BlockedFlow
		if !w.call(func() { top = st.engines[i].TopBlocked(n, time.Now()) }, callTimeout) {
			continue
		}
		for _, f := range top {
			all = append(all, BlockedFlow{Queue: w.stats.Queue, BlockedFlow: f})
		}
	}
	slices.SortStableFunc(all, func(a, b BlockedFlow) int { return cmp.Compare(b.Packets, a.Packets) })
	return all[:min(n, len(all))], true
}

func (st *status) snapshot() Snapshot {
	t := st.tables.Load()
	s := Snapshot{Time: time.Now(), Started: st.started, Generation: t.Generation, Redirect: st.fw.Health(), Docker: t.DockerStatus()}
	drops, _ := queueDrops() // unreadable: zeros
	var lat Histogram
	byRule := map[RuleStats]*RuleStats{} // keyed by the labels, counts zero
	var counts []inspect.RuleCount
	for i, w := range st.workers {
		lat.Merge(&w.Latency)
		e := st.engines[i]
		d := drops[w.Queue]
		s.Queues = append(s.Queues, QueueStats{
			Queue: w.Queue, Engine: e.Counts(),
			ENOBUFS: w.ENOBUFS.Load(), RecvErrors: w.RecvErrors.Load(), VerdictErrors: w.VerdictErrors.Load(),
			KernelDropped: d.queue, UserDropped: d.user,
		})
		counts = e.RuleCounts(counts[:0])
		for _, c := range counts {
			k := RuleStats{Container: c.Container, Rule: c.RuleID, Direction: c.Direction.String(), Verdict: c.Action.String()}
			r := byRule[k]
			if r == nil {
				r = &k
				byRule[k] = r
			}
			r.Flows += c.Flows
			r.Packets += c.Packets
		}
	}
	for _, r := range byRule {
		s.Rules = append(s.Rules, *r)
	}
	slices.SortFunc(s.Rules, func(a, b RuleStats) int {
		return cmp.Or(cmp.Compare(a.Container, b.Container), cmp.Compare(a.Rule, b.Rule),
			cmp.Compare(a.Direction, b.Direction), cmp.Compare(a.Verdict, b.Verdict))
	})
	s.Latency.Bounds = LatencyBounds
	s.Latency.Buckets, s.Latency.Sum = lat.Cumulative(LatencyBounds)
	s.Latency.Count = lat.Count()
	s.Percentiles = lat.Summarize()
	// Read after the buckets, the count may still trail them by the
	// observations made in between.
	s.Latency.Count = max(s.Latency.Count, s.Latency.Buckets[len(s.Latency.Buckets)-1])
	return s
}
