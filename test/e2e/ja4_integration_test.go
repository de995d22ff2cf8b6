package e2e

// JA4 of real clients: the fingerprint nfqguard logs for a client's
// ClientHello equals the one an independent reading of the same bytes
// gives (ja4Reference, written from FoxIO's specification with the
// standard library only), for curl (OpenSSL) and Go's crypto/tls.

import (
	"context"
	"crypto/sha256"
	byteorder "encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"net"
	"os/exec"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nfqguard/nfqguard/flowlog"
	"github.com/nfqguard/nfqguard/internal/netlab"
	"github.com/nfqguard/nfqguard/internal/netlab/netlabtest"
	"github.com/nfqguard/nfqguard/internal/traffic"
)

// ja4Config logs every TLS flow of web's egress to 443 with its facts.
const ja4Config = `
[engine]
queue = 0
workers = 1

[defaults]
ingress = "allow"
egress = "allow"

[[container]]
name = "web"
ips = ["172.17.0.2"]

  [[container.rule]]
  id = "never"
  direction = "egress"
  proto = "tcp"
  ports = ["443"]
  tls_sni = ["never.example"]
  action = "drop"

  [[container.rule]]
  id = "tls-out"
  direction = "egress"
  proto = "tcp"
  ports = ["443"]
  action = "allow"
  log = true
`

func TestJA4RealClients(t *testing.T) {
	t.Parallel()
	if _, err := exec.LookPath("curl"); err != nil {
		t.Fatalf("curl not found (make deps installs it): %v", err)
	}
	l := netlabtest.New(t, netlab.Options{})
	web, out := l.Containers[0], l.Outside
	// The server keeps the first TLS record each client sends, then closes.
	hellos := make(chan []byte, 8)
	ln, err := traffic.ListenTCP(l.NSPath(l.Out), ap(out, 443))
	must(t, err)
	srv := traffic.ServeTCP(ln, func(c net.Conn) {
		_ = c.SetDeadline(time.Now().Add(5 * time.Second))
		hdr := make([]byte, 5)
		if _, err := io.ReadFull(c, hdr); err != nil {
			return
		}
		rec := append(hdr, make([]byte, int(byteorder.BigEndian.Uint16(hdr[3:])))...)
		if _, err := io.ReadFull(c, rec[5:]); err != nil {
			return
		}
		hellos <- rec
	})
	t.Cleanup(func() { srv.Close() })
	e := startTestEngine(t, l, ja4Config)

	for _, client := range []struct {
		name string
		run  func() error
	}{
		{"curl (OpenSSL)", func() error {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			// The server closes after the ClientHello: curl fails, as
			// expected; its hello is what counts.
			_ = l.Command(ctx, web.NS, "curl", "-sk", "--max-time", "5", "--resolve", "ja4.example:443:"+out.String(), "https://ja4.example/").Run()
			return nil
		}},
		{"Go crypto/tls", func() error {
			_, _ = l.TLSHandshake(web.NS, ap(out, 443), "ja4.example", 1, 5*time.Second)
			return nil
		}},
	} {
		t.Run(client.name, func(t *testing.T) {
			n := len(e.records())
			must(t, client.run())
			var hello []byte
			select {
			case hello = <-hellos:
			case <-time.After(10 * time.Second):
				t.Fatal("no ClientHello reached the server")
			}
			want, err := ja4Reference(hello, 't')
			if err != nil {
				t.Fatalf("reference JA4 of the captured hello: %v", err)
			}
			r, ok := e.waitRecord(5*time.Second, func(r flowlog.Record) bool {
				return r.Rule == "tls-out" && r.SNI == "ja4.example" &&
					slices.IndexFunc(e.recs, func(x flowlog.Record) bool { return reflect.DeepEqual(x, r) }) >= n
			})
			if !ok {
				t.Fatalf("no record; records:\n%s", fmtRecords(e.records()))
			}
			if r.JA4 != want {
				t.Errorf("nfqguard logged JA4 %s, the reference reading of the same ClientHello gives %s", r.JA4, want)
			}
			t.Logf("%s: JA4 %s", client.name, r.JA4)
		})
	}
	e.stopClean()
}

