package queue

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"
	"unsafe"

	nfqueue "github.com/florianl/go-nfqueue/v2"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// nfnetlink_queue protocol numbers (linux/netfilter/nfnetlink_queue.h).
const (
	nfnlSubsysQueue = 3

	nfqnlMsgPacket  = 0
	nfqnlMsgVerdict = 1
	nfqnlMsgConfig  = 2

	nfqaPacketHdr  = 1
	nfqaVerdictHdr = 2
	nfqaMark       = 3
	nfqaIfIndexIn  = 5
	nfqaIfIndexOut = 6
	nfqaPayload    = 10

	nfqaCfgCmd         = 1
	nfqaCfgParams      = 2
	nfqaCfgQueueMaxLen = 3
	nfqaCfgMask        = 4
	nfqaCfgFlags       = 5

	nfqnlCfgCmdBind = 1
	nfqnlCopyPacket = 2

	nlaTypeMask = 0x3fff
	nlmsgHdrLen = 16
	nlaHdrLen   = 4
)

// Receive batching: up to recvBatch datagrams per recvmmsg call, each in a
// buffer large enough for a full copied packet and its attributes.
const (
	recvBatch = 32
	recvBuf   = 0xffff + 4096
	// verdictLen is the largest verdict message: header, nfgenmsg,
	// verdict header and mark.
	verdictLen = nlmsgHdrLen + 4 + (nlaHdrLen + 8) + (nlaHdrLen + 4)
	// stopLatency bounds how long a worker takes to notice it must stop.
	stopLatency = 100 * time.Millisecond
)

// mmsghdr is struct mmsghdr of recvmmsg(2); Go pads it as C does.
type mmsghdr struct {
	hdr unix.Msghdr
	len uint32
}

// packet is what the kernel tells about one queued packet. payload points
// into a receive buffer and is valid until the next receive.
type packet struct {
	id            uint32
	mark          uint32
	inDev, outDev uint32
	payload       []byte
}

// nfq drives one bound NFQUEUE queue at the netlink level: packets arrive
// in batches through recvmmsg into buffers allocated once, and the verdicts
// of a batch leave in one write. go-nfqueue opens and configures the socket;
// its per-message receive path, which allocates for every attribute and
// costs a peek and a read per packet, is not used. An nfq belongs to one
// goroutine.
type nfq struct {
	fd    int // blocking, owned; no poller watches it
	queue uint16

	bufs [recvBatch][]byte
	iovs [recvBatch]unix.Iovec
	hdrs [recvBatch]mmsghdr
	n    int    // datagrams in the current batch
	pkt  packet // the packet being handed out

	out     []byte // verdicts of the current batch
	pending int    // verdicts in out
}

// openQueue opens a netlink socket and binds it to queue q with the given
// kernel queue length and flags (nfqueue.NfQaCfgFlag*).
//
// go-nfqueue opens the socket (in this thread's network namespace) and
// carries the configuration exchange. The socket is then taken over: its
// descriptor is duplicated and go-nfqueue's Conn closed, which takes the
// socket out of Go's network poller (epoll) while the duplicate keeps it,
// and the queue binding, alive. Otherwise every queued packet would wake
// an idle runtime thread in epoll_wait as well as the worker: two thread
// wake-ups per packet instead of one.
func openQueue(q uint16, queueLen, flags uint32) (*nfq, error) {
	nf, err := nfqueue.Open(&nfqueue.Config{NfQueue: q, MaxQueueLen: queueLen, Copymode: nfqueue.NfQnlCopyPacket,
		MaxPacketLen: 0xffff, AfFamily: unix.AF_UNSPEC})
	if err != nil {
		return nil, fmt.Errorf("open netlink socket: %w", err)
	}
	defer nf.Con.Close()
	if err := configure(nf.Con, q, queueLen, flags); err != nil {
		return nil, err
	}
	raw, err := nf.Con.SyscallConn()
	if err != nil {
		return nil, fmt.Errorf("raw socket: %w", err)
	}
	fd := -1
	var derr error
	if err := raw.Control(func(s uintptr) { fd, derr = unix.FcntlInt(s, unix.F_DUPFD_CLOEXEC, 0) }); err != nil || derr != nil {
		return nil, fmt.Errorf("take over socket: %w", errors.Join(err, derr))
	}
	if err := blockingReceive(fd, queueLen); err != nil {
		unix.Close(fd)
		return nil, err
	}
	n := &nfq{fd: fd, queue: q, out: make([]byte, 0, recvBatch*verdictLen)}
	for i := range n.bufs {
		n.bufs[i] = make([]byte, recvBuf)
		n.iovs[i].Base = &n.bufs[i][0]
		n.iovs[i].SetLen(recvBuf)
		n.hdrs[i].hdr.Iov = &n.iovs[i]
		n.hdrs[i].hdr.SetIovlen(1)
	}
	return n, nil
}

