package netlab

import (
	"bytes"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// ServeTCPEcho starts a TCP server in namespace ns listening on addr that
// echoes back whatever each connection sends until the peer half-closes;
// then it closes the connection. It serves many connections concurrently
// from goroutines of the calling process (no child process) and runs until
// Close.
func (l *Lab) ServeTCPEcho(ns string, addr netip.AddrPort) error {
	return l.serveTCP(ns, addr, "echo", func(c net.Conn) {
		_, _ = io.Copy(c, c)
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.CloseWrite()
			// Drain until the peer closes so the close is orderly.
			_, _ = io.Copy(io.Discard, c)
		}
	})
}

// ServeTCPWhoAmI starts a TCP server in namespace ns listening on addr that
// writes the peer's address as seen by the server ("ip:port", IPv6 in
// brackets) and closes the connection. It lets tests observe the effects
// of DNAT and MASQUERADE. It runs until Close.
func (l *Lab) ServeTCPWhoAmI(ns string, addr netip.AddrPort) error {
	return l.serveTCP(ns, addr, "whoami", func(c net.Conn) {
		_, _ = io.WriteString(c, c.RemoteAddr().String())
	})
}

func (l *Lab) serveTCP(ns string, addr netip.AddrPort, kind string, handle func(net.Conn)) error {
	var ln net.Listener
	err := l.Do(ns, func() error {
		var err error
		ln, err = net.Listen(tcpNet(addr.Addr()), addr.String())
		return err
	})
	if err != nil {
		return fmt.Errorf("lab: TCP %s server on %s in %s: %w", kind, addr, ns, err)
	}
	if !l.addCloser(ln, ln.Close) {
		ln.Close()
		return fmt.Errorf("lab: TCP %s server on %s in %s: lab closed", kind, addr, ns)
	}
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				if errors.Is(err, net.ErrClosed) {
					return
				}
				var ne net.Error
				if errors.As(err, &ne) && ne.Timeout() {
					continue
				}
				// Temporary failures such as EMFILE: back off briefly.
				time.Sleep(10 * time.Millisecond)
				continue
			}
			if !l.addCloser(c, c.Close) {
				c.Close()
				return
			}
			l.wg.Add(1)
			go func() {
				defer l.wg.Done()
				defer l.removeCloser(c)
				defer c.Close()
				handle(c)
			}()
		}
	}()
	return nil
}

// ServeUDPEcho starts a UDP server in namespace ns bound to addr that sends
// every datagram back to its sender. It runs until Close.
func (l *Lab) ServeUDPEcho(ns string, addr netip.AddrPort) error {
	_, err := l.serveUDP(ns, addr, "echo", func(req []byte) ([]byte, bool) { return req, true })
	return err
}

// serveUDP starts a UDP server in namespace ns bound to addr that answers
// each datagram with what answer returns for it (nothing when ok is false).
// It runs until Close; the socket is returned for callers that must undo it.
func (l *Lab) serveUDP(ns string, addr netip.AddrPort, kind string, answer func(req []byte) (resp []byte, ok bool)) (*net.UDPConn, error) {
	pc, err := l.listenUDP(ns, addr)
	if err != nil {
		return nil, fmt.Errorf("lab: UDP %s server on %s in %s: %w", kind, addr, ns, err)
	}
	if !l.addCloser(pc, pc.Close) {
		pc.Close()
		return nil, fmt.Errorf("lab: UDP %s server on %s in %s: lab closed", kind, addr, ns)
	}
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
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
	return pc, nil
}

// listenUDP opens a UDP socket bound to addr in namespace ns.
func (l *Lab) listenUDP(ns string, addr netip.AddrPort) (*net.UDPConn, error) {
	var pc *net.UDPConn
	err := l.Do(ns, func() error {
		var err error
		pc, err = net.ListenUDP(udpNet(addr.Addr()), net.UDPAddrFromAddrPort(addr))
		return err
	})
	return pc, err
}

