package rules

import "net/netip"

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

// Table is a compiled, immutable rule table. Build it with Parse or Load;
// the zero value matches nothing and has no defaults. All methods are safe
// for concurrent use because nothing is written after Parse returns.
type Table struct {
	Source string // file it was loaded from
	Engine EngineConfig
	Log    LogConfig

	defaults    [3]Action // [defaults], indexed by Direction
	autoWorkers bool      // workers = 0 was resolved to the CPU count
	byAddr      map[netip.Addr]int32
	containers  []container
}

type container struct {
	name  string
	addrs []netip.Addr // file order, for WriteTo
	// def is the effective default per Direction; own records whether the
	// container set it itself, which only WriteTo cares about.
	def [3]Action
	own [3]bool
	// rules is the file order, for WriteTo; byDir holds the same rules split
	// by direction (still in file order) so Judge never looks at rules that
	// cannot match. First match within a direction equals first match
	// overall, since rules of the other direction never match.
	rules []rule
	byDir [3][]rule
}

type rule struct {
	// Hot fields first.
	protos protoSet
	ports  []portRange    // sorted, merged; nil = any port
	peers  []netip.Prefix // nil = any peer
	action Action
	log    bool
	dir    Direction
	id     string
	proto  string // as written (defaulted), for WriteTo
}

// portRange is an inclusive port range.
type portRange struct{ lo, hi uint16 }

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
// "default" and Container "".
//
// A dir other than Ingress or Egress is a caller bug; Judge then answers Drop
// with RuleID "default" rather than panicking on the packet path.
//
// Judge does not allocate.
func (t *Table) Judge(container netip.Addr, dir Direction, proto uint8, port uint16, peer netip.Addr) Match {
	if dir != Ingress && dir != Egress {
		return Match{Action: Drop, RuleID: RuleIDDefault}
	}
	ci, ok := t.byAddr[container.Unmap()]
	if !ok {
		return Match{Action: t.defaults[dir], RuleID: RuleIDDefault}
	}
	c := &t.containers[ci]
	class := protoClass(proto)
	peer = peer.Unmap()
	rules := c.byDir[dir]
	for i := range rules {
		r := &rules[i]
		if r.protos&class == 0 {
			continue
		}
		// Rules with ports only ever match TCP or UDP (see compile), so the
		// port is meaningful here.
		if r.ports != nil && !portsContain(r.ports, port) {
			continue
		}
		if r.peers != nil && !prefixesContain(r.peers, peer) {
			continue
		}
		return Match{Action: r.action, RuleID: r.id, Container: c.name, Log: r.log}
	}
	return Match{Action: c.def[dir], RuleID: RuleIDDefault, Container: c.name}
}

// portsContain reports whether port lies in one of the sorted, disjoint
// ranges. Lists are short, so a linear scan that stops early beats a binary
// search.
func portsContain(ranges []portRange, port uint16) bool {
	for _, r := range ranges {
		if port < r.lo {
			return false
		}
		if port <= r.hi {
			return true
		}
	}
	return false
}

func prefixesContain(prefixes []netip.Prefix, ip netip.Addr) bool {
	for _, p := range prefixes {
		if p.Contains(ip) {
			return true
		}
	}
	return false
}

// Listed reports whether ip belongs to a [[container]]. It does not allocate.
func (t *Table) Listed(ip netip.Addr) bool {
	_, ok := t.byAddr[ip.Unmap()]
	return ok
}

// Unresolved lists, in file order, the containers that have no addresses.
// They match nothing until a later feature resolves them through Docker.
// The slice is a fresh copy on each call.
func (t *Table) Unresolved() []string {
	var names []string
	for i := range t.containers {
		if len(t.containers[i].addrs) == 0 {
			names = append(names, t.containers[i].name)
		}
	}
	return names
}
