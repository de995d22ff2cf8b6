// Package netlab builds a self-contained, Docker-shaped network lab out of
// Linux network namespaces, veth pairs and a bridge, without Docker.
//
// The lab consists of:
//
//   - a host namespace (<prefix>host) with a Linux bridge docker0
//     (172.17.0.1/16, fd00:17::1/64), IP forwarding enabled, bridge
//     netfilter enabled, the iptables layout Docker 18.09+ installs, and a
//     veth ext0 (203.0.113.1/24, 2001:db8:113::1/64) towards the outside;
//   - an outside client namespace (<prefix>out) with eth0 203.0.113.2/24
//     (2001:db8:113::2/64), routed via the host, including a direct route to
//     the container subnet;
//   - container namespaces (<prefix>c1, <prefix>c2, ...) with eth0
//     172.17.0.(1+i)/16 (fd00:17::(1+i)/64) attached to docker0.
//
// The nfqguard engine can then be run inside the host namespace with
// "ip netns exec <host> nfqguard run ...", and the data path exercised by
// this package's servers (echo, whoami, TLS, HTTP, DNS), clients (ping,
// TLS, HTTP, DNS) and flood, and by package internal/traffic's exchanges,
// which take a namespace by path (NSPath). The outside link (ext0, eth0)
// is package netns's, the same as the private Docker's.
//
// Everything requires root (CAP_SYS_ADMIN and CAP_NET_ADMIN), the ip
// (iproute2) binary and the iptables binaries of the chosen backend.
// No traffic ever leaves the namespaces created by the lab.
package netlab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"

	"github.com/nfqguard/nfqguard/internal/netns"
)

// Backend names accepted in Options.Backend.
const (
	// BackendNFT selects the iptables binaries found as "iptables",
	// "ip6tables", "iptables-restore" and "ip6tables-restore" (the nf_tables
	// backend on Debian).
	BackendNFT = "nft"
	// BackendLegacy selects "iptables-legacy", "ip6tables-legacy" and their
	// -restore variants.
	BackendLegacy = "legacy"

	// DockerIPTables imitates Docker's iptables firewall backend.
	DockerIPTables = "iptables"
	// DockerNftables imitates Docker 29's nftables firewall backend.
	DockerNftables = "nftables"
)

// Fixed lab addressing.
var (
	// BridgeAddr is docker0's IPv4 address in the host namespace.
	BridgeAddr = netip.MustParseAddr("172.17.0.1")
	// BridgeAddr6 is docker0's IPv6 address in the host namespace.
	BridgeAddr6 = netip.MustParseAddr("fd00:17::1")
	// ContainerPrefix is the IPv4 container subnet.
	ContainerPrefix = netip.MustParsePrefix("172.17.0.0/16")
	// ContainerPrefix6 is the IPv6 container subnet.
	ContainerPrefix6 = netip.MustParsePrefix("fd00:17::/64")
)

const (
	bridgeName = "docker0"
	maxIfName  = 15
)

// Options configures New. The zero value builds the default lab: a random
// prefix, two containers, IPv4 only, c1 publishing 8080->80/tcp and
// 5353->53/udp, the nft backend and bridge netfilter enabled.
type Options struct {
	// Prefix is prepended to every namespace name. Empty means "nfqg"
	// followed by 6 random hex characters and "-". It may contain only
	// letters, digits, '-', '_' and '.'.
	Prefix string
	// Containers is the number of container namespaces (1..253); 0 means 2.
	Containers int
	// IPv6 adds the IPv6 addresses, routes, forwarding and ip6tables layout.
	IPv6 bool
	// Publish lists the published ports. Nil means the default
	// (c1: 8080->80/tcp and 5353->53/udp); a non-nil empty slice publishes
	// nothing.
	Publish []Publish
	// NoDockerUser leaves out the DOCKER-USER chain and the FORWARD jump to
	// it, as on a host where Docker has not (yet) created it.
	NoDockerUser bool
	// Backend is BackendNFT (default when empty) or BackendLegacy.
	Backend string
	// DockerFirewall is Docker's firewall backend the lab imitates:
	// DockerIPTables (default when empty: Docker's chains in iptables, of
	// Backend) or DockerNftables (Docker 29's nftables backend: table ip,
	// and with IPv6 ip6, docker-bridges, and no iptables rules at all).
	DockerFirewall string
	// BridgeNF sets net.bridge.bridge-nf-call-iptables and
	// bridge-nf-call-ip6tables in the host namespace. Nil means "1 if the
	// sysctls exist"; a non-nil true fails New if they do not exist
	// (br_netfilter not loaded); false sets them to 0 if they exist.
	BridgeNF *bool
}

