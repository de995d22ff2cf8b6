package netlab

// Load generation for tests of the engine under stress: a flood of small
// UDP datagrams from any number of source addresses and ports (one flow
// each), sent through a raw socket with sendmmsg, and a sink that counts
// what arrives. Both keep their sockets in lab namespaces: the flood never
// leaves the lab.

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/nfqguard/nfqguard/internal/netns"
	"github.com/nfqguard/nfqguard/internal/traffic"
	"golang.org/x/net/ipv4"
	"golang.org/x/sys/unix"
)

// floodBatch is how many datagrams one sendmmsg call carries.
const floodBatch = 64

// Flood describes a flood of small UDP datagrams over IPv4.
type Flood struct {
	// Flows are the datagrams' sources and destinations, used in turn, one
	// datagram each: repeating one flow among others keeps it active at a
	// known pace relative to them. The source addresses need not be
	// configured in the namespace (the socket writes its own IP headers),
	// but replies reach only those that are (see AddOutsideAddrs).
	Flows []FloodFlow
	// Payload is the UDP payload size in bytes; 0 means 18, which makes the
	// smallest Ethernet frame (a 46-byte IP packet).
	Payload int
	// Senders is the number of goroutines sending, each with a raw socket
	// of its own and its share of Flows in turn; 0 means 1. Use one when
	// the order of Flows matters.
	Senders int
	// Count stops the flood after this many datagrams in all; 0 means no
	// limit.
	Count int
	// Duration stops the flood after this long; 0 means no limit (then
	// Count or the context must end it).
	Duration time.Duration
	// Rate caps datagrams per second, all senders together; 0 means as
	// fast as the namespace's stack takes them.
	Rate int
}

// FloodFlow is one flow of a Flood: its IPv4 source and destination.
type FloodFlow struct {
	Src, Dst netip.AddrPort
}

// FloodResult is what a flood sent.
type FloodResult struct {
	// Sent counts the datagrams the kernel accepted from the senders.
	Sent uint64
	// Elapsed is how long the flood ran.
	Elapsed time.Duration
}

// Flood sends f's datagrams from namespace ns until Count, Duration or ctx
// ends it, and reports how many the kernel took. It needs CAP_NET_RAW. A
// flood ended by ctx is not an error: its result counts what was sent.
func (l *Lab) Flood(ctx context.Context, ns string, f Flood) (FloodResult, error) {
	if len(f.Flows) == 0 {
		return FloodResult{}, fmt.Errorf("lab: flood from %s: no flows", ns)
	}
	for _, fl := range f.Flows {
		if !fl.Src.Addr().Is4() || !fl.Dst.Addr().Is4() {
			return FloodResult{}, fmt.Errorf("lab: flood from %s: flow %s -> %s: IPv4 only", ns, fl.Src, fl.Dst)
		}
	}
	payload := f.Payload
	if payload == 0 {
		payload = 18
	}
	if payload < 0 || payload > 1400 {
		return FloodResult{}, fmt.Errorf("lab: flood from %s: payload of %d bytes, want 0..1400", ns, payload)
	}
	senders := max(f.Senders, 1)
	fds := make([]int, 0, senders)
	defer func() {
		for _, fd := range fds {
			unix.Close(fd)
		}
	}()
	for range senders {
		var fd int
		err := l.Do(ns, func() error {
			var err error
			// IPPROTO_RAW implies IP_HDRINCL: the kernel fills in the total
			// length, the id and the header checksum, nothing else.
			fd, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
			return err
		})
		if err != nil {
			return FloodResult{}, fmt.Errorf("lab: flood from %s: raw socket: %w", ns, err)
		}
		fds = append(fds, fd)
	}

	if f.Duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, f.Duration)
		defer cancel()
	}
	start := time.Now()
	var sent, claimed atomic.Uint64
	errs := make(chan error, senders)
	for i, fd := range fds {
		s := &floodSender{fd: fd, f: &f, payload: payload, first: i, step: senders, start: start, sent: &sent, claimed: &claimed}
		go func() { errs <- s.run(ctx) }()
	}
	var err error
	for range senders {
		err = errors.Join(err, <-errs)
	}
	res := FloodResult{Sent: sent.Load(), Elapsed: time.Since(start)}
	if err != nil {
		return res, fmt.Errorf("lab: flood from %s: %w", ns, err)
	}
	return res, nil
}

// floodSender is one sending goroutine of a flood: it sends Flows[first],
// Flows[first+step], … in turn.
type floodSender struct {
	fd      int
	f       *Flood
	payload int
	first   int
	step    int
	start   time.Time
	sent    *atomic.Uint64 // all senders'
	claimed *atomic.Uint64 // all senders': datagrams of Count taken
}

