// Command capture regenerates the fuzz seed corpora of package l7 from real
// clients. It runs Go's crypto/tls client, net/http client and resolver
// (PreferGo), and curl for HTTP/1.0 when it is on PATH, against listeners on
// 127.0.0.1 that record the first bytes each client sends, checks that the
// l7 parsers read each capture as expected, and writes every capture as a Go
// fuzz corpus file under -out:
//
//	go run ./inspect/l7/internal/capture -out inspect/l7/testdata/fuzz
//
// writes FuzzParseClientHello/tls13-sni, FuzzParseHTTPRequest/http-get-query,
// FuzzParseDNSQuery/dns-udp-a, FuzzParseDNSOverTCP/dns-tcp-a and so on.
// Captures contain random values (TLS randoms and key shares, DNS IDs), so
// every run rewrites the files with different bytes of the same shape.
// Nothing leaves the loopback interface.
package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/nfqguard/nfqguard/inspect/l7"
)

// timeout bounds every capture.
const timeout = 10 * time.Second

func main() {
	out := flag.String("out", "inspect/l7/testdata/fuzz", "corpus root: files go to `dir`/<FuzzTarget>/<capture>")
	flag.Parse()
	log.SetFlags(0)
	log.SetPrefix("capture: ")
	if flag.NArg() != 0 {
		log.Fatalf("unexpected arguments %q", flag.Args())
	}
	n := 0
	for _, c := range captures() {
		b, err := c.run()
		if err == nil {
			err = c.check(b)
		}
		if errors.Is(err, errSkip) {
			log.Printf("%s/%s: skipped: %v", c.target, c.name, err)
			continue
		}
		if err != nil {
			log.Fatalf("%s/%s: %v", c.target, c.name, err)
		}
		if err := writeCorpusFile(filepath.Join(*out, c.target, c.name), b); err != nil {
			log.Fatal(err)
		}
		n++
	}
	log.Printf("wrote %d corpus files under %s", n, *out)
}

// errSkip marks a capture whose client is not available.
var errSkip = errors.New("client not available")

// capture is one seed: how to obtain the bytes and what the parser must
// make of them.
type capture struct {
	target, name string
	run          func() ([]byte, error)
	check        func([]byte) error
}

