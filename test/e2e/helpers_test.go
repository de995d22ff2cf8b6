package e2e

// Helpers of the end-to-end tests: the nfqguard binary built once by
// TestMain, an engine started inside a lab's host namespace, readers of the
// lab's iptables state and traffic helpers with known source ports.

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"

	"github.com/nfqguard/nfqguard/flowlog"
	"github.com/nfqguard/nfqguard/internal/cli"
	"github.com/nfqguard/nfqguard/internal/dockerlab"
	"github.com/nfqguard/nfqguard/internal/netlab"
	"github.com/nfqguard/nfqguard/internal/netns"
	"github.com/nfqguard/nfqguard/internal/traffic"
)

// nfqBin and labBin are the nfqguard daemon and nfqguard-lab binaries
// built by TestMain, side by side (the lab binary runs the nfqguard beside
// it). Their directory is world-readable so that TestNotRoot can run them
// as nobody. buildErr is set when a build failed: the tests that need the
// binaries fail (see binary).
var (
	nfqBin, labBin string
	buildErr       error
)

// binary returns nfqBin, failing the test if TestMain could not build it.
func binary(t testing.TB) string {
	t.Helper()
	if buildErr != nil {
		t.Fatalf("nfqguard binaries: %v", buildErr)
	}
	return nfqBin
}

// labBinary returns labBin, failing the test if TestMain could not build it.
func labBinary(t testing.TB) string {
	t.Helper()
	binary(t)
	return labBin
}

func TestMain(m *testing.M) {
	os.Exit(testMain(m))
}

func testMain(m *testing.M) int {
	dir, err := os.MkdirTemp("", "nfqguard-e2e-")
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e: temp dir:", err)
		return 1
	}
	defer os.RemoveAll(dir)
	if err := os.Chmod(dir, 0o755); err != nil {
		fmt.Fprintln(os.Stderr, "e2e: chmod temp dir:", err)
		return 1
	}
	nfqBin, labBin = filepath.Join(dir, "nfqguard"), filepath.Join(dir, "nfqguard-lab")
	for _, b := range []struct{ out, pkg string }{{nfqBin, "../../cmd/nfqguard"}, {labBin, "../../cmd/nfqguard-lab"}} {
		// With the leakcheck tag the binaries can check their goroutines
		// at exit (see leakCheckEnv below); the release build has no such
		// code.
		args := []string{"build", "-tags", "leakcheck", "-o", b.out}
		if raceBuild {
			args = append(args, "-race")
		}
		build := exec.Command("go", append(args, b.pkg)...)
		if out, err := build.CombinedOutput(); err != nil {
			buildErr = errors.Join(buildErr, fmt.Errorf("go build %s: %v\n%s", b.pkg, err, out))
		}
	}
	// Every engine the tests start checks, when it exits, that none of its
	// goroutines outlived its shutdown (exit status 3 otherwise), and under
	// -race reports data races (exit status 66).
	os.Setenv(leakCheckEnv, "1")
	code := m.Run()
	if code == 0 {
		// The tests' own goroutines (servers, log readers) must be gone too.
		if err := goleak.Find(); err != nil {
			fmt.Fprintln(os.Stderr, "e2e: goroutine leak in the tests:", err)
			return 1
		}
	}
	return code
}

// leakCheckEnv turns on the binaries' goroutine leak check
// (internal/cli.LeakCheckEnv): an engine whose goroutines outlive its
// command exits with status 3.
const leakCheckEnv = cli.LeakCheckEnv

// Exchange timeouts: an allowed exchange must succeed within allowTimeout,
// a blocked one is one that has not succeeded within blockTimeout.
const (
	allowTimeout = 2 * time.Second
	blockTimeout = 700 * time.Millisecond
	readyTimeout = 15 * time.Second
	stopTimeout  = 15 * time.Second
)

var (
	ap      = netip.AddrPortFrom
	payload = []byte("hello through nfqguard")
)

