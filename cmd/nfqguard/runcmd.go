package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"sync/atomic"

	"github.com/nfqguard/nfqguard/flowlog"
	"github.com/nfqguard/nfqguard/queue"
	"github.com/nfqguard/nfqguard/rules"
)

// defaultConfig is where a packaged nfqguard finds its rules.
const defaultConfig = "/etc/nfqguard/config.toml"

// eventBuffer is how many flow events may wait for the log writer before
// new ones are dropped (and counted) rather than stalling a queue.
const eventBuffer = 4096

func runCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("run", stderr)
	config := fs.String("c", defaultConfig, "rule file")
	createChain := fs.Bool("create-chain", false, "create DOCKER-USER and the FORWARD jump when Docker has not (removed on exit)")
	blockedLog := fs.String("blocked-log", "", `override [log] blocked: "stdout", "stderr" or a file path`)
	statsJSON := fs.String("stats-json", "", "write the run's counters and verdict-latency percentiles to this file as JSON on exit")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(stderr, nil))
	t, err := rules.Load(*config)
	if err != nil {
		return err
	}
	if err := refuseDockerNftables(ctx, dockerSocket(t)); err != nil {
		return err
	}
	dest := t.Log.Blocked
	if *blockedLog != "" {
		dest = *blockedLog
	}
	w, closeLog, err := openLog(dest, stdout, stderr)
	if err != nil {
		return err
	}
	events := flowlog.NewEventLog(w, eventBuffer)
	var tables atomic.Pointer[rules.Table]
	tables.Store(t)
	// Docker is asked before the queues are bound, so that the first
	// packets already meet rules keyed by container name; the watcher then
	// swaps in a new table whenever containers change.
	dockerCtx, stopDocker := context.WithCancel(ctx)
	dockerDone := startDocker(dockerCtx, log, t, &tables)
	sum, runErr := queue.Run(ctx, queue.Options{
		Tables:   &tables,
		Sink:     events,
		Firewall: queue.FirewallOptions{CreateChain: *createChain},
		Logger:   log,
	})
	stopDocker()
	<-dockerDone
	if n := events.Dropped(); n > 0 {
		log.Warn("flow log could not keep up", "events_dropped", n)
	}
	var statsErr error
	if sum != nil && *statsJSON != "" {
		statsErr = writeJSON(*statsJSON, sum)
	}
	return errors.Join(runErr, events.Close(), closeLog(), statsErr)
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

// openLog opens the blocked-flow log destination.
func openLog(dest string, stdout, stderr io.Writer) (io.Writer, func() error, error) {
	switch dest {
	case "", "stdout", "-":
		return stdout, func() error { return nil }, nil
	case "stderr":
		return stderr, func() error { return nil }, nil
	}
	f, err := os.OpenFile(dest, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o640)
	if err != nil {
		return nil, nil, fmt.Errorf("open blocked-flow log: %w", err)
	}
	return f, f.Close, nil
}
