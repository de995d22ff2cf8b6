package rules

import (
	"net/netip"
	"path/filepath"
	"testing"
	"time"
)

// While Docker cannot be asked, an address no entry lists may be a
// container an entry resolved through Docker would select: with
// docker.unreachable = "drop" (the default) it is dropped, and the
// addresses the table lists keep their rules.
func TestUnreachable(t *testing.T) {
	base := mustLoad(t, filepath.Join("testdata", "docker.toml"))
	if !base.Docker.DropUnreachable {
		t.Fatal(`docker.unreachable does not default to "drop"`)
	}
	since := time.Date(2026, 12, 6, 3, 0, 0, 0, time.UTC)
	unlisted, legacy, web := netip.MustParseAddr("172.18.0.77"), netip.MustParseAddr("172.18.0.9"), netip.MustParseAddr("172.18.0.2")
	peer := netip.MustParseAddr("203.0.113.9")

	check := func(name string, tb *Table, a netip.Addr, wantAction Action, wantID string) {
		t.Helper()
		m := tb.Judge(a, Ingress, ProtoTCP, 80, peer)
		if m.Action != wantAction || m.RuleID != wantID {
			t.Errorf("%s: Judge(%v) = %v %q, want %v %q", name, a, m.Action, m.RuleID, wantAction, wantID)
		}
	}
	if s, drop := base.DockerUnreachable(); !s.IsZero() || drop {
		t.Errorf("a parsed table says Docker is unreachable: %v, %v", s, drop)
	}
	check("parsed table", base, unlisted, Drop, RuleIDDefault) // docker.toml: [defaults] ingress drop

	down := base.Unreachable(since)
	if s, drop := down.DockerUnreachable(); !s.Equal(since) || !drop {
		t.Errorf("DockerUnreachable() = %v, %v; want %v, true", s, drop, since)
	}
	check("unreachable, never resolved", down, unlisted, Drop, RuleIDDockerUnreachable)
	check("unreachable, static entry", down, legacy, Drop, RuleIDDefault) // legacy: default drop, no rules
	if s, _ := base.DockerUnreachable(); !s.IsZero() {
		t.Error("Unreachable modified the table it was called on")
	}

	// Docker answered, then went away: the containers it listed keep
	// their rules, the rest is dropped.
	resolved, _ := base.Resolve(dockerHost())
	if m := resolved.Judge(web, Egress, ProtoTCP, 25, peer); m.Action != Drop || m.RuleID != "web-no-smtp" {
		t.Fatalf("resolved web -> :25 = %+v, want rule web-no-smtp", m)
	}
	downAgain := resolved.Unreachable(since)
	if m := downAgain.Judge(web, Egress, ProtoTCP, 25, peer); m.Action != Drop || m.RuleID != "web-no-smtp" {
		t.Errorf("web -> :25 while Docker is down = %+v, want web-no-smtp", m)
	}
	if m := downAgain.Judge(web, Ingress, ProtoTCP, 80, peer); m.Action != Allow || m.RuleID != RuleIDDefault {
		t.Errorf("web:80 while Docker is down = %+v, want web's ingress default allow", m)
	}
	check("unreachable after a listing", downAgain, unlisted, Drop, RuleIDDockerUnreachable)

	// Docker is back: Resolve's table judges unlisted addresses by
	// [defaults] again.
	back, _ := downAgain.Resolve(dockerHost())
	if s, drop := back.DockerUnreachable(); !s.IsZero() || drop {
		t.Errorf("resolved table still says Docker is unreachable: %v, %v", s, drop)
	}
	check("reachable again", back, unlisted, Drop, RuleIDDefault)
	if m := back.Judge(unlisted, Egress, ProtoTCP, 443, peer); m.Action != Allow || m.RuleID != RuleIDDefault {
		t.Errorf("unlisted egress after Docker is back = %+v, want [defaults] egress allow", m)
	}
}

// docker.unreachable = "defaults" keeps [defaults] for unlisted addresses,
// and a file with no entry resolved through Docker has nothing to fear
// from an unreachable Docker: both say Docker is down without dropping.
func TestUnreachableDefaults(t *testing.T) {
	since := time.Now()
	peer := netip.MustParseAddr("203.0.113.9")
	for _, tt := range []struct{ name, src string }{
		{"docker.unreachable = defaults", "[docker]\nunreachable = \"defaults\"\n\n[[container]]\nname = \"web\"\n"},
		{"static entries only", "[[container]]\nname = \"web\"\nips = [\"172.17.0.2\"]\n"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			down := mustParse(t, "u.toml", []byte(tt.src)).Unreachable(since)
			if s, drop := down.DockerUnreachable(); !s.Equal(since) || drop {
				t.Errorf("DockerUnreachable() = %v, %v; want %v, false", s, drop, since)
			}
			if m := down.Judge(netip.MustParseAddr("172.17.0.99"), Egress, ProtoTCP, 443, peer); m.Action != Allow || m.RuleID != RuleIDDefault {
				t.Errorf("unlisted egress = %+v, want [defaults] allow", m)
			}
		})
	}
}
