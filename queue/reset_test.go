package queue

import (
	"net/netip"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// The forged RSTs must be packets a TCP stack accepts: right addresses,
// ports, sequence numbers, flags and checksum. The checksum is checked by
// re-serializing the decoded packet with gopacket, which computes its own.
func TestBuildRST(t *testing.T) {
	for _, tc := range []struct{ src, dst string }{
		{"172.17.0.2:40000", "203.0.113.2:443"},
		{"[fd00::2]:40000", "[2001:db8::7]:443"},
	} {
		src, dst := netip.MustParseAddrPort(tc.src), netip.MustParseAddrPort(tc.dst)
		var b [80]byte
		var n int
		first := layers.LayerTypeIPv4
		if src.Addr().Is4() {
			n = buildRST4(b[:], src, dst, 0x01020304, 0x0a0b0c0d)
		} else {
			n = buildRST6(b[:], src, dst, 0x01020304, 0x0a0b0c0d)
			first = layers.LayerTypeIPv6
		}
		pkt := gopacket.NewPacket(b[:n], first, gopacket.Default)
		tcp, ok := pkt.TransportLayer().(*layers.TCP)
		if !ok {
			t.Fatalf("%s: no TCP layer: %v", tc.src, pkt.ErrorLayer())
		}
		if !tcp.RST || !tcp.ACK || tcp.SYN || tcp.FIN || tcp.Seq != 0x01020304 || tcp.Ack != 0x0a0b0c0d ||
			uint16(tcp.SrcPort) != src.Port() || uint16(tcp.DstPort) != dst.Port() {
			t.Fatalf("%s: tcp = %+v", tc.src, tcp)
		}
		nl := pkt.NetworkLayer()
		if nl.NetworkFlow().Src().String() != src.Addr().String() || nl.NetworkFlow().Dst().String() != dst.Addr().String() {
			t.Fatalf("%s: addresses %v", tc.src, nl.NetworkFlow())
		}
		want := tcp.Checksum
		if err := tcp.SetNetworkLayerForChecksum(nl); err != nil {
			t.Fatal(err)
		}
		buf := gopacket.NewSerializeBuffer()
		if err := tcp.SerializeTo(buf, gopacket.SerializeOptions{ComputeChecksums: true}); err != nil {
			t.Fatal(err)
		}
		if tcp.Checksum != want {
			t.Fatalf("%s: checksum %#04x, want %#04x", tc.src, want, tcp.Checksum)
		}
	}
}
