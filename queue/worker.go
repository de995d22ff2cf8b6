package queue

import (
	"errors"
	"fmt"
	"runtime"
	"sync/atomic"
	"time"

	nfqueue "github.com/florianl/go-nfqueue/v2"
	"golang.org/x/sys/unix"

	"github.com/nfqguard/nfqguard/inspect"
)

// yieldEvery is how often a busy worker yields to the Go scheduler.
const yieldEvery = time.Millisecond

// maxRecvErrors ends a worker whose socket keeps failing, rather than
// spinning on it forever.
const maxRecvErrors = 100

// WorkerStats are a worker's kernel-side counters. Read them from any
// goroutine.
type WorkerStats struct {
	Queue         uint16
	ENOBUFS       atomic.Uint64 // receive buffer overruns reported to us
	RecvErrors    atomic.Uint64
	VerdictErrors atomic.Uint64 // verdicts the kernel refused or that could not be sent
	Latency       Histogram     // packet received → verdict sent
}

// worker owns one NFQUEUE queue (through a socket) and the engine that judges its packets, on
// one goroutine: the kernel hashes both directions of a flow to the same
// queue, so every flow is judged in order, with no locks on flow state.
type worker struct {
	q       socket
	engine  *inspect.Engine
	reset   *resetter
	mark    uint32
	bypass  uint32
	stats   *WorkerStats
	stopped atomic.Bool
	calls   chan func() // run on the worker's goroutine between batches

	handle  func(*packet) // w.judge, bound once so receiving allocates nothing
	now     time.Time     // receive time of the current batch
	yielded time.Time     // when run last yielded to the scheduler
}

type workerConfig struct {
	queue    uint16
	queueLen uint32
	failOpen bool
	mark     uint32
	bypass   uint32
	engine   *inspect.Engine
	resetter *resetter // nil: dropped flows are not reset
}

// openWorker binds queue c.queue. Packets queue up in the kernel until run
// is called.
func openWorker(c workerConfig) (*worker, error) {
	// GSO: the kernel hands over large GSO packets whole instead of
	// segmenting them first; the decoder needs only the headers, and
	// checksums are never checked here.
	flags := uint32(nfqueue.NfQaCfgFlagGSO)
	if c.failOpen {
		flags |= nfqueue.NfQaCfgFlagFailOpen
	}
	q, err := openQueue(c.queue, c.queueLen, flags)
	if err != nil {
		return nil, fmt.Errorf("queue %d: %w", c.queue, err)
	}
	return newWorker(q, c), nil
}

// newWorker returns a worker that judges the packets of q; c.queueLen and
// c.failOpen have been applied to q already.
func newWorker(q socket, c workerConfig) *worker {
	w := &worker{q: q, engine: c.engine, reset: c.resetter, mark: c.mark, bypass: c.bypass, stats: &WorkerStats{Queue: c.queue},
		calls: make(chan func(), 1)}
	w.handle = w.judge
	return w
}

// bindError explains the kernel's refusal to bind a queue: EPERM from a
// process that has CAP_NET_ADMIN means another socket owns the queue.
func bindError(err error) error {
	if errors.Is(err, unix.EPERM) {
		return fmt.Errorf("already bound by another process (another nfqguard, Suricata, …?): %w", err)
	}
	if errors.Is(err, unix.EOPNOTSUPP) {
		return fmt.Errorf("kernel refused the queue configuration: %w", err)
	}
	return fmt.Errorf("bind: %w", err)
}

// run receives, judges and answers until stop is called, or returns the
// error that broke the socket.
func (w *worker) run() error {
	errRun := 0
	for {
		err := w.q.receive()
		if w.stopped.Load() {
			// Held packets would be dropped by the kernel when the queue
			// is unbound: answer them as undecided first.
			w.engine.ReleaseAll(time.Now())
			if w.answerReleased() {
				_, _ = w.q.flush() // the queue is going away; nothing to retry
			}
			w.engine.EndAll()
			w.drainCalls()
			return nil
		}
		if err == errTimeout {
			// Nothing arrived for a while: held flows may still time out.
			w.now = time.Now()
			w.tick()
			w.runCalls()
			continue
		}
		if err != nil {
			if errors.Is(err, unix.ENOBUFS) {
				w.stats.ENOBUFS.Add(1)
				continue
			}
			w.stats.RecvErrors.Add(1)
			if errRun++; errRun >= maxRecvErrors {
				return fmt.Errorf("queue %d: receive: %w", w.stats.Queue, err)
			}
			continue
		}
		errRun = 0
		w.batch()
		w.runCalls()
	}
}

