package rules

import (
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// learnedMap is a Learned over a fixed map, keyed by "container peer".
type learnedMap map[string][]string

func (l learnedMap) Names(c, peer netip.Addr) []string { return l[c.String()+" "+peer.String()] }

// learnedPairs is a Learned that allocates nothing.
type learnedPairs map[[2]netip.Addr][]string

func (l learnedPairs) Names(c, peer netip.Addr) []string { return l[[2]netip.Addr{c, peer}] }

// countingLearned counts its calls, to show a table asks only when a rule
// with to_names is reached.
type countingLearned struct {
	learnedMap
	calls int
}

func (l *countingLearned) Names(c, peer netip.Addr) []string {
	l.calls++
	return l.learnedMap.Names(c, peer)
}

const namesRules = `
[dns]
min_ttl = "2s"

[[container]]
name = "builder"
ips = ["172.17.0.5", "fd00::5"]
egress = "drop"

  [[container.rule]]
  id = "dns"
  direction = "egress"
  proto = "udp"
  ports = ["53"]
  action = "allow"

  [[container.rule]]
  id = "builder-github"
  direction = "egress"
  to_names = ["github.com", "*.githubusercontent.com"]
  proto = "any"
  ports = ["22", "443"]
  action = "allow"

  [[container.rule]]
  id = "api-tls-only"
  direction = "egress"
  proto = "tcp"
  ports = ["8443"]
  to_names = ["api.example.com"]
  tls_sni = ["api.example.com"]
  action = "allow"

  [[container.rule]]
  id = "no-evil"
  direction = "egress"
  to_names = ["evil.example"]
  action = "drop"
  log = true

  [[container.rule]]
  id = "ping-by-name"
  direction = "egress"
  proto = "icmp"
  to_names = ["github.com"]
  action = "allow"
`

func TestToNamesJudge(t *testing.T) {
	tbl := mustParse(t, "names.toml", []byte(namesRules))
	if !tbl.DNS.Learn {
		t.Fatal("DNS.Learn is false in a file with to_names")
	}
	if tbl.DNS.MinTTL != 2*time.Second || tbl.DNS.MaxTTL != DefaultMaxTTL || tbl.DNS.Grace != DefaultGrace || tbl.DNS.MaxNames != DefaultMaxNames {
		t.Errorf("DNS = %+v, want min_ttl 2s and the defaults", tbl.DNS)
	}
	c, c6 := netip.MustParseAddr("172.17.0.5"), netip.MustParseAddr("fd00::5")
	learned := learnedMap{
		"172.17.0.5 140.82.121.4":  {"github.com"},
		"172.17.0.5 185.199.108.1": {"github.map.fastly.net", "objects.githubusercontent.com"},
		"172.17.0.5 203.0.113.9":   {"githubusercontent.com"}, // the bare suffix: not *.githubusercontent.com
		"172.17.0.5 198.51.100.7":  {"api.example.com"},
		"172.17.0.5 192.0.2.66":    {"evil.example"},
		"fd00::5 2001:db8::1":      {"github.com"},
		"172.17.0.6 140.82.121.5":  {"github.com"}, // another container's binding
	}
	m := func(a Action, id string, need L7) Match {
		return Match{Action: a, RuleID: id, Container: "builder", Need: need}
	}
	for _, tt := range []struct {
		name  string
		c     netip.Addr
		proto uint8
		port  uint16
		peer  string
		want  Match
	}{
		{"exact name, TCP 443", c, ProtoTCP, 443, "140.82.121.4", m(Allow, "builder-github", 0)},
		{"exact name, TCP 22 (ssh)", c, ProtoTCP, 22, "140.82.121.4", m(Allow, "builder-github", 0)},
		{"proto any: UDP 443 too", c, ProtoUDP, 443, "140.82.121.4", m(Allow, "builder-github", 0)},
		{"a port the rule does not list", c, ProtoTCP, 80, "140.82.121.4", m(Drop, RuleIDDefault, 0)},
		{"wildcard matches a later name of the binding", c, ProtoTCP, 443, "185.199.108.1", m(Allow, "builder-github", 0)},
		{"wildcard does not match the bare suffix", c, ProtoTCP, 443, "203.0.113.9", m(Drop, RuleIDDefault, 0)},
		{"an address never resolved", c, ProtoTCP, 443, "140.82.121.99", m(Drop, RuleIDDefault, 0)},
		{"another container's binding does not count", c, ProtoTCP, 443, "140.82.121.5", m(Drop, RuleIDDefault, 0)},
		{"IPv6", c6, ProtoTCP, 443, "2001:db8::1", m(Allow, "builder-github", 0)},
		{"v4-mapped peer is the IPv4 binding", c, ProtoTCP, 443, "::ffff:140.82.121.4", m(Allow, "builder-github", 0)},
		{"to_names and tls_sni: the name first, then the L7 need", c, ProtoTCP, 8443, "198.51.100.7", m(Drop, RuleIDDefault, L7TLS)},
		{"to_names and tls_sni: no binding, no need", c, ProtoTCP, 8443, "198.51.100.8", m(Drop, RuleIDDefault, 0)},
		{"a drop by name", c, ProtoTCP, 5000, "192.0.2.66", Match{Action: Drop, RuleID: "no-evil", Container: "builder", Log: true}},
		{"ICMP by name", c, ProtoICMP, 0, "140.82.121.4", m(Allow, "ping-by-name", 0)},
		{"rules before to_names still apply", c, ProtoUDP, 53, "192.0.2.53", m(Allow, "dns", 0)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			got := tbl.JudgeLearned(learned, tt.c, Egress, tt.proto, tt.port, netip.MustParseAddr(tt.peer))
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("JudgeLearned mismatch (-want +got):\n%s", diff)
			}
		})
	}

	// Without learned names, to_names matches nothing.
	if got := tbl.Judge(c, Egress, ProtoTCP, 443, netip.MustParseAddr("140.82.121.4")); got.RuleID != RuleIDDefault || got.Action != Drop {
		t.Errorf("Judge without Learned = %+v, want the default drop", got)
	}

	// With the facts known, both halves must hold.
	peer := netip.MustParseAddr("198.51.100.7")
	for _, tt := range []struct {
		sni  string
		want string
	}{{"api.example.com", "api-tls-only"}, {"other.example.com", RuleIDDefault}} {
		f := &Facts{Proto: L7TLS, App: AppTLS, SNI: []byte(tt.sni)}
		if got := tbl.JudgeFactsLearned(learned, c, Egress, ProtoTCP, 8443, peer, f); got.RuleID != tt.want {
			t.Errorf("sni %s: JudgeFactsLearned = %+v, want rule %s", tt.sni, got, tt.want)
		}
	}
	if got := tbl.JudgeFactsLearned(learned, c, Egress, ProtoTCP, 8443, netip.MustParseAddr("198.51.100.8"),
		&Facts{Proto: L7TLS, SNI: []byte("api.example.com")}); got.RuleID != RuleIDDefault {
		t.Errorf("the right SNI to an address not resolved from the name = %+v, want the default", got)
	}
}

