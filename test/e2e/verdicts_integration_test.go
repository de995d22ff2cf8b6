package e2e

// End-to-end tests: the nfqguard binary judging real traffic in a
// Docker-shaped network-namespace lab (package internal/netlab). They need root;
// without it they skip (or fail under CI=true, see netlabtest.Require).

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nfqguard/nfqguard/flowlog"
	"github.com/nfqguard/nfqguard/internal/netlab"
	"github.com/nfqguard/nfqguard/internal/netlab/netlabtest"
	"github.com/nfqguard/nfqguard/internal/traffic"
	"github.com/nfqguard/nfqguard/queue"
)

// engineSection is an [engine] table with one worker on queue 0.
func engineSection(fastPath, failOpen bool) string {
	return fmt.Sprintf("[engine]\nqueue = 0\nworkers = 1\nfast_path = %v\nfail_open = %v\n\n", fastPath, failOpen)
}

// allowAllConfig allows everything and lists no containers.
func allowAllConfig(fastPath, failOpen bool) string {
	return engineSection(fastPath, failOpen) + "[defaults]\ningress = \"allow\"\negress = \"allow\"\n"
}

// noSMTPConfig lists web (IPv4 and, for IPv6 labs, IPv6) with one egress
// drop rule for tcp/25; everything else is allowed.
func noSMTPConfig(fastPath bool) string {
	return engineSection(fastPath, false) + `
[defaults]
ingress = "allow"
egress = "allow"

[[container]]
name = "web"
ips = ["172.17.0.2", "fd00:17::2"]

  [[container.rule]]
  id = "web-no-smtp"
  direction = "egress"
  proto = "tcp"
  ports = ["25"]
  action = "drop"
`
}

// verdictsConfig is shaped like the repository's config.toml.
const verdictsConfig = `
[engine]
queue = 0
workers = 2               # --queue-balance 0:1
fail_open = false
mark = 0x10000000
bypass_mark = 0x20000000
fast_path = true

[log]
blocked = "stdout"

[defaults]
ingress = "allow"
egress = "allow"

[[container]]
name = "web"
ips = ["172.17.0.2"]
ingress = "drop"

  [[container.rule]]
  id = "web-http"
  direction = "ingress"
  proto = "tcp"
  ports = ["80", "8000-8100"]
  from = ["0.0.0.0/0"]
  action = "allow"
  log = true

  [[container.rule]]
  id = "web-dns"
  direction = "ingress"
  proto = "udp"
  ports = ["53"]
  from = ["172.17.0.0/16"]
  action = "allow"

  [[container.rule]]
  id = "web-ping"
  direction = "ingress"
  proto = "icmp"
  from = ["172.17.0.0/16"]
  action = "allow"

  [[container.rule]]
  id = "web-no-smtp"
  direction = "egress"
  proto = "tcp"
  ports = ["25"]
  action = "drop"

[[container]]
name = "db"
ips = ["172.17.0.3"]
ingress = "drop"

  [[container.rule]]
  id = "db-from-web"
  direction = "ingress"
  proto = "tcp"
  ports = ["5432"]
  from = ["172.17.0.2"]
  action = "allow"

  [[container.rule]]
  id = "db-no-web-http"
  direction = "egress"
  proto = "tcp"
  ports = ["80"]
  to = ["172.17.0.2"]
  action = "drop"
`

// flowCase is one exchange through the lab and what the engine must do
// with it.
type flowCase struct {
	name    string
	proto   string // "tcp", "udp" or "icmp"
	ns      string
	src     netip.Addr
	sport   uint16 // 0 for icmp
	dst     netip.AddrPort
	via     netip.AddrPort // address dialled, when it differs from dst (published port)
	allowed bool
	docker  bool // Docker's own rules let it through (checked without the engine)
	// want is the flow-log record the engine must write exactly once
	// (Time and Packets are not compared), or nil for none.
	want *flowlog.Record
}

func (c flowCase) target() netip.AddrPort {
	if c.via.IsValid() {
		return c.via
	}
	return c.dst
}

// exchange runs the case with the given source port (0: any).
func (c flowCase) exchange(l *netlab.Lab, sport uint16, timeout time.Duration) error {
	switch c.proto {
	case "tcp":
		return tcpExchange(l, c.ns, sport, c.target(), timeout)
	case "udp":
		return udpExchange(l, c.ns, sport, c.target(), timeout)
	default:
		return l.Ping(c.ns, c.target().Addr(), timeout)
	}
}

// matches reports whether r is about this case's flow.
func (c flowCase) matches(r flowlog.Record) bool {
	if r.Proto != c.proto || r.Src != c.src.String() || r.Dst != c.dst.Addr().String() {
		return false
	}
	if c.proto == "icmp" {
		return true
	}
	return r.SrcPort == c.sport && r.DstPort == c.dst.Port()
}

// checkRecords fails unless every case with a want has exactly one
// matching record with the expected fields, cases without one have none,
// and no other record was written.
func checkRecords(t *testing.T, cases []flowCase, recs []flowlog.Record) {
	t.Helper()
	matched := 0
	for _, c := range cases {
		var got []flowlog.Record
		for _, r := range recs {
			if c.matches(r) {
				got = append(got, r)
			}
		}
		matched += len(got)
		switch {
		case c.want == nil && len(got) > 0:
			t.Errorf("%s: want no flow-log record, got:\n%s", c.name, fmtRecords(got))
			continue
		case c.want == nil:
			continue
		case len(got) != 1:
			t.Errorf("%s: want exactly one %q record, got %d:\n%s", c.name, c.want.Event, len(got), fmtRecords(got))
			continue
		}
		r, w := got[0], *c.want
		if r.Event != w.Event || r.Rule != w.Rule || r.Container != w.Container || r.Direction != w.Direction ||
			r.Proto != w.Proto || r.Src != w.Src || r.Dst != w.Dst || r.Reason != w.Reason {
			t.Errorf("%s: record\n%s want\n%s", c.name, fmtRecords(got), fmtRecords([]flowlog.Record{w}))
		}
		if c.proto == "icmp" {
			// The echo identifier stands on the requester's side.
			if r.SrcPort == 0 || r.DstPort != 0 {
				t.Errorf("%s: ICMP echo record has sport %d dport %d, want the echo identifier and 0", c.name, r.SrcPort, r.DstPort)
			}
		} else if r.SrcPort != w.SrcPort || r.DstPort != w.DstPort {
			t.Errorf("%s: record ports %d -> %d, want %d -> %d", c.name, r.SrcPort, r.DstPort, w.SrcPort, w.DstPort)
		}
		if r.Packets < 1 {
			t.Errorf("%s: record has packets = %d, want >= 1", c.name, r.Packets)
		}
		if r.Time.IsZero() || time.Since(r.Time) > time.Minute || time.Until(r.Time) > time.Minute {
			t.Errorf("%s: record time %v is not now", c.name, r.Time)
		}
	}
	if matched != len(recs) {
		t.Errorf("flow log has %d records, %d of them about the test's flows; all records:\n%s", len(recs), matched, fmtRecords(recs))
	}
}

