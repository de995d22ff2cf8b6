package bench

import (
	"bytes"
	"strings"
	"testing"

	"github.com/nfqguard/nfqguard/queue"
)

// fixedReport is a two-repetition report of three setups with round
// numbers; floor-c is skipped and one nfqguard workload failed.
func fixedReport() *Report {
	rep := func(n int, rtt, conns, kpps, gbps float64) RepResult {
		return RepResult{
			Rep:   n,
			RR:    &RRResult{RTT: Percentiles{P50: rtt, P90: rtt * 2, P99: rtt * 3, P999: rtt * 4}, Samples: []int64{int64(rtt * 1e3)}},
			Conns: &RateResult{PerSec: conns},
			UDP:   &UDPResult{Kpps: kpps},
			Bulk:  &BulkResult{Gbps: gbps},
		}
	}
	per1 := rep(1, 60, 2000, 50, 10)
	per2 := rep(2, 80, 3000, 70, 12)
	cpu := 6.5
	per1.CPU = &CPUResult{CPUSeconds: 0.65, Packets: 100000, USPerPacket: &cpu}
	per1.Queue = &QueueCounters{Queues: 2, QueueDropped: 100, UserDropped: 20}
	per2.Queue = &QueueCounters{Queues: 2, QueueDropped: 300, UserDropped: 0}
	per1.Engine = &queue.Summary{Latency: queue.LatencySummary{Count: 10, P50: 150000, P99: 5000000}}
	per2.Engine = &queue.Summary{Latency: queue.LatencySummary{Count: 10, P50: 250000, P99: 7000000}}
	per2.UDP = nil
	per2.Errors = map[string]string{wUDP: "no datagram reached the sink (5 sent)"}
	r := &Report{
		Options: ReportOptions{Reps: 2},
		Setups: []SetupResult{
			{Name: SetupKernel, Reps: []RepResult{rep(1, 20, 6000, 200, 22), rep(2, 30, 5000, 180, 20)}},
			{Name: SetupFloorC, Skipped: "floor-c cannot be built: gcc not found"},
			{Name: SetupPerPacket, Reps: []RepResult{per1, per2}},
		},
	}
	r.summarize()
	return r
}

func TestWriteMarkdown(t *testing.T) {
	var b bytes.Buffer
	if err := fixedReport().WriteMarkdown(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	lines := strings.Split(out, "\n")
	wantHeader := "| setup | added p50 (µs) | added p99 (µs) | RTT p50 (µs) | RTT p99.9 (µs) | conns/s | UDP kpps | " +
		"bulk Gbit/s | CPU µs/pkt | engine p50 (µs) | engine p99 (µs) | kernel drops |"
	if lines[0] != wantHeader {
		t.Errorf("header:\n got %s\nwant %s", lines[0], wantHeader)
	}
	for _, want := range []string{
		"| kernel | n/a | n/a | 25.0 (20.0–30.0) | 100 (80.0–120) | 5500 (5000–6000) | 190 (180–200) | 21.0 (20.0–22.0) | n/a | n/a | n/a | n/a |",
		"| floor-c | skipped | skipped | skipped | skipped | skipped | skipped | skipped | skipped | skipped | skipped | skipped |",
		// added: (60−20)/2 = 20 and (80−30)/2 = 25 at p50; (180−60)/2 = 60
		// and (240−90)/2 = 75 at p99. UDP failed in repetition 2.
		"| nfqguard-per-packet | 22.5 (20.0–25.0) | 67.5 (60.0–75.0) | 70.0 (60.0–80.0) | 280 (240–320) | 2500 (2000–3000) | 50.0 (50.0–50.0)* | 11.0 (10.0–12.0) | 6.50 (6.50–6.50) | 200 (150–250) | 6000 (5000–7000) | 210 (120–300) |",
		"- floor-c skipped: floor-c cannot be built: gcc not found",
		"- nfqguard-per-packet, repetition 2, udp: no datagram reached the sink (5 sent)",
		"| conns/s: nfqguard / kernel | n/a | ≥ 0.6 | n/a |",
		"| added latency p50: nfqguard-per-packet / floor-c | n/a | ≤ 1.25 | n/a |",
	} {
		if !strings.Contains(out, want+"\n") {
			t.Errorf("output lacks line\n%s\ngot:\n%s", want, out)
		}
	}
}

func TestRatios(t *testing.T) {
	r := fixedReport()
	// Pretend the per-packet run was the shipped engine, to get a ratio
	// against the kernel: per repetition 10/22 and 12/20.
	r.Setups[2].Name = SetupNfqguard
	r.summarize()
	var bulk *Ratio
	for i := range r.Ratios {
		if strings.HasPrefix(r.Ratios[i].Name, "bulk") {
			bulk = &r.Ratios[i]
		}
	}
	if bulk == nil || bulk.Value == nil || bulk.Met == nil {
		t.Fatalf("bulk ratio not computed: %+v", bulk)
	}
	want := (10.0/22 + 12.0/20) / 2
	if d := bulk.Value.Median - want; d > 1e-9 || d < -1e-9 || bulk.Value.N != 2 {
		t.Errorf("bulk ratio = %+v, want median %v over 2 repetitions", bulk.Value, want)
	}
	if *bulk.Met {
		t.Errorf("bulk ratio %.2f reported as meeting %s", bulk.Value.Median, bulk.Target)
	}
}
