package netlab

import (
	"fmt"
	"net/netip"
	"strings"
)

// dockerRules returns the iptables-restore input reproducing the layout
// Docker 18.09+ installs for the default bridge network (docker0), for IPv4
// or, with v6, for ip6tables with the IPv6 subnet.
func dockerRules(v6 bool, containers []Container, publish []Publish, noDockerUser bool) string {
	subnet, loopback, hostBits := ContainerPrefix.String(), "127.0.0.0/8", "/32"
	if v6 {
		subnet, loopback, hostBits = ContainerPrefix6.String(), "::1/128", "/128"
	}
	caddr, dnatTo := containerAddrs(v6, containers)

	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }

	w("*nat")
	w(":PREROUTING ACCEPT [0:0]")
	w(":INPUT ACCEPT [0:0]")
	w(":OUTPUT ACCEPT [0:0]")
	w(":POSTROUTING ACCEPT [0:0]")
	w(":DOCKER - [0:0]")
	w("-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER")
	w("-A OUTPUT ! -d %s -m addrtype --dst-type LOCAL -j DOCKER", loopback)
	w("-A POSTROUTING -s %s ! -o %s -j MASQUERADE", subnet, bridgeName)
	for _, p := range publish {
		a := caddr(p.Container)
		w("-A POSTROUTING -s %s%s -d %s%s -p %s -m %s --dport %d -j MASQUERADE",
			a, hostBits, a, hostBits, p.Proto, p.Proto, p.ContainerPort)
	}
	w("-A DOCKER -i %s -j RETURN", bridgeName)
	for _, p := range publish {
		w("-A DOCKER ! -i %s -p %s -m %s --dport %d -j DNAT --to-destination %s",
			bridgeName, p.Proto, p.Proto, p.HostPort, dnatTo(p.Container, p.ContainerPort))
	}
	w("COMMIT")

	w("*filter")
	w(":INPUT ACCEPT [0:0]")
	w(":FORWARD DROP [0:0]")
	w(":OUTPUT ACCEPT [0:0]")
	w(":DOCKER - [0:0]")
	w(":DOCKER-ISOLATION-STAGE-1 - [0:0]")
	w(":DOCKER-ISOLATION-STAGE-2 - [0:0]")
	if !noDockerUser {
		w(":DOCKER-USER - [0:0]")
		w("-A FORWARD -j DOCKER-USER")
	}
	w("-A FORWARD -j DOCKER-ISOLATION-STAGE-1")
	w("-A FORWARD -o %s -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT", bridgeName)
	w("-A FORWARD -o %s -j DOCKER", bridgeName)
	w("-A FORWARD -i %s ! -o %s -j ACCEPT", bridgeName, bridgeName)
	w("-A FORWARD -i %s -o %s -j ACCEPT", bridgeName, bridgeName)
	for _, p := range publish {
		w("-A DOCKER -d %s%s ! -i %s -o %s -p %s -m %s --dport %d -j ACCEPT",
			caddr(p.Container), hostBits, bridgeName, bridgeName, p.Proto, p.Proto, p.ContainerPort)
	}
	w("-A DOCKER-ISOLATION-STAGE-1 -i %s ! -o %s -j DOCKER-ISOLATION-STAGE-2", bridgeName, bridgeName)
	w("-A DOCKER-ISOLATION-STAGE-1 -j RETURN")
	w("-A DOCKER-ISOLATION-STAGE-2 -o %s -j DROP", bridgeName)
	w("-A DOCKER-ISOLATION-STAGE-2 -j RETURN")
	if !noDockerUser {
		w("-A DOCKER-USER -j RETURN")
	}
	w("COMMIT")
	return b.String()
}

// containerAddrs returns, for the family v6 says, the address of the i-th
// container as text and its address with a port as a DNAT target takes it.
func containerAddrs(v6 bool, containers []Container) (caddr func(i int) string, dnatTo func(i int, port uint16) string) {
	caddr = func(i int) string {
		if v6 {
			return containers[i].Addr6.String()
		}
		return containers[i].Addr.String()
	}
	dnatTo = func(i int, port uint16) string {
		return netip.AddrPortFrom(netip.MustParseAddr(caddr(i)), port).String()
	}
	return caddr, dnatTo
}
