package rules

import (
	"encoding/binary"
	"math"
	"net/netip"
)

// containerSpec is a [[container]] as validated, before compilation. The
// Table keeps these for WriteTo, Resolve and Unresolved, off the hot path.
type containerSpec struct {
	name    string
	addrs   []netip.Addr // file order; none for a dynamic entry
	dynamic bool         // no ips: addresses come from Docker through Resolve
	sel     selector     // for dynamic entries
	def     [3]Action    // effective default per Direction
	own     [3]bool      // whether the container set def itself
	rules   []ruleSpec   // file order
}

// ruleSpec is a [[container.rule]] as validated.
type ruleSpec struct {
	id     string
	dir    Direction
	proto  string         // as written, "any" if absent
	protos protoSet       // classes the rule matches, see parser.rule
	ports  []portRange    // sorted, merged; nil = any port
	peers  []netip.Prefix // masked, file order; nil = any peer
	action Action
	log    bool
	// L7 fields, normalised; nil when absent.
	l7     L7 // protocols the rule has fields for; 0: none
	sni    []namePattern
	ja4    []ja4Pattern
	host   []namePattern
	path   []string
	method []string
	qname  []namePattern
	app    AppProto
	// to_names: the remote address must be bound, for this container, to
	// a name matching one of these (see Learned); nil when absent.
	names []namePattern
}

// compile flattens validated containers into the Table's lookup arrays.
// Rules are grouped by container, then by direction, each group in file
// order, which is all Judge's first-match-wins needs: a rule of the other
// direction can never match. Only the static entries' addresses are
// indexed; Resolve adds the dynamic ones to a copy.
func (t *Table) compile(specs []containerSpec) {
	t.source = specs
	t.hot = make([]container, len(specs))
	var addrs, rules, operands, l7s int
	for i := range specs {
		addrs += len(specs[i].addrs)
		rules += len(specs[i].rules)
		for j := range specs[i].rules {
			operands += len(specs[i].rules[j].ports) + len(specs[i].rules[j].peers)
			if rs := &specs[i].rules[j]; rs.l7 != 0 || rs.names != nil {
				l7s++
			}
		}
	}
	t.byAddr = newAddrIndex(addrs)
	t.rules = make([]rule, 0, rules)
	t.ids = make([]string, 0, rules)
	t.operands = make([]operand, 0, operands)
	if l7s > 0 {
		t.l7 = make([]l7Rule, 0, l7s)
		t.l7of = make([]uint32, 0, rules)
	}
	for i := range specs {
		cs := &specs[i]
		c := container{name: cs.name}
		for _, dir := range []Direction{Ingress, Egress} {
			c.def[dir-1] = cs.def[dir]
			c.rules[dir-1].off = uint32(len(t.rules))
			for j := range cs.rules {
				if rs := &cs.rules[j]; rs.dir == dir {
					t.rules = append(t.rules, t.compileRule(rs))
					c.l7 = c.l7 || rs.l7 != 0 || rs.names != nil
				}
			}
			c.rules[dir-1].n = uint32(len(t.rules)) - c.rules[dir-1].off
		}
		t.hot[i] = c
		for _, a := range cs.addrs {
			t.byAddr.insert(a, c)
		}
	}
}

func (t *Table) compileRule(rs *ruleSpec) rule {
	t.ids = append(t.ids, rs.id)
	r := rule{protos: rs.protos, action: rs.action, log: rs.log, anyPeer: rs.peers == nil}
	r.off = uint32(len(t.operands))
	if len(rs.ports) > 0 {
		r.bounds = portRange{rs.ports[0].lo, rs.ports[len(rs.ports)-1].hi}
	}
	for _, pr := range rs.ports {
		t.operands = append(t.operands, operand{a: uint64(pr.lo), b: uint64(pr.hi)})
		r.nPorts++
	}
	for _, p := range rs.peers {
		if p.Addr().Is4() {
			b := p.Addr().As4()
			mask := uint32(math.MaxUint32) << (32 - p.Bits()) // Go: x<<32 == 0 for /0
			t.operands = append(t.operands, operand{a: uint64(binary.BigEndian.Uint32(b[:])), b: uint64(mask)})
			r.n4++
		}
	}
	if t.l7 != nil {
		t.l7of = append(t.l7of, uint32(len(t.l7)))
	}
	if rs.l7 != 0 || rs.names != nil {
		r.action = 0 // see rule.action
		t.l7 = append(t.l7, l7Rule{action: rs.action, protos: rs.l7, names: rs.names,
			sni: rs.sni, ja4: rs.ja4, host: rs.host, path: rs.path, method: rs.method, qname: rs.qname, app: rs.app})
	}
	for _, p := range rs.peers {
		if p.Addr().Is6() {
			b := p.Addr().As16()
			hi, lo := mask128(p.Bits())
			t.operands = append(t.operands, operand{
				a: binary.BigEndian.Uint64(b[:8]), b: binary.BigEndian.Uint64(b[8:]), c: hi, d: lo,
			})
			r.n6++
		}
	}
	return r
}

// mask128 returns the two words of a 128-bit mask with the top bits set.
func mask128(bits int) (hi, lo uint64) {
	switch {
	case bits <= 0:
		return 0, 0
	case bits < 64:
		return math.MaxUint64 << (64 - bits), 0
	case bits == 64:
		return math.MaxUint64, 0
	case bits < 128:
		return math.MaxUint64, math.MaxUint64 << (128 - bits)
	}
	return math.MaxUint64, math.MaxUint64
}
