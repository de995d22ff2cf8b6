package bench

import (
	"math"
	"slices"
)

// Stat is a value measured once per repetition, condensed: the median and
// the extremes over the repetitions where it was measured.
type Stat struct {
	Median float64 `json:"median"` // of an even count: the mean of the middle two
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
	N      int     `json:"n"` // repetitions the value was measured in
}

// newStat condenses vs; it returns nil when vs is empty (not measured).
func newStat(vs []float64) *Stat {
	if len(vs) == 0 {
		return nil
	}
	s := slices.Clone(vs)
	slices.Sort(s)
	n := len(s)
	med := s[n/2]
	if n%2 == 0 {
		med = (s[n/2-1] + s[n/2]) / 2
	}
	return &Stat{Median: med, Min: s[0], Max: s[n-1], N: n}
}

// percentile returns the p-quantile (0 < p ≤ 1) of sorted by the
// nearest-rank method: the smallest sample such that at least p of all
// samples are less than or equal to it. It returns 0 for no samples.
func percentile(sorted []int64, p float64) int64 {
	if len(sorted) == 0 {
		return 0
	}
	rank := int(math.Ceil(p * float64(len(sorted))))
	rank = min(max(rank, 1), len(sorted))
	return sorted[rank-1]
}

// Percentiles are latency percentiles in microseconds: the median, p90,
// p99 and p99.9, each by the nearest-rank method.
type Percentiles struct {
	P50  float64 `json:"p50"`
	P90  float64 `json:"p90"`
	P99  float64 `json:"p99"`
	P999 float64 `json:"p999"`
}

// quantiles are the percentiles Percentiles holds, in field order.
var quantiles = [4]float64{0.5, 0.9, 0.99, 0.999}

func (p Percentiles) values() [4]float64 { return [4]float64{p.P50, p.P90, p.P99, p.P999} }

func percentilesFrom(v [4]float64) Percentiles {
	return Percentiles{P50: v[0], P90: v[1], P99: v[2], P999: v[3]}
}

// samplePercentiles computes the percentiles of durations in nanoseconds.
func samplePercentiles(ns []int64) Percentiles {
	s := slices.Clone(ns)
	slices.Sort(s)
	var v [4]float64
	for i, q := range quantiles {
		v[i] = float64(percentile(s, q)) / 1e3
	}
	return percentilesFrom(v)
}

// addedLatency is the latency one queue traversal adds, percentile by
// percentile: a round trip crosses FORWARD twice (request and reply), so
// the difference of round-trip times is halved. It may be negative when
// noise exceeds the cost.
func addedLatency(setup, kernel Percentiles) Percentiles {
	s, k := setup.values(), kernel.values()
	var v [4]float64
	for i := range v {
		v[i] = (s[i] - k[i]) / 2
	}
	return percentilesFrom(v)
}
