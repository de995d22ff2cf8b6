package traffic

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/nfqguard/nfqguard/internal/netns"
)

// Server serves one socket from goroutines of the calling process until
// Close: a listener with a handler per connection (ServeTCP) or a datagram
// socket with an answer per datagram (ServeUDP). It tracks the connections
// it accepted, so that Close ends their handlers too.
type Server struct {
	sock      io.Closer
	closeOnce sync.Once
	closeErr  error
	wg        sync.WaitGroup // the accept or read loop and the handlers

	mu     sync.Mutex // guards conns and closed
	conns  map[net.Conn]struct{}
	closed bool
}

// Close stops the server, closes its open connections and waits for its
// goroutines. It is idempotent; every call returns the first one's error.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		s.closeErr = s.sock.Close()
		s.mu.Lock()
		s.closed = true
		for c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
	return s.closeErr
}

// ListenTCP opens a TCP listener on addr in the network namespace at
// nsPath.
func ListenTCP(nsPath string, addr netip.AddrPort) (net.Listener, error) {
	var ln net.Listener
	err := netns.Do(nsPath, func() error {
		var err error
		ln, err = net.Listen(family("tcp", addr.Addr()), addr.String())
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("traffic: listen on %s/tcp in %s: %w", addr, nsPath, err)
	}
	return ln, nil
}

// ListenUDP opens a UDP socket bound to addr in the network namespace at
// nsPath.
func ListenUDP(nsPath string, addr netip.AddrPort) (*net.UDPConn, error) {
	var pc *net.UDPConn
	err := netns.Do(nsPath, func() error {
		var err error
		pc, err = net.ListenUDP(family("udp", addr.Addr()), net.UDPAddrFromAddrPort(addr))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("traffic: listen on %s/udp in %s: %w", addr, nsPath, err)
	}
	return pc, nil
}

// ServeTCP accepts connections on ln and runs handle on each in a
// goroutine of its own, closing the connection when handle returns, until
// Close (which closes ln).
func ServeTCP(ln net.Listener, handle func(net.Conn)) *Server {
	s := &Server{sock: ln, conns: map[net.Conn]struct{}{}}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				var ne net.Error
				if !errors.As(err, &ne) || !ne.Timeout() {
					// Temporary failures such as EMFILE: back off briefly.
					time.Sleep(10 * time.Millisecond)
				}
				continue
			}
			if !s.track(c) {
				c.Close()
				return
			}
			go func() {
				defer s.wg.Done()
				defer s.untrack(c)
				defer c.Close()
				handle(c)
			}()
		}
	}()
	return s
}

// track registers c (and its handler with wg) unless the server is closed.
func (s *Server) track(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	s.conns[c] = struct{}{}
	s.wg.Add(1)
	return true
}

func (s *Server) untrack(c net.Conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

// ServeUDP reads datagrams on pc and sends each sender what answer returns
// for its datagram (nothing when ok is false), until Close (which closes
// pc). answer runs on the one reading goroutine and must not keep req.
func ServeUDP(pc *net.UDPConn, answer func(req []byte) (resp []byte, ok bool)) *Server {
	s := &Server{sock: pc}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		buf := make([]byte, 65536)
		for {
			n, from, err := pc.ReadFromUDPAddrPort(buf)
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				continue
			}
			if resp, ok := answer(buf[:n]); ok {
				_, _ = pc.WriteToUDPAddrPort(resp, from)
			}
		}
	}()
	return s
}

// EchoConn is the echo servers' handler: it sends back whatever c brings
// until the peer half-closes, then half-closes too and reads until the
// peer closes, so that the close is orderly.
func EchoConn(c net.Conn) {
	_, _ = io.Copy(c, c)
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.CloseWrite()
		_, _ = io.Copy(io.Discard, c)
	}
}

// ServeTCPEcho starts a TCP echo server (EchoConn) on addr in the network
// namespace at nsPath.
func ServeTCPEcho(nsPath string, addr netip.AddrPort) (*Server, error) {
	ln, err := ListenTCP(nsPath, addr)
	if err != nil {
		return nil, err
	}
	return ServeTCP(ln, EchoConn), nil
}

// ServeUDPEcho starts a UDP server on addr in the network namespace at
// nsPath that sends every datagram back to its sender.
func ServeUDPEcho(nsPath string, addr netip.AddrPort) (*Server, error) {
	pc, err := ListenUDP(nsPath, addr)
	if err != nil {
		return nil, err
	}
	return ServeUDP(pc, func(req []byte) ([]byte, bool) { return req, true }), nil
}
