package metrics

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Reloads records configuration loads for the nfqguard_config_* metrics.
// The daemon calls SetLoaded after the initial load and Observe after each
// reload. Its zero value is ready to use, and it is safe for concurrent
// use. Until the first SetLoaded or Observe, only the reload counters (at
// 0) are exposed.
type Reloads struct {
	mu          sync.Mutex
	success     uint64
	failure     uint64
	lastSuccess time.Time // zero: never loaded
	lastOK      bool
	known       bool // lastOK is meaningful
}

// SetLoaded records the initial load of the configuration at t: it is the
// last good load, but not a reload.
func (r *Reloads) SetLoaded(t time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.lastSuccess = t
	r.lastOK, r.known = true, true
}

// Observe records a reload attempted at t that succeeded (ok) or failed.
func (r *Reloads) Observe(ok bool, t time.Time) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if ok {
		r.success++
		r.lastSuccess = t
	} else {
		r.failure++
	}
	r.lastOK, r.known = ok, true
}

func (r *Reloads) collect(ch chan<- prometheus.Metric) {
	r.mu.Lock()
	success, failure, last, lastOK, known := r.success, r.failure, r.lastSuccess, r.lastOK, r.known
	r.mu.Unlock()
	counter(ch, descReloads, success, "success")
	counter(ch, descReloads, failure, "failure")
	if !last.IsZero() {
		gauge(ch, descLastReloadTime, unixSeconds(last))
	}
	if known {
		v := 0.0
		if lastOK {
			v = 1
		}
		gauge(ch, descLastReloadOK, v)
	}
}
