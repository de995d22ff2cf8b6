package traffic

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"time"

	"github.com/nfqguard/nfqguard/internal/netns"
)

// DialTCP opens a TCP connection from the network namespace at nsPath to
// dst, from source port sport (0: any), giving up at deadline. The socket
// lives in that namespace; the caller closes the connection.
func DialTCP(nsPath string, sport uint16, dst netip.AddrPort, deadline time.Time) (*net.TCPConn, error) {
	d := net.Dialer{Deadline: deadline}
	if sport != 0 {
		d.LocalAddr = &net.TCPAddr{Port: int(sport)}
	}
	c, err := dial(context.Background(), nsPath, &d, "tcp", dst)
	if err != nil {
		return nil, fmt.Errorf("traffic: TCP connect %s port %d -> %s: %w", nsPath, sport, dst, err)
	}
	return c.(*net.TCPConn), nil
}

// DialContext connects from the network namespace at nsPath to dst over
// network ("tcp" or "udp": the address family follows dst), as
// net.Dialer.DialContext does, for the Dial hooks of net/http's Transport
// and net.Resolver. A dial error is returned as the dialer gave it, not
// wrapped: the resolver tells a socket error by its type (*net.OpError).
func DialContext(ctx context.Context, nsPath, network string, dst netip.AddrPort) (net.Conn, error) {
	return dial(ctx, nsPath, &net.Dialer{}, network, dst)
}

func dial(ctx context.Context, nsPath string, d *net.Dialer, network string, dst netip.AddrPort) (net.Conn, error) {
	var c net.Conn
	err := netns.Do(nsPath, func() error {
		var err error
		c, err = d.DialContext(ctx, family(network, dst.Addr()), dst.String())
		return err
	})
	return c, err
}

// TCPExchange connects from the namespace at nsPath (source port sport, 0
// for any) to dst, sends payload, half-closes and reads the reply until
// EOF. It returns nil only if the reply equals payload; the whole exchange
// is bounded by timeout.
func TCPExchange(nsPath string, sport uint16, dst netip.AddrPort, payload []byte, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	c, err := DialTCP(nsPath, sport, dst, deadline)
	if err != nil {
		return err
	}
	defer c.Close()
	if err := Echo(c, payload, deadline); err != nil {
		return fmt.Errorf("traffic: TCP exchange %s port %d -> %s: %w", nsPath, sport, dst, err)
	}
	return nil
}

// Echo sends payload over c, half-closes and expects payload back, then
// EOF, before deadline: one exchange with an echo server on a connection
// the caller opened (and closes).
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
	deadline := time.Now().Add(timeout)
	errf := func(format string, args ...any) error {
		return fmt.Errorf("traffic: UDP exchange %s port %d -> %s: %w", nsPath, sport, dst, fmt.Errorf(format, args...))
	}
	d := net.Dialer{Deadline: deadline}
	if sport != 0 {
		d.LocalAddr = &net.UDPAddr{Port: int(sport)}
	}
	c, err := dial(context.Background(), nsPath, &d, "udp", dst)
	if err != nil {
		return errf("%w", err)
	}
	defer c.Close()
	if err := c.SetDeadline(deadline); err != nil {
		return errf("%w", err)
	}
	if _, err := c.Write(payload); err != nil {
		return errf("send: %w", err)
	}
	buf := make([]byte, len(payload)+1)
	n, err := c.Read(buf)
	if err != nil {
		return errf("receive: %w", err)
	}
	if !bytes.Equal(buf[:n], payload) {
		return errf("echo mismatch (sent %d bytes, got %d)", len(payload), n)
	}
	return nil
}

// family returns network ("tcp" or "udp") narrowed to a's address family,
// "tcp4" or "tcp6": a socket of the other family could never reach a.
func family(network string, a netip.Addr) string {
	if a.Is4() || a.Is4In6() {
		return network + "4"
	}
	return network + "6"
}
