package dockerlab

import (
	"crypto/sha256"
	_ "embed" // the Docker 29 pins
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/nfqguard/nfqguard/internal/netns"
)

// Engine selects the Docker engine Start runs.
type Engine int

const (
	// Debian is the default engine: dockerd, docker, containerd and runc
	// as found on PATH (Debian 12's docker.io, Docker 20.10).
	Debian Engine = iota
	// Docker29 is the Docker 29 engine that build-docker29.sh (run by
	// "make deps") builds from Go modules into Docker29Dir. dockerd runs
	// with that directory first on its PATH, so that it starts its own
	// containerd, shim, runc and docker-proxy from there, and with
	// DOCKER_MIN_API_VERSION=1.44; the rig drives it with the docker
	// client built beside it. It runs in a mount namespace of its own,
	// with a sysfs that shows the Docker namespace's interfaces.
	Docker29
)

// String returns the engine's name as the tests print it.
func (e Engine) String() string {
	switch e {
	case Debian:
		return "debian"
	case Docker29:
		return "docker29"
	}
	return fmt.Sprintf("Engine(%d)", int(e))
}

// Firewall backends of Options.FirewallBackend.
const (
	// IPTables is Docker's iptables backend, the only one of Docker 20.10
	// and the default of Docker 29.
	IPTables = "iptables"
	// NFTables is Docker 29's nftables backend: its rules go into the
	// tables "ip docker-bridges" and "ip6 docker-bridges", and Docker
	// does not enable IP forwarding itself, so Start turns it on in the
	// Docker namespace before dockerd starts.
	NFTables = "nftables"
)

// docker29MinAPI is the oldest API version the Docker 29 engine is made to
// accept: Docker 29.0's own minimum, which later 29.x releases lowered
// again. Debian's 20.10 client (API 1.41) is refused, as it would be by a
// stock 29.0 engine.
const docker29MinAPI = "1.44"

// Docker29Binaries are the programs Docker29Dir holds.
var Docker29Binaries = []string{"dockerd", "docker-proxy", "containerd", "containerd-shim-runc-v2", "runc", "docker"}

// docker29Versions is the file build-docker29.sh builds from; its hash
// names the cache directory.
//
//go:embed docker29.versions
var docker29Versions []byte

// Docker29CacheEnv names the environment variable that moves the cache of
// built Docker 29 engines from /var/cache/nfqguard/docker29 (the Makefile's
// DOCKER29_CACHE passes it to build-docker29.sh).
const Docker29CacheEnv = "NFQG_DOCKER29_CACHE"

// Docker29Dir returns the directory that holds the Docker 29 binaries
// (Docker29Binaries) built for the versions this package pins, and an
// error naming the first one missing when the engine has not been built
// there: "make deps" (internal/dockerlab/build-docker29.sh) builds it.
func Docker29Dir() (string, error) {
	root := os.Getenv(Docker29CacheEnv)
	if root == "" {
		root = "/var/cache/nfqguard/docker29"
	}
	sum := sha256.Sum256(docker29Versions)
	dir := filepath.Join(root, hex.EncodeToString(sum[:])[:16], "bin")
	for _, b := range Docker29Binaries {
		if _, err := os.Stat(filepath.Join(dir, b)); err != nil {
			return dir, fmt.Errorf("dockerlab: Docker 29 engine not built (run make deps, or internal/dockerlab/build-docker29.sh): %w", err)
		}
	}
	return dir, nil
}

// engine is what Start derived from Options about the engine to run.
type engine struct {
	kind     Engine
	binDir   string // Docker29: the directory of its binaries
	firewall string // Options.FirewallBackend
}

