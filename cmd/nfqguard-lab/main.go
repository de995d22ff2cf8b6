// Command nfqguard-lab runs nfqguard against a built-in lab: a network
// namespace shaped like a Docker host, with containers and an outside
// client. It is a second binary so that the daemon a Docker host runs as
// root (cmd/nfqguard) links none of this: the lab, the benchmark and its
// plots.
//
//	nfqguard-lab demo      run the engine against the lab and show what it allows and blocks
//	nfqguard-lab bench     measure what the engine costs, against the kernel and two floors
//	nfqguard-lab floor-go  the bench's accept-all go-nfqueue consumer
//
// demo and bench start the daemon binary, by default the nfqguard beside
// this one (make build puts both in bin/), else the one on $PATH.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"

	"github.com/nfqguard/nfqguard/internal/cli"
)

const usage = `usage: nfqguard-lab <command> [flags]

commands:
  demo   [-c FILE] [--engine PATH]
         build a lab that looks like a Docker host, run the engine against it
         with FILE (default config.toml), send allowed and blocked traffic,
         print what happened, tear it down
  bench  [-c FILE] [--quick] [--out DIR] [--engine PATH]
         measure verdict latency, connection rate, UDP rate, bulk throughput
         and CPU per packet in the lab: kernel alone, accept-all floors in C
         and Go, nfqguard per-packet and with the fast path; print a Markdown
         table, write DIR/bench.json and DIR/latency-cdf.png (default
         ./bench-out)
  floor-go [--queue N]
         bind NFQUEUE queue N (default 0) and accept every packet with
         go-nfqueue and nothing else; prints "ready" when bound, stops on
         SIGINT/SIGTERM (the bench's Go floor)

--engine is the nfqguard daemon binary to run (default: nfqguard beside
this binary, else on $PATH). All three need root.

Run "nfqguard-lab <command> -h" for a command's flags.
`

func main() { cli.Main("nfqguard-lab", run) }

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return cli.ErrUsage
	}
	switch args[0] {
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
	fmt.Fprintf(stderr, "nfqguard-lab: unknown command %q\n\n%s", args[0], usage)
	return cli.ErrUsage
}

func newFlags(name string, stderr io.Writer) *flag.FlagSet {
	return cli.NewFlags("nfqguard-lab", name, stderr)
}

// engineFlag adds --engine to fs: the daemon binary demo and bench run.
func engineFlag(fs *flag.FlagSet) *string {
	return fs.String("engine", "", "nfqguard daemon binary (default: nfqguard beside this binary, else on $PATH)")
}

// findEngine returns the daemon binary: flag when given, else nfqguard in
// this executable's directory, else on $PATH.
func findEngine(flag string) (string, error) {
	if flag != "" {
		return filepath.Abs(flag)
	}
	self, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("find own binary: %w", err)
	}
	beside := filepath.Join(filepath.Dir(self), "nfqguard")
	if fi, err := os.Stat(beside); err == nil && fi.Mode().IsRegular() {
		return beside, nil
	}
	p, err := exec.LookPath("nfqguard")
	if err != nil {
		return "", errors.New("no nfqguard binary beside " + self + " nor on $PATH: build it (make build) or name it with --engine")
	}
	return filepath.Abs(p)
}