func captures() []capture {
	const (
		tlsT  = "FuzzParseClientHello"
		httpT = "FuzzParseHTTPRequest"
		udpT  = "FuzzParseDNSQuery"
		tcpT  = "FuzzParseDNSOverTCP"
	)
	longSNI := strings.Join([]string{
		strings.Repeat("a", 63), strings.Repeat("b", 63), strings.Repeat("c", 63), strings.Repeat("d", 61),
	}, ".") // 253 characters, the longest DNS name
	manyLabels := "a.b.c.d.e.f.g.h.i.j.k.l.m.n.o.p.q.r.s.t.u.v.w.x.y.z.example.com"

	tlsCap := func(name string, cfg *tls.Config, sni string, version uint16, alpn ...string) capture {
		return capture{tlsT, name,
			func() ([]byte, error) { return captureTCP(readTLSRecord, tlsClient(cfg)) },
			func(b []byte) error { return checkClientHello(b, sni, version, alpn) }}
	}
	httpCap := func(name string, client func(context.Context, string) error, method, host, path string) capture {
		return capture{httpT, name,
			func() ([]byte, error) { return captureTCP(readHTTPRequest, client) },
			func(b []byte) error { return checkHTTP(b, method, host, path) }}
	}
	dnsCap := func(network, name, qname string, typ dnsmessage.Type) capture {
		target, run := udpT, func() ([]byte, error) { return captureUDP(resolve(network, qname, typ)) }
		if network == "tcp" {
			target, run = tcpT, func() ([]byte, error) { return captureTCP(readDNSTCP, resolve(network, qname, typ)) }
		}
		return capture{target, name, run, func(b []byte) error { return checkDNS(b, network == "tcp", qname, typ) }}
	}

	return []capture{
		tlsCap("tls13-sni", &tls.Config{ServerName: "www.example.com"}, "www.example.com", tls.VersionTLS13),
		tlsCap("tls12-sni", &tls.Config{ServerName: "www.example.com", MaxVersion: tls.VersionTLS12}, "www.example.com", tls.VersionTLS12),
		// No ServerName (as when dialling an IP address): no server_name extension.
		tlsCap("tls13-no-sni", &tls.Config{InsecureSkipVerify: true}, "", tls.VersionTLS13),
		tlsCap("tls13-alpn-h2-http11", &tls.Config{ServerName: "alpn.example.org", NextProtos: []string{"h2", "http/1.1"}},
			"alpn.example.org", tls.VersionTLS13, "h2", "http/1.1"),
		tlsCap("tls12-alpn-h2-http11", &tls.Config{ServerName: "alpn.example.org", NextProtos: []string{"h2", "http/1.1"}, MaxVersion: tls.VersionTLS12},
			"alpn.example.org", tls.VersionTLS12, "h2", "http/1.1"),
		tlsCap("tls13-long-sni", &tls.Config{ServerName: longSNI}, longSNI, tls.VersionTLS13),

		httpCap("http-get-query", httpClient(http.MethodGet, "http://www.example.com/search/items?q=go+fuzz&page=2", nil, false),
			"GET", "www.example.com", "/search/items"),
		httpCap("http-post-form", httpClient(http.MethodPost, "http://api.example.org:8080/v1/submit", []byte("name=nfqguard&mode=inspect"), false),
			"POST", "api.example.org:8080", "/v1/submit"),
		httpCap("http-proxy-absolute-form", httpClient(http.MethodGet, "http://proxied.example.net:8081/p/q?x=1", nil, true),
			"GET", "proxied.example.net:8081", "/p/q"),
		httpCap("http10-curl", curlHTTP10("http://old.example.com/legacy/index.html"),
			"GET", "old.example.com", "/legacy/index.html"),

		dnsCap("udp", "dns-udp-a", "www.example.com.", dnsmessage.TypeA),
		dnsCap("udp", "dns-udp-aaaa", "www.example.com.", dnsmessage.TypeAAAA),
		dnsCap("udp", "dns-udp-many-labels", manyLabels+".", dnsmessage.TypeA),
		dnsCap("tcp", "dns-tcp-a", "www.example.com.", dnsmessage.TypeA),
		dnsCap("tcp", "dns-tcp-aaaa", "www.example.com.", dnsmessage.TypeAAAA),
		dnsCap("tcp", "dns-tcp-many-labels", manyLabels+".", dnsmessage.TypeA),
	}
}

// captureTCP listens on 127.0.0.1, runs client with the listener's address,
// and returns what read took from the first connection. The client is
// canceled once the bytes are in: its error is expected and ignored unless
// nothing was captured.
func captureTCP(read func(*bufio.Reader) ([]byte, error), client func(ctx context.Context, addr string) error) ([]byte, error) {
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	defer ln.Close()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cerr := make(chan error, 1)
	go func() { cerr <- client(ctx, ln.Addr().String()) }()

	type result struct {
		b   []byte
		err error
	}
	got := make(chan result, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			got <- result{nil, err}
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(timeout))
		b, err := read(bufio.NewReader(c))
		got <- result{b, err}
	}()
	select {
	case r := <-got:
		cancel()
		ln.Close()
		<-cerr
		return r.b, r.err
	case err := <-cerr:
		ln.Close()
		r := <-got
		if r.err != nil {
			return nil, fmt.Errorf("client: %v; capture: %w", err, r.err)
		}
		return r.b, nil
	}
}

