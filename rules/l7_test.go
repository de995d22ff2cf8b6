package rules

import (
	"bytes"
	"errors"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// l7Query is a query against testdata/l7.toml; container "app" unless set.
type l7Query struct {
	dir   Direction
	proto uint8
	port  uint16
	peer  string
}

var (
	l7App  = netip.MustParseAddr("172.17.0.5")
	l7App6 = netip.MustParseAddr("fd00::5")
)

func (q l7Query) judge(t *Table) Match {
	return t.Judge(l7App, q.dir, q.proto, q.port, netip.MustParseAddr(q.peer))
}

func (q l7Query) judgeFacts(t *Table, f *Facts) Match {
	return t.JudgeFacts(l7App, q.dir, q.proto, q.port, netip.MustParseAddr(q.peer), f)
}

var (
	https  = l7Query{Egress, ProtoTCP, 443, "203.0.113.1"}
	dnsUDP = l7Query{Egress, ProtoUDP, 53, "172.17.0.53"}
)

func TestJudgeNeed(t *testing.T) {
	tbl := mustLoad(t, filepath.Join("testdata", "l7.toml"))
	m := func(a Action, id string, need L7) Match {
		return Match{Action: a, RuleID: id, Container: "app", Need: need}
	}
	tests := []struct {
		name string
		q    l7Query
		want Match
	}{
		{"L7 rules before an L4 rule accumulate Need", https, m(Allow, "web-out", L7TLS|L7HTTP)},
		{"v6 container", l7Query{Egress, ProtoTCP, 80, "2001:db8::7"}, m(Allow, "web-out", L7TLS|L7HTTP)},
		{"UDP: dns_qname and tls_sni (QUIC) apply", dnsUDP, m(Allow, "dns-ok", L7DNS|L7TLS)},
		{"DNS over TCP: dns-deny and sni-api", l7Query{Egress, ProtoTCP, 53, "172.17.0.53"}, m(Allow, RuleIDDefault, L7DNS|L7TLS)},
		{"default carries Need and Container", l7Query{Egress, ProtoTCP, 22, "203.0.113.1"}, m(Allow, RuleIDDefault, L7TLS)},
		{"UDP: tls_sni of a proto any rule applies (QUIC)", l7Query{Egress, ProtoUDP, 443, "203.0.113.1"}, m(Allow, RuleIDDefault, L7TLS)},
		{"UDP: a rule with only HTTP fields does not apply", l7Query{Ingress, ProtoUDP, 8080, "192.0.2.1"}, m(Drop, RuleIDDefault, 0)},
		{"L7 rules take no ICMP", l7Query{Egress, ProtoICMP, 0, "203.0.113.1"}, m(Allow, RuleIDDefault, 0)},
		{"L7 rule after an L4 rule is not consulted", l7Query{Ingress, ProtoTCP, 22, "192.0.2.1"}, m(Allow, "ssh-in", 0)},
		{"HTTP fields", l7Query{Ingress, ProtoTCP, 8080, "192.0.2.1"}, m(Allow, "web-in", L7HTTP)},
		{"TLS and DNS rule over TCP", l7Query{Ingress, ProtoTCP, 8443, "192.0.2.1"}, m(Drop, RuleIDDefault, L7TLS|L7DNS)},
		{"TLS and DNS rule over UDP", l7Query{Ingress, ProtoUDP, 8443, "192.0.2.1"}, m(Drop, RuleIDDefault, L7DNS|L7TLS)},
		{"no L7 rule matches the L4 key", l7Query{Ingress, ProtoTCP, 9999, "192.0.2.1"}, m(Drop, RuleIDDefault, 0)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := tt.q.judge(tbl)
			if tt.q.peer == "2001:db8::7" {
				got = tbl.Judge(l7App6, tt.q.dir, tt.q.proto, tt.q.port, netip.MustParseAddr(tt.q.peer))
			}
			if diff := cmp.Diff(tt.want, got); diff != "" {
				t.Errorf("Judge(%+v) mismatch (-want +got):\n%s", tt.q, diff)
			}
		})
	}
	// An unlisted address and a bad direction: no rules, no Need.
	if got := tbl.Judge(netip.MustParseAddr("172.17.0.99"), Egress, ProtoTCP, 443, l7App); got != (Match{Action: Allow, RuleID: RuleIDDefault}) {
		t.Errorf("unlisted: %+v", got)
	}
	// A container without L7 rules, in a table with some, never asks for
	// facts.
	plainIP, client := netip.MustParseAddr("172.17.0.6"), netip.MustParseAddr("192.0.2.1")
	if got, want := tbl.Judge(plainIP, Ingress, ProtoTCP, 80, client), (Match{Action: Allow, RuleID: "plain-http", Container: "plain"}); got != want {
		t.Errorf("plain: %+v, want %+v", got, want)
	}
	// A table without L7 rules never asks for facts.
	plain := mustLoad(t, filepath.Join("testdata", "judge.toml"))
	if got := plain.Judge(netip.MustParseAddr("172.17.0.2"), Ingress, ProtoTCP, 80, netip.MustParseAddr("10.66.1.1")); got.Need != 0 {
		t.Errorf("judge.toml: Need = %v", got.Need)
	}
}

func tlsFacts(sni string) *Facts { return &Facts{Proto: L7TLS, SNI: []byte(sni)} }

