package inspect

import (
	"net"
	"net/netip"
	"testing"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
)

// pkt builds test packets with gopacket's serializer.
type pkt struct {
	src, dst     string
	sport, dport uint16
	proto        string // tcp, udp, icmp
	flags        uint8  // TCP flags
	payload      []byte
	seq, ack     uint32 // TCP sequence and acknowledgement numbers
}

func (p pkt) bytes(tb testing.TB) []byte {
	tb.Helper()
	src, dst := netip.MustParseAddr(p.src), netip.MustParseAddr(p.dst)
	var ls []gopacket.SerializableLayer
	var netLayer gopacket.NetworkLayer
	if src.Is4() {
		ip := &layers.IPv4{Version: 4, TTL: 64, SrcIP: net.IP(src.AsSlice()), DstIP: net.IP(dst.AsSlice())}
		switch p.proto {
		case "tcp":
			ip.Protocol = layers.IPProtocolTCP
		case "udp":
			ip.Protocol = layers.IPProtocolUDP
		case "icmp":
			ip.Protocol = layers.IPProtocolICMPv4
		}
		ls, netLayer = append(ls, ip), ip
	} else {
		ip := &layers.IPv6{Version: 6, HopLimit: 64, SrcIP: net.IP(src.AsSlice()), DstIP: net.IP(dst.AsSlice())}
		switch p.proto {
		case "tcp":
			ip.NextHeader = layers.IPProtocolTCP
		case "udp":
			ip.NextHeader = layers.IPProtocolUDP
		case "icmp":
			ip.NextHeader = layers.IPProtocolICMPv6
		}
		ls, netLayer = append(ls, ip), ip
	}
	switch p.proto {
	case "tcp":
		t := &layers.TCP{SrcPort: layers.TCPPort(p.sport), DstPort: layers.TCPPort(p.dport), Window: 1000, Seq: p.seq, Ack: p.ack,
			SYN: p.flags&TCPFlagSYN != 0, ACK: p.flags&TCPFlagACK != 0, FIN: p.flags&TCPFlagFIN != 0, RST: p.flags&TCPFlagRST != 0}
		if err := t.SetNetworkLayerForChecksum(netLayer); err != nil {
			tb.Fatal(err)
		}
		ls = append(ls, t)
	case "udp":
		u := &layers.UDP{SrcPort: layers.UDPPort(p.sport), DstPort: layers.UDPPort(p.dport)}
		if err := u.SetNetworkLayerForChecksum(netLayer); err != nil {
			tb.Fatal(err)
		}
		ls = append(ls, u)
	case "icmp":
		if src.Is4() {
			ls = append(ls, &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeEchoRequest, 0), Id: p.sport, Seq: 1})
		} else {
			i6 := &layers.ICMPv6{TypeCode: layers.CreateICMPv6TypeCode(layers.ICMPv6TypeEchoRequest, 0)}
			if err := i6.SetNetworkLayerForChecksum(netLayer); err != nil {
				tb.Fatal(err)
			}
			ls = append(ls, i6, &layers.ICMPv6Echo{Identifier: p.sport, SeqNumber: 1})
		}
	}
	ls = append(ls, gopacket.Payload(p.payload))
	return serialize(tb, ls...)
}

func serialize(tb testing.TB, ls ...gopacket.SerializableLayer) []byte {
	tb.Helper()
	buf := gopacket.NewSerializeBuffer()
	if err := gopacket.SerializeLayers(buf, gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}, ls...); err != nil {
		tb.Fatalf("serialize: %v", err)
	}
	return append([]byte(nil), buf.Bytes()...)
}

// reply swaps the endpoints of p.
func (p pkt) reply(flags uint8) pkt {
	p.src, p.dst, p.sport, p.dport, p.flags = p.dst, p.src, p.dport, p.sport, flags
	return p
}

// icmpError builds an ICMPv4 destination-unreachable from router to dst
// quoting the first bytes of quoted.
func icmpError(tb testing.TB, router, dst string, quoted []byte) []byte {
	tb.Helper()
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolICMPv4,
		SrcIP: net.ParseIP(router).To4(), DstIP: net.ParseIP(dst).To4()}
	ic := &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(layers.ICMPv4TypeDestinationUnreachable, layers.ICMPv4CodePort)}
	return serialize(tb, ip, ic, gopacket.Payload(quoted[:min(len(quoted), 28)]))
}

func mustAddr(s string) netip.Addr { return netip.MustParseAddr(s) }

// icmpEcho builds an ICMPv4 echo message of the given type (8 request, 0 reply).
func icmpEcho(tb testing.TB, src, dst string, typ uint8, id uint16) []byte {
	tb.Helper()
	ip := &layers.IPv4{Version: 4, TTL: 64, Protocol: layers.IPProtocolICMPv4,
		SrcIP: net.ParseIP(src).To4(), DstIP: net.ParseIP(dst).To4()}
	return serialize(tb, ip, &layers.ICMPv4{TypeCode: layers.CreateICMPv4TypeCode(typ, 0), Id: id, Seq: 1})
}
