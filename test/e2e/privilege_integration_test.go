package e2e

// End-to-end tests of least privilege: `nfqguard run` as uid 65534 holding
// only CAP_NET_ADMIN (and CAP_NET_RAW), through setpriv, in the netns lab.

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/nfqguard/nfqguard/flowlog"
	"github.com/nfqguard/nfqguard/internal/netlab"
	"github.com/nfqguard/nfqguard/internal/netlab/netlabtest"
)

// nobody is the unprivileged user the engine runs as.
const nobody = 65534

// Capability bits (linux/capability.h).
const (
	bitNetAdmin = 12
	bitNetRaw   = 13
)

// privConfig judges web's egress by port (smtp dropped) and by TLS server
// name (pastebin.com dropped after the handshake: the flow needs a reset),
// on two queues, so that a warning given per worker would show twice.
const privConfig = `
[engine]
queue = 0
workers = 2

[inspect]
max_wait = "2s"

[defaults]
ingress = "allow"
egress = "allow"

[[container]]
name = "web"
ips = ["172.17.0.2"]

  [[container.rule]]
  id = "web-no-smtp"
  direction = "egress"
  proto = "tcp"
  ports = ["25"]
  action = "drop"

  [[container.rule]]
  id = "no-pastebins"
  direction = "egress"
  proto = "tcp"
  ports = ["443"]
  tls_sni = ["pastebin.com"]
  action = "drop"
`

// rstWarning is what the engine logs, once, without CAP_NET_RAW.
const rstWarning = "cannot be cut with RSTs"

// requireSetpriv returns setpriv's path; it fails under CI=true when
// setpriv is missing (make deps installs util-linux), skips otherwise.
func requireSetpriv(t *testing.T) string {
	t.Helper()
	netlabtest.Require(t)
	p, err := exec.LookPath("setpriv")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("setpriv (util-linux) is needed to drop root: %v", err)
		}
		t.Skipf("setpriv (util-linux) not found: %v", err)
	}
	return p
}

// asNobody returns the argv prefix that runs a command as uid and gid
// 65534, without supplementary groups, holding exactly caps (setpriv
// names: "net_admin", "net_raw") as inheritable, ambient and bounding
// capabilities, so that they are its permitted and effective set after
// exec, and nothing can be regained.
func asNobody(setpriv string, caps ...string) []string {
	set := "-all"
	for _, c := range caps {
		set += ",+" + c
	}
	ambient := "-all"
	if len(caps) > 0 {
		ambient = set
	}
	return []string{setpriv, "--reuid=" + strconv.Itoa(nobody), "--regid=" + strconv.Itoa(nobody), "--clear-groups",
		"--inh-caps=" + set, "--ambient-caps=" + ambient, "--bounding-set=" + set}
}

// capMask is the capability set holding bits.
func capMask(bits ...int) uint64 {
	var m uint64
	for _, b := range bits {
		m |= 1 << b
	}
	return m
}

// procIDs reads the uids and the capability sets of /proc/PID/status (or
// of the text given), by field: "Uid", "Gid" (all four ids, as written),
// "CapEff", "CapPrm", "CapBnd", "CapAmb" (parsed).
type procIDs struct {
	uid, gid string
	caps     map[string]uint64
}

func parseProcStatus(t testing.TB, status string) procIDs {
	t.Helper()
	p := procIDs{caps: map[string]uint64{}}
	for _, line := range strings.Split(status, "\n") {
		key, value, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		value = strings.TrimSpace(value)
		switch key {
		case "Uid":
			p.uid = strings.Join(strings.Fields(value), " ")
		case "Gid":
			p.gid = strings.Join(strings.Fields(value), " ")
		case "CapEff", "CapPrm", "CapBnd", "CapAmb", "CapInh":
			n, err := strconv.ParseUint(value, 16, 64)
			if err != nil {
				t.Fatalf("bad %s in /proc status: %q", key, value)
			}
			p.caps[key] = n
		}
	}
	if p.uid == "" || len(p.caps) < 4 {
		t.Fatalf("no Uid or capability lines in /proc status:\n%s", status)
	}
	return p
}