func quicFacts(sni string) *Facts { return &Facts{Proto: L7TLS, QUIC: 1, SNI: []byte(sni)} }

func httpFacts(host, path, method string) *Facts {
	return &Facts{Proto: L7HTTP, Host: []byte(host), Path: []byte(path), Method: []byte(method)}
}

func dnsFacts(names ...string) *Facts {
	f := &Facts{Proto: L7DNS, NNames: len(names)}
	for i, n := range names {
		f.Names[i] = []byte(n)
	}
	return f
}

func TestJudgeFacts(t *testing.T) {
	tbl := mustLoad(t, filepath.Join("testdata", "l7.toml"))
	m := func(a Action, id string, name int8) Match {
		return Match{Action: a, RuleID: id, Container: "app", Log: id == "no-pastebins", Name: name}
	}
	pastebins, webOut := m(Drop, "no-pastebins", -1), m(Allow, "web-out", -1)
	ingress8080 := l7Query{Ingress, ProtoTCP, 8080, "192.0.2.1"}
	adminWrite, webIn := m(Drop, "admin-write", -1), m(Allow, "web-in", -1)
	tests := []struct {
		name string
		q    l7Query
		f    *Facts
		want Match
	}{
		// tls_sni.
		{"sni exact", https, tlsFacts("pastebin.com"), pastebins},
		{"sni case-insensitive, trailing dot", https, tlsFacts("PasteBin.COM."), pastebins},
		{"sni only one trailing dot ignored", https, tlsFacts("pastebin.com.."), webOut},
		{"sni wildcard, one label", https, tlsFacts("x.paste.ee"), pastebins},
		{"sni wildcard, two labels, any case", https, tlsFacts("A.B.PASTE.EE"), pastebins},
		{"sni wildcard: bare suffix not matched", https, tlsFacts("paste.ee"), webOut},
		{"sni wildcard: suffix must start a label", https, tlsFacts("xpaste.ee"), webOut},
		{"sni wildcard: an empty label is no label", https, tlsFacts(".paste.ee"), webOut},
		{"sni exact: no subdomains", https, tlsFacts("www.pastebin.com"), webOut},
		{"sni later L7 rule", https, tlsFacts("api.example.com"), m(Allow, "sni-api", -1)},
		{"no sni", https, tlsFacts(""), webOut},
		// http_*: fields AND, values OR.
		{"http all fields match", https, httpFacts("pastebin.com", "/raw/abc", "POST"), pastebins},
		{"http second method", https, httpFacts("pastebin.com", "/raw/", "PUT"), pastebins},
		{"http host any case, trailing dot", https, httpFacts("PasteBin.Com.", "/raw/x", "POST"), pastebins},
		{"http path is a prefix", https, httpFacts("pastebin.com", "/raw", "POST"), webOut},
		{"http path is case-sensitive", https, httpFacts("pastebin.com", "/RAW/x", "POST"), webOut},
		{"http method is case-sensitive", https, httpFacts("pastebin.com", "/raw/x", "post"), webOut},
		{"http method exact", https, httpFacts("pastebin.com", "/raw/x", "POSTX"), webOut},
		{"http other host", https, httpFacts("example.com", "/raw/x", "POST"), webOut},
		{"http host IPv6 in another spelling", https, httpFacts("2001:DB8:0::1", "/raw/x", "POST"), pastebins},
		{"http host IPv4", https, httpFacts("192.0.2.80", "/raw/x", "POST"), pastebins},
		{"http host IPv4-mapped", https, httpFacts("::ffff:192.0.2.80", "/raw/x", "POST"), pastebins},
		{"http host other address", https, httpFacts("2001:db8::2", "/raw/x", "POST"), webOut},
		{"http host not an address", https, httpFacts("2001:db8::1:", "/raw/x", "POST"), webOut},
		{"admin: every field", ingress8080, httpFacts("admin.example.com", "/api/admin/users", "DELETE"), adminWrite},
		{"admin: first path", ingress8080, httpFacts("admin.example.com", "/admin", "POST"), adminWrite},
		{"admin: path misses", ingress8080, httpFacts("admin.example.com", "/public", "POST"), webIn},
		{"admin: method misses", ingress8080, httpFacts("admin.example.com", "/admin", "GET"), webIn},
		{"admin: host misses", ingress8080, httpFacts("www.example.com", "/admin", "POST"), webIn},
		{"rule with only a method", l7Query{Ingress, ProtoTCP, 22, "192.0.2.1"}, httpFacts("x", "/", "GET"), m(Allow, "ssh-in", -1)},
		// dns_qname: any question name, Name is its index.
		{"dns second name", dnsUDP, dnsFacts("ok.example", "WWW.Evil.Example"), m(Drop, "dns-deny", 1)},
		{"dns exact first name", dnsUDP, dnsFacts("evil.example", "x.evil.example"), m(Drop, "dns-deny", 0)},
		{"dns trailing dot", dnsUDP, dnsFacts("a.b.evil.example."), m(Drop, "dns-deny", 0)},
		{"dns fourth name", dnsUDP, dnsFacts("a", "b", "c", "d.evil.example"), m(Drop, "dns-deny", 3)},
		{"dns no match", dnsUDP, dnsFacts("example", "notevil.example"), m(Allow, "dns-ok", -1)},
		{"dns no names", dnsUDP, dnsFacts(), m(Allow, "dns-ok", -1)},
		{"dns over TCP", l7Query{Egress, ProtoTCP, 53, "172.17.0.53"}, dnsFacts("evil.example"), m(Drop, "dns-deny", 0)},
		// Protocols do not cross.
		{"dns name as sni", https, tlsFacts("evil.example"), webOut},
		{"sni as dns name", l7Query{Egress, ProtoTCP, 443, "172.17.0.53"}, dnsFacts("pastebin.com"), webOut},
		{"http host as sni rule", l7Query{Egress, ProtoTCP, 22, "203.0.113.1"}, httpFacts("api.example.com", "/", "GET"), m(Allow, RuleIDDefault, -1)},
		{"TLS facts on UDP (QUIC)", l7Query{Ingress, ProtoUDP, 8443, "192.0.2.1"}, quicFacts("a.internal"), m(Allow, "internal", -1)},
		{"HTTP facts on UDP: http fields never apply", l7Query{Ingress, ProtoUDP, 8080, "192.0.2.1"}, httpFacts("admin.example.com", "/admin", "POST"), m(Drop, RuleIDDefault, -1)},
		{"DNS facts on UDP", l7Query{Ingress, ProtoUDP, 8443, "192.0.2.1"}, dnsFacts("a.com", "x.internal"), m(Allow, "internal", 1)},
		{"TLS facts on TCP", l7Query{Ingress, ProtoTCP, 8443, "192.0.2.1"}, tlsFacts("x.internal"), m(Allow, "internal", -1)},
		{"several protocols is a caller bug: no match", https, &Facts{Proto: L7TLS | L7HTTP, SNI: []byte("pastebin.com")}, webOut},
		{"nil facts: L7 rules match nothing", https, nil, webOut},
		{"L4 rule first: facts not needed", l7Query{Ingress, ProtoTCP, 22, "192.0.2.1"}, tlsFacts("x"), m(Allow, "ssh-in", -1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if diff := cmp.Diff(tt.want, tt.q.judgeFacts(tbl, tt.f)); diff != "" {
				t.Errorf("JudgeFacts(%+v) mismatch (-want +got):\n%s", tt.q, diff)
			}
		})
	}
	// Outside the rules Name is -1 too: in a container without L7 rules,
	// for an unlisted address, for a bad direction.
	plainIP, client := netip.MustParseAddr("172.17.0.6"), netip.MustParseAddr("192.0.2.1")
	if got, want := tbl.JudgeFacts(plainIP, Ingress, ProtoTCP, 80, client, tlsFacts("x")), (Match{Action: Allow, RuleID: "plain-http", Container: "plain", Name: -1}); got != want {
		t.Errorf("plain: %+v, want %+v", got, want)
	}
	if got := tbl.JudgeFacts(netip.MustParseAddr("172.17.0.99"), Egress, ProtoUDP, 53, l7App, dnsFacts("evil.example")); got != (Match{Action: Allow, RuleID: RuleIDDefault, Name: -1}) {
		t.Errorf("unlisted: %+v", got)
	}
	if got := tbl.JudgeFacts(l7App, 0, ProtoUDP, 53, l7App, nil); got != (Match{Action: Drop, RuleID: RuleIDDefault, Name: -1}) {
		t.Errorf("bad direction: %+v", got)
	}
}