// Publish describes a published port, as "docker run -p HostPort:ContainerPort/Proto".
type Publish struct {
	// HostPort is the port on the host's addresses.
	HostPort uint16
	// Container is the 0-based index into Lab.Containers.
	Container int
	// ContainerPort is the destination port inside the container.
	ContainerPort uint16
	// Proto is "tcp" or "udp".
	Proto string
}

// Container is one container namespace of the lab.
type Container struct {
	// NS is the namespace name.
	NS string
	// Addr is the container's IPv4 address on docker0's subnet.
	Addr netip.Addr
	// Addr6 is the container's IPv6 address; zero unless Options.IPv6.
	Addr6 netip.Addr
}

// Lab is a running lab. Create it with New and release it with Close.
// Its methods are safe for concurrent use.
type Lab struct {
	// Prefix is the namespace name prefix.
	Prefix string
	// Host and Out are the host and outside client namespace names.
	Host, Out string
	// Containers are the container namespaces, c1 first.
	Containers []Container
	// HostOutside is the host's address on the outside link (ext0) and
	// Outside the outside client's address.
	HostOutside, Outside netip.Addr
	// HostOutside6 and Outside6 are their IPv6 counterparts; zero unless
	// Options.IPv6.
	HostOutside6, Outside6 netip.Addr
	// Backend is the iptables backend in use (BackendNFT or BackendLegacy).
	Backend string
	// DockerFirewall is the Docker firewall backend imitated
	// (DockerIPTables or DockerNftables).
	DockerFirewall string
	// Publish are the published ports the layout was generated with.
	Publish []Publish
	// IPv6 reports whether the lab was built with IPv6.
	IPv6 bool

	ctx      context.Context // canceled by Close; parent of Command contexts
	cancel   context.CancelFunc
	iptables netns.IPTables // the backend's, in the host namespace

	mu         sync.Mutex
	closed     bool
	namespaces []string // namespaces that may exist, deleted by Close
	closers    map[any]func() error
	wg         sync.WaitGroup // server goroutines
}

// DefaultPublish is the published-port set used when Options.Publish is nil.
func DefaultPublish() []Publish {
	return []Publish{
		{HostPort: 8080, Container: 0, ContainerPort: 80, Proto: "tcp"},
		{HostPort: 5353, Container: 0, ContainerPort: 53, Proto: "udp"},
	}
}

// New builds a lab. On any error it removes everything it created before
// returning. ctx bounds the setup commands only; the lab lives until Close.
func New(ctx context.Context, opts Options) (*Lab, error) {
	if err := opts.normalize(); err != nil {
		return nil, err
	}
	lctx, cancel := context.WithCancel(context.Background())
	l := &Lab{
		Prefix:         opts.Prefix,
		Host:           opts.Prefix + "host",
		Out:            opts.Prefix + "out",
		HostOutside:    netns.LinkHost.Addr(),
		Outside:        netns.LinkOutside.Addr(),
		Backend:        opts.Backend,
		DockerFirewall: opts.DockerFirewall,
		Publish:        append([]Publish(nil), opts.Publish...),
		IPv6:           opts.IPv6,
		ctx:            lctx,
		cancel:         cancel,
		closers:        map[any]func() error{},
	}
	l.iptables = netns.IPTables{Path: l.NSPath(l.Host), Legacy: opts.Backend == BackendLegacy}
	if opts.IPv6 {
		l.HostOutside6, l.Outside6 = netns.LinkHost6.Addr(), netns.LinkOutside6.Addr()
	}
	for i := range opts.Containers {
		c := Container{
			NS:   fmt.Sprintf("%sc%d", opts.Prefix, i+1),
			Addr: netip.AddrFrom4([4]byte{172, 17, 0, byte(2 + i)}),
		}
		if opts.IPv6 {
			a := BridgeAddr6.As16()
			a[15] = byte(2 + i)
			c.Addr6 = netip.AddrFrom16(a)
		}
		l.Containers = append(l.Containers, c)
	}
	if err := l.build(ctx, opts); err != nil {
		return nil, errors.Join(err, l.Close())
	}
	return l, nil
}

