package e2e

// The redirect under disturbance: other programs rewrite the firewall while
// the engine runs, under continuous traffic, and the engine puts its rules
// back (or reports a rule of the operator's above them) while a port its
// rules block is probed every 10 ms and an allowed one too.

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nfqguard/nfqguard/control"
	"github.com/nfqguard/nfqguard/firewall"
	"github.com/nfqguard/nfqguard/internal/netlab"
	"github.com/nfqguard/nfqguard/internal/netlab/netlabtest"
	"github.com/nfqguard/nfqguard/internal/traffic"
)

// Probing: a new connection to each port every probeEvery, each given
// probeTimeout to connect (blocked) or to echo (allowed).
const (
	probeEvery          = 10 * time.Millisecond
	blockedProbeTimeout = 250 * time.Millisecond
	allowedProbeTimeout = 500 * time.Millisecond
)

// redirectConfig allows everything but tcp/8000 into web.
const redirectConfig = `
[defaults]
ingress = "allow"
egress = "allow"

[[container]]
name = "web"
ips = ["172.17.0.2"]

  [[container.rule]]
  id = "web-no-8000"
  direction = "ingress"
  proto = "tcp"
  ports = ["8000"]
  action = "drop"
`

// prober opens a new connection to a blocked and to an allowed published
// port every probeEvery, until stopped. What reached the blocked port is
// counted by the server behind it (arrivals), or by the test's own
// counters; the prober counts the blocked probes that connected anyway,
// and records when each allowed probe that succeeded began.
type prober struct {
	stop chan struct{}
	wg   sync.WaitGroup

	mu               sync.Mutex
	allowedOK        []time.Time // start of each allowed probe that succeeded
	allowed          int         // allowed probes begun
	blocked          int         // blocked probes begun
	blockedConnected int         // blocked probes whose connection was established
}

// startProber probes from l's outside namespace, from ephemeral source
// ports.
func startProber(t *testing.T, l *netlab.Lab, blocked, allowed netip.AddrPort) *prober {
	return startProberFrom(t, l.NSPath(l.Out), blocked, allowed, 0, 0)
}

// proberPorts is how many source ports, from a prober's first, its probes
// of one port take in turn.
const proberPorts = 10000

// startProberFrom probes from the namespace at nsPath. With
// blockedSport and allowedSport not 0, the probes of each port take the
// source ports from that one on in turn, one each, proberPorts of them
// (keep them below the ephemeral range), so that no probe meets the
// conntrack state of another; 0 lets the kernel choose.
func startProberFrom(t *testing.T, nsPath string, blocked, allowed netip.AddrPort, blockedSport, allowedSport uint16) *prober {
	p := &prober{stop: make(chan struct{})}
	sport := func(first uint16, n int) uint16 {
		if first == 0 {
			return 0
		}
		return first + uint16(n%proberPorts)
	}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		tick := time.NewTicker(probeEvery)
		defer tick.Stop()
		for n := 0; ; n++ {
			select {
			case <-p.stop:
				return
			case <-tick.C:
			}
			p.mu.Lock()
			p.blocked++
			p.allowed++
			p.mu.Unlock()
			bport, aport := sport(blockedSport, n), sport(allowedSport, n)
			p.wg.Add(2)
			go func() {
				defer p.wg.Done()
				if c, err := traffic.DialTCP(nsPath, bport, blocked, time.Now().Add(blockedProbeTimeout)); err == nil {
					c.Close()
					p.mu.Lock()
					p.blockedConnected++
					p.mu.Unlock()
				}
			}()
			go func() {
				defer p.wg.Done()
				begin := time.Now()
				if traffic.TCPExchange(nsPath, aport, allowed, payload, allowedProbeTimeout) == nil {
					p.mu.Lock()
					p.allowedOK = append(p.allowedOK, begin)
					p.mu.Unlock()
				}
			}()
		}
	}()
	t.Cleanup(p.close)
	return p
}

// close stops the probes and waits for those under way.
func (p *prober) close() {
	select {
	case <-p.stop:
	default:
		close(p.stop)
	}
	p.wg.Wait()
}

// allowedSince counts the allowed probes begun at or after t that
// succeeded.
func (p *prober) allowedSince(t time.Time) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
	for _, b := range p.allowedOK {
		if !b.Before(t) {
			n++
		}
	}
	return n
}

