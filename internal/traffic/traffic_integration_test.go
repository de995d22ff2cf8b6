package traffic_test

import (
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/nfqguard/nfqguard/internal/netlab"
	"github.com/nfqguard/nfqguard/internal/netlab/netlabtest"
	"github.com/nfqguard/nfqguard/internal/traffic"
)

// okTimeout bounds an exchange that must succeed; one expected to fail
// waits a tenth of it.
const okTimeout = 3 * time.Second

// TestExchanges runs the exchanges between two container namespaces of a
// lab with no engine: across docker0, with the source ports asked for.
func TestExchanges(t *testing.T) {
	t.Parallel()
	l := netlabtest.New(t, netlab.Options{})
	c1, c2 := l.Containers[0], l.Containers[1]
	from, to := l.NSPath(c2.NS), l.NSPath(c1.NS)
	payload := []byte("hello through traffic")
	at := func(port uint16) netip.AddrPort { return netip.AddrPortFrom(c1.Addr, port) }
	serve := closeAtEnd(t)

	serve(traffic.ServeTCPEcho(to, at(80)))
	serve(traffic.ServeUDPEcho(to, at(53)))
	ln, err := traffic.ListenTCP(to, at(88))
	serve(traffic.ServeTCP(ln, func(c net.Conn) { _, _ = io.WriteString(c, c.RemoteAddr().String()) }), err)
	ln, err = traffic.ListenTCP(to, at(89))
	serve(traffic.ServeTCP(ln, func(c net.Conn) {
		// Read the request to its end first: closing with unread data
		// would reset the connection rather than answer.
		_, _ = io.Copy(io.Discard, c)
		_, _ = io.WriteString(c, "not an echo")
	}), err)
	pc, err := traffic.ListenUDP(to, at(54))
	serve(traffic.ServeUDP(pc, func([]byte) ([]byte, bool) { return nil, false }), err)

	t.Run("TCPEcho", func(t *testing.T) {
		must(t, traffic.TCPExchange(from, 0, at(80), payload, okTimeout))
		must(t, traffic.TCPExchange(from, 24001, at(80), payload, okTimeout))
	})
	t.Run("SourcePort", func(t *testing.T) {
		c, err := traffic.DialTCP(from, 24002, at(88), time.Now().Add(okTimeout))
		must(t, err)
		defer c.Close()
		must(t, c.SetDeadline(time.Now().Add(okTimeout)))
		b, err := io.ReadAll(c)
		must(t, err)
		if want := netip.AddrPortFrom(c2.Addr, 24002).String(); string(b) != want {
			t.Errorf("server saw client %s, want %s", b, want)
		}
	})
	t.Run("Mismatch", func(t *testing.T) {
		err := traffic.TCPExchange(from, 0, at(89), payload, okTimeout)
		if err == nil || !strings.Contains(err.Error(), "echo mismatch") {
			t.Errorf("exchange with a server that does not echo: %v, want an echo mismatch", err)
		}
	})
	t.Run("TCPNoServer", func(t *testing.T) {
		if err := traffic.TCPExchange(from, 0, at(81), payload, okTimeout); err == nil {
			t.Error("exchange with a port nothing listens on succeeded")
		}
	})
	t.Run("UDPEcho", func(t *testing.T) {
		must(t, traffic.UDPExchange(from, 0, at(53), payload, okTimeout))
		must(t, traffic.UDPExchange(from, 24003, at(53), payload, okTimeout))
	})
	t.Run("UDPNoAnswer", func(t *testing.T) {
		err := traffic.UDPExchange(from, 0, at(54), payload, okTimeout/10)
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("exchange with a server that never answers: %v, want a timeout", err)
		}
	})
	t.Run("Echo", func(t *testing.T) {
		c, err := traffic.DialTCP(from, 0, at(80), time.Now().Add(okTimeout))
		must(t, err)
		defer c.Close()
		must(t, traffic.Echo(c, payload, time.Now().Add(okTimeout)))
	})
}

// TestServerCloseEndsConnections checks that Close ends the handlers of
// connections still open, and that it is idempotent.
func TestServerCloseEndsConnections(t *testing.T) {
	t.Parallel()
	l := netlabtest.New(t, netlab.Options{Containers: 1})
	c1 := l.Containers[0]
	ns, echo := l.NSPath(c1.NS), netip.AddrPortFrom(c1.Addr, 80)
	s, err := traffic.ServeTCPEcho(ns, echo)
	must(t, err)
	c, err := traffic.DialTCP(ns, 0, echo, time.Now().Add(okTimeout))
	must(t, err)
	defer c.Close()
	// One round trip, so the server has accepted (and tracks) c.
	_, err = c.Write([]byte("x"))
	must(t, err)
	must(t, c.SetDeadline(time.Now().Add(okTimeout)))
	_, err = io.ReadFull(c, make([]byte, 1))
	must(t, err)

	closed := make(chan error, 1)
	go func() { closed <- s.Close() }()
	select {
	case err := <-closed:
		must(t, err)
	case <-time.After(okTimeout):
		t.Fatal("Close did not return while a connection was open")
	}
	if _, err := c.Read(make([]byte, 1)); err == nil {
		t.Error("connection still open after the server's Close")
	}
	must(t, s.Close())
	if err := traffic.TCPExchange(ns, 0, echo, []byte("y"), okTimeout/10); err == nil {
		t.Error("exchange with a closed server succeeded")
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// closeAtEnd returns a function that fails t on err and closes the server
// it is given when the test ends.
func closeAtEnd(t *testing.T) func(*traffic.Server, error) {
	return func(s *traffic.Server, err error) {
		t.Helper()
		must(t, err)
		t.Cleanup(func() { s.Close() })
	}
}
