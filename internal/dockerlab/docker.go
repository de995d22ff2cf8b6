package dockerlab

import (
	"bytes"
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

	"github.com/nfqguard/nfqguard/internal/netlab"
)

// Fixed addressing of the link between the Docker and outside namespaces.
var (
	// HostOutside is the Docker namespace's address on the outside link
	// (ext0): the "host address" published ports are reached on.
	HostOutside = netip.MustParseAddr("203.0.113.1")
	// Outside is the outside client's address (eth0 of <prefix>out).
	Outside = netip.MustParseAddr("203.0.113.2")
	// HostOutside6 and Outside6 are their IPv6 counterparts, configured
	// only with Options.IPv6.
	HostOutside6 = netip.MustParseAddr("2001:db8:113::1")
	// Outside6 is the outside client's IPv6 address (Options.IPv6).
	Outside6 = netip.MustParseAddr("2001:db8:113::2")
)

// Routes the outside namespace has towards the Docker namespace besides
// its default route: Docker's default address pools, so containers on any
// network Docker creates can be addressed directly (and Docker's isolation
// of unpublished ports tested).
var (
	outsideRoutes  = []string{"172.16.0.0/12", "192.168.0.0/16"}
	outsideRoutes6 = []string{"fd00::/8"}
)

const (
	netnsDir = "/var/run/netns"
	extName  = "ext0"
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
	// IPv6 starts dockerd with --ip6tables --experimental (Docker 20.10's
	// IPv6 firewall is experimental) and adds IPv6 to the outside link.
	// Networks still need "--ipv6 --subnet …" to give containers IPv6
	// addresses.
	IPv6 bool
	// DockerdArgs are extra dockerd flags.
	DockerdArgs []string
	// Dockerd and CLI are the dockerd and docker binaries; empty means the
	// ones found on PATH.
	Dockerd, CLI string
	// StartTimeout bounds the wait for dockerd's API; 0 means 60 s. ctx
	// passed to Start bounds it too.
	StartTimeout time.Duration
}

// Docker is a private Docker engine in its own network namespace. Create it
// with Start and release it with Close. Its methods are safe for concurrent
// use.
type Docker struct {
	prefix  string
	ns, out string
	dir     string
	cli     string
	ipv6    bool
	version string

	ctx    context.Context // canceled by Close; parent of Command contexts
	cancel context.CancelFunc

	dockerd     *exec.Cmd
	dockerdDone chan struct{} // closed when dockerd has exited
	dockerdErr  error         // dockerd's exit status, set before dockerdDone closes

	mu         sync.Mutex // guards the fields below
	closed     bool
	namespaces []string // namespaces that may exist, deleted by Close
	image      string   // the test image's reference once Image succeeded

	imageMu sync.Mutex // serialises Image builds
}

// Start creates the namespaces, starts dockerd and waits until its API
// answers. On any error it removes everything it created before returning.
// ctx bounds the start-up only; the engine lives until Close.
func Start(ctx context.Context, opts Options) (*Docker, error) {
	if err := opts.normalize(); err != nil {
		return nil, err
	}
	cli := opts.CLI
	if cli == "" {
		cli = "docker"
	}
	cliPath, err := exec.LookPath(cli)
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
		ctx:    dctx,
		cancel: cancel,
	}
	if err := d.start(ctx, opts); err != nil {
		if cerr := d.Close(); cerr != nil {
			err = errors.Join(err, cerr)
		}
		return nil, err
	}
	return d, nil
}