// requireIdentity fails unless p runs as nobody with exactly want as its
// effective, permitted and bounding capability sets.
func requireIdentity(t testing.TB, what string, p procIDs, want uint64) {
	t.Helper()
	ids := fmt.Sprintf("%d %d %d %d", nobody, nobody, nobody, nobody)
	if p.uid != ids || p.gid != ids {
		t.Fatalf("%s: Uid %q, Gid %q; want %q for both", what, p.uid, p.gid, ids)
	}
	for _, set := range []string{"CapEff", "CapPrm", "CapBnd"} {
		if p.caps[set] != want {
			t.Fatalf("%s: %s = %#x, want %#x", what, set, p.caps[set], want)
		}
	}
}

// nobodyDir returns a fresh directory owned by nobody, mode 0700, where
// the engine's rule file and status socket go: nobody must be able to read
// the one and create the other, and the rule file policy wants both owned
// by root or the user nfqguard runs as.
func nobodyDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "nfqg-nobody-")
	must(t, err)
	t.Cleanup(func() { os.RemoveAll(dir) })
	must(t, os.Chown(dir, nobody, nobody))
	must(t, os.Chmod(dir, 0o700))
	return dir
}

// writeNobodyConfig writes text to dir/config.toml, owned by nobody, mode
// 0600.
func writeNobodyConfig(t *testing.T, dir, text string) string {
	t.Helper()
	p := filepath.Join(dir, "config.toml")
	must(t, os.WriteFile(p, []byte(text), 0o600))
	must(t, os.Chown(p, nobody, nobody))
	return p
}

