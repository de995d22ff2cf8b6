package l7

import (
	"bytes"
	"testing"

	"golang.org/x/net/dns/dnsmessage"
)

type dnsQ struct {
	name string
	typ  dnsmessage.Type
}

// dnsBuild builds a message with dnsmessage.Builder.
func dnsBuild(t testing.TB, h dnsmessage.Header, qs []dnsQ, edns bool) []byte {
	t.Helper()
	b := dnsmessage.NewBuilder(make([]byte, 0, 512), h)
	b.EnableCompression()
	if err := b.StartQuestions(); err != nil {
		t.Fatal(err)
	}
	for _, q := range qs {
		if err := b.Question(dnsmessage.Question{Name: dnsmessage.MustNewName(q.name), Type: q.typ, Class: dnsmessage.ClassINET}); err != nil {
			t.Fatal(err)
		}
	}
	if h.Response {
		if err := b.StartAnswers(); err != nil {
			t.Fatal(err)
		}
		if err := b.AResource(dnsmessage.ResourceHeader{Name: dnsmessage.MustNewName(qs[0].name), Class: dnsmessage.ClassINET, TTL: 60},
			dnsmessage.AResource{A: [4]byte{192, 0, 2, 1}}); err != nil {
			t.Fatal(err)
		}
	}
	if edns {
		if err := b.StartAdditionals(); err != nil {
			t.Fatal(err)
		}
		var rh dnsmessage.ResourceHeader
		if err := rh.SetEDNS0(1232, dnsmessage.RCodeSuccess, false); err != nil {
			t.Fatal(err)
		}
		if err := b.OPTResource(rh, dnsmessage.OPTResource{}); err != nil {
			t.Fatal(err)
		}
	}
	msg, err := b.Finish()
	if err != nil {
		t.Fatal(err)
	}
	return msg
}

func dnsTCPFrame(m []byte) []byte {
	return append([]byte{byte(len(m) >> 8), byte(len(m))}, m...)
}

type dnsCase struct {
	name  string
	msg   []byte
	st    Status // UDP status; TCP the same for the whole frame
	id    uint16
	names []string
	types []dnsmessage.Type
}

func dnsCases(t testing.TB) []dnsCase {
	q := dnsmessage.Header{ID: 0xbeef, RecursionDesired: true}
	a := dnsBuild(t, q, []dnsQ{{"www.Example.COM.", dnsmessage.TypeA}}, true)
	many := make([]dnsQ, 5)
	for i := range many {
		many[i] = dnsQ{"a.example.", dnsmessage.TypeA}
	}
	// A hand-made query whose question name is a compression pointer to itself.
	loop := []byte{0, 1, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 12, 0, 1, 0, 1}
	// A label containing a dot: "a.b" as one label, then "evil".
	dotLabel := []byte{0, 2, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 3, 'a', '.', 'b', 4, 'e', 'v', 'i', 'l', 0, 0, 1, 0, 1}
	// A forward compression pointer into a later label: legal, and followed.
	ptr := []byte{0, 3, 0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0xc0, 18, 0, 1, 0, 1, 2, 'h', 'i', 0}
	return []dnsCase{
		{"A with EDNS", a, Done, 0xbeef, []string{"www.Example.COM"}, []dnsmessage.Type{dnsmessage.TypeA}},
		{"AAAA", dnsBuild(t, dnsmessage.Header{ID: 7}, []dnsQ{{"ipv6.example.net.", dnsmessage.TypeAAAA}}, false),
			Done, 7, []string{"ipv6.example.net"}, []dnsmessage.Type{dnsmessage.TypeAAAA}},
		{"multiple questions", dnsBuild(t, dnsmessage.Header{ID: 9}, []dnsQ{
			{"one.example.", dnsmessage.TypeA}, {"two.evil.example.", dnsmessage.TypeAAAA}, {"sub.one.example.", dnsmessage.TypeTXT}}, false),
			Done, 9, []string{"one.example", "two.evil.example", "sub.one.example"},
			[]dnsmessage.Type{dnsmessage.TypeA, dnsmessage.TypeAAAA, dnsmessage.TypeTXT}},
		{"root", dnsBuild(t, dnsmessage.Header{ID: 1}, []dnsQ{{".", dnsmessage.TypeNS}}, false),
			Done, 1, []string{""}, []dnsmessage.Type{dnsmessage.TypeNS}},
		{"no question", dnsBuild(t, dnsmessage.Header{ID: 2}, nil, true), Done, 2, nil, nil},
		{"forward pointer", ptr, Done, 3, []string{"hi"}, []dnsmessage.Type{dnsmessage.TypeA}},
		{"response", dnsBuild(t, dnsmessage.Header{ID: 3, Response: true}, []dnsQ{{"example.com.", dnsmessage.TypeA}}, false),
			NotMatch, 0, nil, nil},
		{"opcode UPDATE", dnsBuild(t, dnsmessage.Header{ID: 4, OpCode: 5}, []dnsQ{{"example.com.", dnsmessage.TypeSOA}}, false),
			Malformed, 0, nil, nil},
		{"too many questions", dnsBuild(t, dnsmessage.Header{ID: 5}, many, false), Malformed, 0, nil, nil},
		{"truncated question", a[:20], Malformed, 0, nil, nil},
		{"truncated OPT", a[:len(a)-3], Malformed, 0, nil, nil},
		{"short header", a[:11], Malformed, 0, nil, nil},
		{"empty", nil, Malformed, 0, nil, nil},
		{"pointer loop", loop, Malformed, 0, nil, nil},
		{"label with dot", dotLabel, Malformed, 0, nil, nil},
	}
}

