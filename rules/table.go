package rules

import (
	"encoding/binary"
	"net/netip"
	"time"
)

// RuleIDDefault is the Match.RuleID reported when no rule matched and a
// default verdict applied. It is reserved: no rule may use it as its id.
const RuleIDDefault = "default"

// RuleIDUndecided is reserved for the engine to report a flow that deep
// inspection could not settle within [inspect]'s limits, judged by
// InspectConfig.Undecided. No rule may use it as its id; the table itself
// never returns it.
const RuleIDUndecided = "undecided"

// RuleIDDockerUnreachable is the Match.RuleID of a flow of an unlisted
// address judged while Docker could not be asked, under docker.unreachable
// = "drop" (see Table.Unreachable). It is reserved: no rule may use it.
const RuleIDDockerUnreachable = "docker-unreachable"

// Table is a compiled, immutable rule table. Build it with Parse or Load,
// and from that the tables with Docker's containers with Resolve; the zero
// value matches nothing and has no defaults. All methods are safe for
// concurrent use because nothing is written after Parse or Resolve returns.
type Table struct {
	Source  string // file it was loaded from
	Engine  EngineConfig
	Log     LogConfig
	Metrics MetricsConfig
	Status  StatusConfig
	Docker  DockerConfig
	// Generation numbers the file's loads in a running daemon: the caller
	// sets it on a reload, and Resolve keeps it. Engines judge flows again
	// when it changes (see EngineConfig.RejudgeOnReload).
	Generation uint64
	// Inspect is the [inspect] section, with its defaults when the file
	// has none.
	Inspect InspectConfig
	// DNS is the [dns] section, with its defaults when the file has none.
	DNS DNSConfig

	defaults    [3]Action // [defaults], indexed by Direction
	autoWorkers bool      // workers = 0 was resolved to the CPU count

	// The hot path reads only the fields below, laid out so that a lookup
	// in a table of 100,000 rules touches few cache lines: the address
	// index holds each container's hot data in the slot itself; every rule
	// of the table lives in one flat array, grouped by container and
	// direction; and every rule's port ranges and prefixes live in another,
	// in the same order. A slice per rule would cost a cache miss per rule.
	byAddr   addrIndex
	rules    []rule
	ids      []string // parallel to rules, read only on a match; kept out of rule to keep scans short
	operands []operand
	l7       []l7Rule        // the L7 fields of the rules having some; nil when none has
	l7of     []uint32        // parallel to rules when l7 is not nil: index into l7 of a rule's fields
	source   []containerSpec // as validated, for WriteTo, Resolve and Unresolved

	// Off the hot path: what Resolve needs and produced. A parsed table has
	// base == nil and resolved == false.
	hot      []container // per source entry: its hot data, for Resolve to index
	base     *Table      // the parsed table a resolved one came from
	resolved bool        // made by Resolve
	// Made by Unreachable: Docker could not be asked since then, and
	// unreachableDrop when unlisted addresses are dropped meanwhile.
	unreachableSince time.Time
	unreachableDrop  bool
	matches          [][]ResolvedContainer // per source entry: the containers a dynamic entry got
	metaIdx          map[netip.Addr]int32  // address → index into metas
	metas            []ContainerMeta       // every container Resolve was given, by name
}

// container is the hot-path view of a [[container]].
type container struct {
	name  string
	rules [2]span   // per Direction-1: this container's rules, file order
	def   [2]Action // per Direction-1: the effective default
	l7    bool      // some of its rules, in either direction, have L7 fields
}

// rule is the hot-path view of a [[container.rule]]: 24 bytes. Its
// operands are, from off: nPorts port ranges, n4 IPv4 prefixes, n6 IPv6
// prefixes. A rule with L7 fields has its fields in Table.l7, at index
// Table.l7of[i] (i the rule's own index), read only once its L4 key has
// matched.
type rule struct {
	protos protoSet
	// action is 0, no valid Action, for a rule with L7 fields, whose
	// action is in Table.l7: only judgeL7 walks such rules.
	action  Action
	log     bool
	anyPeer bool // no from/to: unlike n4 = n6 = 0, matches every peer
	// bounds spans all port ranges. Most rules have one range, which bounds
	// then is, so operands are only read for multi-range rules.
	bounds         portRange
	off            uint32
	nPorts, n4, n6 uint32
}