// TestToNamesAsksOnce: the learned names are asked for once per lookup,
// and not at all before a rule with to_names is reached.
func TestToNamesAsksOnce(t *testing.T) {
	tbl := mustParse(t, "names.toml", []byte(namesRules))
	c := netip.MustParseAddr("172.17.0.5")
	l := &countingLearned{learnedMap: learnedMap{}}
	tbl.JudgeLearned(l, c, Egress, ProtoUDP, 53, netip.MustParseAddr("192.0.2.53"))
	if l.calls != 0 {
		t.Errorf("a flow decided before any to_names rule asked %d times", l.calls)
	}
	tbl.JudgeLearned(l, c, Egress, ProtoTCP, 5000, netip.MustParseAddr("192.0.2.99"))
	if l.calls != 1 {
		t.Errorf("a flow walking three to_names rules asked %d times, want 1", l.calls)
	}
}

func TestToNamesAllocs(t *testing.T) {
	tbl := mustParse(t, "names.toml", []byte(namesRules))
	c, peer := netip.MustParseAddr("172.17.0.5"), netip.MustParseAddr("185.199.108.1")
	l := learnedPairs{{c, peer}: {"github.map.fastly.net", "objects.githubusercontent.com"}}
	if n := testing.AllocsPerRun(100, func() {
		if tbl.JudgeLearned(l, c, Egress, ProtoTCP, 443, peer).Action != Allow {
			t.Fatal("not allowed")
		}
	}); n != 0 {
		t.Errorf("JudgeLearned allocates %.0f times, want 0", n)
	}
}

