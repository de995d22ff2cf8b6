package l7

import (
	"net/netip"
	"testing"

	"golang.org/x/net/dns/dnsmessage"
)

// rr is an answer record for dnsResponse: A or AAAA when addr is set,
// CNAME to target otherwise.
type rr struct {
	owner, target string
	addr          string
	ttl           uint32
}

func dnsResponse(tb testing.TB, id uint16, rcode dnsmessage.RCode, questions []string, answers ...rr) []byte {
	tb.Helper()
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: id, Response: true, RCode: rcode})
	b.EnableCompression()
	must := func(err error) {
		if err != nil {
			tb.Fatal(err)
		}
	}
	must(b.StartQuestions())
	for _, q := range questions {
		must(b.Question(dnsmessage.Question{Name: dnsmessage.MustNewName(q), Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET}))
	}
	must(b.StartAnswers())
	for _, a := range answers {
		h := dnsmessage.ResourceHeader{Name: dnsmessage.MustNewName(a.owner), Class: dnsmessage.ClassINET, TTL: a.ttl}
		switch {
		case a.addr == "":
			must(b.CNAMEResource(h, dnsmessage.CNAMEResource{CNAME: dnsmessage.MustNewName(a.target)}))
		case netip.MustParseAddr(a.addr).Is4():
			must(b.AResource(h, dnsmessage.AResource{A: netip.MustParseAddr(a.addr).As4()}))
		default:
			must(b.AAAAResource(h, dnsmessage.AAAAResource{AAAA: netip.MustParseAddr(a.addr).As16()}))
		}
	}
	msg, err := b.Finish()
	must(err)
	return msg
}

type learned struct {
	addr  string
	ttl   uint32
	owner int8
}

func TestParseDNSResponse(t *testing.T) {
	q := []string{"www.example."}
	for _, c := range []struct {
		name    string
		msg     []byte
		chain   []string
		learned []learned
	}{
		{"one A", dnsResponse(t, 1, 0, q, rr{owner: "www.example.", addr: "192.0.2.1", ttl: 300}),
			[]string{"www.example"}, []learned{{"192.0.2.1", 300, 0}}},
		{"a CNAME chain: the smallest TTL on the way", dnsResponse(t, 2, 0, q,
			rr{owner: "www.example.", target: "cdn.example.", ttl: 60},
			rr{owner: "cdn.example.", target: "edge.cdn.net.", ttl: 600},
			rr{owner: "edge.cdn.net.", addr: "198.51.100.7", ttl: 30},
			rr{owner: "edge.cdn.net.", addr: "198.51.100.8", ttl: 900}),
			[]string{"www.example", "cdn.example", "edge.cdn.net"}, []learned{{"198.51.100.7", 30, 2}, {"198.51.100.8", 60, 2}}},
		{"CNAMEs in any order, owners in any case", dnsResponse(t, 3, 0, q,
			rr{owner: "edge.CDN.net.", addr: "2001:db8::7", ttl: 120},
			rr{owner: "CDN.example.", target: "edge.cdn.net.", ttl: 600},
			rr{owner: "WWW.Example.", target: "cdn.example.", ttl: 600}),
			[]string{"www.example", "cdn.example", "edge.cdn.net"}, []learned{{"2001:db8::7", 120, 2}}},
		{"an address of a name nobody asked for is ignored", dnsResponse(t, 4, 0, q,
			rr{owner: "evil.example.", addr: "203.0.113.66", ttl: 300},
			rr{owner: "www.example.", addr: "192.0.2.1", ttl: 300}),
			[]string{"www.example"}, []learned{{"192.0.2.1", 300, 0}}},
		{"a CNAME of another name does not join the chain", dnsResponse(t, 5, 0, q,
			rr{owner: "other.example.", target: "www.example.", ttl: 300},
			rr{owner: "other.example.", addr: "203.0.113.66", ttl: 300}),
			[]string{"www.example"}, nil},
		{"a CNAME loop ends the chain", dnsResponse(t, 6, 0, q,
			rr{owner: "www.example.", target: "b.example.", ttl: 300},
			rr{owner: "b.example.", target: "www.example.", ttl: 300},
			rr{owner: "b.example.", addr: "192.0.2.9", ttl: 300}),
			[]string{"www.example", "b.example"}, []learned{{"192.0.2.9", 300, 1}}},
		{"NXDOMAIN", dnsResponse(t, 7, dnsmessage.RCodeNameError, q), []string{"www.example"}, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			var r DNSResponse
			if st := ParseDNSResponse(c.msg, &r); st != Done {
				t.Fatalf("ParseDNSResponse: %v", st)
			}
			var chain []string
			for i := range r.NChain {
				chain = append(chain, string(r.ChainName(i)))
			}
			if len(chain) != len(c.chain) {
				t.Fatalf("chain %q, want %q", chain, c.chain)
			}
			for i := range chain {
				if chain[i] != c.chain[i] && !nameEqualFold(&r.Chain[i], ptrName(c.chain[i]+".")) {
					t.Fatalf("chain %q, want %q", chain, c.chain)
				}
			}
			var got []learned
			for i := range r.NAddrs {
				got = append(got, learned{r.Addrs[i].String(), r.TTLs[i], r.Owner[i]})
			}
			if len(got) != len(c.learned) {
				t.Fatalf("learned %v, want %v", got, c.learned)
			}
			for i := range got {
				if got[i] != c.learned[i] {
					t.Fatalf("learned %v, want %v", got, c.learned)
				}
			}
		})
	}
}

