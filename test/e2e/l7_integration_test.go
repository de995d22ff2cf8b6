package e2e

// End-to-end tests of deep inspection: real TLS, HTTP and DNS clients and
// servers in the netns lab, judged by TLS server name, HTTP host, path and
// method, and DNS question name.

import (
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nfqguard/nfqguard/flowlog"
	"github.com/nfqguard/nfqguard/inspect/l7"
	"github.com/nfqguard/nfqguard/internal/netlab"
	"github.com/nfqguard/nfqguard/internal/netlab/netlabtest"
	"github.com/nfqguard/nfqguard/internal/traffic"
	"github.com/nfqguard/nfqguard/queue"
)

// l7Config inspects web's egress TLS/HTTP and DNS, and its ingress TLS on
// 443 (published on the host as 8443).
const l7Config = `
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
  proto = "tcp"
  ports = ["443", "80"]
  tls_sni = ["pastebin.com", "*.paste.ee"]
  http_host = ["pastebin.com"]
  http_path = ["/raw/"]
  http_method = ["POST"]
  action = "drop"

  [[container.rule]]
  id = "dns-deny"
  direction = "egress"
  ports = ["53"]
  dns_qname = ["*.evil.example"]
  action = "drop"

  [[container.rule]]
  id = "no-admin-from-outside"
  direction = "ingress"
  proto = "tcp"
  ports = ["443"]
  tls_sni = ["admin.internal"]
  action = "drop"
`

// l7Timeout bounds one exchange. A blocked TCP exchange must end well within
// it, with a reset, not by timing out.
const l7Timeout = 5 * time.Second

