package e2e

// Packets without a connection: hand-built segments that conntrack calls
// INVALID (TCP SYN+FIN, a segment far outside its connection's window)
// and datagrams a raw-table rule left untracked, sent from outside to
// web's published port, and counted where they arrive, in web's own
// namespace. With [engine] invalid = "drop" none arrives and each kind is
// counted; with "docker" they get Docker's verdict and arrive, as without
// nfqguard.
//
// They are sent to web's address, not the host's: a packet without a
// connection is not DNAT'd (NAT follows the connection), so one sent to
// the host's published port ends in the host's INPUT, never in FORWARD
// (checked too: SYN+FIN to the host's port 8080 is counted in the host's
// mangle INPUT and never reaches web, whatever the setting). Docker 20.10 accepts a published container port reached by
// direct routing (its DOCKER chain matches the container's address and
// port), and the lab's outside namespace routes the container subnet via
// the host: that is the path such packets take to a container.

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"golang.org/x/sys/unix"

	"github.com/nfqguard/nfqguard/control"
	"github.com/nfqguard/nfqguard/internal/netlab"
	"github.com/nfqguard/nfqguard/internal/netlab/netlabtest"
	"github.com/nfqguard/nfqguard/internal/netns"
	"github.com/nfqguard/nfqguard/internal/traffic"
)

// Source ports of the hand-built packets, one per kind, so that a counter
// in web's namespace tells them apart.
const (
	synFinPort    = 41001 // TCP SYN+FIN
	windowPort    = 41002 // a real connection, then a segment out of its window
	untrackedPort = 41003 // UDP left untracked by a raw NOTRACK rule in the host
	hostPort      = 41004 // TCP SYN+FIN to the host's published port
	invalidSent   = 5     // packets of each kind
)

func TestPacketsWithoutConnection(t *testing.T) {
	t.Parallel()
	for _, backend := range []string{netlab.BackendNFT, netlab.BackendLegacy} {
		for _, policy := range []string{"drop", "docker"} {
			t.Run(backend+"/"+policy, func(t *testing.T) {
				t.Parallel()
				testPacketsWithoutConnection(t, backend, policy)
			})
		}
	}
}

