// Command nfqguard inspects Docker container traffic in userspace: it sends
// forwarded container packets from Docker's DOCKER-USER chain to NFQUEUE,
// judges each flow against a TOML rule table, and logs blocked flows.
//
//	nfqguard run -c config.toml     install the redirect, inspect, clean up on exit
//	nfqguard check -c config.toml   validate and print the compiled rule table
//	nfqguard status [--json]        show the running daemon's state
//	nfqguard reload                 make the running daemon load its rule file again
//	nfqguard demo                   run the engine against a built-in lab
//	nfqguard bench                  measure what the engine costs, against the kernel and two floors
//	nfqguard floor-go               the bench's accept-all go-nfqueue consumer
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"
)

const usage = `usage: nfqguard <command> [flags]

commands:
  run    -c FILE [--create-chain] [--blocked-log DEST] [--stats-json FILE]
         [--status-socket PATH|off] [--metrics-listen ADDR|off]
         install the DOCKER-USER redirect, judge traffic, log blocked flows;
         SIGINT/SIGTERM remove the redirect and exit, SIGHUP reloads the
         rule file, SIGUSR1 reopens the blocked-flow log and the pcap file
  status [-c FILE | --socket PATH] [--json] [--top N]
         show the running daemon's queues, packets/s, verdict latency, held
         flows, top blocked flows and the rules they hit
  reload [-c FILE | --socket PATH]
         make the running daemon load its rule file again; a file that does
         not load changes nothing (exit 1 with its file:line:col error)
  check  -c FILE
         validate the rule file and print the compiled table (exit 0 valid, 1 not)
  demo   [-c FILE]
         build a lab that looks like a Docker host, run the engine against it
         with FILE (default config.toml), send allowed and blocked traffic,
         print what happened, tear it down
  bench  [-c FILE] [--quick] [--out DIR]
         measure verdict latency, connection rate, UDP rate, bulk throughput
         and CPU per packet in the lab: kernel alone, accept-all floors in C
         and Go, nfqguard per-packet and with the fast path; print a Markdown
         table, write DIR/bench.json and DIR/latency-cdf.png (default
         ./bench-out)
  floor-go [--queue N]
         bind NFQUEUE queue N (default 0) and accept every packet with
         go-nfqueue and nothing else; prints "ready" when bound, stops on
         SIGINT/SIGTERM (the bench's Go floor)

Run "nfqguard <command> -h" for a command's flags.
`

// errUsage marks errors caused by the command line: exit status 2.
var errUsage = errors.New("usage")

func main() {
	leaks := leakCheck()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	err := run(ctx, os.Args[1:], os.Stdout, os.Stderr)
	stop()
	if leakErr := leaks(); leakErr != nil {
		if err != nil {
			fmt.Fprintf(os.Stderr, "nfqguard: %v\n", err)
		}
		fmt.Fprintf(os.Stderr, "nfqguard: %v\n", leakErr)
		os.Exit(exitLeak)
	}
	switch {
	case err == nil:
	case errors.Is(err, errUsage):
		os.Exit(2)
	default:
		fmt.Fprintf(os.Stderr, "nfqguard: %v\n", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return errUsage
	}
	switch args[0] {
	case "run":
		return runCmd(ctx, args[1:], stdout, stderr)
	case "check":
		return checkCmd(args[1:], stdout, stderr)
	case "status":
		return statusCmd(args[1:], stdout, stderr)
	case "reload":
		return reloadCmd(args[1:], stdout, stderr)
	case "demo":
		return demoCmd(ctx, args[1:], stdout, stderr)
	case "bench":
		return benchCmd(ctx, args[1:], stdout, stderr)
	case "floor-go":
		return floorGoCmd(ctx, args[1:], stdout, stderr)
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprintf(stderr, "nfqguard: unknown command %q\n\n%s", args[0], usage)
	return errUsage
}

// newFlags returns a flag set that reports errors as usage errors.
func newFlags(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("nfqguard "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return errUsage
		}
		return fmt.Errorf("%w: %v", errUsage, err)
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(fs.Output(), "unexpected argument %q\n", fs.Arg(0))
		return errUsage
	}
	return nil
}