// TestJudgeFactsNames checks NNames bounds: no more than MaxFactNames are
// read, and a negative count reads none.
func TestJudgeFactsNames(t *testing.T) {
	tbl := mustLoad(t, filepath.Join("testdata", "l7.toml"))
	f := dnsFacts("a", "b", "c", "x.evil.example")
	f.NNames = 99
	if got := dnsUDP.judgeFacts(tbl, f); got.RuleID != "dns-deny" || got.Name != 3 {
		t.Errorf("NNames 99: %+v", got)
	}
	f.NNames = -1
	if got := dnsUDP.judgeFacts(tbl, f); got.RuleID != "dns-ok" {
		t.Errorf("NNames -1: %+v", got)
	}
}

func TestL7String(t *testing.T) {
	for _, tt := range []struct {
		l    L7
		want string
	}{
		{0, "none"}, {L7TLS, "tls"}, {L7HTTP, "http"}, {L7DNS, "dns"},
		{L7TLS | L7DNS, "tls|dns"}, {L7TLS | L7HTTP | L7DNS, "tls|http|dns"}, {L7HTTP | 0x40, "http|L7(0x40)"},
	} {
		if got := tt.l.String(); got != tt.want {
			t.Errorf("L7(%#x).String() = %q, want %q", uint8(tt.l), got, tt.want)
		}
		if b, _ := tt.l.MarshalText(); string(b) != tt.want {
			t.Errorf("L7(%#x).MarshalText() = %q, want %q", uint8(tt.l), b, tt.want)
		}
	}
}

