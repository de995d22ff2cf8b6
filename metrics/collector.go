package metrics

import (
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/nfqguard/nfqguard/firewall"
	"github.com/nfqguard/nfqguard/inspect"
	"github.com/nfqguard/nfqguard/queue"
	"github.com/nfqguard/nfqguard/rules"
)

// Source gives the engine's counters: queue.Monitor is one. Snapshot
// returns false while no engine runs. It is called once per scrape and
// must be safe for concurrent use.
type Source interface {
	Snapshot() (queue.Snapshot, bool)
}

// LogSource gives the blocked-flow log's counters. LogStats is called once
// per scrape and must be safe for concurrent use.
type LogSource interface {
	LogStats() LogStats
}

// LogStats are the blocked-flow log's counters, each counting since the
// log was opened.
type LogStats struct {
	Blocked           uint64 // "blocked" records written (a flow's first block)
	Allowed           uint64 // "allowed" records written (rules with log = true)
	Ends              uint64 // "end" records written (a blocked flow's end)
	Suppressed        uint64 // events not written because of the rate limit
	SuppressedRecords uint64 // records written that report suppressed events
	Dropped           uint64 // events lost to a full buffer
	WriteErrors       uint64 // failed writes
	Reopens           uint64 // times the file was reopened (log rotation)
}

// PcapSource gives the packet capture's counters. PcapStats is called
// once per scrape and must be safe for concurrent use.
type PcapSource interface {
	PcapStats() PcapStats
}

// PcapStats are the packet capture's counters, each counting since the
// capture was opened.
type PcapStats struct {
	Packets     uint64 // packets written
	Dropped     uint64 // packets lost to a full buffer
	Bytes       uint64 // bytes written, headers included
	Rotations   uint64 // files started after the first
	WriteErrors uint64 // failed writes
}

const ns = "nfqguard"

func desc(name, help string, labels ...string) *prometheus.Desc {
	return prometheus.NewDesc(ns+"_"+name, help, labels, nil)
}

