// Package bench measures what nfqguard costs container traffic: the
// verdict-latency benchmark behind "nfqguard bench".
//
// Run builds a Docker-shaped lab (package lab) with servers in the web
// container, then measures the same workloads side by side, interleaved
// over several repetitions, under seven setups: the kernel alone (no
// redirect), two minimal accept-all NFQUEUE consumers that mark the floor
// of userspace queueing (floor-c on libnetfilter_queue, floor-go on
// go-nfqueue, see FloorGo), nfqguard itself with every packet judged in
// userspace and with the fast path, and nfqguard judging web's port 443
// by port and by server name (SetupPort443, SetupSNI443: what deep
// inspection costs). Workloads are TCP request/response latency, new TCP
// connections per second, small-packet UDP rate, bulk TCP throughput and
// CPU time per queued packet, and, under the kernel and the two 443
// setups, new TLS and QUIC connections per second with their time to
// first byte; the kernel's queue drop counters and the engine's own
// verdict latency are collected alongside.
//
// A Report holds every repetition's raw numbers and their medians; it
// renders as Markdown (WriteMarkdown), JSON, and an RTT CDF plot
// (WritePlot).
//
// The package does not judge the results: ratios against the project's
// targets are computed and shown, never asserted. Everything runs inside
// namespaces the lab creates; no packet leaves them, and the lab, the
// consumers and their firewall rules are removed when Run returns.
package bench