func rec(event, rule, container, dir, proto string, src netip.Addr, sport uint16, dst netip.AddrPort) *flowlog.Record {
	return &flowlog.Record{Event: event, Rule: rule, Container: container, Direction: dir, Proto: proto,
		Src: src.String(), SrcPort: sport, Dst: dst.Addr().String(), DstPort: dst.Port()}
}

func TestVerdictsFollowConfig(t *testing.T) {
	t.Parallel()
	l := netlabtest.New(t, netlab.Options{})
	web, db := l.Containers[0], l.Containers[1]
	out, host := l.Outside, l.HostOutside
	must(t, l.ServeTCPEcho(web.NS, ap(web.Addr, 80)))
	must(t, l.ServeUDPEcho(web.NS, ap(web.Addr, 53)))
	must(t, l.ServeTCPEcho(db.NS, ap(db.Addr, 5432)))
	must(t, l.ServeTCPEcho(db.NS, ap(db.Addr, 6379)))
	must(t, l.ServeTCPEcho(l.Out, ap(out, 9000)))
	must(t, l.ServeTCPEcho(l.Out, ap(out, 25)))
	must(t, l.ServeUDPEcho(l.Out, ap(out, 5300)))

	cases := []flowCase{
		{name: "outside -> web:80 via published 8080 (web-http, logged)", proto: "tcp", ns: l.Out, src: out, sport: 40001,
			dst: ap(web.Addr, 80), via: ap(host, 8080), allowed: true, docker: true,
			want: rec("allowed", "web-http", "web", "ingress", "tcp", out, 40001, ap(web.Addr, 80))},
		{name: "outside -> web:53/udp via published 5353 (web ingress default drop)", proto: "udp", ns: l.Out, src: out, sport: 40002,
			dst: ap(web.Addr, 53), via: ap(host, 5353), docker: true,
			want: rec("blocked", "default", "web", "ingress", "udp", out, 40002, ap(web.Addr, 53))},
		{name: "db -> web:53/udp (web-dns)", proto: "udp", ns: db.NS, src: db.Addr, sport: 40003,
			dst: ap(web.Addr, 53), allowed: true, docker: true},
		{name: "web -> outside:9000 (egress default allow)", proto: "tcp", ns: web.NS, src: web.Addr, sport: 40004,
			dst: ap(out, 9000), allowed: true, docker: true},
		{name: "web -> outside:25 (web-no-smtp)", proto: "tcp", ns: web.NS, src: web.Addr, sport: 40005,
			dst: ap(out, 25), docker: true,
			want: rec("blocked", "web-no-smtp", "web", "egress", "tcp", web.Addr, 40005, ap(out, 25))},
		{name: "web -> outside:5300/udp (egress default allow)", proto: "udp", ns: web.NS, src: web.Addr, sport: 40006,
			dst: ap(out, 5300), allowed: true, docker: true},
		{name: "web -> db:5432 (db-from-web)", proto: "tcp", ns: web.NS, src: web.Addr, sport: 40007,
			dst: ap(db.Addr, 5432), allowed: true, docker: true},
		{name: "web -> db:6379 (db ingress default drop)", proto: "tcp", ns: web.NS, src: web.Addr, sport: 40008,
			dst: ap(db.Addr, 6379), docker: true,
			want: rec("blocked", "default", "db", "ingress", "tcp", web.Addr, 40008, ap(db.Addr, 6379))},
		{name: "db -> web:80 (web-http allows, db-no-web-http drops: drop wins)", proto: "tcp", ns: db.NS, src: db.Addr, sport: 40009,
			dst: ap(web.Addr, 80), docker: true,
			want: rec("blocked", "db-no-web-http", "db", "egress", "tcp", db.Addr, 40009, ap(web.Addr, 80))},
		{name: "db -> web ping (web-ping)", proto: "icmp", ns: db.NS, src: db.Addr,
			dst: ap(web.Addr, 0), allowed: true, docker: true},
		{name: "web -> db ping (db ingress default drop)", proto: "icmp", ns: web.NS, src: web.Addr,
			dst: ap(db.Addr, 0), docker: true,
			want: rec("blocked", "default", "db", "ingress", "icmp", web.Addr, 0, ap(db.Addr, 0))},
		{name: "web -> outside ping (egress default allow)", proto: "icmp", ns: web.NS, src: web.Addr,
			dst: ap(out, 0), allowed: true, docker: true},
		{name: "outside -> web ping routed directly (not from 172.17.0.0/16)", proto: "icmp", ns: l.Out, src: out,
			dst:  ap(web.Addr, 0),
			want: rec("blocked", "default", "web", "ingress", "icmp", out, 0, ap(web.Addr, 0))},
	}

	// Without the engine, Docker's rules let through every case the engine
	// is to block: the engine is what blocks them.
	for _, c := range cases {
		if c.docker {
			if err := c.exchange(l, 0, allowTimeout); err != nil {
				t.Fatalf("without the engine: %s: %v", c.name, err)
			}
		}
	}

	e := startTestEngine(t, l, verdictsConfig)
	if got := requireOurRules(t, l, false, 1, 1); !strings.Contains(got[0], "--queue-balance 0:1") {
		t.Errorf("workers = 2 should give --queue-balance 0:1, got %q", got[0])
	}

	// All cases at once. A blocked TCP connect waits 1.5 s, long enough
	// for the kernel to retransmit its SYN (after 1 s): that retransmission
	// must not produce a second record.
	const retransmitWait = 1500 * time.Millisecond
	var wg sync.WaitGroup
	errs := make([]error, len(cases))
	blockedTCP, blocked := 0, 0
	for i, c := range cases {
		timeout := allowTimeout
		if !c.allowed {
			blocked++
			timeout = blockTimeout
			if c.proto == "tcp" {
				blockedTCP++
				timeout = retransmitWait
			}
		}
		wg.Go(func() { errs[i] = c.exchange(l, c.sport, timeout) })
	}
	wg.Wait()
	for i, c := range cases {
		if c.allowed {
			expectAllowed(t, c.name, errs[i])
		} else {
			expectBlocked(t, c.name, errs[i])
		}
	}

	for _, c := range cases {
		if c.want != nil {
			if _, ok := e.waitRecord(2*time.Second, c.matches); !ok {
				t.Errorf("%s: no flow-log record within 2s", c.name)
			}
		}
	}
	time.Sleep(300 * time.Millisecond) // let any duplicate arrive
	checkRecords(t, cases, e.records())
	if junk := e.junkLines(); len(junk) > 0 {
		t.Errorf("stdout has lines that are not flow-log records:\n%s", strings.Join(junk, "\n"))
	}

	stderr := e.stopClean()
	s := summary(t, stderr)
	if s["blocked_flows"] != uint64(blocked) {
		t.Errorf("engine counted %d blocked flows, want %d", s["blocked_flows"], blocked)
	}
	// Every blocked TCP flow had its SYN retransmitted, and the engine
	// dropped the retransmission without a new record.
	if least := uint64(blocked + blockedTCP); s["dropped"] < least {
		t.Errorf("engine dropped %d packets, want at least %d (%d blocked flows plus a retransmitted SYN for each of the %d TCP ones)",
			s["dropped"], least, blocked, blockedTCP)
	}
	if n := len(ourRules(t, l, false)); n != 0 {
		t.Errorf("%d nfqguard rules left after SIGTERM", n)
	}
}