func TestJudgeFactsAllocs(t *testing.T) {
	tbl := mustLoad(t, filepath.Join("testdata", "l7.toml"))
	peer := netip.MustParseAddr("203.0.113.1")
	sni, host, dns := tlsFacts("Www.Paste.EE."), httpFacts("2001:db8:0::1", "/raw/x", "POST"), dnsFacts("a", "b.evil.example")
	bad := httpFacts("2001:db8::zz", "/raw/x", "POST") // netip.ParseAddr would allocate its error
	var sink Match
	if n := testing.AllocsPerRun(1000, func() {
		sink = tbl.Judge(l7App, Egress, ProtoTCP, 443, peer)
		sink = tbl.Judge(l7App6, Egress, ProtoUDP, 53, peer)
		sink = tbl.JudgeFacts(l7App, Egress, ProtoTCP, 443, peer, sni)
		sink = tbl.JudgeFacts(l7App, Egress, ProtoTCP, 443, peer, host)
		sink = tbl.JudgeFacts(l7App, Egress, ProtoTCP, 443, peer, bad)
		sink = tbl.JudgeFacts(l7App, Egress, ProtoUDP, 53, peer, dns)
		sink = tbl.JudgeFacts(l7App, Egress, ProtoTCP, 443, peer, nil)
	}); n != 0 {
		t.Errorf("Judge and JudgeFacts allocate %v times per run, want 0", n)
	}
	_ = sink
}

func TestInspectConfig(t *testing.T) {
	defaults := InspectConfig{MaxPackets: 8, MaxBytes: 16384, Undecided: Drop, MaxWait: time.Second, MaxHeldFlows: 256}
	if got := (InspectConfig{DefaultMaxPackets, DefaultMaxBytes, DefaultUndecided, DefaultMaxWait, DefaultMaxHeldFlows}); got != defaults {
		t.Errorf("Default* constants = %+v, want %+v", got, defaults)
	}
	with := func(f func(*InspectConfig)) InspectConfig {
		in := defaults
		f(&in)
		return in
	}
	tests := []struct {
		src  string
		want InspectConfig
	}{
		{"", defaults},
		{"[inspect]\n", defaults},
		{"[inspect]\nmax_packets = 1", with(func(in *InspectConfig) { in.MaxPackets = 1 })},
		{"[inspect]\nmax_packets = 64\n[engine]\nqueue_len = 16384", with(func(in *InspectConfig) { in.MaxPackets = 64 })},
		{"[inspect]\nmax_bytes = 256", with(func(in *InspectConfig) { in.MaxBytes = 256 })},
		{"[inspect]\nmax_bytes = 65536", with(func(in *InspectConfig) { in.MaxBytes = 65536 })},
		{`inspect.undecided = "allow"`, with(func(in *InspectConfig) { in.Undecided = Allow })},
		{`inspect.undecided = "drop"`, defaults},
		{`inspect.max_wait = "250ms"`, with(func(in *InspectConfig) { in.MaxWait = 250 * time.Millisecond })},
		{`inspect.max_wait = "10ms"`, with(func(in *InspectConfig) { in.MaxWait = 10 * time.Millisecond })},
		{`inspect.max_wait = "1m"`, with(func(in *InspectConfig) { in.MaxWait = time.Minute })},
		{`inspect.max_wait = "1.5s"`, with(func(in *InspectConfig) { in.MaxWait = 1500 * time.Millisecond })},
		{"[inspect]\nmax_held_flows = 1", with(func(in *InspectConfig) { in.MaxHeldFlows = 1 })},
		{"[inspect]\nmax_held_flows = 512", with(func(in *InspectConfig) { in.MaxHeldFlows = 512 })},
		{"[inspect]\nmax_held_flows = 65536\nmax_packets = 16\n[engine]\nqueue_len = 1048576",
			with(func(in *InspectConfig) { in.MaxHeldFlows, in.MaxPackets = 65536, 16 })},
		// Exactly full: held packets may fill the queue.
		{"[inspect]\nmax_held_flows = 128\n[engine]\nqueue_len = 1024", with(func(in *InspectConfig) { in.MaxHeldFlows = 128 })},
		// Without L7 rules nor limits set, queue_len may be small.
		{"[engine]\nqueue_len = 16\n[inspect]\nundecided = \"allow\"", with(func(in *InspectConfig) { in.Undecided = Allow })},
	}
	for _, tt := range tests {
		tbl := mustParse(t, "inspect.toml", []byte(tt.src))
		if diff := cmp.Diff(tt.want, tbl.Inspect); diff != "" {
			t.Errorf("%q: Inspect mismatch (-want +got):\n%s", tt.src, diff)
		}
	}
	tbl := mustLoad(t, filepath.Join("testdata", "l7.toml"))
	want := InspectConfig{MaxPackets: 4, MaxBytes: 8192, Undecided: Allow, MaxWait: 250 * time.Millisecond, MaxHeldFlows: 200}
	if diff := cmp.Diff(want, tbl.Inspect); diff != "" {
		t.Errorf("l7.toml: Inspect mismatch (-want +got):\n%s", diff)
	}
}

// egressRule is okRule with an egress rule; lines 1-7. Cases append the
// lines under test from line 8.
var egressRule = []string{
	`[[container]]`,        // 1
	`name = "web"`,         // 2
	`ips = ["172.17.0.2"]`, // 3
	`[[container.rule]]`,   // 4
	`id = "r"`,             // 5
	`direction = "egress"`,
	`action = "drop"`, // 7
}

func withL7(extra ...string) string {
	return src(append(append([]string{}, egressRule...), extra...)...)
}

