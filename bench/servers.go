package bench

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nfqguard/nfqguard/internal/netlab"
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
}

// msgSize is the payload of a request, a reply and a UDP datagram.
const msgSize = 64

// servers are the bench's servers in the web container. Their sockets are
// created in the container's namespace; the goroutines serving them are
// the bench's own, so Close stops everything.
type servers struct {
	sinkBytes    atomic.Uint64 // bytes the bulk sink received
	udpDatagrams atomic.Uint64 // datagrams the UDP sink received

	listeners []net.Listener
	udp       *net.UDPConn
	wg        sync.WaitGroup // accept loops, connection handlers, the UDP reader

	mu     sync.Mutex // guards conns and closed
	conns  map[net.Conn]struct{}
	closed bool
}

// startServers starts the four servers in namespace ns on addr.
func startServers(l *netlab.Lab, ns string, addr netip.Addr) (*servers, error) {
	s := &servers{conns: map[net.Conn]struct{}{}}
	for _, tcp := range []struct {
		port   uint16
		handle func(net.Conn)
	}{
		{echoPort, s.echo},
		{sinkPort, s.sink},
		{oneShotPort, s.oneShot},
	} {
		at := netip.AddrPortFrom(addr, tcp.port)
		var ln net.Listener
		err := l.Do(ns, func() error {
			var err error
			ln, err = net.Listen("tcp4", at.String())
			return err
		})
		if err != nil {
			return nil, errors.Join(fmt.Errorf("listen on %s in %s: %w", at, ns, err), s.Close())
		}
		s.listeners = append(s.listeners, ln)
		s.wg.Add(1)
		go s.accept(ln, tcp.handle)
	}
	at := netip.AddrPortFrom(addr, udpSinkPort)
	err := l.Do(ns, func() error {
		var err error
		s.udp, err = net.ListenUDP("udp4", net.UDPAddrFromAddrPort(at))
		return err
	})
	if err != nil {
		return nil, errors.Join(fmt.Errorf("listen on %s/udp in %s: %w", at, ns, err), s.Close())
	}
	// Absorb bursts: the sink must not be what limits the UDP rate.
	_ = s.udp.SetReadBuffer(4 << 20)
	s.wg.Add(1)
	go s.countDatagrams()
	return s, nil
}

func (s *servers) accept(ln net.Listener, handle func(net.Conn)) {
	defer s.wg.Done()
	for {
		c, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			time.Sleep(5 * time.Millisecond) // EMFILE and the like
			continue
		}
		s.mu.Lock()
		if s.closed {
			s.mu.Unlock()
			c.Close()
			return
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			handle(c)
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
			c.Close()
		}()
	}
}

func (s *servers) echo(c net.Conn) { _, _ = io.Copy(c, c) }

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

func (s *servers) countDatagrams() {
	defer s.wg.Done()
	buf := make([]byte, 2048)
	for {
		_, _, err := s.udp.ReadFromUDPAddrPort(buf)
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			continue
		}
		s.udpDatagrams.Add(1)
	}
}

// Close stops the servers and waits for their goroutines.
func (s *servers) Close() error {
	s.mu.Lock()
	s.closed = true
	for c := range s.conns {
		c.Close()
	}
	s.mu.Unlock()
	var errs []error
	for _, ln := range s.listeners {
		errs = append(errs, ln.Close())
	}
	if s.udp != nil {
		errs = append(errs, s.udp.Close())
	}
	s.wg.Wait()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("close servers: %w", err)
	}
	return nil
}