// writeConfig writes cfg to a fresh file and returns its path.
func writeConfig(t testing.TB, cfg string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "config.toml")
	if err := os.WriteFile(p, []byte(cfg), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// engine is `nfqguard run` running in a lab's host namespace.
type engine struct {
	t       testing.TB
	cmd     *exec.Cmd
	sock    string // its status socket, when the helper that started it chose one
	mu      sync.Mutex
	changed chan struct{} // closed and replaced whenever output arrives
	partial []byte        // stdout bytes after the last newline
	recs    []flowlog.Record
	junk    []string // stdout lines that are not records
	errOut  bytes.Buffer
	done    chan struct{} // closed when the process has exited
	waitErr error
}

// notify wakes waiters; e.mu must be held.
func (e *engine) notify() {
	close(e.changed)
	e.changed = make(chan struct{})
}

type engineStdout struct{ e *engine }

func (w engineStdout) Write(p []byte) (int, error) {
	e := w.e
	e.mu.Lock()
	defer e.mu.Unlock()
	e.partial = append(e.partial, p...)
	for {
		i := bytes.IndexByte(e.partial, '\n')
		if i < 0 {
			break
		}
		line := string(e.partial[:i])
		e.partial = e.partial[i+1:]
		var r flowlog.Record
		if err := json.Unmarshal([]byte(line), &r); err != nil || r.Event == "" {
			e.junk = append(e.junk, line)
			continue
		}
		e.recs = append(e.recs, r)
	}
	e.notify()
	return len(p), nil
}

type engineStderr struct{ e *engine }

func (w engineStderr) Write(p []byte) (int, error) {
	w.e.mu.Lock()
	defer w.e.mu.Unlock()
	w.e.errOut.Write(p)
	w.e.notify()
	return len(p), nil
}

// startTestEngine writes cfgText to a file and runs
// `nfqguard run -c FILE --blocked-log stdout extra...` in l's host
// namespace, waiting until it logs "nfqguard running". The engine is killed
// in cleanup if the test has not stopped it.
func startTestEngine(t testing.TB, l *netlab.Lab, cfgText string, extra ...string) *engine {
	t.Helper()
	cfg := writeConfig(t, cfgText)
	args := append([]string{"run", "-c", cfg, "--blocked-log", "stdout", "--status-socket", testSocket(t)}, extra...)
	return runEngine(t, l.Command(context.Background(), l.Host, binary(t), args...))
}

// testSocket returns a status socket path of the test's own (short: a
// socket path is limited to 107 bytes), so that engines of several tests,
// or a daemon on the host, never share one.
func testSocket(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "nfqg")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return filepath.Join(dir, "s.sock")
}

// runEngine starts cmd (nfqguard run …, in a lab's or a private Docker's
// namespace) with its output parsed into an engine and waits for
// "nfqguard running". The engine is killed in cleanup if the test has not
// stopped it.
func runEngine(t testing.TB, cmd *exec.Cmd) *engine {
	t.Helper()
	e := &engine{t: t, cmd: cmd, changed: make(chan struct{}), done: make(chan struct{})}
	e.cmd.Stdout = engineStdout{e}
	e.cmd.Stderr = engineStderr{e}
	e.cmd.WaitDelay = 5 * time.Second
	if err := e.cmd.Start(); err != nil {
		t.Fatalf("start engine: %v", err)
	}
	go func() {
		err := e.cmd.Wait()
		e.mu.Lock()
		e.waitErr = err
		e.notify()
		e.mu.Unlock()
		close(e.done)
	}()
	t.Cleanup(func() {
		select {
		case <-e.done:
		default:
			_ = e.cmd.Process.Signal(syscall.SIGKILL)
			<-e.done
		}
		checkEngineHealth(t, e.stderr())
		if t.Failed() {
			t.Logf("engine stderr:\n%s", e.stderr())
		}
	})
	ok := e.waitFor(readyTimeout, func() bool { return strings.Contains(e.errOut.String(), "nfqguard running") })
	if !ok {
		select {
		case <-e.done:
			t.Fatalf("engine exited before it was ready (%v); stderr:\n%s", e.exitErr(), e.stderr())
		default:
			t.Fatalf("engine did not log \"nfqguard running\" within %v; stderr:\n%s", readyTimeout, e.stderr())
		}
	}
	return e
}

// checkEngineHealth fails t when an engine's stderr reports a data race
// (the binary is built with -race when the tests are) or goroutines that
// outlived its shutdown (NFQGUARD_LEAK_CHECK).
func checkEngineHealth(t testing.TB, stderr string) {
	t.Helper()
	for _, bad := range []string{"WARNING: DATA RACE", "goroutines outlived the command"} {
		if strings.Contains(stderr, bad) {
			t.Errorf("engine stderr reports %q", bad)
		}
	}
}

