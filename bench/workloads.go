package bench

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nfqguard/nfqguard/internal/netlab"
	"github.com/nfqguard/nfqguard/internal/traffic"
)

// Workload names, as keys of RepResult.Errors and in progress output.
const (
	wRR    = "rr"
	wConns = "conns"
	wUDP   = "udp"
	wBulk  = "bulk"
	wCPU   = "cpu"
	wTLS   = "tls"
	wQUIC  = "quic"
	// Not workloads, but steps of a repetition that can fail.
	wStart  = "start"  // starting the consumer
	wStop   = "stop"   // stopping it
	wQueue  = "queue"  // reading the kernel's queue counters
	wEngine = "engine" // reading nfqguard's --stats-json
)

// stepTimeout bounds every blocking step of a workload (a connect, a round
// trip): traffic a setup does not let through is an error, not a hang.
const stepTimeout = 2 * time.Second

// Durations set the size of each workload. Zero fields take the default of
// the mode (Options.Quick or full).
type Durations struct {
	// RoundTrips is the number of measured rr round trips.
	RoundTrips int `json:"round_trips"`
	// Warmup is the number of rr round trips before measuring.
	Warmup int `json:"warmup"`
	// Conns, UDP and Bulk are how long those workloads run.
	Conns time.Duration `json:"conns_ns"`
	UDP   time.Duration `json:"udp_ns"`
	Bulk  time.Duration `json:"bulk_ns"`
}

var (
	quickDurations = Durations{RoundTrips: 500, Warmup: 50, Conns: 500 * time.Millisecond, UDP: 700 * time.Millisecond, Bulk: 700 * time.Millisecond}
	fullDurations  = Durations{RoundTrips: 10000, Warmup: 500, Conns: 3 * time.Second, UDP: 3 * time.Second, Bulk: 3 * time.Second}
)

// withDefaults fills zero fields from def.
func (d Durations) withDefaults(def Durations) Durations {
	if d.RoundTrips <= 0 {
		d.RoundTrips = def.RoundTrips
	}
	if d.Warmup <= 0 {
		d.Warmup = def.Warmup
	}
	if d.Conns <= 0 {
		d.Conns = def.Conns
	}
	if d.UDP <= 0 {
		d.UDP = def.UDP
	}
	if d.Bulk <= 0 {
		d.Bulk = def.Bulk
	}
	return d
}

// RRResult is one run of the request/response workload.
type RRResult struct {
	RTT     Percentiles `json:"rtt_us"` // percentiles of Samples
	Samples []int64     `json:"rtt_ns"` // every measured round trip, in order
}

// RateResult is a count over a measured interval.
type RateResult struct {
	Count   uint64  `json:"count"`      // completed operations
	Seconds float64 `json:"seconds"`    // the interval
	PerSec  float64 `json:"per_second"` // Count / Seconds
}

// UDPResult is one run of the small-packet UDP workload.
type UDPResult struct {
	Sent     uint64  `json:"sent"`     // datagrams the senders' sockets accepted
	Received uint64  `json:"received"` // datagrams the sink read
	Seconds  float64 `json:"seconds"`  // how long the senders ran
	Kpps     float64 `json:"kpps"`     // received / seconds / 1000
}

// BulkResult is one run of the bulk TCP workload.
type BulkResult struct {
	Bytes   uint64  `json:"bytes"`           // bytes the sink read while the client streamed
	Seconds float64 `json:"seconds"`         // how long the client streamed
	Gbps    float64 `json:"gbit_per_second"` // Bytes * 8 / Seconds / 1e9
}

// clients runs the workloads from the outside namespace to the host's
// published ports.
type clients struct {
	l    *netlab.Lab
	srv  *servers
	host netip.Addr // the host's outside address, DNATed to web
	d    Durations
}

func (c *clients) dst(port uint16) netip.AddrPort { return netip.AddrPortFrom(c.host, port) }

// closeOnDone closes conn when ctx is done, so a cancelled run never waits
// for a deadline.
func closeOnDone(ctx context.Context, conn io.Closer) (stop func() bool) {
	return context.AfterFunc(ctx, func() { conn.Close() })
}

// rr measures round trips of 64-byte messages on one connection to the
// echo server.
func (c *clients) rr(ctx context.Context) (*RRResult, error) {
	dst := c.dst(echoHostPort)
	conn, err := traffic.DialTCP(c.l.NSPath(c.l.Out), 0, dst, time.Now().Add(stepTimeout))
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	defer conn.Close()
	defer closeOnDone(ctx, conn)()
	var msg, buf [msgSize]byte
	samples := make([]int64, 0, c.d.RoundTrips)
	for i := range c.d.Warmup + c.d.RoundTrips {
		if err := conn.SetDeadline(time.Now().Add(stepTimeout)); err != nil {
			return nil, fmt.Errorf("round trip %d: %w", i, err)
		}
		msg[0] = byte(i)
		t0 := time.Now()
		if _, err := conn.Write(msg[:]); err != nil {
			return nil, fmt.Errorf("round trip %d: send: %w", i, ctxErr(ctx, err))
		}
		if _, err := io.ReadFull(conn, buf[:]); err != nil {
			return nil, fmt.Errorf("round trip %d: receive: %w", i, ctxErr(ctx, err))
		}
		rtt := time.Since(t0)
		if buf != msg {
			return nil, fmt.Errorf("round trip %d: echo mismatch", i)
		}
		if i >= c.d.Warmup {
			samples = append(samples, rtt.Nanoseconds())
		}
	}
	return &RRResult{RTT: samplePercentiles(samples), Samples: samples}, nil
}

// connLoops is the number of concurrent connect loops of conns.
const connLoops = 2

