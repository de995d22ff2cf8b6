package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nfqguard/nfqguard/control"
	"github.com/nfqguard/nfqguard/firewall"
	"github.com/nfqguard/nfqguard/flowlog"
	"github.com/nfqguard/nfqguard/inspect/names"
	"github.com/nfqguard/nfqguard/metrics"
	"github.com/nfqguard/nfqguard/pcaplog"
	"github.com/nfqguard/nfqguard/queue"
	"github.com/nfqguard/nfqguard/rules"
)

// DefaultConfig is where a packaged nfqguard finds its rules.
const DefaultConfig = "/etc/nfqguard/config.toml"

// Options configure New. The three overrides replace the rule file's
// setting when not empty, and turn it off when "off": the demo and the
// bench, which run a second engine in a lab beside the host's, use them so
// as not to take the host daemon's socket.
type Options struct {
	Config        string // the rule file
	CreateChain   bool   // create DOCKER-USER and the FORWARD jump when Docker has not (removed on exit)
	BlockedLog    string // overrides [log] blocked: "stdout", "stderr" or a file path
	StatusSocket  string // overrides [status] socket
	MetricsListen string // overrides [metrics] listen
	StatsJSON     string // when set, Run writes the run's summary there as JSON on exit

	// Stdout and Stderr are where "stdout" and "stderr" log destinations
	// write; the daemon's own log goes to Stderr.
	Stdout, Stderr io.Writer
}

// A Daemon is a started "nfqguard run". New opens it, Run runs it and
// releases everything; Reload, Reopen and Status may be called from any
// goroutine while it runs.
type Daemon struct {
	o       Options
	log     *slog.Logger
	tables  atomic.Pointer[rules.Table]
	mon     *queue.Monitor
	sampler *control.Sampler
	reloads *metrics.Reloads
	events  *flowlog.Log
	capt    *pcaplog.Writer // nil without [log] pcap
	metrics *metrics.Server // nil without [metrics] listen
	metLn   net.Listener
	ctl     *control.Server       // nil without [status] socket, or when it could not be opened
	sock    *metrics.StatusSocket // nil without [status] socket
	closers []func() error        // in the order opened
	// dockerFirewall is the firewall backend Docker reported at start
	// ("iptables", "nftables"; "" when unknown); dockerFirewallNow the one
	// it reported last (asked again each time Docker answers after a gap).
	dockerFirewall    string
	dockerFirewallNow atomic.Pointer[string]

	mu      sync.Mutex    // serialises reloads, and guards what follows
	updater *tableUpdater // nil when Docker is not watched
	running *rules.Table  // the file's table in force, as parsed
	gen     uint64
	last    *control.ReloadResult
}

// New loads the rule file, checks the process's privileges and Docker's
// firewall backend, and opens the log, the capture, the metrics listener
// and the status socket: everything that can fail on bad settings, before
// the firewall is touched. On error everything it opened is closed again.
// A status socket that cannot be opened is not an error (see openStatus).
func New(ctx context.Context, o Options) (*Daemon, error) {
	d := &Daemon{o: o, log: slog.New(slog.NewTextHandler(o.Stderr, nil))}
	t, err := LoadRuleFile(o.Config)
	if err != nil {
		return nil, err
	}
	o.overrides(t)
	if err := queue.CheckPrivileges(); err != nil {
		return nil, err
	}
	if d.dockerFirewall, err = dockerFirewall(ctx, dockerSocket(t), t.Engine.Firewall); err != nil {
		return nil, err
	}
	if err := d.open(t); err != nil {
		return nil, errors.Join(err, d.closeAll())
	}
	d.running = t
	d.tables.Store(t)
	d.sampler = control.NewSampler(d.mon)
	return d, nil
}

// overrides applies the command line's overrides to t.
func (o *Options) overrides(t *rules.Table) {
	override(&t.Log.Blocked, o.BlockedLog)
	override(&t.Status.Socket, o.StatusSocket)
	override(&t.Metrics.Listen, o.MetricsListen)
}