// waitFor waits until cond (called with e.mu held) is true, the engine has
// exited, or timeout passes. It reports cond's last value.
func (e *engine) waitFor(timeout time.Duration, cond func() bool) bool {
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	for {
		e.mu.Lock()
		ok := cond()
		ch := e.changed
		e.mu.Unlock()
		if ok {
			return true
		}
		select {
		case <-ch:
		case <-e.done:
			e.mu.Lock()
			ok := cond()
			e.mu.Unlock()
			return ok
		case <-timer.C:
			return false
		}
	}
}

func (e *engine) exitErr() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.waitErr
}

// records returns the flow-log records received so far.
func (e *engine) records() []flowlog.Record {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]flowlog.Record(nil), e.recs...)
}

// junkLines returns stdout lines that were not flow-log records.
func (e *engine) junkLines() []string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]string(nil), e.junk...)
}

// waitRecord waits for a record satisfying pred.
func (e *engine) waitRecord(timeout time.Duration, pred func(flowlog.Record) bool) (flowlog.Record, bool) {
	var found flowlog.Record
	ok := e.waitFor(timeout, func() bool {
		for _, r := range e.recs {
			if pred(r) {
				found = r
				return true
			}
		}
		return false
	})
	return found, ok
}

func (e *engine) stderr() string {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.errOut.String()
}

// stop sends sig and waits for the engine to exit; it returns the engine's
// stderr and its exit error (nil for status 0).
func (e *engine) stop(sig syscall.Signal) (string, error) {
	e.t.Helper()
	select {
	case <-e.done:
		e.t.Fatalf("engine had already exited (%v) before %v; stderr:\n%s", e.exitErr(), sig, e.stderr())
	default:
	}
	if err := e.cmd.Process.Signal(sig); err != nil {
		e.t.Fatalf("signal engine: %v", err)
	}
	select {
	case <-e.done:
	case <-time.After(stopTimeout):
		_ = e.cmd.Process.Signal(syscall.SIGKILL)
		<-e.done
		e.t.Fatalf("engine did not exit within %v of %v; stderr:\n%s", stopTimeout, sig, e.stderr())
	}
	return e.stderr(), e.exitErr()
}

// stopClean stops the engine with SIGTERM and fails the test unless it
// exits with status 0.
func (e *engine) stopClean() string {
	e.t.Helper()
	stderr, err := e.stop(syscall.SIGTERM)
	if err != nil {
		e.t.Fatalf("engine exited with %v after SIGTERM; stderr:\n%s", err, stderr)
	}
	return stderr
}

// kill SIGKILLs the engine (no cleanup runs) and waits for it.
func (e *engine) kill() {
	e.t.Helper()
	_, _ = e.stop(syscall.SIGKILL)
}

// summary parses the key=value pairs of the engine's "nfqguard stopped"
// log line.
func summary(t testing.TB, stderr string) map[string]uint64 {
	t.Helper()
	for _, line := range strings.Split(stderr, "\n") {
		if !strings.Contains(line, `msg="nfqguard stopped"`) {
			continue
		}
		out := map[string]uint64{}
		for _, f := range strings.Fields(line) {
			k, v, ok := strings.Cut(f, "=")
			if !ok {
				continue
			}
			if n, err := strconv.ParseUint(v, 10, 64); err == nil {
				out[k] = n
			}
		}
		return out
	}
	t.Fatalf("no \"nfqguard stopped\" line in stderr:\n%s", stderr)
	return nil
}

// runEngineExpectFail runs `nfqguard run -c FILE args...` in l's host
// namespace and expects it to exit on its own with a non-zero status.
func runEngineExpectFail(t testing.TB, l *netlab.Lab, cfgText string, args ...string) (stderr string, exitCode int) {
	t.Helper()
	cfg := writeConfig(t, cfgText)
	// Its own status socket and no metrics listener: a test engine may be
	// running in the same lab, and the failure under test must be the
	// engine's, not a taken port.
	return runExpectFail(t, l, append([]string{binary(t), "run", "-c", cfg, "--status-socket", testSocket(t), "--metrics-listen", "off"}, args...)...)
}