func TestPublishedPortJudgedByContainerPort(t *testing.T) {
	t.Parallel()
	const cfg = `
[defaults]
ingress = "allow"
egress = "allow"

[[container]]
name = "web"
ips = ["172.17.0.2"]

  [[container.rule]]
  id = "%s"
  direction = "ingress"
  proto = "tcp"
  ports = ["%d"]
  action = "drop"
`
	t.Run("ContainerPort80Blocks", func(t *testing.T) {
		t.Parallel()
		l := netlabtest.New(t, netlab.Options{})
		web := l.Containers[0]
		must(t, l.ServeTCPEcho(web.NS, ap(web.Addr, 80)))
		must(t, tcpExchange(l, l.Out, 0, ap(l.HostOutside, 8080), allowTimeout)) // Docker alone lets it in
		e := startTestEngine(t, l, engineSection(true, false)+fmt.Sprintf(cfg, "web-no-80", 80))
		expectBlocked(t, "outside -> 203.0.113.1:8080 with a drop rule on container port 80",
			tcpExchange(l, l.Out, 41001, ap(l.HostOutside, 8080), blockTimeout))
		want := flowCase{name: "outside -> 8080", proto: "tcp", src: l.Outside, sport: 41001, dst: ap(web.Addr, 80),
			want: rec("blocked", "web-no-80", "web", "ingress", "tcp", l.Outside, 41001, ap(web.Addr, 80))}
		if _, ok := e.waitRecord(2*time.Second, want.matches); !ok {
			t.Errorf("no blocked record for 203.0.113.2:41001 -> 172.17.0.2:80 (the port after DNAT); records:\n%s", fmtRecords(e.records()))
		}
		checkRecords(t, []flowCase{want}, e.records())
		e.stopClean()
	})
	t.Run("HostPort8080DoesNotBlock", func(t *testing.T) {
		t.Parallel()
		l := netlabtest.New(t, netlab.Options{})
		web, db := l.Containers[0], l.Containers[1]
		must(t, l.ServeTCPEcho(web.NS, ap(web.Addr, 80)))
		must(t, l.ServeTCPEcho(web.NS, ap(web.Addr, 8080)))
		e := startTestEngine(t, l, engineSection(true, false)+fmt.Sprintf(cfg, "web-no-8080", 8080))
		expectAllowed(t, "outside -> 203.0.113.1:8080 (web:80) with a drop rule on port 8080",
			tcpExchange(l, l.Out, 41002, ap(l.HostOutside, 8080), allowTimeout))
		// The rule is in force: it blocks what really reaches web on 8080.
		expectBlocked(t, "db -> web:8080", tcpExchange(l, db.NS, 41003, ap(web.Addr, 8080), blockTimeout))
		cases := []flowCase{
			{name: "outside -> 8080", proto: "tcp", src: l.Outside, sport: 41002, dst: ap(web.Addr, 80)},
			{name: "db -> web:8080", proto: "tcp", src: db.Addr, sport: 41003, dst: ap(web.Addr, 8080),
				want: rec("blocked", "web-no-8080", "web", "ingress", "tcp", db.Addr, 41003, ap(web.Addr, 8080))},
		}
		e.waitRecord(2*time.Second, cases[1].matches)
		checkRecords(t, cases, e.records())
		e.stopClean()
	})
}

func TestRepliesOfAllowedFlowsPass(t *testing.T) {
	t.Parallel()
	for _, fast := range []bool{true, false} {
		t.Run(fmt.Sprintf("fast_path=%v", fast), func(t *testing.T) {
			t.Parallel()
			l := netlabtest.New(t, netlab.Options{})
			web := l.Containers[0]
			must(t, l.ServeTCPEcho(web.NS, ap(web.Addr, 80)))
			must(t, l.ServeTCPEcho(l.Out, ap(l.Outside, 9000)))
			must(t, l.ServeUDPEcho(l.Out, ap(l.Outside, 5300)))
			e := startTestEngine(t, l, engineSection(fast, false)+`
[defaults]
ingress = "allow"
egress = "allow"

[[container]]
name = "web"
ips = ["172.17.0.2"]
ingress = "drop"

  [[container.rule]]
  id = "web-out"
  direction = "egress"
  to = ["0.0.0.0/0"]
  action = "allow"
`)
			before := ruleCounter(t, l)
			expectAllowed(t, "web -> outside:9000/tcp", tcpExchange(l, web.NS, 42001, ap(l.Outside, 9000), allowTimeout))
			delta := ruleCounter(t, l) - before
			expectAllowed(t, "web -> outside:5300/udp", udpExchange(l, web.NS, 42002, ap(l.Outside, 5300), allowTimeout))
			expectAllowed(t, "web -> outside ping", l.Ping(web.NS, l.Outside, allowTimeout))
			if !fast && delta < 6 {
				// SYN, SYN-ACK, ACK, data, echoed data, FINs: with the fast
				// path off every one of them, replies included, is judged.
				t.Errorf("fast_path = false: the TCP exchange put %d packets through the queue, want every packet (>= 6)", delta)
			}
			// Web's ingress default is in force for flows web did not open.
			expectBlocked(t, "outside -> web:80 via 8080", tcpExchange(l, l.Out, 42003, ap(l.HostOutside, 8080), blockTimeout))
			c := flowCase{name: "outside -> 8080", proto: "tcp", src: l.Outside, sport: 42003, dst: ap(web.Addr, 80),
				want: rec("blocked", "default", "web", "ingress", "tcp", l.Outside, 42003, ap(web.Addr, 80))}
			e.waitRecord(2*time.Second, c.matches)
			checkRecords(t, []flowCase{c}, e.records())
			s := summary(t, e.stopClean())
			if s["blocked_flows"] != 1 {
				t.Errorf("engine blocked %d flows, want 1 (replies of allowed flows must not count as flows)", s["blocked_flows"])
			}
		})
	}
}

