package e2e

// End-to-end tests of QUIC inspection: a real QUIC client and server
// (quic-go, pinned in go.mod for tests only) in the netns lab, judged by
// the server name of the ClientHello in their Initial packets.

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/nfqguard/nfqguard/flowlog"
	"github.com/nfqguard/nfqguard/internal/netlab"
	"github.com/nfqguard/nfqguard/internal/netlab/netlabtest"
	"github.com/nfqguard/nfqguard/internal/traffic"
)

// quicConfig inspects web's egress QUIC (and TLS) on 443 by server name;
// other QUIC on 443 is allowed and logged.
const quicConfig = `
[engine]
queue = 0
workers = 1

[inspect]
max_wait = "2s"

[defaults]
ingress = "allow"
egress = "allow"

[[container]]
name = "web"
ips = ["172.17.0.2"]

  [[container.rule]]
  id = "no-pastebins"
  direction = "egress"
  proto = "any"
  ports = ["443"]
  tls_sni = ["pastebin.com", "*.paste.ee"]
  action = "drop"

  [[container.rule]]
  id = "quic-out"
  direction = "egress"
  proto = "udp"
  ports = ["443"]
  action = "allow"
  log = true
`

// quicTimeout bounds one QUIC exchange: a blocked one fails by its
// handshake timeout, as a client behind a silent drop does.
const quicTimeout = 3 * time.Second

// serveQUIC runs a QUIC server in namespace ns on addr that answers each
// stream with the server name the client asked for and closes it.
func serveQUIC(t *testing.T, l *netlab.Lab, ns string, addr netip.AddrPort) {
	t.Helper()
	pc, err := traffic.ListenUDP(l.NSPath(ns), addr)
	must(t, err)
	cert, err := netlab.SelfSignedCert()
	must(t, err)
	cfg := &tls.Config{
		Certificates: []tls.Certificate{cert},
		NextProtos:   []string{"nfqguard-test"},
		MinVersion:   tls.VersionTLS13,
	}
	ln, err := quic.Listen(pc, cfg, &quic.Config{Versions: []quic.Version{quic.Version1, quic.Version2}})
	if err != nil {
		pc.Close()
		t.Fatalf("QUIC server on %s: %v", addr, err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept(ctx)
			if err != nil {
				return
			}
			go func() {
				s, err := c.AcceptStream(ctx)
				if err != nil {
					return
				}
				_, _ = s.Write([]byte(c.ConnectionState().TLS.ServerName + "\n"))
				_ = s.Close()
				<-c.Context().Done() // the client closes the connection
			}()
		}
	}()
	t.Cleanup(func() {
		cancel()
		ln.Close()
		pc.Close()
		<-done
	})
}

// quicExchange dials addr over QUIC version v from namespace ns, asking
// for server name sni, and returns the name the server says it was asked
// for, and the local port.
func quicExchange(l *netlab.Lab, ns string, local netip.Addr, addr netip.AddrPort, sni string, v quic.Version) (string, uint16, error) {
	pc, err := traffic.ListenUDP(l.NSPath(ns), netip.AddrPortFrom(local, 0))
	if err != nil {
		return "", 0, err
	}
	defer pc.Close()
	sport := uint16(pc.LocalAddr().(*net.UDPAddr).Port)
	ctx, cancel := context.WithTimeout(context.Background(), quicTimeout)
	defer cancel()
	tr := &quic.Transport{Conn: pc}
	defer tr.Close()
	c, err := tr.Dial(ctx, net.UDPAddrFromAddrPort(addr),
		&tls.Config{ServerName: sni, InsecureSkipVerify: true, NextProtos: []string{"nfqguard-test"}},
		&quic.Config{Versions: []quic.Version{v}, HandshakeIdleTimeout: quicTimeout})
	if err != nil {
		return "", sport, err
	}
	defer c.CloseWithError(0, "done")
	s, err := c.OpenStreamSync(ctx)
	if err != nil {
		return "", sport, err
	}
	if _, err := s.Write([]byte("hello\n")); err != nil {
		return "", sport, err
	}
	line, err := bufio.NewReader(s).ReadString('\n')
	return strings.TrimSpace(line), sport, err
}