func (o *Options) normalize() error {
	p, err := netns.Prefix(o.Prefix, 200)
	if err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	o.Prefix = p
	switch {
	case o.Containers == 0:
		o.Containers = 2
	case o.Containers < 0 || o.Containers > 253:
		return fmt.Errorf("lab: invalid container count %d (want 1..253)", o.Containers)
	}
	switch o.Backend {
	case "":
		o.Backend = BackendNFT
	case BackendNFT, BackendLegacy:
	default:
		return fmt.Errorf("lab: unknown iptables backend %q (want %q or %q)", o.Backend, BackendNFT, BackendLegacy)
	}
	switch o.DockerFirewall {
	case "":
		o.DockerFirewall = DockerIPTables
	case DockerIPTables:
	case DockerNftables:
		if o.Backend != BackendNFT {
			return fmt.Errorf("lab: Docker's nftables backend needs the nft iptables backend, not %q", o.Backend)
		}
	default:
		return fmt.Errorf("lab: unknown Docker firewall backend %q (want %q or %q)", o.DockerFirewall, DockerIPTables, DockerNftables)
	}
	if o.Publish == nil {
		o.Publish = DefaultPublish()
	}
	seen := map[string]bool{}
	for _, p := range o.Publish {
		if p.Proto != "tcp" && p.Proto != "udp" {
			return fmt.Errorf("lab: publish %+v: protocol must be tcp or udp", p)
		}
		if p.HostPort == 0 || p.ContainerPort == 0 {
			return fmt.Errorf("lab: publish %+v: ports must be non-zero", p)
		}
		if p.Container < 0 || p.Container >= o.Containers {
			return fmt.Errorf("lab: publish %+v: container index out of range (have %d containers)", p, o.Containers)
		}
		k := fmt.Sprintf("%s/%d", p.Proto, p.HostPort)
		if seen[k] {
			return fmt.Errorf("lab: publish %+v: host port %s published twice", p, k)
		}
		seen[k] = true
	}
	return nil
}

func (l *Lab) allNamespaces() []string {
	ns := []string{l.Host, l.Out}
	for _, c := range l.Containers {
		ns = append(ns, c.NS)
	}
	return ns
}

