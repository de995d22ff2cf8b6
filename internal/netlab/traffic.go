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

	"github.com/nfqguard/nfqguard/internal/traffic"
	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// ServeTCPEcho starts a TCP server in namespace ns listening on addr that
// echoes back whatever each connection sends until the peer half-closes;
// then it half-closes too (traffic.EchoConn). It serves many connections
// concurrently from goroutines of the calling process (no child process)
// and runs until Close.
func (l *Lab) ServeTCPEcho(ns string, addr netip.AddrPort) error {
	return l.serveTCP(ns, addr, "echo", traffic.EchoConn)
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

// serveTCP starts a traffic.ServeTCP server in namespace ns on addr that
// runs handle on every connection, and stops it with the lab.
func (l *Lab) serveTCP(ns string, addr netip.AddrPort, kind string, handle func(net.Conn)) error {
	ln, err := traffic.ListenTCP(l.NSPath(ns), addr)
	if err != nil {
		return fmt.Errorf("lab: TCP %s server: %w", kind, err)
	}
	return l.closeWithLab(traffic.ServeTCP(ln, handle), "TCP "+kind, addr, ns)
}

// ServeUDPEcho starts a UDP server in namespace ns bound to addr that sends
// every datagram back to its sender. It runs until Close.
func (l *Lab) ServeUDPEcho(ns string, addr netip.AddrPort) error {
	_, err := l.serveUDP(ns, addr, "echo", func(req []byte) ([]byte, bool) { return req, true })
	return err
}

// serveUDP starts a UDP server in namespace ns bound to addr that answers
// each datagram with what answer returns for it (nothing when ok is false).
// It runs until Close; the server is returned for callers that must undo it.
func (l *Lab) serveUDP(ns string, addr netip.AddrPort, kind string, answer func(req []byte) (resp []byte, ok bool)) (*traffic.Server, error) {
	pc, err := traffic.ListenUDP(l.NSPath(ns), addr)
	if err != nil {
		return nil, fmt.Errorf("lab: UDP %s server: %w", kind, err)
	}
	s := traffic.ServeUDP(pc, answer)
	if err := l.closeWithLab(s, "UDP "+kind, addr, ns); err != nil {
		return nil, err
	}
	return s, nil
}

// closeWithLab registers s to be closed by Close, or closes it at once
// (and says so) when the lab is already closed.
func (l *Lab) closeWithLab(s *traffic.Server, what string, addr netip.AddrPort, ns string) error {
	if !l.addCloser(s, s.Close) {
		s.Close()
		return fmt.Errorf("lab: %s server on %s in %s: lab closed", what, addr, ns)
	}
	return nil
}

// TCPWhoAmI connects from namespace ns to a ServeTCPWhoAmI server at dst
// and returns the client address that server observed.
func (l *Lab) TCPWhoAmI(ns string, dst netip.AddrPort, timeout time.Duration) (netip.AddrPort, error) {
	deadline := time.Now().Add(timeout)
	c, err := traffic.DialTCP(l.NSPath(ns), 0, dst, deadline)
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
