package e2e

// dockerd restarts under traffic (issue 15): the private dockerd of
// package internal/dockerlab is restarted, as `systemctl restart docker`
// does, and stopped then started again, while the engine runs with rules
// keyed by the container's name and a blocked and an allowed published
// port are probed every probeEvery. Source ports 10000-29999 are the
// probes' (see startProberFrom), 30xxx this file's other exchanges; the
// test has a Docker of its own, so no other test's flows meet them.

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nfqguard/nfqguard/control"
	"github.com/nfqguard/nfqguard/firewall"
	"github.com/nfqguard/nfqguard/flowlog"
	"github.com/nfqguard/nfqguard/internal/dockerlab"
	"github.com/nfqguard/nfqguard/internal/dockerlab/dockerlabtest"
	"github.com/nfqguard/nfqguard/internal/netns"
)

// The ports of web: 8080 → 80 is allowed, 8000 → 8000 blocked, by rules
// keyed by web's name only.
const (
	restartAllowedPort = 8080
	restartBlockedPort = 8000
	restartConfig      = `
[[container]]
name = "web"

  [[container.rule]]
  id = "web-no-8000"
  direction = "ingress"
  proto = "tcp"
  ports = ["8000"]
  action = "drop"

  [[container.rule]]
  id = "web-http"
  direction = "ingress"
  proto = "tcp"
  ports = ["80"]
  action = "allow"
`
	// synComment tags the test's counting rules: no target, they only
	// count the SYNs towards web's blocked port that got that far.
	synComment = "e2e-blocked-syn"
	// downFor is how long case StopThenStart keeps Docker stopped: an
	// operator's "minutes later", shortened. Once the cut event stream has
	// been retried after 1 s, the watcher tries every 250 ms while nothing
	// listens (docker.DefaultDownRetry), however long that lasts, so a
	// longer wait would only show the same thing later.
	downFor = 8 * time.Second
	// unreachableMsg is the engine's warning when Docker goes away, and
	// shadowedMsg its report of a rule above the redirect.
	unreachableMsg = "docker unreachable: keeping the last known containers; retrying in the background"
	shadowedMsg    = "redirect shadowed: traffic this rule ends the walk for is not judged"
	// relistWithin bounds the time from Docker's API answering again to
	// the engine listing the containers again: one 250 ms retry and a
	// listing, with room for a loaded machine. A watcher backing off (up
	// to 30 s) would miss it.
	relistWithin = 5 * time.Second
)

// restartRig is the engine, the probes and the counters of what reached
// web's blocked port, across Docker's restarts.
type restartRig struct {
	d      *dockerlab.Docker
	e      *engine
	sock   string
	pid    int // the engine's, from its status at start
	probes *prober
	web    *dockerlab.Container // the running incarnation

	// The Docker namespace's counter: SYNs towards web's blocked port
	// leaving for docker0 through nat POSTROUTING, after the filter
	// table (the redirect) and mangle POSTROUTING (the guard's drop). It
	// lives across Docker's restarts and web's incarnations.
	dockerFW   netns.IPTables
	dockerBase uint64
	// The incarnation's counter, in web's own network namespace (raw
	// PREROUTING): what arrived in the container. A new incarnation has a
	// new namespace, so each gets its own, installed as soon as the test
	// sees it run (the Docker namespace's counter covers the moment
	// before); it is read before Docker stops that incarnation.
	webFW   netns.IPTables
	webBase uint64
	reached []int // per incarnation, SYNs that arrived in web
}

// countSYNs adds the counting rule to chain of table in fw.
func countSYNs(t *testing.T, fw netns.IPTables, table, chain string, extra ...string) {
	t.Helper()
	args := append([]string{"-t", table, "-I", chain, "1"}, extra...)
	args = append(args, "-p", "tcp", "--dport", "8000", "--syn", "-m", "comment", "--comment", synComment)
	_, err := fw.Run(context.Background(), false, args...)
	must(t, err)
}

// dockerSYNs and webSYNs read the two counters.
func (r *restartRig) dockerSYNs(t *testing.T) uint64 {
	t.Helper()
	return ruleCounterOf(t, r.dockerFW, "nat", "POSTROUTING", synComment)
}

func (r *restartRig) webSYNs(t *testing.T) uint64 {
	t.Helper()
	return ruleCounterOf(t, r.webFW, "raw", "PREROUTING", synComment)
}

// watchIncarnation makes c the running incarnation and counts what
// arrives in it from now on.
func (r *restartRig) watchIncarnation(t *testing.T, c *dockerlab.Container) {
	t.Helper()
	r.web = c
	r.webFW = netns.IPTables{Path: c.NSPath()}
	countSYNs(t, r.webFW, "raw", "PREROUTING")
	r.webBase = r.webSYNs(t)
	r.reached = append(r.reached, 0)
}

