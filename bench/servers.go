package bench

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/nfqguard/nfqguard/internal/netlab"
	"github.com/nfqguard/nfqguard/internal/traffic"
)

// Container ports of the servers, published by the lab (see publish).
const (
	echoPort    = 80   // request/response: echoes every byte
	sinkPort    = 8000 // bulk: reads and counts bytes
	oneShotPort = 8001 // connections: reads 64 bytes, writes 64 bytes, closes
	udpSinkPort = 53   // small packets: counts datagrams
)

// Host ports the outside client connects to.
const (
	echoHostPort    = 8080
	sinkHostPort    = 8000
	oneShotHostPort = 8001
	udpSinkHostPort = 5353
)

// publish is the lab's port mapping: every server on c1 (web).
var publish = []netlab.Publish{
	{HostPort: echoHostPort, Container: 0, ContainerPort: echoPort, Proto: "tcp"},
	{HostPort: sinkHostPort, Container: 0, ContainerPort: sinkPort, Proto: "tcp"},
	{HostPort: oneShotHostPort, Container: 0, ContainerPort: oneShotPort, Proto: "tcp"},
	{HostPort: udpSinkHostPort, Container: 0, ContainerPort: udpSinkPort, Proto: "udp"},
	{HostPort: l7HostPort, Container: 0, ContainerPort: l7Port, Proto: "tcp"},
	{HostPort: l7HostPort, Container: 0, ContainerPort: l7Port, Proto: "udp"},
}

// msgSize is the payload of a request, a reply and a UDP datagram.
const msgSize = 64

// servers are the bench's servers in the web container. Their sockets are
// created in the container's namespace; the goroutines serving them are
// the bench's own (traffic.Server), so Close stops everything.
type servers struct {
	sinkBytes    atomic.Uint64 // bytes the bulk sink received
	udpDatagrams atomic.Uint64 // datagrams the UDP sink received

	running []*traffic.Server
}

// startServers starts the four servers in namespace ns on addr.
func startServers(l *netlab.Lab, ns string, addr netip.Addr) (*servers, error) {
	s := &servers{}
	for _, tcp := range []struct {
		port   uint16
		handle func(net.Conn)
	}{
		{echoPort, traffic.EchoConn},
		{sinkPort, s.sink},
		{oneShotPort, s.oneShot},
	} {
		ln, err := traffic.ListenTCP(l.NSPath(ns), netip.AddrPortFrom(addr, tcp.port))
		if err != nil {
			return nil, errors.Join(err, s.Close())
		}
		s.running = append(s.running, traffic.ServeTCP(ln, tcp.handle))
	}
	pc, err := traffic.ListenUDP(l.NSPath(ns), netip.AddrPortFrom(addr, udpSinkPort))
	if err != nil {
		return nil, errors.Join(err, s.Close())
	}
	// Absorb bursts: the sink must not be what limits the UDP rate.
	_ = pc.SetReadBuffer(4 << 20)
	s.running = append(s.running, traffic.ServeUDP(pc, func([]byte) ([]byte, bool) {
		s.udpDatagrams.Add(1)
		return nil, false
	}))
	return s, nil
}

func (s *servers) sink(c net.Conn) {
	buf := make([]byte, 256<<10)
	for {
		n, err := c.Read(buf)
		s.sinkBytes.Add(uint64(n))
		if err != nil {
			return
		}
	}
}

func (s *servers) oneShot(c net.Conn) {
	var buf [msgSize]byte
	if err := c.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
		return
	}
	if _, err := io.ReadFull(c, buf[:]); err != nil {
		return
	}
	_, _ = c.Write(buf[:])
}

// Close stops the servers and waits for their goroutines.
func (s *servers) Close() error {
	var errs []error
	for _, srv := range s.running {
		errs = append(errs, srv.Close())
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("close servers: %w", err)
	}
	return nil
}
