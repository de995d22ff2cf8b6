package queue

import (
	"math/bits"
	"sync/atomic"
	"time"
)

// subBuckets splits each power of two into this many buckets, so a
// reported percentile is within 1/subBuckets (about 25%) of the truth.
const (
	subBits    = 2
	subBuckets = 1 << subBits
	maxBuckets = 64 * subBuckets
)

// Histogram records durations in logarithmic buckets without locks or
// allocation. Observe may be called from one goroutine while others read.
type Histogram struct {
	counts [maxBuckets]atomic.Uint64
	total  atomic.Uint64
	sum    atomic.Uint64 // nanoseconds
}

func bucketOf(ns uint64) int {
	if ns < subBuckets {
		return int(ns)
	}
	msb := bits.Len64(ns) - 1
	sub := (ns >> (msb - subBits)) & (subBuckets - 1)
	return (msb-subBits+1)*subBuckets + int(sub)
}

// upperBound is the largest value that falls into bucket i.
func upperBound(i int) uint64 {
	if i < subBuckets {
		return uint64(i)
	}
	msb := i/subBuckets + subBits - 1
	sub := uint64(i % subBuckets)
	lo := uint64(1)<<msb | sub<<(msb-subBits)
	return lo + uint64(1)<<(msb-subBits) - 1
}

// Observe records one duration.
func (h *Histogram) Observe(d time.Duration) { h.ObserveN(d, 1) }

// ObserveN records the same duration n times: the latency every packet of
// a batch saw.
func (h *Histogram) ObserveN(d time.Duration, n uint64) {
	if n == 0 {
		return
	}
	ns := uint64(max(d, 0))
	h.counts[bucketOf(ns)].Add(n)
	h.total.Add(n)
	h.sum.Add(ns * n)
}

// Count returns the number of observations.
func (h *Histogram) Count() uint64 { return h.total.Load() }

// Quantile returns an upper bound of the q-quantile (0 < q ≤ 1), or 0
// when nothing was observed.
func (h *Histogram) Quantile(q float64) time.Duration {
	n := h.total.Load()
	if n == 0 {
		return 0
	}
	rank := uint64(q*float64(n) + 0.5)
	rank = max(rank, 1)
	var seen uint64
	for i := range h.counts {
		seen += h.counts[i].Load()
		if seen >= rank {
			return time.Duration(upperBound(i))
		}
	}
	return time.Duration(upperBound(maxBuckets - 1))
}

// Mean returns the mean duration, or 0 when nothing was observed.
func (h *Histogram) Mean() time.Duration {
	n := h.total.Load()
	if n == 0 {
		return 0
	}
	return time.Duration(h.sum.Load() / n)
}

// Merge adds o's observations to h (to summarise several queues).
func (h *Histogram) Merge(o *Histogram) {
	for i := range o.counts {
		h.counts[i].Add(o.counts[i].Load())
	}
	h.total.Add(o.total.Load())
	h.sum.Add(o.sum.Load())
}

// Cumulative returns, for each bound (in increasing order), the number of
// observations whose bucket lies wholly at or below it, and the sum of
// all observations. An observation is counted at the first bound at or
// above its bucket's upper edge, so the counts are conservative: within
// 25% of the value, never early.
func (h *Histogram) Cumulative(bounds []time.Duration) (counts []uint64, sum time.Duration) {
	counts = make([]uint64, len(bounds))
	b := 0
	var seen uint64
	for i := range h.counts {
		for b < len(bounds) && uint64(bounds[b]) < upperBound(i) {
			counts[b] = seen
			b++
		}
		if b == len(bounds) {
			break
		}
		seen += h.counts[i].Load()
	}
	for ; b < len(bounds); b++ {
		counts[b] = seen
	}
	return counts, time.Duration(h.sum.Load())
}