func TestUnpublishedPortStaysClosed(t *testing.T) {
	t.Parallel()
	for _, fast := range []bool{true, false} {
		t.Run(fmt.Sprintf("fast_path=%v", fast), func(t *testing.T) {
			t.Parallel()
			l := netlabtest.New(t, netlab.Options{})
			web, db := l.Containers[0], l.Containers[1]
			must(t, l.ServeTCPEcho(web.NS, ap(web.Addr, 80)))
			must(t, l.ServeTCPEcho(web.NS, ap(web.Addr, 81)))
			e := startTestEngine(t, l, allowAllConfig(fast, false))

			before := ruleCounter(t, l)
			expectBlocked(t, "outside -> 172.17.0.2:81 routed directly (not published)",
				tcpExchange(l, l.Out, 43001, ap(web.Addr, 81), blockTimeout))
			if ruleCounter(t, l) == before {
				t.Fatalf("the SYN to the unpublished port never reached the queue; the test proves nothing")
			}
			expectAllowed(t, "outside -> 203.0.113.1:8080 (published)", tcpExchange(l, l.Out, 43002, ap(l.HostOutside, 8080), allowTimeout))
			expectAllowed(t, "outside -> 172.17.0.2:80 routed directly (published container port)",
				tcpExchange(l, l.Out, 43003, ap(web.Addr, 80), allowTimeout))
			expectAllowed(t, "db -> web:81", tcpExchange(l, db.NS, 43004, ap(web.Addr, 81), allowTimeout))
			if recs := e.records(); len(recs) != 0 {
				t.Errorf("allow-all config wrote flow-log records:\n%s", fmtRecords(recs))
			}
			// The engine allowed everything; the drop was Docker's.
			s := summary(t, e.stopClean())
			if s["dropped"] != 0 || s["blocked_flows"] != 0 {
				t.Errorf("engine dropped %d packets (%d flows); with defaults allow it must drop none", s["dropped"], s["blocked_flows"])
			}
		})
	}
}

func TestExactlyOneRule(t *testing.T) {
	t.Parallel()
	l := netlabtest.New(t, netlab.Options{})
	web := l.Containers[0]
	must(t, l.ServeTCPEcho(web.NS, ap(web.Addr, 80)))
	original := iptablesSave(t, l, false)
	cfg := allowAllConfig(true, false)

	checkLayout := func(when string) {
		t.Helper()
		checkDockerUserLayout(t, l, false, when)
	}
	checkTraffic := func(when string, sport uint16) {
		t.Helper()
		before := ruleCounter(t, l)
		expectAllowed(t, when+": outside -> 8080", tcpExchange(l, l.Out, sport, ap(l.HostOutside, 8080), allowTimeout))
		if ruleCounter(t, l) == before {
			t.Errorf("%s: the NFQUEUE rule counted no packet of a new flow", when)
		}
	}

	e1 := startTestEngine(t, l, cfg)
	checkLayout("after the first start")
	checkTraffic("first engine", 44001)
	e1.kill()
	checkLayout("after SIGKILL (stale rules stay)")

	e2 := startTestEngine(t, l, cfg)
	checkLayout("after a start over stale rules")
	checkTraffic("second engine", 44002)
	e2.stopClean()
	if rules := ourRules(t, l, false); len(rules) != 0 {
		t.Fatalf("after SIGTERM nfqguard rules remain:\n%s", strings.Join(rules, "\n"))
	}
	checkSameFirewall(t, l, false, original, "after SIGTERM")

	e3 := startTestEngine(t, l, cfg)
	checkLayout("after a start following a clean stop")
	if _, err := e3.stop(syscall.SIGINT); err != nil {
		t.Fatalf("engine exited with %v after SIGINT", err)
	}
	checkSameFirewall(t, l, false, original, "after SIGINT")

	e4 := startTestEngine(t, l, allowAllConfig(false, false))
	rules := requireOurRules(t, l, false, 1, 0)
	if all := chainRules(t, l, false); len(all) != 5 || all[1] != rules[0] || dropTag(all[2]) != "invalid" || dropTag(all[3]) != "untracked" {
		t.Errorf("fast_path = false: want DOCKER-USER = [NFQUEUE redirect, INVALID drop, UNTRACKED drop, RETURN], got:\n%s", strings.Join(all, "\n"))
	}
	checkTraffic("fast_path = false", 44003)
	e4.stopClean()
	checkSameFirewall(t, l, false, original, "after SIGTERM with fast_path = false")

	// A killed fast-path run followed by a run without the fast path: the
	// stale companion goes too.
	e5 := startTestEngine(t, l, cfg)
	e5.kill()
	e6 := startTestEngine(t, l, allowAllConfig(false, false))
	requireOurRules(t, l, false, 1, 0)
	e6.stopClean()
	checkSameFirewall(t, l, false, original, "after a killed fast-path run replaced by one without")
}

func TestFailClosedAndFailOpen(t *testing.T) {
	t.Parallel()
	for _, failOpen := range []bool{false, true} {
		t.Run(fmt.Sprintf("fail_open=%v", failOpen), func(t *testing.T) {
			t.Parallel()
			l := netlabtest.New(t, netlab.Options{})
			web := l.Containers[0]
			must(t, l.ServeTCPEcho(web.NS, ap(web.Addr, 80)))
			e := startTestEngine(t, l, allowAllConfig(true, failOpen))
			rules := requireOurRules(t, l, false, 1, 1)
			if got := strings.Contains(rules[0], "--queue-bypass"); got != failOpen {
				t.Errorf("fail_open = %v but the NFQUEUE rule has --queue-bypass = %v: %s", failOpen, got, rules[0])
			}
			if !strings.Contains(e.stderr(), fmt.Sprintf("fail_open=%v", failOpen)) {
				t.Errorf("start-up log does not say fail_open=%v:\n%s", failOpen, e.stderr())
			}
			expectAllowed(t, "outside -> 8080 with the engine running", tcpExchange(l, l.Out, 45001, ap(l.HostOutside, 8080), allowTimeout))
			// A flow decided before the crash is in the kernel's fast path.
			deadline := time.Now().Add(allowTimeout)
			open, err := dialTCP(l, l.Out, 45002, ap(l.HostOutside, 8080), deadline)
			must(t, err)
			defer open.Close()

			e.kill()
			requireOurRules(t, l, false, 1, 1) // stale: nothing removed them
			err = tcpExchange(l, l.Out, 45003, ap(l.HostOutside, 8080), blockTimeout)
			if failOpen {
				expectAllowed(t, "fail_open = true, engine killed: outside -> 8080", err)
			} else {
				expectBlocked(t, "fail_open = false, engine killed: outside -> 8080", err)
			}
			expectAllowed(t, "flow opened (and fast-pathed) before the engine was killed", traffic.Echo(open, payload, time.Now().Add(allowTimeout)))
		})
	}
}

