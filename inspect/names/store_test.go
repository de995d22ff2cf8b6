package names

import (
	"fmt"
	"net/netip"
	"slices"
	"sync"
	"testing"
	"time"
)

var (
	c1 = netip.MustParseAddr("172.17.0.5")
	c2 = netip.MustParseAddr("172.17.0.6")
	a1 = netip.MustParseAddr("140.82.121.4")
	a6 = netip.MustParseAddr("2001:db8::1")

	limits = Limits{MinTTL: 5 * time.Second, MaxTTL: time.Hour, Grace: 30 * time.Second}
)

func ans(a netip.Addr, ttl time.Duration, names ...string) *Answer {
	return &Answer{Addr: a, TTL: ttl, Names: names}
}

func TestLearnAndExpire(t *testing.T) {
	s := New(100)
	t0 := time.Now()
	s.Learn(c1, ans(a1, 60*time.Second, "github.com"), limits, t0)
	for _, tt := range []struct {
		at   time.Duration
		c, a netip.Addr
		want []string
	}{
		{0, c1, a1, []string{"github.com"}},
		{89 * time.Second, c1, a1, []string{"github.com"}}, // TTL 60 s + grace 30 s
		{90 * time.Second, c1, a1, nil},
		{0, c2, a1, nil},                                                            // another container
		{0, c1, netip.MustParseAddr("::ffff:140.82.121.4"), []string{"github.com"}}, // mapped
	} {
		if got := s.Names(tt.c, tt.a, t0.Add(tt.at)); !slices.Equal(got, tt.want) {
			t.Errorf("Names(%v, %v) at +%v = %q, want %q", tt.c, tt.a, tt.at, got, tt.want)
		}
	}
}

func TestTTLClamp(t *testing.T) {
	s := New(100)
	t0 := time.Now()
	l := Limits{MinTTL: 10 * time.Second, MaxTTL: time.Minute, Grace: 5 * time.Second}
	s.Learn(c1, ans(a1, 0, "short.example"), l, t0)
	s.Learn(c1, ans(a6, 24*time.Hour, "long.example"), l, t0)
	check := func(a netip.Addr, at time.Duration, bound bool) {
		t.Helper()
		if got := s.Names(c1, a, t0.Add(at)) != nil; got != bound {
			t.Errorf("%v at +%v: bound %v, want %v", a, at, got, bound)
		}
	}
	check(a1, 14*time.Second, true) // TTL 0 raised to min_ttl 10 s, + grace 5 s
	check(a1, 15*time.Second, false)
	check(a6, 64*time.Second, true) // a day cut to max_ttl 1 min, + grace 5 s
	check(a6, 65*time.Second, false)

	// No grace, no min_ttl: a TTL of 0 binds nothing.
	s.Learn(c2, ans(a1, 0, "zero.example"), Limits{MaxTTL: time.Minute}, t0)
	if got := s.Names(c2, a1, t0); got != nil {
		t.Errorf("a TTL 0 answer without min_ttl or grace bound %q", got)
	}
}

// TestNamesPerAddress: an address resolved from several names is bound to
// each until its own expiry; a refresh moves only its name's.
func TestNamesPerAddress(t *testing.T) {
	s := New(100)
	t0 := time.Now()
	s.Learn(c1, ans(a1, 10*time.Second, "a.example", "cdn.example.net"), Limits{MaxTTL: time.Hour}, t0)
	s.Learn(c1, ans(a1, 100*time.Second, "b.example"), Limits{MaxTTL: time.Hour}, t0.Add(time.Second))
	if got, want := s.Names(c1, a1, t0.Add(2*time.Second)), []string{"b.example", "a.example", "cdn.example.net"}; !slices.Equal(got, want) {
		t.Errorf("names = %q, want %q (latest expiry first)", got, want)
	}
	if got, want := s.Names(c1, a1, t0.Add(20*time.Second)), []string{"b.example"}; !slices.Equal(got, want) {
		t.Errorf("after a.example's TTL: names = %q, want %q", got, want)
	}
	// a.example answered again: it is back, with its new expiry.
	s.Learn(c1, ans(a1, 300*time.Second, "a.example"), Limits{MaxTTL: time.Hour}, t0.Add(30*time.Second))
	if got, want := s.Names(c1, a1, t0.Add(200*time.Second)), []string{"a.example"}; !slices.Equal(got, want) {
		t.Errorf("after a refresh: names = %q, want %q", got, want)
	}
	st := s.Stats()
	if st.Learned.Load() != 4 || st.Expired.Load() != 2 || st.Pairs.Load() != 2 {
		t.Errorf("learned %d expired %d pairs %d, want 4, 2, 2", st.Learned.Load(), st.Expired.Load(), st.Pairs.Load())
	}
}

