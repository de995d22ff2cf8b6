package daemon

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"maps"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nfqguard/nfqguard/docker"
	"github.com/nfqguard/nfqguard/firewall"
	"github.com/nfqguard/nfqguard/rules"
)

// dockerProbeTimeout bounds the start-up questions to Docker (version and
// the first listing), so that a hung daemon delays start-up by this much at
// most; the watcher then keeps trying in the background.
const dockerProbeTimeout = 5 * time.Second

// dockerSocket is the socket the rule file names, else DOCKER_HOST's, else
// Docker's default.
func dockerSocket(t *rules.Table) string {
	if t.Docker.Socket != "" {
		return t.Docker.Socket
	}
	return docker.DefaultSocket()
}

// toRules converts the watcher's containers for rules.Table.Resolve.
func toRules(cs []docker.Container) []rules.Container {
	out := make([]rules.Container, len(cs))
	for i := range cs {
		c := &cs[i]
		rc := rules.Container{ID: c.ID, Name: c.Name, Image: c.Image, Labels: c.Labels, Addrs: c.Addrs()}
		for _, p := range c.Ports {
			rc.Ports = append(rc.Ports, rules.PortBinding{ContainerPort: p.ContainerPort, Proto: p.Proto, HostIP: p.HostIP, HostPort: p.HostPort})
		}
		out[i] = rc
	}
	return out
}

// tableUpdater turns Docker's container lists into rule tables: it
// resolves the parsed table against each list, swaps the result in, and
// logs what changed. The watcher calls apply, a reload calls rebase; they
// are serialised.
type tableUpdater struct {
	mu     sync.Mutex
	base   *rules.Table // as parsed: Resolve always starts from it
	cs     []docker.Container
	tables *atomic.Pointer[rules.Table]
	log    *slog.Logger

	applied bool                         // a list has been applied
	down    bool                         // the last attempt to reach Docker failed
	since   time.Time                    // when Docker became unreachable, while down
	entries map[string]map[string]string // dynamic entry → container name → its addresses, as last logged
	warned  map[string]bool              // Resolve warnings already logged
	// onReachable runs, on a goroutine of its own, each time Docker
	// answers again after it could not be asked; may be nil.
	onReachable func()
}

func newTableUpdater(base *rules.Table, tables *atomic.Pointer[rules.Table], log *slog.Logger) *tableUpdater {
	return &tableUpdater{base: base, tables: tables, log: log, entries: map[string]map[string]string{}, warned: map[string]bool{}}
}

// apply resolves the rules against cs, stores the new table, and logs each
// dynamic entry's change of containers or addresses, and conflicts the
// first time they are seen. Engines pick the new table up with their next
// new flow; flows already judged keep their verdict.
func (u *tableUpdater) apply(cs []docker.Container) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.cs = cs
	if u.down {
		u.log.Info("docker reachable again", "containers", len(cs), "unreachable_for", time.Since(u.since).Round(time.Millisecond))
		u.down, u.since = false, time.Time{}
		if u.onReachable != nil {
			go u.onReachable()
		}
	}
	u.resolve()
}

// rebase swaps in base, a reloaded file's table, resolved against the
// containers last listed (or as is if Docker has not answered yet), and
// marked unreachable while Docker is.
func (u *tableUpdater) rebase(base *rules.Table) {
	u.mu.Lock()
	defer u.mu.Unlock()
	u.base = base
	if !u.applied {
		u.tables.Store(u.marked(base))
		return
	}
	u.resolve()
}

// unreachable is the first failure to reach Docker in a row: the table in
// use is marked so (see rules.Table.Unreachable) until a listing
// succeeds. It reports whether unlisted addresses are dropped meanwhile.
func (u *tableUpdater) unreachable(now time.Time) bool {
	u.down, u.since = true, now
	t := u.tables.Load().Unreachable(now)
	u.tables.Store(t)
	_, drop := t.DockerUnreachable()
	return drop
}

// marked is t, marked unreachable while Docker is; u.mu is held.
func (u *tableUpdater) marked(t *rules.Table) *rules.Table {
	if u.down {
		return t.Unreachable(u.since)
	}
	return t
}

// resolve resolves u.base against u.cs, stores the result and logs what
// changed; u.mu is held.
func (u *tableUpdater) resolve() {
	cs := u.cs
	t, warns := u.base.Resolve(toRules(cs))
	u.tables.Store(u.marked(t))
	first := !u.applied
	u.applied = true
	for _, r := range t.Resolution() {
		now := map[string]string{}
		for _, c := range r.Containers {
			now[c.Name] = joinAddrs(c)
		}
		before := u.entries[r.Entry]
		for _, name := range slices.Sorted(maps.Keys(now)) {
			was, ok := before[name]
			switch {
			case !ok:
				u.log.Info("docker container matched", "entry", r.Entry, "container", name, "addrs", now[name])
			case was != now[name]:
				u.log.Info("docker container re-addressed", "entry", r.Entry, "container", name, "addrs", now[name], "was", was)
			}
		}
		for _, name := range slices.Sorted(maps.Keys(before)) {
			if _, ok := now[name]; !ok {
				u.log.Info("docker container gone", "entry", r.Entry, "container", name)
			}
		}
		if len(now) == 0 && (first || len(before) > 0) {
			level := slog.LevelInfo
			if first {
				level = slog.LevelWarn // at start-up it may be a typo in the file
			}
			u.log.Log(context.Background(), level, "entry matches no running container: its rules match nothing",
				"entry", r.Entry, "selector", r.Selector)
		}
		u.entries[r.Entry] = now
	}
	seen := map[string]bool{}
	for _, w := range warns {
		seen[w] = true
		if !u.warned[w] {
			u.log.Warn("docker conflict: " + w)
		}
	}
	u.warned = seen // a conflict that goes away and comes back is logged again
}

