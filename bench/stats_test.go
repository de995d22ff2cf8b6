package bench

import (
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestNewStat(t *testing.T) {
	for _, tc := range []struct {
		in   []float64
		want *Stat
	}{
		{nil, nil},
		{[]float64{7}, &Stat{Median: 7, Min: 7, Max: 7, N: 1}},
		{[]float64{3, 1, 2}, &Stat{Median: 2, Min: 1, Max: 3, N: 3}},
		{[]float64{4, 1, 10, 2}, &Stat{Median: 3, Min: 1, Max: 10, N: 4}},
		{[]float64{-1, 5, 5, 0, 9}, &Stat{Median: 5, Min: -1, Max: 9, N: 5}},
	} {
		in := append([]float64(nil), tc.in...)
		if diff := cmp.Diff(tc.want, newStat(tc.in)); diff != "" {
			t.Errorf("newStat(%v) mismatch (-want +got):\n%s", in, diff)
		}
		if !cmp.Equal(in, tc.in) {
			t.Errorf("newStat reordered its input: %v", tc.in)
		}
	}
}

func TestPercentile(t *testing.T) {
	// 1..1000: the nearest-rank p-quantile of n samples is the
	// ceil(p*n)-th smallest.
	s := make([]int64, 1000)
	for i := range s {
		s[i] = int64(i + 1)
	}
	for _, tc := range []struct {
		p    float64
		want int64
	}{{0.5, 500}, {0.9, 900}, {0.99, 990}, {0.999, 999}, {1, 1000}, {0.0001, 1}} {
		if got := percentile(s, tc.p); got != tc.want {
			t.Errorf("percentile(1..1000, %v) = %d, want %d", tc.p, got, tc.want)
		}
	}
	if got := percentile([]int64{42}, 0.999); got != 42 {
		t.Errorf("percentile of one sample = %d, want 42", got)
	}
	if got := percentile(nil, 0.5); got != 0 {
		t.Errorf("percentile of no samples = %d, want 0", got)
	}
}

func TestSamplePercentiles(t *testing.T) {
	// 10 samples, unsorted, in ns: 1..10 µs.
	ns := []int64{10000, 1000, 9000, 2000, 8000, 3000, 7000, 4000, 6000, 5000}
	want := Percentiles{P50: 5, P90: 9, P99: 10, P999: 10}
	if diff := cmp.Diff(want, samplePercentiles(ns)); diff != "" {
		t.Errorf("samplePercentiles mismatch (-want +got):\n%s", diff)
	}
	if ns[0] != 10000 {
		t.Error("samplePercentiles sorted its input in place")
	}
}

func TestAddedLatency(t *testing.T) {
	kernel := Percentiles{P50: 26, P90: 30, P99: 50, P999: 120}
	setup := Percentiles{P50: 66, P90: 80, P99: 110, P999: 100}
	// Half the difference: a round trip crosses the queue twice. Noise
	// may make it negative; it is reported as measured.
	want := Percentiles{P50: 20, P90: 25, P99: 30, P999: -10}
	if diff := cmp.Diff(want, addedLatency(setup, kernel)); diff != "" {
		t.Errorf("addedLatency mismatch (-want +got):\n%s", diff)
	}
}

// TestSummarizeAddedLatency checks that each repetition is compared with
// the kernel of the same repetition.
func TestSummarizeAddedLatency(t *testing.T) {
	rr := func(p50 float64) *RRResult {
		return &RRResult{RTT: Percentiles{P50: p50, P90: p50, P99: p50, P999: p50}}
	}
	r := &Report{Setups: []SetupResult{
		{Name: SetupKernel, Reps: []RepResult{{Rep: 1, RR: rr(20)}, {Rep: 2, RR: rr(40)}, {Rep: 3}}},
		{Name: SetupFloorC, Reps: []RepResult{{Rep: 1, RR: rr(30)}, {Rep: 2, RR: rr(60)}, {Rep: 3, RR: rr(50)}}},
	}}
	r.summarize()
	reps := r.Setup(SetupFloorC).Reps
	if reps[0].Added == nil || reps[0].Added.P50 != 5 || reps[1].Added == nil || reps[1].Added.P50 != 10 {
		t.Errorf("added latency = %+v, %+v; want P50 5 and 10", reps[0].Added, reps[1].Added)
	}
	if reps[2].Added != nil {
		t.Errorf("repetition 3 had no kernel RTT, yet added latency %+v", reps[2].Added)
	}
	want := &Stat{Median: 7.5, Min: 5, Max: 10, N: 2}
	if diff := cmp.Diff(want, r.Setup(SetupFloorC).Summary[MetricAddedP50]); diff != "" {
		t.Errorf("added p50 summary mismatch (-want +got):\n%s", diff)
	}
	if _, ok := r.Setup(SetupKernel).Summary[MetricAddedP50]; ok {
		t.Error("the kernel has an added latency")
	}
}
