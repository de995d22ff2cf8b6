package netlab_test

import (
	"bytes"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/dns/dnsmessage"

	"github.com/nfqguard/nfqguard/inspect/l7"
	"github.com/nfqguard/nfqguard/internal/netlab"
	"github.com/nfqguard/nfqguard/internal/netlab/netlabtest"
	"github.com/nfqguard/nfqguard/internal/traffic"
)

// l7Publish publishes c1's TLS, HTTP and DNS (UDP and TCP) ports.
func l7Publish() []netlab.Publish {
	return []netlab.Publish{
		{HostPort: 8443, Container: 0, ContainerPort: 443, Proto: "tcp"},
		{HostPort: 8080, Container: 0, ContainerPort: 80, Proto: "tcp"},
		{HostPort: 5353, Container: 0, ContainerPort: 53, Proto: "udp"},
		{HostPort: 5353, Container: 0, ContainerPort: 53, Proto: "tcp"},
	}
}

// TestL7Servers runs the L7 servers and real clients across the lab, with
// no engine: outside client -> container (published port and direct),
// container -> outside, over IPv4 and IPv6.
func TestL7Servers(t *testing.T) {
	t.Parallel()
	l := netlabtest.New(t, netlab.Options{Containers: 1, IPv6: true, Publish: l7Publish()})
	c1 := l.Containers[0]
	for _, a := range []netip.Addr{c1.Addr, c1.Addr6} {
		must(t, l.ServeTLS(c1.NS, ap(a, 443)))
		must(t, l.ServeHTTP(c1.NS, ap(a, 80)))
		must(t, l.ServeDNS(c1.NS, ap(a, 53)))
	}
	for _, a := range []netip.Addr{l.Outside, l.Outside6} {
		must(t, l.ServeTLS(l.Out, ap(a, 443)))
		must(t, l.ServeHTTP(l.Out, ap(a, 80)))
		must(t, l.ServeDNS(l.Out, ap(a, 53)))
	}

	type path struct {
		name     string
		ns       string
		tls, web netip.AddrPort
		dns      netip.AddrPort
	}
	paths := []path{
		{"OutsideToPublished", l.Out, ap(l.HostOutside, 8443), ap(l.HostOutside, 8080), ap(l.HostOutside, 5353)},
		{"OutsideToContainer", l.Out, ap(c1.Addr, 443), ap(c1.Addr, 80), ap(c1.Addr, 53)},
		{"ContainerToOutside", c1.NS, ap(l.Outside, 443), ap(l.Outside, 80), ap(l.Outside, 53)},
		{"OutsideToPublished6", l.Out, ap(l.HostOutside6, 8443), ap(l.HostOutside6, 8080), ap(l.HostOutside6, 5353)},
		{"ContainerToOutside6", c1.NS, ap(l.Outside6, 443), ap(l.Outside6, 80), ap(l.Outside6, 53)},
	}
	for _, p := range paths {
		t.Run(p.name, func(t *testing.T) {
			t.Run("TLS", func(t *testing.T) {
				for _, v := range []struct {
					name string
					max  uint16
				}{{"1.3", 0}, {"1.2", tls.VersionTLS12}} {
					for _, split := range []int{1, 3} {
						sni := fmt.Sprintf("tls%s-split%d.example.com", strings.ReplaceAll(v.name, ".", ""), split)
						got, err := l.TLSHandshakeVersion(p.ns, p.tls, sni, split, v.max, okTimeout)
						if err != nil {
							t.Errorf("TLS %s split %d: %v", v.name, split, err)
						} else if got != sni {
							t.Errorf("TLS %s split %d: server saw SNI %q, want %q", v.name, split, got, sni)
						}
					}
				}
				got, err := l.TLSHandshake(p.ns, p.tls, "", 1, okTimeout)
				must(t, err)
				if got != "" {
					t.Errorf("no SNI: server saw %q, want empty", got)
				}
			})
			t.Run("HTTP", func(t *testing.T) {
				for _, c := range []struct{ method, host, path, want string }{
					{"GET", "www.example.com", "/a/b?q=1&r=2", "GET www.example.com /a/b\n"},
					{"POST", "api.example.org:8080", "/submit", "POST api.example.org:8080 /submit\n"},
					{"HEAD", "h.example", "/", ""}, // HEAD responses have no body
					{"GET", "", "/default-host", "GET " + p.web.String() + " /default-host\n"},
				} {
					got, err := l.HTTPRequest(p.ns, p.web, c.method, c.host, c.path, okTimeout)
					if err != nil {
						t.Errorf("%s %s %s: %v", c.method, c.host, c.path, err)
					} else if got != c.want {
						t.Errorf("%s %s %s: body %q, want %q", c.method, c.host, c.path, got, c.want)
					}
				}
			})
			t.Run("DNS", func(t *testing.T) {
				for _, network := range []string{"udp", "tcp"} {
					got, err := l.Resolve(p.ns, p.dns, network, "some.name.example", okTimeout)
					if err != nil {
						t.Errorf("%s: %v", network, err)
					} else if !slices.Equal(got, []netip.Addr{netlab.DNSAnswer4}) {
						t.Errorf("%s: got %v, want [%v]", network, got, netlab.DNSAnswer4)
					}
				}
			})
		})
	}

	t.Run("HTTPNon200", func(t *testing.T) {
		// A plain echo server is not HTTP: the client must fail, not hang.
		must(t, l.ServeTCPWhoAmI(l.Out, ap(l.Outside, 81)))
		if _, err := l.HTTPRequest(c1.NS, ap(l.Outside, 81), "GET", "x", "/", okTimeout); err == nil {
			t.Error("HTTPRequest to a non-HTTP server succeeded")
		}
	})
	t.Run("DNSTCPSeveralQueries", func(t *testing.T) {
		c, err := traffic.DialTCP(l.NSPath(c1.NS), 0, ap(l.Outside, 53), time.Now().Add(okTimeout))
		must(t, err)
		defer c.Close()
		must(t, c.SetDeadline(time.Now().Add(okTimeout)))
		for i, typ := range []dnsmessage.Type{dnsmessage.TypeA, dnsmessage.TypeAAAA, dnsmessage.TypeMX} {
			id := uint16(100 + i)
			q := dnsQuery(t, id, "several.example.", typ)
			_, err := c.Write(append(binary.BigEndian.AppendUint16(nil, uint16(len(q))), q...))
			must(t, err)
			var hdr [2]byte
			_, err = io.ReadFull(c, hdr[:])
			must(t, err)
			resp := make([]byte, binary.BigEndian.Uint16(hdr[:]))
			_, err = io.ReadFull(c, resp)
			must(t, err)
			var m dnsmessage.Message
			must(t, m.Unpack(resp))
			if m.ID != id || !m.Response || m.RCode != dnsmessage.RCodeSuccess || len(m.Questions) != 1 || m.Questions[0].Type != typ {
				t.Fatalf("query %d (%v): bad response header/question: %+v", i, typ, m)
			}
			var got []netip.Addr
			for _, a := range m.Answers {
				switch b := a.Body.(type) {
				case *dnsmessage.AResource:
					got = append(got, netip.AddrFrom4(b.A))
				case *dnsmessage.AAAAResource:
					got = append(got, netip.AddrFrom16(b.AAAA))
				}
			}
			want := map[dnsmessage.Type][]netip.Addr{
				dnsmessage.TypeA:    {netlab.DNSAnswer4},
				dnsmessage.TypeAAAA: {netlab.DNSAnswer6},
			}[typ]
			if !slices.Equal(got, want) {
				t.Errorf("query %d (%v): answers %v, want %v", i, typ, got, want)
			}
		}
	})
	t.Run("ResolveBadNetwork", func(t *testing.T) {
		if _, err := l.Resolve(c1.NS, ap(l.Outside, 53), "sctp", "x.example", okTimeout); err == nil {
			t.Error("Resolve accepted network sctp")
		}
	})
}