func TestDeepInspection(t *testing.T) {
	t.Parallel()
	publish := append(netlab.DefaultPublish(), netlab.Publish{HostPort: 8443, Container: 0, ContainerPort: 443, Proto: "tcp"})
	l := netlabtest.New(t, netlab.Options{Publish: publish})
	web, out := l.Containers[0], l.Outside
	must(t, l.ServeTLS(l.Out, ap(out, 443)))
	must(t, l.ServeHTTP(l.Out, ap(out, 80)))
	db := l.Containers[1]
	must(t, l.ServeDNS(db.NS, ap(db.Addr, 53))) // a resolver container next to web
	must(t, l.ServeTLS(web.NS, ap(web.Addr, 443)))
	statsPath := filepath.Join(t.TempDir(), "stats.json")
	e := startTestEngine(t, l, l7Config, "--stats-json", statsPath)

	// blocked checks that err is the reset nfqguard sends, and that it came
	// promptly rather than after a timeout.
	blocked := func(name string, start time.Time, err error) {
		t.Helper()
		if err == nil {
			t.Errorf("%s: allowed, want blocked", name)
			return
		}
		if !errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("%s: %v, want connection reset by nfqguard", name, err)
		}
		if d := time.Since(start); d > 3*time.Second {
			t.Errorf("%s: took %v to fail, want the reset at once", name, d)
		}
	}
	waitRec := func(name string, pred func(r flowlog.Record) bool) flowlog.Record {
		t.Helper()
		r, ok := e.waitRecord(5*time.Second, pred)
		if !ok {
			t.Fatalf("%s: no matching flow-log record; records:\n%s", name, fmtRecords(e.records()))
		}
		if r.Event != "blocked" || r.Container != "web" {
			t.Errorf("%s: record %+v", name, r)
		}
		return r
	}

	t.Run("tls", func(t *testing.T) {
		for _, c := range []struct {
			sni   string
			split int
			vers  uint16
			allow bool
		}{
			{"example.org", 1, tls.VersionTLS13, true},
			{"example.org", 3, tls.VersionTLS13, true},
			{"example.org", 1, tls.VersionTLS12, true},
			{"paste.ee", 1, tls.VersionTLS13, true}, // *.paste.ee does not cover the bare name
			{"pastebin.com", 1, tls.VersionTLS13, false},
			{"PASTEBIN.com", 1, tls.VersionTLS12, false},
			{"x.paste.ee", 3, tls.VersionTLS13, false}, // ClientHello in 3 segments
		} {
			name := fmt.Sprintf("sni %s split %d version %x", c.sni, c.split, c.vers)
			start := time.Now()
			got, err := l.TLSHandshakeVersion(web.NS, ap(out, 443), c.sni, c.split, c.vers, l7Timeout)
			if c.allow {
				if err != nil || got != c.sni {
					t.Errorf("%s: got %q, %v; want the server to see %q", name, got, err, c.sni)
				}
				continue
			}
			blocked(name, start, err)
			r := waitRec(name, func(r flowlog.Record) bool { return r.SNI == c.sni })
			if r.Rule != "no-pastebins" || r.L7 != "tls" || r.Direction != "egress" || r.Dst != out.String() || r.DstPort != 443 {
				t.Errorf("%s: record %+v", name, r)
			}
		}
		// The server's end was reset too: no connection is left open.
		if est := established(t, l, l.Out, 443); est != "" {
			t.Errorf("server still has established connections after the resets:\n%s", est)
		}
	})

	t.Run("tls ingress through a published port", func(t *testing.T) {
		got, err := l.TLSHandshake(l.Out, ap(l.HostOutside, 8443), "www.internal", 1, l7Timeout)
		if err != nil || got != "www.internal" {
			t.Errorf("allowed name: got %q, %v", got, err)
		}
		start := time.Now()
		_, err = l.TLSHandshake(l.Out, ap(l.HostOutside, 8443), "admin.internal", 1, l7Timeout)
		// The reset reaches the client from the host port it dialled:
		// conntrack reverses Docker's DNAT on the forged RST.
		blocked("admin.internal via 8443", start, err)
		r := waitRec("admin.internal", func(r flowlog.Record) bool { return r.SNI == "admin.internal" })
		if r.Rule != "no-admin-from-outside" || r.Direction != "ingress" || r.DstPort != 443 || r.Dst != web.Addr.String() {
			t.Errorf("record %+v", r)
		}
		if est := established(t, l, web.NS, 443); est != "" {
			t.Errorf("container still has established connections after the reset:\n%s", est)
		}
	})

	t.Run("http", func(t *testing.T) {
		for _, c := range []struct {
			method, host, path string
			allow              bool
		}{
			{"GET", "pastebin.com", "/raw/abc", true},
			{"POST", "example.org", "/raw/abc", true},
			{"POST", "pastebin.com", "/archive", true},
			{"POST", "pastebin.com", "/raw/abc", false},
			{"POST", "PasteBin.com:80", "/raw/x?y=1", false},
		} {
			name := c.method + " " + c.host + c.path
			start := time.Now()
			body, err := l.HTTPRequest(web.NS, ap(out, 80), c.method, c.host, c.path, l7Timeout)
			if c.allow {
				if err != nil || !strings.HasPrefix(body, c.method+" ") {
					t.Errorf("%s: %q, %v", name, body, err)
				}
				continue
			}
			blocked(name, start, err)
			r := waitRec(name, func(r flowlog.Record) bool { return r.L7 == "http" && r.HTTPPath == strings.Split(c.path, "?")[0] })
			if r.Rule != "no-pastebins" || r.HTTPMethod != "POST" || !strings.EqualFold(r.HTTPHost, "pastebin.com") {
				t.Errorf("%s: record %+v", name, r)
			}
		}
	})

	t.Run("dns", func(t *testing.T) {
		for _, network := range []string{"udp", "tcp"} {
			// Fully qualified names: no search domain of the host's
			// resolv.conf is tried after a blocked query.
			if _, err := l.Resolve(web.NS, ap(db.Addr, 53), network, "www.example.org.", l7Timeout); err != nil {
				t.Errorf("%s: allowed name: %v", network, err)
			}
			name := "c2." + network + ".evil.example"
			if addrs, err := l.Resolve(web.NS, ap(db.Addr, 53), network, name+".", 2*time.Second); err == nil {
				t.Errorf("%s: %s resolved to %v, want the query blocked", network, name, addrs)
			}
			r := waitRec(name, func(r flowlog.Record) bool { return r.QName == name })
			if r.Rule != "dns-deny" || r.L7 != "dns" || r.Proto != network || r.Dst != db.Addr.String() || r.DstPort != 53 {
				t.Errorf("%s: record %+v", network, r)
			}
			if network == "udp" && r.QueryID == 0 {
				t.Errorf("udp: record has no query id: %+v", r)
			}
		}
	})

	e.stopClean()
	b, err := os.ReadFile(statsPath)
	if err != nil {
		t.Fatalf("stats: %v", err)
	}
	var s queue.Summary
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatalf("stats: %v\n%s", err, b)
	}
	// 3 blocked egress TLS flows, 1 ingress, 2 blocked HTTP requests and
	// the blocked DNS query over TCP (the resolver may retry it) were cut
	// with resets.
	if s.Inspected < 15 || s.Decided < 15 || s.HeldPackets < s.Decided || s.Resets < 7 || s.BlockedQueries < 1 || s.Undecided != 0 {
		t.Errorf("stats = %+v", s)
	}
}