// readIncarnation records what reached the running incarnation so far.
func (r *restartRig) readIncarnation(t *testing.T) int {
	t.Helper()
	n := int(r.webSYNs(t) - r.webBase)
	r.reached[len(r.reached)-1] = n
	return n
}

// TestDockerRestart: Docker restarted, then stopped and started again
// 8 s later (downFor), under traffic. Each time, once Docker is back: the
// engine is still running (same PID), DOCKER-USER holds exactly one
// redirect and one companion, FORWARD jumps to it first and the guard is
// back, `status --json` says the redirect is in place, the engine lists
// the containers again within relistWithin and its name-keyed rules apply
// to web's new incarnation (a blocked record for its address), and
// allowed probes succeed again. Throughout, no SYN of a probe of the
// blocked port leaves the Docker namespace for the container, none
// arrives in any incarnation of web, and no probe of it connects.
// dockerd re-inserts its FORWARD rules above the DOCKER-USER jump when it
// starts, which the engine reports as a few transient "shadowed" events:
// they are logged, not failed on.
func TestDockerRestart(t *testing.T) {
	t.Parallel()
	for _, eng := range dockerEngines {
		t.Run(eng.String(), func(t *testing.T) {
			t.Parallel()
			testDockerRestart(t, eng)
		})
	}
}