func dnsQuery(t *testing.T, id uint16, name string, typ dnsmessage.Type) []byte {
	t.Helper()
	m := dnsmessage.Message{
		Header:    dnsmessage.Header{ID: id, RecursionDesired: true},
		Questions: []dnsmessage.Question{{Name: dnsmessage.MustNewName(name), Type: typ, Class: dnsmessage.ClassINET}},
	}
	b, err := m.Pack()
	must(t, err)
	return b
}

// TestL7SplitSegments proves on the wire that a split ClientHello leaves the
// client as that many TCP segments: the client talks to a sink in the host
// namespace that reads but never answers, so every data segment the client
// sends is part of the ClientHello, and an iptables rule counts them.
func TestL7SplitSegments(t *testing.T) {
	t.Parallel()
	l := netlabtest.New(t, netlab.Options{Containers: 1})
	for i, c := range []struct {
		name    string
		max     uint16
		version uint16
		split   int
		want    int // data packets counted; 0: only log
	}{
		{"TLS13Split3", 0, tls.VersionTLS13, 3, 3},
		{"TLS12Split3", tls.VersionTLS12, tls.VersionTLS12, 3, 3},
		{"TLS12Split2", tls.VersionTLS12, tls.VersionTLS12, 2, 2},
		{"TLS12Unsplit", tls.VersionTLS12, tls.VersionTLS12, 1, 1},
		// Over one MSS (post-quantum key share), yet usually counted as
		// one packet: veth passes the GSO packet to netfilter unsegmented.
		{"TLS13Unsplit", 0, tls.VersionTLS13, 1, 0},
	} {
		port := uint16(4431 + i)
		t.Run(c.name, func(t *testing.T) {
			// Data segments only: no SYN, and longer than any bare ACK
			// (IPv4 + TCP with options is at most 60 + 60 bytes).
			rule := []string{"INPUT", "-p", "tcp", "--dport", strconv.Itoa(int(port)),
				"--tcp-flags", "SYN", "NONE", "-m", "length", "--length", "121:65535"}
			_, err := l.IPTables(t.Context(), append([]string{"-I"}, rule...)...)
			must(t, err)
			got := sink(t, l, l.Host, ap(l.HostOutside, port))
			sni := "split.segments.example"
			_, err = l.TLSHandshakeVersion(l.Out, ap(l.HostOutside, port), sni, c.split, c.max, 300*time.Millisecond)
			if err == nil {
				t.Fatal("handshake with a silent sink succeeded")
			}
			hello := <-got
			var ch l7.ClientHello
			if st := l7.ParseClientHello(hello, &ch); st != l7.Done || string(ch.SNI) != sni || ch.Version != c.version {
				t.Fatalf("sink got %d bytes: status %v, SNI %q, version %#x; want Done, %q, %#x", len(hello), st, ch.SNI, ch.Version, sni, c.version)
			}
			n := countPackets(t, l, port)
			t.Logf("ClientHello of %d bytes in %d pieces left the client as %d data segments", len(hello), c.split, n)
			if c.want != 0 && n != c.want {
				t.Errorf("counted %d data segments, want %d", n, c.want)
			}
		})
	}
}