// bulkThrough sends n bytes through an echo server at dst from ns and
// reads them back.
func bulkThrough(t *testing.T, l *netlab.Lab, ns string, dst netip.AddrPort, n int64) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	c, err := dialTCP(l, ns, 0, dst, deadline)
	must(t, err)
	defer c.Close()
	must(t, c.SetDeadline(deadline))
	wr := make(chan error, 1)
	go func() {
		buf := make([]byte, 64<<10)
		var err error
		for sent := int64(0); sent < n && err == nil; sent += int64(len(buf)) {
			_, err = c.Write(buf[:min(int64(len(buf)), n-sent)])
		}
		if err == nil {
			err = c.CloseWrite()
		}
		wr <- err
	}()
	got, err := io.Copy(io.Discard, c)
	if werr := <-wr; werr != nil {
		t.Fatalf("bulk send: %v", werr)
	}
	if err != nil || got != n {
		t.Fatalf("bulk receive: got %d of %d bytes: %v", got, n, err)
	}
}

func TestFastPathBulk(t *testing.T) {
	t.Parallel()
	for _, fast := range []bool{true, false} {
		t.Run(fmt.Sprintf("fast_path=%v", fast), func(t *testing.T) {
			t.Parallel()
			l := netlabtest.New(t, netlab.Options{})
			web := l.Containers[0]
			must(t, l.ServeTCPEcho(web.NS, ap(web.Addr, 80)))
			e := startTestEngine(t, l, allowAllConfig(fast, false))
			const size = 20 << 20
			before := ruleCounter(t, l)
			bulkThrough(t, l, l.Out, ap(l.HostOutside, 8080), size)
			delta := ruleCounter(t, l) - before
			t.Logf("20 MiB echoed through a published port: %d packets went through the queue", delta)
			if fast && delta > 10 {
				t.Errorf("fast_path = true: %d packets of one bulk flow went through the queue, want at most 10", delta)
			}
			// The queue takes GSO packets whole (up to 64 KiB), so 2 x 20 MiB
			// is at least ~640 packets: still far above the fast path's 10.
			if !fast && delta < 300 {
				t.Errorf("fast_path = false: only %d packets of a 20 MiB flow went through the queue, want hundreds", delta)
			}
			e.stopClean()
		})
	}
}

func TestMissingChain(t *testing.T) {
	t.Parallel()
	l := netlabtest.New(t, netlab.Options{NoDockerUser: true})
	web := l.Containers[0]
	must(t, l.ServeTCPEcho(l.Out, ap(l.Outside, 9000)))
	must(t, l.ServeTCPEcho(l.Out, ap(l.Outside, 25)))
	original := iptablesSave(t, l, false)
	original6 := iptablesSave(t, l, true)
	cfg := noSMTPConfig(true)

	stderr, code := runEngineExpectFail(t, l, cfg, "--blocked-log", "stdout")
	if code != 1 || !strings.Contains(stderr, "DOCKER-USER") || !strings.Contains(stderr, "--create-chain") {
		t.Errorf("without DOCKER-USER: exit %d, stderr %q; want exit 1 naming DOCKER-USER and --create-chain", code, stderr)
	}
	checkSameFirewall(t, l, false, original, "after the refused start")
	checkSameFirewall(t, l, true, original6, "after the refused start")

	e := startTestEngine(t, l, cfg, "--create-chain")
	if fwd := nonEmptyLines(iptables(t, l, false, "-S", "FORWARD")); len(fwd) < 2 || !strings.Contains(fwd[1], "-j DOCKER-USER") {
		t.Errorf("--create-chain: FORWARD does not jump to DOCKER-USER first:\n%s", strings.Join(fwd, "\n"))
	}
	requireOurRules(t, l, false, 1, 1)
	expectAllowed(t, "web -> outside:9000", tcpExchange(l, web.NS, 46001, ap(l.Outside, 9000), allowTimeout))
	expectBlocked(t, "web -> outside:25", tcpExchange(l, web.NS, 46002, ap(l.Outside, 25), blockTimeout))
	c := flowCase{name: "web -> outside:25", proto: "tcp", src: web.Addr, sport: 46002, dst: ap(l.Outside, 25),
		want: rec("blocked", "web-no-smtp", "web", "egress", "tcp", web.Addr, 46002, ap(l.Outside, 25))}
	e.waitRecord(2*time.Second, c.matches)
	checkRecords(t, []flowCase{c}, e.records())

	e.stopClean()
	if out, err := l.IPTables(context.Background(), "-S", "DOCKER-USER"); err == nil {
		t.Errorf("DOCKER-USER still exists after SIGTERM:\n%s", out)
	}
	if fwd := iptables(t, l, false, "-S", "FORWARD"); strings.Contains(fwd, "DOCKER-USER") {
		t.Errorf("FORWARD still jumps to DOCKER-USER after SIGTERM:\n%s", fwd)
	}
	checkSameFirewall(t, l, false, original, "after SIGTERM of a --create-chain run")
	checkSameFirewall(t, l, true, original6, "after SIGTERM of a --create-chain run")
}

func TestBadConfigLeavesFirewallAlone(t *testing.T) {
	t.Parallel()
	l := netlabtest.New(t, netlab.Options{})
	original := iptablesSave(t, l, false)
	for _, tc := range []struct {
		name, cfg string
		line      int
		key       string
	}{
		{"malformed", "[engine]\nqueue = 0\nqueue = 1\n", 3, "engine.queue"},
		{"invalid", `[[container]]
name = "web"
ips = ["172.17.0.2"]

  [[container.rule]]
  id = "web-in"
  direction = "ingress"
  from = ["10.0.0.0/33"]
  action = "allow"
`, 8, "container[0].rule[0].from[0]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := writeConfig(t, tc.cfg)
			stderr, code := runExpectFail(t, l, binary(t), "run", "-c", cfg)
			if code != 1 {
				t.Errorf("exit status %d, want 1", code)
			}
			if loc := fmt.Sprintf("%s:%d:", cfg, tc.line); !strings.Contains(stderr, loc) || !strings.Contains(stderr, tc.key) {
				t.Errorf("stderr %q: want the place %q and the key %q", stderr, loc, tc.key)
			}
			if strings.Contains(stderr, "nfqguard running") {
				t.Errorf("engine started with a bad config:\n%s", stderr)
			}
			checkSameFirewall(t, l, false, original, "after a bad config")
		})
	}
}

func TestQueueAlreadyBound(t *testing.T) {
	t.Parallel()
	t.Run("DockerChain", func(t *testing.T) {
		t.Parallel()
		testQueueAlreadyBound(t, false)
	})
	// Engine A created DOCKER-USER itself (--create-chain); B, refused, must
	// not take A's chain with it.
	t.Run("CreatedChain", func(t *testing.T) {
		t.Parallel()
		testQueueAlreadyBound(t, true)
	})
}