// TestL7ParseErrors covers every error of the L7 keys and [inspect], with
// its position.
func TestL7ParseErrors(t *testing.T) {
	const r = "container[0].rule[0]."
	long := strings.Repeat("a", 64)
	tests := []struct {
		name string
		src  string
		pos  string // "LINE:COL" expected after "bad.toml:"
		msg  string // expected substring, key included
	}{
		// Keys.
		{"unknown L7 key", withL7(`tls_sin = ["a.com"]`), "8:1",
			r + `tls_sin: unknown key "tls_sin" in [[container.rule]] (did you mean "tls_sni"?)`},
		{"unknown inspect key", src(`[inspect]`, `max_packet = 2`), "2:1",
			`inspect.max_packet: unknown key "max_packet" in [inspect] (did you mean "max_packets"?)`},
		{"reserved id undecided", src(`[[container]]`, `name = "a"`, `[[container.rule]]`, `id = "undecided"`, `direction = "egress"`, `action = "drop"`),
			"4:1", `container[0].rule[0].id: "undecided" is reserved for flows deep inspection could not settle; choose another id`},

		// Types and emptiness.
		{"empty tls_sni", withL7(`tls_sni = []`), "8:1", r + `tls_sni: is empty: leave the key out`},
		{"empty http_host", withL7(`http_host = []`), "8:1", r + `http_host: is empty: leave the key out`},
		{"empty http_path", withL7(`http_path = []`), "8:1", r + `http_path: is empty: leave the key out`},
		{"empty http_method", withL7(`http_method = []`), "8:1", r + `http_method: is empty: leave the key out`},
		{"empty dns_qname", withL7(`dns_qname = []`), "8:1", r + `dns_qname: is empty: leave the key out`},
		{"string for array", withL7(`tls_sni = "a.com"`), "8:1", r + `tls_sni: must be an array of strings, got a string ("a.com")`},
		{"integer in array", withL7(`http_method = ["GET", 1]`), "8:23", r + `http_method[1]: must be a string, got an integer (1)`},

		// Protocols.
		{"http_host with udp", withL7(`proto = "udp"`, `http_host = ["a.com"]`), "9:1",
			r + `http_host: http_host cannot be used with proto "udp": HTTP/1.x runs over TCP`},
		{"http_path with udp", withL7(`proto = "udp"`, `http_path = ["/"]`), "9:1",
			r + `http_path: http_path cannot be used with proto "udp": HTTP/1.x runs over TCP`},
		{"http_method with udp", withL7(`proto = "udp"`, `http_method = ["GET"]`), "9:1",
			r + `http_method: http_method cannot be used with proto "udp": HTTP/1.x runs over TCP`},
		{"dns_qname with icmp", withL7(`proto = "icmp"`, `dns_qname = ["a.com"]`), "9:1",
			r + `dns_qname: dns_qname cannot be used with proto "icmp"`},
		{"tls_sni with icmp", withL7(`proto = "icmp"`, `tls_sni = ["a.com"]`), "9:1",
			r + `tls_sni: tls_sni cannot be used with proto "icmp"`},

		// Names.
		{"wildcard inside", withL7(`tls_sni = ["a.com", "*foo.com"]`), "8:21",
			r + `tls_sni[1]: "*foo.com": a wildcard must be "*." followed by a name`},
		{"wildcard alone", withL7(`dns_qname = ["*"]`), "8:14", r + `dns_qname[0]: "*": a wildcard must be "*." followed by a name`},
		{"wildcard without a name", withL7(`dns_qname = ["*."]`), "8:14", r + `dns_qname[0]: "*.": a wildcard must be "*." followed by a name`},
		{"wildcard in the middle", withL7(`tls_sni = ["a.*.com"]`), "8:12", r + `tls_sni[0]: "a.*.com": a wildcard must be "*." followed by a name`},
		{"two wildcards", withL7(`tls_sni = ["*.*.com"]`), "8:12", r + `tls_sni[0]: "*.*.com": a wildcard must be "*." followed by a name`},
		{"empty name", withL7(`tls_sni = [""]`), "8:12", r + `tls_sni[0]: an empty string is not a name`},
		{"only a dot", withL7(`dns_qname = ["."]`), "8:14", r + `dns_qname[0]: "." is not a name`},
		{"empty label", withL7(`dns_qname = ["a..com"]`), "8:14", r + `dns_qname[0]: "a..com" has an empty label`},
		{"leading dot", withL7(`tls_sni = [".a.com"]`), "8:12", r + `tls_sni[0]: ".a.com" has an empty label`},
		{"two trailing dots", withL7(`tls_sni = ["a.com.."]`), "8:12", r + `tls_sni[0]: "a.com.." has an empty label`},
		{"label too long", withL7(`tls_sni = ["` + long + `.com"]`), "8:12",
			r + `tls_sni[0]: "` + long + `.com": label "` + long + `" is 64 bytes long; a label has at most 63`},
		{"name too long", withL7(`tls_sni = ["` + strings.Repeat("abc.", 63) + `com"]`), "8:12",
			r + `tls_sni[0]: "` + strings.Repeat("abc.", 63) + `com" is 255 bytes long; a name has at most 253`},
		{"space in name", withL7(`tls_sni = ["a b.com"]`), "8:12",
			r + `tls_sni[0]: "a b.com": ' ' is not allowed in a name (letters, digits, "-", "_" and "." only)`},
		{"unicode name", withL7(`dns_qname = ["bücher.example"]`), "8:14",
			r + `dns_qname[0]: "bücher.example": 'ü' is not allowed in a name (letters, digits, "-", "_" and "." only); write an internationalized name in its "xn--" form`},
		{"address as sni is a name, but not with a colon", withL7(`tls_sni = ["::1"]`), "8:12",
			r + `tls_sni[0]: "::1": ':' is not allowed in a name`},
		{"host with port", withL7(`http_host = ["a.com:8080"]`), "8:14",
			r + `http_host[0]: "a.com:8080": write the host without a port ("a.com")`},
		{"host with brackets", withL7(`http_host = ["[2001:db8::1]"]`), "8:14",
			r + `http_host[0]: "[2001:db8::1]": write an IPv6 address without brackets`},
		{"host address with zone", withL7(`http_host = ["fe80::1%eth0"]`), "8:14",
			r + `http_host[0]: "fe80::1%eth0": zones are not allowed in host addresses`},
		{"host bad IPv6", withL7(`http_host = ["2001:db8::x"]`), "8:14",
			r + `http_host[0]: "2001:db8::x" is neither a name nor an IP address`},
		{"host bad wildcard", withL7(`http_host = ["*"]`), "8:14", r + `http_host[0]: "*": a wildcard must be "*." followed by a name`},

		// Paths and methods.
		{"path without slash", withL7(`http_path = ["raw/"]`), "8:14",
			r + `http_path[0]: "raw/" must start with "/": write the path alone, without scheme or host`},
		{"path as URL", withL7(`http_path = ["https://a.com/raw/"]`), "8:14", r + `http_path[0]: "https://a.com/raw/" must start with "/"`},
		{"path with space", withL7(`http_path = ["/a b"]`), "8:14", r + `http_path[0]: "/a b" must not contain spaces or control characters`},
		{"path with control", withL7(`http_path = ["/a\tb"]`), "8:14", r + `http_path[0]: "/a\tb" must not contain spaces or control characters`},
		{"path with query", withL7(`http_path = ["/a?b=1"]`), "8:14",
			r + `http_path[0]: "/a?b=1": the query is not matched; leave out "?" and what follows`},
		{"path with fragment", withL7(`http_path = ["/a#top"]`), "8:14",
			r + `http_path[0]: "/a#top": a fragment ("#...") is never sent to the server; leave it out`},
		{"empty method", withL7(`http_method = [""]`), "8:16", r + `http_method[0]: an empty string is not a method`},
		{"method too long", withL7(`http_method = ["UPDATEREDIRECTREF"]`), "8:16",
			r + `http_method[0]: "UPDATEREDIRECTREF" is 17 bytes long; a method has at most 16`},
		{"method not a token", withL7(`http_method = ["GET POST"]`), "8:16",
			r + "http_method[0]: \"GET POST\": ' ' is not allowed in a method (an HTTP token: letters, digits and !#$%&'*+-.^_`|~)"},
		{"method with comma", withL7(`http_method = ["GET,POST"]`), "8:16", r + `http_method[0]: "GET,POST": ',' is not allowed in a method`},

		// [inspect].
		{"inspect not a table", src(`inspect = 1`), "1:1", `inspect: must be a table ([inspect]), got an integer (1)`},
		{"max_packets 0", src(`[inspect]`, `max_packets = 0`), "2:1", `inspect.max_packets: 0 is out of range 1..64`},
		{"dotted inspect key", src(`inspect.max_packets = 0`), "1:1", `inspect.max_packets: 0 is out of range 1..64`},
		{"inline inspect table", src(`inspect = { max_bytes = 8, max_packets = 4 }`), "1:13", `inspect.max_bytes: 8 is out of range 256..65536`},
		{"max_packets 65", src(`[inspect]`, `max_packets = 65`), "2:1", `inspect.max_packets: 65 is out of range 1..64`},
		{"max_packets string", src(`[inspect]`, `max_packets = "8"`), "2:1", `inspect.max_packets: must be an integer, got a string ("8")`},
		{"max_bytes 255", src(`[inspect]`, `max_bytes = 255`), "2:1", `inspect.max_bytes: 255 is out of range 256..65536`},
		{"max_bytes 65537", src(`[inspect]`, `max_bytes = 65537`), "2:1", `inspect.max_bytes: 65537 is out of range 256..65536`},
		{"bad undecided", src(`[inspect]`, `undecided = "pass"`), "2:1", `inspect.undecided: "pass" is not an action; use "allow" or "drop"`},
		{"max_wait integer", src(`[inspect]`, `max_wait = 1`), "2:1",
			`inspect.max_wait: must be a duration such as "1s" or "250ms", got an integer (1)`},
		{"max_wait bad", src(`[inspect]`, `max_wait = "1 s"`), "2:1", `inspect.max_wait: "1 s" is not a duration; write "1s" or "250ms"`},
		{"max_wait without unit", src(`[inspect]`, `max_wait = "1"`), "2:1", `inspect.max_wait: "1" is not a duration`},
		{"max_wait too short", src(`[inspect]`, `max_wait = "9ms"`), "2:1", `inspect.max_wait: "9ms" is out of range 10ms..60s`},
		{"max_wait too long", src(`[inspect]`, `max_wait = "61s"`), "2:1", `inspect.max_wait: "61s" is out of range 10ms..60s`},
		{"max_wait negative", src(`[inspect]`, `max_wait = "-1s"`), "2:1", `inspect.max_wait: "-1s" is out of range`},
		{"max_held_flows 0", src(`[inspect]`, `max_held_flows = 0`), "2:1", `inspect.max_held_flows: 0 is out of range 1..65536`},
		{"max_held_flows too many", src(`[inspect]`, `max_held_flows = 65537`), "2:1", `inspect.max_held_flows: 65537 is out of range 1..65536`},

		// Held packets must fit in the kernel queue.
		{"held flows overflow the queue", src(`[engine]`, `queue_len = 1024`, `[inspect]`, `max_held_flows = 200`), "4:1",
			`inspect.max_held_flows: max_held_flows 200 * max_packets 8 = 1600 packets may be held in a kernel queue, more than engine.queue_len 1024; ` +
				`lower max_held_flows to 128 or raise queue_len to 1600`},
		{"both set: reported at max_held_flows", src(`[inspect]`, `max_packets = 32`, `max_held_flows = 512`), "3:1",
			`inspect.max_held_flows: max_held_flows 512 * max_packets 32 = 16384 packets may be held in a kernel queue, more than engine.queue_len 4096; ` +
				`lower max_held_flows to 128 or raise queue_len to 16384`},
		{"queue shorter than max_packets", src(`[engine]`, `queue_len = 4`, `[inspect]`, `max_packets = 8`, `max_held_flows = 1`), "5:1",
			`inspect.max_held_flows: max_held_flows 1 * max_packets 8 = 8 packets may be held in a kernel queue, more than engine.queue_len 4; ` +
				`lower max_held_flows and max_packets or raise queue_len to 8`},
		{"only max_packets set", src(`[inspect]`, `max_packets = 64`), "2:1",
			`inspect.max_packets: max_held_flows 256 * max_packets 64 = 16384 packets may be held in a kernel queue, more than engine.queue_len 4096; ` +
				`lower max_packets to 16 or raise queue_len to 16384`},
		{"defaults with L7 rules and a short queue", src(`[engine]`, `queue_len = 128`, `[[container]]`, `name = "a"`, `[[container.rule]]`, `id = "r"`,
			`direction = "egress"`, `tls_sni = ["a.com"]`, `action = "drop"`), "2:1",
			`engine.queue_len: max_held_flows 256 * max_packets 8 = 2048 packets may be held in a kernel queue, more than engine.queue_len 128 ` +
				`(the [inspect] defaults, used by the rules with L7 fields); raise queue_len to 2048 or set a lower inspect.max_held_flows (at most 16)`},
		{"an invalid limit is not checked", src(`[engine]`, `queue_len = 16`, `[inspect]`, `max_packets = 99`, `max_held_flows = 8`), "4:1",
			`inspect.max_packets: 99 is out of range 1..64`},
		{"an invalid queue_len is not checked", src(`[engine]`, `queue_len = 0`, `[inspect]`, `max_held_flows = 8`), "2:1",
			`engine.queue_len: 0 is out of range 1..1048576`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { wantOneError(t, tt.src, tt.pos, tt.msg) })
	}
}