var (
	q = "queue"

	descPackets = desc("packets_total",
		"Packets judged on an NFQUEUE, by queue and verdict (accept or drop).", q, "verdict")
	descRuleFlows = desc("rule_flows_total",
		"Flows (and DNS queries judged one by one) judged, by the rule that judged them. "+
			"Rule is a rule id or default, undecided or none (neither end is a container; container is empty then).",
		"container", "rule", "direction", "verdict")
	descRulePackets = desc("rule_packets_total",
		"Packets of the flows in nfqguard_rule_flows_total that reached the queue, by the rule that judged the flow.",
		"container", "rule", "direction", "verdict")

	descFlows = desc("flows_total",
		"Flows judged by the rules.", q)
	descFlowsBlocked = desc("flows_blocked_total",
		"Flows judged drop.", q)
	descFlowsFastPath = desc("flows_fast_path_total",
		"Allowed flows handed to the connmark fast path: their later packets no longer reach the queue.", q)
	descFlowsMidstream = desc("flows_midstream_total",
		"TCP flows first seen after their SYN (for example flows open before nfqguard started).", q)
	descFlowsRejudged = desc("flows_rejudged_total",
		"Live flows whose verdict changed when judged again by a reloaded configuration "+
			"(dropped flows always are; allowed ones with [engine] rejudge_on_reload).", q)

	descInspectFlows = desc("inspect_flows_total",
		"Flows whose verdict needed a deep-inspection fact (TLS SNI, HTTP host or path, DNS name).", q)
	descInspectHeldFlows = desc("inspect_held_flows_total",
		"Flows that had packets held back while deep inspection waited for more data.", q)
	descInspectHeldPackets = desc("inspect_held_packets_total",
		"Packets held back while deep inspection waited for more data.", q)
	descInspectDecided = desc("inspect_decided_total",
		"Inspected flows and DNS queries, by result: fact (judged by the fact found) or "+
			"undecided (no fact could be found; judged by the [inspect] undecided setting).", q, "result")
	descInspectHeldFlowsNow = desc("inspect_held_flows",
		"Flows with packets held back now.", q)
	descInspectHeldPacketsNow = desc("inspect_held_packets",
		"Packets held back now.", q)
	descInspectHoldFull = desc("inspect_hold_full_total",
		"Flows that could not be held because max_held_flows flows were held already.", q)
	descInspectDuplicates = desc("inspect_duplicates_total",
		"Retransmissions of held bytes, dropped.", q)
	descQUIC = desc("inspect_quic_total",
		"QUIC outcomes: inspected (UDP flows held until their ClientHello was read), "+
			"unsupported_version (flows that began with a QUIC version nfqguard cannot read, judged by [inspect] undecided), "+
			"version_negotiation and retry (Version Negotiation and Retry packets from the server of a held flow).", q, "result")
	descDNSQueries = desc("dns_queries_total",
		"DNS queries judged one by one, by verdict (accept or drop).", q, "verdict")
	descResets = desc("resets_total",
		"Dropped TCP flows cut with RST packets.", q)

	descMalformed = desc("malformed_packets_total",
		"Packets that could not be decoded, by kind: bad_version (empty, or neither IPv4 nor IPv6), "+
			"truncated_ipv4, truncated_ipv6, truncated_tcp, truncated_udp, truncated_icmp (header cut short), "+
			"bad_ihl (IPv4 header length below 20 bytes or above the total length), "+
			"bad_ip_length (IPv4 total length or IPv6 payload length beyond the packet), "+
			"bad_data_offset (TCP data offset below 20 bytes or beyond the segment), "+
			"bad_udp_length (UDP length below 8 or beyond the datagram), "+
			"ipv6_ext_chain (IPv6 extension header cut, misplaced, or more than 8), "+
			"fragment (IP fragment without its transport header). "+
			"Their verdict is the [engine] malformed setting.", q, "kind")
	descICMPErrors = desc("icmp_errors_total",
		"ICMP and ICMPv6 error packets, by result: matched (the flow they quote is live; they get its verdict), "+
			"unmatched (no such flow, or not sent to the quoted packet's sender; judged as ICMP by the rules), "+
			"bad_quote (the quoted packet cannot be read; judged as ICMP by the rules).", q, "result")
	descForeignFlows = desc("foreign_flows_total",
		"Flows on the queue where neither end is a container (a too broad iptables rule); they are allowed, by the rule none.", q)

	descLatency = desc("verdict_latency_seconds",
		"Time from receiving a packet from the kernel to sending its verdict, all queues. "+
			"Each observation is counted at the first bound within 25% above it, so bucket counts are conservative.")

	descKernelDropped = desc("queue_kernel_dropped_total",
		"Packets the kernel dropped because the queue was full (queue_dropped in /proc/net/netfilter/nfnetlink_queue); "+
			"their verdict is the kernel's (fail-open or drop). 0 when the file cannot be read.", q)
	descUserDropped = desc("queue_user_dropped_total",
		"Packets the kernel could not send to nfqguard (user_dropped in /proc/net/netfilter/nfnetlink_queue). "+
			"0 when the file cannot be read.", q)
	descENOBUFS = desc("queue_enobufs_total",
		"Netlink receive buffer overruns (ENOBUFS) reported to nfqguard: packets were lost.", q)
	descRecvErrors = desc("queue_receive_errors_total",
		"Errors receiving from the netlink socket other than ENOBUFS.", q)
	descVerdictErrors = desc("verdict_errors_total",
		"Verdicts the kernel refused or that could not be sent.", q)

	descFlowTableFlows = desc("flow_table_flows",
		"Live flows in the flow table now.", q)
	descFlowTableSlots = desc("flow_table_slots",
		"Slots in the flow table (its capacity).", q)
	descFlowTableEvictions = desc("flow_table_evictions_total",
		"Live flows pushed out of a full flow table; their next packet is judged as a new flow.", q)

	descRedirectEvents = desc("redirect_events_total",
		"Looks at the firewall that found nfqguard's rules disturbed, by what was found: "+
			"removed (a rule of nfqguard's gone, put back), duplicated (there more than once, put back to one), "+
			"chain_recreated (the redirect's chain, DOCKER-USER or NFQGUARD, gone, created again), "+
			"jump_missing (FORWARD no longer jumped to it; nfqguard's own jump inserted), "+
			"jump_misplaced (Docker's jump to DOCKER-USER below a Docker chain that accepts; nfqguard's own jump inserted at the top), "+
			"shadowed (a rule above the redirect may end the walk first; reported, not removed), "+
			"guard_removed (a guard rule gone, put back), restore_failed (the rules could not be put back), "+
			"backend_changed (Docker changed firewall backend; the redirect moved to the new one's hook), "+
			"backend_mismatch (Docker uses another firewall backend than [engine] firewall insists on; reported).", "event")
	descBackendMismatch = desc("redirect_backend_mismatch",
		"1 while Docker uses another firewall backend than [engine] firewall insists on (the redirect stays where the setting puts it); 0 otherwise.")
	descRedirectInPlace = desc("redirect_in_place",
		"1 while, at the watcher's last look, the redirect was in place in every family and nothing above it could end a packet's walk first; 0 otherwise.")
	descOwnDrops = desc("redirect_guard_dropped_packets_total",
		"Packets the guard dropped: packets of new flows that were not judged because the redirect was away (a flush, an old ruleset restored), dropped on their way out instead of passing.")
	descInvalidDrops = desc("invalid_packets_dropped_total",
		"Forwarded packets without a connection that nfqguard's rules dropped ([engine] invalid = \"drop\"), by kind: "+
			"invalid (conntrack state INVALID, e.g. TCP SYN+FIN or out of window) or untracked (NOTRACK in the raw table).", "kind")

	descDockerReachable = desc("docker_reachable",
		"1 while the rules in force were resolved against Docker's last listing, 0 while Docker cannot be asked "+
			"(then, with docker.unreachable = \"drop\", traffic of addresses no entry lists is dropped: rule docker-unreachable). "+
			"Absent when Docker is not watched.")
	descDockerUnresolved = desc("docker_unresolved_entries",
		"[[container]] entries resolved through Docker (by name, image or label) that have no address now: their rules match nothing. "+
			"Absent when the file has none.")

	descGeneration = desc("rule_table_generation",
		"Generation of the rule table in use; it changes when a configuration reload is applied.")
	descStartTime = desc("start_time_seconds",
		"When the engine started judging packets, in seconds since the Unix epoch.")

	descReloads = desc("config_reloads_total",
		"Configuration reloads, by result (success or failure). The initial load is not counted.", "result")
	descLastReloadTime = desc("config_last_reload_success_timestamp_seconds",
		"When the configuration was last loaded successfully (initial load or reload), in seconds since the Unix epoch.")
	descLastReloadOK = desc("config_last_reload_successful",
		"Whether the last configuration load or reload succeeded (1) or failed (0): after a failure the previous configuration stays in use.")

	descStatusSocketUp = desc("status_socket_up",
		"1 while the status socket ([status] socket) answers, 0 when it could not be opened or has stopped: "+
			"the engine judges traffic without it, but nfqguard status and nfqguard reload cannot reach it. "+
			"Absent when the socket is off.")

	descLogRecords = desc("log_records_total",
		"Records written to the flow log, by event: blocked (a flow's first block), allowed (rules with log = true), "+
			"end (a blocked flow's end), suppressed (a record reporting events left out by the rate limit).", "event")
	descLogSuppressed = desc("log_suppressed_events_total",
		"Flow log events left out by the rate limit.")
	descLogDropped = desc("log_dropped_events_total",
		"Flow log events lost because the log's buffer was full (the disk was too slow).")
	descLogWriteErrors = desc("log_write_errors_total",
		"Failed writes to the flow log.")
	descLogReopens = desc("log_reopens_total",
		"Times the flow log file was reopened (log rotation).")

	descPcapPackets = desc("pcap_packets_total",
		"Packets of blocked flows written to the pcap file.")
	descPcapDropped = desc("pcap_dropped_packets_total",
		"Packets of blocked flows not captured because the capture's buffer was full.")
	descPcapBytes = desc("pcap_bytes_total",
		"Bytes written to pcap files.")
	descPcapRotations = desc("pcap_rotations_total",
		"pcap files started after the first one (rotation).")
	descPcapWriteErrors = desc("pcap_write_errors_total",
		"Failed writes to the pcap file.")

	allDescs = []*prometheus.Desc{
		descPackets, descRuleFlows, descRulePackets,
		descFlows, descFlowsBlocked, descFlowsFastPath, descFlowsMidstream, descFlowsRejudged,
		descInspectFlows, descInspectHeldFlows, descInspectHeldPackets, descInspectDecided,
		descInspectHeldFlowsNow, descInspectHeldPacketsNow, descInspectHoldFull, descInspectDuplicates,
		descQUIC, descDNSQueries, descResets,
		descMalformed, descICMPErrors, descForeignFlows,
		descLatency,
		descKernelDropped, descUserDropped, descENOBUFS, descRecvErrors, descVerdictErrors,
		descFlowTableFlows, descFlowTableSlots, descFlowTableEvictions,
		descRedirectEvents, descRedirectInPlace, descBackendMismatch, descOwnDrops, descInvalidDrops,
		descDockerReachable, descDockerUnresolved,
		descGeneration, descStartTime,
		descReloads, descLastReloadTime, descLastReloadOK,
		descStatusSocketUp,
		descLogRecords, descLogSuppressed, descLogDropped, descLogWriteErrors, descLogReopens,
		descPcapPackets, descPcapDropped, descPcapBytes, descPcapRotations, descPcapWriteErrors,
	}
)