// conns counts complete short connections (connect, send 64 bytes,
// receive 64 bytes, close) to the one-shot server, from connLoops loops.
func (c *clients) conns(ctx context.Context) (*RateResult, error) {
	dst := c.dst(oneShotHostPort).String()
	var done atomic.Uint64
	errs := make([]error, connLoops)
	var wg sync.WaitGroup
	t0 := time.Now()
	end := t0.Add(c.d.Conns)
	for i := range connLoops {
		wg.Go(func() {
			// The whole loop runs on one thread inside the outside
			// namespace: one namespace switch, not two per connection.
			errs[i] = c.l.Do(c.l.Out, func() error {
				d := net.Dialer{Timeout: stepTimeout}
				var msg, buf [msgSize]byte
				for time.Now().Before(end) {
					conn, err := d.DialContext(ctx, "tcp4", dst)
					if err != nil {
						return fmt.Errorf("connection %d: connect: %w", done.Load(), ctxErr(ctx, err))
					}
					err = oneExchange(conn, msg[:], buf[:])
					conn.Close()
					if err != nil {
						return fmt.Errorf("connection %d: %w", done.Load(), ctxErr(ctx, err))
					}
					done.Add(1)
				}
				return nil
			})
		})
	}
	wg.Wait()
	elapsed := time.Since(t0).Seconds()
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	n := done.Load()
	return &RateResult{Count: n, Seconds: elapsed, PerSec: float64(n) / elapsed}, nil
}

func oneExchange(conn net.Conn, msg, buf []byte) error {
	if err := conn.SetDeadline(time.Now().Add(stepTimeout)); err != nil {
		return err
	}
	if _, err := conn.Write(msg); err != nil {
		return fmt.Errorf("send: %w", err)
	}
	if _, err := io.ReadFull(conn, buf); err != nil {
		return fmt.Errorf("receive: %w", err)
	}
	return nil
}

// udpSenders is the number of UDP sockets of udp, each its own flow.
const udpSenders = 4

// udp sends 64-byte datagrams from udpSenders sockets as fast as they can
// for the UDP duration and counts what the sink received. Source ports
// are firstPort.. firstPort+udpSenders-1: the caller makes them new for
// every run, so every run's flows are new to conntrack (a flow an
// earlier engine adopted or fast-pathed would skip the queue).
func (c *clients) udp(ctx context.Context, firstPort uint16) (*UDPResult, error) {
	dst := net.UDPAddrFromAddrPort(c.dst(udpSinkHostPort))
	var socks []*net.UDPConn
	defer func() {
		for _, s := range socks {
			s.Close()
		}
	}()
	for i := range udpSenders {
		src := net.UDPAddrFromAddrPort(netip.AddrPortFrom(c.l.Outside, firstPort+uint16(i)))
		var s *net.UDPConn
		err := c.l.Do(c.l.Out, func() error {
			var err error
			s, err = net.DialUDP("udp4", src, dst)
			return err
		})
		if err != nil {
			return nil, fmt.Errorf("open sender %s: %w", src, err)
		}
		socks = append(socks, s)
	}
	var stop atomic.Bool
	var sent atomic.Uint64
	var wg sync.WaitGroup
	before := c.srv.udpDatagrams.Load()
	t0 := time.Now()
	for _, s := range socks {
		wg.Go(func() {
			var msg [msgSize]byte
			n := uint64(0)
			for !stop.Load() {
				// Errors (ENOBUFS, ICMP-reported refusals) only mean
				// the datagram was not sent.
				if _, err := s.Write(msg[:]); err == nil {
					n++
				}
			}
			sent.Add(n)
		})
	}
	select {
	case <-time.After(c.d.UDP):
	case <-ctx.Done():
	}
	stop.Store(true)
	wg.Wait()
	elapsed := time.Since(t0).Seconds()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	// Let datagrams in flight (queued, in socket buffers) arrive.
	time.Sleep(50 * time.Millisecond)
	got := c.srv.udpDatagrams.Load() - before
	r := &UDPResult{Sent: sent.Load(), Received: got, Seconds: elapsed, Kpps: float64(got) / elapsed / 1e3}
	if got == 0 {
		return nil, fmt.Errorf("no datagram reached the sink (%d sent)", r.Sent)
	}
	return r, nil
}

// bulkChunk is the size of each write of bulk.
const bulkChunk = 128 << 10

// bulk streams on one connection to the sink for the bulk duration and
// measures what the sink received meanwhile.
func (c *clients) bulk(ctx context.Context) (*BulkResult, error) {
	conn, err := traffic.DialTCP(c.l.NSPath(c.l.Out), 0, c.dst(sinkHostPort), time.Now().Add(stepTimeout))
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	defer conn.Close()
	defer closeOnDone(ctx, conn)()
	buf := make([]byte, bulkChunk)
	before := c.srv.sinkBytes.Load()
	t0 := time.Now()
	if err := conn.SetWriteDeadline(t0.Add(c.d.Bulk)); err != nil {
		return nil, err
	}
	for {
		if _, err := conn.Write(buf); err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				break
			}
			return nil, fmt.Errorf("send: %w", ctxErr(ctx, err))
		}
	}
	got := c.srv.sinkBytes.Load() - before
	elapsed := time.Since(t0).Seconds()
	r := &BulkResult{Bytes: got, Seconds: elapsed, Gbps: float64(got) * 8 / elapsed / 1e9}
	if got == 0 {
		return nil, errors.New("no byte reached the sink")
	}
	return r, nil
}

// ctxErr prefers the run's cancellation over the error it caused.
func ctxErr(ctx context.Context, err error) error {
	if ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}
