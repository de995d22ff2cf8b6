package netlab

import (
	"fmt"
	"strings"
)

// dockerNftRules returns an nft script that sets up what Docker 29's
// nftables firewall backend (--firewall-backend=nftables) installs for the
// lab's bridge: table ip (or ip6) docker-bridges with the base chains
// filter-FORWARD (forward, priority filter), nat-PREROUTING and nat-OUTPUT
// (dstnat) and nat-POSTROUTING (srcnat), all policy accept, and per-bridge
// chains reached through verdict maps keyed by interface, as Docker names
// them. Its verdicts are the iptables layout's: published ports accepted
// into the bridge, every other new connection from outside dropped,
// everything out of the bridge accepted. Left out: Docker's raw-PREROUTING
// drop of direct routing to a container's address, so that the lab's
// "routed directly" cases mean the same with either layout.
func dockerNftRules(v6 bool, containers []Container, publish []Publish) string {
	family, ipKw, subnet, loopback := "ip", "ip", ContainerPrefix.String(), "127.0.0.0/8"
	if v6 {
		family, ipKw, subnet, loopback = "ip6", "ip6", ContainerPrefix6.String(), "::1"
	}
	caddr, dnatTo := containerAddrs(v6, containers)
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format+"\n", args...) }
	w("table %s docker-bridges {", family)
	w("  map filter-forward-in-jumps {")
	w("    type ifname : verdict")
	w("    elements = { %q : jump filter-forward-in__%s }", bridgeName, bridgeName)
	w("  }")
	w("  map filter-forward-out-jumps {")
	w("    type ifname : verdict")
	w("    elements = { %q : jump filter-forward-out__%s }", bridgeName, bridgeName)
	w("  }")
	w("  chain filter-FORWARD {")
	w("    type filter hook forward priority filter; policy accept;")
	w("    oifname vmap @filter-forward-in-jumps")
	w("    iifname vmap @filter-forward-out-jumps")
	w("  }")
	w("  chain filter-forward-in__%s {", bridgeName)
	w("    ct state established,related counter accept")
	w("    iifname %q counter accept", bridgeName)
	for _, p := range publish {
		w("    %s daddr %s %s dport %d counter accept", ipKw, caddr(p.Container), p.Proto, p.ContainerPort)
	}
	w("    counter drop")
	w("  }")
	w("  chain filter-forward-out__%s {", bridgeName)
	w("    ct state established,related counter accept")
	w("    counter accept")
	w("  }")
	w("  chain nat-PREROUTING {")
	w("    type nat hook prerouting priority dstnat; policy accept;")
	w("    fib daddr type local counter jump nat-prerouting-and-output")
	w("  }")
	w("  chain nat-OUTPUT {")
	w("    type nat hook output priority -100; policy accept;")
	w("    %s daddr != %s fib daddr type local counter jump nat-prerouting-and-output", ipKw, loopback)
	w("  }")
	w("  chain nat-POSTROUTING {")
	w("    type nat hook postrouting priority srcnat; policy accept;")
	w("    %s saddr %s oifname != %q counter masquerade", ipKw, subnet, bridgeName)
	for _, p := range publish {
		a := caddr(p.Container)
		w("    %s saddr %s %s daddr %s %s dport %d counter masquerade", ipKw, a, ipKw, a, p.Proto, p.ContainerPort)
	}
	w("  }")
	w("  chain nat-prerouting-and-output {")
	for _, p := range publish {
		w("    iifname != %q %s dport %d counter dnat to %s", bridgeName, p.Proto, p.HostPort, dnatTo(p.Container, p.ContainerPort))
	}
	w("  }")
	w("}")
	return b.String()
}
