package netlab

// Application-layer servers and real clients (Go's crypto/tls, net/http and
// resolver) for end-to-end tests of TLS SNI, HTTP Host/path and DNS name
// inspection. Servers run as goroutines of the calling process with their
// sockets in a lab namespace and stop on Close; clients create their
// sockets in the namespace they are given.

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"time"

	"github.com/nfqguard/nfqguard/internal/traffic"
	"golang.org/x/net/dns/dnsmessage"
)

// Fixed answers of the ServeDNS server.
var (
	// DNSAnswer4 is the address ServeDNS answers every A query with.
	DNSAnswer4 = netip.MustParseAddr("192.0.2.1")
	// DNSAnswer6 is the address ServeDNS answers every AAAA query with.
	DNSAnswer6 = netip.MustParseAddr("2001:db8::1")
)

const (
	// l7ConnTimeout bounds how long an L7 server keeps an idle connection:
	// a flow blocked by the engine must not pin a goroutine until Close.
	l7ConnTimeout = 10 * time.Second
	// SplitPause is the pause TLSHandshake makes between the pieces of a
	// split ClientHello, long enough for each piece to leave as a segment
	// of its own before the next is written.
	SplitPause = 2 * time.Millisecond
	// maxL7Reply caps what clients read from a server.
	maxL7Reply = 1 << 20
)

