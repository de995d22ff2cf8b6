package netns

import (
	"net/netip"
	"strings"
	"testing"
)

func TestPrefix(t *testing.T) {
	p1, err1 := Prefix("", 32)
	p2, err2 := Prefix("", 32)
	if err1 != nil || err2 != nil || p1 == p2 || !strings.HasPrefix(p1, "nfqg") || !strings.HasSuffix(p1, "-") {
		t.Errorf("random prefixes %q, %q (%v, %v): want two different nfqgXXXXXX- names", p1, p2, err1, err2)
	}
	if p, err := Prefix("t1-", 32); err != nil || p != "t1-" {
		t.Errorf("Prefix(t1-) = %q, %v", p, err)
	}
	if _, err := Prefix("bad/name", 32); err == nil || !strings.Contains(err.Error(), "only letters") {
		t.Errorf("Prefix(bad/name) = %v, want an invalid-character error", err)
	}
	if _, err := Prefix(strings.Repeat("a", 33), 32); err == nil || !strings.Contains(err.Error(), "at most 32") {
		t.Errorf("33-byte prefix: %v, want a too-long error", err)
	}
}

func TestSysctlPath(t *testing.T) {
	// Dots become slashes unless the key has a slash: interface names may
	// hold dots.
	check := func(key, want string) {
		t.Helper()
		if got := sysctlPath(key); got != want {
			t.Errorf("sysctlPath(%q) = %q, want %q", key, got, want)
		}
	}
	check("net.ipv4.ip_forward", "/proc/sys/net/ipv4/ip_forward")
	check("net/ipv4/conf/eth0.1/forwarding", "/proc/sys/net/ipv4/conf/eth0.1/forwarding")
	check("net.bridge.bridge-nf-call-iptables", "/proc/sys/net/bridge/bridge-nf-call-iptables")
}

func TestScript(t *testing.T) {
	var s Script
	s.Up("lo")
	s.Add("link add %s type bridge", "br0")
	s.Up("eth0", PrefixFrom(netip.MustParseAddr("192.0.2.2"), 24), PrefixFrom(netip.MustParseAddr("2001:db8::2"), 64), PrefixFrom(netip.Addr{}, 64))
	s.Routes(netip.MustParseAddr("192.0.2.1"), netip.MustParsePrefix("198.51.100.0/24"))
	s.Routes(netip.Addr{}, netip.MustParsePrefix("2001:db8:1::/64"))
	want := `link set lo up
link add br0 type bridge
addr add 192.0.2.2/24 dev eth0
addr add 2001:db8::2/64 dev eth0 nodad
link set eth0 up
route add default via 192.0.2.1
route add 198.51.100.0/24 via 192.0.2.1
`
	if got := s.String(); got != want {
		t.Errorf("script:\n%s\nwant:\n%s", got, want)
	}
	s.Reset()
	if s.String() != "" {
		t.Errorf("after Reset: %q", s.String())
	}
}

func TestWithoutEmptyTable(t *testing.T) {
	filter := "*filter\n:INPUT ACCEPT\n-A INPUT -j ACCEPT\nCOMMIT\n"
	empty := "*mangle\n:PREROUTING ACCEPT\n:FORWARD ACCEPT\n:POSTROUTING ACCEPT\nCOMMIT\n"
	for _, c := range []struct{ in, want string }{
		{filter + empty, filter},
		{empty + filter, filter},
		{filter, filter},
		// A rule, or a policy that drops, is something to compare.
		{filter + "*mangle\n:FORWARD ACCEPT\n-A FORWARD -j MARK --set-xmark 0x1/0x1\nCOMMIT\n", ""},
		{filter + "*mangle\n:FORWARD DROP\nCOMMIT\n", ""},
		{filter + "*mangle\n:FORWARD ACCEPT\n", ""}, // no COMMIT: left alone
	} {
		want := c.want
		if want == "" {
			want = c.in
		}
		if got := WithoutEmptyTable(c.in, "mangle"); got != want {
			t.Errorf("WithoutEmptyTable(%q) = %q, want %q", c.in, got, want)
		}
	}
}