func (l *Lab) build(ctx context.Context, opts Options) error {
	all := l.allNamespaces()
	for _, ns := range all {
		if _, err := os.Stat(l.NSPath(ns)); err == nil {
			return fmt.Errorf("lab: create namespace %s: already exists", ns)
		}
	}
	l.mu.Lock()
	l.namespaces = append(l.namespaces, all...)
	l.mu.Unlock()
	var batch netns.Script
	for _, ns := range all {
		batch.Add("netns add %s", ns)
	}
	if err := netns.IPBatch(ctx, "", batch.String()); err != nil {
		return fmt.Errorf("lab: create namespaces %s: %w", strings.Join(all, ", "), err)
	}

	// Sysctls that must be in place before interfaces appear.
	for _, ns := range all {
		if err := netns.PrepareIPv6(l.NSPath(ns), opts.IPv6); err != nil {
			return fmt.Errorf("lab: %w", err)
		}
	}
	if err := l.Sysctl(l.Host, "net.ipv4.ip_forward", "1"); err != nil {
		return err
	}
	if opts.IPv6 {
		if err := l.Sysctl(l.Host, "net.ipv6.conf.all.forwarding", "1"); err != nil {
			return err
		}
	}
	if err := l.setBridgeNF(opts.BridgeNF); err != nil {
		return err
	}

	// Host namespace: bridge, outside veth, container veths. The IPv6
	// addresses are zero, and so left out, in an IPv4-only lab.
	bridge6 := netip.Addr{}
	if opts.IPv6 {
		bridge6 = BridgeAddr6
	}
	batch.Reset()
	batch.Up("lo")
	batch.Add("link add %s type bridge", bridgeName)
	batch.Up(bridgeName, netip.PrefixFrom(BridgeAddr, 16), netns.PrefixFrom(bridge6, 64))
	outside := netns.OutsideLink{Outside: l.Out, IPv6: opts.IPv6, Routes: []netip.Prefix{ContainerPrefix}, Routes6: []netip.Prefix{ContainerPrefix6}}
	outside.AddHostSide(&batch)
	for i, c := range l.Containers {
		vn := fmt.Sprintf("vc%d", i+1)
		batch.Add("link add %s type veth peer name eth0 netns %s", vn, c.NS)
		batch.Add("link set %s master %s", vn, bridgeName)
		batch.Up(vn)
	}
	if err := netns.IPBatch(ctx, l.Host, batch.String()); err != nil {
		return fmt.Errorf("lab: configure host namespace %s: %w", l.Host, err)
	}

	// Outside client, with a direct route to the containers.
	if err := netns.IPBatch(ctx, l.Out, outside.OutsideScript()); err != nil {
		return fmt.Errorf("lab: configure outside namespace %s: %w", l.Out, err)
	}

	// Containers.
	for _, c := range l.Containers {
		batch.Reset()
		batch.Up("lo")
		batch.Up("eth0", netip.PrefixFrom(c.Addr, 16), netns.PrefixFrom(c.Addr6, 64))
		batch.Routes(BridgeAddr)
		batch.Routes(bridge6)
		if err := netns.IPBatch(ctx, c.NS, batch.String()); err != nil {
			return fmt.Errorf("lab: configure container namespace %s: %w", c.NS, err)
		}
	}

	if opts.DockerFirewall == DockerNftables {
		script := dockerNftRules(false, l.Containers, opts.Publish)
		if opts.IPv6 {
			script += dockerNftRules(true, l.Containers, opts.Publish)
		}
		return l.nft(ctx, script)
	}
	// Docker's iptables layout.
	rules := dockerRules(false, l.Containers, opts.Publish, opts.NoDockerUser)
	if err := l.restore(ctx, false, rules); err != nil {
		return err
	}
	if opts.IPv6 {
		rules := dockerRules(true, l.Containers, opts.Publish, opts.NoDockerUser)
		if err := l.restore(ctx, true, rules); err != nil {
			return err
		}
	}
	return nil
}

// setBridgeNF configures bridge netfilter in the host namespace.
//
// Finding (kernel 6.18): the net.bridge.bridge-nf-call-* sysctls are
// per network namespace (they have been since Linux 5.3). Every namespace
// gets its own copy, initialised to 1, as soon as br_netfilter is loaded;
// writing 0 in one namespace does not affect the initial namespace or other
// labs. When br_netfilter is not loaded the sysctls do not exist in any
// namespace; the lab never loads kernel modules itself.
func (l *Lab) setBridgeNF(want *bool) error {
	val := "1"
	if want != nil && !*want {
		val = "0"
	}
	for _, key := range []string{"net.bridge.bridge-nf-call-iptables", "net.bridge.bridge-nf-call-ip6tables"} {
		exists, err := netns.HasSysctl(l.NSPath(l.Host), key)
		if err != nil {
			return fmt.Errorf("lab: %w", err)
		}
		if !exists {
			if want != nil && *want {
				return fmt.Errorf("lab: sysctl %s does not exist in %s (is br_netfilter loaded?)", key, l.Host)
			}
			continue
		}
		if err := l.Sysctl(l.Host, key, val); err != nil {
			return err
		}
	}
	return nil
}