// batch judges the packets of the batch just received and answers them,
// with the verdicts of held packets they or the clock decided, in one
// write.
func (w *worker) batch() {
	w.now = time.Now()
	// A goroutine that keeps its P for 10 ms without being rescheduled
	// looks stuck to the runtime's sysmon, even while it waits in a
	// system call: sysmon then preempts it, takes its P, and polls
	// every 20 us for a while. Yielding about once a millisecond keeps
	// all that away from the packet path (measured: sysmon wake-ups
	// 1,700 -> 160 per 10,000 round trips; RTT p99 111 -> 103 us).
	if w.now.Sub(w.yielded) > yieldEvery {
		runtime.Gosched()
		w.yielded = w.now
	}
	if refused := w.q.packets(w.handle); refused > 0 {
		w.stats.VerdictErrors.Add(uint64(refused))
	}
	w.engine.Tick(w.now)
	w.answerReleased()
	sent, err := w.q.flush()
	if err != nil {
		w.stats.VerdictErrors.Add(1)
	}
	// Every packet of the batch waited for the whole batch.
	w.stats.Latency.ObserveN(time.Since(w.now), uint64(sent))
}

// runCalls runs a function another goroutine asked to run on this one
// (see call), if there is one.
func (w *worker) runCalls() {
	select {
	case f := <-w.calls:
		f()
	default:
	}
}

// drainCalls runs what is still asked of a worker that stops, so that no
// caller waits for it forever.
func (w *worker) drainCalls() {
	for {
		select {
		case f := <-w.calls:
			f()
		default:
			return
		}
	}
}

// call runs f on the worker's goroutine, between batches, where it may
// read the engine's state, and waits for it; it gives up when the worker
// does not get to it within timeout (it has stopped), and reports whether
// f ran.
func (w *worker) call(f func(), timeout time.Duration) bool {
	done := make(chan struct{})
	run := func() { f(); close(done) }
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case w.calls <- run:
	case <-t.C:
		return false
	}
	select {
	case <-done:
		return true
	case <-t.C:
		return false
	}
}

// judge decides one packet and queues its verdict.
func (w *worker) judge(p *packet) {
	v := w.engine.Judge(p.payload, inspect.Meta{InDev: p.inDev, OutDev: p.outDev, ID: p.id, Mark: p.mark}, w.now)
	// Packets held earlier and decided by this one go first, so that a
	// flow's packets leave in the order they came.
	w.answerReleased()
	if !v.Hold {
		w.answer(p.id, p.mark, v)
	}
}

// tick decides held flows whose time is up and sends their verdicts.
func (w *worker) tick() {
	w.engine.Tick(w.now)
	if w.answerReleased() {
		if _, err := w.q.flush(); err != nil {
			w.stats.VerdictErrors.Add(1)
		}
	}
}

// answerReleased queues the verdicts of held packets the engine decided,
// and reports whether there were any.
func (w *worker) answerReleased() bool {
	r := w.engine.Released()
	for i := range r {
		w.answer(r[i].ID, r[i].Mark, r[i].Verdict)
	}
	return len(r) > 0
}

// answer queues the verdict v for packet id, whose mark was mark.
func (w *worker) answer(id, mark uint32, v inspect.Verdict) {
	if !v.Allow {
		w.q.verdict(id, nfqueue.NfDrop, 0, false)
		return
	}
	// NF_REPEAT, not NF_ACCEPT: the packet walks FORWARD again from the
	// top, skips the redirect thanks to the mark, and meets Docker's own
	// rules as if nfqguard were not there.
	mark |= w.mark
	if v.Bypass {
		mark |= w.bypass
	}
	w.q.verdict(id, nfqueue.NfRepeat, mark, true)
}

// stop makes run return within stopLatency; safe from any goroutine.
func (w *worker) stop() {
	w.stopped.Store(true)
}

// close releases the queue; call it after run has returned (or was never
// started).
func (w *worker) close() error {
	err := w.q.close()
	if w.reset != nil {
		err = errors.Join(err, w.reset.close())
	}
	if err != nil {
		return fmt.Errorf("queue %d: close: %w", w.stats.Queue, err)
	}
	return nil
}
