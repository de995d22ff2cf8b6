package e2e

// End-to-end tests of [[container]] entries resolved through Docker (by
// name, image or label) against a private Docker engine: the engine follows
// Docker's containers live and the flow log names them. TestDocker's
// engine is made inside TestDocker, so these subtests share a private
// Docker of their own, one after the other (an engine owns the namespace's
// DOCKER-USER and queues while it runs). Source ports 29xxx are theirs.

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nfqguard/nfqguard/control"
	"github.com/nfqguard/nfqguard/flowlog"
	"github.com/nfqguard/nfqguard/internal/dockerlab"
	"github.com/nfqguard/nfqguard/internal/dockerlab/dockerlabtest"
)

func TestDockerNames(t *testing.T) {
	t.Parallel()
	// Name and label selectors do not depend on where the redirect is
	// hooked: they run on Docker 29's nftables backend too.
	type setup struct {
		name string
		opts dockerlab.Options
	}
	setups := []setup{{"docker29-nftables", dockerlab.Options{Engine: dockerlab.Docker29, FirewallBackend: dockerlab.NFTables}}}
	for _, eng := range dockerEngines {
		setups = append(setups, setup{eng.String(), dockerlab.Options{Engine: eng}})
	}
	for _, su := range setups {
		t.Run(su.name, func(t *testing.T) {
			t.Parallel()
			d := dockerlabtest.Start(t, su.opts)
			img := dockerlabtest.Image(t, d)
			t.Logf("Docker %s (%s) in namespace %s, test image %s", d.Version(), su.name, d.NS(), img)

			t.Run("NamePublishedPort", func(t *testing.T) { testNamesPublishedPort(t, d, img) })
			t.Run("RestartNewAddress", func(t *testing.T) { testNamesRestartNewAddress(t, d, img) })
			t.Run("NotYetRunning", func(t *testing.T) { testNamesNotYetRunning(t, d, img) })
			t.Run("Selectors", func(t *testing.T) { testNamesSelectors(t, d, img) })
			t.Run("DockerUnreachable", func(t *testing.T) { testNamesDockerUnreachable(t, d, img) })
		})
	}
}

// dockerSection is the [docker] section naming socket.
func dockerSection(socket string) string {
	return fmt.Sprintf("[docker]\nsocket = %q\n\n", socket)
}

// namesConfig is an engine with d's socket, defaults allow, and entries.
func namesConfig(d *dockerlab.Docker, entries string) string {
	return engineSection(true, false) + dockerSection(d.Socket()) + `[defaults]
ingress = "allow"
egress = "allow"
` + entries
}

// checkDockerFields fails unless r (found by the case's lookup) names the
// Docker container, its image and the published host ports as wanted; an
// empty want means the field must be absent.
func checkDockerFields(t *testing.T, what string, r flowlog.Record, dockerName, image, publishedPart string) {
	t.Helper()
	if r.DockerName != dockerName || r.Image != image {
		t.Errorf("%s: record docker_name=%q image=%q, want %q and %q", what, r.DockerName, r.Image, dockerName, image)
	}
	switch {
	case publishedPart == "" && r.Published != "":
		t.Errorf("%s: record published=%q, want none", what, r.Published)
	case publishedPart != "" && !strings.Contains(r.Published, publishedPart):
		t.Errorf("%s: record published=%q, want it to contain %q", what, r.Published, publishedPart)
	}
}

// waitBlocked waits for c's record (which must be wanted) and checks its
// Docker fields.
func waitBlocked(t *testing.T, e *engine, c flowCase, dockerName, image, published string) {
	t.Helper()
	r, ok := e.waitRecord(2*time.Second, c.matches)
	if !ok {
		t.Errorf("%s: no flow-log record; records:\n%s", c.name, fmtRecords(e.records()))
		return
	}
	checkDockerFields(t, c.name, r, dockerName, image, published)
}

// logHas reports whether a line of the engine's stderr has msg="msg" (or
// msg=msg) and every key=value of kv as a whole field.
func logHas(stderr, msg string, kv ...string) bool {
	for _, line := range strings.Split(stderr, "\n") {
		if !strings.Contains(line, "msg="+msg+" ") && !strings.Contains(line, fmt.Sprintf("msg=%q ", msg)) {
			continue
		}
		fields := map[string]bool{}
		for _, f := range strings.Fields(line) {
			fields[f] = true
		}
		all := true
		for _, want := range kv {
			all = all && fields[want]
		}
		if all {
			return true
		}
	}
	return false
}

