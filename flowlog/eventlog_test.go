package flowlog

import (
	"bytes"
	"net/netip"
	"testing"
	"time"

	"github.com/nfqguard/nfqguard/inspect"
	"github.com/nfqguard/nfqguard/rules"
)

// TestRecordJSON pins the log line: the Docker fields appear when known and
// are left out otherwise, the others always appear.
func TestRecordJSON(t *testing.T) {
	ev := inspect.Event{
		Time: time.Date(2026, 11, 21, 23, 27, 30, 100000000, time.UTC), Action: rules.Drop, RuleID: "default",
		Container: "front", Direction: rules.Ingress, Proto: rules.ProtoTCP,
		Src: netip.MustParseAddrPort("203.0.113.2:40000"), Dst: netip.MustParseAddrPort("172.18.0.2:80"), Packets: 1,
	}
	plain := `{"time":"2026-11-21T23:27:30.1Z","event":"blocked","rule":"default","container":"front","direction":"ingress",` +
		`"proto":"tcp","src":"203.0.113.2","sport":40000,"dst":"172.18.0.2","dport":80,"packets":1}` + "\n"
	docker := `{"time":"2026-11-21T23:27:30.1Z","event":"blocked","rule":"default","container":"front","docker_name":"web-1",` +
		`"image":"nginx:1.27","direction":"ingress","proto":"tcp","src":"203.0.113.2","sport":40000,"dst":"172.18.0.2","dport":80,` +
		`"published":"0.0.0.0:8080,[::]:8080","packets":1}` + "\n"
	for _, tt := range []struct {
		name string
		ev   func(inspect.Event) inspect.Event
		want string
	}{
		{"without docker", func(e inspect.Event) inspect.Event { return e }, plain},
		{"with docker", func(e inspect.Event) inspect.Event {
			e.DockerName, e.Image, e.Published = "web-1", "nginx:1.27", "0.0.0.0:8080,[::]:8080"
			return e
		}, docker},
	} {
		var buf bytes.Buffer
		l, err := New(Writer(&buf), Options{Buffer: 1})
		if err != nil {
			t.Fatal(err)
		}
		l.Emit(tt.ev(ev))
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		if buf.String() != tt.want {
			t.Errorf("%s: log line\n%s want\n%s", tt.name, buf.String(), tt.want)
		}
	}
}
