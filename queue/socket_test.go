package queue

import "time"

// fakeSocket is a socket in memory, for testing the worker loop without
// root. Each receive plays the next step of a script; the verdicts the
// worker queues are recorded flush by flush. Once the script is played,
// receive calls end (the rig stops the worker with it) and reports a
// timeout. Like a real socket it belongs to the worker's goroutine: read
// what it recorded after run has returned, or from a function the worker
// runs (worker.call).
type fakeSocket struct {
	script []step
	end    func()

	received int           // receive calls that played a step
	cur      step          // the step received last
	pkt      packet        // handed out by packets, as nfq hands out its own
	pending  []sentVerdict // queued since the last flush
	flushes  [][]sentVerdict
	closed   bool
}

// step is what one receive returns.
type step struct {
	before     func()        // runs first, on the worker's goroutine (stop it, wait, let time pass)
	err        error         // returned instead of a batch: errTimeout, unix.ENOBUFS, …
	batch      []fakePacket  // the batch, when err is nil
	refused    int           // earlier verdicts the kernel refused, reported with the batch
	flushErr   error         // the next flush fails with it
	flushDelay time.Duration // the next flush takes this long
}

// fakePacket is one queued packet of a step's batch.
type fakePacket struct {
	id, mark uint32
	in, out  uint32
	payload  []byte
}

// sentVerdict is one verdict the worker queued.
type sentVerdict struct {
	id, verdict, mark uint32
	withMark          bool
}

var _ socket = (*fakeSocket)(nil)

func (s *fakeSocket) receive() error {
	if s.received == len(s.script) {
		s.cur = step{}
		if s.end != nil {
			s.end()
		}
		return errTimeout
	}
	s.cur = s.script[s.received]
	s.received++
	if s.cur.before != nil {
		s.cur.before()
	}
	if s.cur.err != nil {
		s.cur.batch = nil
	}
	return s.cur.err
}

func (s *fakeSocket) packets(fn func(*packet)) int {
	for _, p := range s.cur.batch {
		s.pkt = packet{id: p.id, mark: p.mark, inDev: p.in, outDev: p.out, payload: p.payload}
		fn(&s.pkt)
	}
	return s.cur.refused
}

func (s *fakeSocket) verdict(id, verdict, mark uint32, withMark bool) {
	s.pending = append(s.pending, sentVerdict{id: id, verdict: verdict, mark: mark, withMark: withMark})
}

func (s *fakeSocket) flush() (int, error) {
	time.Sleep(s.cur.flushDelay)
	sent := s.pending
	s.pending = nil
	s.flushes = append(s.flushes, sent)
	err := s.cur.flushErr
	s.cur.flushErr = nil
	return len(sent), err
}

func (s *fakeSocket) close() error {
	s.closed = true
	return nil
}
