package rules

import (
	"bytes"
	"net/netip"
	"strings"
	"testing"
)

func TestAppProtoParseErrors(t *testing.T) {
	const key = "container[0].rule[0].app_proto"
	for _, c := range []struct {
		lines []string
		msg   string
	}{
		{[]string{`app_proto = ["smtp"]`}, `"smtp" is not an application protocol: use "tls", "http", "ssh", "dns", "quic" or "unknown"`},
		{[]string{`app_proto = ["TLS"]`}, `"TLS" is not an application protocol`},
		{[]string{`app_proto = []`}, `is empty: leave the key out`},
		{[]string{`proto = "udp"`, `app_proto = ["dns", "ssh"]`}, `"ssh" cannot be used with proto "udp": it runs over TCP`},
		{[]string{`proto = "tcp"`, `app_proto = ["quic"]`}, `"quic" cannot be used with proto "tcp": QUIC runs over UDP`},
		{[]string{`proto = "icmp"`, `app_proto = ["dns"]`}, `app_proto cannot be used with proto "icmp"`},
	} {
		_, err := parse("bad.toml", []byte(withL7(c.lines...)), testCPUs)
		if err == nil || !strings.Contains(err.Error(), key) || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("%v: %v, want an error naming %s with %q", c.lines, err, key, c.msg)
		}
	}
}

const appRules = `
[defaults]
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

  [[container.rule]]
  id = "no-ssh-anywhere"
  direction = "egress"
  app_proto = ["ssh"]
  action = "drop"
  log = true

  [[container.rule]]
  id = "quic-to-api"
  direction = "egress"
  ports = ["443"]
  app_proto = ["quic"]
  tls_sni = ["api.example.com"]
  action = "allow"

  [[container.rule]]
  id = "dns-or-unknown"
  direction = "egress"
  ports = ["53"]
  app_proto = ["dns", "unknown"]
  action = "allow"
`

func TestAppProtoMatch(t *testing.T) {
	tbl := mustParse(t, "app.toml", []byte(appRules))
	app, peer := netip.MustParseAddr("172.17.0.5"), netip.MustParseAddr("198.51.100.1")
	for _, c := range []struct {
		name  string
		proto uint8
		port  uint16
		f     *Facts
		want  string
	}{
		{"TLS on 443", ProtoTCP, 443, &Facts{Proto: L7TLS, App: AppTLS, SNI: []byte("x.example")}, "only-real-tls-out"},
		{"TLS without SNI on 443", ProtoTCP, 443, &Facts{Proto: L7TLS, App: AppTLS}, "only-real-tls-out"},
		{"an SSH tunnel on 443", ProtoTCP, 443, &Facts{App: AppSSH}, "no-ssh-anywhere"},
		{"HTTP on 443", ProtoTCP, 443, &Facts{Proto: L7HTTP, App: AppHTTP, Host: []byte("a")}, RuleIDDefault},
		{"something else on 443", ProtoTCP, 443, &Facts{App: AppUnknown}, RuleIDDefault},
		{"SSH on 22", ProtoTCP, 22, &Facts{App: AppSSH}, "no-ssh-anywhere"},
		{"QUIC to the API", ProtoUDP, 443, &Facts{Proto: L7TLS, App: AppQUIC, QUIC: 1, SNI: []byte("api.example.com")}, "quic-to-api"},
		{"QUIC elsewhere: app_proto AND tls_sni", ProtoUDP, 443, &Facts{Proto: L7TLS, App: AppQUIC, QUIC: 1, SNI: []byte("www.example.com")}, RuleIDDefault},
		{"DNS over UDP", ProtoUDP, 53, &Facts{Proto: L7DNS, App: AppDNS, NNames: 1, Names: [MaxFactNames][]byte{[]byte("a.example")}}, "dns-or-unknown"},
		{"not DNS on 53", ProtoUDP, 53, &Facts{App: AppUnknown}, "dns-or-unknown"},
		{"QUIC on 53", ProtoUDP, 53, &Facts{Proto: L7TLS, App: AppQUIC, QUIC: 1}, RuleIDDefault},
		{"no facts", ProtoTCP, 443, nil, RuleIDDefault},
	} {
		if got := tbl.JudgeFacts(app, Egress, c.proto, c.port, peer, c.f); got.RuleID != c.want {
			t.Errorf("%s: judged by %q, want %q", c.name, got.RuleID, c.want)
		}
	}
	for _, c := range []struct {
		proto uint8
		port  uint16
		need  L7
	}{{ProtoTCP, 443, L7App}, {ProtoUDP, 443, L7App | L7TLS}, {ProtoUDP, 53, L7App}, {ProtoTCP, 8080, L7App}} {
		if m := tbl.Judge(app, Egress, c.proto, c.port, peer); m.Need != c.need {
			t.Errorf("proto %d port %d: Need %v, want %v", c.proto, c.port, m.Need, c.need)
		}
	}
	var buf bytes.Buffer
	if _, err := tbl.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"app_proto tls", "app_proto quic tls_sni api.example.com", "app_proto dns,unknown"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("WriteTo does not show %q:\n%s", want, buf.String())
		}
	}
}

func TestAppProtoString(t *testing.T) {
	if s := (AppTLS | AppQUIC | AppUnknown).String(); s != "tls|quic|unknown" {
		t.Errorf("String = %q", s)
	}
	if s := AppProto(0).String(); s != "none" {
		t.Errorf("String = %q", s)
	}
	if n := testing.AllocsPerRun(10, func() { _ = AppSSH.String() }); n != 0 {
		t.Errorf("one protocol's String allocates %v times", n)
	}
}