func testPacketsWithoutConnection(t *testing.T, backend, policy string) {
	l := netlabtest.New(t, netlab.Options{Backend: backend})
	web := l.Containers[0]
	must(t, l.ServeTCPEcho(web.NS, ap(web.Addr, 80)))
	must(t, l.ServeUDPEcho(web.NS, ap(web.Addr, 53)))
	for _, key := range []string{"nf_conntrack_tcp_be_liberal", "nf_conntrack_tcp_loose"} {
		out, err := netns.Run(context.Background(), l.NSPath(l.Host), "sysctl", "-n", "net.netfilter."+key)
		must(t, err)
		t.Logf("host %s = %s (the kernel's default, which Docker leaves alone)", key, strings.TrimSpace(out))
	}

	// Ground truth: counters in web's namespace, before anything there.
	webFW := netns.IPTables{Path: l.NSPath(web.NS), Legacy: backend == netlab.BackendLegacy}
	for _, m := range [][]string{
		{"-p", "tcp", "--sport", strconv.Itoa(synFinPort)},
		{"-p", "tcp", "--sport", strconv.Itoa(windowPort), "-m", "length", "--length", "100:"},
		{"-p", "udp", "--sport", strconv.Itoa(untrackedPort)},
		{"-p", "tcp", "--sport", strconv.Itoa(hostPort)},
	} {
		_, err := webFW.Run(context.Background(), false, append([]string{"-t", "raw", "-A", "PREROUTING", "-s", l.Outside.String()}, m...)...)
		must(t, err)
	}
	arrived := func(sport int) uint64 { return rawCounter(t, webFW, sport) }

	// Untracked: the operator's NOTRACK rule in the host, for one source
	// port only (removed with the lab).
	_, err := l.IPTables(context.Background(), "-t", "raw", "-A", "PREROUTING", "-s", l.Outside.String(),
		"-p", "udp", "--sport", strconv.Itoa(untrackedPort), "-j", "NOTRACK")
	must(t, err)
	// A packet without a connection is not DNAT'd: one sent to the host's
	// published port must end in the host's INPUT, counted here.
	_, err = l.IPTables(context.Background(), "-t", "mangle", "-A", "INPUT", "-s", l.Outside.String(),
		"-d", l.HostOutside.String(), "-p", "tcp", "--sport", strconv.Itoa(hostPort), "--dport", "8080")
	must(t, err)
	original := iptablesSave(t, l, false)

	sock := testSocket(t)
	cfg := writeConfig(t, engineSection(true, false)+fmt.Sprintf("invalid = %q\n", policy)+`
[defaults]
ingress = "allow"
egress = "allow"
`)
	e := runEngine(t, l.Command(context.Background(), l.Host, binary(t),
		"run", "-c", cfg, "--blocked-log", "stdout", "--status-socket", sock))
	if policy == "drop" {
		checkDockerUserLayout(t, l, false, "invalid = drop")
	} else {
		for _, r := range ourRules(t, l, false) {
			if dropTag(r) != "" {
				t.Errorf("invalid = docker, but DOCKER-USER holds %q", r)
			}
		}
		requireOurRules(t, l, false, 1, 1)
	}

	// 1. SYN+FIN: no TCP state allows both.
	for range invalidSent {
		sendRaw(t, l, tcpSegment(t, l.Outside, web.Addr, synFinPort, 80, 1000, 0, "SF", nil))
	}

	// 1b. SYN+FIN to the host's published port: no connection, so no
	// DNAT; it is the host's own packet, never forwarded.
	for range invalidSent {
		sendRaw(t, l, tcpSegment(t, l.Outside, l.HostOutside, hostPort, 8080, 1000, 0, "SF", nil))
	}

	// 2. Out of window: a real connection through the engine, then a
	// segment of it whose sequence number is a quarter of the sequence
	// space ahead, carrying data.
	c, next := connectLearningSeq(t, l, windowPort, ap(web.Addr, 80))
	defer c.Close()
	junk := make([]byte, 100)
	for i := range invalidSent {
		sendRaw(t, l, tcpSegment(t, l.Outside, web.Addr, windowPort, 80, next.seq+1<<30+uint32(i)*100, next.ack, "PA", junk))
	}
	// The connection itself is unharmed and still judged as allowed.
	expectAllowed(t, "the connection whose window was overstepped", traffic.Echo(c, payload, time.Now().Add(allowTimeout)))

	// 3. Untracked datagrams to web's DNS port.
	for range invalidSent {
		must(t, netns.Do(l.NSPath(l.Out), func() error {
			u, err := net.DialUDP("udp4", &net.UDPAddr{Port: untrackedPort}, net.UDPAddrFromAddrPort(ap(web.Addr, 53)))
			if err != nil {
				return err
			}
			defer u.Close()
			_, err = u.Write([]byte("untracked"))
			return err
		}))
	}
	// Allowed traffic on the same ports passes either way.
	expectAllowed(t, "outside -> 8080 (published, allowed)", tcpExchange(l, l.Out, 0, ap(l.HostOutside, 8080), allowTimeout))

	time.Sleep(300 * time.Millisecond) // the last packets land
	got := map[string]uint64{"invalid": arrived(synFinPort) + arrived(windowPort), "untracked": arrived(untrackedPort)}
	t.Logf("%s, invalid = %q: reached web: SYN+FIN %d, out of window %d, untracked %d (of %d each)",
		backend, policy, arrived(synFinPort), arrived(windowPort), arrived(untrackedPort), invalidSent)
	hostFW := netns.IPTables{Path: l.NSPath(l.Host), Legacy: backend == netlab.BackendLegacy}
	if toHost, toWeb := ruleCounterOf(t, hostFW, "mangle", "INPUT", "--sport "+strconv.Itoa(hostPort)), arrived(hostPort); toHost != invalidSent || toWeb != 0 {
		t.Errorf("SYN+FIN to the host's published port: %d reached the host's INPUT, %d web; want %d and 0 (not DNAT'd)", toHost, toWeb, invalidSent)
	}

	switch policy {
	case "drop":
		for kind, n := range got {
			if n != 0 {
				t.Errorf("invalid = drop: %d %s packets reached web", n, kind)
			}
		}
		// The engine reads its rules' counters at each look (a poll at
		// the latest, 1 s): metric and status show every packet.
		want := map[string]float64{"invalid": 2 * invalidSent, "untracked": invalidSent}
		var last map[string]float64
		var st control.Status
		deadline := time.Now().Add(5 * time.Second)
		for {
			mf, err := scrapeMetrics(l)
			must(t, err)
			last = map[string]float64{}
			for kind := range want {
				last[kind] = metricValue(mf, "nfqguard_invalid_packets_dropped_total", "kind", kind)
			}
			st = statusJSON(t, sock)
			if last["invalid"] >= want["invalid"] && last["untracked"] >= want["untracked"] &&
				float64(st.Redirect.Dropped["invalid"]) >= want["invalid"] && float64(st.Redirect.Dropped["untracked"]) >= want["untracked"] {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("nfqguard_invalid_packets_dropped_total = %v, status dropped_packets = %v; want at least %v",
					last, st.Redirect.Dropped, want)
			}
			time.Sleep(100 * time.Millisecond)
		}
		t.Logf("nfqguard_invalid_packets_dropped_total %v, status dropped_packets %v", last, st.Redirect.Dropped)
	case "docker":
		// Docker's verdict: its DOCKER chain accepts the published port.
		if arrived(synFinPort) != invalidSent || arrived(windowPort) != invalidSent || arrived(untrackedPort) != invalidSent {
			t.Errorf("invalid = docker: want all %d packets of each kind to reach web (Docker's verdict), got %v", invalidSent, got)
		}
	}

	e.stopClean()
	checkSameFirewall(t, l, false, original, "after SIGTERM")
}

