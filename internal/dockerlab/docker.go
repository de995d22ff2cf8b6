package dockerlab

import (
	"bytes"
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nfqguard/nfqguard/internal/netns"
)

// Fixed addressing of the link between the Docker and outside namespaces:
// package netns's outside link, the same as the netns lab's.
var (
	// HostOutside is the Docker namespace's address on the outside link
	// (ext0): the "host address" published ports are reached on.
	HostOutside = netns.LinkHost.Addr()
	// Outside is the outside client's address (eth0 of <prefix>out).
	Outside = netns.LinkOutside.Addr()
	// HostOutside6 and Outside6 are their IPv6 counterparts, configured
	// only with Options.IPv6.
	HostOutside6 = netns.LinkHost6.Addr()
	// Outside6 is the outside client's IPv6 address (Options.IPv6).
	Outside6 = netns.LinkOutside6.Addr()
)

// Routes the outside namespace has towards the Docker namespace besides
// its default route: Docker's default address pools, so containers on any
// network Docker creates can be addressed directly (and Docker's isolation
// of unpublished ports tested).
var (
	outsideRoutes  = []netip.Prefix{netip.MustParsePrefix("172.16.0.0/12"), netip.MustParsePrefix("192.168.0.0/16")}
	outsideRoutes6 = []netip.Prefix{netip.MustParsePrefix("fd00::/8")}
)

const (
	// maxSocketPath is the longest unix socket path the kernel accepts
	// (sun_path is 108 bytes with the terminating NUL); containerd's
	// socket lives deepest, under the exec root.
	maxSocketPath = 107
)

// Options configures Start. The zero value starts an IPv4-only engine with
// a random prefix.
type Options struct {
	// Prefix is prepended to the namespace names (<prefix>dk, <prefix>out)
	// and the directory name. Empty means "nfqg" followed by 6 random hex
	// characters and "-". It may contain only letters, digits, '-', '_'
	// and '.'.
	Prefix string
	// IPv6 adds IPv6 to the outside link and, for Docker 20.10, starts
	// dockerd with --ip6tables --experimental (its IPv6 firewall is
	// experimental). Docker 29 runs with its defaults, where ip6tables is
	// on (and its IPv6 DOCKER-USER made) with or without this option.
	// Networks still need "--ipv6 --subnet …" to give containers IPv6
	// addresses.
	IPv6 bool
	// DockerdArgs are extra dockerd flags.
	DockerdArgs []string
	// Dockerd and CLI are the dockerd and docker binaries; empty means the
	// engine's: the ones found on PATH for Debian, those in Docker29Dir
	// for Docker29.
	Dockerd, CLI string
	// Engine is the Docker engine to run: Debian (the default, Docker
	// 20.10 from PATH) or Docker29 (built by "make deps"; Start fails
	// when it is not).
	Engine Engine
	// FirewallBackend is dockerd's --firewall-backend: IPTables or
	// NFTables (Docker29 only); empty means the engine's default,
	// iptables for both.
	FirewallBackend string
	// StartTimeout bounds the wait for dockerd's API; 0 means 60 s. ctx
	// passed to Start bounds it too.
	StartTimeout time.Duration
}

// Docker is a private Docker engine in its own network namespace. Create it
// with Start and release it with Close; in between, Stop, StartAgain and
// Restart stop and start its dockerd. Its methods are safe for concurrent
// use; those that talk to dockerd fail while it is stopped.
type Docker struct {
	prefix  string
	ns, out string
	dir     string
	cli     string
	ipv6    bool
	opts    Options // as given to Start, Prefix resolved: StartAgain reuses them
	engine  engine  // the dockerd build and how to run it

	ctx    context.Context // canceled by Close; parent of Command contexts
	cancel context.CancelFunc

	closeOnce sync.Once // Close's work runs once; later calls return nil

	// lifeMu serialises what starts and stops dockerd after Start: Stop,
	// StartAgain, Restart and Close hold it for the whole of their work.
	lifeMu sync.Mutex

	mu         sync.Mutex   // guards the fields below
	dockerd    *dockerdProc // the dockerd started last; nil before the first
	closed     bool         // Close has begun: no dockerd may be started again
	version    string       // the server version the last dockerd reported
	namespaces []string     // namespaces that may exist, deleted by Close
	image      string       // the test image's reference once Image succeeded

	imageMu sync.Mutex // serialises Image builds
}