// waitLog waits until the engine's stderr has the line logHas describes.
func waitLog(t *testing.T, e *engine, timeout time.Duration, msg string, kv ...string) bool {
	t.Helper()
	return e.waitFor(timeout, func() bool { return logHas(e.errOut.String(), msg, kv...) })
}

// testNamesPublishedPort: an entry keyed by Docker name only judges the
// container's published port, and the blocked record names the container,
// its image and the host port.
func testNamesPublishedPort(t *testing.T, d *dockerlab.Docker, img string) {
	web := dockerlabtest.RunServer(t, d, "web", "-p", "8080:80")
	ip := ipv4Of(t, web, "bridge")
	const entry = `
[[container]]
name = "web"
ingress = "drop"
`
	t.Run("DefaultDrop", func(t *testing.T) {
		e := startDockerEngine(t, d, namesConfig(d, entry))
		if !logHas(e.stderr(), "docker container matched", "entry=web", "container=web", "addrs="+ip.String()) {
			t.Errorf("start-up did not log web matched with addrs=%s:\n%s", ip, e.stderr())
		}
		hook := "filter DOCKER-USER"
		if d.FirewallBackend() == dockerlab.NFTables {
			hook = "mangle NFQGUARD"
		}
		var running []string
		for _, line := range strings.Split(e.stderr(), "\n") {
			if strings.Contains(line, `msg="nfqguard running"`) {
				running = append(running, line)
			}
		}
		if len(running) != 1 || !strings.Contains(running[0], hook) {
			t.Errorf("Docker's %s backend: the start-up line does not name %s:\n%s", d.FirewallBackend(), hook, e.stderr())
		}
		expectBlocked(t, "outside -> 203.0.113.1:8080 (web:80, web's ingress default drop)",
			dkTCP(d.OutPath(), 29001, ap(dkHost, 8080), blockTimeout))
		cases := []flowCase{{name: "outside -> 8080", proto: "tcp", src: dkOut, sport: 29001, dst: ap(ip, 80),
			want: rec("blocked", "default", "web", "ingress", "tcp", dkOut, 29001, ap(ip, 80))}}
		waitBlocked(t, e, cases[0], "web", img, ":8080")
		checkRecords(t, cases, e.records())
		e.stopClean()
	})
	t.Run("AllowedByRule", func(t *testing.T) {
		e := startDockerEngine(t, d, namesConfig(d, entry+`
  [[container.rule]]
  id = "web-http"
  direction = "ingress"
  proto = "tcp"
  ports = ["80"]
  action = "allow"
`))
		expectAllowed(t, "outside -> 203.0.113.1:8080 (allowed by web-http)",
			dkTCP(d.OutPath(), 29002, ap(dkHost, 8080), allowTimeout))
		checkRecords(t, []flowCase{{name: "outside -> 8080", proto: "tcp", src: dkOut, sport: 29002, dst: ap(ip, 80)}}, e.records())
		e.stopClean()
	})
}