func testDockerRestart(t *testing.T, eng dockerlab.Engine) {
	d := dockerlabtest.Start(t, dockerlab.Options{Engine: eng})
	img := dockerlabtest.Image(t, d)
	// The test image ignores SIGTERM: without --stop-timeout 1 dockerd
	// would wait 10 s for it at each stop.
	web := dockerlabtest.RunServer(t, d, "web", "--restart", "always", "--stop-timeout", "1",
		"-p", "8080:80", "-p", "8000:8000")
	ip := ipv4Of(t, web, "bridge")
	t.Logf("Docker %s in namespace %s; web at %s", d.Version(), d.NS(), ip)

	r := &restartRig{d: d, dockerFW: netns.IPTables{Path: d.NSPath()}}
	countSYNs(t, r.dockerFW, "nat", "POSTROUTING", "-o", "docker0")
	r.watchIncarnation(t, web)
	// The counters count: without the engine Docker lets the SYN through.
	must(t, dkTCP(d.OutPath(), 30001, ap(dkHost, restartBlockedPort), allowTimeout))
	if got, gotWeb := r.dockerSYNs(t), r.webSYNs(t)-r.webBase; got != 1 || gotWeb != 1 {
		t.Fatalf("without the engine, one connection to the blocked port counted %d times in the Docker namespace and %d in web, want 1 and 1: the counters prove nothing", got, gotWeb)
	}

	r.sock = testSocket(t)
	r.e = startDockerEngineAt(t, d, r.sock, namesConfig(d, restartConfig))
	if !logHas(r.e.stderr(), "docker container matched", "entry=web", "container=web", "addrs="+ip.String()) {
		t.Fatalf("start-up did not log web matched with addrs=%s:\n%s", ip, r.e.stderr())
	}
	checkDockerUserLayout(t, d, false, "at start")
	r.pid = statusJSON(t, r.sock).PID
	expectAllowed(t, "outside -> 8080 (web-http)", dkTCP(d.OutPath(), 30002, ap(dkHost, restartAllowedPort), allowTimeout))
	expectBlocked(t, "outside -> 8000 (web-no-8000)", dkTCP(d.OutPath(), 30003, ap(dkHost, restartBlockedPort), blockTimeout))

	r.dockerBase = r.dockerSYNs(t)
	r.webBase = r.webSYNs(t)
	queuedBefore := ruleCounter(t, d)
	r.probes = startProberFrom(t, d.OutPath(), ap(dkHost, restartBlockedPort), ap(dkHost, restartAllowedPort), 10000, 20000)
	// A steady state first: allowed probes pass, blocked ones do not.
	steady := time.Now()
	if !eventually(5*time.Second, func() bool { return r.probes.allowedSince(steady) > 0 }) {
		t.Fatal("no allowed probe succeeded within 5 s of the start of the probes")
	}

	type result struct {
		name                        string
		outage, relist, resumedBack time.Duration
		resumed                     time.Duration
		shadowed                    int
		shadowing                   []string // the rules the shadowed events named
		restored                    []string // what the restored events found
		addr                        string
	}
	var results []result
	cases := []struct {
		name string
		// outage takes Docker away and brings it back; it returns once
		// Docker's API answers again.
		outage func(t *testing.T) error
	}{
		{"Restart", func(t *testing.T) error { return d.Restart(t.Context()) }},
		{"StopThenStart", func(t *testing.T) error {
			unreachable := len(logLines(r.e.stderr(), unreachableMsg))
			if err := d.Stop(t.Context()); err != nil {
				return err
			}
			// Docker away: the engine keeps running and judging, and
			// says Docker is unreachable.
			if !r.e.waitFor(3*time.Second, func() bool {
				return len(logLines(r.e.errOut.String(), unreachableMsg)) > unreachable
			}) {
				t.Errorf("Docker stopped, but the engine did not log that it is unreachable:\n%s", r.e.stderr())
			}
			time.Sleep(downFor)
			if st := statusJSON(t, r.sock); st.PID != r.pid {
				t.Errorf("status while Docker is stopped: PID %d, want the engine's %d", st.PID, r.pid)
			}
			return d.StartAgain(t.Context())
		}},
	}
	for _, c := range cases {
		ok := t.Run(c.name, func(t *testing.T) {
			res := result{name: c.name}
			old := r.web
			if n := r.readIncarnation(t); n != 0 {
				t.Errorf("before the outage: %d SYNs to the blocked port arrived in web", n)
			}
			relisted := len(logLines(r.e.stderr(), "docker reachable again"))
			shadowed := len(logLines(r.e.stderr(), shadowedMsg))
			restored := len(logLines(r.e.stderr(), "redirect restored"))

			begin := time.Now()
			if err := c.outage(t); err != nil {
				t.Fatal(err)
			}
			back := time.Now()
			res.outage = back.Sub(begin)

			ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
			defer cancel()
			webNew, err := d.WaitRunning(ctx, "web", old.PID)
			must(t, err)
			r.watchIncarnation(t, webNew)
			must(t, webNew.WaitListening(ctx, "tcp", 80, restartBlockedPort))
			newIP := ipv4Of(t, webNew, "bridge")
			res.addr = newIP.String()

			// The engine lists the containers again, by itself.
			if !r.e.waitFor(relistWithin, func() bool {
				return len(logLines(r.e.errOut.String(), "docker reachable again")) > relisted
			}) {
				t.Fatalf("the engine did not list Docker's containers within %v of Docker answering again:\n%s", relistWithin, r.e.stderr())
			}
			relistSeen := time.Now()
			res.relist = relistSeen.Sub(back)
			if newIP != ip && !r.e.waitFor(time.Second, func() bool {
				return logHas(r.e.errOut.String(), "docker container re-addressed", "entry=web", "container=web", "addrs="+newIP.String())
			}) {
				t.Errorf("web came back on %s (was %s), but the engine did not log it re-addressed:\n%s", newIP, ip, r.e.stderr())
			}

			// The redirect: in place, once, first.
			st := waitStatus(t, r.sock, "in place", func(st control.Status) bool {
				return st.Redirect.InPlace && st.Redirect.State == "in place"
			})
			if st.PID != r.pid {
				t.Errorf("status PID %d, want the engine's %d: the engine was replaced", st.PID, r.pid)
			}
			select {
			case <-r.e.done:
				t.Fatalf("the engine exited (%v):\n%s", r.e.exitErr(), r.e.stderr())
			default:
			}
			checkDockerUserLayout(t, d, false, "after "+c.name)
			if !eventually(5*time.Second, func() bool {
				fwd := nonEmptyLines(iptables(t, d, false, "-S", "FORWARD"))
				return len(fwd) > 1 && fwd[1] == "-A FORWARD -j DOCKER-USER" && !strings.Contains(strings.Join(fwd, "\n"), "nfqguard-jump")
			}) {
				t.Errorf("after %s FORWARD does not jump to DOCKER-USER first (or nfqguard's jump stayed):\n%s", c.name, iptables(t, d, false, "-S", "FORWARD"))
			}
			mangle := iptables(t, d, false, "-t", "mangle", "-S")
			if strings.Count(mangle, "--comment nfqguard-guard -j") != 1 || strings.Count(mangle, "--comment nfqguard-guard-drop -j") != 1 {
				t.Errorf("after %s, want the guard's two rules once each in mangle:\n%s", c.name, mangle)
			}
			res.shadowed = len(logLines(r.e.stderr(), shadowedMsg)) - shadowed
			res.shadowing = shadowingRules(r.e.stderr(), shadowed)
			res.restored = foundSince(logLines(r.e.stderr(), "redirect restored"), restored)

			// web's rules apply to its new incarnation, found by name.
			rec, ok := r.e.waitRecord(3*time.Second, func(rec flowlog.Record) bool {
				return rec.Event == "blocked" && rec.Rule == "web-no-8000" && rec.Container == "web" && rec.DockerName == "web" &&
					rec.Image == img && rec.Dst == newIP.String() && rec.DstPort == restartBlockedPort && !rec.Time.Before(relistSeen)
			})
			if !ok {
				t.Errorf("no blocked record by web-no-8000 for web's new incarnation (%s) after the engine listed it again; last records:\n%s",
					newIP, fmtRecords(lastRecords(r.e.records(), 5)))
			} else if rec.SrcPort < 10000 || rec.SrcPort >= 10000+proberPorts {
				t.Errorf("blocked record from source port %d, not a probe's", rec.SrcPort)
			}

			// Allowed flows resume.
			if !eventually(5*time.Second, func() bool { return r.probes.allowedSince(back) > 0 }) {
				t.Fatalf("no allowed probe succeeded within 5 s of Docker answering again")
			}
			_, _, _, okTimes := r.probes.counts()
			var lastBefore, firstAfter time.Time
			for _, at := range okTimes {
				if at.Before(begin) {
					lastBefore = at
				} else if firstAfter.IsZero() && !at.Before(back) {
					firstAfter = at
				}
			}
			res.resumedBack, res.resumed = firstAfter.Sub(back), firstAfter.Sub(lastBefore)

			// Let the probes run on the new incarnation a while, then
			// count what reached it.
			time.Sleep(time.Second + blockedProbeTimeout)
			if n := r.dockerSYNs(t) - r.dockerBase; n != 0 {
				t.Errorf("%d SYNs of probes of the blocked port left the Docker namespace for web", n)
			}
			if n := r.readIncarnation(t); n != 0 {
				t.Errorf("%d SYNs of probes of the blocked port arrived in web's new incarnation", n)
			}
			if _, _, connected, _ := r.probes.counts(); connected != 0 {
				t.Errorf("%d probes of the blocked port connected", connected)
			}
			results = append(results, res)
		})
		if !ok {
			break
		}
	}

	r.probes.close()
	blocked, allowed, connected, okTimes := r.probes.counts()
	leaked := r.dockerSYNs(t) - r.dockerBase
	arrived := r.readIncarnation(t)
	for _, res := range results {
		if len(res.restored) == 0 {
			res.restored = []string{"none"}
		}
		t.Logf("%-13s Docker back after %v; containers listed again %v after; allowed probes resumed %v after Docker was back (%v without one); web at %s; %d shadowed redirect events (by %q) and restores of %v meanwhile",
			res.name, res.outage.Round(time.Millisecond), res.relist.Round(time.Millisecond), res.resumedBack.Round(time.Millisecond),
			res.resumed.Round(time.Millisecond), res.addr, res.shadowed, res.shadowing, res.restored)
	}
	t.Logf("probes: %d of the blocked port (%d connected; %d SYNs left the Docker namespace for web; arrived in web's incarnations: %v), %d of the allowed port (%d succeeded)",
		blocked, connected, leaked, r.reached, allowed, len(okTimes))
	if leaked != 0 || arrived != 0 || connected != 0 {
		t.Errorf("the blocked port was reached: %d SYNs left for web, %d arrived in its last incarnation, %d probes connected", leaked, arrived, connected)
	}
	if ruleCounter(t, d) <= queuedBefore {
		t.Errorf("the redirect counted no packet of the probes: the test proves nothing")
	}
	if st := statusJSON(t, r.sock); st.Redirect.ByEvent[firewall.EventShadowed] == 0 {
		t.Logf("no shadowed redirect event was counted (dockerd's FORWARD rebuild went unnoticed): %v", st.Redirect.ByEvent)
	}
	r.e.stopClean()
	if rules := ourRules(t, d, false); len(rules) != 0 {
		t.Errorf("after SIGTERM nfqguard rules remain:\n%s", strings.Join(rules, "\n"))
	}
}

// shadowingRules returns the rule= values of the shadowed events the
// engine logged after the first from.
func shadowingRules(stderr string, from int) []string {
	var out []string
	n := 0
	for _, line := range strings.Split(stderr, "\n") {
		if !strings.Contains(line, fmt.Sprintf("msg=%q ", shadowedMsg)) {
			continue
		}
		if n++; n <= from {
			continue
		}
		_, rest, ok := strings.Cut(line, " rule=")
		if !ok {
			continue
		}
		if q, err := strconv.QuotedPrefix(rest); err == nil {
			rest, _ = strconv.Unquote(q)
		}
		out = append(out, rest)
	}
	return out
}

// lastRecords returns the last n of rs.
func lastRecords(rs []flowlog.Record, n int) []flowlog.Record {
	return rs[max(0, len(rs)-n):]
}