func testQueueAlreadyBound(t *testing.T, createChain bool) {
	l := netlabtest.New(t, netlab.Options{NoDockerUser: createChain})
	web := l.Containers[0]
	must(t, l.ServeTCPEcho(l.Out, ap(l.Outside, 9000)))
	must(t, l.ServeTCPEcho(l.Out, ap(l.Outside, 25)))
	cfg := noSMTPConfig(true)
	var extra []string
	if createChain {
		extra = []string{"--create-chain"}
	}
	a := startTestEngine(t, l, cfg, extra...)
	rulesA := requireOurRules(t, l, false, 1, 1)
	forwardA := iptables(t, l, false, "-S", "FORWARD")

	stderr, code := runEngineExpectFail(t, l, cfg)
	if code != 1 || !strings.Contains(stderr, "already bound") {
		t.Errorf("second engine on queue 0: exit %d, stderr %q; want exit 1 and \"already bound\"", code, stderr)
	}
	// A still judges traffic ...
	expectAllowed(t, "A still allows web -> outside:9000", tcpExchange(l, web.NS, 47001, ap(l.Outside, 9000), allowTimeout))
	expectBlocked(t, "A still blocks web -> outside:25", tcpExchange(l, web.NS, 47002, ap(l.Outside, 25), blockTimeout))
	if _, ok := a.waitRecord(2*time.Second, func(r flowlog.Record) bool {
		return r.Event == "blocked" && r.Rule == "web-no-smtp" && r.SrcPort == 47002
	}); !ok {
		t.Errorf("A logged no blocked record for web -> outside:25; records:\n%s", fmtRecords(a.records()))
	}
	// ... because its rules are as they were.
	if forward := iptables(t, l, false, "-S", "FORWARD"); forward != forwardA {
		t.Errorf("the refused second engine changed FORWARD:\nbefore:\n%s\nafter:\n%s", forwardA, forward)
	}
	if out, err := l.IPTables(context.Background(), "-S", "DOCKER-USER"); err != nil {
		t.Fatalf("DOCKER-USER is gone after the refused second engine: %s", out)
	}
	rules := requireOurRules(t, l, false, 1, 1)
	if strings.Join(rules, "\n") != strings.Join(rulesA, "\n") {
		t.Errorf("the failed engine changed A's rules:\nbefore:\n%s\nafter:\n%s", strings.Join(rulesA, "\n"), strings.Join(rules, "\n"))
	}
	a.stopClean()
	if createChain {
		// A created DOCKER-USER, so A's clean exit removes it.
		if all := iptables(t, l, false, "-S"); strings.Contains(all, "DOCKER-USER") {
			t.Errorf("DOCKER-USER left after A's clean exit:\n%s", all)
		}
		return
	}
	requireOurRules(t, l, false, 0, 0)
}

func TestNotRoot(t *testing.T) {
	t.Parallel()
	l := netlabtest.New(t, netlab.Options{})
	setpriv, err := exec.LookPath("setpriv")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("setpriv (util-linux) is needed to drop root: %v", err)
		}
		t.Skipf("setpriv (util-linux) not found: %v", err)
	}
	original := iptablesSave(t, l, false)
	// Readable by nobody: t.TempDir is private to root.
	dir, err := os.MkdirTemp("", "nfqguard-nobody-")
	must(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	must(t, os.Chmod(dir, 0o755))
	cfg := filepath.Join(dir, "config.toml")
	must(t, os.WriteFile(cfg, []byte(allowAllConfig(true, false)), 0o644))

	stderr, code := runExpectFail(t, l, setpriv, "--reuid=65534", "--regid=65534", "--clear-groups",
		"--inh-caps=-all", "--bounding-set=-all", binary(t), "run", "-c", cfg)
	if code != 1 || !strings.Contains(stderr, "not permitted") || !strings.Contains(stderr, "CAP_NET_ADMIN") {
		t.Errorf("as nobody: exit %d, stderr %q; want exit 1, \"not permitted\" and what is needed (CAP_NET_ADMIN)", code, stderr)
	}
	checkSameFirewall(t, l, false, original, "after a run without privileges")
}

func TestBridgeNFWarning(t *testing.T) {
	t.Parallel()
	if _, err := os.Stat("/proc/sys/net/bridge/bridge-nf-call-iptables"); err != nil {
		netlabtest.Require(t)
		if os.Getenv("CI") == "true" {
			t.Fatalf("br_netfilter is not loaded: %v", err)
		}
		t.Skipf("br_netfilter is not loaded: %v", err)
	}
	for _, on := range []bool{false, true} {
		t.Run(fmt.Sprintf("bridge-nf=%v", on), func(t *testing.T) {
			t.Parallel()
			l := netlabtest.New(t, netlab.Options{BridgeNF: &on, Containers: 1})
			e := startTestEngine(t, l, allowAllConfig(true, false))
			stderr := e.stopClean()
			warned := strings.Contains(stderr, "level=WARN") && strings.Contains(stderr, "bridge-nf-call-iptables = 0")
			if warned == on {
				t.Errorf("bridge-nf-call-iptables = %v: warning present = %v, want %v; stderr:\n%s", on, warned, !on, stderr)
			}
			if on && strings.Contains(stderr, "bridge-nf-call-iptables") {
				t.Errorf("bridge netfilter on, but stderr mentions it:\n%s", stderr)
			}
		})
	}
}

func TestIPv6(t *testing.T) {
	t.Parallel()
	l := netlabtest.New(t, netlab.Options{IPv6: true})
	web := l.Containers[0]
	must(t, l.ServeTCPEcho(l.Out, ap(l.Outside6, 9000)))
	must(t, l.ServeTCPEcho(l.Out, ap(l.Outside6, 25)))
	must(t, l.ServeTCPEcho(l.Out, ap(l.Outside, 25)))
	original6 := iptablesSave(t, l, true)
	must(t, tcpExchange(l, web.NS, 0, ap(l.Outside6, 25), allowTimeout)) // Docker alone lets it out

	e := startTestEngine(t, l, noSMTPConfig(true))
	requireOurRules(t, l, true, 1, 1)
	requireOurRules(t, l, false, 1, 1)
	if !strings.Contains(e.stderr(), "IPv6:") {
		t.Errorf("start-up log does not name the IPv6 firewall:\n%s", e.stderr())
	}
	expectAllowed(t, "web -> [outside6]:9000", tcpExchange(l, web.NS, 48001, ap(l.Outside6, 9000), allowTimeout))
	expectAllowed(t, "web -> outside6 ping", l.Ping(web.NS, l.Outside6, allowTimeout))
	expectBlocked(t, "web -> [outside6]:25", tcpExchange(l, web.NS, 48002, ap(l.Outside6, 25), blockTimeout))
	expectBlocked(t, "web -> outside:25 (IPv4 still judged)", tcpExchange(l, web.NS, 48003, ap(l.Outside, 25), blockTimeout))
	cases := []flowCase{
		{name: "web -> [outside6]:25", proto: "tcp", src: web.Addr6, sport: 48002, dst: ap(l.Outside6, 25),
			want: rec("blocked", "web-no-smtp", "web", "egress", "tcp", web.Addr6, 48002, ap(l.Outside6, 25))},
		{name: "web -> outside:25", proto: "tcp", src: web.Addr, sport: 48003, dst: ap(l.Outside, 25),
			want: rec("blocked", "web-no-smtp", "web", "egress", "tcp", web.Addr, 48003, ap(l.Outside, 25))},
	}
	for _, c := range cases {
		e.waitRecord(2*time.Second, c.matches)
	}
	checkRecords(t, cases, e.records())
	e.stopClean()
	requireOurRules(t, l, true, 0, 0)
	checkSameFirewall(t, l, true, original6, "after SIGTERM")
}

