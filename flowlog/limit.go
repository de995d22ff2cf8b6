package flowlog

import (
	"cmp"
	"slices"
	"sync"
	"time"
)

// pruneAfter is how long a bucket must have been idle (and full again)
// before the writer forgets it; a new one is then made, full, on the
// rule's next event. It keeps the map from growing with every container
// and rule a long-running daemon has ever seen, without making a rule that
// logs now and then allocate.
const pruneAfter = 10 * time.Minute

type bucketKey struct{ container, rule string }

// bucket is the token bucket of one (container, rule).
type bucket struct {
	tokens     float64
	last       time.Time // of the last refill
	suppressed uint64    // events over the limit since the last record
	since      time.Time // the first of them
}

// limiter holds a token bucket per (container, rule). Its mutex is taken
// on Emit of a verdict and once a second by the writer.
type limiter struct {
	rate, burst float64

	mu      sync.Mutex
	buckets map[bucketKey]*bucket
}

func newLimiter(rate float64, burst int) *limiter {
	return &limiter{rate: rate, burst: float64(burst), buckets: make(map[bucketKey]*bucket)}
}

// allow takes a token from the bucket of (container, rule), making it
// (full) on first use. Without one, it counts the event as suppressed.
func (m *limiter) allow(container, rule string, now time.Time) bool {
	k := bucketKey{container, rule}
	m.mu.Lock()
	b := m.buckets[k]
	if b == nil {
		b = &bucket{tokens: m.burst, last: now}
		m.buckets[k] = b
	} else if d := now.Sub(b.last); d > 0 {
		b.tokens = min(m.burst, b.tokens+d.Seconds()*m.rate)
		b.last = now
	}
	ok := b.tokens >= 1
	if ok {
		b.tokens--
	} else {
		if b.suppressed == 0 {
			b.since = now
		}
		b.suppressed++
	}
	m.mu.Unlock()
	return ok
}

// suppression is what a "suppressed" record reports.
type suppression struct {
	bucketKey
	n     uint64
	since time.Time
}

// collect appends to out a suppression for every bucket that has
// suppressed events since the last call, sorted by container and rule, and
// resets their counts. It forgets buckets idle for pruneAfter.
func (m *limiter) collect(now time.Time, out []suppression) []suppression {
	m.mu.Lock()
	for k, b := range m.buckets {
		if b.suppressed > 0 {
			out = append(out, suppression{k, b.suppressed, b.since})
			b.suppressed = 0
			continue
		}
		if idle := now.Sub(b.last); idle >= pruneAfter && b.tokens+idle.Seconds()*m.rate >= m.burst {
			delete(m.buckets, k)
		}
	}
	m.mu.Unlock()
	slices.SortFunc(out, func(a, b suppression) int {
		return cmp.Or(cmp.Compare(a.container, b.container), cmp.Compare(a.rule, b.rule))
	})
	return out
}

// size returns the number of buckets.
func (m *limiter) size() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.buckets)
}