// TCPConn opens a TCP connection from namespace ns to dst, giving up after
// timeout. The connection's socket lives in ns; the caller closes it.
func (l *Lab) TCPConn(ns string, dst netip.AddrPort, timeout time.Duration) (net.Conn, error) {
	return l.tcpConn(ns, dst, time.Now().Add(timeout))
}

func (l *Lab) tcpConn(ns string, dst netip.AddrPort, deadline time.Time) (net.Conn, error) {
	var c net.Conn
	err := l.Do(ns, func() error {
		var err error
		d := net.Dialer{Deadline: deadline}
		c, err = d.Dial(tcpNet(dst.Addr()), dst.String())
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("lab: TCP connect from %s to %s: %w", ns, dst, err)
	}
	return c, nil
}

// TCPExchange connects from namespace ns to dst, sends payload, half-closes
// and reads the reply until EOF. It returns nil only if the reply equals
// payload; the whole exchange is bounded by timeout.
func (l *Lab) TCPExchange(ns string, dst netip.AddrPort, payload []byte, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	c, err := l.tcpConn(ns, dst, deadline)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.SetDeadline(deadline); err != nil {
		return fmt.Errorf("lab: TCP exchange %s -> %s: %w", ns, dst, err)
	}
	wr := make(chan error, 1)
	go func() {
		_, err := c.Write(payload)
		if err == nil {
			err = c.(*net.TCPConn).CloseWrite()
		}
		wr <- err
	}()
	got, rerr := io.ReadAll(io.LimitReader(c, int64(len(payload))+1))
	werr := <-wr
	if werr != nil {
		return fmt.Errorf("lab: TCP exchange %s -> %s: send: %w", ns, dst, werr)
	}
	if rerr != nil {
		return fmt.Errorf("lab: TCP exchange %s -> %s: receive (%d of %d bytes): %w", ns, dst, len(got), len(payload), rerr)
	}
	if !bytes.Equal(got, payload) {
		return fmt.Errorf("lab: TCP exchange %s -> %s: echo mismatch (sent %d bytes, got %d)", ns, dst, len(payload), len(got))
	}
	return nil
}

// TCPWhoAmI connects from namespace ns to a ServeTCPWhoAmI server at dst
// and returns the client address that server observed.
func (l *Lab) TCPWhoAmI(ns string, dst netip.AddrPort, timeout time.Duration) (netip.AddrPort, error) {
	deadline := time.Now().Add(timeout)
	c, err := l.tcpConn(ns, dst, deadline)
	if err != nil {
		return netip.AddrPort{}, err
	}
	defer c.Close()
	if err := c.SetDeadline(deadline); err != nil {
		return netip.AddrPort{}, fmt.Errorf("lab: whoami %s -> %s: %w", ns, dst, err)
	}
	b, err := io.ReadAll(io.LimitReader(c, 128))
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("lab: whoami %s -> %s: %w", ns, dst, err)
	}
	ap, err := netip.ParseAddrPort(string(b))
	if err != nil {
		return netip.AddrPort{}, fmt.Errorf("lab: whoami %s -> %s: bad reply %q: %w", ns, dst, b, err)
	}
	return ap, nil
}

// UDPExchange sends payload in one datagram from namespace ns to dst and
// waits for one reply. It returns nil only if the reply equals payload;
// the exchange is bounded by timeout.
func (l *Lab) UDPExchange(ns string, dst netip.AddrPort, payload []byte, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	var c *net.UDPConn
	err := l.Do(ns, func() error {
		var err error
		c, err = net.DialUDP(udpNet(dst.Addr()), nil, net.UDPAddrFromAddrPort(dst))
		return err
	})
	if err != nil {
		return fmt.Errorf("lab: UDP exchange %s -> %s: %w", ns, dst, err)
	}
	defer c.Close()
	if err := c.SetDeadline(deadline); err != nil {
		return fmt.Errorf("lab: UDP exchange %s -> %s: %w", ns, dst, err)
	}
	if _, err := c.Write(payload); err != nil {
		return fmt.Errorf("lab: UDP exchange %s -> %s: send: %w", ns, dst, err)
	}
	buf := make([]byte, len(payload)+1)
	n, err := c.Read(buf)
	if err != nil {
		return fmt.Errorf("lab: UDP exchange %s -> %s: receive: %w", ns, dst, err)
	}
	if !bytes.Equal(buf[:n], payload) {
		return fmt.Errorf("lab: UDP exchange %s -> %s: echo mismatch (sent %d bytes, got %d)", ns, dst, len(payload), n)
	}
	return nil
}

