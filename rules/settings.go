package rules

import (
	"time"
)

// EngineConfig is the [engine] section with defaults applied.
type EngineConfig struct {
	Queue      uint16 // first NFQUEUE number
	Workers    int    // resolved: never 0; queues are Queue..Queue+Workers-1
	FailOpen   bool   // use --queue-bypass and the kernel's fail-open flag
	Mark       uint32 // packet-mark bit meaning "already judged"
	BypassMark uint32 // connmark bit meaning "flow decided, keep it in the kernel"
	FastPath   bool   // false: every packet of every flow is judged in userspace
	Malformed  Action // verdict for packets that cannot be decoded
	MaxFlows   int    // flow-table slots per worker
	QueueLen   uint32 // kernel queue length per queue
	// RejudgeOnReload: on a reload, flows already allowed are judged again
	// by the new table (fast-path flows are sent back to the queue).
	RejudgeOnReload bool
	// GuardMark is the packet-mark bit of the guard that drops new flows
	// while the redirect is away from DOCKER-USER; 0: no guard.
	GuardMark uint32
	// DropInvalid (invalid = "drop"): packets conntrack calls INVALID or
	// does not track are dropped by a rule of nfqguard's; false ("docker"):
	// they get Docker's verdict, unjudged.
	DropInvalid bool
	// Firewall is the Docker firewall backend the redirect hooks into:
	// FirewallAuto (follow Docker), FirewallIPTables (DOCKER-USER) or
	// FirewallNftables (a chain of nfqguard's own ahead of Docker's
	// nftables table).
	Firewall string
}

// The values of [engine] firewall.
const (
	FirewallAuto     = "auto"
	FirewallIPTables = "iptables"
	FirewallNftables = "nftables"
)

// InspectConfig is the [inspect] section with defaults applied: how much
// of a flow deep inspection may look at before the rules with L7 fields
// (see Match.Need) must be settled without it.
type InspectConfig struct {
	MaxPackets   int           // packets of a flow looked at, at most
	MaxBytes     int           // payload bytes of a flow looked at, at most
	Undecided    Action        // verdict when the limits are reached with L7 rules still open
	MaxWait      time.Duration // how long a flow may wait for its facts
	MaxHeldFlows int           // flows held at once per worker
}

// DNSConfig is the [dns] section with defaults applied: how the engine
// learns, from the DNS answers a container receives, which names each
// remote address was resolved from (see the rule key to_names).
type DNSConfig struct {
	// Learn is true when answers are learned: dns.learn = true, or, when
	// the file leaves learn out, some rule has to_names.
	Learn bool
	// A binding of an answer lives its record's TTL clamped to
	// [MinTTL, MaxTTL], then Grace more, during which new flows still
	// match it (clients keep answers a little longer than their TTL).
	MinTTL, MaxTTL, Grace time.Duration
	// MaxNames bounds the (name, address) bindings kept per container;
	// the one expiring first makes room for a new one.
	MaxNames int
}

// LogConfig is the [log] section with defaults applied.
type LogConfig struct {
	// Blocked is "stdout", "stderr" or a file path; it is not opened here.
	Blocked string
	// Format is "json" (JSON lines) or "text" (key=value lines).
	Format string
	// Rate and Burst bound the events logged per rule: a token bucket
	// refilled at Rate events per second holding at most Burst. Events
	// beyond it are counted and reported in a "suppressed" record. Rate 0
	// means no limit.
	Rate  float64
	Burst int
	// Pcap is the file the first PcapPackets packets of each blocked flow
	// are written to; "" disables it. When the file reaches PcapMaxBytes
	// it is rotated (path.1, path.2, …), keeping PcapFiles files in all.
	Pcap         string
	PcapPackets  int
	PcapMaxBytes int64
	PcapFiles    int
}

// MetricsConfig is the [metrics] section with defaults applied.
type MetricsConfig struct {
	// Listen is the host:port of the Prometheus endpoint (/metrics); ""
	// disables it.
	Listen string
}

// StatusConfig is the [status] section with defaults applied.
type StatusConfig struct {
	// Socket is the unix socket "nfqguard status" and "nfqguard reload"
	// talk to; "" disables it.
	Socket string
}