func TestDemo(t *testing.T) {
	t.Parallel()
	netlabtest.Require(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, labBinary(t), "demo", "-c", "../../config.toml").CombinedOutput()
	if err != nil {
		t.Fatalf("demo: %v\n%s", err, out)
	}
	for _, want := range []string{"TRAFFIC", "RESULT", "ENGINE LOG", "reached", "blocked", "Lab removed",
		"blocked by web-no-pastebins (web egress 172.17.0.2:", "sni pastebin.com)", "http POST pastebin.com/raw/x)",
		"blocked by web-dns-deny", "qname c2.evil.example)", "8 of 14 exchanges reached",
		`msg="redirect restored" found=removed family=IPv4`, "published port 8080 again: reached", "redirect   in place; 1 event, last "} {
		if !strings.Contains(string(out), want) {
			t.Errorf("demo output lacks %q:\n%s", want, out)
		}
	}
}

// TestPingJudgedPerDirection: an echo request from web to db is a new flow
// judged by db's ingress rules, even when db recently pinged web with the
// same echo identifier (conntrack, too, tells the two apart).
func TestPingJudgedPerDirection(t *testing.T) {
	t.Parallel()
	l := netlabtest.New(t, netlab.Options{})
	web, db := l.Containers[0], l.Containers[1]
	e := startTestEngine(t, l, engineSection(true, false)+`
[defaults]
ingress = "allow"
egress = "allow"

[[container]]
name = "web"
ips = ["172.17.0.2"]
ingress = "drop"

  [[container.rule]]
  id = "web-ping"
  direction = "ingress"
  proto = "icmp"
  from = ["172.17.0.0/16"]
  action = "allow"

[[container]]
name = "db"
ips = ["172.17.0.3"]
ingress = "drop"
`)
	const id = 0x4e51
	expectBlocked(t, "web -> db ping, id 0x4e52 (db ingress default drop)", l.PingID(web.NS, db.Addr, id+1, blockTimeout))
	expectAllowed(t, "db -> web ping, id 0x4e51 (web-ping)", l.PingID(db.NS, web.Addr, id, allowTimeout))
	expectBlocked(t, "web -> db ping, id 0x4e51, right after db pinged web with that id",
		l.PingID(web.NS, db.Addr, id, blockTimeout))
	blocked := func(r flowlog.Record) bool {
		return r.Event == "blocked" && r.Proto == "icmp" && r.Src == web.Addr.String() && r.Dst == db.Addr.String()
	}
	e.waitFor(2*time.Second, func() bool {
		n := 0
		for _, r := range e.recs {
			if blocked(r) {
				n++
			}
		}
		return n >= 2
	})
	var ids []uint16
	for _, r := range e.records() {
		if blocked(r) {
			ids = append(ids, r.SrcPort)
		}
	}
	if len(ids) != 2 || ids[0] != id+1 || ids[1] != id {
		t.Errorf("want blocked records for web -> db pings with ids %d and %d, got ids %v; records:\n%s",
			id+1, id, ids, fmtRecords(e.records()))
	}
	e.stopClean()
}

// TestExistingFlowsSurviveStart: a connection open before the engine starts
// is not cut, even though the rules refuse new ones like it.
func TestExistingFlowsSurviveStart(t *testing.T) {
	t.Parallel()
	for _, fast := range []bool{true, false} {
		t.Run(fmt.Sprintf("fast_path=%v", fast), func(t *testing.T) {
			t.Parallel()
			l := netlabtest.New(t, netlab.Options{})
			web := l.Containers[0]
			must(t, l.ServeTCPEcho(web.NS, ap(web.Addr, 80)))
			old, err := dialTCP(l, l.Out, 49001, ap(l.HostOutside, 8080), time.Now().Add(allowTimeout))
			must(t, err)
			defer old.Close()
			// Both directions refused: a packet of the old connection
			// passes neither as web's ingress nor as its egress.
			e := startTestEngine(t, l, engineSection(fast, false)+`
[[container]]
name = "web"
ips = ["172.17.0.2"]
ingress = "drop"
egress = "drop"
`)
			expectBlocked(t, "new outside -> 8080", tcpExchange(l, l.Out, 49002, ap(l.HostOutside, 8080), blockTimeout))
			expectAllowed(t, "connection opened before the engine started", traffic.Echo(old, payload, time.Now().Add(allowTimeout)))
			e.stopClean()
		})
	}
}

// TestICMPErrorsFollowFlow: the "port unreachable" answering web's
// datagram comes back as ingress to web, whose ingress default is drop; it
// follows the verdict of the allowed flow it quotes.
func TestICMPErrorsFollowFlow(t *testing.T) {
	t.Parallel()
	for _, fast := range []bool{true, false} {
		t.Run(fmt.Sprintf("fast_path=%v", fast), func(t *testing.T) {
			t.Parallel()
			l := netlabtest.New(t, netlab.Options{})
			web := l.Containers[0]
			e := startTestEngine(t, l, engineSection(fast, false)+`
[[container]]
name = "web"
ips = ["172.17.0.2"]
ingress = "drop"
`)
			err := udpExchange(l, web.NS, 50001, ap(l.Outside, 5399), allowTimeout)
			if !errors.Is(err, syscall.ECONNREFUSED) {
				t.Errorf("web -> outside:5399/udp (nothing listens): want the ICMP port unreachable to arrive (connection refused), got %v", err)
			}
			if recs := e.records(); len(recs) != 0 {
				t.Errorf("flow log has records for an allowed flow and its ICMP error:\n%s", fmtRecords(recs))
			}
			s := summary(t, e.stopClean())
			if s["dropped"] != 0 {
				t.Errorf("engine dropped %d packets, want 0", s["dropped"])
			}
		})
	}
}

