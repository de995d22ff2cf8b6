package inspect

import (
	"testing"

	"github.com/nfqguard/nfqguard/rules"
)

const appConfig = `
[engine]
workers = 1

[inspect]
max_packets = 4
max_bytes = 4096
max_wait = "1s"
max_held_flows = 2

[defaults]
ingress = "allow"
egress = "allow"

[[container]]
name = "app"
ips = ["172.17.0.5"]
egress = "drop"

  [[container.rule]]
  id = "only-real-tls-out"
  direction = "egress"
  proto = "tcp"
  ports = ["443"]
  app_proto = ["tls"]
  action = "allow"
  log = true

  [[container.rule]]
  id = "no-ssh"
  direction = "egress"
  app_proto = ["ssh"]
  action = "drop"

  [[container.rule]]
  id = "mail"
  direction = "egress"
  proto = "tcp"
  ports = ["25"]
  app_proto = ["unknown"]
  action = "allow"
  log = true

  [[container.rule]]
  id = "dns-or-unknown"
  direction = "egress"
  proto = "udp"
  ports = ["53"]
  app_proto = ["dns", "unknown"]
  action = "allow"
  log = true
`

func TestAppProtoTCP(t *testing.T) {
	for _, c := range []struct {
		name   string
		pieces [][]byte
		allow  bool
		rule   string
		app    rules.AppProto
	}{
		{"TLS", [][]byte{clientHello(t, "example.org")}, true, "only-real-tls-out", rules.AppTLS},
		{"TLS without SNI", [][]byte{clientHello(t, "")}, true, "only-real-tls-out", rules.AppTLS},
		{"an SSH tunnel on 443", [][]byte{[]byte("SSH-2.0-OpenSSH_9.6\r\n")}, false, "no-ssh", rules.AppSSH},
		{"the SSH banner in two pieces", [][]byte{[]byte("SS"), []byte("H-2.0-x\r\n")}, false, "no-ssh", rules.AppSSH},
		{"HTTP on 443", [][]byte{[]byte("GET / HTTP/1.1\r\nHost: a\r\n\r\n")}, false, rules.RuleIDDefault, rules.AppHTTP},
		{"something else on 443", [][]byte{{0x00, 0x01, 0x02, 0x03, 0x04, 0x05}}, false, rules.RuleIDDefault, rules.AppUnknown},
		{"malformed TLS is not TLS", [][]byte{{0x16, 0x02, 0x01, 0x00, 0x05, 1, 2, 3, 4, 5}}, false, rules.RuleIDDefault, rules.AppUnknown},
	} {
		t.Run(c.name, func(t *testing.T) {
			r := newDeepRig(t, appConfig)
			conn := r.dial("198.51.100.7", 43000, 443)
			conn.handshake()
			var ids []uint32
			var got judged
			off := 0
			for i, p := range c.pieces {
				got = conn.data(off, p, 0)
				off += len(p)
				ids = append(ids, got.id)
				if i < len(c.pieces)-1 && (!got.v.Hold || len(got.released) != 0) {
					t.Fatalf("piece %d: %+v, want held", i, got)
				}
			}
			wantReleased(t, got, c.allow, ids...)
			if n := r.e.Stats().Undecided.Load(); n != 0 {
				t.Fatalf("%d undecided: the protocol is a fact", n)
			}
			if c.rule != "" && len(r.rec.events) > 0 {
				if ev := r.rec.events[0]; ev.RuleID != c.rule || ev.App != c.app {
					t.Fatalf("event %+v, want rule %s app %v", ev, c.rule, c.app)
				}
			} else if !c.allow {
				t.Fatal("a dropped flow was not logged")
			}
		})
	}
}

// TestAppProtoServerSpeaksFirst: a server that sends its banner before the
// client says anything (SMTP, FTP, SSH servers) is not stalled by the hold.
func TestAppProtoServerSpeaksFirst(t *testing.T) {
	r := newDeepRig(t, appConfig)
	conn := r.dial("198.51.100.25", 43001, 25)
	conn.handshake()
	if got := conn.reply([]byte("220 mail.example ESMTP\r\n")); !got.v.Allow || got.v.Hold || got.v.Bypass {
		t.Fatalf("the server's banner: %+v, want passed at once", got.v)
	}
	got := conn.data(0, []byte("EHLO client.example\r\n"), 0)
	wantReleased(t, got, true, got.id)
	if ev := r.rec.events; len(ev) != 1 || ev[0].RuleID != "mail" || ev[0].App != rules.AppUnknown {
		t.Fatalf("events %+v", ev)
	}
}

func TestAppProtoUDP(t *testing.T) {
	r := newDeepRig(t, appConfig)
	q := pkt{src: "172.17.0.5", dst: "198.51.100.53", sport: 5300, dport: 53, proto: "udp"}
	for i, c := range []struct {
		payload []byte
		app     rules.AppProto
	}{{dnsQuery(t, 1, "example.org."), rules.AppDNS}, {[]byte("not dns at all"), rules.AppUnknown}} {
		p := q
		p.payload = c.payload
		if got := r.judge(p, fromContainer); !got.v.Allow || got.v.Hold {
			t.Fatalf("datagram %d: %+v, want allowed by dns-or-unknown", i, got.v)
		}
		if ev := r.rec.events; len(ev) != i+1 || ev[i].RuleID != "dns-or-unknown" || ev[i].App != c.app {
			t.Fatalf("events %+v", ev)
		}
	}
	// UDP to another port: app_proto's TCP-only rules do not apply and
	// nothing is looked for.
	p := q
	p.dport, p.payload = 5000, []byte("x")
	if got := r.judge(p, fromContainer); got.v.Allow || got.v.Hold {
		t.Fatalf("UDP 5000: %+v, want the egress default drop", got.v)
	}
	if n := r.e.Stats().Undecided.Load(); n != 0 {
		t.Fatalf("%d undecided", n)
	}
}