// span is a range [off, off+n) of Table.rules.
type span struct{ off, n uint32 }

// portRange is an inclusive port range.
type portRange struct{ lo, hi uint16 }

// operand is one port range or prefix of a rule, in a single type so that
// one rule's operands sit side by side in one array:
//
//	port range:  a = lo, b = hi
//	IPv4 prefix: a = address, b = mask (32-bit values)
//	IPv6 prefix: a, b = address words, c, d = mask words (big-endian)
type operand struct{ a, b, c, d uint64 }

// Match is the outcome of a lookup.
type Match struct {
	Action    Action
	RuleID    string // RuleIDDefault ("default") when no rule matched
	Container string // "" when the address is not a listed container
	Log       bool   // rule has log = true
	// Need is non-zero when the verdict depends on L7 facts Judge was not
	// given: some rule with L7 fields matched the flow's L4 key before the
	// rule (or default) that Action and RuleID come from. Action/RuleID/Log
	// are then what applies if none of those L7 rules matches.
	Need L7
	// Name is, for a match by dns_qname, the index into Facts.Names of the
	// question name that matched; -1 otherwise. (Only set by JudgeFacts:
	// Judge leaves it 0, which there means nothing.)
	Name int8
}

// Judge returns the verdict for a flow seen from one container's side.
//
// container is the container's address; dir is Ingress if the flow was
// initiated towards the container; proto is the IP protocol number; port is
// the container's port for Ingress and the remote port for Egress (0 for
// ICMP); peer is the other endpoint. The first matching rule of the container
// (file order) wins, then the container's default for that direction, then
// [defaults]. For an unlisted address the result is [defaults] with RuleID
// "default" and Container "". IPv4-mapped IPv6 addresses are treated as IPv4.
//
// Rules with L7 fields (tls_sni, http_*, dns_qname) need facts Judge is not
// given. When Judge meets, in file order, a rule whose L4 key matches and
// which has L7 fields that can apply to proto (TCP: any; UDP: dns_qname
// only), it adds that rule's protocols to Match.Need and goes on; the first
// matching rule without L7 fields, or the default, then gives Action,
// RuleID and Log. So Need == 0 means the verdict is final; otherwise
// JudgeFacts settles it once deep inspection has learnt the facts.
//
// A dir other than Ingress or Egress is a caller bug; Judge then answers Drop
// with RuleID "default" rather than panicking on the packet path.
//
// Rules with to_names match only through JudgeLearned: Judge sees no
// learned names, so they never match.
//
// Judge does not allocate.
func (t *Table) Judge(container netip.Addr, dir Direction, proto uint8, port uint16, peer netip.Addr) Match {
	return t.judge(container, dir, proto, port, peer, nil)
}

// Learned tells which DNS names a container resolved a remote address
// from: what rules with to_names match. The engine implements it over the
// answers it learned.
type Learned interface {
	// Names returns the names, ASCII lower case without a trailing dot,
	// bound now to peer for container, both unmapped; nil if none. It is
	// called on the packet path: it must not allocate or block, and the
	// table keeps no reference to what it returns.
	Names(container, peer netip.Addr) []string
}

// JudgeLearned is Judge with the names the container learned through
// DNS, which rules with to_names match (l nil: none). It does not
// allocate, and asks l only when a rule with to_names is reached.
func (t *Table) JudgeLearned(l Learned, container netip.Addr, dir Direction, proto uint8, port uint16, peer netip.Addr) Match {
	return t.judge(container, dir, proto, port, peer, l)
}

