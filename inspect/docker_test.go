package inspect

import (
	"net/netip"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nfqguard/nfqguard/rules"
)

// dockerConfig names web through Docker instead of by address.
const dockerConfig = `
[defaults]
ingress = "allow"
egress = "allow"

[[container]]
name = "front"              # the Docker container named web-1 is the group "front"
label = "app=web"
ingress = "drop"

  [[container.rule]]
  id = "web-http"
  direction = "ingress"
  proto = "tcp"
  ports = ["80"]
  action = "allow"

  [[container.rule]]
  id = "web-no-smtp"
  direction = "egress"
  proto = "tcp"
  ports = ["25"]
  action = "drop"
`

var dockerHost = []rules.Container{
	{ID: "0123456789abcdef", Name: "web-1", Image: "nginx:1.27", Labels: map[string]string{"app": "web"},
		Addrs: []netip.Addr{mustAddr("172.18.0.2"), mustAddr("fd00:18::2")},
		Ports: []rules.PortBinding{
			{ContainerPort: 80, Proto: "tcp", HostIP: mustAddr("0.0.0.0"), HostPort: 8080},
			{ContainerPort: 80, Proto: "tcp", HostIP: mustAddr("::"), HostPort: 8080},
			{ContainerPort: 22, Proto: "tcp", HostIP: mustAddr("127.0.0.1"), HostPort: 2222},
		}},
	{ID: "fedcba9876543210", Name: "worker", Image: "busybox", Addrs: []netip.Addr{mustAddr("172.18.0.3")}},
}

// newDockerEngine returns an engine whose table is dockerConfig resolved
// against dockerHost, and the recorder of its events.
func newDockerEngine(tb testing.TB) (*Engine, *recorder) {
	tb.Helper()
	base, err := rules.Parse("docker.toml", []byte(dockerConfig))
	if err != nil {
		tb.Fatal(err)
	}
	tbl, warns := base.Resolve(dockerHost)
	if len(warns) > 0 {
		tb.Fatalf("Resolve warnings: %q", warns)
	}
	var p atomic.Pointer[rules.Table]
	p.Store(tbl)
	rec := &recorder{}
	return New(Options{Tables: &p, Bridges: fakeBridges{ifBridge: true}, Sink: rec}, 4096), rec
}

func TestEventDockerFields(t *testing.T) {
	tests := []struct {
		name string
		p    pkt
		meta Meta
		want Event // Time ignored
	}{
		{"ingress to a published port", pkt{src: "203.0.113.2", dst: "172.18.0.2", sport: 40000, dport: 22, proto: "tcp", flags: TCPFlagSYN},
			toContainer, Event{Action: rules.Drop, RuleID: "default", Container: "front", DockerName: "web-1", Image: "nginx:1.27",
				Direction: rules.Ingress, Proto: rules.ProtoTCP, Src: netip.MustParseAddrPort("203.0.113.2:40000"), Dst: netip.MustParseAddrPort("172.18.0.2:22"), Published: "127.0.0.1:2222", Packets: 1}},
		{"ingress over IPv6 to a port published for tcp only", pkt{src: "2001:db8::9", dst: "fd00:18::2", sport: 40001, dport: 80, proto: "udp"},
			toContainer, Event{Action: rules.Drop, RuleID: "default", Container: "front", DockerName: "web-1", Image: "nginx:1.27",
				Direction: rules.Ingress, Proto: rules.ProtoUDP, Src: netip.MustParseAddrPort("[2001:db8::9]:40001"), Dst: netip.MustParseAddrPort("[fd00:18::2]:80"), Packets: 1}},
		{"egress: the source is the container, nothing published", pkt{src: "172.18.0.2", dst: "198.51.100.7", sport: 40002, dport: 25, proto: "tcp", flags: TCPFlagSYN},
			fromContainer, Event{Action: rules.Drop, RuleID: "web-no-smtp", Container: "front", DockerName: "web-1", Image: "nginx:1.27",
				Direction: rules.Egress, Proto: rules.ProtoTCP, Src: netip.MustParseAddrPort("172.18.0.2:40002"), Dst: netip.MustParseAddrPort("198.51.100.7:25"), Packets: 1}},
		{"container to container: the judging end is described", pkt{src: "172.18.0.3", dst: "172.18.0.2", sport: 40003, dport: 8080, proto: "tcp", flags: TCPFlagSYN},
			betweenC, Event{Action: rules.Drop, RuleID: "default", Container: "front", DockerName: "web-1", Image: "nginx:1.27",
				Direction: rules.Ingress, Proto: rules.ProtoTCP, Src: netip.MustParseAddrPort("172.18.0.3:40003"), Dst: netip.MustParseAddrPort("172.18.0.2:8080"), Packets: 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e, rec := newDockerEngine(t)
			e.Judge(tt.p.bytes(t), tt.meta, time.Now())
			if len(rec.events) != 1 {
				t.Fatalf("got %d events, want 1", len(rec.events))
			}
			got := rec.events[0]
			tt.want.Time = got.Time
			if got != tt.want {
				t.Errorf("event = %+v\nwant    %+v", got, tt.want)
			}
		})
	}
}

