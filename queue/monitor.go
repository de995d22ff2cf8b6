package queue

import "sync"

// Monitor gives other goroutines (the metrics endpoint, the status socket)
// a view of a running engine. Pass one in Options; it is safe for
// concurrent use, and reports nothing while no engine runs.
type Monitor struct {
	mu sync.Mutex
	st *status // nil while no engine runs
}

// NewMonitor returns a Monitor for Options.Monitor.
func NewMonitor() *Monitor { return &Monitor{} }

// Snapshot returns the engine's counters now, or false when no engine is
// running.
func (m *Monitor) Snapshot() (Snapshot, bool) {
	m.mu.Lock()
	st := m.st
	m.mu.Unlock()
	if st == nil {
		return Snapshot{}, false
	}
	return st.snapshot(), true
}

func (st *status) snapshot() Snapshot {
	return Snapshot{} // filled in by the engine-side commit
}