func (s *floodSender) run(ctx context.Context) error {
	f := s.f
	var (
		bufs [floodBatch][]byte
		iovs [floodBatch]unix.Iovec
		hdrs [floodBatch]mmsghdr
		tos  [floodBatch]unix.RawSockaddrInet4
	)
	size := ipv4.HeaderLen + 8 + s.payload
	for i := range bufs {
		b := make([]byte, size)
		b[0] = 0x45 // version 4, 20-byte header
		b[8] = 64   // TTL
		b[9] = unix.IPPROTO_UDP
		binary.BigEndian.PutUint16(b[24:26], uint16(8+s.payload))
		// UDP checksum 0: none, which IPv4 allows.
		bufs[i] = b
		iovs[i].Base = &b[0]
		iovs[i].SetLen(size)
		hdrs[i].hdr.Iov = &iovs[i]
		hdrs[i].hdr.SetIovlen(1)
		tos[i].Family = unix.AF_INET
		hdrs[i].hdr.Name = (*byte)(unsafe.Pointer(&tos[i]))
		hdrs[i].hdr.Namelen = unix.SizeofSockaddrInet4
	}
	next := s.first % len(f.Flows)
	for ctx.Err() == nil {
		n := floodBatch
		if f.Rate > 0 {
			// Pace against the start so that a late wake-up is caught up,
			// not lost.
			due := s.start.Add(time.Duration(float64(s.sent.Load()) / float64(f.Rate) * float64(time.Second)))
			if d := time.Until(due); d > 0 {
				select {
				case <-ctx.Done():
					return nil
				case <-time.After(d):
				}
			}
			n = min(n, max(f.Rate/100, 1)) // about 10 ms of datagrams per call
		}
		if f.Count > 0 {
			// Senders claim their datagrams from the count before sending
			// them, so that together they send exactly Count.
			end := s.claimed.Add(uint64(n))
			if end-uint64(n) >= uint64(f.Count) {
				return nil
			}
			n = int(min(end, uint64(f.Count)) - (end - uint64(n)))
		}
		for i := range n {
			fl := f.Flows[next]
			next += s.step
			for next >= len(f.Flows) {
				next -= len(f.Flows)
			}
			src, dst := fl.Src.Addr().As4(), fl.Dst.Addr().As4()
			b := bufs[i]
			copy(b[12:16], src[:])
			copy(b[16:20], dst[:])
			binary.BigEndian.PutUint16(b[20:22], fl.Src.Port())
			binary.BigEndian.PutUint16(b[22:24], fl.Dst.Port())
			tos[i].Addr = dst
		}
		for done := 0; done < n; {
			r, _, errno := unix.Syscall6(unix.SYS_SENDMMSG, uintptr(s.fd), uintptr(unsafe.Pointer(&hdrs[done])), uintptr(n-done), 0, 0, 0)
			switch errno {
			case 0:
				done += int(r)
				s.sent.Add(uint64(r))
			case unix.EINTR, unix.ENOBUFS, unix.EAGAIN:
				// The device queue is full: a flood may see that; go on.
				if ctx.Err() != nil {
					return nil
				}
			default:
				return fmt.Errorf("sendmmsg: %w", errno)
			}
		}
	}
	return nil
}

// mmsghdr is struct mmsghdr of sendmmsg(2); Go pads it as C does.
type mmsghdr struct {
	hdr unix.Msghdr
	len uint32
}

// UDPCounter counts the datagrams arriving at a UDP socket in a lab
// namespace. Its methods are safe for concurrent use.
type UDPCounter struct {
	pc       *net.UDPConn
	nsPath   string
	inode    uint64 // the socket's, to find it in /proc/net/udp
	received atomic.Uint64
	done     chan struct{}
}

// CountUDP starts a UDP sink in namespace ns bound to addr that counts the
// datagrams it receives and discards them. Its receive buffer is as large
// as the kernel allows a privileged process (64 MiB asked), so that a flood
// is counted rather than overflowing it. It runs until Close (its own or
// the lab's).
func (l *Lab) CountUDP(ns string, addr netip.AddrPort) (*UDPCounter, error) {
	pc, err := traffic.ListenUDP(l.NSPath(ns), addr)
	if err != nil {
		return nil, fmt.Errorf("lab: UDP counter on %s in %s: %w", addr, ns, err)
	}
	var st unix.Stat_t
	raw, err := pc.SyscallConn()
	if err == nil {
		var serr error
		err = raw.Control(func(fd uintptr) {
			serr = errors.Join(unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 64<<20), unix.Fstat(int(fd), &st))
		})
		err = errors.Join(err, serr)
	}
	if err != nil {
		pc.Close()
		return nil, fmt.Errorf("lab: UDP counter on %s in %s: receive buffer: %w", addr, ns, err)
	}
	c := &UDPCounter{pc: pc, nsPath: l.NSPath(ns), inode: st.Ino, done: make(chan struct{})}
	if !l.addCloser(c, pc.Close) {
		pc.Close()
		return nil, fmt.Errorf("lab: UDP counter on %s in %s: lab closed", addr, ns)
	}
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		defer close(c.done)
		c.count()
	}()
	return c, nil
}