// open opens the outputs and listeners t asks for, appending each to
// d.closers.
func (d *Daemon) open(t *rules.Table) error {
	loaded := time.Now()
	dest, err := flowlog.OpenDest(t.Log.Blocked, d.o.Stdout, d.o.Stderr)
	if err != nil {
		return err
	}
	lo := flowlog.OptionsFrom(t.Log)
	lo.OnError = func(err error) { d.log.Error("blocked-flow log", "err", err) }
	if d.events, err = flowlog.New(dest, lo); err != nil {
		return errors.Join(err, dest.Close())
	}
	d.closers = append(d.closers, d.events.Close)
	d.mon = queue.NewMonitor()
	d.reloads = &metrics.Reloads{}
	d.reloads.SetLoaded(loaded)
	mo := metrics.Options{Reloads: d.reloads, Log: logStats{d.events}, Source: d.mon}
	if t.Status.Socket != "" {
		d.sock = &metrics.StatusSocket{}
		mo.StatusSocket = d.sock
	}
	if t.Log.Pcap != "" {
		d.capt, err = pcaplog.Open(t.Log.Pcap, pcaplog.Options{MaxBytes: t.Log.PcapMaxBytes, Files: t.Log.PcapFiles})
		if err != nil {
			return err
		}
		d.closers = append(d.closers, d.capt.Close)
		mo.Pcap = pcapStats{d.capt}
	}
	if t.Metrics.Listen != "" {
		d.metrics = metrics.New(mo)
		if d.metLn, err = d.metrics.Listen(t.Metrics.Listen); err != nil {
			return err
		}
		d.closers = append(d.closers, func() error { d.metLn.Close(); return nil })
	}
	if t.Status.Socket != "" {
		return d.openStatus(t.Status.Socket)
	}
	return nil
}

// openStatus opens the status socket at path. One that cannot be opened
// (permissions, a read-only directory) is logged and the engine runs
// without it, with nfqguard_status_socket_up at 0: it is a monitoring side
// channel, and refusing to start over it would leave the host's traffic
// unjudged. Only a path that another nfqguard answers on (two engines would
// fight over the firewall) or that is not a socket (a configuration error)
// stops the start.
func (d *Daemon) openStatus(path string) error {
	ctl, err := control.Listen(path)
	switch {
	case errors.Is(err, control.ErrRunning), errors.Is(err, control.ErrNotSocket):
		return err
	case err != nil:
		d.log.Error("status socket unavailable", "path", path, "err", err,
			"effect", "the engine runs without it: nfqguard status and nfqguard reload cannot reach it (SIGHUP still reloads)")
		return nil
	}
	d.ctl = ctl
	d.sock.SetUp(true)
	d.closers = append(d.closers, func() error { d.sock.SetUp(false); d.ctl.Close(); return nil })
	return nil
}

// closeAll closes what open opened, last first.
func (d *Daemon) closeAll() error {
	var err error
	for i := len(d.closers) - 1; i >= 0; i-- {
		err = errors.Join(err, d.closers[i]())
	}
	d.closers = nil
	return err
}

// Close releases what New opened, for a Daemon that is not going to Run.
func (d *Daemon) Close() error { return d.closeAll() }

// Run asks Docker for its containers, serves the metrics and the status
// socket, and runs the queues until ctx ends; then it removes the
// redirect, closes everything New opened and, with Options.StatsJSON,
// writes the summary. It returns once every goroutine it started has
// stopped.
func (d *Daemon) Run(ctx context.Context) error {
	side, stopSide := context.WithCancel(ctx)
	var wg sync.WaitGroup
	goSide := func(f func()) {
		wg.Add(1)
		go func() { defer wg.Done(); f() }()
	}
	// Docker is asked before the queues are bound, so that the first
	// packets already meet rules keyed by container name; the watcher then
	// swaps in a new table whenever containers change. A reload meanwhile
	// waits, so that it is resolved too.
	d.mu.Lock()
	d.dockerFirewallNow.Store(&d.dockerFirewall)
	updater, dockerDone := startDocker(side, d.log, d.running, &d.tables, &d.dockerFirewallNow)
	d.updater = updater
	d.mu.Unlock()

	goSide(func() { d.sampler.Run(side) })
	if d.metLn != nil {
		goSide(func() {
			if err := d.metrics.Serve(side, d.metLn); err != nil {
				d.log.Error("metrics endpoint stopped", "err", err)
			}
		})
		d.log.Info("metrics", "listen", d.metLn.Addr().String(), "path", "/metrics")
		if !isLoopback(d.metLn.Addr()) {
			// The operator's choice, so not an error; but the endpoint names
			// containers, rules and traffic volumes, and has no
			// authentication.
			d.log.Warn("the metrics endpoint is reachable from other hosts: it serves container names, rule ids and "+
				"traffic counts to anyone who can connect, without authentication; listen on 127.0.0.1 or [::1] "+
				"unless a firewall or a scraper's network keeps others out", "listen", d.metLn.Addr().String())
		}
	}
	if d.ctl != nil {
		goSide(func() {
			err := d.ctl.Serve(side, d)
			d.sock.SetUp(false)
			if err != nil {
				d.log.Error("status socket stopped", "err", err)
			}
		})
		d.log.Info("status socket", "path", d.ctl.Path())
	}

	sum, runErr := queue.Run(ctx, queue.Options{
		Tables:  &d.tables,
		Sink:    d.events,
		Capture: captureOrNil(d.capt),
		Monitor: d.mon,
		Firewall: firewall.Options{CreateChain: d.o.CreateChain, Backend: d.running.Engine.Firewall, DockerBackend: d.dockerFirewall,
			DockerSays: func() string { return *d.dockerFirewallNow.Load() }},
		Logger: d.log,
		// Kept across reloads: what containers learned stays learned.
		Names: names.New(d.running.DNS.MaxNames),
	})
	stopSide()
	wg.Wait()
	<-dockerDone
	if n := d.events.Stats().Dropped; n > 0 {
		d.log.Warn("flow log could not keep up", "events_dropped", n)
	}
	var statsErr error
	if sum != nil && d.o.StatsJSON != "" {
		statsErr = writeJSON(d.o.StatsJSON, sum)
	}
	return errors.Join(runErr, d.closeAll(), statsErr)
}

