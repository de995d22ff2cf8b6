package queue

import (
	"testing"
	"time"
)

func TestHistogramBuckets(t *testing.T) {
	// Every value lands in a bucket whose upper bound is ≥ it and within
	// 25% of it (one bucket is a quarter of a power of two).
	for _, v := range []uint64{0, 1, 3, 4, 5, 7, 8, 9, 15, 16, 100, 1000, 123456, 1 << 40, 1<<63 + 12345} {
		i := bucketOf(v)
		ub := upperBound(i)
		if ub < v {
			t.Errorf("value %d: bucket %d upper bound %d is below it", v, i, ub)
		}
		if v >= 8 && float64(ub-v) > 0.25*float64(v) {
			t.Errorf("value %d: bucket %d upper bound %d is more than 25%% above it", v, i, ub)
		}
		if i > 0 && upperBound(i-1) >= v {
			t.Errorf("value %d: previous bucket %d already covers it (ub %d)", v, i-1, upperBound(i-1))
		}
	}
}

func TestHistogramQuantiles(t *testing.T) {
	var h Histogram
	if h.Quantile(0.5) != 0 || h.Mean() != 0 {
		t.Fatal("empty histogram reports a value")
	}
	for i := 1; i <= 1000; i++ {
		h.Observe(time.Duration(i) * time.Microsecond)
	}
	for _, c := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 500 * time.Microsecond}, {0.99, 990 * time.Microsecond}, {1, 1000 * time.Microsecond}} {
		got := h.Quantile(c.q)
		if got < c.want || got > c.want*5/4 {
			t.Errorf("Quantile(%v) = %v, want within [%v, %v]", c.q, got, c.want, c.want*5/4)
		}
	}
	var m Histogram
	m.Merge(&h)
	m.Merge(&h)
	if m.Count() != 2000 || m.Quantile(0.5) != h.Quantile(0.5) {
		t.Errorf("merged: count %d p50 %v, want 2000 and %v", m.Count(), m.Quantile(0.5), h.Quantile(0.5))
	}
}
