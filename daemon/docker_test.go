package daemon

// In-process tests of the Docker wiring against a fake daemon
// (docker/fakedocker): Check with and without Docker, and the run's
// "containers changed → resolve → swap → log" step. No root, no dockerd.

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/nfqguard/nfqguard/docker"
	"github.com/nfqguard/nfqguard/docker/fakedocker"
	"github.com/nfqguard/nfqguard/firewall"
	"github.com/nfqguard/nfqguard/rules"
)

const dockerRules = `
[docker]
socket = "%SOCKET%"

[defaults]
ingress = "drop"

[[container]]
name = "legacy"
ips = ["172.18.0.9"]

[[container]]
name = "web"               # the Docker container named web
ingress = "allow"

[[container]]
name = "caches"
image = "redis:*"
label = "tier=db"

  [[container.rule]]
  id = "caches-from-web"
  direction = "ingress"
  proto = "tcp"
  ports = ["6379"]
  action = "allow"

[[container]]
name = "dbs"
label = "tier=db"

[[container]]
name = "api"
`

var (
	fakeWeb = fakedocker.Container{ID: "1111111111111111aaaa", Name: "web", Image: "nginx:1.27",
		Networks: map[string]fakedocker.Endpoint{"bridge": {IPv4: "172.17.0.2"}, "app": {IPv4: "172.18.0.2", IPv6: "fd00:18::2"}},
		Ports:    map[string][]fakedocker.Binding{"80/tcp": {{HostIP: "0.0.0.0", HostPort: "8080"}, {HostIP: "::", HostPort: "8080"}}}}
	fakeRedis = fakedocker.Container{ID: "2222222222222222bbbb", Name: "redis-1", Image: "redis:7",
		Labels:   map[string]string{"tier": "db"},
		Networks: map[string]fakedocker.Endpoint{"app": {IPv4: "172.18.0.3"}}}
)

