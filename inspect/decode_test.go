package inspect

import (
	"errors"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/nfqguard/nfqguard/rules"
)

func TestDecode(t *testing.T) {
	syn := pkt{src: "203.0.113.2", dst: "172.17.0.2", sport: 40000, dport: 80, proto: "tcp", flags: TCPFlagSYN}.bytes(t)
	tests := []struct {
		name string
		data []byte
		want Packet
	}{
		{"ipv4 tcp syn", syn, Packet{
			Src: netip.MustParseAddr("203.0.113.2"), Dst: netip.MustParseAddr("172.17.0.2"),
			SrcPort: 40000, DstPort: 80, Proto: rules.ProtoTCP, TCPFlags: TCPFlagSYN, Length: len(syn)}},
		{"ipv6 udp", pkt{src: "fd00::2", dst: "2001:db8::1", sport: 5353, dport: 53, proto: "udp", payload: []byte("q")}.bytes(t), Packet{
			Src: netip.MustParseAddr("fd00::2"), Dst: netip.MustParseAddr("2001:db8::1"),
			SrcPort: 5353, DstPort: 53, Proto: rules.ProtoUDP, Length: 40 + 8 + 1, PayloadOff: 48, PayloadLen: 1}},
		// Trailing bytes after the IP datagram (link-layer padding) are not payload.
		{"ipv4 tcp data, padded", append(pkt{src: "172.17.0.2", dst: "198.51.100.7", sport: 40000, dport: 443, proto: "tcp",
			flags: TCPFlagACK, seq: 7, ack: 9, payload: []byte("hello")}.bytes(t), 0, 0, 0), Packet{
			Src: netip.MustParseAddr("172.17.0.2"), Dst: netip.MustParseAddr("198.51.100.7"),
			SrcPort: 40000, DstPort: 443, Proto: rules.ProtoTCP, TCPFlags: TCPFlagACK, Length: 20 + 20 + 5 + 3,
			Seq: 7, Ack: 9, PayloadOff: 40, PayloadLen: 5}},
		{"icmp echo", pkt{src: "172.17.0.3", dst: "172.17.0.2", sport: 77, proto: "icmp"}.bytes(t), Packet{
			Src: netip.MustParseAddr("172.17.0.3"), Dst: netip.MustParseAddr("172.17.0.2"),
			SrcPort: 77, DstPort: 0, Proto: rules.ProtoICMP, ICMPType: 8, Length: 20 + 8}},
		{"icmpv6 echo", pkt{src: "fd00::3", dst: "fd00::2", sport: 78, proto: "icmp"}.bytes(t), Packet{
			Src: netip.MustParseAddr("fd00::3"), Dst: netip.MustParseAddr("fd00::2"),
			SrcPort: 78, DstPort: 0, Proto: rules.ProtoICMPv6, ICMPType: 128, Length: 40 + 8}},
		{"icmp error quoting tcp", icmpError(t, "172.17.0.2", "203.0.113.2", syn), Packet{
			Src: netip.MustParseAddr("172.17.0.2"), Dst: netip.MustParseAddr("203.0.113.2"),
			Proto: rules.ProtoICMP, ICMPType: 3, ICMPCode: 3, Length: 20 + 8 + 28,
			Inner: true, InnerSrc: netip.MustParseAddrPort("203.0.113.2:40000"), InnerDst: netip.MustParseAddrPort("172.17.0.2:80"),
			InnerPro: rules.ProtoTCP}},
		{"ipv6 destination options then tcp", ipv6WithExt(t, 60), Packet{
			Src: netip.MustParseAddr("2001:db8::9"), Dst: netip.MustParseAddr("fd00::2"),
			SrcPort: 1234, DstPort: 22, Proto: rules.ProtoTCP, TCPFlags: TCPFlagSYN, Length: 40 + 8 + 20}},
		{"ipv6 routing then tcp", ipv6WithExt(t, 43), Packet{
			Src: netip.MustParseAddr("2001:db8::9"), Dst: netip.MustParseAddr("fd00::2"),
			SrcPort: 1234, DstPort: 22, Proto: rules.ProtoTCP, TCPFlags: TCPFlagSYN, Length: 40 + 8 + 20}},
		{"ipv6 hop-by-hop then tcp", ipv6WithExt(t, 0), Packet{
			Src: netip.MustParseAddr("2001:db8::9"), Dst: netip.MustParseAddr("fd00::2"),
			SrcPort: 1234, DstPort: 22, Proto: rules.ProtoTCP, TCPFlags: TCPFlagSYN, Length: 40 + 8 + 20}},
	}
	d := NewDecoder()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got Packet
			if err := d.Decode(tt.data, &got); err != nil {
				t.Fatalf("Decode: %v", err)
			}
			if diff := cmp.Diff(tt.want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
				cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b })); diff != "" {
				t.Errorf("Decode (-want +got):\n%s", diff)
			}
		})
	}
}

