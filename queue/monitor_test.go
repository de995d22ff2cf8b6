package queue

import (
	"testing"
	"time"
)

func TestParseQueueDrops(t *testing.T) {
	// As the kernel writes it: queue, port id, waiting, copy mode, copy
	// range, queue_dropped, user_dropped, last id, 1.
	in := "    0  12345     0 2 65531   17     3     1234  1\n" +
		"    1 -4123     2 2 65531     0  9     88  1\n" +
		"garbage\n"
	got := parseQueueDrops(in)
	if len(got) != 2 || got[0] != (drops{queue: 17, user: 3}) || got[1] != (drops{queue: 0, user: 9}) {
		t.Errorf("drops = %+v", got)
	}
}

func TestHistogramCumulative(t *testing.T) {
	var h Histogram
	for _, d := range []time.Duration{500 * time.Nanosecond, 3 * time.Microsecond, 3 * time.Microsecond, 40 * time.Microsecond, 2 * time.Second} {
		h.Observe(d)
	}
	bounds := []time.Duration{time.Microsecond, 5 * time.Microsecond, 50 * time.Microsecond, time.Second}
	counts, sum := h.Cumulative(bounds)
	want := []uint64{1, 3, 4, 4}
	for i := range want {
		if counts[i] != want[i] {
			t.Errorf("le %v: %d, want %d (all %v)", bounds[i], counts[i], want[i], counts)
		}
	}
	if sum != 500*time.Nanosecond+6*time.Microsecond+40*time.Microsecond+2*time.Second {
		t.Errorf("sum = %v", sum)
	}
	// Never early: an observation just above a bound is not counted at it.
	var g Histogram
	g.Observe(time.Microsecond + time.Nanosecond)
	if c, _ := g.Cumulative([]time.Duration{time.Microsecond}); c[0] != 0 {
		t.Errorf("1.001µs counted at le=1µs")
	}
}
