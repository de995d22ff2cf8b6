package bench

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"slices"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/nfqguard/nfqguard/internal/netlab"
)

// Setup names, in the order they are measured and reported.
const (
	// SetupKernel is the kernel alone: the firewall as the lab leaves it.
	SetupKernel = "kernel"
	// SetupFloorC is an accept-all consumer in C on libnetfilter_queue.
	SetupFloorC = "floor-c"
	// SetupFloorGo is the same consumer on go-nfqueue (FloorGo).
	SetupFloorGo = "floor-go"
	// SetupPerPacket is nfqguard with [engine] fast_path = false.
	SetupPerPacket = "nfqguard-per-packet"
	// SetupNfqguard is nfqguard with the fast path, as shipped.
	SetupNfqguard = "nfqguard"
	// SetupPort443 is nfqguard (fast path) with a port rule first for
	// web's 443: the TLS and QUIC flows judged by port only.
	SetupPort443 = "nfqguard-443-port"
	// SetupSNI443 is the same with a tls_sni rule instead: the same flows
	// held until their ClientHello is read, over TCP and QUIC.
	SetupSNI443 = "nfqguard-443-sni"
)

// SetupNames lists every setup in measuring order.
var SetupNames = []string{SetupKernel, SetupFloorC, SetupFloorGo, SetupPerPacket, SetupNfqguard, SetupPort443, SetupSNI443}

// l7Setups run the TLS and QUIC workloads: the kernel for reference, and
// the two tables that differ only in how port 443 is judged.
var l7Setups = []string{SetupKernel, SetupPort443, SetupSNI443}

var setupDescriptions = map[string]string{
	SetupKernel:    "no redirect: the firewall as Docker leaves it",
	SetupFloorC:    "accept-all consumer in C (libnetfilter_queue), queue 0, NF_ACCEPT",
	SetupFloorGo:   "accept-all consumer on go-nfqueue (nfqguard floor-go), queue 0, NF_ACCEPT",
	SetupPerPacket: "nfqguard run, [engine] fast_path = false: every packet judged in userspace",
	SetupNfqguard:  "nfqguard run, fast_path = true: decided flows stay in the kernel",
	SetupPort443:   "nfqguard run, fast_path = true, a port rule first for web's 443 (TLS and QUIC judged by port)",
	SetupSNI443:    "nfqguard run, fast_path = true, a tls_sni rule first for web's 443 (TLS and QUIC held until the ClientHello is read)",
}

// floorQueue is the queue both floors bind.
const floorQueue = 0

// floorRule is the redirect the bench installs for the floors, without
// the chain operation (see chainOp).
var floorRule = []string{"-m", "comment", "--comment", "nfqguard-bench", "-j", "NFQUEUE", "--queue-num", fmt.Sprint(floorQueue)}

const (
	readyTimeout   = 20 * time.Second // a consumer's start-up, including nfqguard's iptables work
	stopTimeout    = 15 * time.Second // SIGTERM to exit
	cleanupTimeout = 10 * time.Second // iptables commands that undo the bench's changes
	tailLines      = 20               // consumer output kept for error messages
)

// consumer is a queue consumer process started in the lab's host
// namespace. stop is idempotent and safe to defer.
type consumer struct {
	name   string
	cmd    *exec.Cmd
	tail   *lineTail
	exited chan struct{} // closed when the process has exited and its output is read
	err    error         // cmd.Wait's result, valid after exited is closed

	beforeStop func() error // undoes what was done after start (the floor rule)
	once       sync.Once
	stopErr    error
}

// startConsumer starts bin with args in the lab's host namespace and waits
// until a line containing marker appears on its stdout (or stderr, if
// markerOnStderr).
func startConsumer(ctx context.Context, l *netlab.Lab, name, marker string, markerOnStderr bool, bin string, args ...string) (*consumer, error) {
	cmd := l.Command(ctx, l.Host, bin, args...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	c := &consumer{name: name, cmd: cmd, tail: &lineTail{max: tailLines}, exited: make(chan struct{})}
	ready := make(chan struct{})
	var readyOnce sync.Once
	scan := func(r io.Reader, watch bool) {
		sc := bufio.NewScanner(r)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			line := sc.Text()
			c.tail.add(line)
			if watch && strings.Contains(line, marker) {
				readyOnce.Do(func() { close(ready) })
			}
		}
		// Keep draining: a consumer blocked on a full pipe would stall
		// its queue and the measurement.
		_, _ = io.Copy(io.Discard, r)
	}
	var pipes sync.WaitGroup
	pipes.Go(func() { scan(stdout, !markerOnStderr) })
	pipes.Go(func() { scan(stderr, markerOnStderr) })
	go func() {
		pipes.Wait() // read everything before Wait closes the pipes
		c.err = cmd.Wait()
		close(c.exited)
	}()

	timer := time.NewTimer(readyTimeout)
	defer timer.Stop()
	select {
	case <-ready:
		return c, nil
	case <-c.exited:
		return nil, fmt.Errorf("%s exited before it was ready: %v%s", name, c.err, c.tail)
	case <-timer.C:
		c.kill()
		return nil, fmt.Errorf("%s not ready within %v%s", name, readyTimeout, c.tail)
	case <-ctx.Done():
		c.kill()
		return nil, ctx.Err()
	}
}