// runExpectFail runs argv in l's host namespace and expects a non-zero
// exit within 15 s; stdout must stay empty.
func runExpectFail(t testing.TB, l *netlab.Lab, argv ...string) (stderr string, exitCode int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), readyTimeout)
	defer cancel()
	cmd := l.Command(ctx, l.Host, argv[0], argv[1:]...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if ctx.Err() != nil {
		t.Fatalf("%v did not exit within %v (it should have failed at start-up); stderr:\n%s", argv, readyTimeout, errb.String())
	}
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		t.Fatalf("%v: want a non-zero exit, got %v; stderr:\n%s", argv, err, errb.String())
	}
	if out.Len() > 0 {
		t.Errorf("%v wrote to stdout: %q", argv, out.String())
	}
	checkEngineHealth(t, errb.String())
	return errb.String(), ee.ExitCode()
}

// --- iptables state -------------------------------------------------------

// firewallHost is a namespace whose iptables the tests read: a netns lab
// (*netlab.Lab) or a private Docker (*dockerlab.Docker).
type firewallHost interface {
	IPTables(ctx context.Context, args ...string) (string, error)
	IP6Tables(ctx context.Context, args ...string) (string, error)
}

func iptables(t testing.TB, h firewallHost, v6 bool, args ...string) string {
	t.Helper()
	run := h.IPTables
	if v6 {
		run = h.IP6Tables
	}
	out, err := run(context.Background(), args...)
	if err != nil {
		t.Fatalf("%v", err)
	}
	return out
}

// hookChain is the table and chain where nfqguard puts its redirect on
// h: filter DOCKER-USER, or mangle NFQGUARD for a Docker running its
// nftables firewall backend (no DOCKER-USER there).
func hookChain(h firewallHost) (table, chain string) {
	if d, ok := h.(*dockerlab.Docker); ok && d.FirewallBackend() == dockerlab.NFTables {
		return "mangle", "NFQGUARD"
	}
	return "filter", "DOCKER-USER"
}

// chainRules returns `iptables -S` of the redirect's chain (hookChain:
// DOCKER-USER, or NFQGUARD with Docker's nftables backend) line by line.
func chainRules(t testing.TB, h firewallHost, v6 bool) []string {
	t.Helper()
	table, chain := hookChain(h)
	if chain == "DOCKER-USER" {
		return nonEmptyLines(iptables(t, h, v6, "-t", table, "-S", chain))
	}
	// NFQGUARD is nfqguard's own chain, gone after a clean stop (where
	// iptables-nft fails to list it): read it from the whole table.
	var rules []string
	for _, r := range nonEmptyLines(iptables(t, h, v6, "-t", table, "-S")) {
		if r == "-N "+chain || strings.HasPrefix(r, "-A "+chain+" ") {
			rules = append(rules, r)
		}
	}
	return rules
}

// ourRules returns the lines of `iptables -S DOCKER-USER` that nfqguard
// wrote.
func ourRules(t testing.TB, h firewallHost, v6 bool) []string {
	t.Helper()
	var out []string
	for _, r := range chainRules(t, h, v6) {
		if strings.Contains(r, "nfqguard") {
			out = append(out, r)
		}
	}
	return out
}

// countRules counts NFQUEUE and CONNMARK rules among rules.
func countRules(rules []string) (nfqueue, connmark int) {
	for _, r := range rules {
		if strings.Contains(r, "-j NFQUEUE") {
			nfqueue++
		}
		if strings.Contains(r, "-j CONNMARK") {
			connmark++
		}
	}
	return nfqueue, connmark
}

// requireOurRules fails unless the redirect's chain (hookChain) holds
// exactly wantQueue NFQUEUE rules and wantConnmark CONNMARK rules of
// nfqguard, besides at most one
// drop of INVALID and one of UNTRACKED packets ([engine] invalid).
func requireOurRules(t testing.TB, h firewallHost, v6 bool, wantQueue, wantConnmark int) []string {
	t.Helper()
	var rules []string
	drops := map[string]int{}
	for _, r := range ourRules(t, h, v6) {
		// The RETURN of a chain nfqguard created (--create-chain) is not a
		// redirect rule.
		if strings.Contains(r, "nfqguard-created-chain") {
			continue
		}
		if tag := dropTag(r); tag != "" {
			drops[tag]++
			continue
		}
		rules = append(rules, r)
	}
	q, c := countRules(rules)
	if q != wantQueue || c != wantConnmark || len(rules) != wantQueue+wantConnmark || drops["invalid"] > 1 || drops["untracked"] > 1 {
		_, chain := hookChain(h)
		t.Fatalf("%s (v6=%v) has %d NFQUEUE and %d CONNMARK rules of nfqguard (%d in all, and drops %v), want %d and %d:\n%s",
			chain, v6, q, c, len(rules), drops, wantQueue, wantConnmark, strings.Join(chainRules(t, h, v6), "\n"))
	}
	return rules
}

