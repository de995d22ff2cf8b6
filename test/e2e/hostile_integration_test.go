package e2e

// End-to-end test of fragmented traffic: does the engine, in DOCKER-USER,
// ever see IP fragments of forwarded traffic? It does not: conntrack's
// defragmentation (nf_defrag_ipv4, nf_defrag_ipv6), which the redirect
// rule's connmark match needs, reassembles datagrams in PREROUTING, so the
// queue gets whole datagrams and the host fragments them again on output.

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket"

	"github.com/nfqguard/nfqguard/internal/netlab"
	"github.com/nfqguard/nfqguard/internal/netlab/netlabtest"
	"github.com/nfqguard/nfqguard/internal/traffic"
)

// fragConfig lists web with one ingress rule for udp 53 (action %[1]s);
// every packet goes through the queue (no fast path), so the engine's
// packet counters count every packet the kernel queued. %[2]s is the pcap.
const fragConfig = `
[engine]
queue = 0
workers = 1
fast_path = false
malformed = "drop"

[log]
pcap = %[2]q
pcap_packets = 4

[metrics]
listen = "127.0.0.1:9477"

[defaults]
ingress = "allow"
egress = "allow"

[[container]]
name = "web"
ips = ["172.17.0.2", "fd00:17::2"]

  [[container.rule]]
  id = "web-dns"
  direction = "ingress"
  proto = "udp"
  ports = ["53"]
  action = "%[1]s"
`

// fragPayload is a datagram far above the lab's 1500-byte MTU: the
// sender's kernel cuts it into three fragments.
const fragPayload = 4000

func TestE2EFragmentsReassembledBeforeQueue(t *testing.T) {
	for _, v6 := range []bool{false, true} {
		name := "ipv4"
		if v6 {
			name = "ipv6"
		}
		t.Run(name, func(t *testing.T) {
			for _, action := range []string{"allow", "drop"} {
				t.Run(action, func(t *testing.T) { testFragments(t, v6, action) })
			}
		})
	}
}

func testFragments(t *testing.T, v6 bool, action string) {
	l := netlabtest.New(t, netlab.Options{IPv6: v6})
	web := l.Containers[0]
	webAddr, dst := web.Addr, netip.AddrPortFrom(l.HostOutside, 5353) // published 5353 -> web:53/udp
	if v6 {
		webAddr, dst = web.Addr6, netip.AddrPortFrom(l.HostOutside6, 5353)
	}
	must(t, l.ServeUDPEcho(web.NS, netip.AddrPortFrom(webAddr, 53)))
	pcapPath := filepath.Join(t.TempDir(), "blocked.pcap")
	e := startTestEngine(t, l, fmt.Sprintf(fragConfig, action, pcapPath))

	fragOKs, fragCreates := "FragOKs", "FragCreates"
	if v6 {
		fragOKs, fragCreates = "Ip6FragOKs", "Ip6FragCreates"
	}
	sentBefore := snmpCounter(t, l, l.Out, v6, fragOKs)
	resentBefore := snmpCounter(t, l, l.Host, v6, fragCreates)
	big := bytes.Repeat([]byte("fragment"), fragPayload/8)
	const exchanges = 3
	for i := range exchanges {
		err := traffic.UDPExchange(l.NSPath(l.Out), 0, dst, big, map[string]time.Duration{"allow": allowTimeout, "drop": blockTimeout}[action])
		what := fmt.Sprintf("exchange %d of a %d-byte datagram with %s", i, len(big), dst)
		if action == "allow" {
			expectAllowed(t, what, err)
		} else {
			expectBlocked(t, what, err)
		}
	}

	// The outside client's kernel sent each datagram as fragments; when
	// allowed, the host, having forwarded it whole, cut it again (three
	// fragments for the request and three for the reply).
	if got := snmpCounter(t, l, l.Out, v6, fragOKs) - sentBefore; got != exchanges {
		t.Errorf("outside fragmented %d datagrams, want %d: the test sent no fragments", got, exchanges)
	}
	wantResent := uint64(0)
	if action == "allow" {
		wantResent = 2 * exchanges * 3
	}
	if got := snmpCounter(t, l, l.Host, v6, fragCreates) - resentBefore; got != wantResent {
		t.Errorf("host created %d fragments on output, want %d", got, wantResent)
	}

	// The engine saw one packet per datagram, never a fragment.
	mf, err := scrapeMetrics(l)
	if err != nil {
		t.Fatalf("scrape metrics: %v", err)
	}
	accepted := metricValue(mf, "nfqguard_packets_total", "verdict", "accept")
	dropped := metricValue(mf, "nfqguard_packets_total", "verdict", "drop")
	wantAccepted, wantDropped := float64(2*exchanges), 0.0
	if action == "drop" {
		wantAccepted, wantDropped = 0, exchanges
	}
	if accepted != wantAccepted || dropped != wantDropped {
		t.Errorf("engine judged %v packets allowed and %v dropped, want %v and %v (one per datagram; "+
			"three fragments each would triple it)", accepted, dropped, wantAccepted, wantDropped)
	}
	if n := metricValue(mf, "nfqguard_malformed_packets_total"); n != 0 {
		t.Errorf("engine counted %v malformed packets (fragment: %v), want none",
			n, metricValue(mf, "nfqguard_malformed_packets_total", "kind", "fragment"))
	}

	if action == "drop" {
		// The capture holds what the engine was given: whole datagrams.
		ipHdr := 20
		if v6 {
			ipHdr = 40
		}
		var pkts []gopacket.Packet
		if !eventually(5*time.Second, func() bool { pkts = readPcap(t, pcapPath); return len(pkts) >= exchanges }) {
			t.Fatalf("pcap holds %d packets, want %d", len(pkts), exchanges)
		}
		for i, p := range pkts {
			if n := len(p.Data()); n != ipHdr+8+len(big) {
				t.Errorf("captured packet %d: %d bytes, want the whole datagram, %d", i, n, ipHdr+8+len(big))
			}
		}
	}
	e.stopClean()
}

// snmpCounter returns the IP counter name of namespace ns, read by a
// process there from /proc/net/snmp (the "Ip:" lines) or, for IPv6,
// /proc/net/snmp6.
func snmpCounter(t testing.TB, l *netlab.Lab, ns string, v6 bool, name string) uint64 {
	t.Helper()
	file := "/proc/net/snmp"
	if v6 {
		file = "/proc/net/snmp6"
	}
	out, err := l.Command(context.Background(), ns, "cat", file).Output()
	if err != nil {
		t.Fatalf("read %s in %s: %v", file, ns, err)
	}
	var names []string // snmp: a line of "Ip:" names, then one of values
	for _, line := range strings.Split(string(out), "\n") {
		f := strings.Fields(line)
		switch {
		case v6 && len(f) == 2 && f[0] == name:
			return parseCounter(t, file, f[1])
		case v6 || len(f) == 0 || f[0] != "Ip:":
		case names == nil:
			names = f
		default:
			for i := range min(len(names), len(f)) {
				if names[i] == name {
					return parseCounter(t, file, f[i])
				}
			}
		}
	}
	t.Fatalf("%s in %s has no %s:\n%s", file, ns, name, out)
	return 0
}

func parseCounter(t testing.TB, file, s string) uint64 {
	t.Helper()
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		t.Fatalf("%s: %v", file, err)
	}
	return n
}