// configure binds c to queue q and sets copy mode, queue length and flags.
func configure(c *netlink.Conn, q uint16, queueLen, flags uint32) error {
	// Overruns are counted by the kernel (user_dropped), not reported as
	// socket errors that interrupt receiving.
	if err := c.SetOption(netlink.NoENOBUFS, true); err != nil {
		return fmt.Errorf("set NETLINK_NO_ENOBUFS: %w", err)
	}
	if err := config(c, q, nlAttr(nfqaCfgCmd, []byte{nfqnlCfgCmdBind, 0, 0, unix.AF_UNSPEC})); err != nil {
		return bindError(err)
	}
	params := binary.BigEndian.AppendUint32(nil, 0xffff)
	params = append(params, nfqnlCopyPacket)
	attrs := nlAttr(nfqaCfgParams, params)
	attrs = append(attrs, nlAttr(nfqaCfgQueueMaxLen, be32(queueLen))...)
	if flags != 0 {
		attrs = append(attrs, nlAttr(nfqaCfgFlags, be32(flags))...)
		attrs = append(attrs, nlAttr(nfqaCfgMask, be32(flags))...)
	}
	if err := config(c, q, attrs); err != nil {
		return fmt.Errorf("configure: %w", err)
	}
	return nil
}

// blockingReceive makes fd block in the kernel on receive, so a queued
// packet wakes the worker's thread directly, with a timeout that bounds how
// long stop waits, and a receive buffer with room for a full queue of small
// packets.
func blockingReceive(fd int, queueLen uint32) error {
	if err := unix.SetNonblock(fd, false); err != nil {
		return fmt.Errorf("set blocking receive: %w", err)
	}
	tv := unix.NsecToTimeval(int64(stopLatency))
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		return fmt.Errorf("set receive timeout: %w", err)
	}
	// SO_RCVBUFFORCE passes rmem_max for a privileged process; fall back
	// to what an unprivileged one may ask.
	size := int(min(queueLen, 1<<16)) * 2048
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, size); err != nil {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, size); err != nil {
			return fmt.Errorf("set receive buffer: %w", err)
		}
	}
	return nil
}

// config sends one NFQNL_MSG_CONFIG for queue q and waits for the ack.
func config(c *netlink.Conn, q uint16, attrs []byte) error {
	_, err := c.Execute(netlink.Message{
		Header: netlink.Header{
			Type:  netlink.HeaderType(nfnlSubsysQueue<<8 | nfqnlMsgConfig),
			Flags: netlink.Request | netlink.Acknowledge,
		},
		Data: append(nfgenmsg(q), attrs...),
	})
	return err
}

// receive waits for the next batch of datagrams, at most stopLatency;
// it returns errTimeout when none came.
func (n *nfq) receive() error {
	for i := range n.hdrs {
		n.hdrs[i].len = 0
	}
	n.n = 0
	// MSG_WAITFORONE: block for the first datagram, then take whatever
	// else is already queued, up to recvBatch.
	r, _, errno := unix.Syscall6(unix.SYS_RECVMMSG, uintptr(n.fd), uintptr(unsafe.Pointer(&n.hdrs[0])), recvBatch,
		unix.MSG_WAITFORONE, 0, 0)
	switch errno {
	case 0:
		n.n = int(r)
		return nil
	case unix.EAGAIN, unix.EINTR:
		return errTimeout
	}
	return errno
}

// errTimeout is a receive that saw no packet within stopLatency.
var errTimeout = errors.New("no packet")

// errNotPacket marks a message that is not a queued packet.
var errNotPacket = errors.New("not a packet message")

// packets calls fn for every queued packet of the current batch, and
// returns how many netlink error messages (verdicts the kernel refused)
// the batch held. fn must not keep the payload.
func (n *nfq) packets(fn func(*packet)) (nlErrors int) {
	p := &n.pkt // not a local: handed to fn, it would escape
	for i := 0; i < n.n; i++ {
		b := n.bufs[i][:min(int(n.hdrs[i].len), recvBuf)]
		for len(b) >= nlmsgHdrLen {
			l := int(binary.NativeEndian.Uint32(b[0:4]))
			typ := binary.NativeEndian.Uint16(b[4:6])
			if l < nlmsgHdrLen || l > len(b) {
				break
			}
			switch {
			case typ == unix.NLMSG_ERROR:
				if l >= nlmsgHdrLen+4 && binary.NativeEndian.Uint32(b[16:20]) != 0 {
					nlErrors++
				}
			case typ == nfnlSubsysQueue<<8|nfqnlMsgPacket:
				if parsePacket(b[nlmsgHdrLen:l], p) == nil {
					fn(p)
				}
			}
			if align4(l) >= len(b) {
				break
			}
			b = b[align4(l):]
		}
	}
	return nlErrors
}