// dropTag says which of nfqguard's drops of packets without a connection
// rule is ("invalid", "untracked"), or "".
func dropTag(rule string) string {
	for _, tag := range []string{"invalid", "untracked"} {
		if strings.Contains(rule, "--comment nfqguard-"+tag+" ") {
			return tag
		}
	}
	return ""
}

// checkDockerUserLayout fails unless the redirect's chain (hookChain) is
// nfqguard's redirect, companion and drops of INVALID and UNTRACKED
// packets in front of what Docker put there, and nothing else: in
// DOCKER-USER a RETURN (Docker up to 27, and the lab, which imitates
// 20.10), or nothing (Docker 28 and later create the chain empty); in
// NFQGUARD, nfqguard's own chain, nothing.
func checkDockerUserLayout(t testing.TB, h firewallHost, v6 bool, when string) {
	t.Helper()
	_, chain := hookChain(h)
	rules := chainRules(t, h, v6)
	docker := []string{"-A DOCKER-USER -j RETURN"}
	if d, ok := h.(*dockerlab.Docker); ok && d.Engine() == dockerlab.Docker29 {
		docker = nil
	}
	bad := len(rules) != 5+len(docker) || rules[0] != "-N "+chain ||
		!strings.Contains(rules[1], "-j NFQUEUE") || !strings.Contains(rules[1], "nfqguard-redirect") ||
		!strings.Contains(rules[2], "-j CONNMARK") || !strings.Contains(rules[2], "nfqguard-fastpath") ||
		dropTag(rules[3]) != "invalid" || dropTag(rules[4]) != "untracked" ||
		!slices.Equal(rules[5:], docker)
	if bad {
		t.Fatalf("%s: want %s (v6=%v) = [NFQUEUE redirect, CONNMARK companion, INVALID drop, UNTRACKED drop] + Docker's %q, got:\n%s",
			when, chain, v6, docker, strings.Join(rules, "\n"))
	}
	requireOurRules(t, h, v6, 1, 1)
}

// ruleCounter returns the packet counter of the NFQUEUE rule in the
// redirect's chain (hookChain), IPv4.
func ruleCounter(t testing.TB, h firewallHost) uint64 {
	t.Helper()
	table, chain := hookChain(h)
	out := iptables(t, h, false, "-t", table, "-v", "-x", "-n", "-L", chain)
	var found []uint64
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		// pkts bytes target prot opt in out source destination
		if len(f) >= 3 && f[2] == "NFQUEUE" {
			n, err := strconv.ParseUint(f[0], 10, 64)
			if err != nil {
				t.Fatalf("bad counter in %q", line)
			}
			found = append(found, n)
		}
	}
	if len(found) != 1 {
		t.Fatalf("want exactly one NFQUEUE rule in %s, found %d:\n%s", chain, len(found), out)
	}
	return found[0]
}

// ruleCounterOf returns the packet count of the first rule of chain in
// table of fw (iptables, IPv4) whose iptables -S line contains match.
func ruleCounterOf(t testing.TB, fw netns.IPTables, table, chain, match string) uint64 {
	t.Helper()
	out, err := fw.Run(context.Background(), false, "-t", table, "-S", chain, "-v")
	must(t, err)
	for _, line := range strings.Split(out, "\n") {
		if !strings.Contains(line, match) {
			continue
		}
		// -A CHAIN ... -c PACKETS BYTES
		f := strings.Fields(line)
		for i := range f {
			if f[i] == "-c" && i+1 < len(f) {
				n, err := strconv.ParseUint(f[i+1], 10, 64)
				must(t, err)
				return n
			}
		}
	}
	t.Fatalf("no counter for %q in %s %s:\n%s", match, table, chain, out)
	return 0
}

var counters = regexp.MustCompile(`\s*\[\d+:\d+\]`)

// iptablesSave returns `iptables-save` (or ip6tables-save) of l's host
// namespace without comments and counters, for before/after comparisons.
func iptablesSave(t testing.TB, l *netlab.Lab, v6 bool) string {
	t.Helper()
	bin := "iptables-save"
	if v6 {
		bin = "ip6tables-save"
	}
	if l.Backend == netlab.BackendLegacy {
		bin = strings.Replace(bin, "-save", "-legacy-save", 1)
	}
	out, err := l.Command(context.Background(), l.Host, bin).CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v", bin, err)
	}
	return comparableSave(string(out))
}