// JudgeFacts is Judge for a flow whose L7 facts are known: the same walk,
// but a rule with L7 fields is matched against f (see Facts) instead of
// being added to Match.Need. The first matching rule wins, so Need is 0
// in the result, and Name is set as Match describes. A nil f is a flow of
// which nothing was learnt: rules with L7 fields match nothing.
//
// JudgeFacts does not allocate.
func (t *Table) JudgeFacts(container netip.Addr, dir Direction, proto uint8, port uint16, peer netip.Addr, f *Facts) Match {
	return t.JudgeFactsLearned(nil, container, dir, proto, port, peer, f)
}

// JudgeFactsLearned is JudgeFacts with the names the container learned
// through DNS, as JudgeLearned has them.
func (t *Table) JudgeFactsLearned(l Learned, container netip.Addr, dir Direction, proto uint8, port uint16, peer netip.Addr, f *Facts) Match {
	if f == nil {
		f = &noFacts
	}
	if dir == Ingress || dir == Egress {
		if c := t.byAddr.get(container); c != nil && c.l7 {
			return t.judgeL7(c, container, dir, proto, port, peer, f, l)
		}
	}
	m := t.judge(container, dir, proto, port, peer, nil) // no rule has L7 fields or to_names
	m.Name = -1
	return m
}

// noFacts stands for JudgeFacts' nil Facts; it is never written.
var noFacts Facts

// judge is Judge. Its walk is Judge's as it was before rules had L7 fields,
// and as fast: the rules of a container that has some are walked by
// judgeL7 instead. (Testing for them in this loop, at the rule that
// matched, cost Judge 8-10% of its time on tables without any: the call it
// needs kept more values live across the loop. A test per container and
// direction cost 2-3%; this one, per container, costs next to nothing.)
func (t *Table) judge(container netip.Addr, dir Direction, proto uint8, port uint16, peer netip.Addr, l Learned) Match {
	if dir != Ingress && dir != Egress {
		return Match{Action: Drop, RuleID: RuleIDDefault}
	}
	c := t.byAddr.get(container)
	if c == nil {
		if t.unreachableDrop {
			return Match{Action: Drop, RuleID: RuleIDDockerUnreachable}
		}
		return Match{Action: t.defaults[dir], RuleID: RuleIDDefault}
	}
	if c.l7 {
		return t.judgeL7(c, container, dir, proto, port, peer, nil, l)
	}
	class := protoClass(proto)

	// Split the peer once rather than per prefix.
	peer = peer.Unmap()
	var p4 uint64
	var p6hi, p6lo uint64
	is4, is6 := peer.Is4(), peer.Is6()
	if is4 {
		b := peer.As4()
		p4 = uint64(binary.BigEndian.Uint32(b[:]))
	} else if is6 {
		b := peer.As16()
		p6hi, p6lo = binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])
	}

	s := c.rules[dir-1]
	rules := t.rules[s.off : s.off+s.n]
	for i := range rules {
		r := &rules[i]
		if r.protos&class == 0 {
			continue
		}
		// Rules with ports only ever match TCP or UDP (see parser.rule), so
		// the port is meaningful here.
		if r.nPorts != 0 {
			if port < r.bounds.lo || port > r.bounds.hi {
				continue
			}
			if r.nPorts > 1 && !portsContain(t.operands[r.off:r.off+r.nPorts], port) {
				continue
			}
		}
		if !r.anyPeer {
			off := r.off + r.nPorts
			switch {
			case is4:
				if !nets4Contain(t.operands[off:off+r.n4], p4) {
					continue
				}
			case is6:
				off += r.n4
				if !nets6Contain(t.operands[off:off+r.n6], p6hi, p6lo) {
					continue
				}
			default: // invalid peer: only "any peer" rules can match it
				continue
			}
		}
		return Match{Action: r.action, RuleID: t.ids[s.off+uint32(i)], Container: c.name, Log: r.log}
	}
	return Match{Action: c.def[dir-1], RuleID: RuleIDDefault, Container: c.name}
}