// Reopen reopens the blocked-flow log and the capture, after logrotate
// moved them.
func (d *Daemon) Reopen() {
	d.events.Reopen()
	if d.capt != nil {
		d.capt.Reopen()
	}
	d.log.Info("reopening the blocked-flow log and the capture (SIGUSR1)")
}

// Reload loads the rule file again. A file that does not load changes
// nothing: the rules in force stay, the error (with file:line:col) is
// logged and returned, and the failure is counted. A good file is swapped
// in atomically: each packet is judged by the old table or the new one,
// never a mix. Settings that only take effect at start keep their running
// values and are reported.
func (d *Daemon) Reload() control.ReloadResult {
	d.mu.Lock()
	defer d.mu.Unlock()
	now := time.Now()
	r := d.reload(now)
	d.reloads.Observe(r.OK, now)
	d.last = &r
	return r
}

func (d *Daemon) reload(now time.Time) control.ReloadResult {
	// A file others could have changed since the start is refused like a
	// malformed one: the rules in force stay.
	t, err := LoadRuleFile(d.o.Config)
	if err != nil {
		d.log.Error("reload refused: the rules in force stay", "err", err)
		return control.ReloadResult{Time: now, Error: err.Error(), Generation: d.gen}
	}
	// The command line's overrides hold for every table of this run:
	// without them a reload would report the overridden sections as
	// changed, to apply at a restart that would apply them no more.
	d.o.overrides(t)
	restart := rules.KeepStartOnly(d.running, t)
	d.gen++
	t.Generation = d.gen
	if d.updater != nil {
		d.updater.rebase(t)
	} else {
		d.tables.Store(t)
	}
	d.running = t
	r := control.ReloadResult{Time: now, OK: true, Generation: d.gen, Restart: restart}
	args := []any{"file", d.o.Config, "generation", d.gen}
	if len(restart) > 0 {
		args = append(args, "restart_needed", restart)
	}
	if t.Engine.RejudgeOnReload && t.Engine.FastPath {
		n, err := firewall.ReturnFastPathFlows(t.Engine.BypassMark)
		if err != nil {
			d.log.Warn("rejudge_on_reload: fast-path flows stay on the fast path", "err", err)
		}
		r.Returned = n
		args = append(args, "fast_path_returned", n)
	}
	d.log.Info("rules reloaded", args...)
	return r
}

// Status is the status socket's view of the engine.
func (d *Daemon) Status(top int) (*control.Status, error) {
	snap, ok := d.mon.Snapshot()
	if !ok {
		return nil, fmt.Errorf("the engine is not running (starting or stopping)")
	}
	flows, _ := d.mon.TopBlocked(top)
	st := control.Build(snap, flows, d.sampler, top)
	st.PID, st.Config = os.Getpid(), d.o.Config
	d.mu.Lock()
	if d.last != nil {
		r := *d.last
		st.LastReload = &r
	}
	d.mu.Unlock()
	return st, nil
}