// pid is the consumer's process id: "ip netns exec" execs into it.
func (c *consumer) pid() int { return c.cmd.Process.Pid }

func (c *consumer) kill() {
	_ = syscall.Kill(-c.cmd.Process.Pid, syscall.SIGKILL)
	<-c.exited
}

// stop runs beforeStop, then asks the consumer to exit with SIGTERM, as an
// operator would, and waits; a consumer that does not exit in time is
// killed.
func (c *consumer) stop() error {
	c.once.Do(func() {
		var errs []error
		if c.beforeStop != nil {
			errs = append(errs, c.beforeStop())
		}
		if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
			errs = append(errs, fmt.Errorf("stop %s: %w", c.name, err))
		}
		timer := time.NewTimer(stopTimeout)
		defer timer.Stop()
		select {
		case <-c.exited:
			if c.err != nil {
				errs = append(errs, fmt.Errorf("%s: %w%s", c.name, c.err, c.tail))
			}
		case <-timer.C:
			c.kill()
			errs = append(errs, fmt.Errorf("%s did not exit within %v of SIGTERM; killed%s", c.name, stopTimeout, c.tail))
		}
		c.stopErr = errors.Join(errs...)
	})
	return c.stopErr
}

// lineTail keeps the last lines a process wrote, for error messages.
// Flow-log lines (JSON objects) are left out: they would crowd out the
// diagnostics.
type lineTail struct {
	max   int
	mu    sync.Mutex // guards lines
	lines []string
}

func (t *lineTail) add(line string) {
	if strings.HasPrefix(line, "{") {
		return
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.lines) == t.max {
		t.lines = append(t.lines[:0], t.lines[1:]...)
	}
	t.lines = append(t.lines, line)
}

// String renders the lines as an indented block after a newline, or "".
func (t *lineTail) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	if len(t.lines) == 0 {
		return ""
	}
	return "\n    | " + strings.Join(t.lines, "\n    | ")
}

// floorChain is where the floors' redirect goes: the top of DOCKER-USER,
// or with Docker's nftables backend (no DOCKER-USER) of mangle FORWARD,
// where nfqguard hooks too.
func floorChain(l *netlab.Lab) []string {
	if l.DockerFirewall == netlab.DockerNftables {
		return []string{"-t", "mangle", "FORWARD"}
	}
	return []string{"DOCKER-USER"}
}

// chainOp is an iptables command on the floor's chain: op ("-I", "-D")
// before the chain name, after its table.
func chainOp(l *netlab.Lab, op string, rest ...string) []string {
	c := floorChain(l)
	return slices.Concat(c[:len(c)-1], []string{op, c[len(c)-1]}, rest)
}

// startFloor starts a floor consumer and, once it has bound its queue,
// inserts the bench's redirect at the top of DOCKER-USER (mangle FORWARD
// with Docker's nftables backend); stop removes the redirect before the
// consumer, so no packet meets an unbound queue.
func startFloor(ctx context.Context, l *netlab.Lab, name, bin string, args ...string) (*consumer, error) {
	c, err := startConsumer(ctx, l, name, "ready", false, bin, args...)
	if err != nil {
		return nil, err
	}
	if _, err := l.IPTables(ctx, chainOp(l, "-I", append([]string{"1"}, floorRule...)...)...); err != nil {
		return nil, errors.Join(fmt.Errorf("%s: install redirect: %w", name, err), c.stop())
	}
	c.beforeStop = func() error {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cleanupTimeout)
		defer cancel()
		if _, err := l.IPTables(ctx, chainOp(l, "-D", floorRule...)...); err != nil {
			return &cleanupError{fmt.Errorf("%s: remove redirect: %w", name, err)}
		}
		return nil
	}
	return c, nil
}

// cleanupError is a failure to undo a change to the lab's firewall: later
// setups would be measured through it, so the run cannot go on.
type cleanupError struct{ err error }

func (e *cleanupError) Error() string { return e.err.Error() }
func (e *cleanupError) Unwrap() error { return e.err }

// startEngine starts "nfqguard run" with config and waits until it says
// it is running. Flow events go to stderr, which is drained.
func startEngine(ctx context.Context, l *netlab.Lab, name, bin, config, statsJSON string) (*consumer, error) {
	return startConsumer(ctx, l, name, "nfqguard running", true, bin,
		"run", "-c", config, "--blocked-log", "stderr", "--stats-json", statsJSON, "--status-socket", "off")
}