// TestL7Accepted checks the normalisation of accepted values through what
// WriteTo shows.
func TestL7Accepted(t *testing.T) {
	tbl := mustParse(t, "ok.toml", []byte(withL7(
		`proto = "tcp"`,
		`tls_sni = ["Example.COM.", "*.Example.net", "_acme.x-y.example", "10.0.0.1"]`,
		`http_host = ["::FFFF:192.0.2.1", "2001:DB8:0::1", "*.a.example", "h.example."]`,
		`http_path = ["/", "/a,b", "/%7e"]`,
		`http_method = ["M-SEARCH", "get", "!#$%&'*+-.^_|~"]`,
		`dns_qname = ["a"]`,
	)))
	var buf bytes.Buffer
	if _, err := tbl.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	want := `tls_sni example.com,*.example.net,_acme.x-y.example,10.0.0.1 ` +
		`http_host 192.0.2.1,2001:db8::1,*.a.example,h.example ` +
		`http_path "/","/a,b","/%7e" http_method M-SEARCH,get,!#$%&'*+-.^_|~ dns_qname a` + "\n"
	if got := buf.String(); !strings.HasSuffix(got, want) {
		t.Errorf("WriteTo ends\n%q\nwant\n%q", got[strings.LastIndexByte(got[:len(got)-1], '\n')+1:], want)
	}
	// The UDP and proto "any" forms that are allowed.
	for _, extra := range [][]string{
		{`proto = "udp"`, `dns_qname = ["a.example"]`},
		{`proto = "udp"`, `tls_sni = ["a.example"]`}, // QUIC
		{`proto = "tcp"`, `dns_qname = ["a.example"]`},
		{`proto = "any"`, `dns_qname = ["a.example"]`, `tls_sni = ["a.example"]`},
		{`http_path = ["/"]`},
	} {
		mustParse(t, "ok.toml", []byte(withL7(extra...)))
	}
}

