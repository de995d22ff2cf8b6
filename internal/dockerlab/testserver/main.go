// Command testserver is the one program of the image that package
// dockerlab builds for its private Docker engine (ENTRYPOINT /srv). It is
// built statically, needs nothing else in the image and has two modes.
//
// Serve (the default, no arguments or "serve"): TCP echo on every port of
// $TCP_PORTS (default "80,81,8000,9000") and UDP echo on every port of
// $UDP_PORTS (default "53"), on all IPv4 and IPv6 addresses of the
// container. A TCP connection is echoed until the peer half-closes; then the
// server half-closes too. Ports may also be given as arguments:
//
//	/srv serve -tcp 80,81 -udp 53
//
// Connect: originate one exchange from inside the container, for tests
// that need traffic from a process in the container (docker exec):
//
//	/srv connect [-udp] [-sport N] [-timeout 2s] [-msg TEXT] HOST:PORT
//
// sends TEXT (TCP: then half-closes), expects it echoed back within the
// timeout and exits 0; any failure prints the error on stderr and exits 1.
package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"time"
)

func main() {
	args := os.Args[1:]
	mode := "serve"
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		mode, args = args[0], args[1:]
	}
	var err error
	switch mode {
	case "serve":
		err = serve(args)
	case "connect":
		err = connect(args)
	default:
		err = fmt.Errorf("unknown mode %q (want serve or connect)", mode)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "testserver:", err)
		os.Exit(1)
	}
}

func envOr(key, def string) string {
	if v := os.Getenv(key); v != "" {
		return v
	}
	return def
}

func parsePorts(list string) ([]int, error) {
	var out []int
	for _, f := range strings.Split(list, ",") {
		f = strings.TrimSpace(f)
		if f == "" {
			continue
		}
		p, err := strconv.Atoi(f)
		if err != nil || p < 1 || p > 65535 {
			return nil, fmt.Errorf("bad port %q", f)
		}
		out = append(out, p)
	}
	return out, nil
}

func serve(args []string) error {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	tcpList := fs.String("tcp", envOr("TCP_PORTS", "80,81,8000,9000"), "comma-separated TCP echo ports")
	udpList := fs.String("udp", envOr("UDP_PORTS", "53"), "comma-separated UDP echo ports")
	if err := fs.Parse(args); err != nil {
		return err
	}
	tcpPorts, err := parsePorts(*tcpList)
	if err != nil {
		return fmt.Errorf("TCP ports: %w", err)
	}
	udpPorts, err := parsePorts(*udpList)
	if err != nil {
		return fmt.Errorf("UDP ports: %w", err)
	}
	errc := make(chan error, len(tcpPorts)+len(udpPorts))
	for _, p := range tcpPorts {
		// "tcp" on ":port" is dual-stack: IPv4 and, where the container has
		// it, IPv6.
		ln, err := net.Listen("tcp", ":"+strconv.Itoa(p))
		if err != nil {
			return fmt.Errorf("listen tcp/%d: %w", p, err)
		}
		go func() { errc <- serveTCP(ln) }()
	}
	for _, p := range udpPorts {
		pc, err := net.ListenPacket("udp", ":"+strconv.Itoa(p))
		if err != nil {
			return fmt.Errorf("listen udp/%d: %w", p, err)
		}
		go func() { errc <- serveUDP(pc) }()
	}
	fmt.Printf("serving tcp %v udp %v\n", tcpPorts, udpPorts)
	if len(tcpPorts)+len(udpPorts) == 0 {
		select {} // nothing to serve; stay up until stopped
	}
	return <-errc
}

func serveTCP(ln net.Listener) error {
	for {
		c, err := ln.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return fmt.Errorf("accept on %s: %w", ln.Addr(), err)
		}
		go func() {
			defer c.Close()
			_ = c.SetDeadline(time.Now().Add(time.Minute))
			_, _ = io.Copy(c, c)
			if tc, ok := c.(*net.TCPConn); ok {
				_ = tc.CloseWrite()
				// Drain until the peer closes so the close is orderly.
				_, _ = io.Copy(io.Discard, c)
			}
		}()
	}
}

func serveUDP(pc net.PacketConn) error {
	buf := make([]byte, 65536)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			return fmt.Errorf("read on %s: %w", pc.LocalAddr(), err)
		}
		_, _ = pc.WriteTo(buf[:n], from)
	}
}

func connect(args []string) error {
	fs := flag.NewFlagSet("connect", flag.ContinueOnError)
	udp := fs.Bool("udp", false, "exchange one UDP datagram instead of a TCP stream")
	sport := fs.Int("sport", 0, "source port (0: any)")
	timeout := fs.Duration("timeout", 2*time.Second, "bound on the whole exchange")
	msg := fs.String("msg", "hello from testserver", "message to send")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errors.New("usage: connect [-udp] [-sport N] [-timeout D] [-msg TEXT] HOST:PORT")
	}
	dst := fs.Arg(0)
	network := "tcp"
	if *udp {
		network = "udp"
	}
	deadline := time.Now().Add(*timeout)
	d := net.Dialer{Deadline: deadline}
	switch {
	case *sport != 0 && *udp:
		d.LocalAddr = &net.UDPAddr{Port: *sport}
	case *sport != 0:
		d.LocalAddr = &net.TCPAddr{Port: *sport}
	}
	c, err := d.Dial(network, dst)
	if err != nil {
		return fmt.Errorf("%s %s: %w", network, dst, err)
	}
	defer c.Close()
	_ = c.SetDeadline(deadline)
	got, err := exchange(c, []byte(*msg))
	if err != nil {
		return fmt.Errorf("%s %s: %w", network, dst, err)
	}
	if !bytes.Equal(got, []byte(*msg)) {
		return fmt.Errorf("%s %s: echo mismatch (sent %d bytes, got %d)", network, dst, len(*msg), len(got))
	}
	return nil
}

// exchange sends msg over c and returns the reply: over TCP all that comes
// back before EOF, after a half-close; over UDP one datagram.
func exchange(c net.Conn, msg []byte) ([]byte, error) {
	if _, err := c.Write(msg); err != nil {
		return nil, fmt.Errorf("send: %w", err)
	}
	tc, ok := c.(*net.TCPConn)
	if !ok {
		buf := make([]byte, len(msg)+1)
		n, err := c.Read(buf)
		if err != nil {
			return nil, fmt.Errorf("receive: %w", err)
		}
		return buf[:n], nil
	}
	if err := tc.CloseWrite(); err != nil {
		return nil, fmt.Errorf("half-close: %w", err)
	}
	got, err := io.ReadAll(io.LimitReader(c, int64(len(msg))+1))
	if err != nil {
		return nil, fmt.Errorf("receive: %w", err)
	}
	return got, nil
}