// Collector is a prometheus.Collector of nfqguard's metrics. It reads its
// sources at scrape time and keeps no counters of its own, so nothing is
// added to the packet path. It is safe for concurrent use.
type Collector struct {
	o Options
}

// NewCollector returns a Collector of the sources in o. Nil sources are
// left out.
func NewCollector(o Options) *Collector {
	return &Collector{o: o}
}

// Describe sends the descriptors of all the metrics c may collect.
func (c *Collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range allDescs {
		ch <- d
	}
}

// Collect reads the sources and sends their metrics. Engine metrics are
// left out while no engine runs.
func (c *Collector) Collect(ch chan<- prometheus.Metric) {
	if c.o.Source != nil {
		if s, ok := c.o.Source.Snapshot(); ok {
			c.collectSnapshot(ch, &s)
		}
	}
	if c.o.Reloads != nil {
		c.o.Reloads.collect(ch)
	}
	if c.o.StatusSocket != nil {
		c.o.StatusSocket.collect(ch)
	}
	if c.o.Log != nil {
		st := c.o.Log.LogStats()
		counter(ch, descLogRecords, st.Blocked, "blocked")
		counter(ch, descLogRecords, st.Allowed, "allowed")
		counter(ch, descLogRecords, st.Ends, "end")
		counter(ch, descLogRecords, st.SuppressedRecords, "suppressed")
		counter(ch, descLogSuppressed, st.Suppressed)
		counter(ch, descLogDropped, st.Dropped)
		counter(ch, descLogWriteErrors, st.WriteErrors)
		counter(ch, descLogReopens, st.Reopens)
	}
	if c.o.Pcap != nil {
		st := c.o.Pcap.PcapStats()
		counter(ch, descPcapPackets, st.Packets)
		counter(ch, descPcapDropped, st.Dropped)
		counter(ch, descPcapBytes, st.Bytes)
		counter(ch, descPcapRotations, st.Rotations)
		counter(ch, descPcapWriteErrors, st.WriteErrors)
	}
}