// dockerdProc is one run of dockerd, from its start to its exit.
type dockerdProc struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when dockerd has exited
	err  error         // its exit status, set before done is closed
}

// exited reports whether the process has exited.
func (p *dockerdProc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// Start creates the namespaces, starts dockerd and waits until its API
// answers. On any error it removes everything it created before returning.
// ctx bounds the start-up only; the engine lives until Close.
func Start(ctx context.Context, opts Options) (*Docker, error) {
	prefix, err := netns.Prefix(opts.Prefix, 32)
	if err != nil {
		return nil, fmt.Errorf("dockerlab: %w", err)
	}
	opts.Prefix = prefix
	eng, err := resolveEngine(&opts)
	if err != nil {
		return nil, err
	}
	cliPath, err := exec.LookPath(cmp.Or(opts.CLI, "docker"))
	if err != nil {
		return nil, fmt.Errorf("dockerlab: docker client: %w", err)
	}
	dctx, cancel := context.WithCancel(context.Background())
	d := &Docker{
		prefix: opts.Prefix,
		ns:     opts.Prefix + "dk",
		out:    opts.Prefix + "out",
		cli:    cliPath,
		ipv6:   opts.IPv6,
		opts:   opts,
		engine: eng,
		ctx:    dctx,
		cancel: cancel,
	}
	if err := d.start(ctx, opts); err != nil {
		return nil, errors.Join(err, d.Close())
	}
	return d, nil
}

// containerdNamespace turns the prefix into a valid containerd namespace
// name (letters and digits, with single separators).
func containerdNamespace(prefix, suffix string) string {
	var b strings.Builder
	for _, r := range prefix {
		if r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
		}
	}
	return b.String() + "-" + suffix
}

func (d *Docker) start(ctx context.Context, opts Options) error {
	for _, ns := range []string{d.ns, d.out} {
		if _, err := os.Stat(netns.Path(ns)); err == nil {
			return fmt.Errorf("dockerlab: create namespace %s: already exists", ns)
		}
	}
	dir, err := os.MkdirTemp("", d.prefix+"docker-")
	if err != nil {
		return fmt.Errorf("dockerlab: state directory: %w", err)
	}
	d.mu.Lock()
	d.dir = dir
	d.mu.Unlock()
	if n := len(filepath.Join(d.execRoot(), "containerd", "containerd-debug.sock")); n > maxSocketPath {
		return fmt.Errorf("dockerlab: state directory %s too long for unix socket paths (TMPDIR?)", dir)
	}

	for _, ns := range []string{d.ns, d.out} {
		if err := netns.IPBatch(ctx, "", "netns add "+ns+"\n"); err != nil {
			return fmt.Errorf("dockerlab: create namespace %s: %w", ns, err)
		}
		// Only namespaces this Docker created are deleted by Close.
		d.mu.Lock()
		d.namespaces = append(d.namespaces, ns)
		d.mu.Unlock()
	}
	if err := d.network(ctx); err != nil {
		return err
	}
	return d.startDockerd(ctx)
}

// network configures both namespaces and the link between them.
func (d *Docker) network(ctx context.Context) error {
	// Off before dockerd starts: Docker 20.10 sets the FORWARD policy to
	// DROP only when it turns forwarding on itself, and with ACCEPT an
	// unpublished container port is reachable by direct routing.
	if err := netns.Sysctl(d.NSPath(), "net.ipv4.ip_forward", "0"); err != nil {
		return fmt.Errorf("dockerlab: %w", err)
	}
	// Without Options.IPv6 the Docker namespace keeps the kernel's IPv6
	// defaults, as a host where Docker runs without IPv6 does; only the
	// outside client is kept quiet.
	if d.ipv6 {
		if err := netns.PrepareIPv6(d.NSPath(), true); err != nil {
			return fmt.Errorf("dockerlab: %w", err)
		}
	}
	if err := netns.PrepareIPv6(d.OutPath(), d.ipv6); err != nil {
		return fmt.Errorf("dockerlab: %w", err)
	}

	outside := netns.OutsideLink{Outside: d.out, IPv6: d.ipv6, Routes: outsideRoutes, Routes6: outsideRoutes6}
	var b netns.Script
	b.Up("lo")
	outside.AddHostSide(&b)
	if err := netns.IPBatch(ctx, d.ns, b.String()); err != nil {
		return fmt.Errorf("dockerlab: configure namespace %s: %w", d.ns, err)
	}
	if err := netns.IPBatch(ctx, d.out, outside.OutsideScript()); err != nil {
		return fmt.Errorf("dockerlab: configure namespace %s: %w", d.out, err)
	}
	return nil
}