func TestToNamesWriteTo(t *testing.T) {
	tbl := mustParse(t, "names.toml", []byte(namesRules))
	var b strings.Builder
	if _, err := tbl.WriteTo(&b); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"dns       learn on, min_ttl 2s, max_ttl 3600s, grace 30s, max_names 4096 per container",
		"2 builder-github  egress  any   ports 22,443  to_names github.com,*.githubusercontent.com  allow",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("check output lacks %q:\n%s", want, b.String())
		}
	}
}

func TestDNSSection(t *testing.T) {
	tbl := mustParse(t, "ok.toml", []byte(src(`[dns]`, `learn = true`, `min_ttl = "0s"`, `max_ttl = "10m"`, `grace = "0s"`, `max_names = 10`)))
	want := DNSConfig{Learn: true, MaxTTL: 10 * time.Minute, MaxNames: 10}
	if diff := cmp.Diff(want, tbl.DNS); diff != "" {
		t.Errorf("DNS mismatch (-want +got):\n%s", diff)
	}
	if tbl := mustParse(t, "none.toml", []byte(src())); tbl.DNS.Learn {
		t.Error("learning is on in a file without [dns] or to_names")
	}
}

func TestNamesParseErrors(t *testing.T) {
	const r = "container[0].rule[0]."
	tests := []struct {
		name string
		src  string
		pos  string
		msg  string
	}{
		{"to_names on ingress", src(`[[container]]`, `name = "a"`, `[[container.rule]]`, `id = "r"`, `direction = "ingress"`,
			`to_names = ["a.com"]`, `action = "drop"`), "6:1",
			r + `to_names: to_names is for egress rules`},
		{"to_names with to", withL7(`to = ["10.0.0.0/8"]`, `to_names = ["a.com"]`), "9:1",
			r + `to_names: cannot be used with "to" in one rule`},
		{"empty to_names", withL7(`to_names = []`), "8:1", r + `to_names: is empty: leave the key out`},
		{"to_names not an array", withL7(`to_names = "a.com"`), "8:1", r + `to_names: must be an array of strings`},
		{"bad name", withL7(`to_names = ["a b.com"]`), "8:13", r + `to_names[0]: "a b.com"`},
		{"wildcard in the middle", withL7(`to_names = ["a.*.com"]`), "8:13", r + `to_names[0]: "a.*.com"`},
		{"unknown dns key", src(`[dns]`, `min_tll = "1s"`), "2:1", `dns.min_tll: unknown key "min_tll" in [dns] (did you mean "min_ttl"?)`},
		{"max_ttl below min_ttl", src(`[dns]`, `min_ttl = "10m"`, `max_ttl = "1m"`), "3:1", `dns.max_ttl: "60s" is less than min_ttl "600s"`},
		{"min_ttl negative", src(`[dns]`, `min_ttl = "-1s"`), "2:1", `dns.min_ttl: "-1s" is out of range 0s..3600s`},
		{"max_ttl zero", src(`[dns]`, `max_ttl = "0s"`), "2:1", `dns.max_ttl: "0s" is out of range 1s..86400s`},
		{"grace too long", src(`[dns]`, `grace = "2h"`), "2:1", `dns.grace: "2h" is out of range 0s..3600s`},
		{"max_names 0", src(`[dns]`, `max_names = 0`), "2:1", `dns.max_names: 0 is out of range 1..1048576`},
		{"learn a string", src(`[dns]`, `learn = "yes"`), "2:1", `dns.learn: must be true or false`},
		{"learn off with to_names", src(`[dns]`, `learn = false`, `[[container]]`, `name = "a"`, `[[container.rule]]`, `id = "r"`,
			`direction = "egress"`, `to_names = ["a.com"]`, `action = "allow"`), "2:1",
			`dns.learn: is false, but rules use to_names`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { wantOneError(t, tt.src, tt.pos, tt.msg) })
	}
}