// DockerConfig is the [docker] section.
type DockerConfig struct {
	// Socket is the Docker daemon's unix socket path, "" when the file
	// does not set it: the caller then uses DOCKER_HOST or
	// /var/run/docker.sock. A "unix://" prefix in the file is removed.
	Socket string
	// DropUnreachable (docker.unreachable = "drop", the default) drops
	// the flows of addresses no entry lists while Docker cannot be asked
	// and the file has entries resolved through it: such an address may
	// be a container those entries would select. False ("defaults")
	// judges them by [defaults]. See Table.Unreachable.
	DropUnreachable bool
}

// Defaults for optional keys, exported so that callers building an
// EngineConfig by hand (tests, tools) agree with the file's defaults.
const (
	DefaultMark       uint32 = 0x10000000 // engine.mark
	DefaultBypassMark uint32 = 0x20000000 // engine.bypass_mark
	DefaultGuardMark  uint32 = 0x40000000 // engine.guard_mark
	DefaultMaxFlows          = 65536      // engine.max_flows
	DefaultQueueLen          = 4096       // engine.queue_len
	DefaultBlockedLog        = "stdout"   // log.blocked

	DefaultLogFormat    = "json"   // log.format
	DefaultLogRate      = 20       // log.rate: events per second per rule
	DefaultLogBurst     = 100      // log.burst
	DefaultPcapPackets  = 4        // log.pcap_packets
	DefaultPcapMaxBytes = 64 << 20 // log.pcap_max_bytes: 64 MiB
	DefaultPcapFiles    = 5        // log.pcap_files

	DefaultMetricsListen = "127.0.0.1:9477"              // metrics.listen
	DefaultStatusSocket  = "/run/nfqguard/nfqguard.sock" // status.socket

	DefaultMaxPackets          = 8           // inspect.max_packets
	DefaultMaxBytes            = 16384       // inspect.max_bytes
	DefaultUndecided    Action = Drop        // inspect.undecided
	DefaultMaxWait             = time.Second // inspect.max_wait
	DefaultMaxHeldFlows        = 256         // inspect.max_held_flows

	DefaultMinTTL   = 5 * time.Second  // dns.min_ttl
	DefaultMaxTTL   = time.Hour        // dns.max_ttl
	DefaultGrace    = 30 * time.Second // dns.grace
	DefaultMaxNames = 4096             // dns.max_names
)

// Limits enforced on [dns] keys; min_ttl and grace are at least 0.
const (
	MaxMinTTL   = time.Hour      // dns.min_ttl upper bound
	MinMaxTTL   = time.Second    // dns.max_ttl lower bound
	MaxMaxTTL   = 24 * time.Hour // dns.max_ttl upper bound
	MaxGrace    = time.Hour      // dns.grace upper bound
	MaxMaxNames = 1 << 20        // dns.max_names upper bound
)

// Limits enforced on [engine] keys.
const (
	MaxWorkers  = 1024     // engine.workers upper bound
	MinMaxFlows = 1024     // engine.max_flows lower bound
	MaxMaxFlows = 16777216 // engine.max_flows upper bound
	MaxQueueLen = 1048576  // engine.queue_len upper bound
)

// Limits enforced on [inspect] keys; max_packets and max_held_flows are at
// least 1.
const (
	MaxMaxPackets   = 64                    // inspect.max_packets upper bound
	MinMaxBytes     = 256                   // inspect.max_bytes lower bound
	MaxMaxBytes     = 65536                 // inspect.max_bytes upper bound
	MinMaxWait      = 10 * time.Millisecond // inspect.max_wait lower bound
	MaxMaxWait      = 60 * time.Second      // inspect.max_wait upper bound
	MaxMaxHeldFlows = 65536                 // inspect.max_held_flows upper bound
)

// Limits enforced on [log] keys; burst, pcap_packets and pcap_files are
// at least 1, rate at least 0.
const (
	MaxLogRate      = 1e6     // log.rate upper bound
	MaxLogBurst     = 1000000 // log.burst upper bound
	MaxPcapPackets  = 64      // log.pcap_packets upper bound
	MinPcapMaxBytes = 1 << 16 // log.pcap_max_bytes lower bound
	MaxPcapMaxBytes = 1 << 40 // log.pcap_max_bytes upper bound
	MaxPcapFiles    = 1000    // log.pcap_files upper bound
)