// TestUnlistedContainersGetDefaults: a container behind docker0 that no
// [[container]] lists is judged by [defaults]; its records have an empty
// container name.
func TestUnlistedContainersGetDefaults(t *testing.T) {
	t.Parallel()
	l := netlabtest.New(t, netlab.Options{Containers: 3})
	web, db, c3 := l.Containers[0], l.Containers[1], l.Containers[2]
	must(t, l.ServeTCPEcho(db.NS, ap(db.Addr, 7000)))
	must(t, l.ServeTCPEcho(c3.NS, ap(c3.Addr, 7000)))
	must(t, l.ServeTCPEcho(l.Out, ap(l.Outside, 9000)))
	e := startTestEngine(t, l, engineSection(true, false)+`
[defaults]
ingress = "drop"
egress = "drop"

[[container]]
name = "web"
ips = ["172.17.0.2"]
ingress = "allow"
egress = "allow"
`)
	cases := []flowCase{
		{name: "web -> unlisted db:7000 (db ingress: [defaults] drop)", proto: "tcp", ns: web.NS, src: web.Addr, sport: 51001,
			dst: ap(db.Addr, 7000), want: rec("blocked", "default", "", "ingress", "tcp", web.Addr, 51001, ap(db.Addr, 7000))},
		{name: "unlisted c3 -> outside:9000 (egress: [defaults] drop)", proto: "tcp", ns: c3.NS, src: c3.Addr, sport: 51002,
			dst: ap(l.Outside, 9000), want: rec("blocked", "default", "", "egress", "tcp", c3.Addr, 51002, ap(l.Outside, 9000))},
		{name: "web -> outside:9000 (web egress allow)", proto: "tcp", ns: web.NS, src: web.Addr, sport: 51003,
			dst: ap(l.Outside, 9000), allowed: true},
	}
	for _, c := range cases {
		if c.allowed {
			expectAllowed(t, c.name, c.exchange(l, c.sport, allowTimeout))
			continue
		}
		expectBlocked(t, c.name, c.exchange(l, c.sport, blockTimeout))
		e.waitRecord(2*time.Second, c.matches)
	}
	checkRecords(t, cases, e.records())
	e.stopClean()
}

// TestBlockedLogFile: with a file as the blocked-flow log, records are
// appended there as JSON lines and stdout stays empty.
func TestBlockedLogFile(t *testing.T) {
	t.Parallel()
	l := netlabtest.New(t, netlab.Options{})
	web := l.Containers[0]
	must(t, l.ServeTCPEcho(l.Out, ap(l.Outside, 25)))
	logPath := filepath.Join(t.TempDir(), "blocked.jsonl")
	must(t, os.WriteFile(logPath, []byte("{\"event\":\"earlier\"}\n"), 0o600))
	e := startTestEngine(t, l, noSMTPConfig(true), "--blocked-log", logPath)
	expectBlocked(t, "web -> outside:25", tcpExchange(l, web.NS, 52001, ap(l.Outside, 25), blockTimeout))
	time.Sleep(300 * time.Millisecond)
	e.stopClean()
	if recs, junk := e.records(), e.junkLines(); len(recs)+len(junk) != 0 {
		t.Errorf("stdout is not empty with a log file:\n%s%s", fmtRecords(recs), strings.Join(junk, "\n"))
	}
	data, err := os.ReadFile(logPath)
	must(t, err)
	lines := nonEmptyLines(string(data))
	// The earlier line, the flow's block, and its end when the engine stopped.
	if len(lines) != 3 || lines[0] != `{"event":"earlier"}` {
		t.Fatalf("log file: want the earlier line, the blocked record and its end, got:\n%s", data)
	}
	var r, end flowlog.Record
	must(t, json.Unmarshal([]byte(lines[1]), &r))
	c := flowCase{name: "web -> outside:25", proto: "tcp", src: web.Addr, sport: 52001, dst: ap(l.Outside, 25),
		want: rec("blocked", "web-no-smtp", "web", "egress", "tcp", web.Addr, 52001, ap(l.Outside, 25))}
	checkRecords(t, []flowCase{c}, []flowlog.Record{r})
	must(t, json.Unmarshal([]byte(lines[2]), &end))
	if end.Event != "end" || end.Rule != "web-no-smtp" || end.SrcPort != 52001 || end.Packets < 1 || end.Bytes < 40 || end.Start.IsZero() {
		t.Errorf("end record = %s", lines[2])
	}
}

func TestSecondEngineOnOtherQueuesRefused(t *testing.T) {
	t.Parallel()
	l := netlabtest.New(t, netlab.Options{})
	web := l.Containers[0]
	must(t, l.ServeTCPEcho(l.Out, ap(l.Outside, 25)))
	a := startTestEngine(t, l, noSMTPConfig(true))
	rulesA := requireOurRules(t, l, false, 1, 1)

	// B could bind its own queues, but taking over DOCKER-USER would cut
	// A out: it must refuse and leave A's rules alone.
	other := strings.Replace(noSMTPConfig(true), "queue = 0", "queue = 7", 1)
	stderr, code := runEngineExpectFail(t, l, other)
	if code != 1 || !strings.Contains(stderr, "another nfqguard is running") {
		t.Errorf("second engine on queue 7: exit %d, stderr %q; want exit 1 and \"another nfqguard is running\"", code, stderr)
	}
	if rules := requireOurRules(t, l, false, 1, 1); strings.Join(rules, "\n") != strings.Join(rulesA, "\n") {
		t.Errorf("refused engine changed A's rules:\n%s", strings.Join(rules, "\n"))
	}
	expectBlocked(t, "A still blocks web -> outside:25", tcpExchange(l, web.NS, 47102, ap(l.Outside, 25), blockTimeout))
	a.stopClean()
}

func TestStatsJSON(t *testing.T) {
	t.Parallel()
	l := netlabtest.New(t, netlab.Options{})
	web := l.Containers[0]
	must(t, l.ServeTCPEcho(l.Out, ap(l.Outside, 9000)))
	must(t, l.ServeTCPEcho(l.Out, ap(l.Outside, 25)))
	path := filepath.Join(t.TempDir(), "stats.json")
	e := startTestEngine(t, l, noSMTPConfig(false), "--stats-json", path)
	expectAllowed(t, "web -> outside:9000", tcpExchange(l, web.NS, 47201, ap(l.Outside, 9000), allowTimeout))
	expectBlocked(t, "web -> outside:25", tcpExchange(l, web.NS, 47202, ap(l.Outside, 25), blockTimeout))
	e.stopClean()

	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("no stats file after a clean stop: %v", err)
	}
	var s queue.Summary
	if err := json.Unmarshal(b, &s); err != nil {
		t.Fatalf("stats file is not a queue.Summary: %v\n%s", err, b)
	}
	// Per-packet mode: the allowed exchange alone is several packets each way.
	if s.Flows != 2 || s.BlockedFlows != 1 || s.Allowed < 6 || s.Dropped < 1 || s.Packets != s.Allowed+s.Dropped {
		t.Errorf("stats = %+v, want 2 flows, 1 blocked, ≥6 allowed packets, ≥1 dropped, packets = allowed + dropped", s)
	}
	if s.Latency.Count != s.Packets || s.Latency.P50 <= 0 || s.Latency.P99 < s.Latency.P50 {
		t.Errorf("verdict latency = %+v, want one observation per packet and ordered percentiles", s.Latency)
	}
}