func TestEventPublishedOnLoggedAllow(t *testing.T) {
	cfg := strings.Replace(dockerConfig, `  ports = ["80"]`+"\n  action = \"allow\"", `  ports = ["80"]`+"\n  action = \"allow\"\n  log = true", 1)
	base, err := rules.Parse("docker.toml", []byte(cfg))
	if err != nil {
		t.Fatal(err)
	}
	tbl, _ := base.Resolve(dockerHost)
	var p atomic.Pointer[rules.Table]
	p.Store(tbl)
	rec := &recorder{}
	e := New(Options{Tables: &p, Sink: rec}, 1024)
	e.Judge(pkt{src: "203.0.113.2", dst: "172.18.0.2", sport: 40000, dport: 80, proto: "tcp", flags: TCPFlagSYN}.bytes(t), toContainer, time.Now())
	if len(rec.events) != 1 {
		t.Fatalf("got %d events, want 1", len(rec.events))
	}
	if ev := rec.events[0]; ev.RuleID != "web-http" || ev.Published != "0.0.0.0:8080,[::]:8080" || ev.DockerName != "web-1" {
		t.Errorf("event = %+v; want web-http, web-1, published 0.0.0.0:8080,[::]:8080", ev)
	}
}

// lastEvent keeps the last event without allocating.
type lastEvent struct {
	ev Event
	n  int
}

func (l *lastEvent) Emit(ev Event) bool { l.ev, l.n = ev, l.n+1; return true }

// TestLoggedFlowDoesNotAllocate: describing a logged flow with Docker's
// metadata costs no allocation on the queue's goroutine.
func TestLoggedFlowDoesNotAllocate(t *testing.T) {
	base, err := rules.Parse("docker.toml", []byte(dockerConfig))
	if err != nil {
		t.Fatal(err)
	}
	tbl, _ := base.Resolve(dockerHost)
	var p atomic.Pointer[rules.Table]
	p.Store(tbl)
	sink := &lastEvent{}
	e := New(Options{Tables: &p, Sink: sink}, 4096)
	news := make([][]byte, 1001)
	for i := range news {
		news[i] = pkt{src: "203.0.113.2", dst: "172.18.0.2", sport: uint16(1000 + i), dport: 22, proto: "tcp", flags: TCPFlagSYN}.bytes(t)
	}
	now := time.Now()
	i := 0
	if n := testing.AllocsPerRun(1000, func() { e.Judge(news[i], toContainer, now); i++ }); n != 0 {
		t.Errorf("Judge of a blocked, logged flow allocates %v times per packet", n)
	}
	if sink.n == 0 || sink.ev.Published != "127.0.0.1:2222" || sink.ev.DockerName != "web-1" {
		t.Errorf("last event = %+v after %d events", sink.ev, sink.n)
	}
}
