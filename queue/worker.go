package queue

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	nfqueue "github.com/florianl/go-nfqueue/v2"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/nfqguard/nfqguard/inspect"
)

// maxPacketLen is how much of each packet the kernel copies to us: all of
// it, since deep inspection needs payloads.
const maxPacketLen = 0xffff

// maxRecvErrors ends a worker whose socket keeps failing, rather than
// spinning on it forever.
const maxRecvErrors = 100

// WorkerStats are a worker's kernel-side counters. Read them from any
// goroutine.
type WorkerStats struct {
	Queue         uint16
	ENOBUFS       atomic.Uint64 // receive buffer overruns: the kernel dropped packets
	RecvErrors    atomic.Uint64
	VerdictErrors atomic.Uint64
	Latency       Histogram // packet received → verdict sent
}

// worker owns one NFQUEUE queue and the engine that judges its packets.
// The hook runs on go-nfqueue's receive goroutine, one per queue, so every
// flow is judged on one goroutine, in order.
type worker struct {
	nf      *nfqueue.Nfqueue
	engine  *inspect.Engine
	mark    uint32
	bypass  uint32
	stats   *WorkerStats
	fatal   chan<- error
	errRun  int // consecutive receive errors, touched only by the receive goroutine
	stopped atomic.Bool
}

type workerConfig struct {
	queue    uint16
	queueLen uint32
	failOpen bool
	mark     uint32
	bypass   uint32
	engine   *inspect.Engine
	fatal    chan<- error
}

// openWorker binds queue c.queue and starts receiving. The returned worker
// stops when ctx is cancelled; close waits for that.
func openWorker(ctx context.Context, c workerConfig) (*worker, error) {
	var flags uint32
	if c.failOpen {
		flags |= nfqueue.NfQaCfgFlagFailOpen
	}
	nf, err := nfqueue.Open(&nfqueue.Config{
		NfQueue:      c.queue,
		MaxPacketLen: maxPacketLen,
		MaxQueueLen:  c.queueLen,
		Copymode:     nfqueue.NfQnlCopyPacket,
		Flags:        flags,
		AfFamily:     unix.AF_UNSPEC,
		WriteTimeout: time.Second,
	})
	if err != nil {
		return nil, fmt.Errorf("queue %d: open netlink socket: %w", c.queue, err)
	}
	// Overruns are counted and survived, not reported as socket errors that
	// would interrupt receiving.
	if err := nf.SetOption(netlink.NoENOBUFS, true); err != nil {
		nf.Close()
		return nil, fmt.Errorf("queue %d: set NETLINK_NO_ENOBUFS: %w", c.queue, err)
	}
	w := &worker{
		nf: nf, engine: c.engine, mark: c.mark, bypass: c.bypass,
		stats: &WorkerStats{Queue: c.queue}, fatal: c.fatal,
	}
	if err := nf.RegisterWithErrorFunc(ctx, w.hook, w.onError); err != nil {
		nf.Close()
		return nil, fmt.Errorf("queue %d: %w", c.queue, bindError(err))
	}
	return w, nil
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
	return err
}

// hook judges one packet. It must not block: it runs on the queue's only
// receive goroutine.
func (w *worker) hook(a nfqueue.Attribute) int {
	start := time.Now()
	w.errRun = 0
	if a.PacketID == nil {
		return 0
	}
	var payload []byte
	if a.Payload != nil {
		payload = *a.Payload
	}
	v := w.engine.Judge(payload, inspect.Meta{InDev: deref(a.InDev), OutDev: deref(a.OutDev)}, start)
	var err error
	if v.Allow {
		// NF_REPEAT, not NF_ACCEPT: the packet walks FORWARD again from the
		// top, skips the redirect thanks to the mark, and meets Docker's own
		// rules as if nfqguard were not there.
		mark := deref(a.Mark) | w.mark
		if v.Bypass {
			mark |= w.bypass
		}
		err = w.nf.SetVerdictWithOption(*a.PacketID, nfqueue.NfRepeat, nfqueue.WithMark(mark))
	} else {
		err = w.nf.SetVerdict(*a.PacketID, nfqueue.NfDrop)
	}
	if err != nil {
		w.stats.VerdictErrors.Add(1)
	}
	w.stats.Latency.Observe(time.Since(start))
	return 0
}

// onError keeps the receive loop alive through overruns and stops it when
// the run ends or the socket is broken for good.
func (w *worker) onError(err error) int {
	if w.stopped.Load() {
		return 1
	}
	if errors.Is(err, unix.ENOBUFS) {
		w.stats.ENOBUFS.Add(1)
		return 0
	}
	var op *netlink.OpError
	if errors.As(err, &op) && op.Timeout() {
		// The read deadline go-nfqueue sets to interrupt Receive on cancel.
		return 1
	}
	w.stats.RecvErrors.Add(1)
	w.errRun++
	if w.errRun >= maxRecvErrors {
		select {
		case w.fatal <- fmt.Errorf("queue %d: receive: %w", w.stats.Queue, err):
		default:
		}
		return 1
	}
	return 0
}

// close stops the worker and waits for its receive goroutine.
func (w *worker) close() error {
	w.stopped.Store(true)
	if err := w.nf.Close(); err != nil {
		return fmt.Errorf("queue %d: close: %w", w.stats.Queue, err)
	}
	return nil
}

func deref(p *uint32) uint32 {
	if p == nil {
		return 0
	}
	return *p
}