// ipv6WithExt builds IPv6 → one extension header of type ext → TCP SYN
// 2001:db8::9:1234 → [fd00::2]:22 by hand (gopacket cannot serialize them).
func ipv6WithExt(tb testing.TB, ext uint8) []byte {
	tb.Helper()
	b := make([]byte, 40+8+20)
	b[0] = 0x60
	b[4], b[5] = 0, 28 // payload length
	b[6] = ext
	b[7] = 64
	src, dst := netip.MustParseAddr("2001:db8::9").As16(), netip.MustParseAddr("fd00::2").As16()
	copy(b[8:24], src[:])
	copy(b[24:40], dst[:])
	h := b[40:48]
	h[0] = 6 // next: TCP
	h[1] = 0 // length: 8 bytes
	if ext == 0 {
		h[2], h[3] = 1, 4 // PadN option filling the header
	}
	tcp := b[48:]
	tcp[0], tcp[1] = 0x04, 0xd2 // 1234
	tcp[2], tcp[3] = 0, 22
	tcp[12] = 5 << 4
	tcp[13] = TCPFlagSYN
	return b
}

func TestDecodeMalformed(t *testing.T) {
	syn := pkt{src: "203.0.113.2", dst: "172.17.0.2", sport: 40000, dport: 80, proto: "tcp", flags: TCPFlagSYN}.bytes(t)
	udp6 := pkt{src: "fd00::2", dst: "2001:db8::1", sport: 5353, dport: 53, proto: "udp"}.bytes(t)
	mut := func(b []byte, f func([]byte)) []byte { c := append([]byte(nil), b...); f(c); return c }
	tests := []struct {
		name string
		data []byte
		want error
	}{
		{"empty", nil, ErrIPVersion},
		{"version 5", mut(syn, func(b []byte) { b[0] = 0x55 }), ErrIPVersion},
		{"ipv4 header cut", syn[:12], ErrTruncated},
		{"ihl below 5", mut(syn, func(b []byte) { b[0] = 0x44 }), ErrTruncated},
		{"tcp header cut", syn[:30], ErrTruncated},
		{"tcp data offset below 5", mut(syn, func(b []byte) { b[32] = 0x20 }), ErrTruncated},
		{"ipv4 total length beyond packet", mut(syn, func(b []byte) { b[2], b[3] = 0x05, 0xdc }), ErrTruncated},
		{"ipv4 later fragment", mut(syn, func(b []byte) { b[6], b[7] = 0x00, 0x10 }), ErrFragment},
		{"ipv6 header cut", udp6[:30], ErrTruncated},
		{"ipv6 udp cut", udp6[:44], ErrTruncated},
		{"ipv6 ext chain cut", ipv6WithExt(t, 60)[:44], ErrTruncated},
	}
	d := NewDecoder()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var p Packet
			err := d.Decode(tt.data, &p)
			if !errors.Is(err, tt.want) || (tt.want == nil) != (err == nil) {
				t.Errorf("Decode = %v, want %v", err, tt.want)
			}
		})
	}
}

func TestDecodeEveryPrefix(t *testing.T) {
	// Cutting a packet anywhere must yield an error or a decode, never a panic.
	d := NewDecoder()
	for _, b := range [][]byte{
		pkt{src: "203.0.113.2", dst: "172.17.0.2", sport: 1, dport: 80, proto: "tcp", flags: TCPFlagSYN, payload: []byte("GET /")}.bytes(t),
		pkt{src: "fd00::2", dst: "2001:db8::1", sport: 1, dport: 53, proto: "udp"}.bytes(t),
		ipv6WithExt(t, 43),
		icmpError(t, "172.17.0.2", "203.0.113.2", pkt{src: "203.0.113.2", dst: "172.17.0.2", sport: 1, dport: 80, proto: "tcp"}.bytes(t)),
	} {
		for i := range b {
			var p Packet
			_ = d.Decode(b[:i], &p)
		}
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(pkt{src: "203.0.113.2", dst: "172.17.0.2", sport: 1, dport: 80, proto: "tcp", flags: TCPFlagSYN}.bytes(f))
	f.Add(pkt{src: "fd00::2", dst: "2001:db8::1", sport: 1, dport: 53, proto: "udp"}.bytes(f))
	f.Add(pkt{src: "fd00::3", dst: "fd00::2", sport: 78, proto: "icmp"}.bytes(f))
	f.Add(ipv6WithExt(f, 0))
	f.Add(ipv6WithExt(f, 44))
	f.Add(icmpError(f, "172.17.0.2", "203.0.113.2", pkt{src: "203.0.113.2", dst: "172.17.0.2", sport: 1, dport: 80, proto: "tcp"}.bytes(f)))
	d := NewDecoder()
	f.Fuzz(func(t *testing.T, b []byte) {
		var p Packet
		err := d.Decode(b, &p)
		if _, ok := err.(MalformedKind); err != nil && !ok {
			t.Errorf("Decode returned %T %v, not a MalformedKind", err, err)
		}
		if err == nil && !p.Src.IsValid() {
			t.Errorf("Decode succeeded without a source address: %+v", p)
		}
		if p.PayloadOff < 0 || p.PayloadLen < 0 || p.PayloadOff+p.PayloadLen > len(b) || (p.PayloadLen > 0 && p.PayloadOff == 0) {
			t.Errorf("payload at %d+%d of a %d-byte packet", p.PayloadOff, p.PayloadLen, len(b))
		}
	})
}