func writeDockerRules(t *testing.T, socket string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.toml")
	if err := os.WriteFile(path, []byte(strings.Replace(dockerRules, "%SOCKET%", socket, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// repoConfig is the repository's example rule file.
const repoConfig = "../config.toml"

// check runs Check on the rule file at path and returns what it printed.
func check(t *testing.T, path string) (string, error) {
	t.Helper()
	var out bytes.Buffer
	err := Check(&out, path)
	return out.String(), err
}

// TestRunDockerNftables: Docker 29's nftables backend has no DOCKER-USER.
// With [engine] firewall = "iptables" run stops before it touches
// anything, with a message that says why and what to set; with the
// default "auto" it goes on and takes Docker's word for the hook.
func TestRunDockerNftables(t *testing.T) {
	srv := fakedocker.New(t, fakeWeb)
	srv.SetFirewallBackend("nftables")
	auto := writeDockerRules(t, srv.Path)
	b, err := os.ReadFile(auto)
	if err != nil {
		t.Fatal(err)
	}
	insist := filepath.Join(t.TempDir(), "iptables.toml")
	if err := os.WriteFile(insist, []byte("[engine]\nfirewall = \"iptables\"\n\n"+string(b)), 0o644); err != nil {
		t.Fatal(err)
	}
	d, err := New(t.Context(), Options{Config: insist, Stdout: io.Discard, Stderr: io.Discard})
	if err == nil {
		d.Close()
	}
	if !errors.Is(err, firewall.ErrDockerNftables) || !strings.Contains(err.Error(), "nftables firewall backend") ||
		!strings.Contains(err.Error(), "[engine] firewall") {
		t.Fatalf("run with firewall = \"iptables\" against Docker's nftables backend: %v, want firewall.ErrDockerNftables naming [engine] firewall", err)
	}
	if _, err := check(t, insist); err != nil {
		t.Errorf("check is refused: %v", err)
	}

	d, err = New(t.Context(), Options{Config: auto, Stdout: io.Discard, Stderr: io.Discard})
	if err != nil {
		t.Fatalf("run with firewall = \"auto\" against Docker's nftables backend: %v", err)
	}
	defer d.Close()
	if d.dockerFirewall != "nftables" {
		t.Errorf("Docker's backend as the daemon took it: %q, want nftables", d.dockerFirewall)
	}
}

func TestCLICheckDocker(t *testing.T) {
	srv := fakedocker.New(t, fakeWeb, fakeRedis)
	cfg := writeDockerRules(t, srv.Path)
	stdout, err := check(t, cfg)
	if err != nil {
		t.Fatalf("check: %v", err)
	}
	for _, want := range []string{
		`web (docker name "web")  ingress default allow`,
		"\n  container web (111111111111): 172.18.0.2, fd00:18::2, 172.17.0.2\n",
		`caches (docker image "redis:*", label "tier=db")`,
		"\n  container redis-1 (222222222222): 172.18.0.3\n",
		`dbs (docker label "tier=db": no running container)`,
		`api (docker name "api": no running container)`,
		"\ndocker: 20.10.24+fake (API 1.41) at " + srv.Path + ", 2 running containers\n",
		`warning: container redis-1 is selected by "caches" and "dbs": "caches", first in the file, applies` + "\n",
		"note: dbs matches no running container: its rules match nothing\n",
		"note: api matches no running container: its rules match nothing\n",
		cfg + ": ok\n",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("check output lacks %q:\n%s", want, stdout)
		}
	}
	if strings.Contains(stdout, "note: web") || strings.Contains(stdout, "note: caches") {
		t.Errorf("check notes a resolved entry:\n%s", stdout)
	}
}

func TestCLICheckDockerUnreachable(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "nothing.sock")
	cfg := writeDockerRules(t, sock)
	stdout, err := check(t, cfg)
	if err != nil {
		t.Fatalf("check with Docker unreachable must still accept a valid file: %v", err)
	}
	for _, want := range []string{
		`web (docker name "web": not resolved)`,
		"\ndocker: unreachable at " + sock + ": get version: dial unix " + sock + ": connect: no such file or directory\n",
		`note: web is unresolved (docker name "web"; Docker unreachable): its rules match nothing until Docker answers`,
		`note: caches is unresolved (docker image "redis:*", label "tier=db"; Docker unreachable)`,
		`note: api is unresolved`,
		cfg + ": ok\n",
	} {
		if !strings.Contains(stdout, want) {
			t.Errorf("check output lacks %q:\n%s", want, stdout)
		}
	}
	if strings.Contains(stdout, "note: legacy") {
		t.Errorf("check notes a static entry:\n%s", stdout)
	}
}

// TestCLICheckStaticNoDocker: a file without dynamic entries does not ask
// Docker anything.
func TestCLICheckStaticNoDocker(t *testing.T) {
	t.Setenv("DOCKER_HOST", "unix://"+filepath.Join(t.TempDir(), "never.sock"))
	stdout, err := check(t, repoConfig)
	if err != nil || strings.Contains(stdout, "\ndocker: ") || strings.Contains(stdout, "note:") {
		t.Errorf("check of a static file: err = %v, output mentions Docker or notes:\n%s", err, stdout)
	}
}

// logBuffer is a slog text handler's destination safe for a watcher
// goroutine and the test to share.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *logBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// take returns what was logged since the last take.
func (b *logBuffer) take() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.buf.String()
	b.buf.Reset()
	return s
}

func newTestLogger() (*slog.Logger, *logBuffer) {
	b := &logBuffer{}
	h := slog.NewTextHandler(b, &slog.HandlerOptions{Level: slog.LevelDebug, ReplaceAttr: func(_ []string, a slog.Attr) slog.Attr {
		if a.Key == slog.TimeKey {
			return slog.Attr{}
		}
		return a
	}})
	return slog.New(h), b
}

func lines(s string) []string {
	var out []string
	for _, l := range strings.Split(strings.TrimSpace(s), "\n") {
		if l != "" {
			out = append(out, l)
		}
	}
	return out
}

func dc(id, name, image string, labels map[string]string, addrs ...string) docker.Container {
	c := docker.Container{ID: id, Name: name, Image: image, Labels: labels}
	for i, a := range addrs {
		ip := netip.MustParseAddr(a)
		n := docker.Network{Name: "net" + string(rune('a'+i))}
		if ip.Is4() {
			n.IPv4 = ip
		} else {
			n.IPv6 = ip
		}
		c.Networks = append(c.Networks, n)
	}
	return c
}

// TestTableUpdater drives the run's "containers changed" step by hand:
// each list is resolved, swapped in, and logged as what changed.
func TestTableUpdater(t *testing.T) {
	base, err := rules.Parse("docker.toml", []byte(strings.Replace(dockerRules, "%SOCKET%", "/x.sock", 1)))
	if err != nil {
		t.Fatal(err)
	}
	var tables atomic.Pointer[rules.Table]
	tables.Store(base)
	log, buf := newTestLogger()
	u := newTableUpdater(base, &tables, log)
	webIP, redisIP := netip.MustParseAddr("172.18.0.2"), netip.MustParseAddr("172.18.0.3")
	tier := map[string]string{"tier": "db"}

	steps := []struct {
		name   string
		do     func()
		want   []string // log lines
		listed map[netip.Addr]string
	}{
		{"start-up", func() {
			u.apply([]docker.Container{dc("1", "web", "nginx", nil, "172.18.0.2"), dc("2", "redis-1", "redis:7", tier, "172.18.0.3")})
		}, []string{
			`level=INFO msg="docker container matched" entry=web container=web addrs=172.18.0.2`,
			`level=INFO msg="docker container matched" entry=caches container=redis-1 addrs=172.18.0.3`,
			`level=WARN msg="entry matches no running container: its rules match nothing" entry=dbs selector="docker label \"tier=db\""`,
			`level=WARN msg="entry matches no running container: its rules match nothing" entry=api selector="docker name \"api\""`,
			`level=WARN msg="docker conflict: container redis-1 is selected by \"caches\" and \"dbs\": \"caches\", first in the file, applies"`,
		}, map[netip.Addr]string{webIP: "web", redisIP: "caches"}},
		{"same list: nothing to say", func() {
			u.apply([]docker.Container{dc("1", "web", "nginx", nil, "172.18.0.2"), dc("2", "redis-1", "redis:7", tier, "172.18.0.3")})
		}, nil, map[netip.Addr]string{webIP: "web", redisIP: "caches"}},
		{"web restarted with a new address, redis stopped", func() {
			u.apply([]docker.Container{dc("3", "web", "nginx", nil, "172.18.0.7", "fd00::7")})
		}, []string{
			`level=INFO msg="docker container re-addressed" entry=web container=web addrs=172.18.0.7,fd00::7 was=172.18.0.2`,
			`level=INFO msg="docker container gone" entry=caches container=redis-1`,
			`level=INFO msg="entry matches no running container: its rules match nothing" entry=caches selector="docker image \"redis:*\", label \"tier=db\""`,
		}, map[netip.Addr]string{netip.MustParseAddr("172.18.0.7"): "web", netip.MustParseAddr("fd00::7"): "web"}},
		{"docker goes away", func() {
			u.failed(os.ErrNotExist, time.Second)
			u.failed(os.ErrNotExist, 2*time.Second)
		}, []string{
			`level=WARN msg="docker unreachable: keeping the last known containers; retrying in the background" err="file does not exist" retry_in=1s unlisted="dropped until Docker answers (docker.unreachable = \"drop\"): an address no entry lists may be a container an entry selects"`,
			`level=DEBUG msg="docker still unreachable" err="file does not exist" retry_in=2s`,
		}, map[netip.Addr]string{netip.MustParseAddr("172.18.0.7"): "web"}},
		{"reload while docker is away", func() { u.rebase(base) }, nil, map[netip.Addr]string{netip.MustParseAddr("172.18.0.7"): "web"}},
		{"docker back", func() {
			u.apply([]docker.Container{dc("3", "web", "nginx", nil, "172.18.0.7", "fd00::7")})
		}, []string{`level=INFO msg="docker reachable again" containers=1 unreachable_for=X`}, map[netip.Addr]string{netip.MustParseAddr("172.18.0.7"): "web"}},
	}
	unlisted := netip.MustParseAddr("172.18.0.99")
	for _, s := range steps {
		s.do()
		got := regexp.MustCompile(`unreachable_for=\S+`).ReplaceAllString(buf.take(), "unreachable_for=X")
		if diff := cmp.Diff(s.want, lines(got)); diff != "" {
			t.Errorf("%s: log (-want +got):\n%s", s.name, diff)
		}
		tbl := tables.Load()
		// While Docker is away, an unlisted address may be a container an
		// entry would select: it is dropped, and listed ones keep their
		// rules. Once Docker is back it gets [defaults] again.
		away := strings.Contains(s.name, "away")
		since, drop := tbl.DockerUnreachable()
		m := tbl.Judge(unlisted, rules.Ingress, rules.ProtoTCP, 1, netip.MustParseAddr("203.0.113.1"))
		if away != (drop && !since.IsZero()) || away != (m.RuleID == rules.RuleIDDockerUnreachable && m.Action == rules.Drop) {
			t.Errorf("%s: table unreachable since %v, dropping unlisted %v; an unlisted address gets %+v", s.name, since, drop, m)
		}
		for ip, want := range s.listed {
			if got := tbl.Judge(ip, rules.Ingress, rules.ProtoTCP, 1, netip.MustParseAddr("203.0.113.1")).Container; got != want {
				t.Errorf("%s: %s belongs to %q, want %q", s.name, ip, got, want)
			}
		}
	}
	if base.Resolved() || base.Listed(webIP) {
		t.Errorf("the parsed table was changed")
	}
}

// TestStartDocker runs the run's Docker wiring against a fake daemon:
// resolved before it returns, then following events, until cancelled.
func TestStartDocker(t *testing.T) {
	srv := fakedocker.New(t, fakeWeb)
	base, err := rules.Load(writeDockerRules(t, srv.Path))
	if err != nil {
		t.Fatal(err)
	}
	var tables atomic.Pointer[rules.Table]
	tables.Store(base)
	log, buf := newTestLogger()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, done := startDocker(ctx, log, base, &tables, new(atomic.Pointer[string]))

	web, redis := netip.MustParseAddr("172.18.0.2"), netip.MustParseAddr("172.18.0.3")
	if !tables.Load().Listed(web) {
		t.Fatalf("web not resolved when startDocker returned; log:\n%s", buf.take())
	}
	if l := buf.take(); !strings.Contains(l, `level=INFO msg=docker socket=`+srv.Path+` version=20.10.24+fake api=1.41 daemon_api=1.12-1.41 containers=1`) {
		t.Errorf("no start-up docker line with the version:\n%s", l)
	}
	srv.SetContainers(fakeWeb, fakeRedis)
	waitFor(t, func() bool {
		if srv.Streams() == 1 { // re-emit until the watcher has subscribed
			srv.Emit("container", "start", fakeRedis.ID, nil)
		}
		return tables.Load().Listed(redis)
	}, "redis-1 resolved after its start event")
	if m, ok := tables.Load().Meta(web); !ok || m.Name != "web" || m.Published(rules.ProtoTCP, 80) != "0.0.0.0:8080,[::]:8080" {
		t.Errorf("Meta(web) = %+v, %v", m, ok)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Fatal("the watcher did not stop within 2s of cancellation")
	}
}

// TestStartDocker29 is the start against Docker 29 with its minimum API
// version raised to 1.44 (DOCKER_MIN_API_VERSION), which refuses Docker
// 20.10's 1.41: rules keyed by container name must apply all the same.
func TestStartDocker29(t *testing.T) {
	srv := fakedocker.New(t, fakeWeb)
	srv.SetVersion(fakedocker.Docker29)
	base, err := rules.Load(writeDockerRules(t, srv.Path))
	if err != nil {
		t.Fatal(err)
	}
	var tables atomic.Pointer[rules.Table]
	tables.Store(base)
	log, buf := newTestLogger()
	ctx, cancel := context.WithCancel(context.Background())
	_, done := startDocker(ctx, log, base, &tables, new(atomic.Pointer[string]))
	defer func() { cancel(); <-done }()
	if !tables.Load().Listed(netip.MustParseAddr("172.18.0.2")) {
		t.Fatalf("web not resolved by a Docker 29 daemon; log:\n%s", buf.take())
	}
	if l := buf.take(); !strings.Contains(l, `version=29.0.0+fake api=1.52 daemon_api=1.44-1.52 containers=1`) {
		t.Errorf("no start-up docker line with the negotiated version:\n%s", l)
	}
	stdout, err := check(t, writeDockerRules(t, srv.Path))
	if err != nil || !strings.Contains(stdout, "\ndocker: 29.0.0+fake (API 1.52) at "+srv.Path+", 1 running containers\n") {
		t.Errorf("check against Docker 29: %v\n%s", err, stdout)
	}
	// A daemon this version of nfqguard cannot speak to says so.
	srv.SetVersion(map[string]string{"Version": "40.0.0", "ApiVersion": "1.70", "MinAPIVersion": "1.60"})
	stdout, _ = check(t, writeDockerRules(t, srv.Path))
	if !strings.Contains(stdout, "docker: refused at "+srv.Path+": list containers: Docker 40.0.0 serves API versions 1.60 and newer") {
		t.Errorf("check against a daemon out of range:\n%s", stdout)
	}
}

func TestStartDockerUnreachable(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "later.sock")
	base, err := rules.Load(writeDockerRules(t, sock))
	if err != nil {
		t.Fatal(err)
	}
	var tables atomic.Pointer[rules.Table]
	tables.Store(base)
	log, buf := newTestLogger()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	_, done := startDocker(ctx, log, base, &tables, new(atomic.Pointer[string]))
	l := buf.take()
	if !strings.Contains(l, `level=WARN msg=docker socket=`+sock+` unreachable="docker: get version: dial unix `+sock) ||
		!strings.Contains(l, `unresolved=web,caches,dbs,api note="rules keyed by ips work; these entries match nothing until Docker answers" unlisted="dropped until Docker answers (docker.unreachable = \"drop\"): an address no entry lists may be a container an entry selects" retry="in the background"`) {
		t.Errorf("start-up with Docker unreachable: log\n%s", l)
	}
	if since, drop := tables.Load().DockerUnreachable(); since.IsZero() || !drop || !strings.Contains(l, `unlisted="dropped until Docker answers`) {
		t.Errorf("Docker unreachable at start-up: table unreachable since %v, dropping unlisted %v; log\n%s", since, drop, l)
	}

	// Docker starts: the watcher finds it on its next retry (1s).
	fakedocker.NewAt(t, sock, fakeWeb)
	waitFor(t, func() bool { return tables.Load().Listed(netip.MustParseAddr("172.18.0.2")) }, "web resolved once Docker is up")
	if l := buf.take(); !strings.Contains(l, `msg="docker reachable again"`) || strings.Count(l, "level=WARN msg=\"docker unreachable") > 0 {
		t.Errorf("after Docker came up: log\n%s", l)
	}
	if since, drop := tables.Load().DockerUnreachable(); !since.IsZero() || drop {
		t.Errorf("Docker is up, the table says unreachable since %v (dropping %v)", since, drop)
	}
	cancel()
	<-done
}

func TestStartDockerAbsent(t *testing.T) {
	t.Setenv("DOCKER_HOST", "unix://"+filepath.Join(t.TempDir(), "none.sock"))
	base, err := rules.Load(repoConfig)
	if err != nil {
		t.Fatal(err)
	}
	var tables atomic.Pointer[rules.Table]
	tables.Store(base)
	log, buf := newTestLogger()
	_, done := startDocker(t.Context(), log, base, &tables, new(atomic.Pointer[string]))
	select {
	case <-done:
	default:
		t.Errorf("a watcher was started for a static file with no Docker socket")
	}
	if l := buf.take(); !strings.Contains(l, `level=INFO msg=docker socket=`) || !strings.Contains(l, `unreachable="no socket: not watched; flow logs carry no Docker names"`) {
		t.Errorf("log:\n%s", l)
	}
}

func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