// ja4Reference computes the JA4 fingerprint of a ClientHello in one TLS
// record with transport prefix, following technical_details/JA4.md of
// FoxIO-LLC/ja4 with plain slices, sort and hex: independent of
// nfqguard's parser.
func ja4Reference(rec []byte, transport byte) (string, error) {
	if len(rec) < 9 || rec[0] != 0x16 || rec[5] != 1 {
		return "", fmt.Errorf("not a ClientHello record")
	}
	b := rec[9:] // after the record and handshake headers
	rd := func(n int) []byte {
		if len(b) < n {
			return nil
		}
		v := b[:n]
		b = b[n:]
		return v
	}
	u16 := func(x []byte) int { return int(x[0])<<8 | int(x[1]) }
	grease := func(v int) bool { return v&0x0f0f == 0x0a0a && v>>8 == v&0xff }
	legacy := rd(2)
	rd(32)
	sid := rd(1)
	rd(int(sid[0]))
	ciphersRaw := rd(u16(rd(2)))
	rd(int(rd(1)[0]))
	extsRaw := rd(u16(rd(2)))
	if legacy == nil || extsRaw == nil {
		return "", fmt.Errorf("truncated ClientHello")
	}
	var ciphers, exts, sigs []string
	for i := 0; i+1 < len(ciphersRaw); i += 2 {
		if v := u16(ciphersRaw[i:]); !grease(v) {
			ciphers = append(ciphers, fmt.Sprintf("%04x", v))
		}
	}
	version, sni, alpn, nExt := u16(legacy), "i", "00", 0
	for e := extsRaw; len(e) >= 4; {
		typ, n := u16(e), u16(e[2:])
		data := e[4 : 4+n]
		e = e[4+n:]
		if grease(typ) {
			continue
		}
		nExt++
		switch typ {
		case 0x0000:
			sni = "d"
		case 0x0010:
			if p := data[2:]; len(p) > 1 && int(p[0]) > 0 {
				first := p[1 : 1+int(p[0])]
				a, z := first[0], first[len(first)-1]
				alnum := func(c byte) bool { return c >= '0' && c <= '9' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' }
				if alnum(a) && alnum(z) {
					alpn = string([]byte{a, z})
				} else {
					h := hex.EncodeToString(first)
					alpn = h[:1] + h[len(h)-1:]
				}
			}
		case 0x000d:
			for i := 2; i+1 < len(data); i += 2 {
				if v := u16(data[i:]); !grease(v) {
					sigs = append(sigs, fmt.Sprintf("%04x", v))
				}
			}
		case 0x002b:
			best := 0
			for i := 1; i+1 < len(data); i += 2 {
				if v := u16(data[i:]); !grease(v) && v > best {
					best = v
				}
			}
			version = best
		}
		if typ != 0x0000 && typ != 0x0010 {
			exts = append(exts, fmt.Sprintf("%04x", typ))
		}
	}
	ver := map[int]string{0x0304: "13", 0x0303: "12", 0x0302: "11", 0x0301: "10"}[version]
	if ver == "" {
		ver = "00"
	}
	hash := func(s string) string {
		sum := sha256.Sum256([]byte(s))
		return hex.EncodeToString(sum[:])[:12]
	}
	slices.Sort(ciphers)
	slices.Sort(exts)
	c := strings.Join(exts, ",")
	if len(sigs) > 0 {
		c += "_" + strings.Join(sigs, ",")
	}
	return fmt.Sprintf("%c%s%s%02d%02d%s_%s_%s", transport, ver, sni, min(len(ciphers), 99), min(nExt, 99), alpn,
		hash(strings.Join(ciphers, ",")), hash(c)), nil
}
