package main

import (
	"context"
	"io"
	"os"
	"os/signal"
	"sync"
	"syscall"

	"github.com/nfqguard/nfqguard/daemon"
	"github.com/nfqguard/nfqguard/internal/cli"
)

// runCmd is "nfqguard run". --status-socket and --metrics-listen override
// the rule file so that the demo and the bench, which run a second engine
// in a lab beside the host's, do not take the host daemon's socket.
func runCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("run", stderr)
	o := daemon.Options{Stdout: stdout, Stderr: stderr}
	fs.StringVar(&o.Config, "c", daemon.DefaultConfig, "rule file")
	fs.BoolVar(&o.CreateChain, "create-chain", false, "create DOCKER-USER and the FORWARD jump when Docker has not (removed on exit)")
	fs.StringVar(&o.BlockedLog, "blocked-log", "", `override [log] blocked: "stdout", "stderr" or a file path`)
	fs.StringVar(&o.StatsJSON, "stats-json", "", "write the run's counters and verdict-latency percentiles to this file as JSON on exit")
	fs.StringVar(&o.StatusSocket, "status-socket", "", `override [status] socket ("off" disables it)`)
	fs.StringVar(&o.MetricsListen, "metrics-listen", "", `override [metrics] listen ("off" disables it)`)
	if err := cli.ParseFlags(fs, args); err != nil {
		return err
	}
	// SIGHUP and SIGUSR1 would kill the process until handled: catch them
	// from the start, and act on them once the daemon is set up.
	sigs := make(chan os.Signal, 4)
	signal.Notify(sigs, syscall.SIGHUP, syscall.SIGUSR1)
	defer signal.Stop(sigs)
	d, err := daemon.New(ctx, o)
	if err != nil {
		return err
	}
	sigCtx, stopSignals := context.WithCancel(ctx)
	var wg sync.WaitGroup
	wg.Go(func() { handleSignals(sigCtx, sigs, d) })
	err = d.Run(ctx)
	stopSignals()
	wg.Wait()
	return err
}

// handleSignals reloads the rules on SIGHUP and reopens the log and the
// capture on SIGUSR1 (after logrotate moved them), until ctx ends.
func handleSignals(ctx context.Context, ch <-chan os.Signal, d *daemon.Daemon) {
	for {
		select {
		case <-ctx.Done():
			return
		case s := <-ch:
			switch s {
			case syscall.SIGHUP:
				d.Reload()
			case syscall.SIGUSR1:
				d.Reopen()
			}
		}
	}
}

func checkCmd(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("check", stderr)
	config := fs.String("c", daemon.DefaultConfig, "rule file")
	if err := cli.ParseFlags(fs, args); err != nil {
		return err
	}
	return daemon.Check(stdout, *config)
}
