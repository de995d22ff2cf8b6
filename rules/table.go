package rules

import (
	"encoding/binary"
	"net/netip"
)

// EngineConfig is the [engine] section with defaults applied.
type EngineConfig struct {
	Queue      uint16 // first NFQUEUE number
	Workers    int    // resolved: never 0; queues are Queue..Queue+Workers-1
	FailOpen   bool   // use --queue-bypass and the kernel's fail-open flag
	Mark       uint32 // packet-mark bit meaning "already judged"
	BypassMark uint32 // connmark bit meaning "flow decided, keep it in the kernel"
	FastPath   bool   // false: every packet of every flow is judged in userspace
	Malformed  Action // verdict for packets that cannot be decoded
	MaxFlows   int    // flow-table slots per worker
	QueueLen   uint32 // kernel queue length per queue
}

// LogConfig is the [log] section with defaults applied.
type LogConfig struct {
	// Blocked is "stdout", "stderr" or a file path; it is not opened here.
	Blocked string
}

// RuleIDDefault is the Match.RuleID reported when no rule matched and a
// default verdict applied. It is reserved: no rule may use it as its id.
const RuleIDDefault = "default"

// Table is a compiled, immutable rule table. Build it with Parse or Load,
// and from that the tables with Docker's containers with Resolve; the zero
// value matches nothing and has no defaults. All methods are safe for
// concurrent use because nothing is written after Parse or Resolve returns.
type Table struct {
	Source string // file it was loaded from
	Engine EngineConfig
	Log    LogConfig
	Docker DockerConfig

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
	source   []containerSpec // as validated, for WriteTo, Resolve and Unresolved

	// Off the hot path: what Resolve needs and produced. A parsed table has
	// base == nil and resolved == false.
	hot      []container           // per source entry: its hot data, for Resolve to index
	base     *Table                // the parsed table a resolved one came from
	resolved bool                  // made by Resolve
	matches  [][]ResolvedContainer // per source entry: the containers a dynamic entry got
	metaIdx  map[netip.Addr]int32  // address → index into metas
	metas    []ContainerMeta       // every container Resolve was given, by name
}

// container is the hot-path view of a [[container]].
type container struct {
	name  string
	rules [2]span   // per Direction-1: this container's rules, file order
	def   [2]Action // per Direction-1: the effective default
}

// rule is the hot-path view of a [[container.rule]]: 24 bytes. Its
// operands are, from off: nPorts port ranges, n4 IPv4 prefixes, n6 IPv6
// prefixes.
type rule struct {
	protos  protoSet
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
// A dir other than Ingress or Egress is a caller bug; Judge then answers Drop
// with RuleID "default" rather than panicking on the packet path.
//
// Judge does not allocate.
func (t *Table) Judge(container netip.Addr, dir Direction, proto uint8, port uint16, peer netip.Addr) Match {
	if dir != Ingress && dir != Egress {
		return Match{Action: Drop, RuleID: RuleIDDefault}
	}
	c := t.byAddr.get(container)
	if c == nil {
		return Match{Action: t.defaults[dir], RuleID: RuleIDDefault}
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