func joinAddrs(c rules.ResolvedContainer) string {
	if len(c.Addrs) == 0 {
		return "none"
	}
	s := make([]string, len(c.Addrs))
	for i, a := range c.Addrs {
		s[i] = a.String()
	}
	return strings.Join(s, ",")
}

// failed is the watcher's OnError: the first failure in a row is a
// warning, the retries after it are debug messages.
func (u *tableUpdater) failed(err error, retry time.Duration) {
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.down {
		u.log.Debug("docker still unreachable", "err", err, "retry_in", retry)
		return
	}
	args := []any{"err", err, "retry_in", retry}
	if u.unreachable(time.Now()) {
		args = append(args, "unlisted", unlistedDropped)
	}
	u.log.Warn("docker unreachable: keeping the last known containers; retrying in the background", args...)
}

// unlistedDropped is what the log says of docker.unreachable = "drop" at
// work.
const unlistedDropped = `dropped until Docker answers (docker.unreachable = "drop"): an address no entry lists may be a container an entry selects`

// startDocker reports Docker's version, resolves the table once so that
// the first packets already meet name-keyed rules, and starts a watcher
// that follows containers until ctx ends. It watches when the table has
// entries resolved through Docker, or when the socket exists (then flow
// logs name containers); otherwise it only reports that Docker is absent.
// The returned channel is closed when the watcher has stopped; the
// updater, nil when Docker is not watched, takes reloaded tables.
//
// Each time Docker answers again after it could not be asked (it may have
// been restarted with another firewall backend), it asks GET /info and
// stores the backend Docker reports in fwWord, which the firewall watcher
// reads when the kernel shows the tables of both backends.
func startDocker(ctx context.Context, log *slog.Logger, t *rules.Table, tables *atomic.Pointer[rules.Table], fwWord *atomic.Pointer[string]) (*tableUpdater, <-chan struct{}) {
	done := make(chan struct{})
	sock := dockerSocket(t)
	if _, err := os.Stat(sock); errors.Is(err, fs.ErrNotExist) && !t.HasDynamic() {
		log.Info("docker", "socket", sock, "unreachable", "no socket: not watched; flow logs carry no Docker names")
		close(done)
		return nil, done
	}
	client := docker.NewClient(sock)
	u := newTableUpdater(t, tables, log)
	u.onReachable = func() {
		ictx, cancel := context.WithTimeout(ctx, dockerProbeTimeout)
		defer cancel()
		if info, err := client.Info(ictx); err == nil {
			driver := info.FirewallBackend.Driver
			fwWord.Store(&driver)
		}
	}
	pctx, cancel := context.WithTimeout(ctx, dockerProbeTimeout)
	v, err := client.Version(pctx)
	var cs []docker.Container
	if err == nil {
		cs, err = client.Containers(pctx)
	}
	cancel()
	if err != nil {
		args := []any{"socket", sock, "unreachable", err.Error()}
		if names := t.Unresolved(); len(names) > 0 {
			args = append(args, "unresolved", strings.Join(names, ","),
				"note", "rules keyed by ips work; these entries match nothing until Docker answers")
		}
		if u.unreachable(time.Now()) {
			args = append(args, "unlisted", unlistedDropped)
		}
		log.Warn("docker", append(args, "retry", "in the background")...)
	} else {
		log.Info("docker", "socket", sock, "version", v.Version, "api", client.APIVersion(),
			"daemon_api", v.MinAPIVersion+"-"+v.APIVersion, "containers", len(cs))
		u.apply(cs)
	}
	w := &docker.Watcher{Client: client, OnError: u.failed}
	go func() {
		defer close(done)
		_ = w.Run(ctx, u.apply) // returns ctx's error: the run is ending
	}()
	return u, done
}

// dockerFirewall asks Docker which firewall backend it uses (GET /info,
// FirewallBackend.Driver: Docker 28 and later), for the firewall's auto
// choice; "" when Docker cannot be asked or does not say. It stops a run
// before anything is changed when [engine] firewall insists on iptables
// and Docker says nftables, which has no DOCKER-USER chain.
func dockerFirewall(ctx context.Context, sock, want string) (string, error) {
	if _, err := os.Stat(sock); err != nil {
		return "", nil
	}
	pctx, cancel := context.WithTimeout(ctx, dockerProbeTimeout)
	defer cancel()
	info, err := docker.NewClient(sock).Info(pctx)
	if err != nil {
		return "", nil
	}
	driver := info.FirewallBackend.Driver
	if driver == rules.FirewallNftables && want == rules.FirewallIPTables {
		return "", fmt.Errorf("docker at %s: %w", sock, firewall.ErrDockerNftables)
	}
	return driver, nil
}
