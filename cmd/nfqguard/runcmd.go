package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/nfqguard/nfqguard/control"
	"github.com/nfqguard/nfqguard/firewall"
	"github.com/nfqguard/nfqguard/flowlog"
	"github.com/nfqguard/nfqguard/metrics"
	"github.com/nfqguard/nfqguard/pcaplog"
	"github.com/nfqguard/nfqguard/queue"
	"github.com/nfqguard/nfqguard/rules"
)

// defaultConfig is where a packaged nfqguard finds its rules.
const defaultConfig = "/etc/nfqguard/config.toml"

// runCmd is "nfqguard run". --status-socket and --metrics-listen override
// the rule file so that the demo and the bench, which run a second engine
// in a lab beside the host's, do not take the host daemon's socket.
func runCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("run", stderr)
	config := fs.String("c", defaultConfig, "rule file")
	createChain := fs.Bool("create-chain", false, "create DOCKER-USER and the FORWARD jump when Docker has not (removed on exit)")
	blockedLog := fs.String("blocked-log", "", `override [log] blocked: "stdout", "stderr" or a file path`)
	statsJSON := fs.String("stats-json", "", "write the run's counters and verdict-latency percentiles to this file as JSON on exit")
	statusSocket := fs.String("status-socket", "", `override [status] socket ("off" disables it)`)
	metricsListen := fs.String("metrics-listen", "", `override [metrics] listen ("off" disables it)`)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	// SIGHUP and SIGUSR1 would kill the process until handled: catch them
	// from the start, and act on them once everything is set up.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGUSR1)
	defer signal.Stop(sigs)
	log := slog.New(slog.NewTextHandler(stderr, nil))
	t, err := loadRuleFile(*config)
	if err != nil {
		return err
	}
	override(&t.Log.Blocked, *blockedLog)
	override(&t.Status.Socket, *statusSocket)
	override(&t.Metrics.Listen, *metricsListen)
	if err := queue.CheckPrivileges(); err != nil {
		return err
	}
	if err := refuseDockerNftables(ctx, dockerSocket(t)); err != nil {
		return err
	}
	loaded := time.Now()

	// Everything that can fail on bad settings (the log's file, the pcap
	// file, the listeners) is opened before the firewall is touched.
	var closers []func() error
	closeAll := func() error {
		var err error
		for i := len(closers) - 1; i >= 0; i-- {
			err = errors.Join(err, closers[i]())
		}
		return err
	}
	dest, err := flowlog.OpenDest(t.Log.Blocked, stdout, stderr)
	if err != nil {
		return err
	}
	lo := flowlog.OptionsFrom(t.Log)
	lo.OnError = func(err error) { log.Error("blocked-flow log", "err", err) }
	events, err := flowlog.New(dest, lo)
	if err != nil {
		return errors.Join(err, dest.Close())
	}
	closers = append(closers, events.Close)
	mo := metrics.Options{Reloads: &metrics.Reloads{}, Log: logStats{events}}
	mo.Reloads.SetLoaded(loaded)
	qo := queue.Options{
		Sink:     events,
		Firewall: firewall.Options{CreateChain: *createChain},
		Logger:   log,
		Monitor:  queue.NewMonitor(),
	}
	mo.Source = qo.Monitor
	var capt *pcaplog.Writer
	if t.Log.Pcap != "" {
		capt, err = pcaplog.Open(t.Log.Pcap, pcaplog.Options{MaxBytes: t.Log.PcapMaxBytes, Files: t.Log.PcapFiles})
		if err != nil {
			return errors.Join(err, closeAll())
		}
		closers = append(closers, capt.Close)
		qo.Capture = capt
		mo.Pcap = pcapStats{capt}
	}
	var ms *metrics.Server
	var metricsLn net.Listener
	if t.Metrics.Listen != "" {
		ms = metrics.New(mo)
		if metricsLn, err = ms.Listen(t.Metrics.Listen); err != nil {
			return errors.Join(err, closeAll())
		}
		closers = append(closers, func() error { metricsLn.Close(); return nil })
	}
	var ctl *control.Server
	if t.Status.Socket != "" {
		if ctl, err = control.Listen(t.Status.Socket); err != nil {
			return errors.Join(err, closeAll())
		}
		closers = append(closers, func() error { ctl.Close(); return nil })
	}

	var tables atomic.Pointer[rules.Table]
	tables.Store(t)
	qo.Tables = &tables
	// Docker is asked before the queues are bound, so that the first
	// packets already meet rules keyed by container name; the watcher then
	// swaps in a new table whenever containers change.
	side, stopSide := context.WithCancel(ctx)
	var wg sync.WaitGroup
	updater, dockerDone := startDocker(side, log, t, &tables)
	d := &daemon{
		path: *config, log: log, tables: &tables, updater: updater, mon: qo.Monitor,
		sampler: control.NewSampler(qo.Monitor), reloads: mo.Reloads, running: t,
	}
	goSide := func(f func()) {
		wg.Add(1)
		go func() { defer wg.Done(); f() }()
	}
	goSide(func() { d.sampler.Run(side) })
	if metricsLn != nil {
		goSide(func() {
			if err := ms.Serve(side, metricsLn); err != nil {
				log.Error("metrics endpoint stopped", "err", err)
			}
		})
		log.Info("metrics", "listen", metricsLn.Addr().String(), "path", "/metrics")
		if !isLoopback(metricsLn.Addr()) {
			// The operator's choice, so not an error; but the endpoint names
			// containers, rules and traffic volumes, and has no
			// authentication.
			log.Warn("the metrics endpoint is reachable from other hosts: it serves container names, rule ids and "+
				"traffic counts to anyone who can connect, without authentication; listen on 127.0.0.1 or [::1] "+
				"unless a firewall or a scraper's network keeps others out", "listen", metricsLn.Addr().String())
		}
	}
	if ctl != nil {
		goSide(func() {
			if err := ctl.Serve(side, d); err != nil {
				log.Error("status socket stopped", "err", err)
			}
		})
		log.Info("status socket", "path", ctl.Path())
	}
	goSide(func() { handleSignals(side, sigs, d, events, capt) })

	sum, runErr := queue.Run(ctx, qo)
	stopSide()
	wg.Wait()
	<-dockerDone
	if n := events.Stats().Dropped; n > 0 {
		log.Warn("flow log could not keep up", "events_dropped", n)
	}
	var statsErr error
	if sum != nil && *statsJSON != "" {
		statsErr = writeJSON(*statsJSON, sum)
	}
	return errors.Join(runErr, closeAll(), statsErr)
}

// isLoopback reports whether a listener's address is reachable from this
// host only. An unspecified address (":9477", "0.0.0.0", "[::]") is every
// interface, so not.
func isLoopback(addr net.Addr) bool {
	ta, ok := addr.(*net.TCPAddr)
	return ok && ta.IP.IsLoopback()
}

// override sets *setting to flag when the flag was given; "off" empties it.
func override(setting *string, flag string) {
	switch flag {
	case "":
	case "off":
		*setting = ""
	default:
		*setting = flag
	}
}

// handleSignals reloads the rules on SIGHUP and reopens the log and the
// capture on SIGUSR1 (after logrotate moved them), until ctx ends.
func handleSignals(ctx context.Context, ch <-chan os.Signal, d *daemon, events *flowlog.Log, capt *pcaplog.Writer) {
	for {
		select {
		case <-ctx.Done():
			return
		case s := <-ch:
			switch s {
			case syscall.SIGHUP:
				d.Reload()
			case syscall.SIGUSR1:
				events.Reopen()
				if capt != nil {
					capt.Reopen()
				}
				d.log.Info("reopening the blocked-flow log and the capture (SIGUSR1)")
			}
		}
	}
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write stats: %w", err)
	}
	return nil
}