// count receives in batches (recvmmsg) until the socket is closed.
func (c *UDPCounter) count() {
	p := ipv4.NewPacketConn(c.pc)
	msgs := make([]ipv4.Message, 64)
	for i := range msgs {
		msgs[i].Buffers = [][]byte{make([]byte, 2048)}
	}
	for {
		n, err := p.ReadBatch(msgs, 0)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		c.received.Add(uint64(n))
	}
}

// Received returns the number of datagrams received so far.
func (c *UDPCounter) Received() uint64 { return c.received.Load() }

// Drops returns the datagrams the kernel dropped because the sink's
// receive buffer was full: the drops column of its line in /proc/net/udp
// (or udp6). Received + Drops is what reached the socket.
func (c *UDPCounter) Drops() (uint64, error) {
	var drops uint64
	found := false
	err := netns.Do(c.nsPath, func() error {
		for _, name := range []string{"udp", "udp6"} {
			b, err := os.ReadFile("/proc/thread-self/net/" + name)
			if err != nil {
				return err
			}
			// sl local rem st tx:rx tr:when retrnsmt uid timeout inode ref pointer drops
			for _, line := range strings.Split(string(b), "\n") {
				f := strings.Fields(line)
				if len(f) < 13 || f[9] != strconv.FormatUint(c.inode, 10) {
					continue
				}
				drops, err = strconv.ParseUint(f[12], 10, 64)
				found = err == nil
				return err
			}
		}
		return nil
	})
	if err == nil && !found {
		err = fmt.Errorf("socket inode %d not in /proc/net/udp", c.inode)
	}
	if err != nil {
		return 0, fmt.Errorf("lab: UDP counter drops: %w", err)
	}
	return drops, nil
}

// Close stops the sink and waits for its goroutine.
func (c *UDPCounter) Close() error {
	err := c.pc.Close()
	<-c.done
	if errors.Is(err, net.ErrClosed) {
		return nil
	}
	return err
}

// AddOutsideAddrs gives the outside client n more IPv4 addresses on its
// link to the host, 203.0.113.10 and up (n at most 200), and returns them.
// The host routes the whole link's /24 to the outside namespace, so
// replies to them come back. They go away with the lab.
func (l *Lab) AddOutsideAddrs(n int) ([]netip.Addr, error) {
	if n < 1 || n > 200 {
		return nil, fmt.Errorf("lab: %d outside addresses, want 1..200", n)
	}
	base := l.Outside.As4()
	base[3] = 10
	var (
		addrs []netip.Addr
		batch netns.Script
	)
	for i := range n {
		a := base
		a[3] += byte(i)
		addr := netip.AddrFrom4(a)
		addrs = append(addrs, addr)
		batch.Add("addr add %s/24 dev eth0", addr)
	}
	ctx, cancel := context.WithTimeout(l.ctx, 10*time.Second)
	defer cancel()
	if err := netns.IPBatch(ctx, l.Out, batch.String()); err != nil {
		return nil, fmt.Errorf("lab: add outside addresses: %w", err)
	}
	return addrs, nil
}

// LinkStats are an interface's packet counters.
type LinkStats struct {
	RxPackets, RxDropped uint64
	TxPackets, TxDropped uint64
}

// ContainerLinkStats reads the counters of the host's end of container i's
// veth (0-based, as Lab.Containers), in the host namespace. Its TxDropped
// counts packets forwarded to the container that the container's side
// could not take (its backlog was full): lost on the way, after every
// firewall decision.
func (l *Lab) ContainerLinkStats(i int) (LinkStats, error) {
	if i < 0 || i >= len(l.Containers) {
		return LinkStats{}, fmt.Errorf("lab: container %d of %d", i, len(l.Containers))
	}
	dev := fmt.Sprintf("vc%d", i+1)
	ctx, cancel := context.WithTimeout(l.ctx, 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ip", "-n", l.Host, "-j", "-s", "link", "show", "dev", dev).Output()
	if err != nil {
		return LinkStats{}, fmt.Errorf("lab: counters of %s in %s: %w", dev, l.Host, err)
	}
	var links []struct {
		Stats struct {
			Rx struct{ Packets, Dropped uint64 }
			Tx struct{ Packets, Dropped uint64 }
		} `json:"stats64"`
	}
	if err := json.Unmarshal(out, &links); err != nil || len(links) != 1 {
		return LinkStats{}, fmt.Errorf("lab: counters of %s in %s: %q: %w", dev, l.Host, out, err)
	}
	s := links[0].Stats
	return LinkStats{RxPackets: s.Rx.Packets, RxDropped: s.Rx.Dropped, TxPackets: s.Tx.Packets, TxDropped: s.Tx.Dropped}, nil
}