func TestResolveKeepsL7(t *testing.T) {
	base := mustParse(t, "dyn.toml", []byte(src(
		`[[container]]`,
		`name = "app"`, // dynamic: Docker's container "app"
		`  [[container.rule]]`,
		`  id = "no-evil"`,
		`  direction = "egress"`,
		`  proto = "udp"`,
		`  ports = ["53"]`,
		`  dns_qname = ["*.evil.example"]`,
		`  action = "drop"`,
	)))
	app := netip.MustParseAddr("172.18.0.7")
	rt, warns := base.Resolve([]Container{{ID: "7777777777777777", Name: "app", Image: "app:1", Addrs: []netip.Addr{app}}})
	if len(warns) != 0 {
		t.Errorf("warnings: %q", warns)
	}
	peer := netip.MustParseAddr("192.0.2.53")
	if got, want := rt.Judge(app, Egress, ProtoUDP, 53, peer), (Match{Action: Allow, RuleID: RuleIDDefault, Container: "app", Need: L7DNS}); got != want {
		t.Errorf("resolved Judge = %+v, want %+v", got, want)
	}
	got := rt.JudgeFacts(app, Egress, ProtoUDP, 53, peer, dnsFacts("x.evil.example"))
	if want := (Match{Action: Drop, RuleID: "no-evil", Container: "app", Name: 0}); got != want {
		t.Errorf("resolved JudgeFacts = %+v, want %+v", got, want)
	}
	var buf bytes.Buffer
	if _, err := rt.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(buf.String(), " no-evil  egress  udp  ports 53  to any  drop    dns_qname *.evil.example\n") {
		t.Errorf("resolved WriteTo lacks the rule's L7 fields:\n%s", buf.String())
	}
	// Resolving again, from the resolved table, keeps them too.
	rt2, _ := rt.Resolve([]Container{{ID: "8", Name: "app", Addrs: []netip.Addr{app}}})
	if got := rt2.JudgeFacts(app, Egress, ProtoUDP, 53, peer, dnsFacts("x.evil.example")); got.RuleID != "no-evil" {
		t.Errorf("re-resolved JudgeFacts = %+v", got)
	}
}