// ServeTLS starts a TLS server (crypto/tls, TLS 1.2 and 1.3) in namespace ns
// listening on addr. Its certificate is a self-signed ECDSA P-256
// certificate generated when the server starts; clients must skip
// verification. After each handshake the server writes the server name the
// client sent (SNI, empty if none) followed by "\n", sends close_notify and
// closes the connection. It runs until Close.
func (l *Lab) ServeTLS(ns string, addr netip.AddrPort) error {
	cert, err := SelfSignedCert()
	if err != nil {
		return fmt.Errorf("lab: TLS server on %s in %s: %w", addr, ns, err)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	return l.serveTCP(ns, addr, "TLS", func(c net.Conn) {
		if err := c.SetDeadline(time.Now().Add(l7ConnTimeout)); err != nil {
			return
		}
		tc := tls.Server(c, cfg)
		if err := tc.Handshake(); err != nil {
			return
		}
		if _, err := io.WriteString(tc, tc.ConnectionState().ServerName+"\n"); err != nil {
			return
		}
		_ = tc.CloseWrite() // close_notify
		if t, ok := c.(*net.TCPConn); ok {
			_ = t.CloseWrite()
			// Drain until the client closes so the close is orderly.
			_, _ = io.Copy(io.Discard, c)
		}
	})
}

// SelfSignedCert returns a fresh self-signed ECDSA P-256 server certificate
// for "lab.nfqguard.test", valid from an hour ago for a week, for the lab's
// TLS and QUIC servers (the bench's too): their clients do not check it.
func SelfSignedCert() (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("generate key: %w", err)
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 63))
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("generate serial number: %w", err)
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "nfqguard lab"},
		DNSNames:              []string{"lab.nfqguard.test"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(7 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("create certificate: %w", err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, nil
}

// TLSHandshake connects from namespace ns to a ServeTLS server at dst with
// Go's crypto/tls client (default versions: TLS 1.3 preferred), sending
// serverName as SNI, and returns the server name the server reports, without
// the trailing newline. Verification is skipped. An empty serverName, or an
// IP address, sends no SNI (crypto/tls never puts addresses in SNI) and the
// server reports "".
//
// With split > 1 the client's first write on the socket, the ClientHello
// record, is cut into split pieces written separately with TCP_NODELAY set
// and SplitPause between them (see SplitFirstWrite), so it leaves the
// client as at least split TCP segments (exactly split while each piece
// fits in one MSS). split <= 1 writes it in one piece. The whole exchange is
// bounded by timeout.
func (l *Lab) TLSHandshake(ns string, dst netip.AddrPort, serverName string, split int, timeout time.Duration) (string, error) {
	return l.TLSHandshakeVersion(ns, dst, serverName, split, 0, timeout)
}

// TLSHandshakeVersion is TLSHandshake with the client's highest offered
// version set to maxVersion (tls.VersionTLS12 forces TLS 1.2; 0 means
// crypto/tls's default, TLS 1.3).
func (l *Lab) TLSHandshakeVersion(ns string, dst netip.AddrPort, serverName string, split int, maxVersion uint16, timeout time.Duration) (string, error) {
	errf := func(format string, args ...any) error {
		return fmt.Errorf("lab: TLS %s -> %s (SNI %q): %w", ns, dst, serverName, fmt.Errorf(format, args...))
	}
	deadline := time.Now().Add(timeout)
	c, err := traffic.DialTCP(l.NSPath(ns), 0, dst, deadline)
	if err != nil {
		return "", err
	}
	defer c.Close()
	if err := c.SetDeadline(deadline); err != nil {
		return "", errf("%w", err)
	}
	var conn net.Conn = c
	if split > 1 {
		conn = SplitFirstWrite(c, split, SplitPause)
	}
	tc := tls.Client(conn, &tls.Config{
		ServerName:         serverName,
		InsecureSkipVerify: true, // the lab server's certificate is self-signed
		MaxVersion:         maxVersion,
	})
	if err := tc.Handshake(); err != nil {
		return "", errf("handshake: %w", err)
	}
	b, err := io.ReadAll(io.LimitReader(tc, maxL7Reply))
	if err != nil {
		return "", errf("read reply (%d bytes so far): %w", len(b), err)
	}
	_ = tc.Close()
	name, ok := strings.CutSuffix(string(b), "\n")
	if !ok {
		return "", errf("reply %q does not end in a newline", b)
	}
	return name, nil
}

// SplitFirstWrite returns c wrapped so that its first Write is cut into
// pieces parts of nearly equal size, each passed to c.Write on its own, with
// Nagle's algorithm disabled (c.SetNoDelay(true), as on a *net.TCPConn)
// before the first part and pause between parts, so that the kernel sends
// each part as a separate segment instead of coalescing them. Later writes
// go straight to c. The first Write fails if c has no SetNoDelay method or
// is given fewer bytes than pieces; pieces < 2 returns c itself.
func SplitFirstWrite(c net.Conn, pieces int, pause time.Duration) net.Conn {
	if pieces < 2 {
		return c
	}
	return &splitConn{Conn: c, pieces: pieces, pause: pause}
}

type splitConn struct {
	net.Conn
	pieces int
	pause  time.Duration
	done   bool
}

func (s *splitConn) Write(b []byte) (int, error) {
	if s.done {
		return s.Conn.Write(b)
	}
	s.done = true
	nd, ok := s.Conn.(interface{ SetNoDelay(bool) error })
	if !ok {
		return 0, fmt.Errorf("lab: split write: %T cannot set TCP_NODELAY", s.Conn)
	}
	if len(b) < s.pieces {
		return 0, fmt.Errorf("lab: split write: %d bytes cannot make %d pieces", len(b), s.pieces)
	}
	if err := nd.SetNoDelay(true); err != nil {
		return 0, fmt.Errorf("lab: split write: set TCP_NODELAY: %w", err)
	}
	written := 0
	for i := range s.pieces {
		end := len(b) * (i + 1) / s.pieces
		if i > 0 {
			time.Sleep(s.pause)
		}
		n, err := s.Conn.Write(b[written:end])
		written += n
		if err != nil {
			return written, err
		}
	}
	return written, nil
}

// ServeHTTP starts an HTTP/1.1 server (net/http) in namespace ns listening
// on addr that answers every request with status 200 and the body
// "<method> <host> <path>\n": the request method, the Host the server saw
// (the authority of an absolute-form target wins over the Host header) and
// the URL path without the query. It runs until Close.
func (l *Lab) ServeHTTP(ns string, addr netip.AddrPort) error {
	ln, err := traffic.ListenTCP(l.NSPath(ns), addr)
	if err != nil {
		return fmt.Errorf("lab: HTTP server: %w", err)
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			fmt.Fprintf(w, "%s %s %s\n", r.Method, r.Host, r.URL.Path)
		}),
		ReadHeaderTimeout: l7ConnTimeout,
		IdleTimeout:       l7ConnTimeout,
	}
	if !l.addCloser(srv, srv.Close) {
		ln.Close()
		return fmt.Errorf("lab: HTTP server on %s in %s: lab closed", addr, ns)
	}
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		_ = srv.Serve(ln) // returns http.ErrServerClosed after Close
	}()
	return nil
}