// testNamesRestartNewAddress: web, keyed by name, is stopped; another
// container takes the address it had; web comes back on a new address.
// The running engine follows: web's rule applies to the new address and
// no longer to the old one.
func testNamesRestartNewAddress(t *testing.T, d *dockerlab.Docker, img string) {
	web := dockerlabtest.RunServer(t, d, "web", "-p", "8080:80")
	oldIP := ipv4Of(t, web, "bridge")
	e := startDockerEngine(t, d, namesConfig(d, `
[[container]]
name = "web"

  [[container.rule]]
  id = "web-no-80"
  direction = "ingress"
  proto = "tcp"
  ports = ["80"]
  action = "drop"
`))
	expectBlocked(t, "before the restart: outside -> 8080 (web-no-80)", dkTCP(d.OutPath(), 29101, ap(dkHost, 8080), blockTimeout))
	before := flowCase{name: "before the restart: outside -> 8080", proto: "tcp", src: dkOut, sport: 29101, dst: ap(oldIP, 80),
		want: rec("blocked", "web-no-80", "web", "ingress", "tcp", dkOut, 29101, ap(oldIP, 80))}
	waitBlocked(t, e, before, "web", img, ":8080")

	ctx, cancel := context.WithTimeout(t.Context(), 20*time.Second)
	defer cancel()
	if _, err := d.CLI(ctx, "stop", "-t", "1", "web"); err != nil {
		t.Fatal(err)
	}
	squat := dockerlabtest.RunServer(t, d, "squat", "-p", "8090:80")
	squatIP := ipv4Of(t, squat, "bridge")
	if _, err := d.CLI(ctx, "start", "web"); err != nil {
		t.Fatal(err)
	}
	web, err := d.Inspect(ctx, "web")
	must(t, err)
	must(t, web.WaitListening(ctx, "tcp", 80))
	newIP := ipv4Of(t, web, "bridge")
	t.Logf("web: %s before the restart, %s after; squat took %s", oldIP, newIP, squatIP)
	if newIP == oldIP {
		t.Fatalf("web came back on its old address %s (squat got %s): the test proves nothing", oldIP, squatIP)
	}
	// The engine logs the change of address once the table is swapped.
	readdressed := func() bool {
		s := e.errOut.String()
		return logHas(s, "docker container re-addressed", "entry=web", "container=web", "addrs="+newIP.String(), "was="+oldIP.String()) ||
			(logHas(s, "docker container gone", "entry=web", "container=web") &&
				logHas(s, "docker container matched", "entry=web", "container=web", "addrs="+newIP.String()))
	}
	if !e.waitFor(3*time.Second, readdressed) {
		t.Fatalf("the engine did not log web's new address %s within 3 s:\n%s", newIP, e.stderr())
	}
	expectBlocked(t, "after the restart: outside -> 8080 (web-no-80 on web's new address)",
		dkTCP(d.OutPath(), 29102, ap(dkHost, 8080), blockTimeout))
	expectAllowed(t, "outside -> 8090 (squat, on web's old address: no rule of web's)",
		dkTCP(d.OutPath(), 29103, ap(dkHost, 8090), allowTimeout))
	after := flowCase{name: "after the restart: outside -> 8080", proto: "tcp", src: dkOut, sport: 29102, dst: ap(newIP, 80),
		want: rec("blocked", "web-no-80", "web", "ingress", "tcp", dkOut, 29102, ap(newIP, 80))}
	waitBlocked(t, e, after, "web", img, ":8080")
	checkRecords(t, []flowCase{before, after,
		{name: "outside -> squat", proto: "tcp", src: dkOut, sport: 29103, dst: ap(squatIP, 80)},
	}, e.records())
	e.stopClean()
}

// testNamesNotYetRunning: an entry naming a container that does not run
// is valid (check says it matches nothing); once the container starts, the
// running engine applies its rules within a couple of seconds.
func testNamesNotYetRunning(t *testing.T, d *dockerlab.Docker, img string) {
	cfgText := namesConfig(d, `
[[container]]
name = "late"

  [[container.rule]]
  id = "late-no-80"
  direction = "ingress"
  proto = "tcp"
  ports = ["80"]
  action = "drop"
`)
	cfg := writeConfig(t, cfgText)
	var out, errb bytes.Buffer
	cmd := exec.CommandContext(t.Context(), binary(t), "check", "-c", cfg)
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("nfqguard check: %v (want exit 0); stdout:\n%s\nstderr:\n%s", err, out.String(), errb.String())
	}
	for _, want := range []string{
		`late (docker name "late"`,
		"note: late matches no running container: its rules match nothing\n",
		"docker: " + d.Version() + " ",
		cfg + ": ok\n",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("nfqguard check output lacks %q:\n%s", want, out.String())
		}
	}

	e := startDockerEngine(t, d, cfgText)
	if !logHas(e.stderr(), "entry matches no running container: its rules match nothing", "level=WARN", "entry=late") {
		t.Errorf("start-up did not warn that late matches no running container:\n%s", e.stderr())
	}
	late := dockerlabtest.RunServer(t, d, "late", "-p", "8080:80")
	ip := ipv4Of(t, late, "bridge")
	started := time.Now()
	if !waitLog(t, e, 2500*time.Millisecond, "docker container matched", "entry=late", "container=late", "addrs="+ip.String()) {
		t.Fatalf("late (%s) started but the engine did not match it within 2.5 s:\n%s", ip, e.stderr())
	}
	// The table is swapped before the line is logged: the rule applies now.
	// Bounded retries guard against a slow first packet, not a slow table.
	var sport uint16
	for i := range 3 {
		sport = uint16(29201 + i)
		if dkTCP(d.OutPath(), sport, ap(dkHost, 8080), blockTimeout) != nil {
			break
		}
		t.Logf("attempt %d: outside -> 8080 still allowed %v after late started", i+1, time.Since(started))
	}
	if sport != 29201 {
		t.Errorf("late's rule did not apply to the first connection after the engine logged the match")
	}
	c := flowCase{name: "outside -> 8080 (late-no-80)", proto: "tcp", src: dkOut, sport: sport, dst: ap(ip, 80),
		want: rec("blocked", "late-no-80", "late", "ingress", "tcp", dkOut, sport, ap(ip, 80))}
	waitBlocked(t, e, c, "late", img, ":8080")
	if sport == 29201 {
		checkRecords(t, []flowCase{c}, e.records())
	}
	e.stopClean()
}