func (c *Collector) collectSnapshot(ch chan<- prometheus.Metric, s *queue.Snapshot) {
	seen := make(map[uint16]bool, len(s.Queues))
	for i := range s.Queues {
		qs := &s.Queues[i]
		if seen[qs.Queue] {
			continue // a queue has one worker; a second entry would fail the scrape
		}
		seen[qs.Queue] = true
		c.collectQueue(ch, qs)
	}
	c.collectRules(ch, s.Rules)
	collectLatency(ch, &s.Latency)
	c.collectRedirect(ch, &s.Redirect)
	collectDocker(ch, &s.Docker)
	gauge(ch, descGeneration, float64(s.Generation))
	if !s.Started.IsZero() {
		gauge(ch, descStartTime, unixSeconds(s.Started))
	}
}

func (c *Collector) collectQueue(ch chan<- prometheus.Metric, qs *queue.QueueStats) {
	l := strconv.FormatUint(uint64(qs.Queue), 10)
	e := &qs.Engine
	counter(ch, descPackets, e.Allowed, l, "accept")
	counter(ch, descPackets, e.Dropped, l, "drop")

	counter(ch, descFlows, e.Flows, l)
	counter(ch, descFlowsBlocked, e.Blocked, l)
	counter(ch, descFlowsFastPath, e.FastPath, l)
	counter(ch, descFlowsMidstream, e.Midstream, l)
	counter(ch, descFlowsRejudged, e.Rejudged, l)

	counter(ch, descInspectFlows, e.Inspected, l)
	counter(ch, descInspectHeldFlows, e.HeldFlows, l)
	counter(ch, descInspectHeldPackets, e.HeldPackets, l)
	counter(ch, descInspectDecided, e.Decided, l, "fact")
	counter(ch, descInspectDecided, e.Undecided, l, "undecided")
	gauge(ch, descInspectHeldFlowsNow, float64(e.HeldNow), l)
	gauge(ch, descInspectHeldPacketsNow, float64(e.HeldPacketsNow), l)
	counter(ch, descInspectHoldFull, e.HoldFull, l)
	counter(ch, descInspectDuplicates, e.HeldDuplicates, l)
	counter(ch, descQUIC, e.QUIC[inspect.QUICInspected], l, "inspected")
	counter(ch, descQUIC, e.QUIC[inspect.QUICUnsupportedVersion], l, "unsupported_version")
	counter(ch, descQUIC, e.QUIC[inspect.QUICVersionNegotiation], l, "version_negotiation")
	counter(ch, descQUIC, e.QUIC[inspect.QUICRetry], l, "retry")
	counter(ch, descDNSQueries, e.AllowedQueries, l, "accept")
	counter(ch, descDNSQueries, e.BlockedQueries, l, "drop")
	counter(ch, descResets, e.Resets, l)

	for k, n := range e.MalformedKinds {
		counter(ch, descMalformed, n, l, inspect.MalformedKind(k).String())
	}
	counter(ch, descICMPErrors, e.ICMPErrorsMatched, l, "matched")
	counter(ch, descICMPErrors, e.ICMPErrorsUnmatched, l, "unmatched")
	counter(ch, descICMPErrors, e.ICMPErrorsBadQuote, l, "bad_quote")
	counter(ch, descForeignFlows, e.NotConsumed, l)

	counter(ch, descKernelDropped, qs.KernelDropped, l)
	counter(ch, descUserDropped, qs.UserDropped, l)
	counter(ch, descENOBUFS, qs.ENOBUFS, l)
	counter(ch, descRecvErrors, qs.RecvErrors, l)
	counter(ch, descVerdictErrors, qs.VerdictErrors, l)

	gauge(ch, descFlowTableFlows, float64(e.FlowTableFlows), l)
	gauge(ch, descFlowTableSlots, float64(e.FlowTableSize), l)
	counter(ch, descFlowTableEvictions, e.Evictions, l)
}