// established lists the established TCP connections on local port port in
// namespace ns ("" when there are none).
func established(t *testing.T, l *netlab.Lab, ns string, port uint16) string {
	t.Helper()
	// The reset may still be in flight: give it a moment.
	var out string
	for range 20 {
		b, err := l.Command(t.Context(), ns, "ss", "-Htn", "state", "established", fmt.Sprintf("( sport = :%d )", port)).CombinedOutput()
		if err != nil {
			t.Fatalf("ss in %s: %v: %s", ns, err, b)
		}
		if out = strings.TrimSpace(string(b)); out == "" {
			return ""
		}
		time.Sleep(50 * time.Millisecond)
	}
	return out
}

// goClientJA4 is the JA4 fingerprint of the ClientHello crypto/tls sends
// with the lab's TLS client settings and maxVersion, read with nfqguard's
// own parser from a handshake over a pipe.
func goClientJA4(t *testing.T, serverName string, maxVersion uint16) string {
	t.Helper()
	client, server := net.Pipe()
	defer server.Close()
	go func() {
		defer client.Close()
		_ = tls.Client(client, &tls.Config{ServerName: serverName, InsecureSkipVerify: true, MaxVersion: maxVersion}).Handshake()
	}()
	hdr := make([]byte, 5)
	_, err := io.ReadFull(server, hdr)
	must(t, err)
	rec := append(hdr, make([]byte, int(hdr[3])<<8|int(hdr[4]))...)
	_, err = io.ReadFull(server, rec[5:])
	must(t, err)
	var h l7.ClientHello
	if st := l7.ParseClientHello(rec, &h); st != l7.Done {
		t.Fatalf("ParseClientHello of crypto/tls's hello: %v", st)
	}
	return string(h.AppendJA4(nil, l7.JA4TCP))
}

// TestTLSJA4 drops one kind of client by its JA4 fingerprint and lets
// another through, on the same name and port.
func TestTLSJA4(t *testing.T) {
	t.Parallel()
	l := netlabtest.New(t, netlab.Options{})
	web, out := l.Containers[0], l.Outside
	must(t, l.ServeTLS(l.Out, ap(out, 443)))
	old, cur := goClientJA4(t, "example.org", tls.VersionTLS12), goClientJA4(t, "example.org", 0)
	if old[:10] == cur[:10] {
		t.Fatalf("TLS 1.2 and 1.3 clients share JA4 prefix %s: nothing to tell apart", old[:10])
	}
	cfg := strings.Replace(quicConfig, `tls_sni = ["pastebin.com", "*.paste.ee"]`, `tls_ja4 = ["`+old[:10]+`_*"]`, 1)
	e := startTestEngine(t, l, cfg)

	start := time.Now()
	_, err := l.TLSHandshakeVersion(web.NS, ap(out, 443), "example.org", 1, tls.VersionTLS12, l7Timeout)
	if err == nil || !errors.Is(err, syscall.ECONNRESET) || time.Since(start) > 3*time.Second {
		t.Errorf("TLS 1.2 client (JA4 %s): %v, want reset at once", old, err)
	}
	r, ok := e.waitRecord(5*time.Second, func(r flowlog.Record) bool { return r.Event == "blocked" && r.Proto == "tcp" })
	if !ok || r.Rule != "no-pastebins" || r.JA4 != old || r.L7 != "tls" || r.SNI != "example.org" {
		t.Errorf("record %+v (found %v), want blocked by no-pastebins with ja4 %s", r, ok, old)
	}
	if got, err := l.TLSHandshakeVersion(web.NS, ap(out, 443), "example.org", 1, 0, l7Timeout); err != nil || got != "example.org" {
		t.Errorf("TLS 1.3 client (JA4 %s): %q, %v; want allowed", cur, got, err)
	}
	e.stopClean()
}