func (o *Options) normalize() error {
	p, err := netlab.Prefix(o.Prefix, 32)
	if err != nil {
		return fmt.Errorf("dockerlab: %w", err)
	}
	o.Prefix = p
	if o.StartTimeout == 0 {
		o.StartTimeout = 60 * time.Second
	}
	return nil
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
		if _, err := os.Stat(nsPath(ns)); err == nil {
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
		if err := runIP(ctx, "netns", "add", ns); err != nil {
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
	if err := d.startDockerd(ctx, opts); err != nil {
		return err
	}
	return nil
}

// network configures both namespaces and the link between them.
func (d *Docker) network(ctx context.Context) error {
	sysctls := []struct{ ns, key, val string }{
		// Docker turns forwarding on itself and only then sets the FORWARD
		// policy to DROP (DESIGN.md §5).
		{d.ns, "net.ipv4.ip_forward", "0"},
	}
	if d.ipv6 {
		for _, ns := range []string{d.ns, d.out} {
			// Addresses usable at once: no duplicate address detection.
			sysctls = append(sysctls,
				struct{ ns, key, val string }{ns, "net.ipv6.conf.all.accept_dad", "0"},
				struct{ ns, key, val string }{ns, "net.ipv6.conf.default.accept_dad", "0"})
		}
	} else {
		// Keep the outside namespace quiet (no IPv6 link-local traffic).
		sysctls = append(sysctls,
			struct{ ns, key, val string }{d.out, "net.ipv6.conf.all.disable_ipv6", "1"},
			struct{ ns, key, val string }{d.out, "net.ipv6.conf.default.disable_ipv6", "1"})
	}
	for _, s := range sysctls {
		if err := Sysctl(nsPath(s.ns), s.key, s.val); err != nil {
			return err
		}
	}

	var b strings.Builder
	fmt.Fprintf(&b, "link set lo up\n")
	fmt.Fprintf(&b, "link add %s type veth peer name eth0 netns %s\n", extName, d.out)
	fmt.Fprintf(&b, "addr add %s/24 dev %s\n", HostOutside, extName)
	if d.ipv6 {
		fmt.Fprintf(&b, "addr add %s/64 dev %s nodad\n", HostOutside6, extName)
	}
	fmt.Fprintf(&b, "link set %s up\n", extName)
	if err := runIPBatch(ctx, d.ns, b.String()); err != nil {
		return fmt.Errorf("dockerlab: configure namespace %s: %w", d.ns, err)
	}

	b.Reset()
	fmt.Fprintf(&b, "link set lo up\n")
	fmt.Fprintf(&b, "addr add %s/24 dev eth0\n", Outside)
	if d.ipv6 {
		fmt.Fprintf(&b, "addr add %s/64 dev eth0 nodad\n", Outside6)
	}
	fmt.Fprintf(&b, "link set eth0 up\n")
	fmt.Fprintf(&b, "route add default via %s\n", HostOutside)
	for _, r := range outsideRoutes {
		fmt.Fprintf(&b, "route add %s via %s\n", r, HostOutside)
	}
	if d.ipv6 {
		fmt.Fprintf(&b, "route add default via %s\n", HostOutside6)
		for _, r := range outsideRoutes6 {
			fmt.Fprintf(&b, "route add %s via %s\n", r, HostOutside6)
		}
	}
	if err := runIPBatch(ctx, d.out, b.String()); err != nil {
		return fmt.Errorf("dockerlab: configure namespace %s: %w", d.out, err)
	}
	return nil
}

func (d *Docker) dataRoot() string { return filepath.Join(d.dir, "data") }
func (d *Docker) execRoot() string { return filepath.Join(d.dir, "exec") }

// LogPath returns the file dockerd's output goes to.
func (d *Docker) LogPath() string { return filepath.Join(d.dir, "dockerd.log") }

func (d *Docker) startDockerd(ctx context.Context, opts Options) error {
	dockerd := opts.Dockerd
	if dockerd == "" {
		dockerd = "dockerd"
	}
	dockerdPath, err := exec.LookPath(dockerd)
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

	args := []string{"--net=" + nsPath(d.ns), dockerdPath,
		"--config-file", confPath,
		"--data-root", d.dataRoot(),
		"--exec-root", d.execRoot(),
		"--pidfile", filepath.Join(d.dir, "dockerd.pid"),
		"-H", "unix://" + d.Socket(),
		"--containerd-namespace", containerdNamespace(d.prefix, "dk"),
		"--containerd-plugins-namespace", containerdNamespace(d.prefix, "dkp"),
	}
	if d.ipv6 {
		args = append(args, "--ip6tables", "--experimental")
	}
	args = append(args, opts.DockerdArgs...)
	cmd := exec.Command("nsenter", args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.Env = cleanEnv()
	// Its own process group: a terminal's ^C reaches the test, which then
	// stops dockerd in order, rather than dockerd directly.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("dockerlab: start dockerd: %w", err)
	}
	done := make(chan struct{})
	d.mu.Lock()
	d.dockerd, d.dockerdDone = cmd, done
	d.mu.Unlock()
	go func() {
		err := cmd.Wait()
		d.dockerdErr = err
		close(done)
	}()

	wctx, cancel := context.WithTimeout(ctx, opts.StartTimeout)
	defer cancel()
	for {
		if _, err := os.Stat(d.Socket()); err == nil {
			v, err := d.CLI(wctx, "version", "--format", "{{.Server.Version}}")
			if err == nil {
				d.version = strings.TrimSpace(v)
				return nil
			}
		}
		select {
		case <-done:
			return fmt.Errorf("dockerlab: dockerd exited during start-up (%v); log:\n%s", d.dockerdErr, d.logTail())
		case <-wctx.Done():
			return fmt.Errorf("dockerlab: dockerd API not up within %v: %w; log:\n%s", opts.StartTimeout, wctx.Err(), d.logTail())
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
func (d *Docker) NSPath() string { return nsPath(d.ns) }

// OutPath returns the bind-mount path of the outside namespace.
func (d *Docker) OutPath() string { return nsPath(d.out) }

// Dir returns the state directory (data and exec roots, socket, log).
func (d *Docker) Dir() string { return d.dir }

// Socket returns the path of dockerd's API socket.
func (d *Docker) Socket() string { return filepath.Join(d.dir, "docker.sock") }

// Version returns the server version dockerd reported at start-up.
func (d *Docker) Version() string { return d.version }

// IPv6 reports whether the engine was started with Options.IPv6.
func (d *Docker) IPv6() bool { return d.ipv6 }

func nsPath(ns string) string { return filepath.Join(netnsDir, ns) }

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
// Docker namespace: the way to run the engine under test there. ip netns
// exec also mounts a /sys that shows the namespace's interfaces, as on a
// real Docker host. The command runs in its own process group; if it is
// still running when Close is called (or ctx is done), its whole process
// group is killed.
func (d *Docker) Command(ctx context.Context, name string, args ...string) *exec.Cmd {
	cctx, cancel := context.WithCancel(ctx)
	context.AfterFunc(d.ctx, cancel)
	cmd := exec.CommandContext(cctx, "ip", append([]string{"netns", "exec", d.ns, name}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		err := syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		if errors.Is(err, syscall.ESRCH) {
			return os.ErrProcessDone
		}
		return err
	}
	return cmd
}

// IPTables runs iptables (the nf_tables backend Docker 20.10 uses on
// Debian) with args in the Docker namespace and returns its combined
// output.
func (d *Docker) IPTables(ctx context.Context, args ...string) (string, error) {
	return d.iptables(ctx, "iptables", args)
}

// IP6Tables is IPTables for ip6tables.
func (d *Docker) IP6Tables(ctx context.Context, args ...string) (string, error) {
	return d.iptables(ctx, "ip6tables", args)
}

func (d *Docker) iptables(ctx context.Context, bin string, args []string) (string, error) {
	out, err := RunIn(ctx, d.NSPath(), bin, append([]string{"-w"}, args...)...)
	if err != nil {
		return out, fmt.Errorf("dockerlab: %s in %s: %w", bin, d.ns, err)
	}
	return out, nil
}

// RunIn runs name with args in the network namespace at path nsPath (only
// the network namespace changes) and returns its combined output.
func RunIn(ctx context.Context, nsPath, name string, args ...string) (string, error) {
	var out []byte
	err := netlab.InNetNS(nsPath, func() error {
		// The child is forked from this thread, in nsPath's namespace.
		var err error
		out, err = exec.CommandContext(ctx, name, args...).CombinedOutput()
		return err
	})
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// Sysctl writes value to the sysctl key (dotted, "net.ipv4.ip_forward",
// or slash-separated, "net/ipv4/conf/eth0.1/forwarding") in the network
// namespace at path nsPath.
func Sysctl(nsPath, key, value string) error {
	err := netlab.InNetNS(nsPath, func() error {
		return os.WriteFile(sysctlPath(key), []byte(value+"\n"), 0)
	})
	if err != nil {
		return fmt.Errorf("dockerlab: sysctl %s=%s in %s: %w", key, value, nsPath, err)
	}
	return nil
}

// ReadSysctl reads the sysctl key in the network namespace at nsPath.
func ReadSysctl(nsPath, key string) (string, error) {
	var b []byte
	err := netlab.InNetNS(nsPath, func() error {
		var err error
		b, err = os.ReadFile(sysctlPath(key))
		return err
	})
	if err != nil {
		return "", fmt.Errorf("dockerlab: sysctl %s in %s: %w", key, nsPath, err)
	}
	return strings.TrimSpace(string(b)), nil
}

func sysctlPath(key string) string {
	if strings.Contains(key, "/") {
		return filepath.Join("/proc/sys", key)
	}
	return filepath.Join("/proc/sys", strings.ReplaceAll(key, ".", "/"))
}

func runIP(ctx context.Context, args ...string) error {
	out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// runIPBatch runs "ip -n ns -batch -" with the given commands.
func runIPBatch(ctx context.Context, ns, cmds string) error {
	args := []string{"-n", ns, "-batch", "-"}
	cmd := exec.CommandContext(ctx, "ip", args...)
	cmd.Stdin = strings.NewReader(cmds)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}