func (c *Collector) collectRedirect(ch chan<- prometheus.Metric, h *firewall.Health) {
	for _, k := range firewall.EventKinds {
		counter(ch, descRedirectEvents, h.Events[k], k)
	}
	inPlace := 0.0
	if h.InPlace {
		inPlace = 1
	}
	gauge(ch, descRedirectInPlace, inPlace)
	mismatch := 0.0
	if h.Mismatch != "" {
		mismatch = 1
	}
	gauge(ch, descBackendMismatch, mismatch)
	counter(ch, descOwnDrops, h.Dropped["guard"])
	counter(ch, descInvalidDrops, h.Dropped["invalid"], "invalid")
	counter(ch, descInvalidDrops, h.Dropped["untracked"], "untracked")
}

func collectDocker(ch chan<- prometheus.Metric, d *rules.DockerStatus) {
	switch {
	case !d.UnreachableSince.IsZero():
		gauge(ch, descDockerReachable, 0)
	case d.Resolved:
		gauge(ch, descDockerReachable, 1)
	}
	if d.Dynamic {
		gauge(ch, descDockerUnresolved, float64(len(d.Unresolved)))
	}
}

type ruleKey struct{ container, rule, direction, verdict string }

// collectRules sends the rule counters, summing entries with the same
// labels (Snapshot.Rules has none, but two would fail the whole scrape).
func (c *Collector) collectRules(ch chan<- prometheus.Metric, rules []queue.RuleStats) {
	type sums struct{ flows, packets uint64 }
	keys := make([]ruleKey, 0, len(rules))
	m := make(map[ruleKey]*sums, len(rules))
	for _, r := range rules {
		k := ruleKey{label(r.Container), label(r.Rule), label(r.Direction), label(r.Verdict)}
		s := m[k]
		if s == nil {
			s = &sums{}
			m[k] = s
			keys = append(keys, k)
		}
		s.flows += r.Flows
		s.packets += r.Packets
	}
	for _, k := range keys {
		s := m[k]
		counter(ch, descRuleFlows, s.flows, k.container, k.rule, k.direction, k.verdict)
		counter(ch, descRulePackets, s.packets, k.container, k.rule, k.direction, k.verdict)
	}
}