// testNamesSelectors: an entry by image pattern selects every container of
// the image, one by label the labelled container; each enforces its rules
// on every container it selects, and the record's container is the
// entry's name, docker_name the container's.
func testNamesSelectors(t *testing.T, d *dockerlab.Docker, img string) {
	repo, _, _ := strings.Cut(img, ":")
	// A second reference to the same image, which the image pattern must
	// not select: the labelled containers are created from it.
	const other = "nfqg-other:1"
	if _, err := d.CLI(t.Context(), "tag", img, other); err != nil {
		t.Fatal(err)
	}
	a1 := dockerlabtest.RunServer(t, d, "a1", "-p", "8101:80")
	a2 := dockerlabtest.RunServer(t, d, "a2", "-p", "8102:80")
	db := runServerFrom(t, d, other, "db1", "--label", "tier=db", "-p", "8103:8000", "-p", "8104:80")
	plain := runServerFrom(t, d, other, "plain", "--label", "tier=web", "-p", "8105:80")
	ip1, ip2 := ipv4Of(t, a1, "bridge"), ipv4Of(t, a2, "bridge")
	dbIP, plainIP := ipv4Of(t, db, "bridge"), ipv4Of(t, plain, "bridge")
	e := startDockerEngine(t, d, namesConfig(d, fmt.Sprintf(`
[[container]]
name = "testimg"
image = "%s:*"

  [[container.rule]]
  id = "img-no-80"
  direction = "ingress"
  proto = "tcp"
  ports = ["80"]
  action = "drop"

[[container]]
name = "dbs"
label = "tier=db"

  [[container.rule]]
  id = "db-no-8000"
  direction = "ingress"
  proto = "tcp"
  ports = ["8000"]
  action = "drop"
`, repo)))
	for _, m := range [][]string{
		{"entry=testimg", "container=a1", "addrs=" + ip1.String()},
		{"entry=testimg", "container=a2", "addrs=" + ip2.String()},
		{"entry=dbs", "container=db1", "addrs=" + dbIP.String()},
	} {
		if !logHas(e.stderr(), "docker container matched", m...) {
			t.Errorf("start-up did not log the match %v:\n%s", m, e.stderr())
		}
	}
	if strings.Contains(e.stderr(), "container=plain") || strings.Contains(e.stderr(), "docker conflict") {
		t.Errorf("plain (image %s, label tier=web) was selected, or a conflict was logged:\n%s", other, e.stderr())
	}
	expectBlocked(t, "outside -> 8101 (a1:80, img-no-80)", dkTCP(d.OutPath(), 29301, ap(dkHost, 8101), blockTimeout))
	expectBlocked(t, "outside -> 8102 (a2:80, img-no-80)", dkTCP(d.OutPath(), 29302, ap(dkHost, 8102), blockTimeout))
	expectBlocked(t, "outside -> 8103 (db1:8000, db-no-8000)", dkTCP(d.OutPath(), 29303, ap(dkHost, 8103), blockTimeout))
	expectAllowed(t, "outside -> 8104 (db1:80: not of the image)", dkTCP(d.OutPath(), 29304, ap(dkHost, 8104), allowTimeout))
	expectAllowed(t, "outside -> 8105 (plain:80: selected by neither)", dkTCP(d.OutPath(), 29305, ap(dkHost, 8105), allowTimeout))
	cases := []flowCase{
		{name: "outside -> a1:80", proto: "tcp", src: dkOut, sport: 29301, dst: ap(ip1, 80),
			want: rec("blocked", "img-no-80", "testimg", "ingress", "tcp", dkOut, 29301, ap(ip1, 80))},
		{name: "outside -> a2:80", proto: "tcp", src: dkOut, sport: 29302, dst: ap(ip2, 80),
			want: rec("blocked", "img-no-80", "testimg", "ingress", "tcp", dkOut, 29302, ap(ip2, 80))},
		{name: "outside -> db1:8000", proto: "tcp", src: dkOut, sport: 29303, dst: ap(dbIP, 8000),
			want: rec("blocked", "db-no-8000", "dbs", "ingress", "tcp", dkOut, 29303, ap(dbIP, 8000))},
		{name: "outside -> db1:80", proto: "tcp", src: dkOut, sport: 29304, dst: ap(dbIP, 80)},
		{name: "outside -> plain:80", proto: "tcp", src: dkOut, sport: 29305, dst: ap(plainIP, 80)},
	}
	waitBlocked(t, e, cases[0], "a1", img, ":8101")
	waitBlocked(t, e, cases[1], "a2", img, ":8102")
	waitBlocked(t, e, cases[2], "db1", other, ":8103")
	checkRecords(t, cases, e.records())
	e.stopClean()
}