// judgeL7 is the walk of Judge (f == nil) and JudgeFacts for a container
// with rules with L7 fields or to_names in direction dir: a rule whose L4
// key matches and which has L7 fields is added to Need (Judge) or matched
// against f; one with to_names matches only if l binds peer to one of its
// names. Its L4 tests are judge's, written out again rather than shared:
// judge must stay as it is.
func (t *Table) judgeL7(c *container, caddr netip.Addr, dir Direction, proto uint8, port uint16, peer netip.Addr, f *Facts, l Learned) Match {
	class := protoClass(proto)
	peer = peer.Unmap()
	var learned []string
	asked := false
	var p4 uint64
	var p6hi, p6lo uint64
	is4, is6 := peer.Is4(), peer.Is6()
	if is4 {
		b := peer.As4()
		p4 = uint64(binary.BigEndian.Uint32(b[:]))
	} else if is6 {
		b := peer.As16()
		p6hi, p6lo = binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])
	}

	var need L7
	name := int8(-1) // Match.Name when no dns_qname matched
	if f == nil {
		name = 0 // Judge leaves it 0
	}
	s := c.rules[dir-1]
	for i := s.off; i < s.off+s.n; i++ {
		r := &t.rules[i]
		if r.protos&class == 0 {
			continue
		}
		if r.nPorts != 0 {
			if port < r.bounds.lo || port > r.bounds.hi {
				continue
			}
			if r.nPorts > 1 && !portsContain(t.operands[r.off:r.off+r.nPorts], port) {
				continue
			}
		}
		if !r.anyPeer {
			off := r.off + r.nPorts
			switch {
			case is4:
				if !nets4Contain(t.operands[off:off+r.n4], p4) {
					continue
				}
			case is6:
				off += r.n4
				if !nets6Contain(t.operands[off:off+r.n6], p6hi, p6lo) {
					continue
				}
			default:
				continue
			}
		}
		action := r.action
		if action == 0 {
			// A rule with L7 fields: its L4 key only ever matches TCP and
			// UDP (see parser.rule), and over UDP only dns_qname applies.
			l7 := &t.l7[t.l7of[i]]
			if l7.names != nil {
				if !asked && l != nil {
					learned, asked = l.Names(caddr.Unmap(), peer), true
				}
				if !learnedMatch(l7.names, learned) {
					continue
				}
				if l7.protos == 0 {
					return Match{Action: l7.action, RuleID: t.ids[i], Container: c.name, Log: r.log, Need: need, Name: name}
				}
			}
			if f == nil {
				need |= l7.applicable(class)
				continue
			}
			n, ok := l7.match(class, f)
			if !ok {
				continue
			}
			action, name = l7.action, n
		}
		return Match{Action: action, RuleID: t.ids[i], Container: c.name, Log: r.log, Need: need, Name: name}
	}
	return Match{Action: c.def[dir-1], RuleID: RuleIDDefault, Container: c.name, Need: need, Name: name}
}

// portsContain reports whether port lies in one of the sorted, disjoint
// ranges. Lists are short, so a linear scan that stops early beats a binary
// search.
func portsContain(ranges []operand, port uint16) bool {
	p := uint64(port)
	for _, r := range ranges {
		if p < r.a {
			return false
		}
		if p <= r.b {
			return true
		}
	}
	return false
}

func nets4Contain(nets []operand, ip uint64) bool {
	for _, n := range nets {
		if ip&n.b == n.a {
			return true
		}
	}
	return false
}

func nets6Contain(nets []operand, hi, lo uint64) bool {
	for _, n := range nets {
		if hi&n.c == n.a && lo&n.d == n.b {
			return true
		}
	}
	return false
}

// Listed reports whether ip belongs to a [[container]]. It does not allocate.
func (t *Table) Listed(ip netip.Addr) bool {
	return t.byAddr.get(ip) != nil
}