// HTTPRequest sends one HTTP/1.1 request with Go's net/http client from
// namespace ns to dst (the connection is always made to dst, proxies from
// the environment are ignored, keep-alive is off, redirects are not
// followed) and returns the response body. The request line carries
// method and path (origin-form; path must start with "/" and may include a
// query); host is the Host header, or dst's address when empty. It fails on
// a status other than 200 and when the exchange exceeds timeout.
func (l *Lab) HTTPRequest(ns string, dst netip.AddrPort, method, host, path string, timeout time.Duration) (string, error) {
	errf := func(format string, args ...any) error {
		return fmt.Errorf("lab: HTTP %s -> %s (%s %s, Host %q): %w", ns, dst, method, path, host, fmt.Errorf(format, args...))
	}
	if !strings.HasPrefix(path, "/") {
		return "", errf("path must start with /")
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	tr := &http.Transport{
		Proxy: nil,
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return traffic.DialContext(ctx, l.NSPath(ns), "tcp", dst)
		},
		DisableKeepAlives:  true,
		DisableCompression: true,
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{
		Transport:     tr,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://"+dst.String()+path, nil)
	if err != nil {
		return "", errf("%w", err)
	}
	if host != "" {
		req.Host = host
	}
	resp, err := client.Do(req)
	if err != nil {
		return "", errf("%w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxL7Reply))
	if err != nil {
		return "", errf("read body (%d bytes so far): %w", len(body), err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", errf("status %s, body %.200q", resp.Status, body)
	}
	return string(body), nil
}

// ServeDNS starts a DNS server in namespace ns on addr over both UDP and
// TCP (same address and port, which must not be 0). It answers every query
// NOERROR, authoritatively, echoing the questions, with one answer per
// class-IN question: DNSAnswer4 for A, DNSAnswer6 for AAAA, none for other
// types. Over TCP each message has the 2-byte length prefix of RFC 1035
// §4.2.2 and a connection may carry several queries. Messages that are not
// queries are ignored. It runs until Close.
func (l *Lab) ServeDNS(ns string, addr netip.AddrPort) error {
	if addr.Port() == 0 {
		return fmt.Errorf("lab: DNS server on %s in %s: port 0 would differ between UDP and TCP", addr, ns)
	}
	udp, err := l.serveUDP(ns, addr, "DNS", func(req []byte) ([]byte, bool) {
		resp, err := dnsReply(req)
		return resp, err == nil
	})
	if err != nil {
		return err
	}
	err = l.serveTCP(ns, addr, "DNS", func(c net.Conn) {
		var hdr [2]byte
		for {
			if err := c.SetDeadline(time.Now().Add(l7ConnTimeout)); err != nil {
				return
			}
			if _, err := io.ReadFull(c, hdr[:]); err != nil {
				return
			}
			msg := make([]byte, binary.BigEndian.Uint16(hdr[:]))
			if _, err := io.ReadFull(c, msg); err != nil {
				return
			}
			resp, err := dnsReply(msg)
			if err != nil {
				return
			}
			out := binary.BigEndian.AppendUint16(make([]byte, 0, 2+len(resp)), uint16(len(resp)))
			if _, err := c.Write(append(out, resp...)); err != nil {
				return
			}
		}
	})
	if err != nil {
		l.removeCloser(udp)
		udp.Close()
		return err
	}
	return nil
}

// dnsReply builds ServeDNS's response to the query msg.
func dnsReply(msg []byte) ([]byte, error) {
	var p dnsmessage.Parser
	h, err := p.Start(msg)
	if err != nil {
		return nil, err
	}
	if h.Response {
		return nil, errors.New("not a query")
	}
	rh := dnsmessage.Header{
		ID:                 h.ID,
		Response:           true,
		OpCode:             h.OpCode,
		Authoritative:      true,
		RecursionDesired:   h.RecursionDesired,
		RecursionAvailable: true,
	}
	qs, err := p.AllQuestions()
	switch {
	case err != nil:
		rh.RCode, qs = dnsmessage.RCodeFormatError, nil
	case h.OpCode != 0:
		rh.RCode = dnsmessage.RCodeNotImplemented
	}
	b := dnsmessage.NewBuilder(make([]byte, 0, 512), rh)
	b.EnableCompression()
	if err := b.StartQuestions(); err != nil {
		return nil, err
	}
	for _, q := range qs {
		if err := b.Question(q); err != nil {
			return nil, err
		}
	}
	if err := b.StartAnswers(); err != nil {
		return nil, err
	}
	for _, q := range qs {
		if rh.RCode != dnsmessage.RCodeSuccess || q.Class != dnsmessage.ClassINET {
			continue
		}
		rr := dnsmessage.ResourceHeader{Name: q.Name, Class: dnsmessage.ClassINET, TTL: 60}
		switch q.Type {
		case dnsmessage.TypeA:
			err = b.AResource(rr, dnsmessage.AResource{A: DNSAnswer4.As4()})
		case dnsmessage.TypeAAAA:
			err = b.AAAAResource(rr, dnsmessage.AAAAResource{AAAA: DNSAnswer6.As16()})
		}
		if err != nil {
			return nil, err
		}
	}
	return b.Finish()
}

// Resolve looks name up from namespace ns with Go's own resolver
// (net.Resolver with PreferGo) and returns the IPv4 addresses it gets. The
// resolver sends exactly one A query per attempt, to server over network
// ("udp": one datagram; "tcp": a new connection carrying the
// length-prefixed query), whatever /etc/resolv.conf says about servers.
// name is made fully qualified (a trailing dot is added if missing) so no
// search domain is tried; /etc/hosts is still consulted first, as by any Go
// program. The lookup, retries included, is bounded by timeout.
func (l *Lab) Resolve(ns string, server netip.AddrPort, network, name string, timeout time.Duration) ([]netip.Addr, error) {
	if network != "udp" && network != "tcp" {
		return nil, fmt.Errorf("lab: resolve %q from %s via %s: network %q is not udp or tcp", name, ns, server, network)
	}
	r := &net.Resolver{
		PreferGo:     true,
		StrictErrors: true,
		Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
			c, err := traffic.DialContext(ctx, l.NSPath(ns), network, server)
			if err == nil {
				// The resolver's exchange reads until a deadline of its own
				// (5 s), not until ctx is done: without this, a lookup given
				// up on (a blocked query) leaves goroutines waiting that long.
				context.AfterFunc(ctx, func() { c.Close() })
			}
			return c, err
		},
	}
	fqdn := name
	if !strings.HasSuffix(fqdn, ".") {
		fqdn += "."
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	addrs, err := r.LookupNetIP(ctx, "ip4", fqdn)
	if err != nil {
		return nil, fmt.Errorf("lab: resolve %q from %s via %s/%s: %w", name, ns, server, network, err)
	}
	for i, a := range addrs {
		addrs[i] = a.Unmap()
	}
	return addrs, nil
}
