package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/nfqguard/nfqguard/control"
	"github.com/nfqguard/nfqguard/flowlog"
	"github.com/nfqguard/nfqguard/internal/cli"
	"github.com/nfqguard/nfqguard/internal/netlab"
	"github.com/nfqguard/nfqguard/internal/traffic"
	"github.com/nfqguard/nfqguard/rules"
)

// demoCase is one exchange the demo tries through the lab.
type demoCase struct {
	what string
	from string // namespace
	run  func() error
}

func demoCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlags("demo", stderr)
	config := fs.String("c", "config.toml", "rule file to run the engine with")
	engine := engineFlag(fs)
	if err := cli.ParseFlags(fs, args); err != nil {
		return err
	}
	if _, err := rules.Load(*config); err != nil {
		return err
	}
	// The lab's engine runs a private copy: `nfqguard run` refuses a file
	// that users other than root could change, and the demo's file is
	// usually the repository's, owned by whoever cloned it. The engine only
	// judges the lab's throwaway namespaces, so that copy is safe.
	src, err := os.ReadFile(*config)
	if err != nil {
		return fmt.Errorf("read %s: %w", *config, err)
	}
	bin, err := findEngine(*engine)
	if err != nil {
		return err
	}

	fmt.Fprintln(stdout, "Building the lab: a Docker-shaped host (docker0, DOCKER-USER, DNAT 8080→web:80 and 5353→web:53/udp),")
	fmt.Fprintln(stdout, "containers web (172.17.0.2) and db (172.17.0.3), and an outside client (203.0.113.2).")
	l, err := netlab.New(ctx, netlab.Options{})
	if err != nil {
		return err
	}
	defer l.Close()
	web, db := l.Containers[0], l.Containers[1]
	ap := netip.AddrPortFrom
	for _, s := range []struct {
		ns   string
		addr netip.AddrPort
		udp  bool
	}{
		{web.NS, ap(web.Addr, 80), false}, {web.NS, ap(web.Addr, 81), false}, {web.NS, ap(web.Addr, 53), true},
		{db.NS, ap(db.Addr, 5432), false}, {db.NS, ap(db.Addr, 6379), false},
		{l.Out, ap(l.Outside, 9000), false}, {l.Out, ap(l.Outside, 25), false},
	} {
		serve := l.ServeTCPEcho
		if s.udp {
			serve = l.ServeUDPEcho
		}
		if err := serve(s.ns, s.addr); err != nil {
			return err
		}
	}

	// Servers for deep inspection: TLS on 443, HTTP on 80, DNS on 53.
	if err := errors.Join(l.ServeTLS(l.Out, ap(l.Outside, 443)), l.ServeHTTP(l.Out, ap(l.Outside, 80)),
		l.ServeDNS(l.Out, ap(l.Outside, 53))); err != nil {
		return err
	}
	// The lab's engine gets a status socket of its own (a daemon may be
	// running on this host with the default one) and its copy of the file.
	sockDir, err := os.MkdirTemp("", "nfqguard-demo-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(sockDir)
	sock := filepath.Join(sockDir, "status.sock")
	cfgPath := filepath.Join(sockDir, "config.toml")
	if err := os.WriteFile(cfgPath, src, 0o600); err != nil {
		return fmt.Errorf("copy %s for the lab's engine: %w", *config, err)
	}
	eng, err := startEngine(ctx, l, bin, cfgPath, sock, stderr)
	if err != nil {
		return err
	}
	defer eng.stop()
	fmt.Fprintf(stdout, "Engine running with %s.\n\n", *config)

	const timeout = time.Second
	msg := []byte("hello through nfqguard")
	tcp := func(ns string, dst netip.AddrPort) func() error {
		return func() error { return traffic.TCPExchange(l.NSPath(ns), 0, dst, msg, timeout) }
	}
	cases := []demoCase{
		{"outside → web:80 through published port 8080", "outside", tcp(l.Out, ap(l.HostOutside, 8080))},
		{"outside → web:53/udp through published port 5353", "outside", func() error {
			return traffic.UDPExchange(l.NSPath(l.Out), 0, ap(l.HostOutside, 5353), msg, timeout)
		}},
		{"outside → web:81 routed directly (port not published)", "outside", tcp(l.Out, ap(web.Addr, 81))},
		{"web → outside:9000", "web", tcp(web.NS, ap(l.Outside, 9000))},
		{"web → outside:25 (smtp)", "web", tcp(web.NS, ap(l.Outside, 25))},
		{"web → db:5432", "web", tcp(web.NS, ap(db.Addr, 5432))},
		{"web → db:6379", "web", tcp(web.NS, ap(db.Addr, 6379))},
		{"db → web:80", "db", tcp(db.NS, ap(web.Addr, 80))},
		{"db → web ping", "db", func() error { return l.Ping(db.NS, web.Addr, timeout) }},
		{"web → outside:443 TLS, server name example.org", "web", func() error {
			_, err := l.TLSHandshake(web.NS, ap(l.Outside, 443), "example.org", 1, timeout)
			return err
		}},
		{"web → outside:443 TLS, server name pastebin.com", "web", func() error {
			_, err := l.TLSHandshake(web.NS, ap(l.Outside, 443), "pastebin.com", 1, timeout)
			return err
		}},
		{"web → outside:80 HTTP POST pastebin.com/raw/x", "web", func() error {
			_, err := l.HTTPRequest(web.NS, ap(l.Outside, 80), "POST", "pastebin.com", "/raw/x", timeout)
			return err
		}},
		{"web → outside:53 DNS www.example.org", "web", func() error {
			_, err := l.Resolve(web.NS, ap(l.Outside, 53), "udp", "www.example.org", timeout)
			return err
		}},
		{"web → outside:53 DNS c2.evil.example", "web", func() error {
			_, err := l.Resolve(web.NS, ap(l.Outside, 53), "udp", "c2.evil.example", timeout)
			return err
		}},
	}
	tw := tabwriter.NewWriter(stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "TRAFFIC\tRESULT\tENGINE LOG")
	reached := 0
	for _, c := range cases {
		err := c.run()
		result := "reached"
		if err != nil {
			result = "blocked"
		} else {
			reached++
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", c.what, result, eng.takeRecords(200*time.Millisecond))
	}
	tw.Flush()
	fmt.Fprintf(stdout, "\n%d of %d exchanges reached their server.\n", reached, len(cases))

	// What "nfqguard status" shows an operator about this run.
	resp, err := control.Ask(sock, control.Request{Cmd: "status", Top: 5}, 5*time.Second)
	if err != nil {
		return err
	}
	if !resp.OK {
		return fmt.Errorf("status: %s", resp.Error)
	}
	fmt.Fprintf(stdout, "\n$ nfqguard status\n")
	if err := resp.Status.WriteText(stdout); err != nil {
		return err
	}

	if err := demoFlush(ctx, l, eng, sock, tcp(l.Out, ap(l.HostOutside, 8080)), stdout); err != nil {
		return err
	}

	if err := eng.stop(); err != nil {
		return err
	}
	left, err := l.IPTables(ctx, "-S", "DOCKER-USER")
	if err != nil {
		return err
	}
	if strings.Contains(left, "nfqguard") {
		return fmt.Errorf("engine left rules behind in DOCKER-USER:\n%s", left)
	}
	fmt.Fprintln(stdout, "Engine stopped; DOCKER-USER is back as Docker left it. Lab removed.")
	return nil
}

// demoFlush shows the watcher at work: someone flushes DOCKER-USER, the
// engine puts its rules back and says so, and traffic is judged as before.
func demoFlush(ctx context.Context, l *netlab.Lab, eng *demoEngine, sock string, allowed func() error, stdout io.Writer) error {
	fmt.Fprintf(stdout, "\n$ iptables -F DOCKER-USER    # someone else flushes the chain\n")
	eng.mu.Lock()
	eng.restored = nil
	eng.mu.Unlock()
	if _, err := l.IPTables(ctx, "-F", "DOCKER-USER"); err != nil {
		return err
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		eng.mu.Lock()
		line := eng.restored
		eng.mu.Unlock()
		if line != nil {
			fmt.Fprintf(stdout, "engine log: %s\n", *line)
			break
		}
		if time.Now().After(deadline) {
			return errors.New("the engine did not put its rules back within 5s of a flush")
		}
		time.Sleep(10 * time.Millisecond)
	}
	fmt.Fprintf(stdout, "$ iptables -A DOCKER-USER -j RETURN    # Docker's own rule went with the flush\n")
	if _, err := l.IPTables(ctx, "-A", "DOCKER-USER", "-j", "RETURN"); err != nil {
		return err
	}
	result := "reached"
	if err := allowed(); err != nil {
		result = "blocked: " + err.Error()
	}
	fmt.Fprintf(stdout, "outside → web:80 through published port 8080 again: %s\n", result)
	resp, err := control.Ask(sock, control.Request{Cmd: "status"}, 5*time.Second)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "\n$ nfqguard status | head -3\n")
	var b strings.Builder
	if err := resp.Status.WriteText(&b); err != nil {
		return err
	}
	lines := strings.SplitAfter(b.String(), "\n")
	fmt.Fprint(stdout, strings.Join(lines[:min(3, len(lines))], ""))
	return nil
}