func TestRefreshDoesNotAllocate(t *testing.T) {
	s := New(100)
	t0 := time.Now()
	a := ans(a1, time.Minute, "github.com")
	s.Learn(c1, a, limits, t0)
	n := testing.AllocsPerRun(100, func() { s.Learn(c1, a, limits, t0.Add(time.Second)) })
	if n != 0 {
		t.Errorf("learning a known pair again allocates %.0f times, want 0", n)
	}
	if s.Stats().Refreshed.Load() == 0 {
		t.Error("no refresh counted")
	}
	if n := testing.AllocsPerRun(100, func() {
		if s.Names(c1, a1, t0) == nil {
			t.Fatal("not bound")
		}
	}); n != 0 {
		t.Errorf("Names allocates %.0f times, want 0", n)
	}
}

func TestLearnCopiesNames(t *testing.T) {
	s := New(100)
	buf := []byte("github.com")
	name := string(buf) // as the engine passes a name of its buffer
	s.Learn(c1, &Answer{Addr: a1, TTL: time.Minute, Names: []string{name}}, limits, time.Now())
	copy(buf, "XXXXXXXXXX")
	if got := s.Names(c1, a1, time.Now()); !slices.Equal(got, []string{"github.com"}) {
		t.Errorf("names = %q after the caller's buffer changed", got)
	}
}

func TestEviction(t *testing.T) {
	const max = 64
	s := New(max)
	t0 := time.Now()
	// Pairs with rising TTLs: the first ones expire first, so they go.
	for i := range 100 {
		a := netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)})
		s.Learn(c1, ans(a, time.Duration(100+i)*time.Second, fmt.Sprintf("n%d.example", i)), limits, t0)
	}
	st := s.Stats()
	if p := st.Pairs.Load(); p > max || p < max-max/8 {
		t.Errorf("%d pairs held, want between %d and %d", p, max-max/8, max)
	}
	if st.Evicted.Load() != 100-uint64(st.Pairs.Load()) {
		t.Errorf("evicted %d, held %d of 100", st.Evicted.Load(), st.Pairs.Load())
	}
	if s.Names(c1, netip.AddrFrom4([4]byte{10, 0, 0, 99}), t0) == nil {
		t.Error("the pair expiring last was evicted")
	}
	if s.Names(c1, netip.AddrFrom4([4]byte{10, 0, 0, 0}), t0) != nil {
		t.Error("the pair expiring first was kept")
	}
	// Another container is not touched by c1's limit.
	s.Learn(c2, ans(a1, time.Minute, "github.com"), limits, t0)
	if s.Names(c2, a1, t0) == nil {
		t.Error("c2's pair missing")
	}
	// Expired pairs make room before live ones are evicted.
	s2 := New(2)
	s2.Learn(c1, ans(a1, 0, "old.example"), Limits{MinTTL: time.Second}, t0)
	s2.Learn(c1, ans(a6, time.Minute, "live.example"), limits, t0)
	s2.Learn(c1, ans(netip.MustParseAddr("192.0.2.1"), time.Minute, "new.example"), limits, t0.Add(2*time.Second))
	if s2.Stats().Evicted.Load() != 0 || s2.Stats().Expired.Load() != 1 || s2.Names(c1, a6, t0.Add(2*time.Second)) == nil {
		t.Errorf("evicted %d expired %d: want the expired pair gone, not the live one",
			s2.Stats().Evicted.Load(), s2.Stats().Expired.Load())
	}
}

