// Package metrics serves nfqguard's Prometheus endpoint: /metrics in the
// Prometheus text exposition format, and / linking to it.
//
// The engine's numbers are read from a Source (a *queue.Monitor) at each
// scrape; nothing is counted on the packet path for them. While no engine
// runs, the engine's metrics are absent (alert on
// absent(nfqguard_packets_total)); the Go runtime (go_*) and process
// (process_*: resident memory, CPU, open files) metrics are always there,
// as are promhttp_metric_handler_* (scrapes of the endpoint, and failed
// ones: errors are not logged).
//
// Counters end in _total and count since the engine (or the log, or the
// capture) started; times are in seconds. Label queue is the NFQUEUE
// number; verdict is accept or drop for packets and DNS queries, allow or
// drop for rules.
//
// Packets and flows:
//
//	nfqguard_packets_total{queue,verdict}             packets judged
//	nfqguard_rule_flows_total{container,rule,direction,verdict}
//	                                                  flows (and DNS queries) judged, by rule;
//	                                                  rule is a rule id, default, undecided, or
//	                                                  none (no container end; container="")
//	nfqguard_rule_packets_total{container,rule,direction,verdict}
//	                                                  their packets that reached the queue
//	nfqguard_flows_total{queue}                       flows judged by the rules
//	nfqguard_flows_blocked_total{queue}               flows judged drop
//	nfqguard_flows_fast_path_total{queue}             allowed flows handed to the connmark fast path
//	nfqguard_flows_midstream_total{queue}             TCP flows first seen after their SYN
//	nfqguard_flows_rejudged_total{queue}              live flows whose verdict a reload changed
//	nfqguard_foreign_flows_total{queue}               flows with no container end (allowed)
//	nfqguard_icmp_errors_total{queue}                 ICMP errors, judged by the flow they quote
//	nfqguard_malformed_packets_total{queue,kind}      undecodable packets; kind is truncated,
//	                                                  fragment or bad_version
//
// Deep inspection:
//
//	nfqguard_inspect_flows_total{queue}               flows whose verdict needed an L7 fact
//	nfqguard_inspect_decided_total{queue,result}      inspected flows and queries; result is fact
//	                                                  or undecided ([inspect] undecided applied)
//	nfqguard_inspect_held_flows_total{queue}          flows that had packets held back
//	nfqguard_inspect_held_packets_total{queue}        packets held back
//	nfqguard_inspect_held_flows{queue}                gauge: flows held now
//	nfqguard_inspect_held_packets{queue}              gauge: packets held now
//	nfqguard_inspect_hold_full_total{queue}           flows not held: max_held_flows reached
//	nfqguard_inspect_duplicates_total{queue}          retransmissions of held bytes, dropped
//	nfqguard_inspect_quic_total{queue,result}         QUIC flows inspected, unsupported versions, version negotiation, retries
//	nfqguard_dns_queries_total{queue,verdict}         DNS queries judged one by one
//	nfqguard_resets_total{queue}                      dropped TCP flows cut with RSTs
//
// Queues and the flow table:
//
//	nfqguard_verdict_latency_seconds                  histogram: packet received to verdict sent
//	nfqguard_queue_kernel_dropped_total{queue}        dropped by the kernel: queue full
//	nfqguard_queue_user_dropped_total{queue}          dropped by the kernel: could not send to us
//	nfqguard_queue_enobufs_total{queue}               netlink receive buffer overruns
//	nfqguard_queue_receive_errors_total{queue}        other netlink receive errors
//	nfqguard_verdict_errors_total{queue}              verdicts refused or not sent
//	nfqguard_flow_table_flows{queue}                  gauge: live flows
//	nfqguard_flow_table_slots{queue}                  gauge: capacity
//	nfqguard_flow_table_evictions_total{queue}        live flows pushed out of a full table
//	nfqguard_docker_reachable                         gauge: 1 while the rules were resolved against
//	                                                  Docker's last listing, 0 while it cannot be asked
//	                                                  (absent when Docker is not watched)
//	nfqguard_docker_unresolved_entries                gauge: entries resolved through Docker with no
//	                                                  address (absent when the file has none)
//	nfqguard_rule_table_generation                    gauge: rule table in use
//	nfqguard_start_time_seconds                       gauge: when the engine started
//
// Configuration (from Reloads):
//
//	nfqguard_config_reloads_total{result}             reloads; result is success or failure
//	nfqguard_config_last_reload_success_timestamp_seconds
//	                                                  last good load (initial or reload)
//	nfqguard_config_last_reload_successful            gauge: 1 if the last load succeeded, else 0
//
// The status socket (from a StatusSocket; absent when [status] socket is off):
//
//	nfqguard_status_socket_up                         gauge: 1 while it answers, 0 when it could not
//	                                                  be opened or stopped (the engine runs on)
//
// Flow log (from a LogSource) and packet capture (from a PcapSource):
//
//	nfqguard_log_records_total{event}                 records written; event is blocked, allowed,
//	                                                  end or suppressed
//	nfqguard_log_suppressed_events_total              events left out by the rate limit
//	nfqguard_log_dropped_events_total                 events lost to a full buffer
//	nfqguard_log_write_errors_total                   failed writes
//	nfqguard_log_reopens_total                        reopens (log rotation)
//	nfqguard_pcap_packets_total                       packets written
//	nfqguard_pcap_dropped_packets_total               packets lost to a full buffer
//	nfqguard_pcap_bytes_total                         bytes written
//	nfqguard_pcap_rotations_total                     files started after the first
//	nfqguard_pcap_write_errors_total                  failed writes
//
// Use:
//
//	srv := metrics.New(metrics.Options{Source: monitor, Reloads: reloads})
//	ln, err := srv.Listen(addr) // fails early: port in use, bad address
//	if err != nil { ... }
//	go srv.Serve(ctx, ln)       // until ctx ends
package metrics
