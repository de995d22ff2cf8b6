// Command nfqguard inspects Docker container traffic in userspace: it sends
// forwarded container packets from Docker's DOCKER-USER chain to NFQUEUE,
// judges each flow against a TOML rule table, and logs blocked flows.
//
//	nfqguard run -c config.toml     install the redirect, inspect, clean up on exit
//	nfqguard check -c config.toml   validate and print the compiled rule table
//	nfqguard status [--json]        show the running daemon's state
//	nfqguard reload                 make the running daemon load its rule file again
//
// This is the daemon a Docker host runs as root: it links what it needs to
// judge packets and nothing else. The demo, the benchmark and its floors
// are a second binary, cmd/nfqguard-lab. The daemon itself is package
// daemon; this command parses flags and turns signals into its calls.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"

	"github.com/nfqguard/nfqguard/internal/cli"
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

The demo and the benchmark are in the lab binary: nfqguard-lab demo|bench|floor-go.

Run "nfqguard <command> -h" for a command's flags.
`

func main() { cli.Main("nfqguard", run) }

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return cli.ErrUsage
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
	case "-h", "-help", "--help", "help":
		fmt.Fprint(stdout, usage)
		return nil
	}
	fmt.Fprintf(stderr, "nfqguard: unknown command %q\n\n%s", args[0], usage)
	return cli.ErrUsage
}

func newFlags(name string, stderr io.Writer) *flag.FlagSet {
	return cli.NewFlags("nfqguard", name, stderr)
}