func (d *Docker) dataRoot() string { return filepath.Join(d.dir, "data") }
func (d *Docker) execRoot() string { return filepath.Join(d.dir, "exec") }

// LogPath returns the file dockerd's output goes to.
func (d *Docker) LogPath() string { return filepath.Join(d.dir, "dockerd.log") }

// startDockerd starts dockerd with d.opts and waits until its API
// answers. Start calls it first, StartAgain each time after: the same
// flags, state directory, socket and namespace every time.
func (d *Docker) startDockerd(ctx context.Context) error {
	opts := d.opts
	dockerdPath, err := exec.LookPath(cmp.Or(opts.Dockerd, "dockerd"))
	if err != nil {
		return fmt.Errorf("dockerlab: dockerd: %w", err)
	}
	// A daemon.json of our own: the machine's /etc/docker/daemon.json must
	// not apply, and the daemon's identity key (deprecated-key-path,
	// /etc/docker/key.json by default) stays in the state directory.
	conf, err := json.Marshal(map[string]any{"deprecated-key-path": filepath.Join(d.dir, "key.json")})
	if err != nil {
		return fmt.Errorf("dockerlab: daemon.json: %w", err)
	}
	confPath := filepath.Join(d.dir, "daemon.json")
	if err := os.WriteFile(confPath, conf, 0o600); err != nil {
		return fmt.Errorf("dockerlab: daemon.json: %w", err)
	}
	logf, err := os.OpenFile(d.LogPath(), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("dockerlab: dockerd log: %w", err)
	}
	defer logf.Close() // the child has its own descriptor
	// Each run's output follows the last one's in the same log.
	fmt.Fprintf(logf, "--- dockerlab: starting dockerd at %s\n", time.Now().Format(time.RFC3339Nano))

	if err := d.engine.prepare(d.NSPath()); err != nil {
		return err
	}
	args := []string{dockerdPath,
		"--config-file", confPath,
		"--data-root", d.dataRoot(),
		"--exec-root", d.execRoot(),
		"--pidfile", filepath.Join(d.dir, "dockerd.pid"),
		"-H", "unix://" + d.Socket(),
		"--containerd-namespace", containerdNamespace(d.prefix, "dk"),
		"--containerd-plugins-namespace", containerdNamespace(d.prefix, "dkp"),
	}
	if d.ipv6 && d.engine.kind == Debian {
		args = append(args, "--ip6tables", "--experimental")
	}
	args = append(args, d.engine.args()...)
	args = append(args, opts.DockerdArgs...)
	if args, err = d.engine.wrap(d.dir, args); err != nil {
		return err
	}
	cmd := exec.Command("nsenter", append([]string{"--net=" + netns.Path(d.ns)}, args...)...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = append(cleanEnv(), d.engine.env()...)
	// Its own process group: a terminal's ^C reaches the test, which then
	// stops dockerd in order, rather than dockerd directly.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("dockerlab: start dockerd: %w", err)
	}
	p := &dockerdProc{cmd: cmd, done: make(chan struct{})}
	d.mu.Lock()
	d.dockerd = p
	d.mu.Unlock()
	go func() {
		err := cmd.Wait()
		p.err = err
		close(p.done)
	}()

	timeout := cmp.Or(opts.StartTimeout, 60*time.Second)
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	// Close ends the wait too, so that it need not wait for it.
	stop := context.AfterFunc(d.ctx, cancel)
	defer stop()
	for {
		if _, err := os.Stat(d.Socket()); err == nil {
			v, err := d.CLI(wctx, "version", "--format", "{{.Server.Version}}")
			if err == nil {
				d.mu.Lock()
				d.version = strings.TrimSpace(v)
				d.mu.Unlock()
				return nil
			}
		}
		select {
		case <-p.done:
			return fmt.Errorf("dockerlab: dockerd exited during start-up (%v); log:\n%s", p.err, d.logTail())
		case <-wctx.Done():
			return fmt.Errorf("dockerlab: dockerd API not up within %v: %w; log:\n%s", timeout, wctx.Err(), d.logTail())
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// logTail returns the last lines of dockerd's log, for error messages.
func (d *Docker) logTail() string {
	b, err := os.ReadFile(d.LogPath())
	if err != nil {
		return fmt.Sprintf("(%v)", err)
	}
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	if len(lines) > 30 {
		lines = lines[len(lines)-30:]
	}
	return strings.Join(lines, "\n")
}

// cleanEnv is the environment for dockerd and the docker client: without
// DOCKER_* variables that would point the client elsewhere (DOCKER_HOST,
// DOCKER_CONTEXT, DOCKER_TLS_VERIFY, …).
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "DOCKER_") {
			env = append(env, kv)
		}
	}
	return env
}