// captureUDP is captureTCP for the first datagram sent to a UDP socket.
func captureUDP(client func(ctx context.Context, addr string) error) ([]byte, error) {
	pc, err := net.ListenPacket("udp4", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	defer pc.Close()
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	cerr := make(chan error, 1)
	go func() { cerr <- client(ctx, pc.LocalAddr().String()) }()
	_ = pc.SetDeadline(time.Now().Add(timeout))
	buf := make([]byte, 65536)
	n, _, err := pc.ReadFrom(buf)
	cancel()
	<-cerr
	if err != nil {
		return nil, err
	}
	return buf[:n], nil
}

// readTLSRecord reads one TLS record: Go's client writes its ClientHello as
// one record in one write.
func readTLSRecord(r *bufio.Reader) ([]byte, error) {
	hdr := make([]byte, 5)
	if _, err := io.ReadFull(r, hdr); err != nil {
		return nil, fmt.Errorf("record header: %w", err)
	}
	rec := make([]byte, 5+int(binary.BigEndian.Uint16(hdr[3:])))
	copy(rec, hdr)
	if _, err := io.ReadFull(r, rec[5:]); err != nil {
		return nil, fmt.Errorf("record body: %w", err)
	}
	return rec, nil
}

// readHTTPRequest reads a request head and the body its Content-Length
// announces, returning the raw bytes.
func readHTTPRequest(r *bufio.Reader) ([]byte, error) {
	var raw []byte
	bodyLen := 0
	for {
		line, err := r.ReadSlice('\n')
		raw = append(raw, line...)
		if err != nil {
			return nil, fmt.Errorf("request head (%d bytes so far): %w", len(raw), err)
		}
		s := strings.TrimRight(string(line), "\r\n")
		if s == "" {
			break
		}
		if k, v, ok := strings.Cut(s, ":"); ok && strings.EqualFold(strings.TrimSpace(k), "Content-Length") {
			if bodyLen, err = strconv.Atoi(strings.TrimSpace(v)); err != nil {
				return nil, fmt.Errorf("bad Content-Length %q", v)
			}
		}
	}
	body := make([]byte, bodyLen)
	if _, err := io.ReadFull(r, body); err != nil {
		return nil, fmt.Errorf("request body: %w", err)
	}
	return append(raw, body...), nil
}

// readDNSTCP reads one length-prefixed DNS message, prefix included.
func readDNSTCP(r *bufio.Reader) ([]byte, error) {
	msg := make([]byte, 2)
	if _, err := io.ReadFull(r, msg); err != nil {
		return nil, fmt.Errorf("length prefix: %w", err)
	}
	msg = append(msg, make([]byte, binary.BigEndian.Uint16(msg))...)
	if _, err := io.ReadFull(r, msg[2:]); err != nil {
		return nil, fmt.Errorf("message: %w", err)
	}
	return msg, nil
}

func tlsClient(cfg *tls.Config) func(context.Context, string) error {
	return func(ctx context.Context, addr string) error {
		var d tls.Dialer
		d.Config = cfg
		c, err := d.DialContext(ctx, "tcp", addr)
		if err == nil {
			c.Close()
		}
		return err
	}
}

// httpClient sends one request with net/http. The connection always goes
// to the capture listener: directly (the URL's host is only the Host
// header) or, with viaProxy, through it as an HTTP proxy (absolute-form).
func httpClient(method, rawURL string, body []byte, viaProxy bool) func(context.Context, string) error {
	return func(ctx context.Context, addr string) error {
		tr := &http.Transport{DisableKeepAlives: true}
		if viaProxy {
			tr.Proxy = http.ProxyURL(&url.URL{Scheme: "http", Host: addr})
		} else {
			tr.DialContext = func(ctx context.Context, network, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, network, addr)
			}
		}
		defer tr.CloseIdleConnections()
		var rd io.Reader
		if body != nil {
			rd = bytes.NewReader(body)
		}
		req, err := http.NewRequestWithContext(ctx, method, rawURL, rd)
		if err != nil {
			return err
		}
		if body != nil {
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		}
		resp, err := (&http.Client{Transport: tr}).Do(req)
		if err == nil {
			resp.Body.Close()
		}
		return err
	}
}