// parsePacket reads the attributes of an NFQNL_MSG_PACKET body (after the
// netlink header). It trusts no length.
func parsePacket(b []byte, p *packet) error {
	*p = packet{}
	if len(b) < 4 {
		return errNotPacket
	}
	b = b[4:] // nfgenmsg
	seenID := false
	for len(b) >= nlaHdrLen {
		l := int(binary.NativeEndian.Uint16(b[0:2]))
		t := binary.NativeEndian.Uint16(b[2:4]) & nlaTypeMask
		if l < nlaHdrLen || l > len(b) {
			return errNotPacket
		}
		v := b[nlaHdrLen:l]
		switch t {
		case nfqaPacketHdr:
			if len(v) >= 4 {
				p.id, seenID = binary.BigEndian.Uint32(v), true
			}
		case nfqaMark:
			if len(v) >= 4 {
				p.mark = binary.BigEndian.Uint32(v)
			}
		case nfqaIfIndexIn:
			if len(v) >= 4 {
				p.inDev = binary.BigEndian.Uint32(v)
			}
		case nfqaIfIndexOut:
			if len(v) >= 4 {
				p.outDev = binary.BigEndian.Uint32(v)
			}
		case nfqaPayload:
			p.payload = v
		}
		if align4(l) >= len(b) {
			break
		}
		b = b[align4(l):]
	}
	if !seenID {
		return errNotPacket
	}
	return nil
}

// verdict queues a verdict for packet id; flush sends the queued ones.
// mark is set on the packet when withMark is true.
func (n *nfq) verdict(id uint32, verdict uint32, mark uint32, withMark bool) {
	l := nlmsgHdrLen + 4 + nlaHdrLen + 8
	if withMark {
		l += nlaHdrLen + 4
	}
	b := n.out
	b = binary.NativeEndian.AppendUint32(b, uint32(l))
	b = binary.NativeEndian.AppendUint16(b, nfnlSubsysQueue<<8|nfqnlMsgVerdict)
	b = binary.NativeEndian.AppendUint16(b, unix.NLM_F_REQUEST)
	b = binary.NativeEndian.AppendUint32(b, 0) // sequence
	b = binary.NativeEndian.AppendUint32(b, 0) // port id: the kernel
	b = append(b, unix.AF_UNSPEC, unix.NFNETLINK_V0, byte(n.queue>>8), byte(n.queue))
	n.pending++
	b = binary.NativeEndian.AppendUint16(b, nlaHdrLen+8)
	b = binary.NativeEndian.AppendUint16(b, nfqaVerdictHdr)
	b = binary.BigEndian.AppendUint32(b, verdict)
	b = binary.BigEndian.AppendUint32(b, id)
	if withMark {
		b = binary.NativeEndian.AppendUint16(b, nlaHdrLen+4)
		b = binary.NativeEndian.AppendUint16(b, nfqaMark)
		b = binary.BigEndian.AppendUint32(b, mark)
	}
	n.out = b
}

// flush sends every queued verdict in one write: the kernel processes each
// netlink message of a datagram in turn.
func (n *nfq) flush() (int, error) {
	sent := n.pending
	n.pending = 0
	if len(n.out) == 0 {
		return sent, nil
	}
	_, err := unix.Write(n.fd, n.out)
	n.out = n.out[:0]
	return sent, err
}

// close releases the socket, which unbinds the queue.
func (n *nfq) close() error {
	return unix.Close(n.fd)
}

func nfgenmsg(queue uint16) []byte {
	return []byte{unix.AF_UNSPEC, unix.NFNETLINK_V0, byte(queue >> 8), byte(queue)}
}

func nlAttr(typ uint16, v []byte) []byte {
	b := binary.NativeEndian.AppendUint16(nil, uint16(nlaHdrLen+len(v)))
	b = binary.NativeEndian.AppendUint16(b, typ)
	b = append(b, v...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

func be32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }

func align4(n int) int { return (n + 3) &^ 3 }