// runServerFrom is dockerlabtest.RunServer with image instead of the test
// image (a tag of it).
func runServerFrom(t *testing.T, d *dockerlab.Docker, image, name string, opts ...string) *dockerlab.Container {
	t.Helper()
	c := dockerlabtest.Run(t, d, name, append(opts, image)...)
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	must(t, c.WaitListening(ctx, "tcp", 80, 8000))
	return c
}

// testNamesDockerUnreachable: with nothing listening on [docker] socket
// the engine warns and starts; entries keyed by ips work, entries resolved
// through Docker match nothing, and (docker.unreachable = "drop", the
// default) traffic of addresses no entry lists is dropped, since one of
// them may be the container an entry selects: status and a metric say so.
// With "defaults" such traffic gets [defaults], as before the key existed.
// Once the socket answers, the entries resolve and the drop ends.
func testNamesDockerUnreachable(t *testing.T, d *dockerlab.Docker, img string) {
	web := dockerlabtest.RunServer(t, d, "web", "-p", "8080:80")
	other := dockerlabtest.RunServer(t, d, "other", "-p", "8081:80")
	ip, otherIP := ipv4Of(t, web, "bridge"), ipv4Of(t, other, "bridge")
	rulesText := func(policy string) string {
		return fmt.Sprintf(`[defaults]
ingress = "allow"
egress = "allow"

[[container]]
name = "static"
ips = ["%s"]

  [[container.rule]]
  id = "static-no-80"
  direction = "ingress"
  proto = "tcp"
  ports = ["80"]
  action = "drop"

[[container]]
name = "other"

  [[container.rule]]
  id = "other-no-80"
  direction = "ingress"
  proto = "tcp"
  ports = ["80"]
  action = %q
`, ip, policy)
	}
	staticCase := flowCase{name: "outside -> web:80", proto: "tcp", src: dkOut, sport: 29401, dst: ap(ip, 80),
		want: rec("blocked", "static-no-80", "static", "ingress", "tcp", dkOut, 29401, ap(ip, 80))}

	t.Run("drop", func(t *testing.T) {
		sock := filepath.Join(t.TempDir(), "nothing-here.sock")
		e := startDockerEngine(t, d, engineSection(true, false)+fmt.Sprintf("[docker]\nsocket = %q\n\n", sock)+rulesText("drop"))
		var warn string
		for _, line := range strings.Split(e.stderr(), "\n") {
			if strings.Contains(line, "level=WARN") && strings.Contains(line, "msg=docker ") {
				warn = line
			}
		}
		for _, want := range []string{"socket=" + sock, "unreachable=", "unresolved=other", `unlisted="dropped until Docker answers`} {
			if !strings.Contains(warn, want) {
				t.Errorf("no level=WARN msg=docker line with %q (Docker unreachable):\n%s", want, e.stderr())
			}
		}
		st := statusJSON(t, e.sock)
		if st.Docker.State != "unreachable" || st.Docker.Unlisted != "dropped" || st.Docker.UnreachableSince == nil ||
			strings.Join(st.Docker.Unresolved, ",") != "other" {
			t.Errorf("status docker = %+v, want unreachable, unlisted dropped, other unresolved", st.Docker)
		}
		expectBlocked(t, "outside -> 8080 (static-no-80, keyed by ips)", dkTCP(d.OutPath(), 29401, ap(dkHost, 8080), blockTimeout))
		expectBlocked(t, "outside -> 8081 (other's address is listed nowhere while Docker is unreachable)",
			dkTCP(d.OutPath(), 29402, ap(dkHost, 8081), blockTimeout))
		unlisted := flowCase{name: "outside -> other:80", proto: "tcp", src: dkOut, sport: 29402, dst: ap(otherIP, 80),
			want: rec("blocked", "docker-unreachable", "", "ingress", "tcp", dkOut, 29402, ap(otherIP, 80))}
		// Docker never answered: the records cannot name the containers.
		waitBlocked(t, e, staticCase, "", "", "")
		waitBlocked(t, e, unlisted, "", "", "")
		checkRecords(t, []flowCase{staticCase, unlisted}, e.records())
		if got := statusJSON(t, e.sock).TopRules; !slices.ContainsFunc(got, func(r control.Rule) bool { return r.Rule == "docker-unreachable" && r.Flows >= 1 }) {
			t.Errorf("status top rules %+v lack docker-unreachable", got)
		}

		// Docker answers on the socket: the entries resolve, other's own
		// rule judges it, and status and the log say Docker is back.
		must(t, os.Symlink(d.Socket(), sock))
		if !e.waitFor(15*time.Second, func() bool { return statusJSON(t, e.sock).Docker.State == "reachable" }) {
			t.Fatalf("Docker answered on %s, status still says %+v; log:\n%s", sock, statusJSON(t, e.sock).Docker, e.stderr())
		}
		// The status changes as the rules learn Docker answered; the log
		// line follows it through a pipe.
		if !waitLog(t, e, 5*time.Second, "docker reachable again") {
			t.Errorf("no docker reachable again line:\n%s", e.stderr())
		}
		expectBlocked(t, "outside -> 8081 (other-no-80, other resolved)", dkTCP(d.OutPath(), 29403, ap(dkHost, 8081), blockTimeout))
		waitBlocked(t, e, flowCase{name: "outside -> other:80 after Docker answered", proto: "tcp", src: dkOut, sport: 29403, dst: ap(otherIP, 80),
			want: rec("blocked", "other-no-80", "other", "ingress", "tcp", dkOut, 29403, ap(otherIP, 80))}, "other", img, "0.0.0.0:8081,[::]:8081")
		e.stopClean()
	})

	t.Run("defaults", func(t *testing.T) {
		sock := filepath.Join(t.TempDir(), "nothing-here.sock")
		e := startDockerEngine(t, d, engineSection(true, false)+fmt.Sprintf("[docker]\nsocket = %q\nunreachable = \"defaults\"\n\n", sock)+rulesText("drop"))
		if st := statusJSON(t, e.sock); st.Docker.State != "unreachable" || st.Docker.Unlisted != "defaults" {
			t.Errorf("status docker = %+v, want unreachable, unlisted defaults", st.Docker)
		}
		c := staticCase
		c.sport, c.want = 29404, rec("blocked", "static-no-80", "static", "ingress", "tcp", dkOut, 29404, ap(ip, 80))
		expectBlocked(t, "outside -> 8080 (static-no-80, keyed by ips)", dkTCP(d.OutPath(), 29404, ap(dkHost, 8080), blockTimeout))
		expectAllowed(t, "outside -> 8081 (other-no-80 is unresolved: matches nothing; [defaults] allow)",
			dkTCP(d.OutPath(), 29405, ap(dkHost, 8081), allowTimeout))
		waitBlocked(t, e, c, "", "", "")
		checkRecords(t, []flowCase{c, {name: "outside -> other:80", proto: "tcp", src: dkOut, sport: 29405, dst: ap(otherIP, 80)}}, e.records())
		e.stopClean()
	})
}