func ptrName(s string) *dnsmessage.Name { n := dnsmessage.MustNewName(s); return &n }

func TestParseDNSResponseRejects(t *testing.T) {
	one := dnsResponse(t, 1, 0, []string{"a.example."}, rr{owner: "a.example.", addr: "192.0.2.1", ttl: 1})
	var many []rr
	for i := range MaxDNSRecords + 1 {
		many = append(many, rr{owner: "a.example.", addr: netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}).String(), ttl: 1})
	}
	query := dnsQuery(t, 9, "a.example.")
	for _, c := range []struct {
		name string
		msg  []byte
		want Status
	}{
		{"a query", query, NotMatch},
		{"no question", dnsResponse(t, 1, 0, nil), Malformed},
		{"two questions", dnsResponse(t, 1, 0, []string{"a.example.", "b.example."}), Malformed},
		{"truncated", one[:len(one)-2], Malformed},
		{"more answers than MaxDNSRecords", dnsResponse(t, 1, 0, []string{"a.example."}, many...), Malformed},
		{"empty", nil, Malformed},
	} {
		var r DNSResponse
		if st := ParseDNSResponse(c.msg, &r); st != c.want || r.NAddrs != 0 && st != Done {
			t.Errorf("%s: %v (%d addresses), want %v", c.name, st, r.NAddrs, c.want)
		}
	}
}

func dnsQuery(tb testing.TB, id uint16, name string) []byte {
	tb.Helper()
	b := dnsmessage.NewBuilder(nil, dnsmessage.Header{ID: id})
	if err := b.StartQuestions(); err != nil {
		tb.Fatal(err)
	}
	if err := b.Question(dnsmessage.Question{Name: dnsmessage.MustNewName(name), Type: dnsmessage.TypeA, Class: dnsmessage.ClassINET}); err != nil {
		tb.Fatal(err)
	}
	msg, err := b.Finish()
	if err != nil {
		tb.Fatal(err)
	}
	return msg
}

func TestParseDNSResponseAllocs(t *testing.T) {
	msg := dnsResponse(t, 2, 0, []string{"www.example."},
		rr{owner: "www.example.", target: "cdn.example.", ttl: 60},
		rr{owner: "cdn.example.", addr: "198.51.100.7", ttl: 30},
		rr{owner: "cdn.example.", addr: "2001:db8::1", ttl: 30})
	r := new(DNSResponse)
	if n := testing.AllocsPerRun(100, func() { ParseDNSResponse(msg, r) }); n != 0 {
		t.Errorf("ParseDNSResponse allocates %v times", n)
	}
}

func BenchmarkParseDNSResponse(b *testing.B) {
	msg := dnsResponse(b, 2, 0, []string{"www.example."},
		rr{owner: "www.example.", target: "cdn.example.", ttl: 60},
		rr{owner: "cdn.example.", addr: "198.51.100.7", ttl: 30},
		rr{owner: "cdn.example.", addr: "198.51.100.8", ttl: 30})
	r := new(DNSResponse)
	b.ReportAllocs()
	for b.Loop() {
		ParseDNSResponse(msg, r)
	}
}

func FuzzParseDNSResponse(f *testing.F) {
	f.Add(dnsResponse(f, 2, 0, []string{"www.example."},
		rr{owner: "www.example.", target: "cdn.example.", ttl: 60},
		rr{owner: "cdn.example.", addr: "198.51.100.7", ttl: 30}))
	f.Add(dnsResponse(f, 3, dnsmessage.RCodeNameError, []string{"x.example."}))
	f.Fuzz(func(t *testing.T, b []byte) {
		var r, r2 DNSResponse
		st := ParseDNSResponse(b, &r)
		if st2 := ParseDNSResponse(b, &r2); st2 != st || r2.NAddrs != r.NAddrs || r2.NChain != r.NChain {
			t.Fatalf("not deterministic: %v then %v", st, st2)
		}
		if st != Done {
			if r.NAddrs != 0 || r.NChain != 0 {
				t.Fatalf("%v with %d addresses and %d names", st, r.NAddrs, r.NChain)
			}
			return
		}
		if r.NChain < 1 || r.NChain > MaxDNSChain || r.NAddrs > MaxDNSAddrs {
			t.Fatalf("chain %d, addresses %d", r.NChain, r.NAddrs)
		}
		for i := range r.NAddrs {
			if o := int(r.Owner[i]); o < 0 || o >= r.NChain || r.TTLs[i] > r.ChainTTL[o] || !r.Addrs[i].IsValid() {
				t.Fatalf("address %d: owner %d of %d, ttl %d over its chain's %d", i, o, r.NChain, r.TTLs[i], r.ChainTTL[max(o, 0)])
			}
		}
	})
}
