package queue

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

// resetter cuts a TCP connection that deep inspection dropped after its
// handshake: it sends a RST to each end, forged from the other, through raw
// IPv4 and IPv6 sockets. The RSTs leave the host through OUTPUT, where
// conntrack applies the connection's NAT: the RST to a client that dialled
// a published port comes from the host port it dialled, and the RST to a
// server outside comes from the address the container is masqueraded
// behind. Without them both ends would wait for the held data until their
// own timeouts.
//
// It needs CAP_NET_RAW; without it flows are dropped until they expire.
type resetter struct {
	fd4, fd6 int
	buf      [60 + 20]byte // IPv6 header + TCP header
	sent     atomic.Uint64
	failed   atomic.Uint64
}

// newResetter opens the raw sockets. It is used by one worker at a time:
// each worker gets its own.
func newResetter() (*resetter, error) {
	fd4, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
	if err != nil {
		return nil, fmt.Errorf("raw IPv4 socket for TCP resets: %w", rawSocketErr(err))
	}
	// IPPROTO_RAW implies a header supplied by us (IP_HDRINCL, IPV6_HDRINCL).
	fd6, err := unix.Socket(unix.AF_INET6, unix.SOCK_RAW|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
	if err != nil {
		unix.Close(fd4)
		return nil, fmt.Errorf("raw IPv6 socket for TCP resets: %w", rawSocketErr(err))
	}
	return &resetter{fd4: fd4, fd6: fd6}, nil
}

// rawSocketErr names the capability a raw socket needs when the kernel
// refused it for want of it, so that the start-up warning says what to grant.
func rawSocketErr(err error) error {
	if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EACCES) {
		return fmt.Errorf("needs CAP_NET_RAW: %w", err)
	}
	return err
}

// Reset implements inspect.Resetter. It never blocks: a RST the socket
// cannot take at once is counted as failed.
func (r *resetter) Reset(client, server netip.AddrPort, clientSeq, serverSeq uint32) {
	r.send(client, server, clientSeq, serverSeq) // to the server, as from the client
	r.send(server, client, serverSeq, clientSeq) // to the client, as from the server
}

// send writes one RST|ACK from src to dst with sequence number seq.
func (r *resetter) send(src, dst netip.AddrPort, seq, ack uint32) {
	var n int
	var sa unix.Sockaddr
	fd := r.fd4
	if src.Addr().Unmap().Is4() && dst.Addr().Unmap().Is4() {
		n = buildRST4(r.buf[:], src, dst, seq, ack)
		sa = &unix.SockaddrInet4{Addr: dst.Addr().Unmap().As4()}
	} else {
		n = buildRST6(r.buf[:], src, dst, seq, ack)
		sa = &unix.SockaddrInet6{Addr: dst.Addr().As16()}
		fd = r.fd6
	}
	if err := unix.Sendto(fd, r.buf[:n], 0, sa); err != nil {
		r.failed.Add(1)
		return
	}
	r.sent.Add(1)
}

// close releases the sockets.
func (r *resetter) close() error {
	e4, e6 := unix.Close(r.fd4), unix.Close(r.fd6)
	if e4 != nil {
		return e4
	}
	return e6
}

const (
	tcpHeaderLen = 20
	tcpRSTACK    = 0x14
)

// buildRST4 writes an IPv4 TCP RST|ACK into b and returns its length. The
// kernel fills in the IP header checksum, total length and id.
func buildRST4(b []byte, src, dst netip.AddrPort, seq, ack uint32) int {
	s, d := src.Addr().Unmap().As4(), dst.Addr().Unmap().As4()
	ip := b[:20]
	clear(ip)
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:], 20+tcpHeaderLen)
	ip[8] = 64 // TTL
	ip[9] = unix.IPPROTO_TCP
	copy(ip[12:16], s[:])
	copy(ip[16:20], d[:])
	tcp := b[20 : 20+tcpHeaderLen]
	writeRST(tcp, src.Port(), dst.Port(), seq, ack)
	sum := uint32(0)
	sum = csumAdd(sum, s[:])
	sum = csumAdd(sum, d[:])
	sum += unix.IPPROTO_TCP + tcpHeaderLen
	sum = csumAdd(sum, tcp)
	binary.BigEndian.PutUint16(tcp[16:], csumFold(sum))
	return 20 + tcpHeaderLen
}

// buildRST6 writes an IPv6 TCP RST|ACK into b and returns its length.
func buildRST6(b []byte, src, dst netip.AddrPort, seq, ack uint32) int {
	s, d := src.Addr().As16(), dst.Addr().As16()
	ip := b[:40]
	clear(ip)
	ip[0] = 0x60
	binary.BigEndian.PutUint16(ip[4:], tcpHeaderLen)
	ip[6] = unix.IPPROTO_TCP
	ip[7] = 64 // hop limit
	copy(ip[8:24], s[:])
	copy(ip[24:40], d[:])
	tcp := b[40 : 40+tcpHeaderLen]
	writeRST(tcp, src.Port(), dst.Port(), seq, ack)
	sum := uint32(0)
	sum = csumAdd(sum, s[:])
	sum = csumAdd(sum, d[:])
	sum += tcpHeaderLen + unix.IPPROTO_TCP
	sum = csumAdd(sum, tcp)
	binary.BigEndian.PutUint16(tcp[16:], csumFold(sum))
	return 40 + tcpHeaderLen
}

func writeRST(tcp []byte, sport, dport uint16, seq, ack uint32) {
	clear(tcp)
	binary.BigEndian.PutUint16(tcp[0:], sport)
	binary.BigEndian.PutUint16(tcp[2:], dport)
	binary.BigEndian.PutUint32(tcp[4:], seq)
	binary.BigEndian.PutUint32(tcp[8:], ack)
	tcp[12] = tcpHeaderLen / 4 << 4
	tcp[13] = tcpRSTACK
}

// csumAdd adds b, as big-endian 16-bit words, to the one's-complement sum.
func csumAdd(sum uint32, b []byte) uint32 {
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	return sum
}

func csumFold(sum uint32) uint16 {
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}