// Prefix returns the name prefix of the namespaces and the directory.
func (d *Docker) Prefix() string { return d.prefix }

// NS returns the name of the Docker namespace, where dockerd, Docker's
// bridges and its iptables chains live.
func (d *Docker) NS() string { return d.ns }

// Out returns the name of the outside client namespace.
func (d *Docker) Out() string { return d.out }

// NSPath returns the bind-mount path of the Docker namespace.
func (d *Docker) NSPath() string { return netns.Path(d.ns) }

// OutPath returns the bind-mount path of the outside namespace.
func (d *Docker) OutPath() string { return netns.Path(d.out) }

// Dir returns the state directory (data and exec roots, socket, log).
func (d *Docker) Dir() string { return d.dir }

// Socket returns the path of dockerd's API socket.
func (d *Docker) Socket() string { return filepath.Join(d.dir, "docker.sock") }

// Version returns the server version dockerd reported at its last
// start-up.
func (d *Docker) Version() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.version
}

// IPv6 reports whether the engine was started with Options.IPv6.
func (d *Docker) IPv6() bool { return d.ipv6 }

// Engine returns the engine Start ran (Options.Engine).
func (d *Docker) Engine() Engine { return d.engine.kind }

// FirewallBackend returns dockerd's firewall backend: IPTables unless
// Options.FirewallBackend said NFTables.
func (d *Docker) FirewallBackend() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return cmp.Or(d.engine.firewall, IPTables)
}

// CLI runs the docker client against this engine ("docker -H unix://SOCK
// args...") and returns its standard output. The error carries the
// client's standard error.
func (d *Docker) CLI(ctx context.Context, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, d.cli, append([]string{"-H", "unix://" + d.Socket()}, args...)...)
	// The client's own configuration (contexts, plugins, credentials) is
	// kept in the state directory, away from the user's ~/.docker.
	cmd.Env = append(cleanEnv(), "DOCKER_CONFIG="+filepath.Join(d.dir, "cli"))
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return out.String(), fmt.Errorf("dockerlab: docker %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(errb.String()))
	}
	return out.String(), nil
}

// Command returns a command running "ip netns exec NS name args..." in the
// Docker namespace (see netns.Command): the way to run the engine under
// test there, with a /sys that shows the namespace's interfaces, as on a
// real Docker host. Its process group is killed if it is still running
// when Close is called (or ctx is done).
func (d *Docker) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	ctx, cancel := context.WithCancel(ctx)
	context.AfterFunc(d.ctx, cancel)
	return netns.Command(ctx, d.ns, name, args...)
}

// IPTables runs iptables (the nf_tables backend Docker 20.10 uses on
// Debian) with args in the Docker namespace and returns its combined
// output.
func (d *Docker) IPTables(ctx context.Context, args ...string) (string, error) {
	return netns.IPTables{Path: d.NSPath()}.Run(ctx, false, args...)
}

// IP6Tables is IPTables for ip6tables.
func (d *Docker) IP6Tables(ctx context.Context, args ...string) (string, error) {
	return netns.IPTables{Path: d.NSPath()}.Run(ctx, true, args...)
}