// resolveEngine checks the engine options and fills in opts.Dockerd and
// opts.CLI with the engine's own binaries when they are empty.
func resolveEngine(opts *Options) (engine, error) {
	e := engine{kind: opts.Engine, firewall: opts.FirewallBackend}
	switch opts.Engine {
	case Debian:
		if e.firewall != "" && e.firewall != IPTables {
			return e, fmt.Errorf("dockerlab: firewall backend %q: Docker 20.10 has only %q", e.firewall, IPTables)
		}
	case Docker29:
		dir, err := Docker29Dir()
		if err != nil {
			return e, err
		}
		e.binDir = dir
		if opts.Dockerd == "" {
			opts.Dockerd = filepath.Join(dir, "dockerd")
		}
		if opts.CLI == "" {
			opts.CLI = filepath.Join(dir, "docker")
		}
		if e.firewall != "" && e.firewall != IPTables && e.firewall != NFTables {
			return e, fmt.Errorf("dockerlab: firewall backend %q: want %q or %q", e.firewall, IPTables, NFTables)
		}
	default:
		return e, fmt.Errorf("dockerlab: unknown engine %v", opts.Engine)
	}
	return e, nil
}

// prepare readies the Docker namespace for the engine, before dockerd
// starts.
func (e engine) prepare(nsPath string) error {
	if e.firewall == NFTables {
		// Docker's nftables backend does not enable forwarding (nor set a
		// DROP policy anywhere): without it, it refuses to create the
		// default bridge network, and without IPv6 forwarding any network
		// with --ipv6 ("IPv6 global forwarding is disabled"). These are
		// the sysctls Docker's documentation tells operators to set.
		for _, key := range []string{"net.ipv4.ip_forward", "net.ipv6.conf.all.forwarding", "net.ipv6.conf.default.forwarding"} {
			if err := netns.Sysctl(nsPath, key, "1"); err != nil {
				return fmt.Errorf("dockerlab: %w", err)
			}
		}
	}
	return nil
}

// args returns the dockerd flags the engine options add.
func (e engine) args() []string {
	if e.firewall != "" && e.kind != Debian {
		return []string{"--firewall-backend=" + e.firewall}
	}
	return nil
}

// env returns the variables that override cleanEnv's for dockerd.
func (e engine) env() []string {
	if e.kind != Docker29 {
		return nil
	}
	return []string{
		"PATH=" + e.binDir + string(filepath.ListSeparator) + os.Getenv("PATH"),
		"DOCKER_MIN_API_VERSION=" + docker29MinAPI,
	}
}

// mountSysfsScript runs its arguments in a mount namespace of their own
// (unshare --mount --propagation private) with a sysfs mounted for the
// network namespace it was entered in, and the cgroup hierarchy of the
// old /sys put back on top of it at /sys/fs/cgroup. $1 is an empty
// directory to park the cgroup mounts on meanwhile.
const mountSysfsScript = `set -e
park=$1; shift
mount --rbind /sys/fs/cgroup "$park"
mount -t sysfs sysfs /sys
mount --move "$park" /sys/fs/cgroup
exec "$@"
`

// wrap returns the command line that runs dockerd (argv, the dockerd path
// first) once nsenter has entered the Docker namespace. Docker 20.10 runs
// directly, in the machine's mount namespace. Docker 29 waits for each
// container's bridge port to forward by reading
// /sys/class/net/BRIDGE/brif/VETH/state and BRIDGE/bridge/stp_state; the
// machine's /sys shows the machine's interfaces, not the Docker
// namespace's, so it would find nothing (a warning and a blind 20 ms wait
// per container) or, worse, a bridge of the machine's of the same name.
// "ip netns exec" mounts a matching sysfs but hides the cgroup v1
// hierarchy under /sys/fs/cgroup that dockerd needs. So it runs under
// mountSysfsScript, in a mount namespace of its own: its mounts (the
// containers' root file systems, their namespace files) are not visible
// outside and go away with its processes.
func (e engine) wrap(stateDir string, argv []string) ([]string, error) {
	if e.kind == Debian {
		return argv, nil
	}
	park := filepath.Join(stateDir, "cgroup-park")
	if err := os.Mkdir(park, 0o700); err != nil && !errors.Is(err, os.ErrExist) {
		return nil, fmt.Errorf("dockerlab: %w", err)
	}
	return append([]string{"unshare", "--mount", "--propagation", "private", "--",
		"sh", "-c", mountSysfsScript, "sh", park}, argv...), nil
}
