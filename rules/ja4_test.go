package rules

import (
	"bytes"
	"net/netip"
	"strings"
	"testing"
)

func TestJA4ParseErrors(t *testing.T) {
	const key = "container[0].rule[0].tls_ja4[0]: "
	for _, c := range []struct{ value, msg string }{
		{"t13d1516h2", `"t13d1516h2" is not a JA4 fingerprint: want three parts joined by "_"`},
		{"t13d1516h2_8daaf6152771", `is not a JA4 fingerprint`},
		{"t13d1516h2_8daaf6152771_e5627efa2ab1_x", `is not a JA4 fingerprint`},
		{"x13d1516h2_*", `the first part "x13d1516h2" is not a JA4 prefix`},
		{"t14d1516h2_*", `is not a JA4 prefix`},
		{"t13x1516h2_*", `is not a JA4 prefix`},
		{"t13d15a6h2_*", `is not a JA4 prefix`},
		{"t13d1516h-_*", `is not a JA4 prefix`},
		{"t13d1516h2x_*", `is not a JA4 prefix`},
		{"t13d1516h2_8daaf615277g_*", `part 2 "8daaf615277g" is not a JA4 hash: want 12 hex digits`},
		{"*_*_e5627efa2ab", `part 3 "e5627efa2ab" is not a JA4 hash`},
		{"*", `"*" matches every fingerprint: leave the key out`},
		{"*_*_*", `matches every fingerprint`},
	} {
		_, err := parse("bad.toml", []byte(withL7(`tls_ja4 = ["`+c.value+`"]`)), testCPUs)
		if err == nil {
			t.Errorf("%q: parsed, want %q", c.value, c.msg)
			continue
		}
		errs := configErrors(t, err)
		if len(errs) != 1 || !strings.HasPrefix(errs[0].Error(), "bad.toml:8:") ||
			!strings.Contains(errs[0].Error(), key) || !strings.Contains(errs[0].Error(), c.msg) {
			t.Errorf("%q: %v, want one error at line 8 naming %s with %q", c.value, err, key, c.msg)
		}
	}
	if _, err := parse("bad.toml", []byte(withL7(`proto = "icmp"`, `tls_ja4 = ["t13d1516h2_*"]`)), testCPUs); err == nil ||
		!strings.Contains(err.Error(), `tls_ja4 cannot be used with proto "icmp"`) {
		t.Errorf("tls_ja4 with icmp: %v", err)
	}
}

const ja4Rules = `
[defaults]
egress = "allow"

[[container]]
name = "app"
ips = ["172.17.0.5"]

  [[container.rule]]
  id = "no-python"
  direction = "egress"
  ports = ["443"]
  tls_ja4 = ["t13d1812h2_*", "*_*_E5627EFA2AB1"]
  action = "drop"

  [[container.rule]]
  id = "quic-curl-to-api"
  direction = "egress"
  ports = ["443"]
  tls_sni = ["api.example.com"]
  tls_ja4 = ["q13d0312h3_55b375c5d22e_*"]
  action = "allow"

  [[container.rule]]
  id = "only-known-clients"
  direction = "egress"
  ports = ["443"]
  action = "drop"
`

func TestJA4Match(t *testing.T) {
	tbl := mustParse(t, "ja4.toml", []byte(ja4Rules))
	app, peer := netip.MustParseAddr("172.17.0.5"), netip.MustParseAddr("198.51.100.1")
	facts := func(sni, ja4 string, quic uint32) *Facts {
		return &Facts{Proto: L7TLS, SNI: []byte(sni), JA4: []byte(ja4), QUIC: quic}
	}
	for _, c := range []struct {
		name  string
		proto uint8
		f     *Facts
		want  string
	}{
		{"first section exact, the rest any", ProtoTCP, facts("x", "t13d1812h2_000000000000_111111111111", 0), "no-python"},
		{"last section, written in upper case", ProtoTCP, facts("x", "t12d0101h1_000000000000_e5627efa2ab1", 0), "no-python"},
		{"sections are whole: a prefix is not enough", ProtoTCP, facts("x", "t13d1812h1_000000000000_111111111111", 0), "only-known-clients"},
		{"the transport is part of the first section", ProtoUDP, facts("x", "q13d1812h2_000000000000_111111111111", 1), "only-known-clients"},
		{"tls_sni and tls_ja4 both match", ProtoUDP, facts("api.example.com", "q13d0312h3_55b375c5d22e_aaaaaaaaaaaa", 1), "quic-curl-to-api"},
		{"tls_sni matches, tls_ja4 does not", ProtoUDP, facts("api.example.com", "q13d0312h3_55b375c5d22f_aaaaaaaaaaaa", 1), "only-known-clients"},
		{"tls_ja4 matches, tls_sni does not", ProtoUDP, facts("www.example.com", "q13d0312h3_55b375c5d22e_aaaaaaaaaaaa", 1), "only-known-clients"},
		{"no fingerprint", ProtoTCP, facts("x", "", 0), "only-known-clients"},
	} {
		if got := tbl.JudgeFacts(app, Egress, c.proto, 443, peer, c.f); got.RuleID != c.want {
			t.Errorf("%s: judged by %q, want %q", c.name, got.RuleID, c.want)
		}
	}
	if m := tbl.Judge(app, Egress, ProtoUDP, 443, peer); m.Need != L7TLS {
		t.Errorf("a UDP flow to 443: Need %v, want tls (QUIC)", m.Need)
	}
	var buf bytes.Buffer
	if _, err := tbl.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"tls_ja4 t13d1812h2_*_*,*_*_e5627efa2ab1", "tls_sni api.example.com tls_ja4 q13d0312h3_55b375c5d22e_*"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("WriteTo does not show %q:\n%s", want, buf.String())
		}
	}
}