// sink listens on addr in namespace ns, accepts one connection, reads it
// until EOF (or 3 s) without ever writing, and sends what it read.
func sink(t *testing.T, l *netlab.Lab, ns string, addr netip.AddrPort) <-chan []byte {
	t.Helper()
	var ln net.Listener
	must(t, l.Do(ns, func() error {
		var err error
		ln, err = net.Listen("tcp", addr.String())
		return err
	}))
	got := make(chan []byte, 1)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		defer ln.Close()
		_ = ln.(*net.TCPListener).SetDeadline(time.Now().Add(3 * time.Second))
		c, err := ln.Accept()
		if err != nil {
			got <- nil
			return
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(3 * time.Second))
		b, _ := io.ReadAll(c)
		got <- b
	}()
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	return got
}

// countPackets returns the packet counter of the INPUT rule matching dport.
func countPackets(t *testing.T, l *netlab.Lab, dport uint16) int {
	t.Helper()
	out, err := l.IPTables(t.Context(), "-L", "INPUT", "-v", "-n", "-x")
	must(t, err)
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, "dpt:"+strconv.Itoa(int(dport))+" ") || strings.HasSuffix(line, "dpt:"+strconv.Itoa(int(dport))) {
			n, err := strconv.Atoi(strings.Fields(line)[0])
			must(t, err)
			return n
		}
	}
	t.Fatalf("no INPUT rule for dport %d:\n%s", dport, out)
	return 0
}

// recConn records the writes made on it and the TCP_NODELAY setting at the
// time of each write. Reads come from r (EOF when nil).
type recConn struct {
	net.Conn // nil: only the methods below may be used
	r        io.Reader
	mu       sync.Mutex
	noDelay  bool
	writes   []recWrite
}

type recWrite struct {
	b       []byte
	noDelay bool
	at      time.Time
}

func (c *recConn) SetNoDelay(on bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.noDelay = on
	return nil
}

func (c *recConn) Write(b []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.writes = append(c.writes, recWrite{bytes.Clone(b), c.noDelay, time.Now()})
	return len(b), nil
}