// rawCounter returns the packet count of the raw PREROUTING rule of fw
// matching source port sport.
func rawCounter(t testing.TB, fw netns.IPTables, sport int) uint64 {
	t.Helper()
	return ruleCounterOf(t, fw, "raw", "PREROUTING", "--sport "+strconv.Itoa(sport))
}

// tcpSegment builds an IPv4 TCP segment; flags holds S, F, A, P, R.
func tcpSegment(t testing.TB, src, dst netip.Addr, sport, dport uint16, seq, ack uint32, flags string, data []byte) []byte {
	t.Helper()
	ip := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: layers.IPProtocolTCP,
		SrcIP: src.AsSlice(), DstIP: dst.AsSlice()}
	tcp := &layers.TCP{SrcPort: layers.TCPPort(sport), DstPort: layers.TCPPort(dport), Seq: seq, Ack: ack, Window: 64240,
		SYN: strings.Contains(flags, "S"), FIN: strings.Contains(flags, "F"), ACK: strings.Contains(flags, "A"),
		PSH: strings.Contains(flags, "P"), RST: strings.Contains(flags, "R")}
	must(t, tcp.SetNetworkLayerForChecksum(ip))
	buf := gopacket.NewSerializeBuffer()
	must(t, gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true},
		ip, tcp, gopacket.Payload(data)))
	return buf.Bytes()
}

// sendRaw sends an IPv4 packet, header included, from the lab's outside
// namespace.
func sendRaw(t testing.TB, l *netlab.Lab, pkt []byte) {
	t.Helper()
	dst := [4]byte(pkt[16:20])
	must(t, netns.Do(l.NSPath(l.Out), func() error {
		fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_RAW)
		if err != nil {
			return fmt.Errorf("raw socket: %w", err)
		}
		defer unix.Close(fd)
		return unix.Sendto(fd, pkt, 0, &unix.SockaddrInet4{Addr: dst})
	}))
}

// seqs are the sequence and acknowledgement numbers the client's next
// segment of a connection carries.
type seqs struct{ seq, ack uint32 }

// connectLearningSeq connects from the outside namespace (source port
// sport) to dst, and reads the server's SYN-ACK with a raw socket to learn
// the sequence numbers of the connection.
func connectLearningSeq(t testing.TB, l *netlab.Lab, sport uint16, dst netip.AddrPort) (*net.TCPConn, seqs) {
	t.Helper()
	var fd int
	must(t, netns.Do(l.NSPath(l.Out), func() error {
		var err error
		fd, err = unix.Socket(unix.AF_INET, unix.SOCK_RAW, unix.IPPROTO_TCP)
		return err
	}))
	defer unix.Close(fd)
	must(t, unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Sec: 0, Usec: 200_000}))
	c, err := traffic.DialTCP(l.NSPath(l.Out), sport, dst, time.Now().Add(allowTimeout))
	must(t, err)
	buf := make([]byte, 1500)
	deadline := time.Now().Add(2 * time.Second)
	for time.Now().Before(deadline) {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if errors.Is(err, unix.EAGAIN) || errors.Is(err, unix.EINTR) {
			continue
		}
		must(t, err)
		p := gopacket.NewPacket(buf[:n], layers.LayerTypeIPv4, gopacket.Default)
		tcp, ok := p.Layer(layers.LayerTypeTCP).(*layers.TCP)
		if ok && tcp.SYN && tcp.ACK && uint16(tcp.DstPort) == sport && uint16(tcp.SrcPort) == dst.Port() {
			return c, seqs{seq: tcp.Ack, ack: tcp.Seq + 1}
		}
	}
	c.Close()
	t.Fatalf("no SYN-ACK from %v to port %d seen", dst, sport)
	return nil, seqs{}
}