func checkDNS(t *testing.T, q *DNSQuery, st Status, c dnsCase) {
	t.Helper()
	if st != c.st {
		t.Fatalf("status = %d, want %d", st, c.st)
	}
	if st != Done {
		if q.Count != 0 || q.ID != 0 {
			t.Errorf("status %d with ID %d Count %d", st, q.ID, q.Count)
		}
		return
	}
	if q.ID != c.id || q.Count != len(c.names) {
		t.Fatalf("ID %#x Count %d, want %#x %d", q.ID, q.Count, c.id, len(c.names))
	}
	for i, n := range c.names {
		if got := string(q.Name(i)); got != n || q.Types[i] != c.types[i] {
			t.Errorf("question %d = %q %v, want %q %v", i, got, q.Types[i], n, c.types[i])
		}
	}
}

func TestParseDNSQuery(t *testing.T) {
	for _, c := range dnsCases(t) {
		t.Run(c.name, func(t *testing.T) {
			var q DNSQuery
			checkDNS(t, &q, ParseDNSQuery(c.msg, &q), c)
		})
	}
}

func TestParseDNSOverTCP(t *testing.T) {
	for _, c := range dnsCases(t) {
		if len(c.msg) < 12 {
			continue // covered by TestParseDNSOverTCPShortLength
		}
		t.Run(c.name, func(t *testing.T) {
			frame := dnsTCPFrame(c.msg)
			var q DNSQuery
			checkDNS(t, &q, ParseDNSOverTCP(frame, &q), c)
			// With the next message of the stream behind it: same result.
			more := append(bytes.Clone(frame), frame...)
			checkDNS(t, &q, ParseDNSOverTCP(more, &q), c)
			// Every proper prefix: NeedMore, except that a response or another
			// opcode is reported as soon as the header is in.
			for n := 0; n < len(frame); n++ {
				st := ParseDNSOverTCP(bytes.Clone(frame[:n]), &q)
				want := NeedMore
				if n >= 14 && (c.name == "response" || c.name == "opcode UPDATE") {
					want = c.st
				}
				if st != want {
					t.Fatalf("prefix %d/%d: status %d, want %d", n, len(frame), st, want)
				}
			}
		})
	}
}

