package rules

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// benchQueries are spread over many containers so that the large-table
// benchmark pays for cache misses as production would.
const benchQueries = 1024

type benchQuery struct {
	container, peer netip.Addr
	dir             Direction
	proto           uint8
	port            uint16
}

func runJudge(b *testing.B, tbl *Table, qs []benchQuery) {
	b.ReportAllocs()
	var sink Match
	i := 0
	for b.Loop() {
		q := &qs[i&(benchQueries-1)]
		sink = tbl.Judge(q.container, q.dir, q.proto, q.port, q.peer)
		i++
	}
	_ = sink
}

func BenchmarkJudge(b *testing.B) {
	tbl := mustLoad(b, filepath.Join("testdata", "judge.toml"))
	shapes := []query{
		{"172.17.0.2", Ingress, ProtoTCP, 8050, "192.0.2.1"},  // rule 2
		{"172.17.0.2", Ingress, ProtoUDP, 9001, "192.0.2.1"},  // rule 5
		{"172.17.0.2", Ingress, ProtoTCP, 22, "192.0.2.1"},    // container default
		{"fd00::2", Egress, ProtoUDP, 53, "fd00::53"},         // v6, rule 3
		{"172.17.0.3", Ingress, ProtoTCP, 5432, "172.17.0.9"}, // rule 2
		{"172.17.0.99", Egress, ProtoTCP, 443, "203.0.113.1"}, // unlisted
		{"172.17.0.2", Ingress, ProtoICMP, 0, "10.1.1.1"},     // icmp rule
		{"172.17.0.2", Ingress, ProtoTCP, 80, "10.66.1.1"},    // rule 1
	}
	qs := make([]benchQuery, benchQueries)
	for i := range qs {
		s := shapes[i%len(shapes)]
		qs[i] = benchQuery{netip.MustParseAddr(s.container), netip.MustParseAddr(s.peer), s.dir, s.proto, s.port}
	}
	runJudge(b, tbl, qs)
}

const genRules = 10

// genTables are built once per test binary: generating and parsing 100,000
// rules takes long enough to distort -benchtime ramp-up otherwise.
var (
	genTable10  = sync.OnceValues(func() (*Table, error) { return parse("gen10.toml", []byte(genConfig(10)), testCPUs) })
	genTable10k = sync.OnceValues(func() (*Table, error) { return parse("gen10k.toml", []byte(genConfig(10000)), testCPUs) })
)

// genAddr is container i's address; even containers are IPv4, odd IPv6.
func genAddr(i int) netip.Addr {
	if i%2 == 0 {
		return netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
	}
	return netip.MustParseAddr(fmt.Sprintf("fd00::%x", i))
}

// genConfig generates n containers with 10 rules each, alternating ingress
// and egress, every rule restricted by two port ranges and two prefixes.
func genConfig(n int) string {
	var b strings.Builder
	b.WriteString("[defaults]\negress = \"drop\"\n")
	for i := range n {
		fmt.Fprintf(&b, "[[container]]\nname = \"c%d\"\nips = [\"%s\"]\ningress = \"drop\"\n", i, genAddr(i))
		for k := range genRules {
			dir, peerKey := "ingress", "from"
			if k%2 == 1 {
				dir, peerKey = "egress", "to"
			}
			fmt.Fprintf(&b, "[[container.rule]]\nid = \"c%d-r%d\"\ndirection = %q\nproto = \"tcp\"\n"+
				"ports = [\"%d\", \"%d-%d\"]\n%s = [\"192.168.%d.0/24\", \"fd%02x::/16\"]\naction = \"allow\"\n",
				i, k, dir, 1000+k, 2000+100*k, 2050+100*k, peerKey, k, k)
		}
	}
	return b.String()
}

// genQueries spreads queries over n random containers of a generated
// table: half match the last ingress rule (all five ingress rules are
// scanned), a quarter match none, a quarter are unlisted addresses.
func genQueries(tb testing.TB, tbl *Table, n int) []benchQuery {
	rng := rand.New(rand.NewPCG(1, 2))
	qs := make([]benchQuery, benchQueries)
	for i := range qs {
		c := rng.IntN(n)
		q := benchQuery{container: genAddr(c), dir: Ingress, proto: ProtoTCP}
		switch i % 4 {
		case 0, 1:
			q.port, q.peer = 2000+100*8+25, netip.AddrFrom4([4]byte{192, 168, 8, 7})
			if c%2 == 1 {
				q.peer = netip.MustParseAddr("fd08::7")
			}
		case 2:
			q.port, q.peer = 22, netip.AddrFrom4([4]byte{192, 168, 0, 1})
		case 3:
			q.container = netip.AddrFrom4([4]byte{172, 31, byte(i >> 8), byte(i)})
			q.dir, q.port, q.peer = Egress, 443, netip.AddrFrom4([4]byte{192, 0, 2, 1})
		}
		qs[i] = q
	}
	// Guard the premise: the hits really hit the last ingress rule.
	m := tbl.Judge(qs[0].container, qs[0].dir, qs[0].proto, qs[0].port, qs[0].peer)
	if !strings.HasSuffix(m.RuleID, "-r8") {
		tb.Fatalf("query %+v matched %+v, want rule r8", qs[0], m)
	}
	return qs
}

// BenchmarkJudge10 is BenchmarkJudge10k's baseline: the same rules and
// queries with only 10 containers, so the ratio isolates table size.
func BenchmarkJudge10(b *testing.B) {
	tbl, err := genTable10()
	if err != nil {
		b.Fatal(err)
	}
	runJudge(b, tbl, genQueries(b, tbl, 10))
}

// BenchmarkJudge10k queries a table of 10,000 containers × 10 rules.
// "spread" draws the containers from all 10,000, so the ~750 touched per
// round of queries overflow the CPU caches: the cost of cache misses on
// the address index, rule list and operands. "hot" keeps to 8 containers,
// as on a host where a few containers carry most new flows.
func BenchmarkJudge10k(b *testing.B) {
	tbl, err := genTable10k()
	if err != nil {
		b.Fatal(err)
	}
	b.Run("spread", func(b *testing.B) { runJudge(b, tbl, genQueries(b, tbl, 10000)) })
	b.Run("hot", func(b *testing.B) { runJudge(b, tbl, genQueries(b, tbl, 8)) })
}

func BenchmarkListed(b *testing.B) {
	tbl := mustLoad(b, filepath.Join("testdata", "judge.toml"))
	ips := []netip.Addr{netip.MustParseAddr("172.17.0.2"), netip.MustParseAddr("fd00::2"), netip.MustParseAddr("172.17.0.99")}
	b.ReportAllocs()
	i := 0
	var sink bool
	for b.Loop() {
		sink = tbl.Listed(ips[i%len(ips)])
		i++
	}
	_ = sink
}

func BenchmarkParse10k(b *testing.B) {
	data := []byte(genConfig(10000))
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := parse("gen10k.toml", data, testCPUs); err != nil {
			b.Fatal(err)
		}
	}
}