func TestQUIC(t *testing.T) {
	t.Parallel()
	l := netlabtest.New(t, netlab.Options{})
	web, out := l.Containers[0], l.Outside
	serveQUIC(t, l, l.Out, ap(out, 443))
	e := startTestEngine(t, l, quicConfig)

	for _, v := range []quic.Version{quic.Version1, quic.Version2} {
		version := map[quic.Version]string{quic.Version1: "v1", quic.Version2: "v2"}[v]
		t.Run(version, func(t *testing.T) {
			for _, c := range []struct {
				sni   string
				allow bool
			}{{"example.org", true}, {"pastebin.com", false}, {"x.Paste.EE", false}} {
				got, sport, err := quicExchange(l, web.NS, web.Addr, ap(out, 443), c.sni, v)
				flow := func(r flowlog.Record) bool { return r.Proto == "udp" && r.SrcPort == sport && r.DstPort == 443 }
				if c.allow {
					if err != nil || got != c.sni {
						t.Fatalf("%s: %q, %v; want the server to see %q", c.sni, got, err, c.sni)
					}
				} else if err == nil {
					t.Fatalf("%s: the exchange went through (server saw %q), want blocked", c.sni, got)
				} else if !errors.Is(err, context.DeadlineExceeded) && !strings.Contains(err.Error(), "timeout") {
					t.Errorf("%s: %v, want the handshake to time out", c.sni, err)
				}
				r, ok := e.waitRecord(5*time.Second, flow)
				if !ok {
					t.Fatalf("%s: no flow-log record for port %d; records:\n%s", c.sni, sport, fmtRecords(e.records()))
				}
				wantRule, wantEvent := "no-pastebins", "blocked"
				if c.allow {
					wantRule, wantEvent = "quic-out", "allowed"
				}
				if r.Event != wantEvent || r.Rule != wantRule || r.L7 != "quic" || r.QUICVersion != version || r.SNI != c.sni || r.Container != "web" ||
					!strings.HasPrefix(r.JA4, "q13d") || len(r.JA4) != 36 {
					t.Errorf("%s: record %+v, want %s by %s with l7 quic %s", c.sni, r, wantEvent, wantRule, version)
				}
			}
		})
	}
	mf, err := scrapeMetrics(l)
	must(t, err)
	if n := metricValue(mf, "nfqguard_inspect_quic_total", "result", "inspected"); n != 6 {
		t.Errorf("nfqguard_inspect_quic_total{result=\"inspected\"} = %v, want 6", n)
	}
	// The client's ClientHello (crypto/tls, X25519MLKEM768 key share) is
	// larger than an Initial datagram can carry: every flow was read from
	// two datagrams at least.
	if n := goQUICHelloLen(t); n <= 1200 {
		t.Errorf("crypto/tls's QUIC ClientHello is %d bytes: it fits one datagram, and this test no longer proves reassembly", n)
	}
	if n := metricValue(mf, "nfqguard_inspect_held_packets_total"); n < 12 {
		t.Errorf("nfqguard_inspect_held_packets_total = %v, want at least 2 per QUIC flow (12)", n)
	}
	e.stopClean()
}

// goQUICHelloLen is the length of the ClientHello crypto/tls sends as a
// QUIC client with its default key shares, as quic-go's client does.
func goQUICHelloLen(t *testing.T) int {
	t.Helper()
	c := tls.QUICClient(&tls.QUICConfig{TLSConfig: &tls.Config{ServerName: "example.org", NextProtos: []string{"nfqguard-test"}, MinVersion: tls.VersionTLS13}})
	c.SetTransportParameters(nil)
	must(t, c.Start(context.Background()))
	defer c.Close()
	n := 0
	for ev := c.NextEvent(); ev.Kind != tls.QUICNoEvent; ev = c.NextEvent() {
		if ev.Kind == tls.QUICWriteData && ev.Level == tls.QUICEncryptionLevelInitial {
			n += len(ev.Data)
		}
	}
	return n
}
