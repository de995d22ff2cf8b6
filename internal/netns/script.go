package netns

import (
	"fmt"
	"net/netip"
	"strings"
)

// Script builds the commands of an "ip -batch" script for IPBatch, one a
// line. The zero value is an empty script.
type Script struct {
	b strings.Builder
}

// Add appends one command, formatted as by fmt.Sprintf.
func (s *Script) Add(format string, args ...any) {
	fmt.Fprintf(&s.b, format+"\n", args...)
}

// Up gives dev the addresses of the valid prefixes among addrs (IPv6 ones
// without duplicate address detection, so they are usable at once) and
// brings it up. Invalid (zero) prefixes are skipped, so that an IPv4-only
// rig passes its unset IPv6 prefix as it is.
func (s *Script) Up(dev string, addrs ...netip.Prefix) {
	for _, p := range addrs {
		switch {
		case !p.IsValid():
		case p.Addr().Is6():
			s.Add("addr add %s dev %s nodad", p, dev)
		default:
			s.Add("addr add %s dev %s", p, dev)
		}
	}
	s.Add("link set %s up", dev)
}

// Routes adds a default route via gw and a route to each of dsts via gw.
// A zero gw adds nothing, as for Up.
func (s *Script) Routes(gw netip.Addr, dsts ...netip.Prefix) {
	if !gw.IsValid() {
		return
	}
	s.Add("route add default via %s", gw)
	for _, d := range dsts {
		s.Add("route add %s via %s", d, gw)
	}
}

// String returns the script.
func (s *Script) String() string { return s.b.String() }

// Reset empties the script, to build the next one.
func (s *Script) Reset() { s.b.Reset() }

// PrefixFrom is netip.PrefixFrom that keeps a zero a zero: the prefix of
// an address a rig may leave unset (its IPv6 addresses, without IPv6).
func PrefixFrom(a netip.Addr, bits int) netip.Prefix {
	if !a.IsValid() {
		return netip.Prefix{}
	}
	return netip.PrefixFrom(a, bits)
}
