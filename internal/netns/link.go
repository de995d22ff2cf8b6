package netns

import "net/netip"

// The outside link joins a rig's outside client namespace to the namespace
// it reaches the rig through (the lab's host namespace, the private
// Docker's namespace) by a veth pair: ext0 on the inner side, eth0 in the
// outside namespace. Both rigs give it these addresses (TEST-NET-3 and the
// IPv6 documentation prefix, never routed beyond the link), so that tests
// speak of the outside client and of the host address it reaches
// published ports on in the same terms on either rig.
var (
	// LinkHost is ext0's address: the host address of published ports.
	LinkHost = netip.MustParsePrefix("203.0.113.1/24")
	// LinkOutside is the outside client's address on eth0.
	LinkOutside = netip.MustParsePrefix("203.0.113.2/24")
	// LinkHost6 is ext0's IPv6 address (OutsideLink.IPv6).
	LinkHost6 = netip.MustParsePrefix("2001:db8:113::1/64")
	// LinkOutside6 is the outside client's IPv6 address (OutsideLink.IPv6).
	LinkOutside6 = netip.MustParsePrefix("2001:db8:113::2/64")
)

// OutsideLink is one rig's outside link.
type OutsideLink struct {
	// Outside names the outside client's namespace (in Dir).
	Outside string
	// IPv6 adds LinkHost6, LinkOutside6 and the IPv6 routes.
	IPv6 bool
	// Routes and Routes6 are the networks the outside client reaches via
	// the host besides its default route: the rig's container networks,
	// so that tests can also route to containers directly.
	Routes, Routes6 []netip.Prefix
}

// AddHostSide adds to s, a script for the inner namespace, the commands
// that create the pair, move eth0 into the outside namespace and bring
// ext0 up with its addresses.
func (o OutsideLink) AddHostSide(s *Script) {
	s.Add("link add ext0 type veth peer name eth0 netns %s", o.Outside)
	s.Up("ext0", LinkHost, o.v6(LinkHost6))
}

// OutsideScript returns the outside namespace's script, to run once the
// host side exists: lo and eth0 up, a default route and Routes via the
// host.
func (o OutsideLink) OutsideScript() string {
	var s Script
	s.Up("lo")
	s.Up("eth0", LinkOutside, o.v6(LinkOutside6))
	s.Routes(LinkHost.Addr(), o.Routes...)
	s.Routes(o.v6(LinkHost6).Addr(), o.Routes6...)
	return s.String()
}

// v6 returns p with IPv6, and the zero prefix (left out by Script)
// without.
func (o OutsideLink) v6(p netip.Prefix) netip.Prefix {
	if !o.IPv6 {
		return netip.Prefix{}
	}
	return p
}