func collectLatency(ch chan<- prometheus.Metric, l *queue.LatencyStats) {
	n := min(len(l.Bounds), len(l.Buckets))
	buckets := make(map[float64]uint64, n)
	for i := range n {
		buckets[l.Bounds[i].Seconds()] = l.Buckets[i]
	}
	send(ch, descLatency, func() (prometheus.Metric, error) {
		return prometheus.NewConstHistogram(descLatency, l.Count, l.Sum.Seconds(), buckets)
	})
}

// label makes s a valid label value: a value that is not UTF-8 would fail
// the whole scrape.
func label(s string) string { return strings.ToValidUTF8(s, "\uFFFD") }

func unixSeconds(t time.Time) float64 { return float64(t.UnixNano()) / 1e9 }

func counter(ch chan<- prometheus.Metric, d *prometheus.Desc, v uint64, labels ...string) {
	send(ch, d, func() (prometheus.Metric, error) {
		return prometheus.NewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	})
}

func gauge(ch chan<- prometheus.Metric, d *prometheus.Desc, v float64, labels ...string) {
	send(ch, d, func() (prometheus.Metric, error) {
		return prometheus.NewConstMetric(d, prometheus.GaugeValue, v, labels...)
	})
}

// send sends the metric mk makes, or an invalid metric reporting its
// error (which fails the scrape, where a panic would end the daemon).
func send(ch chan<- prometheus.Metric, d *prometheus.Desc, mk func() (prometheus.Metric, error)) {
	m, err := mk()
	if err != nil {
		m = prometheus.NewInvalidMetric(d, err)
	}
	ch <- m
}