func TestParseDNSOverTCPShortLength(t *testing.T) {
	var q DNSQuery
	for _, in := range [][]byte{{0, 0}, {0, 11}, {0, 11, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}} {
		if st := ParseDNSOverTCP(in, &q); st != Malformed {
			t.Errorf("%x: status %d, want Malformed", in, st)
		}
	}
	for _, in := range [][]byte{nil, {0}, {0, 40}, {0, 40, 1, 2}} {
		if st := ParseDNSOverTCP(in, &q); st != NeedMore {
			t.Errorf("%x: status %d, want NeedMore", in, st)
		}
	}
}

// TestParseDNSQueryAllocs measures whether dnsmessage.Parser allocates for
// simple queries; ParseDNSQuery itself adds nothing.
func TestParseDNSQueryAllocs(t *testing.T) {
	cs := dnsCases(t)
	var q DNSQuery
	for _, c := range cs[:3] {
		frame := dnsTCPFrame(c.msg)
		a := testing.AllocsPerRun(1000, func() {
			ParseDNSQuery(c.msg, &q)
			_ = q.Name(0)
		})
		b := testing.AllocsPerRun(1000, func() { ParseDNSOverTCP(frame, &q) })
		t.Logf("%s: %v allocs (UDP), %v (TCP)", c.name, a, b)
		if a != 0 || b != 0 {
			t.Errorf("%s: %v/%v allocs per run, want 0", c.name, a, b)
		}
	}
	// Error paths wrap errors in dnsmessage and may allocate; only report.
	for _, c := range cs {
		if c.st == Malformed {
			a := testing.AllocsPerRun(100, func() { ParseDNSQuery(c.msg, &q) })
			t.Logf("%s (Malformed): %v allocs", c.name, a)
		}
	}
}

func BenchmarkParseDNSQuery(b *testing.B) {
	a := dnsBuild(b, dnsmessage.Header{ID: 1, RecursionDesired: true}, []dnsQ{{"www.example.com.", dnsmessage.TypeA}}, true)
	b.Run("UDP-A-EDNS", func(b *testing.B) {
		var q DNSQuery
		b.ReportAllocs()
		b.SetBytes(int64(len(a)))
		for b.Loop() {
			ParseDNSQuery(a, &q)
		}
	})
	frame := dnsTCPFrame(a)
	b.Run("TCP-A-EDNS", func(b *testing.B) {
		var q DNSQuery
		b.ReportAllocs()
		b.SetBytes(int64(len(frame)))
		for b.Loop() {
			ParseDNSOverTCP(frame, &q)
		}
	})
}

func dnsFuzzCheck(t *testing.T, st Status, q *DNSQuery) {
	if st > Malformed {
		t.Fatalf("bad status %d", st)
	}
	if st != Done {
		if q.Count != 0 {
			t.Fatalf("status %d with Count %d", st, q.Count)
		}
		return
	}
	if q.Count < 0 || q.Count > MaxDNSQuestions {
		t.Fatalf("Count %d", q.Count)
	}
	for i := 0; i < q.Count; i++ {
		n := q.Name(i)
		if len(n) > 254 || bytes.Contains(n, []byte("..")) || bytes.HasPrefix(n, []byte(".")) {
			t.Fatalf("name %d %q", i, n)
		}
	}
}

func FuzzParseDNSQuery(f *testing.F) {
	for _, c := range dnsCases(f) {
		f.Add(c.msg)
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		var q DNSQuery
		dnsFuzzCheck(t, ParseDNSQuery(in, &q), &q)
	})
}

func FuzzParseDNSOverTCP(f *testing.F) {
	for _, c := range dnsCases(f) {
		f.Add(dnsTCPFrame(c.msg))
	}
	f.Fuzz(func(t *testing.T, in []byte) {
		var q DNSQuery
		st := ParseDNSOverTCP(in, &q)
		dnsFuzzCheck(t, st, &q)
		// The TCP result agrees with the UDP parser on the framed message.
		if len(in) >= 2 {
			n := int(in[0])<<8 | int(in[1])
			if n >= 12 && len(in)-2 >= n {
				var u DNSQuery
				if su := ParseDNSQuery(in[2:2+n], &u); su != st || u != q {
					t.Fatalf("TCP %d vs UDP %d", st, su)
				}
			}
		}
	})
}
