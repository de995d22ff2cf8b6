package netlab_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/nfqguard/nfqguard/internal/netlab"
	"github.com/nfqguard/nfqguard/internal/netlab/netlabtest"
)

// TestFlood checks the flood generator and the UDP counter against each
// other with no engine in the way: a flood from the outside client's own and
// added addresses, through a published port (DNAT) and straight to the
// container, arrives whole, and a capped rate is kept to.
func TestFlood(t *testing.T) {
	t.Parallel()
	publish := append(netlab.DefaultPublish(), netlab.Publish{HostPort: 9999, Container: 0, ContainerPort: 9999, Proto: "udp"})
	l := netlabtest.New(t, netlab.Options{Publish: publish})
	c1 := l.Containers[0]
	extra, err := l.AddOutsideAddrs(3)
	must(t, err)
	if len(extra) != 3 || extra[0].String() != "203.0.113.10" || extra[2].String() != "203.0.113.12" {
		t.Fatalf("AddOutsideAddrs(3) = %v, want 203.0.113.10-12", extra)
	}
	// The added addresses are the outside client's: a TCP exchange from one
	// of them gets its reply back.
	must(t, l.ServeTCPEcho(c1.NS, ap(c1.Addr, 80)))
	must(t, l.Do(l.Out, func() error { return tcpFrom(extra[1], ap(l.HostOutside, 8080)) }))

	sink, err := l.CountUDP(c1.NS, ap(c1.Addr, 9999))
	must(t, err)
	var flows []netlab.FloodFlow
	for _, a := range append(extra, l.Outside) {
		for port := range uint16(50) {
			flows = append(flows, netlab.FloodFlow{Src: ap(a, 20000+port), Dst: ap(l.HostOutside, 9999)})
		}
	}
	// Straight to the container too: Docker's rule accepts the published
	// container port whatever address was dialled.
	flows = append(flows, netlab.FloodFlow{Src: ap(l.Outside, 30000), Dst: ap(c1.Addr, 9999)})
	const count = 20000
	link0, err := l.ContainerLinkStats(0)
	must(t, err)
	res, err := l.Flood(context.Background(), l.Out, netlab.Flood{Flows: flows, Count: count, Senders: 2})
	must(t, err)
	if res.Sent != count {
		t.Fatalf("flood sent %d datagrams, want Count = %d", res.Sent, count)
	}
	var got uint64
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if got = sink.Received(); got >= count {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if got != count {
		t.Errorf("received %d of %d datagrams sent (%.0f pps), want all", got, res.Sent, float64(res.Sent)/res.Elapsed.Seconds())
	}
	if drops, err := sink.Drops(); err != nil || drops != 0 {
		t.Errorf("sink drops = %d, %v; want 0", drops, err)
	}
	// The host forwarded every datagram to c1 through its veth.
	link, err := l.ContainerLinkStats(0)
	must(t, err)
	if sent, dropped := link.TxPackets-link0.TxPackets, link.TxDropped-link0.TxDropped; sent < count || dropped != 0 {
		t.Errorf("host's veth to c1: %d packets sent, %d dropped during the flood; want at least %d, none dropped", sent, dropped, count)
	}
	if _, err := l.ContainerLinkStats(len(l.Containers)); err == nil {
		t.Error("ContainerLinkStats of a container that does not exist: no error")
	}
	t.Logf("flood: %d datagrams in %v (%.0f pps), %d received", res.Sent, res.Elapsed, float64(res.Sent)/res.Elapsed.Seconds(), got)

	// A rate cap is kept to (a lower bound on the time only: a loaded
	// machine may be slower, never faster).
	res, err = l.Flood(context.Background(), l.Out, netlab.Flood{Flows: flows[:1], Count: 2000, Rate: 4000})
	must(t, err)
	if res.Sent != 2000 || res.Elapsed < 400*time.Millisecond {
		t.Errorf("2000 datagrams at 4000/s: sent %d in %v, want all in at least 0.4 s", res.Sent, res.Elapsed)
	}
	// A duration ends an unlimited flood.
	res, err = l.Flood(context.Background(), l.Out, netlab.Flood{Flows: flows[:1], Duration: 200 * time.Millisecond})
	must(t, err)
	if res.Sent == 0 || res.Elapsed < 200*time.Millisecond || res.Elapsed > 5*time.Second {
		t.Errorf("200 ms flood: sent %d in %v", res.Sent, res.Elapsed)
	}
	must(t, sink.Close())
}

// tcpFrom connects from local address src to dst, sends a line and expects
// it echoed; call it inside the namespace that owns src.
func tcpFrom(src netip.Addr, dst netip.AddrPort) error {
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: src.AsSlice()}, Timeout: okTimeout}
	c, err := d.Dial("tcp4", dst.String())
	if err != nil {
		return err
	}
	defer c.Close()
	if err := c.SetDeadline(time.Now().Add(okTimeout)); err != nil {
		return err
	}
	if _, err := c.Write([]byte("ping\n")); err != nil {
		return err
	}
	buf := make([]byte, 5)
	if _, err := io.ReadFull(c, buf); err != nil {
		return fmt.Errorf("echo from %s: %w", src, err)
	}
	return nil
}