// TestParseAddr checks the allocation-free address parser against
// netip.ParseAddr.
func TestParseAddr(t *testing.T) {
	for _, s := range parseAddrSeeds {
		checkParseAddr(t, s)
	}
}

var parseAddrSeeds = []string{
	"", "1.2.3.4", "0.0.0.0", "255.255.255.255", "256.1.1.1", "01.2.3.4", "1.2.3", "1.2.3.4.5", "1..3.4", "1.2.3.4.",
	"1234.1.1.1", "::", "::1", "1::", "2001:db8::1", "2001:DB8:0:0:0:0:0:1", "1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7:8:9",
	"1:2:3:4:5:6:7::", "::1:2:3:4:5:6:7", "1:2:3:4:5:6:7:8::", "1::2::3", ":1", "1:", ":::", "12345::", "1:2:3:4:5:6:1.2.3.4",
	"::ffff:1.2.3.4", "::1.2.3.4", "1::1.2.3.4", "1:2:3:4:5:6:7:1.2.3.4", "::ffff:1.2.3", "::ffff:01.2.3.4", "fe80::1%eth0",
	"g::1", "1:2:3:4:5:6:7", "::ffff:1.2.3.4:5", "0000:0000::", "00000::", "a.b.c.d", "1.2.3.4:80",
}

func checkParseAddr(t *testing.T, s string) {
	t.Helper()
	want, err := netip.ParseAddr(s)
	if err == nil && want.Zone() != "" {
		err, want = errZone, netip.Addr{}
	}
	got, ok := parseAddr([]byte(s))
	if ok != (err == nil) || got != want {
		t.Errorf("parseAddr(%q) = %v, %v; netip.ParseAddr: %v, %v", s, got, ok, want, err)
	}
}

var errZone = errors.New("zones are not accepted")

func FuzzParseAddr(f *testing.F) {
	for _, s := range parseAddrSeeds {
		f.Add(s)
	}
	f.Fuzz(checkParseAddr)
}

func BenchmarkJudgeFacts(b *testing.B) {
	tbl := mustLoad(b, filepath.Join("testdata", "l7.toml"))
	peer, resolver := netip.MustParseAddr("203.0.113.1"), netip.MustParseAddr("172.17.0.53")
	type q struct {
		proto uint8
		port  uint16
		peer  netip.Addr
		f     *Facts
	}
	qs := []q{
		{ProtoTCP, 443, peer, tlsFacts("www.example.org")},                 // past two L7 rules to web-out
		{ProtoTCP, 443, peer, tlsFacts("X.Paste.EE.")},                     // wildcard, first rule
		{ProtoTCP, 80, peer, httpFacts("pastebin.com", "/raw/abc", "PUT")}, // every HTTP field
		{ProtoUDP, 53, resolver, dnsFacts("a.example", "b.evil.example")},  // second name
	}
	b.ReportAllocs()
	var sink Match
	i := 0
	for b.Loop() {
		x := &qs[i&3]
		sink = tbl.JudgeFacts(l7App, Egress, x.proto, x.port, x.peer, x.f)
		i++
	}
	_ = sink
}

// BenchmarkJudgeL7 is Judge on a container with rules with L7 fields,
// which judgeL7 walks: it finds Need.
func BenchmarkJudgeL7(b *testing.B) {
	tbl := mustLoad(b, filepath.Join("testdata", "l7.toml"))
	peer, resolver := netip.MustParseAddr("203.0.113.1"), netip.MustParseAddr("172.17.0.53")
	b.ReportAllocs()
	var sink Match
	i := 0
	for b.Loop() {
		if i&1 == 0 {
			sink = tbl.Judge(l7App, Egress, ProtoTCP, 443, peer) // Need tls|http, web-out
		} else {
			sink = tbl.Judge(l7App, Egress, ProtoUDP, 53, resolver) // Need dns, dns-ok
		}
		i++
	}
	_ = sink
}