// demoEngine is `nfqguard run` started inside the lab's host namespace.
type demoEngine struct {
	// restored is the engine's last "redirect restored" log line.
	restored *string
	wait     func() error
	signal   func(os.Signal) error
	mu       sync.Mutex
	records  []flowlog.Record
	once     sync.Once
	err      error
}

func startEngine(ctx context.Context, l *netlab.Lab, engine, config, sock string, stderr io.Writer) (*demoEngine, error) {
	cmd := l.Command(ctx, l.Host, engine, "run", "-c", config, "--blocked-log", "stdout", "--status-socket", sock)
	out, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	errOut, err := cmd.StderrPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start engine: %w", err)
	}
	e := &demoEngine{signal: cmd.Process.Signal}
	var pipes sync.WaitGroup
	pipes.Add(2)
	ready := make(chan struct{})
	var readyOnce sync.Once
	go func() {
		defer pipes.Done()
		sc := bufio.NewScanner(errOut)
		for sc.Scan() {
			fmt.Fprintf(stderr, "  engine | %s\n", sc.Text())
			if strings.Contains(sc.Text(), "nfqguard running") {
				readyOnce.Do(func() { close(ready) })
			}
			if line := sc.Text(); strings.Contains(line, `msg="redirect restored"`) {
				e.mu.Lock()
				e.restored = &line
				e.mu.Unlock()
			}
		}
	}()
	go func() {
		defer pipes.Done()
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			var r flowlog.Record
			if json.Unmarshal(sc.Bytes(), &r) == nil {
				e.mu.Lock()
				e.records = append(e.records, r)
				e.mu.Unlock()
			}
		}
	}()
	exited := make(chan error, 1)
	go func() {
		pipes.Wait() // read everything before Wait closes the pipes
		exited <- cmd.Wait()
	}()
	e.wait = func() error { return <-exited }
	select {
	case <-ready:
		return e, nil
	case err := <-exited:
		return nil, fmt.Errorf("engine exited before it was ready: %v", err)
	case <-time.After(15 * time.Second):
		_ = e.stop()
		return nil, errors.New("engine did not become ready within 15s")
	}
}