func (l *Lab) restore(ctx context.Context, v6 bool, rules string) error {
	bin := l.iptables.Binary(v6, true)
	var out []byte
	err := l.Do(l.Host, func() error {
		cmd := exec.CommandContext(ctx, bin, "-w")
		cmd.Stdin = strings.NewReader(rules)
		var err error
		out, err = cmd.CombinedOutput()
		return err
	})
	if err != nil {
		return fmt.Errorf("lab: load Docker ruleset with %s in %s: %w: %s", bin, l.Host, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// nft loads an nft script in the host namespace.
func (l *Lab) nft(ctx context.Context, script string) error {
	var out []byte
	err := l.Do(l.Host, func() error {
		cmd := exec.CommandContext(ctx, "nft", "-f", "-")
		cmd.Stdin = strings.NewReader(script)
		var err error
		out, err = cmd.CombinedOutput()
		return err
	})
	if err != nil {
		return fmt.Errorf("lab: load Docker's nftables ruleset in %s: %w: %s", l.Host, err, strings.TrimSpace(string(out)))
	}
	return nil
}

// NSPath returns the bind-mount path of namespace ns, /var/run/netns/<ns>:
// how packages netns and traffic name it.
func (l *Lab) NSPath(ns string) string {
	return netns.Path(ns)
}

// IPTables runs the lab backend's iptables binary with args in the host
// namespace and returns its combined output. "-w" is added so that legacy
// invocations wait for the (system-wide) xtables lock.
func (l *Lab) IPTables(ctx context.Context, args ...string) (string, error) {
	return l.iptables.Run(ctx, false, args...)
}

// IP6Tables is IPTables for ip6tables.
func (l *Lab) IP6Tables(ctx context.Context, args ...string) (string, error) {
	return l.iptables.Run(ctx, true, args...)
}

// Sysctl writes value to the sysctl key (dotted, "net.ipv4.ip_forward", or
// slash-separated, "net/ipv4/conf/eth0.1/forwarding") in namespace ns.
func (l *Lab) Sysctl(ns, key, value string) error {
	if err := netns.Sysctl(l.NSPath(ns), key, value); err != nil {
		return fmt.Errorf("lab: %w", err)
	}
	return nil
}

// Do runs fn on a locked OS thread switched into namespace ns of the lab;
// see netns.Do.
func (l *Lab) Do(ns string, fn func() error) error {
	return netns.Do(l.NSPath(ns), fn)
}

// Command returns a command running "ip netns exec ns name args..." (see
// netns.Command): in its own process group, which is killed if it is
// still running when Close is called (or ctx is done).
func (l *Lab) Command(ctx context.Context, ns string, name string, args ...string) *exec.Cmd {
	ctx, cancel := context.WithCancel(ctx)
	context.AfterFunc(l.ctx, cancel)
	return netns.Command(ctx, ns, name, args...)
}

// addCloser registers fn to run on Close under key; it reports false (and
// does not register) if the lab is already closed.
func (l *Lab) addCloser(key any, fn func() error) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return false
	}
	l.closers[key] = fn
	return true
}

func (l *Lab) removeCloser(key any) {
	l.mu.Lock()
	delete(l.closers, key)
	l.mu.Unlock()
}

// Close stops the servers, kills processes started by Command (and any
// other process left in the lab's namespaces) and deletes the namespaces,
// which removes every interface, address, route and rule of the lab.
// It is idempotent: calls after the first return nil.
func (l *Lab) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	closers := l.closers
	l.closers = nil
	namespaces := l.namespaces
	l.mu.Unlock()

	l.cancel()
	var errs []error
	for _, fn := range closers {
		if err := fn(); err != nil && !errors.Is(err, net.ErrClosed) {
			errs = append(errs, err)
		}
	}
	l.wg.Wait()

	var existing []string
	for _, ns := range namespaces {
		if _, err := os.Stat(l.NSPath(ns)); err == nil {
			existing = append(existing, ns)
		}
	}
	if len(existing) == 0 {
		return errors.Join(errs...)
	}
	paths := make([]string, len(existing))
	for i, ns := range existing {
		paths[i] = l.NSPath(ns)
	}
	if err := netns.KillAll(paths, nil, 5*time.Second); err != nil {
		errs = append(errs, fmt.Errorf("lab: %w", err))
	}
	var batch netns.Script
	for _, ns := range existing {
		batch.Add("netns del %s", ns)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := netns.IPBatch(ctx, "", batch.String()); err != nil {
		errs = append(errs, fmt.Errorf("lab: delete namespaces %s: %w", strings.Join(existing, ", "), err))
	}
	return errors.Join(errs...)
}
