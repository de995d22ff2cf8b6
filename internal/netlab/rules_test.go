package netlab

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestDockerRulesDefault(t *testing.T) {
	cs := []Container{
		{Addr: netip.MustParseAddr("172.17.0.2"), Addr6: netip.MustParseAddr("fd00:17::2")},
		{Addr: netip.MustParseAddr("172.17.0.3"), Addr6: netip.MustParseAddr("fd00:17::3")},
	}
	want := `*nat
:PREROUTING ACCEPT [0:0]
:INPUT ACCEPT [0:0]
:OUTPUT ACCEPT [0:0]
:POSTROUTING ACCEPT [0:0]
:DOCKER - [0:0]
-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER
-A OUTPUT ! -d 127.0.0.0/8 -m addrtype --dst-type LOCAL -j DOCKER
-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE
-A POSTROUTING -s 172.17.0.2/32 -d 172.17.0.2/32 -p tcp -m tcp --dport 80 -j MASQUERADE
-A POSTROUTING -s 172.17.0.2/32 -d 172.17.0.2/32 -p udp -m udp --dport 53 -j MASQUERADE
-A DOCKER -i docker0 -j RETURN
-A DOCKER ! -i docker0 -p tcp -m tcp --dport 8080 -j DNAT --to-destination 172.17.0.2:80
-A DOCKER ! -i docker0 -p udp -m udp --dport 5353 -j DNAT --to-destination 172.17.0.2:53
COMMIT
*filter
:INPUT ACCEPT [0:0]
:FORWARD DROP [0:0]
:OUTPUT ACCEPT [0:0]
:DOCKER - [0:0]
:DOCKER-ISOLATION-STAGE-1 - [0:0]
:DOCKER-ISOLATION-STAGE-2 - [0:0]
:DOCKER-USER - [0:0]
-A FORWARD -j DOCKER-USER
-A FORWARD -j DOCKER-ISOLATION-STAGE-1
-A FORWARD -o docker0 -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
-A FORWARD -o docker0 -j DOCKER
-A FORWARD -i docker0 ! -o docker0 -j ACCEPT
-A FORWARD -i docker0 -o docker0 -j ACCEPT
-A DOCKER -d 172.17.0.2/32 ! -i docker0 -o docker0 -p tcp -m tcp --dport 80 -j ACCEPT
-A DOCKER -d 172.17.0.2/32 ! -i docker0 -o docker0 -p udp -m udp --dport 53 -j ACCEPT
-A DOCKER-ISOLATION-STAGE-1 -i docker0 ! -o docker0 -j DOCKER-ISOLATION-STAGE-2
-A DOCKER-ISOLATION-STAGE-1 -j RETURN
-A DOCKER-ISOLATION-STAGE-2 -o docker0 -j DROP
-A DOCKER-ISOLATION-STAGE-2 -j RETURN
-A DOCKER-USER -j RETURN
COMMIT
`
	if diff := cmp.Diff(want, dockerRules(false, cs, DefaultPublish(), false)); diff != "" {
		t.Errorf("IPv4 rules (-want +got):\n%s", diff)
	}

	v6 := dockerRules(true, cs, DefaultPublish(), false)
	for _, line := range []string{
		"-A OUTPUT ! -d ::1/128 -m addrtype --dst-type LOCAL -j DOCKER",
		"-A POSTROUTING -s fd00:17::/64 ! -o docker0 -j MASQUERADE",
		"-A POSTROUTING -s fd00:17::2/128 -d fd00:17::2/128 -p tcp -m tcp --dport 80 -j MASQUERADE",
		"-A DOCKER ! -i docker0 -p udp -m udp --dport 5353 -j DNAT --to-destination [fd00:17::2]:53",
		"-A DOCKER -d fd00:17::2/128 ! -i docker0 -o docker0 -p tcp -m tcp --dport 80 -j ACCEPT",
	} {
		if !strings.Contains(v6, line+"\n") {
			t.Errorf("IPv6 rules lack %q:\n%s", line, v6)
		}
	}

	noUser := dockerRules(false, cs, nil, true)
	if strings.Contains(noUser, "DOCKER-USER") {
		t.Errorf("NoDockerUser rules mention DOCKER-USER:\n%s", noUser)
	}
}

func TestOptionsValidation(t *testing.T) {
	bad := []Options{
		{Containers: -1},
		{Containers: 254},
		{Backend: "ebpf"},
		{Prefix: "a/b"},
		{Publish: []Publish{{HostPort: 80, ContainerPort: 80, Proto: "sctp"}}},
		{Publish: []Publish{{HostPort: 0, ContainerPort: 80, Proto: "tcp"}}},
		{Publish: []Publish{{HostPort: 80, Container: 2, ContainerPort: 80, Proto: "tcp"}}},
		{Publish: []Publish{{HostPort: 80, ContainerPort: 80, Proto: "tcp"}, {HostPort: 80, Container: 1, ContainerPort: 81, Proto: "tcp"}}},
	}
	for _, o := range bad {
		if err := o.normalize(); err == nil {
			t.Errorf("normalize(%+v) = nil, want error", o)
		}
	}
	var o Options
	if err := o.normalize(); err != nil {
		t.Fatal(err)
	}
	if len(o.Prefix) != 11 || !strings.HasPrefix(o.Prefix, "nfqg") || o.Containers != 2 || o.Backend != BackendNFT || len(o.Publish) != 2 {
		t.Errorf("defaults = %+v", o)
	}
}