func TestUnprivilegedEngine(t *testing.T) {
	t.Parallel()
	setpriv := requireSetpriv(t)
	l := netlabtest.New(t, netlab.Options{})
	web, out := l.Containers[0], l.Outside
	must(t, l.ServeTCPEcho(l.Out, ap(out, 9000)))
	must(t, l.ServeTCPEcho(l.Out, ap(out, 25)))
	must(t, l.ServeTLS(l.Out, ap(out, 443)))
	original := iptablesSave(t, l, false)
	dir := nobodyDir(t)
	cfg := writeNobodyConfig(t, dir, privConfig)
	sock := filepath.Join(dir, "s.sock")

	// start runs the engine as nobody with caps and status socket socket,
	// and checks, from /proc, that the process judging traffic is nfqguard
	// with exactly those capabilities.
	start := func(t *testing.T, socket string, caps []string, bits []int, extra ...string) *engine {
		t.Helper()
		argv := append(asNobody(setpriv, caps...), binary(t), "run", "-c", cfg, "--blocked-log", "stdout", "--status-socket", socket)
		e := runEngine(t, l.Command(context.Background(), l.Host, argv[0], append(argv[1:], extra...)...))
		pid := e.cmd.Process.Pid // ip netns exec and setpriv exec: the same process
		exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
		must(t, err)
		if exe != binary(t) {
			t.Fatalf("/proc/%d/exe = %s, want the engine %s", pid, exe, binary(t))
		}
		st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
		must(t, err)
		requireIdentity(t, "engine", parseProcStatus(t, string(st)), capMask(bits...))
		return e
	}
	// judged checks an allowed and a blocked exchange and the blocked
	// flow's record.
	judged := func(t *testing.T, e *engine, sport uint16) {
		t.Helper()
		requireOurRules(t, l, false, 1, 1)
		expectAllowed(t, "web -> outside:9000", tcpExchange(l, web.NS, 0, ap(out, 9000), allowTimeout))
		expectBlocked(t, "web -> outside:25", tcpExchange(l, web.NS, sport, ap(out, 25), blockTimeout))
		r, ok := e.waitRecord(5*time.Second, func(r flowlog.Record) bool {
			return r.Event == "blocked" && r.Proto == "tcp" && r.Src == web.Addr.String() && r.SrcPort == sport &&
				r.Dst == out.String() && r.DstPort == 25
		})
		switch {
		case !ok:
			t.Errorf("no blocked record for web:%d -> outside:25; records:\n%s", sport, fmtRecords(e.records()))
		case r.Rule != "web-no-smtp" || r.Container != "web" || r.Direction != "egress":
			t.Errorf("blocked record for web:%d -> outside:25:\n%s want rule web-no-smtp, container web, egress",
				sport, fmtRecords([]flowlog.Record{r}))
		}
	}
	// pastebin opens a TLS connection to pastebin.com, which deep
	// inspection drops after the handshake.
	pastebin := func(timeout time.Duration) (time.Duration, error) {
		begin := time.Now()
		_, err := l.TLSHandshakeVersion(web.NS, ap(out, 443), "pastebin.com", 1, tls.VersionTLS13, timeout)
		return time.Since(begin), err
	}

	t.Run("net_admin+net_raw", func(t *testing.T) {
		e := start(t, sock, []string{"net_admin", "net_raw"}, []int{bitNetAdmin, bitNetRaw})
		judged(t, e, 47001)
		// Resets work: the client learns at once that it was cut.
		if d, err := pastebin(l7Timeout); err == nil || !errors.Is(err, syscall.ECONNRESET) || d > 3*time.Second {
			t.Errorf("TLS to pastebin.com: %v after %v; want a connection reset by nfqguard at once", err, d)
		}

		// The status socket: nobody's, mode 0600, and usable by nobody.
		fi, err := os.Lstat(sock)
		must(t, err)
		if st := fi.Sys().(*syscall.Stat_t); fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != 0o600 || st.Uid != nobody {
			t.Errorf("status socket %s: mode %v, owner %d; want a socket, 0600, owned by %d", sock, fi.Mode(), st.Uid, nobody)
		}
		status := exec.Command(asNobody(setpriv)[0], append(asNobody(setpriv)[1:], binary(t), "status", "--socket", sock)...)
		if b, err := status.CombinedOutput(); err != nil || !strings.Contains(string(b), fmt.Sprintf("nfqguard pid %d", e.cmd.Process.Pid)) {
			t.Errorf("nfqguard status as nobody: %v\n%s", err, b)
		}
		if mf := scrapeOK(t, l); mf["nfqguard_status_socket_up"] == nil || metricValue(mf, "nfqguard_status_socket_up") != 1 {
			t.Errorf("nfqguard_status_socket_up = %v (present: %v), want 1", metricValue(mf, "nfqguard_status_socket_up"),
				mf["nfqguard_status_socket_up"] != nil)
		}

		// A reload of a rule file others may now write is refused like a
		// bad file: the rules in force stay.
		must(t, os.Chmod(cfg, 0o666))
		b, err := exec.Command(binary(t), "reload", "--socket", sock).CombinedOutput()
		must(t, os.Chmod(cfg, 0o600))
		if err == nil || !strings.Contains(string(b), "insecure rule file") || !strings.Contains(string(b), "chmod go-w "+cfg) {
			t.Errorf("reload of a world-writable rule file: %v\n%s\nwant it refused, naming the file and the fix", err, b)
		}
		expectBlocked(t, "web -> outside:25 after the refused reload", tcpExchange(l, web.NS, 47002, ap(out, 25), blockTimeout))

		stderr := e.stopClean()
		for _, bad := range []string{rstWarning, "reachable from other hosts", "level=ERROR msg=\"metrics"} {
			if strings.Contains(stderr, bad) {
				t.Errorf("stderr has %q:\n%s", bad, stderr)
			}
		}
		checkSameFirewall(t, l, false, original, "after a clean stop as nobody")
	})

	t.Run("net_admin", func(t *testing.T) {
		// And the metrics endpoint on every interface of the lab's host:
		// allowed, with a warning.
		e := start(t, sock, []string{"net_admin"}, []int{bitNetAdmin}, "--metrics-listen", "0.0.0.0:9477")
		judged(t, e, 47011)
		// No resets: the dropped flow hangs until its own timeout.
		if d, err := pastebin(2 * time.Second); err == nil || errors.Is(err, syscall.ECONNRESET) {
			t.Errorf("TLS to pastebin.com without CAP_NET_RAW: %v after %v; want a timeout, not a reset", err, d)
		}
		stderr := e.stopClean()
		if n := strings.Count(stderr, rstWarning); n != 1 || !strings.Contains(stderr, "needs CAP_NET_RAW") {
			t.Errorf("stderr has %d warnings %q (want 1, naming CAP_NET_RAW):\n%s", n, rstWarning, stderr)
		}
		if !strings.Contains(stderr, "level=WARN") || !strings.Contains(stderr, "reachable from other hosts") {
			t.Errorf("metrics on 0.0.0.0: no warning that the endpoint is reachable from other hosts:\n%s", stderr)
		}
		checkSameFirewall(t, l, false, original, "after a clean stop as nobody without CAP_NET_RAW")
	})

	// A status socket nobody cannot make: /run/nfqguard missing (root's to
	// create) or there but root's, as a run as root leaves it. The engine
	// judges traffic without it, says how to give nobody a directory, and
	// reports the socket down.
	for _, c := range []struct {
		name, socket string
		sport        uint16
	}{
		{"status socket directory cannot be created", filepath.Join("nfqguard", "s.sock"), 47021},
		{"status socket directory is root's", filepath.Join("nfqguard-root", "s.sock"), 47022},
	} {
		t.Run(c.name, func(t *testing.T) {
			// A /run of the test's own, root's, that nobody may enter
			// (t.TempDir's parent is root's alone), holding nfqguard-root
			// as RuntimeDirectory= makes /run/nfqguard for a unit run as root.
			run, err := os.MkdirTemp("", "nfqg-run-")
			must(t, err)
			t.Cleanup(func() { os.RemoveAll(run) })
			must(t, os.Chmod(run, 0o755))
			must(t, os.Mkdir(filepath.Join(run, "nfqguard-root"), 0o700))
			path := filepath.Join(run, c.socket)
			e := start(t, path, []string{"net_admin", "net_raw"}, []int{bitNetAdmin, bitNetRaw})
			judged(t, e, c.sport)
			stderr := e.stderr()
			var line string
			for _, l := range strings.Split(stderr, "\n") {
				if strings.Contains(l, `msg="status socket unavailable"`) {
					line = l
				}
			}
			t.Logf("%s", line)
			for _, want := range []string{"level=ERROR", "path=" + path, "permission denied", "as uid 65534",
				filepath.Dir(path) + " must exist and belong to that user", "RuntimeDirectory=nfqguard"} {
				if !strings.Contains(line, want) {
					t.Errorf("no log line msg=\"status socket unavailable\" with %q; stderr:\n%s", want, stderr)
				}
			}
			if _, err := os.Lstat(path); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("%s: want no socket there (or cannot tell: %v)", path, err)
			}
			mf := scrapeOK(t, l)
			if mf["nfqguard_status_socket_up"] == nil || metricValue(mf, "nfqguard_status_socket_up") != 0 {
				t.Errorf("nfqguard_status_socket_up = %v (present: %v), want 0", metricValue(mf, "nfqguard_status_socket_up"),
					mf["nfqguard_status_socket_up"] != nil)
			}
			e.stopClean()
			checkSameFirewall(t, l, false, original, "after a run without its status socket")
		})
	}

	for _, c := range []struct {
		name string
		caps []string
		bits []int
	}{
		{"net_raw", []string{"net_raw"}, []int{bitNetRaw}},
		{"none", nil, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			prefix := asNobody(setpriv, c.caps...)
			// The same prefix around cat shows the capabilities the engine
			// gets: it exits before it could be looked at.
			b, err := l.Command(context.Background(), l.Host, prefix[0], append(prefix[1:], "cat", "/proc/self/status")...).Output()
			must(t, err)
			requireIdentity(t, "setpriv "+strings.Join(prefix[1:], " "), parseProcStatus(t, string(b)), capMask(c.bits...))

			stderr, code := runExpectFail(t, l, append(prefix, binary(t), "run", "-c", cfg, "--status-socket", sock, "--metrics-listen", "off")...)
			if code != 1 || !strings.Contains(stderr, "not permitted") || !strings.Contains(stderr, "CAP_NET_ADMIN is missing") {
				t.Errorf("exit %d, stderr %q; want exit 1 naming the missing CAP_NET_ADMIN", code, stderr)
			}
			if _, err := os.Lstat(sock); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("the refused run left %s (or cannot tell: %v)", sock, err)
			}
			checkSameFirewall(t, l, false, original, "after a run without CAP_NET_ADMIN")
		})
	}
}

// TestRunRefusesInsecureConfig: run refuses a rule file others may write,
// before it touches the firewall.
func TestRunRefusesInsecureConfig(t *testing.T) {
	t.Parallel()
	l := netlabtest.New(t, netlab.Options{})
	original := iptablesSave(t, l, false)
	cfg := writeConfig(t, allowAllConfig(true, false))
	must(t, os.Chmod(filepath.Dir(cfg), 0o777))
	stderr, code := runExpectFail(t, l, binary(t), "run", "-c", cfg, "--status-socket", testSocket(t), "--metrics-listen", "off")
	if code != 1 || !strings.Contains(stderr, "insecure rule file "+cfg) || !strings.Contains(stderr, "mode 0777") ||
		!strings.Contains(stderr, "chmod go-w "+filepath.Dir(cfg)) {
		t.Errorf("exit %d, stderr %q; want exit 1 naming the file, the directory's mode and the fix", code, stderr)
	}
	checkSameFirewall(t, l, false, original, "after a refused rule file")
}