// comparableSave returns iptables-save output without its time stamps
// ("# Generated by ... on DATE", "# Completed on DATE"), counters and an
// empty mangle table (what the guard leaves: see netns.WithoutEmptyTable),
// but with warnings such as "# Warning: iptables-legacy tables present":
// they report a change too.
func comparableSave(out string) string {
	var b strings.Builder
	for _, line := range strings.Split(out, "\n") {
		if line == "" || strings.HasPrefix(line, "# Generated") || strings.HasPrefix(line, "# Completed") {
			continue
		}
		b.WriteString(counters.ReplaceAllString(line, ""))
		b.WriteByte('\n')
	}
	return netns.WithoutEmptyTable(b.String(), "mangle")
}

// checkSameFirewall reports an error if the firewall differs from
// before.
func checkSameFirewall(t testing.TB, l *netlab.Lab, v6 bool, before, when string) {
	t.Helper()
	if after := iptablesSave(t, l, v6); after != before {
		hint := ""
		if strings.Contains(after, "legacy tables present") && !strings.Contains(before, "legacy tables present") {
			hint = " (the run instantiated iptables-legacy tables that were not there: " +
				"merely listing a chain with iptables-legacy creates its filter table and hooks)"
		}
		t.Errorf("%s: iptables-save (v6=%v) changed%s.\nbefore:\n%s\nafter:\n%s", when, v6, hint, before, after)
	}
}

// nonEmptyLines returns the lines of s that are neither blank nor comments.
func nonEmptyLines(s string) []string {
	var out []string
	sc := bufio.NewScanner(strings.NewReader(s))
	for sc.Scan() {
		// Skip iptables' "# Warning: ..." lines (on stderr, combined here).
		if line := strings.TrimSpace(sc.Text()); line != "" && !strings.HasPrefix(line, "#") {
			out = append(out, line)
		}
	}
	return out
}

// --- traffic --------------------------------------------------------------

// tcpExchange connects from ns (from source port sport, 0 for any) to dst,
// sends payload, half-closes and expects it echoed back before timeout.
func tcpExchange(l *netlab.Lab, ns string, sport uint16, dst netip.AddrPort, timeout time.Duration) error {
	return traffic.TCPExchange(l.NSPath(ns), sport, dst, payload, timeout)
}

// dialTCP opens a TCP connection from ns with source port sport.
func dialTCP(l *netlab.Lab, ns string, sport uint16, dst netip.AddrPort, deadline time.Time) (*net.TCPConn, error) {
	return traffic.DialTCP(l.NSPath(ns), sport, dst, deadline)
}

// udpExchange sends one datagram from ns (source port sport) to dst and
// expects it echoed before timeout.
func udpExchange(l *netlab.Lab, ns string, sport uint16, dst netip.AddrPort, timeout time.Duration) error {
	return traffic.UDPExchange(l.NSPath(ns), sport, dst, payload, timeout)
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.Is(err, os.ErrDeadlineExceeded) || errors.Is(err, context.DeadlineExceeded) ||
		(errors.As(err, &ne) && ne.Timeout())
}

// expectAllowed fails the test unless err is nil.
func expectAllowed(t testing.TB, what string, err error) {
	t.Helper()
	if err != nil {
		t.Errorf("%s: want allowed, got %v", what, err)
	}
}

// expectBlocked fails the test unless err is a timeout.
func expectBlocked(t testing.TB, what string, err error) {
	t.Helper()
	switch {
	case err == nil:
		t.Errorf("%s: want blocked, but the exchange succeeded", what)
	case !isTimeout(err):
		t.Errorf("%s: want blocked (a timeout), got %v", what, err)
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// fmtRecords renders records for failure messages.
func fmtRecords(rs []flowlog.Record) string {
	var b strings.Builder
	for _, r := range rs {
		fmt.Fprintf(&b, "  %s rule=%s container=%s %s %s %s:%d -> %s:%d packets=%d reason=%q\n",
			r.Event, r.Rule, r.Container, r.Direction, r.Proto, r.Src, r.SrcPort, r.Dst, r.DstPort, r.Packets, r.Reason)
	}
	if b.Len() == 0 {
		return "  (none)\n"
	}
	return b.String()
}
