package bench

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/quic-go/quic-go"

	"github.com/nfqguard/nfqguard/internal/netlab"
	"github.com/nfqguard/nfqguard/internal/traffic"
)

// What deep inspection costs: new TLS (over TCP) and QUIC connections to
// web's port 443, judged by a port rule (SetupPort443) and by a server-name
// rule on the same port (SetupSNI443), in otherwise the same table.

const (
	l7Port     = 443  // web's TLS (tcp) and QUIC (udp) servers
	l7HostPort = 8443 // where the lab publishes them
	// l7Name is the server name the clients ask for, and the SNI rule
	// allows.
	l7Name = "bench.example"
	l7ALPN = "nfqguard-bench"
)

// HandshakeResult is one run of a new-connection workload with a TLS
// handshake (TLS over TCP, or QUIC): connections per second, and the time
// from the first packet of a connection to the server's first byte, which
// holds the handshake and, under inspection, the wait for the ClientHello.
type HandshakeResult struct {
	Count   uint64      `json:"count"`
	Seconds float64     `json:"seconds"`
	PerSec  float64     `json:"per_sec"`
	TTFB    Percentiles `json:"ttfb_us"`
}

// l7Servers are web's TLS and QUIC servers: each answers a connection with
// one byte, then waits for the client to close.
type l7Servers struct {
	tcp    *traffic.Server
	pc     *net.UDPConn
	ln     *quic.Listener
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func startL7Servers(l *netlab.Lab, ns string, addr netip.Addr) (*l7Servers, error) {
	cert, err := netlab.SelfSignedCert()
	if err != nil {
		return nil, fmt.Errorf("TLS server: %w", err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{l7ALPN}, MinVersion: tls.VersionTLS13}
	s := &l7Servers{}
	ln, err := traffic.ListenTCP(l.NSPath(ns), netip.AddrPortFrom(addr, l7Port))
	if err != nil {
		return nil, err
	}
	s.tcp = traffic.ServeTCP(ln, func(c net.Conn) {
		if err := c.SetDeadline(time.Now().Add(5 * time.Second)); err != nil {
			return
		}
		tc := tls.Server(c, cfg)
		if tc.Handshake() != nil {
			return
		}
		if _, err := tc.Write([]byte{1}); err != nil {
			return
		}
		_, _ = io.Copy(io.Discard, tc)
	})
	s.pc, err = traffic.ListenUDP(l.NSPath(ns), netip.AddrPortFrom(addr, l7Port))
	if err != nil {
		return nil, errors.Join(err, s.Close())
	}
	s.ln, err = quic.Listen(s.pc, cfg, &quic.Config{MaxIdleTimeout: 5 * time.Second})
	if err != nil {
		return nil, errors.Join(fmt.Errorf("QUIC server: %w", err), s.Close())
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	s.wg.Go(func() {
		for {
			c, err := s.ln.Accept(ctx)
			if err != nil {
				return
			}
			s.wg.Go(func() {
				defer c.CloseWithError(0, "")
				st, err := c.AcceptStream(ctx)
				if err != nil {
					return
				}
				_, _ = st.Write([]byte{1})
				_ = st.Close()
				select { // the client closes once it has its byte
				case <-c.Context().Done():
				case <-ctx.Done():
				case <-time.After(5 * time.Second):
				}
			})
		}
	})
	return s, nil
}

// Close stops both servers and waits for their goroutines.
func (s *l7Servers) Close() error {
	var errs []error
	if s.cancel != nil {
		s.cancel()
	}
	if s.ln != nil {
		errs = append(errs, s.ln.Close())
	}
	if s.pc != nil {
		errs = append(errs, s.pc.Close())
	}
	s.wg.Wait()
	if s.tcp != nil {
		errs = append(errs, s.tcp.Close())
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("close TLS and QUIC servers: %w", err)
	}
	return nil
}

func clientTLS() *tls.Config {
	// No session cache: every connection is a full handshake, as a new
	// client's first one is.
	return &tls.Config{ServerName: l7Name, NextProtos: []string{l7ALPN}, InsecureSkipVerify: true, MinVersion: tls.VersionTLS13}
}

// tlsConns counts new TLS connections (connect, handshake, the server's
// first byte, close) from connLoops loops, each connection on a new source
// port: a new flow.
func (c *clients) tlsConns(ctx context.Context) (*HandshakeResult, error) {
	dst := c.dst(l7HostPort).String()
	return c.handshakes(ctx, func(buf []byte) error {
		d := net.Dialer{Timeout: stepTimeout}
		conn, err := d.DialContext(ctx, "tcp4", dst)
		if err != nil {
			return fmt.Errorf("connect: %w", err)
		}
		defer conn.Close()
		if err := conn.SetDeadline(time.Now().Add(stepTimeout)); err != nil {
			return err
		}
		tc := tls.Client(conn, clientTLS())
		if _, err := io.ReadFull(tc, buf[:1]); err != nil { // the handshake, then the byte
			return fmt.Errorf("handshake and first byte: %w", err)
		}
		return nil
	})
}

// quicConns is tlsConns over QUIC: each connection from a socket of its
// own (a new flow), the server's byte on a stream the client opens.
func (c *clients) quicConns(ctx context.Context) (*HandshakeResult, error) {
	dst := net.UDPAddrFromAddrPort(c.dst(l7HostPort))
	conf := &quic.Config{HandshakeIdleTimeout: stepTimeout}
	return c.handshakes(ctx, func(buf []byte) error {
		pc, err := net.ListenUDP("udp4", nil)
		if err != nil {
			return err
		}
		tr := &quic.Transport{Conn: pc}
		defer func() { _ = tr.Close(); _ = pc.Close() }()
		cctx, cancel := context.WithTimeout(ctx, stepTimeout)
		defer cancel()
		conn, err := tr.Dial(cctx, dst, clientTLS(), conf)
		if err != nil {
			return fmt.Errorf("handshake: %w", err)
		}
		defer conn.CloseWithError(0, "")
		st, err := conn.OpenStreamSync(cctx)
		if err != nil {
			return fmt.Errorf("open stream: %w", err)
		}
		if _, err := st.Write([]byte{0}); err != nil {
			return fmt.Errorf("send: %w", err)
		}
		if _, err := io.ReadFull(st, buf[:1]); err != nil {
			return fmt.Errorf("first byte: %w", err)
		}
		return nil
	})
}

// handshakes runs one from connLoops loops inside the outside namespace
// for the conns duration, timing each call.
func (c *clients) handshakes(ctx context.Context, one func(buf []byte) error) (*HandshakeResult, error) {
	var done atomic.Uint64
	errs := make([]error, connLoops)
	samples := make([][]int64, connLoops)
	var wg sync.WaitGroup
	t0 := time.Now()
	end := t0.Add(c.d.Conns)
	for i := range connLoops {
		wg.Go(func() {
			errs[i] = c.l.Do(c.l.Out, func() error {
				var buf [1]byte
				for time.Now().Before(end) {
					s := time.Now()
					if err := one(buf[:]); err != nil {
						return fmt.Errorf("connection %d: %w", done.Load(), ctxErr(ctx, err))
					}
					samples[i] = append(samples[i], time.Since(s).Nanoseconds())
					done.Add(1)
				}
				return nil
			})
		})
	}
	wg.Wait()
	elapsed := time.Since(t0).Seconds()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	var all []int64
	for _, s := range samples {
		all = append(all, s...)
	}
	n := done.Load()
	if n == 0 {
		return nil, errors.New("no connection completed")
	}
	return &HandshakeResult{Count: n, Seconds: elapsed, PerSec: float64(n) / elapsed, TTFB: samplePercentiles(all)}, nil
}

// withWebRule returns the rule file src with rule first among the ingress
// rules of the container listed with address web, or, when none is,
// with a container of its own for web holding only that rule (its
// defaults are then [defaults], as for an unlisted address). The copy is
// re-encoded: comments are lost, the rules are not.
func withWebRule(src []byte, web netip.Addr, rule map[string]any) (string, error) {
	var doc map[string]any
	if _, err := toml.Decode(string(src), &doc); err != nil {
		return "", err
	}
	containers, _ := doc["container"].([]map[string]any)
	found := false
	for _, c := range containers {
		ips, _ := c["ips"].([]any)
		for _, ip := range ips {
			if s, ok := ip.(string); ok {
				if a, err := netip.ParseAddr(s); err == nil && a.Unmap() == web {
					rs, _ := c["rule"].([]map[string]any)
					c["rule"] = append([]map[string]any{rule}, rs...)
					found = true
				}
			}
		}
	}
	if !found {
		doc["container"] = append(containers, map[string]any{
			"name": "bench-web", "ips": []string{web.String()}, "rule": []map[string]any{rule},
		})
	}
	var b bytes.Buffer
	if err := toml.NewEncoder(&b).Encode(doc); err != nil {
		return "", err
	}
	return b.String(), nil
}

// l7Rules are the rules SetupPort443 and SetupSNI443 put first for web:
// the same flows allowed by their port, or by their server name.
var l7Rules = map[string]map[string]any{
	SetupPort443: {"id": "bench-443-port", "direction": "ingress", "ports": []string{fmt.Sprint(l7Port)}, "action": "allow"},
	SetupSNI443: {"id": "bench-443-sni", "direction": "ingress", "ports": []string{fmt.Sprint(l7Port)},
		"tls_sni": []string{l7Name}, "action": "allow"},
}
