package dockerlab

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/nfqguard/nfqguard/internal/netns"
)

// TCPConn opens a TCP connection from the network namespace at nsPath to
// dst, from source port sport (0: any), giving up at deadline. The socket
// lives in that namespace; the caller closes the connection.
func TCPConn(nsPath string, sport uint16, dst netip.AddrPort, deadline time.Time) (*net.TCPConn, error) {
	var c net.Conn
	err := netns.Do(nsPath, func() error {
		d := net.Dialer{Deadline: deadline}
		if sport != 0 {
			d.LocalAddr = &net.TCPAddr{Port: int(sport)}
		}
		var err error
		c, err = d.Dial(tcpNet(dst.Addr()), dst.String())
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("dockerlab: TCP connect %s port %d -> %s: %w", nsPath, sport, dst, err)
	}
	return c.(*net.TCPConn), nil
}

// TCPExchange connects from the namespace at nsPath (source port sport, 0
// for any) to dst, sends payload, half-closes and reads the reply until
// EOF. It returns nil only if the reply equals payload; the whole exchange
// is bounded by timeout.
func TCPExchange(nsPath string, sport uint16, dst netip.AddrPort, payload []byte, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	c, err := TCPConn(nsPath, sport, dst, deadline)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := Echo(c, payload, deadline); err != nil {
		return fmt.Errorf("dockerlab: TCP exchange %s port %d -> %s: %w", nsPath, sport, dst, err)
	}
	return nil
}

// Echo sends payload over c, half-closes and expects payload back before
// deadline.
func Echo(c *net.TCPConn, payload []byte, deadline time.Time) error {
	if err := c.SetDeadline(deadline); err != nil {
		return err
	}
	wr := make(chan error, 1)
	go func() {
		_, err := c.Write(payload)
		if err == nil {
			err = c.CloseWrite()
		}
		wr <- err
	}()
	got, rerr := io.ReadAll(io.LimitReader(c, int64(len(payload))+1))
	if werr := <-wr; werr != nil {
		return fmt.Errorf("send: %w", werr)
	}
	if rerr != nil {
		return fmt.Errorf("receive (%d of %d bytes): %w", len(got), len(payload), rerr)
	}
	if !bytes.Equal(got, payload) {
		return fmt.Errorf("echo mismatch: sent %d bytes, got %d", len(payload), len(got))
	}
	return nil
}

// UDPExchange sends payload in one datagram from the namespace at nsPath
// (source port sport, 0 for any) to dst and waits for one reply. It
// returns nil only if the reply equals payload; the exchange is bounded by
// timeout.
func UDPExchange(nsPath string, sport uint16, dst netip.AddrPort, payload []byte, timeout time.Duration) error {
	var c *net.UDPConn
	err := netns.Do(nsPath, func() error {
		var laddr *net.UDPAddr
		if sport != 0 {
			laddr = &net.UDPAddr{Port: int(sport)}
		}
		var err error
		c, err = net.DialUDP(udpNet(dst.Addr()), laddr, net.UDPAddrFromAddrPort(dst))
		return err
	})
	if err != nil {
		return fmt.Errorf("dockerlab: UDP exchange %s port %d -> %s: %w", nsPath, sport, dst, err)
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(timeout)); err != nil {
		return fmt.Errorf("dockerlab: UDP exchange %s port %d -> %s: %w", nsPath, sport, dst, err)
	}
	if _, err := c.Write(payload); err != nil {
		return fmt.Errorf("dockerlab: UDP exchange %s port %d -> %s: send: %w", nsPath, sport, dst, err)
	}
	buf := make([]byte, len(payload)+1)
	n, err := c.Read(buf)
	if err != nil {
		return fmt.Errorf("dockerlab: UDP exchange %s port %d -> %s: receive: %w", nsPath, sport, dst, err)
	}
	if !bytes.Equal(buf[:n], payload) {
		return fmt.Errorf("dockerlab: UDP exchange %s port %d -> %s: echo mismatch (sent %d bytes, got %d)", nsPath, sport, dst, len(payload), n)
	}
	return nil
}

// Server is an echo server started by ServeTCPEcho or ServeUDPEcho. It
// runs on goroutines of the calling process until Close.
type Server struct {
	closeOnce sync.Once
	closer    io.Closer
	wg        sync.WaitGroup

	mu    sync.Mutex // guards conns and done
	conns map[net.Conn]struct{}
	done  bool
}

// Close stops the server, closes its open connections and waits for its
// goroutines. It is idempotent.
func (s *Server) Close() error {
	var err error
	s.closeOnce.Do(func() {
		err = s.closer.Close()
		s.mu.Lock()
		s.done = true
		for c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
		s.wg.Wait()
	})
	return err
}

func (s *Server) track(c net.Conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.done {
		return false
	}
	s.conns[c] = struct{}{}
	return true
}

func (s *Server) untrack(c net.Conn) {
	s.mu.Lock()
	delete(s.conns, c)
	s.mu.Unlock()
}

// ServeTCPEcho starts a TCP server in the namespace at nsPath listening on
// addr that echoes whatever each connection sends until the peer
// half-closes, then half-closes too.
func ServeTCPEcho(nsPath string, addr netip.AddrPort) (*Server, error) {
	var ln net.Listener
	err := netns.Do(nsPath, func() error {
		var err error
		ln, err = net.Listen(tcpNet(addr.Addr()), addr.String())
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("dockerlab: TCP echo server on %s in %s: %w", addr, nsPath, err)
	}
	s := &Server{closer: ln, conns: map[net.Conn]struct{}{}}
	s.wg.Add(1)
	go func() {
		defer s.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				time.Sleep(10 * time.Millisecond) // EMFILE and the like
				continue
			}
			if !s.track(c) {
				c.Close()
				return
			}
			s.wg.Add(1)
			go func() {
				defer s.wg.Done()
				defer s.untrack(c)
				defer c.Close()
				_, _ = io.Copy(c, c)
				_ = c.(*net.TCPConn).CloseWrite()
				_, _ = io.Copy(io.Discard, c) // until the peer closes
			}()
		}
	}()
	return s, nil
}

// ServeUDPEcho starts a UDP server in the namespace at nsPath bound to addr
// that sends every datagram back to its sender.
func ServeUDPEcho(nsPath string, addr netip.AddrPort) (*Server, error) {
	var pc *net.UDPConn
	err := netns.Do(nsPath, func() error {
		var err error
		pc, err = net.ListenUDP(udpNet(addr.Addr()), net.UDPAddrFromAddrPort(addr))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("dockerlab: UDP echo server on %s in %s: %w", addr, nsPath, err)
	}
	s := &Server{closer: pc, conns: map[net.Conn]struct{}{}}
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
			_, _ = pc.WriteToUDPAddrPort(buf[:n], from)
		}
	}()
	return s, nil
}

func tcpNet(a netip.Addr) string {
	if a.Is4() || a.Is4In6() {
		return "tcp4"
	}
	return "tcp6"
}

func udpNet(a netip.Addr) string {
	if a.Is4() || a.Is4In6() {
		return "udp4"
	}
	return "udp6"
}
