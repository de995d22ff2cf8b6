package queue

// socket is what a worker needs of its NFQUEUE queue, one batch at a time:
// receive a batch, walk its packets (the worker judges each and queues its
// verdict), flush the verdicts in one write. *nfq is the real one, a netlink
// socket bound to a queue; the tests drive the worker loop through an
// in-memory fake, without root. A socket belongs to one goroutine, the
// worker's.
//
// The packet path goes through it, so an implementation must not allocate
// per packet; handing out a *packet the socket owns keeps the interface
// call from making one escape.
type socket interface {
	// receive waits for the next batch, at most stopLatency; it returns
	// errTimeout when none came, or the error that failed the receive
	// (unix.ENOBUFS when the kernel could not deliver some packets).
	receive() error
	// packets calls fn for every queued packet of the batch received
	// last, and returns how many of the earlier verdicts the kernel
	// refused (their netlink errors arrive with the batch). fn must not
	// keep the packet or its payload: both are reused.
	packets(fn func(*packet)) (refused int)
	// verdict queues verdict (nfqueue.NfDrop, nfqueue.NfRepeat) for
	// packet id; mark is set on the packet when withMark is true.
	verdict(id, verdict, mark uint32, withMark bool)
	// flush sends the queued verdicts in one write and returns how many
	// the write carried; they are dropped from the queue when it fails too.
	flush() (int, error)
	// close releases the socket, which unbinds the queue.
	close() error
}

var _ socket = (*nfq)(nil)
