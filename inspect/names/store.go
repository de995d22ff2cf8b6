// Package names keeps the DNS names containers learned: for each
// (container, remote address) the names the container resolved that
// address from, each until its answer's TTL (clamped) and a grace period
// have passed. The engines write what they learn from the DNS answers
// they see, and read it when they judge the first packet of a flow by a
// rule with to_names; the daemon shows it in status and metrics.
//
// Reads are lock-free and allocate nothing: the bindings live in shards,
// each a map that is replaced, never changed, when a binding is added or
// removed (copy on write), and a binding's names are an immutable set
// swapped whole. Writers, rare next to reads, take one mutex. So an engine
// sees at once what another engine learned: the kernel hashes a DNS flow
// and the connection that follows it to different queues.
package names

import (
	"cmp"
	"encoding/binary"
	"math"
	"math/bits"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// shards is the number of maps the bindings are spread over: a new
// binding copies one map of about 1/shards of them.
const shards = 256

// newest is how many of a container's latest bindings Snapshot shows.
const newest = 5

// Store holds the learned bindings. It is safe for concurrent use.
type Store struct {
	base     time.Time // the store's clock starts here
	seed     uint64
	maxNames int
	shards   [shards]shard

	mu      sync.Mutex
	owners  map[netip.Addr]*owner // per container, under mu
	lastRun int64                 // store clock of the last Sweep, under mu

	stats Stats
}

// Stats are a Store's counters, of (name, address) pairs.
type Stats struct {
	Learned   atomic.Uint64 // pairs added
	Refreshed atomic.Uint64 // pairs whose expiry a later answer moved
	Expired   atomic.Uint64 // pairs removed after their expiry
	Evicted   atomic.Uint64 // pairs removed for max_names before their expiry
	Pairs     atomic.Int64  // gauge: pairs held
}

type shard struct {
	m atomic.Pointer[map[key]*binding]
}

// key is a binding's (container, address), both unmapped, as 16 bytes
// each: hashing plain bytes is faster than hashing netip.Addr.
type key struct{ c, a [16]byte }

func keyOf(c, a netip.Addr) key { return key{c.Unmap().As16(), a.Unmap().As16()} }

// binding is one (container, address) and its names.
type binding struct {
	set atomic.Pointer[nameSet]
	// Under Store.mu.
	learned int64 // store clock of its first answer
}

// nameSet is a binding's names, sorted by expiry, latest first, so that
// the names still bound at any time are a prefix. After the set is
// published its expiries change only all at once to one time no sooner
// than exp[0], stored in index order, which keeps the order.
type nameSet struct {
	names []string
	exp   []atomic.Int64 // store clock
}

// owner is one container's bindings, under Store.mu.
type owner struct {
	bindings map[netip.Addr]*binding
	pairs    int
	recent   [newest]Binding // a ring of the latest pairs learned
	nrecent  int
}

// New returns a Store keeping at most maxNames pairs per container.
func New(maxNames int) *Store {
	s := &Store{base: time.Now(), maxNames: max(maxNames, 1), owners: map[netip.Addr]*owner{}}
	s.seed = uint64(s.base.UnixNano()) | 1
	empty := map[key]*binding{}
	for i := range s.shards {
		s.shards[i].m.Store(&empty)
	}
	return s
}

// Stats returns the store's counters.
func (s *Store) Stats() *Stats { return &s.stats }

// MaxNames is the bound on pairs per container the store was made with.
func (s *Store) MaxNames() int { return s.maxNames }

func (s *Store) clock(now time.Time) int64 { return int64(now.Sub(s.base)) }

func (s *Store) shardOf(k key) *shard {
	h := mix(s.seed, binary.LittleEndian.Uint64(k.c[8:])^binary.LittleEndian.Uint64(k.a[:8]))
	h = mix(h, binary.LittleEndian.Uint64(k.a[8:]))
	return &s.shards[h%shards]
}

// mix is one round of a multiply-xorshift hash, as the flow table's.
func mix(h, v uint64) uint64 {
	hi, lo := bits.Mul64(h^v, 0x9E3779B97F4A7C15)
	return hi ^ lo
}

// Names returns the names container resolved peer from that are still
// bound at now, latest expiry first, or nil. Addresses are unmapped. The
// slice is the store's: do not change it. Names does not allocate and
// takes no lock.
func (s *Store) Names(container, peer netip.Addr, now time.Time) []string {
	return s.List(container, peer, now).Strings()
}

// List is Names as a comparable value, for records that are compared as
// wholes. The zero List has no names.
type List struct {
	set *nameSet
	n   int
}

// Strings returns the names of l, latest expiry first; nil for none. The
// slice is the store's: do not change it.
func (l List) Strings() []string {
	if l.n == 0 {
		return nil
	}
	return l.set.names[:l.n:l.n]
}

// List is Names as a List. It does not allocate and takes no lock.
func (s *Store) List(container, peer netip.Addr, now time.Time) List {
	k := keyOf(container, peer)
	b := (*s.shardOf(k).m.Load())[k]
	if b == nil {
		return List{}
	}
	set := b.set.Load()
	t := s.clock(now)
	n := 0
	for n < len(set.exp) && set.exp[n].Load() > t {
		n++
	}
	return List{set, n}
}

// Answer is one address of a DNS answer, with the names that lead to it:
// the question's name and the names of the CNAME chain up to the
// address's owner.
type Answer struct {
	Addr  netip.Addr
	TTL   time.Duration // the record's TTL, the smallest along its chain
	Names []string      // ASCII lower case, no trailing dot; need not outlive Learn
}

// Limits clamp what an answer is trusted for.
type Limits struct {
	MinTTL, MaxTTL, Grace time.Duration
}

// Learn binds a's address to its names for container at now, until
// TTL clamped to [MinTTL, MaxTTL] plus Grace. Learning what a container
// already holds moves its expiry and allocates nothing when the address
// has those names only, the common case.
func (s *Store) Learn(container netip.Addr, a *Answer, l Limits, now time.Time) {
	t := s.clock(now)
	ttl := min(max(a.TTL, l.MinTTL), max(l.MaxTTL, l.MinTTL))
	exp := t + int64(ttl) + int64(l.Grace)
	if exp <= t || len(a.Names) == 0 {
		return
	}
	c, addr := container.Unmap(), a.Addr.Unmap()
	k := keyOf(c, addr)
	s.mu.Lock()
	defer s.mu.Unlock()
	o := s.owners[c]
	if o == nil {
		o = &owner{bindings: map[netip.Addr]*binding{}}
		s.owners[c] = o
	}
	b := o.bindings[addr]
	var old *nameSet
	if b != nil {
		old = b.set.Load()
		if sameNames(old.names, a.Names) && old.exp[0].Load() <= exp {
			// The same names again (the same chain), expiring no sooner
			// than any of them: every name gets the new expiry, stored
			// from the first so that a reader always sees them in order.
			for i := range old.exp {
				old.exp[i].Store(exp)
			}
			s.stats.Refreshed.Add(uint64(len(old.exp)))
			return
		}
	}
	// Merge: each name keeps its latest expiry; expired names go.
	type pair struct {
		name string
		exp  int64
	}
	var ps []pair
	if old != nil {
		for i, n := range old.names {
			if e := old.exp[i].Load(); e > t {
				ps = append(ps, pair{n, e})
			}
		}
	}
	added := 0
	for _, n := range a.Names {
		i := slices.IndexFunc(ps, func(p pair) bool { return p.name == n })
		switch {
		case i < 0:
			ps = append(ps, pair{string([]byte(n)), exp}) // a copy: n may be the caller's buffer
			added++
			s.remember(o, Binding{Name: ps[len(ps)-1].name, Addr: addr, Expires: s.base.Add(time.Duration(exp))})
		case ps[i].exp < exp:
			ps[i].exp = exp
			s.stats.Refreshed.Add(1)
		}
	}
	if old != nil {
		expired := len(old.names) - (len(ps) - added)
		o.pairs -= expired
		s.stats.Expired.Add(uint64(expired))
		s.stats.Pairs.Add(-int64(expired))
	}
	slices.SortStableFunc(ps, func(x, y pair) int { return cmp.Compare(y.exp, x.exp) })
	set := &nameSet{names: make([]string, len(ps)), exp: make([]atomic.Int64, len(ps))}
	for i, p := range ps {
		set.names[i] = p.name
		set.exp[i].Store(p.exp)
	}
	if b == nil {
		b = &binding{learned: t}
		b.set.Store(set)
		o.bindings[addr] = b
		s.put(k, b)
	} else {
		b.set.Store(set)
	}
	o.pairs += added
	s.stats.Learned.Add(uint64(added))
	s.stats.Pairs.Add(int64(added))
	if o.pairs > s.maxNames {
		s.evict(c, o, t)
	}
}

// sameNames reports whether a and b hold the same names, each once.
func sameNames(a, b []string) bool {
	if len(a) != len(b) {
		return false
	}
	for _, n := range b {
		if !slices.Contains(a, n) {
			return false
		}
	}
	return true
}

// remember adds a pair to o's ring of the latest.
func (s *Store) remember(o *owner, b Binding) {
	o.recent[o.nrecent%newest] = b
	o.nrecent++
}

// put publishes b under k: a copy of k's shard with it added.
func (s *Store) put(k key, b *binding) {
	sh := s.shardOf(k)
	old := *sh.m.Load()
	m := make(map[key]*binding, len(old)+1)
	for kk, v := range old {
		m[kk] = v
	}
	m[k] = b
	sh.m.Store(&m)
}

// drop removes the bindings ks from their shards, each shard copied once.
func (s *Store) drop(ks []key) {
	byShard := map[*shard][]key{}
	for _, k := range ks {
		sh := s.shardOf(k)
		byShard[sh] = append(byShard[sh], k)
	}
	for sh, ks := range byShard {
		old := *sh.m.Load()
		m := make(map[key]*binding, len(old))
		for kk, v := range old {
			m[kk] = v
		}
		for _, k := range ks {
			delete(m, k)
		}
		sh.m.Store(&m)
	}
}

// evict brings container c's pairs back under maxNames: first the expired
// ones go, then, if that is not enough, the eighth of the limit expiring
// first (so that a container resolving many names pays for a sort once
// in many answers, not on each). Under s.mu.
func (s *Store) evict(c netip.Addr, o *owner, t int64) {
	s.prune(c, o, t, math.MinInt64)
	if o.pairs <= s.maxNames {
		return
	}
	var exps []int64
	for _, b := range o.bindings {
		set := b.set.Load()
		for i := range set.exp {
			exps = append(exps, set.exp[i].Load())
		}
	}
	slices.Sort(exps)
	target := s.maxNames - s.maxNames/8
	cut := exps[len(exps)-target-1] // pairs expiring at or before cut go
	before := o.pairs
	s.prune(c, o, t, cut)
	s.stats.Evicted.Add(uint64(before - o.pairs))
}

// prune removes c's pairs expired at t, counted as expired, and those
// expiring at or before cut, counted by the caller. Under s.mu.
func (s *Store) prune(c netip.Addr, o *owner, t, cut int64) {
	var gone []key
	for a, b := range o.bindings {
		set := b.set.Load()
		keep := 0
		for keep < len(set.exp) {
			e := set.exp[keep].Load()
			if e <= t || e <= cut {
				break
			}
			keep++
		}
		if keep == len(set.exp) {
			continue
		}
		expired := 0
		for i := keep; i < len(set.exp); i++ {
			if set.exp[i].Load() <= t {
				expired++
			}
		}
		s.stats.Expired.Add(uint64(expired))
		removed := len(set.exp) - keep
		o.pairs -= removed
		s.stats.Pairs.Add(-int64(removed))
		if keep == 0 {
			delete(o.bindings, a)
			gone = append(gone, keyOf(c, a))
			continue
		}
		ns := &nameSet{names: set.names[:keep:keep], exp: make([]atomic.Int64, keep)}
		for i := range keep {
			ns.exp[i].Store(set.exp[i].Load())
		}
		b.set.Store(ns)
	}
	if len(gone) > 0 {
		s.drop(gone)
	}
	if len(o.bindings) == 0 {
		delete(s.owners, c)
	}
}

// sweepEvery is how often Sweep does its work.
const sweepEvery = 5 * time.Second

// Sweep removes the pairs expired at now, at most every few seconds, so
// that the memory of containers that stopped resolving is given back. It
// never waits for the lock: a sweep skipped is done at the next call.
func (s *Store) Sweep(now time.Time) {
	if !s.mu.TryLock() {
		return
	}
	defer s.mu.Unlock()
	t := s.clock(now)
	if t-s.lastRun < int64(sweepEvery) {
		return
	}
	s.lastRun = t
	for c, o := range s.owners {
		s.prune(c, o, t, math.MinInt64)
	}
}

// Binding is one learned pair, as Snapshot shows it.
type Binding struct {
	Name    string
	Addr    netip.Addr
	Expires time.Time // after the grace period
}

// Container is one container's learned pairs, as Snapshot shows them.
type Container struct {
	Addr   netip.Addr
	Pairs  int       // (name, address) pairs held, expired ones not yet swept included
	Newest []Binding // the latest learned, newest first, still bound at the snapshot
}

// Snapshot returns every container's pairs at now, by address.
func (s *Store) Snapshot(now time.Time) []Container {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Container, 0, len(s.owners))
	for c, o := range s.owners {
		ct := Container{Addr: c, Pairs: o.pairs}
		for i := range min(o.nrecent, newest) {
			b := o.recent[(o.nrecent-1-i)%newest]
			if b.Expires.After(now) && slices.Contains(s.Names(c, b.Addr, now), b.Name) {
				ct.Newest = append(ct.Newest, b)
			}
		}
		out = append(out, ct)
	}
	slices.SortFunc(out, func(x, y Container) int { return x.Addr.Compare(y.Addr) })
	return out
}