func TestSweepAndSnapshot(t *testing.T) {
	s := New(100)
	t0 := time.Now()
	s.Learn(c1, ans(a1, time.Minute, "github.com"), limits, t0)
	s.Learn(c1, ans(a6, time.Minute, "github.com"), limits, t0.Add(time.Millisecond))
	s.Learn(c2, ans(a1, 0, "short.example"), Limits{MinTTL: time.Second}, t0)

	snap := s.Snapshot(t0.Add(500 * time.Millisecond))
	if len(snap) != 2 || snap[0].Addr != c1 || snap[0].Pairs != 2 || len(snap[0].Newest) != 2 || snap[0].Newest[0].Addr != a6 {
		t.Fatalf("snapshot = %+v, want c1 with 2 pairs, newest a6 first, and c2", snap)
	}
	if want := t0.Add(time.Millisecond + 90*time.Second); !snap[0].Newest[0].Expires.Equal(want) {
		t.Errorf("expires %v, want %v", snap[0].Newest[0].Expires, want)
	}
	s.Sweep(t0.Add(10 * time.Second))
	snap = s.Snapshot(t0.Add(10 * time.Second))
	if len(snap) != 1 || snap[0].Addr != c1 {
		t.Errorf("after the sweep: %+v, want only c1", snap)
	}
	if s.Stats().Expired.Load() != 1 || s.Stats().Pairs.Load() != 2 {
		t.Errorf("expired %d, pairs %d, want 1, 2", s.Stats().Expired.Load(), s.Stats().Pairs.Load())
	}
	// Within sweepEvery of the last sweep, nothing is done.
	s.Sweep(t0.Add(11 * time.Second))
	s.Sweep(t0.Add(100 * time.Second))
	if len(s.Snapshot(t0.Add(100*time.Second))) != 0 || s.Stats().Pairs.Load() != 0 {
		t.Error("the second sweep after expiry left pairs")
	}
}

// TestConcurrent runs readers against a writer; with -race it checks the
// lock-free reads.
func TestConcurrent(t *testing.T) {
	s := New(1000)
	t0 := time.Now()
	var wg sync.WaitGroup
	stop := make(chan struct{})
	for range 2 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				for i := range 50 {
					names := s.Names(c1, netip.AddrFrom4([4]byte{10, 0, 0, byte(i)}), t0)
					if len(names) > 0 && names[0] == "" {
						t.Error("empty name")
					}
				}
			}
		})
	}
	for i := range 2000 {
		a := netip.AddrFrom4([4]byte{10, 0, 0, byte(i % 50)})
		s.Learn(c1, ans(a, time.Duration(i%7)*time.Second, fmt.Sprintf("n%d.example", i%13)), limits, t0)
		if i%100 == 0 {
			s.Sweep(t0.Add(time.Duration(i) * time.Second))
		}
	}
	close(stop)
	wg.Wait()
}

// BenchmarkNames10k is the first-packet lookup with 10,000 bindings.
func BenchmarkNames10k(b *testing.B) {
	s := New(10000)
	t0 := time.Now()
	for i := range 10000 {
		a := netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)})
		s.Learn(c1, ans(a, time.Hour, fmt.Sprintf("n%d.example", i)), limits, t0)
	}
	hit := netip.AddrFrom4([4]byte{10, 1, 7, 7})
	b.ReportAllocs()
	for b.Loop() {
		if s.Names(c1, hit, t0) == nil {
			b.Fatal("not bound")
		}
	}
}