// takeRecords waits a little for the engine's log and describes the
// records that arrived since the last call.
func (e *demoEngine) takeRecords(wait time.Duration) string {
	time.Sleep(wait)
	e.mu.Lock()
	defer e.mu.Unlock()
	var parts []string
	for _, r := range e.records {
		fact := ""
		switch {
		case r.SNI != "":
			fact = ", sni " + r.SNI
		case r.HTTPHost != "":
			fact = fmt.Sprintf(", http %s %s%s", r.HTTPMethod, r.HTTPHost, r.HTTPPath)
		case r.QName != "":
			fact = ", qname " + r.QName
		}
		parts = append(parts, fmt.Sprintf("%s by %s (%s %s %s:%d → %s:%d%s)", r.Event, r.Rule, r.Container, r.Direction,
			r.Src, r.SrcPort, r.Dst, r.DstPort, fact))
	}
	e.records = e.records[:0]
	if len(parts) == 0 {
		return "-"
	}
	return strings.Join(parts, "; ")
}

// stop asks the engine to exit as an operator would (SIGTERM) and waits.
func (e *demoEngine) stop() error {
	e.once.Do(func() {
		_ = e.signal(syscall.SIGTERM)
		if err := e.wait(); err != nil {
			e.err = fmt.Errorf("engine: %w", err)
		}
	})
	return e.err
}