// Ping sends one ICMP (or ICMPv6) echo request from namespace ns to dst
// over a raw socket created in ns and waits up to timeout for the matching
// echo reply.
func (l *Lab) Ping(ns string, dst netip.Addr, timeout time.Duration) error {
	var rnd [2]byte
	if _, err := rand.Read(rnd[:]); err != nil {
		return fmt.Errorf("lab: ping %s from %s: %w", dst, ns, err)
	}
	return l.PingID(ns, dst, binary.BigEndian.Uint16(rnd[:]), timeout)
}

// PingID is Ping with the echo identifier chosen by the caller, for tests
// that need to know or reuse it.
func (l *Lab) PingID(ns string, dst netip.Addr, id uint16, timeout time.Duration) error {
	dst = dst.Unmap()
	deadline := time.Now().Add(timeout)
	network, laddr, proto := "ip4:icmp", "0.0.0.0", 1
	var reqType, replyType icmp.Type = ipv4.ICMPTypeEcho, ipv4.ICMPTypeEchoReply
	if dst.Is6() {
		network, laddr, proto = "ip6:ipv6-icmp", "::", 58
		reqType, replyType = ipv6.ICMPTypeEchoRequest, ipv6.ICMPTypeEchoReply
	}
	var c *icmp.PacketConn
	err := l.Do(ns, func() error {
		var err error
		c, err = icmp.ListenPacket(network, laddr)
		return err
	})
	if err != nil {
		return fmt.Errorf("lab: ping %s from %s: %w", dst, ns, err)
	}
	defer c.Close()

	data := make([]byte, 16)
	if _, err := rand.Read(data); err != nil {
		return fmt.Errorf("lab: ping %s from %s: %w", dst, ns, err)
	}
	msg := icmp.Message{Type: reqType, Body: &icmp.Echo{ID: int(id), Seq: 1, Data: data}}
	wb, err := msg.Marshal(nil) // the kernel fills in the ICMPv6 checksum
	if err != nil {
		return fmt.Errorf("lab: ping %s from %s: %w", dst, ns, err)
	}
	if err := c.SetDeadline(deadline); err != nil {
		return fmt.Errorf("lab: ping %s from %s: %w", dst, ns, err)
	}
	if _, err := c.WriteTo(wb, &net.IPAddr{IP: dst.AsSlice()}); err != nil {
		return fmt.Errorf("lab: ping %s from %s: send: %w", dst, ns, err)
	}
	rb := make([]byte, 1500)
	for {
		n, peer, err := c.ReadFrom(rb)
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				return fmt.Errorf("lab: ping %s from %s: no reply within %v: %w", dst, ns, timeout, err)
			}
			return fmt.Errorf("lab: ping %s from %s: receive: %w", dst, ns, err)
		}
		m, err := icmp.ParseMessage(proto, rb[:n])
		if err != nil || m.Type != replyType {
			continue
		}
		echo, ok := m.Body.(*icmp.Echo)
		if !ok || echo.ID != int(id) || echo.Seq != 1 {
			continue
		}
		if ip, ok := peer.(*net.IPAddr); ok {
			if a, ok := netip.AddrFromSlice(ip.IP); !ok || a.Unmap() != dst {
				continue
			}
		}
		if !bytes.Equal(echo.Data, data) {
			return fmt.Errorf("lab: ping %s from %s: reply payload mismatch", dst, ns)
		}
		return nil
	}
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