func (c *recConn) Read(b []byte) (int, error) {
	if c.r == nil {
		return 0, io.EOF
	}
	return c.r.Read(b)
}

func (c *recConn) Close() error                     { return nil }
func (c *recConn) SetDeadline(time.Time) error      { return nil }
func (c *recConn) SetReadDeadline(time.Time) error  { return nil }
func (c *recConn) SetWriteDeadline(time.Time) error { return nil }

// TestL7SplitFirstWrite checks, without root, that SplitFirstWrite turns
// the first Write into the requested number of separate writes with
// TCP_NODELAY on and the pause between them, and leaves later writes alone;
// and that crypto/tls's first write is the whole ClientHello record.
func TestL7SplitFirstWrite(t *testing.T) {
	t.Run("Pieces", func(t *testing.T) {
		rc := &recConn{}
		c := netlab.SplitFirstWrite(rc, 3, netlab.SplitPause)
		first := bytes.Repeat([]byte("0123456789"), 31)
		n, err := c.Write(first)
		if err != nil || n != len(first) {
			t.Fatalf("first Write = %d, %v; want %d, nil", n, err, len(first))
		}
		if len(rc.writes) != 3 {
			t.Fatalf("first Write made %d writes, want 3", len(rc.writes))
		}
		var joined []byte
		for i, w := range rc.writes {
			if !w.noDelay {
				t.Errorf("write %d made without TCP_NODELAY", i)
			}
			if len(w.b) < len(first)/3 || len(w.b) > len(first)/3+1 {
				t.Errorf("write %d has %d bytes, want about %d", i, len(w.b), len(first)/3)
			}
			if i > 0 {
				if gap := w.at.Sub(rc.writes[i-1].at); gap < netlab.SplitPause {
					t.Errorf("write %d followed write %d after %v, want >= %v", i, i-1, gap, netlab.SplitPause)
				}
			}
			joined = append(joined, w.b...)
		}
		if !bytes.Equal(joined, first) {
			t.Error("pieces do not add up to the written bytes")
		}
		if _, err := c.Write([]byte("later")); err != nil {
			t.Fatal(err)
		}
		if len(rc.writes) != 4 || string(rc.writes[3].b) != "later" {
			t.Errorf("second Write was not passed through whole: %d writes", len(rc.writes))
		}
	})
	t.Run("NoSplit", func(t *testing.T) {
		rc := &recConn{}
		if c := netlab.SplitFirstWrite(rc, 1, netlab.SplitPause); c != net.Conn(rc) {
			t.Errorf("SplitFirstWrite(c, 1) = %T, want c itself", c)
		}
	})
	t.Run("Errors", func(t *testing.T) {
		a, b := net.Pipe()
		defer a.Close()
		defer b.Close()
		if _, err := netlab.SplitFirstWrite(a, 3, 0).Write([]byte("abcdef")); err == nil {
			t.Error("split write on a conn without SetNoDelay succeeded")
		}
		if _, err := netlab.SplitFirstWrite(&recConn{}, 3, 0).Write([]byte("ab")); err == nil {
			t.Error("split write of 2 bytes into 3 pieces succeeded")
		}
	})
	t.Run("ClientHello", func(t *testing.T) {
		for _, max := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
			rc := &recConn{}
			tc := tls.Client(netlab.SplitFirstWrite(rc, 3, netlab.SplitPause), &tls.Config{ServerName: "hello.example", InsecureSkipVerify: true, MaxVersion: max})
			if err := tc.Handshake(); err == nil || !errors.Is(err, io.EOF) {
				t.Fatalf("handshake against EOF: %v, want EOF", err)
			}
			if len(rc.writes) != 3 {
				t.Fatalf("TLS %#x: %d writes, want 3", max, len(rc.writes))
			}
			var rec []byte
			for _, w := range rc.writes {
				rec = append(rec, w.b...)
			}
			if len(rec) < 5 || rec[0] != 22 || int(binary.BigEndian.Uint16(rec[3:5])) != len(rec)-5 {
				t.Fatalf("TLS %#x: the split write is not exactly one handshake record: % x...", max, rec[:min(len(rec), 8)])
			}
			var ch l7.ClientHello
			if st := l7.ParseClientHello(rec, &ch); st != l7.Done || string(ch.SNI) != "hello.example" || ch.Version != max {
				t.Errorf("TLS %#x: parsed %v SNI %q version %#x", max, st, ch.SNI, ch.Version)
			}
		}
	})
}
