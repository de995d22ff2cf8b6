package inspect

import (
	"hash/maphash"
	"net/netip"
	"time"
	"unsafe"

	"github.com/nfqguard/nfqguard/inspect/l7"
	"github.com/nfqguard/nfqguard/inspect/names"
	"github.com/nfqguard/nfqguard/rules"
)

// Learning names from DNS answers (rules' to_names). A container's DNS
// flow (UDP or TCP to port 53) is kept off the fast path while [dns] learn
// is on, so that its answers reach the engine. Each query the container
// sends is remembered by its flow, message id and question; an answer is
// learned only if it answers such a query, which it then consumes. So a
// container cannot bind a name to an address by sending itself answers,
// nor can another container or host, unless it is the resolver asked.

// DNS answer outcomes, the index of Stats.DNSAnswers.
const (
	DNSAnswerAccepted    = iota // answers to a query seen: their addresses are learned
	DNSAnswerUnsolicited        // answers to no query seen (id, flow and question)
	DNSAnswerMalformed          // answers that could not be read (over TCP: split across segments)
	DNSAnswerOutcomes
)

// Bounds of the queries remembered per engine until their answer.
const (
	maxExpected  = 4096
	expectFor    = int64(15e9) // nanoseconds: longer than a stub resolver waits, retries included
	expectSweeps = int64(1e9)  // how often remembered queries are swept, at most
)

// expectKey is a query waiting for its answer: its flow, its message id
// and a hash of its question (name in lower case, type).
type expectKey struct {
	flow  flowKey
	id    uint16
	qhash uint64
}

// learner is an Engine's part in learning names.
type learner struct {
	store     *names.Store
	w         *work               // for the time of a lookup
	expect    map[expectKey]int64 // → engine clock deadline
	nextSweep int64
	seed      maphash.Seed
	resp      l7.DNSResponse
	query     l7.DNSQuery
	lower     [l7.MaxDNSChain][255]byte // the chain's names in lower case
	names     [l7.MaxDNSChain]string    // views of lower
	answer    names.Answer
}

func newLearner(s *names.Store, w *work) *learner {
	return &learner{store: s, w: w, expect: make(map[expectKey]int64, maxExpected), seed: maphash.MakeSeed()}
}

// Names is rules.Learned over the store, at the time of the packet being
// judged.
func (l *learner) Names(container, peer netip.Addr) []string {
	return l.store.Names(container, peer, l.w.now)
}

// learns reports whether flow tu is a DNS flow of a container whose
// answers are learned.
func (e *Engine) learns(t *rules.Table, tu *tuple) bool {
	return e.learn != nil && t.DNS.Learn && tu.server.Port() == 53 &&
		(tu.proto == rules.ProtoUDP || tu.proto == rules.ProtoTCP) &&
		(t.Listed(tu.client.Addr()) || e.bridges.IsBridge(tu.in))
}

// learnPacket reads a packet of an allowed flow that learns: a query from
// its initiator is remembered, an answer from its responder learned.
func (e *Engine) learnPacket(w *work) {
	msg := w.payload()
	if w.p.Proto == rules.ProtoTCP {
		// One message per segment: the common case for a stub resolver.
		// A message split across segments is not read.
		if len(msg) == 0 {
			return
		}
		n := -1 // the message's length, from its prefix
		if len(msg) >= 2 {
			n = int(msg[0])<<8 | int(msg[1])
		}
		if n < 0 || len(msg) < 2+n {
			if !w.fromInit() {
				e.stats.DNSAnswers[DNSAnswerMalformed].Add(1)
			}
			return
		}
		msg = msg[2 : 2+n]
	}
	if w.fromInit() {
		if l7.ParseDNSQuery(msg, &e.learn.query) == l7.Done {
			e.expectQuery(&w.key, w.clock, &e.learn.query)
		}
		return
	}
	e.learnAnswer(w, msg)
}

// expectQuery remembers query q, sent at clock by the initiator of the
// flow of key fk. Queries of more or fewer than one question get no
// answer worth learning: resolvers answer only single-question queries.
func (e *Engine) expectQuery(fk *flowKey, clock int64, q *l7.DNSQuery) {
	l := e.learn
	if q.Count != 1 {
		return
	}
	if clock >= l.nextSweep && len(l.expect) >= maxExpected/2 {
		l.nextSweep = clock + expectSweeps
		for k, deadline := range l.expect {
			if deadline <= clock {
				delete(l.expect, k)
			}
		}
	}
	k := expectKey{flow: *fk, id: q.ID, qhash: l.qhash(q.Name(0), uint16(q.Types[0]))}
	if _, ok := l.expect[k]; !ok && len(l.expect) >= maxExpected {
		e.stats.DNSUntracked.Add(1)
		return
	}
	l.expect[k] = clock + expectFor
}

// learnAnswer learns answer msg, sent to the initiator of w's flow, if it
// answers a query remembered.
func (e *Engine) learnAnswer(w *work, msg []byte) {
	l := e.learn
	r := &l.resp
	switch l7.ParseDNSResponse(msg, r) {
	case l7.Done:
	case l7.NotMatch:
		return // a query from the server's side: nothing to learn
	default:
		e.stats.DNSAnswers[DNSAnswerMalformed].Add(1)
		return
	}
	k := expectKey{flow: w.key, id: r.ID, qhash: l.qhash(r.ChainName(0), uint16(r.QType))}
	deadline, ok := l.expect[k]
	if !ok || deadline <= w.clock {
		e.stats.DNSAnswers[DNSAnswerUnsolicited].Add(1)
		return
	}
	delete(l.expect, k)
	for i := range r.NChain {
		l.names[i] = lowerName(r.ChainName(i), &l.lower[i])
	}
	e.stats.DNSAnswers[DNSAnswerAccepted].Add(1)
	d := &w.t.DNS
	lim := names.Limits{MinTTL: d.MinTTL, MaxTTL: d.MaxTTL, Grace: d.Grace}
	container := w.p.Dst // the answer goes to the container that asked
	a := &l.answer
	for i := range r.NAddrs {
		a.Addr = r.Addrs[i]
		a.TTL = secondsDuration(r.TTLs[i])
		a.Names = l.names[:int(r.Owner[i])+1]
		l.store.Learn(container, a, lim, w.now)
	}
}

// qhash hashes a question: its name, in any case, and its type.
func (l *learner) qhash(name []byte, typ uint16) uint64 {
	var buf [257]byte
	n := lowerInto(name, (*[255]byte)(buf[:255]))
	buf[n], buf[n+1] = byte(typ>>8), byte(typ)
	return maphash.Bytes(l.seed, buf[:n+2])
}

// lowerName returns name in ASCII lower case, as a view of buf (names of
// more than 255 bytes, which DNS does not have, are cut).
func lowerName(name []byte, buf *[255]byte) string {
	n := lowerInto(name, buf)
	if n == 0 {
		return ""
	}
	return unsafe.String(&buf[0], n)
}

// lowerInto copies name into buf in ASCII lower case and returns its
// length.
func lowerInto(name []byte, buf *[255]byte) int {
	n := copy(buf[:], name)
	for i := range n {
		if c := buf[i]; 'A' <= c && c <= 'Z' {
			buf[i] = c + 'a' - 'A'
		}
	}
	return n
}

// secondsDuration is a TTL in seconds as a Duration.
func secondsDuration(s uint32) time.Duration { return time.Duration(s) * time.Second }