// counts returns the probes of each port begun so far, the blocked ones
// that connected, and the start of each allowed one that succeeded.
func (p *prober) counts() (blocked, allowed, blockedConnected int, allowedOK []time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.blocked, p.allowed, p.blockedConnected, append([]time.Time(nil), p.allowedOK...)
}

// redirectRig is one engine in one lab, with its probes.
type redirectRig struct {
	t       *testing.T
	l       *netlab.Lab
	e       *engine
	sock    string
	probes  *prober
	arrived func() int // connections that reached the blocked port so far
}

// iptables runs the backend's iptables in the host namespace.
func (r *redirectRig) iptables(args ...string) {
	r.t.Helper()
	if out, err := r.l.IPTables(context.Background(), args...); err != nil {
		r.t.Fatalf("iptables %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// restore feeds script to the backend's iptables-restore in the host
// namespace.
func (r *redirectRig) restore(script string, args ...string) {
	r.t.Helper()
	bin := "iptables-restore"
	if r.l.Backend == netlab.BackendLegacy {
		bin = "iptables-legacy-restore"
	}
	cmd := r.l.Command(context.Background(), r.l.Host, bin, append([]string{"-w"}, args...)...)
	cmd.Stdin = strings.NewReader(script)
	if out, err := cmd.CombinedOutput(); err != nil {
		r.t.Fatalf("%s: %v\n%s\nscript:\n%s", bin, err, out, script)
	}
}

// statusJSON returns `nfqguard status --json` of the engine at sock.
func statusJSON(t testing.TB, sock string) control.Status {
	t.Helper()
	out, err := exec.Command(binary(t), "status", "--socket", sock, "--json").Output()
	if err != nil {
		t.Fatalf("nfqguard status --json: %v", err)
	}
	var st control.Status
	must(t, json.Unmarshal(out, &st))
	return st
}

// waitStatus waits up to 5 s for the status to satisfy ok.
func (r *redirectRig) waitStatus(what string, ok func(control.Status) bool) control.Status {
	r.t.Helper()
	return waitStatus(r.t, r.sock, what, ok)
}

// waitStatus waits up to 5 s for the status of the engine at sock to
// satisfy ok.
func waitStatus(t testing.TB, sock, what string, ok func(control.Status) bool) control.Status {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		st := statusJSON(t, sock)
		if ok(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("status: not %s within 5 s: %+v", what, st.Redirect)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// events returns nfqguard_redirect_events_total by event.
func (r *redirectRig) events() map[string]float64 {
	r.t.Helper()
	mf, err := scrapeMetrics(r.l)
	if err != nil {
		r.t.Fatalf("scrape: %v", err)
	}
	out := map[string]float64{}
	for _, m := range mf["nfqguard_redirect_events_total"].GetMetric() {
		for _, lp := range m.GetLabel() {
			if lp.GetName() == "event" {
				out[lp.GetValue()] = m.GetCounter().GetValue()
			}
		}
	}
	out["in_place"] = metricValue(mf, "nfqguard_redirect_in_place")
	return out
}

// logLines returns the engine's log lines with msg, each as its fields.
func logLines(stderr, msg string) []map[string]string {
	var out []map[string]string
	for _, line := range strings.Split(stderr, "\n") {
		if !strings.Contains(line, fmt.Sprintf("msg=%q ", msg)) && !strings.HasPrefix(line, fmt.Sprintf("msg=%q", msg)) {
			continue
		}
		fields := map[string]string{}
		for _, f := range strings.Fields(line) {
			if k, v, ok := strings.Cut(f, "="); ok {
				fields[k] = v
			}
		}
		out = append(out, fields)
	}
	return out
}

// foundSince returns the event kinds of log lines[from:] (found=a,b).
func foundSince(lines []map[string]string, from int) []string {
	var found []string
	for _, ln := range lines[min(from, len(lines)):] {
		found = append(found, strings.Split(ln["found"], ",")...)
	}
	return found
}

// disturbance is one way of rewriting the firewall under the engine.
type disturbance struct {
	name string
	// do rewrites the firewall; after, if set, runs once the engine has
	// reacted (what Docker or the operator does next).
	do, after func(r *redirectRig)
	// found are the event kinds the engine must report for it.
	found []string
	// guarded: the guard stays in place meanwhile, so no probe of the
	// blocked port may get through. Otherwise the count is reported only.
	guarded bool
}

// TestRedirectDisturbances: each way other programs rewrite DOCKER-USER
// under continuous traffic, on both iptables backends. The engine puts
// exactly one redirect back, logs and counts each event, allowed flows
// resume, and no probe of the blocked port reaches the container while
// the guard holds; the test reports the time to restore and the probes
// that got through in each case.
func TestRedirectDisturbances(t *testing.T) {
	t.Parallel()
	for _, backend := range []string{netlab.BackendNFT, netlab.BackendLegacy} {
		t.Run(backend, func(t *testing.T) {
			t.Parallel()
			testRedirectDisturbances(t, backend)
		})
	}
}

func testRedirectDisturbances(t *testing.T, backend string) {
	l := netlabtest.New(t, netlab.Options{Backend: backend, Publish: []netlab.Publish{
		{HostPort: 8080, Container: 0, ContainerPort: 80, Proto: "tcp"},
		{HostPort: 8000, Container: 0, ContainerPort: 8000, Proto: "tcp"},
	}})
	web := l.Containers[0]
	must(t, l.ServeTCPEcho(web.NS, ap(web.Addr, 80)))
	blockedSrv := servePeers(t, l, web.NS, ap(web.Addr, 8000))
	original := iptablesSave(t, l, false)
	saveBin := "iptables-save"
	if backend == netlab.BackendLegacy {
		saveBin = "iptables-legacy-save"
	}
	// A ruleset saved before nfqguard ran: Docker's chains, none of ours,
	// no mangle table.
	preSave, err := l.Command(context.Background(), l.Host, saveBin).Output()
	must(t, err)

	sock := testSocket(t)
	cfg := writeConfig(t, engineSection(true, false)+redirectConfig)
	r := &redirectRig{t: t, l: l, sock: sock, arrived: func() int { return blockedSrv.from(l.Outside) }}
	r.e = runEngine(t, l.Command(context.Background(), l.Host, binary(t),
		"run", "-c", cfg, "--blocked-log", "stdout", "--status-socket", sock))
	checkDockerUserLayout(t, l, false, "at start")
	expectAllowed(t, "outside -> 8080", tcpExchange(l, l.Out, 0, ap(l.HostOutside, 8080), allowTimeout))
	expectBlocked(t, "outside -> 8000", tcpExchange(l, l.Out, 0, ap(l.HostOutside, 8000), blockTimeout))
	if n := r.arrived(); n != 0 {
		t.Fatalf("before any disturbance %d connections reached the blocked port", n)
	}
	r.probes = startProber(t, l, ap(l.HostOutside, 8000), ap(l.HostOutside, 8080))

	disturbances := []disturbance{
		{name: "iptables -F DOCKER-USER", found: []string{firewall.EventRemoved}, guarded: true,
			do: func(r *redirectRig) { r.iptables("-F", "DOCKER-USER") },
			// Docker's RETURN went too; put it back as Docker would.
			after: func(r *redirectRig) { r.iptables("-A", "DOCKER-USER", "-j", "RETURN") }},
		{name: "iptables-restore of a ruleset saved before nfqguard", found: []string{firewall.EventRemoved}, guarded: true,
			do: func(r *redirectRig) { r.restore(string(preSave)) }},
		{name: "iptables-restore of every table, mangle included", found: []string{firewall.EventRemoved, firewall.EventGuardRemoved},
			do: func(r *redirectRig) {
				r.restore(string(preSave) + "*mangle\n:PREROUTING ACCEPT [0:0]\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n" +
					":OUTPUT ACCEPT [0:0]\n:POSTROUTING ACCEPT [0:0]\nCOMMIT\n")
			}},
		{name: "iptables -D FORWARD -j DOCKER-USER, then Docker's re-insert", found: []string{firewall.EventJumpMissing}, guarded: true,
			do: func(r *redirectRig) { r.iptables("-D", "FORWARD", "-j", "DOCKER-USER") },
			after: func(r *redirectRig) {
				fwd := chainLines(r, "FORWARD")
				if len(fwd) < 2 || !strings.Contains(fwd[1], "nfqguard-jump") {
					r.t.Errorf("FORWARD while Docker's jump is missing:\n%s\nwant nfqguard's jump first", strings.Join(fwd, "\n"))
				}
				r.iptables("-I", "FORWARD", "-j", "DOCKER-USER")
				r.waitChain("FORWARD", "nfqguard's jump gone once Docker's is back", func(rs []string) bool {
					return !strings.Contains(strings.Join(rs, "\n"), "nfqguard-jump") && len(rs) > 1 && rs[1] == "-A FORWARD -j DOCKER-USER"
				})
			}},
		{name: "a duplicate of the redirect added by hand", found: []string{firewall.EventDuplicated}, guarded: true,
			do: func(r *redirectRig) {
				redirect := strings.Fields(strings.TrimPrefix(chainLines(r, "DOCKER-USER")[1], "-A DOCKER-USER "))
				r.iptables(append([]string{"-I", "DOCKER-USER", "1"}, redirect...)...)
			}},
	}
	type result struct {
		name              string
		took, observed    time.Duration
		leaked, allowedOK int
	}
	var results []result
	for _, d := range disturbances {
		before := r.events()
		restoredBefore := len(logLines(r.e.stderr(), "redirect restored"))
		arrivedBefore := r.arrived()
		begin := time.Now()
		d.do(r)
		// Every kind must be logged: a look may see one table changed
		// before the other (iptables-restore commits table by table).
		if !r.e.waitFor(5*time.Second, func() bool {
			found := foundSince(logLines(r.e.errOut.String(), "redirect restored"), restoredBefore)
			return !slices.ContainsFunc(d.found, func(k string) bool { return !slices.Contains(found, k) })
		}) {
			t.Fatalf("%s: \"redirect restored\" with found=%v not logged within 5 s; stderr:\n%s", d.name, d.found, r.e.stderr())
		}
		observed := time.Since(begin)
		if d.after != nil {
			d.after(r)
		}
		st := r.waitStatus("in place", func(st control.Status) bool { return st.Redirect.InPlace })
		checkDockerUserLayout(t, l, false, "after "+d.name)
		lines := logLines(r.e.stderr(), "redirect restored")[restoredBefore:]
		found := foundSince(lines, 0)
		var took time.Duration
		for _, ln := range lines {
			if ln["family"] != "IPv4" {
				t.Errorf("%s: logged %v, want family=IPv4", d.name, ln)
			}
			dur, err := time.ParseDuration(ln["took"])
			if err != nil {
				t.Errorf("%s: logged took=%q: %v", d.name, ln["took"], err)
			}
			took = max(took, dur)
		}
		// The probes under way when the rules came back get their answer
		// (or time out) before the count.
		time.Sleep(blockedProbeTimeout + 100*time.Millisecond)
		leaked := r.arrived() - arrivedBefore
		after := r.events()
		for _, k := range d.found {
			if !slices.Contains(found, k) {
				t.Errorf("%s: logged found=%v, want %s among them", d.name, found, k)
			}
			if after[k] <= before[k] {
				t.Errorf("%s: nfqguard_redirect_events_total{event=%q} = %v, was %v: want it counted", d.name, k, after[k], before[k])
			}
			if st.Redirect.ByEvent[k] == 0 {
				t.Errorf("%s: status --json redirect.by_event = %v, no %s", d.name, st.Redirect.ByEvent, k)
			}
		}
		if after["in_place"] != 1 || st.Redirect.State != "in place" || st.Redirect.LastEvent == nil {
			t.Errorf("%s: after the restore nfqguard_redirect_in_place = %v, status redirect = %+v", d.name, after["in_place"], st.Redirect)
		}
		if d.guarded && leaked != 0 {
			t.Errorf("%s: %d connections reached the blocked port while the guard held", d.name, leaked)
		}
		// Allowed flows resume.
		resumed := time.Now()
		deadline := resumed.Add(3 * time.Second)
		for r.probes.allowedSince(resumed) == 0 && time.Now().Before(deadline) {
			time.Sleep(20 * time.Millisecond)
		}
		if r.probes.allowedSince(resumed) == 0 {
			t.Errorf("%s: no allowed probe succeeded within 3 s of the restore", d.name)
		}
		results = append(results, result{d.name, took, observed, leaked, r.probes.allowedSince(resumed)})
	}

	// A rule of the operator's above the redirect is reported, not removed.
	t.Run("ACCEPT above the redirect", func(t *testing.T) {
		r.t = t
		arrivedBefore := r.arrived()
		r.iptables("-I", "DOCKER-USER", "-j", "ACCEPT")
		if !waitLog(t, r.e, 5*time.Second, "redirect shadowed: traffic this rule ends the walk for is not judged",
			"found=shadowed", "family=IPv4") {
			t.Fatalf("no \"redirect shadowed\" log line; stderr:\n%s", r.e.stderr())
		}
		if !strings.Contains(r.e.stderr(), `rule="-A DOCKER-USER -j ACCEPT"`) {
			t.Errorf("the shadowed log line does not name the rule:\n%s", r.e.stderr())
		}
		st := r.waitStatus("shadowed", func(st control.Status) bool { return st.Redirect.State == "shadowed" })
		if st.Redirect.InPlace || !strings.Contains(st.Redirect.ShadowedBy, "-A DOCKER-USER -j ACCEPT") || st.Redirect.ByEvent[firewall.EventShadowed] == 0 {
			t.Errorf("status while shadowed: %+v", st.Redirect)
		}
		if ev := r.events(); ev["in_place"] != 0 || ev[firewall.EventShadowed] == 0 {
			t.Errorf("metrics while shadowed: %v, want nfqguard_redirect_in_place 0 and a shadowed event", ev)
		}
		// Not fought: a second later the operator's rule is still first,
		// and it does what the operator meant (the guard, which would drop
		// what it accepts, stepped aside).
		time.Sleep(time.Second)
		if du := chainLines(r, "DOCKER-USER"); len(du) < 2 || du[1] != "-A DOCKER-USER -j ACCEPT" {
			t.Errorf("the operator's rule was moved or removed:\n%s", strings.Join(du, "\n"))
		}
		passed := r.arrived() - arrivedBefore
		if passed == 0 {
			t.Errorf("no probe of port 8000 passed the operator's ACCEPT: the guard fought it")
		}
		r.iptables("-D", "DOCKER-USER", "-j", "ACCEPT")
		r.waitStatus("in place again", func(st control.Status) bool { return st.Redirect.InPlace && st.Redirect.State == "in place" })
		checkDockerUserLayout(t, l, false, "after the operator's ACCEPT went")
		time.Sleep(blockedProbeTimeout + 100*time.Millisecond)
		quiet := r.arrived()
		time.Sleep(500 * time.Millisecond)
		if n := r.arrived() - quiet; n != 0 {
			t.Errorf("%d probes of port 8000 reached web after the operator's ACCEPT went", n)
		}
		t.Logf("%s: while shadowed by -j ACCEPT, %d probes of port 8000 passed (the operator's rule, as meant)", backend, passed)
	})
	r.t = t

	r.probes.close()
	for _, res := range results {
		t.Logf("%s: %-58s restored in %v (engine), %v from the change seen by the test; %d probes of the blocked port got through; allowed probes resumed (%d by the check)",
			backend, res.name, res.took.Round(10*time.Microsecond), res.observed.Round(100*time.Microsecond), res.leaked, res.allowedOK)
	}
	r.e.stopClean()
	checkSameFirewall(t, l, false, original, "after SIGTERM")
}

// chainLines returns `iptables -S CHAIN` of the rig's host namespace.
func chainLines(r *redirectRig, chain string) []string {
	r.t.Helper()
	return nonEmptyLines(iptables(r.t, r.l, false, "-S", chain))
}

// waitChain waits up to 5 s until `iptables -S CHAIN` satisfies ok.
func (r *redirectRig) waitChain(chain, what string, ok func([]string) bool) {
	r.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !ok(chainLines(r, chain)) {
		if time.Now().After(deadline) {
			r.t.Fatalf("%s: not within 5 s:\n%s", what, strings.Join(chainLines(r, chain), "\n"))
		}
		time.Sleep(20 * time.Millisecond)
	}
}
