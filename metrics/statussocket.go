package metrics

import (
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// StatusSocket records whether the status socket answers, for
// nfqguard_status_socket_up. The daemon calls SetUp(true) once the socket
// listens and SetUp(false) when it stops; a socket that could not be
// opened is never set up. Its zero value reads down, and it is safe for
// concurrent use.
type StatusSocket struct {
	up atomic.Bool
}

// SetUp records that the socket answers (true) or no longer does.
func (s *StatusSocket) SetUp(up bool) { s.up.Store(up) }

// Up reports what SetUp last recorded.
func (s *StatusSocket) Up() bool { return s.up.Load() }

func (s *StatusSocket) collect(ch chan<- prometheus.Metric) {
	v := 0.0
	if s.Up() {
		v = 1
	}
	gauge(ch, descStatusSocketUp, v)
}
