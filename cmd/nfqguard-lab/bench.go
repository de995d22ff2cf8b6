package main

import (
	"context"
	"fmt"
	"io"
	"math"

	"github.com/nfqguard/nfqguard/bench"
	"github.com/nfqguard/nfqguard/internal/cli"
	"github.com/nfqguard/nfqguard/internal/netlab"
)

const benchUsage = `usage: nfqguard-lab bench [-c FILE] [--quick] [--out DIR] [--docker-firewall iptables|nftables] [--engine PATH]

Measure what nfqguard costs container traffic: build the lab, then run
request/response latency, new connections per second, small-packet UDP,
bulk TCP and CPU per packet under the kernel alone, two accept-all NFQUEUE
floors (C and Go) and nfqguard (per-packet and fast path), interleaved,
3 repetitions, in a lab whose Docker uses iptables or, with
--docker-firewall nftables, Docker 29's nftables backend. Prints a Markdown table; writes DIR/bench.json and
DIR/latency-cdf.png. Needs root.

flags:
`

func benchCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("bench", stderr)
	fs.Usage = cli.UsageFunc(fs, benchUsage)
	config := fs.String("c", "config.toml", "rule file nfqguard runs with; must allow tcp 80, 8000, 8001 and udp 53 to web")
	quick := fs.Bool("quick", false, "short workloads: finishes in under a minute")
	out := fs.String("out", "./bench-out", "directory for bench.json and latency-cdf.png")
	dockerFW := fs.String("docker-firewall", netlab.DockerIPTables,
		`Docker firewall backend the lab imitates: "iptables" (the redirect in DOCKER-USER) or "nftables" (Docker 29's, the redirect in mangle NFQGUARD)`)
	engine := engineFlag(fs)
	if err := cli.ParseFlags(fs, args); err != nil {
		return err
	}
	if *dockerFW != netlab.DockerIPTables && *dockerFW != netlab.DockerNftables {
		fmt.Fprintf(stderr, "--docker-firewall %q: want %q or %q\n", *dockerFW, netlab.DockerIPTables, netlab.DockerNftables)
		return cli.ErrUsage
	}
	bin, err := findEngine(*engine)
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	r, err := bench.Run(ctx, bench.Options{Config: *config, Out: *out, Quick: *quick, Binary: bin, Progress: stderr,
		DockerFirewall: *dockerFW})
	if err != nil {
		return fmt.Errorf("bench: %w", err)
	}
	if err := r.WriteMarkdown(stdout); err != nil {
		return fmt.Errorf("bench: print report: %w", err)
	}
	fmt.Fprintf(stderr, "bench: wrote %s/bench.json and %s/latency-cdf.png in %.0fs\n", *out, *out, r.Seconds)
	return nil
}

const floorGoUsage = `usage: nfqguard-lab floor-go [--queue N]

The go-nfqueue floor of "nfqguard-lab bench": bind NFQUEUE queue N and accept
every packet, with nothing else. Prints "ready" once bound; SIGINT or
SIGTERM stop it. Needs root (CAP_NET_ADMIN). It installs no iptables rule:
send packets to the queue yourself (-j NFQUEUE --queue-num N).

flags:
`

func floorGoCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("floor-go", stderr)
	fs.Usage = cli.UsageFunc(fs, floorGoUsage)
	q := fs.Uint("queue", 0, "NFQUEUE number to bind (0-65535)")
	if err := cli.ParseFlags(fs, args); err != nil {
		return err
	}
	if *q > math.MaxUint16 {
		fmt.Fprintf(stderr, "--queue %d: want 0-65535\n", *q)
		return cli.ErrUsage
	}
	return bench.FloorGo(ctx, uint16(*q), func() { fmt.Fprintln(stdout, "ready") })
}