// curlHTTP10 sends an HTTP/1.0 GET with curl (net/http's client only speaks
// HTTP/1.1 and 2), the connection redirected to the capture listener.
func curlHTTP10(rawURL string) func(context.Context, string) error {
	return func(ctx context.Context, addr string) error {
		u, err := url.Parse(rawURL)
		if err != nil {
			return err
		}
		port := u.Port()
		if port == "" {
			port = "80"
		}
		cmd := exec.CommandContext(ctx, "curl", "--silent", "--http1.0", "--noproxy", "*",
			"--connect-to", u.Hostname()+":"+port+":"+addr, rawURL)
		cmd.Env = append(os.Environ(), "CURL_HOME=/nonexistent") // ignore ~/.curlrc
		return cmd.Run()
	}
}

// resolve looks qname up with Go's resolver, sending every query to the
// capture address over network ("udp" or "tcp") whatever network the
// resolver asks for: it frames queries by the kind of connection it gets.
func resolve(network, qname string, typ dnsmessage.Type) func(context.Context, string) error {
	return func(ctx context.Context, addr string) error {
		r := &net.Resolver{PreferGo: true, Dial: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		}}
		ipNet := "ip4"
		if typ == dnsmessage.TypeAAAA {
			ipNet = "ip6"
		}
		_, err := r.LookupNetIP(ctx, ipNet, qname)
		return err
	}
}

func checkClientHello(b []byte, sni string, version uint16, alpn []string) error {
	var ch l7.ClientHello
	if st := l7.ParseClientHello(b, &ch); st != l7.Done {
		return fmt.Errorf("ParseClientHello = %v, want Done", st)
	}
	if string(ch.SNI) != sni || (sni == "") != (ch.SNI == nil) {
		return fmt.Errorf("SNI %q, want %q", ch.SNI, sni)
	}
	if ch.Version != version {
		return fmt.Errorf("version %#x, want %#x", ch.Version, version)
	}
	var got []string
	for _, p := range ch.ALPN {
		got = append(got, string(p))
	}
	if strings.Join(got, ",") != strings.Join(alpn, ",") {
		return fmt.Errorf("ALPN %q, want %q", got, alpn)
	}
	return nil
}

func checkHTTP(b []byte, method, host, path string) error {
	var r l7.HTTPRequest
	if st := l7.ParseHTTPRequest(b, &r); st != l7.Done {
		return fmt.Errorf("ParseHTTPRequest = %v, want Done", st)
	}
	if string(r.Method) != method || string(r.Host) != host || string(r.Path()) != path {
		return fmt.Errorf("parsed %s %s %s, want %s %s %s", r.Method, r.Host, r.Path(), method, host, path)
	}
	return nil
}

func checkDNS(b []byte, overTCP bool, qname string, typ dnsmessage.Type) error {
	var q l7.DNSQuery
	parse, fn := l7.ParseDNSQuery, "ParseDNSQuery"
	if overTCP {
		parse, fn = l7.ParseDNSOverTCP, "ParseDNSOverTCP"
	}
	if st := parse(b, &q); st != l7.Done {
		return fmt.Errorf("%s = %v, want Done", fn, st)
	}
	if q.Count != 1 || string(q.Name(0))+"." != qname || q.Types[0] != typ {
		return fmt.Errorf("%s: %d questions, first %q %v; want 1, %q %v", fn, q.Count, q.Name(0), q.Types[0], qname, typ)
	}
	return nil
}

// writeCorpusFile writes b as a one-argument ([]byte) Go fuzz corpus file,
// in the encoding "go test" itself uses (testing/internal/fuzz).
func writeCorpusFile(path string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	data := fmt.Appendf(nil, "go test fuzz v1\n[]byte(%q)\n", b)
	if err := os.WriteFile(path, data, 0o644); err != nil {
		return err
	}
	return nil
}