// TestTLSAbsentSNI: an HTTPS call to an IP address (no server name in its
// ClientHello) passes a deny-list of names and is dropped by an
// allow-list, by the rules rather than by [inspect] undecided.
func TestTLSAbsentSNI(t *testing.T) {
	t.Parallel()
	l := netlabtest.New(t, netlab.Options{})
	web, out := l.Containers[0], l.Outside
	must(t, l.ServeTLS(l.Out, ap(out, 443)))

	deny := startTestEngine(t, l, l7Config)
	if got, err := l.TLSHandshake(web.NS, ap(out, 443), "", 1, l7Timeout); err != nil || got != "" {
		t.Errorf("deny-list: an IP-literal call: %q, %v; want allowed", got, err)
	}
	if got, err := l.TLSHandshake(web.NS, ap(out, 443), "pastebin.com", 1, l7Timeout); err == nil {
		t.Errorf("deny-list: pastebin.com allowed (server saw %q)", got)
	}
	deny.stopClean()

	allowList := `
[engine]
queue = 0
workers = 1

[defaults]
ingress = "allow"
egress = "drop"

[[container]]
name = "web"
ips = ["172.17.0.2"]

  [[container.rule]]
  id = "only-example"
  direction = "egress"
  proto = "tcp"
  ports = ["443"]
  tls_sni = ["example.org"]
  action = "allow"
`
	allow := startTestEngine(t, l, allowList)
	if got, err := l.TLSHandshake(web.NS, ap(out, 443), "example.org", 1, l7Timeout); err != nil || got != "example.org" {
		t.Errorf("allow-list: example.org: %q, %v; want allowed", got, err)
	}
	start := time.Now()
	_, err := l.TLSHandshake(web.NS, ap(out, 443), "", 1, l7Timeout)
	if !errors.Is(err, syscall.ECONNRESET) || time.Since(start) > 3*time.Second {
		t.Errorf("allow-list: an IP-literal call: %v, want reset at once", err)
	}
	r, ok := allow.waitRecord(5*time.Second, func(r flowlog.Record) bool { return r.Event == "blocked" && r.DstPort == 443 })
	if !ok || r.Rule != "default" || r.Reason != "" || r.SNI != "" || r.L7 != "tls" || len(r.JA4) != 36 {
		t.Errorf("allow-list: record %+v (found %v), want blocked by the default with no SNI and a JA4", r, ok)
	}
	allow.stopClean()
}

// TestAppProto: an allow-list of protocols on 443 lets real TLS through
// and drops an SSH tunnel on the same port.
func TestAppProto(t *testing.T) {
	t.Parallel()
	l := netlabtest.New(t, netlab.Options{})
	web, out := l.Containers[0], l.Outside
	must(t, l.ServeTLS(l.Out, ap(out, 443)))
	e := startTestEngine(t, l, `
[engine]
queue = 0
workers = 1

[defaults]
ingress = "allow"
egress = "allow"

[[container]]
name = "web"
ips = ["172.17.0.2"]
egress = "drop"

  [[container.rule]]
  id = "only-real-tls-out"
  direction = "egress"
  proto = "tcp"
  ports = ["443"]
  app_proto = ["tls"]
  action = "allow"
`)
	if got, err := l.TLSHandshake(web.NS, ap(out, 443), "example.org", 1, l7Timeout); err != nil || got != "example.org" {
		t.Errorf("TLS on 443: %q, %v; want allowed", got, err)
	}
	start := time.Now()
	c, err := traffic.DialTCP(l.NSPath(web.NS), 0, ap(out, 443), time.Now().Add(l7Timeout))
	must(t, err)
	defer c.Close()
	must(t, c.SetDeadline(time.Now().Add(l7Timeout)))
	_, err = c.Write([]byte("SSH-2.0-OpenSSH_9.6\r\n"))
	if err == nil {
		_, err = c.Read(make([]byte, 64))
	}
	if !errors.Is(err, syscall.ECONNRESET) || time.Since(start) > 3*time.Second {
		t.Errorf("SSH on 443: %v, want reset at once", err)
	}
	r, ok := e.waitRecord(5*time.Second, func(r flowlog.Record) bool { return r.Event == "blocked" && r.DstPort == 443 })
	if !ok || r.Rule != "default" || r.AppProto != "ssh" || r.Reason != "" {
		t.Errorf("record %+v (found %v), want blocked by the default with app_proto ssh", r, ok)
	}
	e.stopClean()
}
