package queue

import (
	"time"

	"github.com/nfqguard/nfqguard/firewall"
	"github.com/nfqguard/nfqguard/inspect"
	"github.com/nfqguard/nfqguard/rules"
)

// Snapshot is a running engine's counters at one moment. Counters only
// grow while the engine runs; gauges (flows in the table, held flows) are
// current values. Take one with Monitor.Snapshot.
type Snapshot struct {
	Time       time.Time // when it was taken
	Started    time.Time // when the engine started judging
	Generation uint64    // generation of the rule table in use (see rules.Table)
	Queues     []QueueStats
	// Rules counts flows and packets by the rule that judged them, summed
	// over the queues, sorted by container, rule, direction and verdict.
	Rules   []RuleStats
	Latency LatencyStats
	// Percentiles of the verdict latency since the start, from the same
	// histogram at its full resolution.
	Percentiles LatencySummary
	// Redirect is what the firewall watcher knows of the redirect.
	Redirect firewall.Health
	// Docker is what the rule table in use knows of Docker.
	Docker rules.DockerStatus
}

// QueueStats are one queue's (one worker's) counters.
type QueueStats struct {
	Queue  uint16
	Engine inspect.Counts // the engine's counters
	// Kernel side.
	ENOBUFS       uint64 // receive buffer overruns reported to us
	RecvErrors    uint64
	VerdictErrors uint64 // verdicts the kernel refused or that could not be sent
	// From /proc/net/netfilter/nfnetlink_queue: packets the kernel dropped
	// because the queue was full (queue_dropped), and because it could not
	// send them to us (user_dropped). Zero when the file cannot be read.
	KernelDropped uint64
	UserDropped   uint64
}

// RuleStats counts what one rule judged. Rule is a rule id, or one of the
// engine's own names: "default", "undecided", "none" (neither end is a
// container).
type RuleStats struct {
	Container string // the [[container]] entry; "" for "none"
	Rule      string
	Direction string // "ingress" or "egress"
	Verdict   string // "allow" or "drop"
	Flows     uint64 // flows (and DNS queries) judged
	Packets   uint64 // their packets that reached the queue
}

// LatencyStats is the verdict-latency histogram (packet received → verdict
// sent) of all queues, cumulative at fixed bounds, as Prometheus wants it.
type LatencyStats struct {
	Count uint64
	Sum   time.Duration
	// Buckets[i] counts the observations known to be ≤ Bounds[i]: each
	// observation is counted at the first bound at or above the upper edge
	// of its internal bucket (within 25% of its value), so counts are
	// conservative.
	Bounds  []time.Duration
	Buckets []uint64
}

// LatencyBounds are LatencyStats' bucket bounds: 1 µs to about 1 s.
var LatencyBounds = []time.Duration{
	time.Microsecond, 2 * time.Microsecond, 5 * time.Microsecond,
	10 * time.Microsecond, 20 * time.Microsecond, 50 * time.Microsecond,
	100 * time.Microsecond, 200 * time.Microsecond, 500 * time.Microsecond,
	time.Millisecond, 2 * time.Millisecond, 5 * time.Millisecond,
	10 * time.Millisecond, 20 * time.Millisecond, 50 * time.Millisecond,
	100 * time.Millisecond, 250 * time.Millisecond, 500 * time.Millisecond, time.Second,
}
