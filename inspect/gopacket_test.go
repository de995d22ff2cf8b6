package inspect

import (
	"encoding/binary"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/nfqguard/nfqguard/rules"
)

// Packets that reach gopacket's layers in ways the hostile cases do not:
// the options gopacket refuses (which validate must refuse first), and
// the headers gopacket's IP layers cannot read (which must not reach
// them).

// tcpOpts returns a TCP SYN 40000 → 80 with options opts (a multiple of
// 4 bytes), the data offset set to cover them.
func tcpOpts(opts ...byte) []byte {
	seg := tcpSeg(40000, 80, TCPFlagSYN)
	b := append(append(seg[:20:20], opts...), seg[20:]...)
	b[12] = byte((20+len(opts))/4) << 4
	return b
}

// v4Opts returns an IPv4 packet with options opts (a multiple of 4
// bytes), carrying l4 as TCP.
func v4Opts(l4 []byte, opts ...byte) []byte {
	ihl := byte(5 + len(opts)/4)
	return v4(hPeer4, hWeb4, rules.ProtoTCP, append(append([]byte(nil), opts...), l4...), func(b []byte) { b[0] = 0x40 | ihl })
}

// gopacketCase is a packet, what Decode must give, and whether
// gopacket's own layer, alone, refuses the header at offset at.
type gopacketCase struct {
	name  string
	data  []byte
	kind  MalformedKind
	ok    bool
	want  Packet
	layer func() gopacket.DecodingLayer // nil: not a case about gopacket refusing
	at    int
}

func gopacketCases() []gopacketCase {
	ip4 := func() gopacket.DecodingLayer { return &layers.IPv4{} }
	tcp := func() gopacket.DecodingLayer { return &layers.TCP{} }
	bigPayload := make([]byte, 70000)
	big4 := v4(hPeer4, hWeb4, rules.ProtoTCP, tcpSeg(40000, 80, TCPFlagSYN, bigPayload...), func(b []byte) { b[2], b[3] = 0, 0 })
	bigWant := syn4(40000, 80)
	bigWant.PayloadOff, bigWant.PayloadLen = 40, len(bigPayload)
	// A hop-by-hop header of 2048 bytes, all Pad1 options: gopacket's
	// IPv6 layer would allocate for each.
	padHBH := append([]byte{rules.ProtoTCP, 255}, make([]byte, 2046)...)
	echo6 := icmpMsg(layers.ICMPv6TypeEchoRequest, 0, 0x1234_0001)
	echo4 := icmpMsg(layers.ICMPv4TypeEchoRequest, 0, 0x1234_0001)
	// 6in4 whose inner IPv6 packet has a hop-by-hop header gopacket
	// refuses (a jumbo payload option of 2 bytes).
	inner6 := v6(hPeer6, hWeb6, xHopByHop, cat(badJumboHBH, tcpSeg(1, 2, TCPFlagSYN)))
	return []gopacketCase{
		// IPv4 options.
		{name: "ipv4 router alert", data: v4Opts(tcpSeg(40000, 80, TCPFlagSYN), 148, 4, 0, 0), ok: true, want: syn4(40000, 80),
			layer: ip4},
		{name: "ipv4 nop, end of options, padding", data: v4Opts(tcpSeg(40000, 80, TCPFlagSYN), 1, 0, 7, 7), ok: true,
			want: syn4(40000, 80), layer: ip4},
		{name: "ipv4 40 bytes of nop", data: v4Opts(tcpSeg(40000, 80, TCPFlagSYN), make40(1)...), ok: true, want: syn4(40000, 80),
			layer: ip4},
		{name: "ipv4 option length 2", data: v4Opts(tcpSeg(40000, 80, TCPFlagSYN), 7, 2, 1, 1), kind: MalformedBadIHL, layer: ip4},
		{name: "ipv4 option length 0", data: v4Opts(tcpSeg(40000, 80, TCPFlagSYN), 1, 7, 0, 1), kind: MalformedBadIHL, layer: ip4},
		{name: "ipv4 option beyond header", data: v4Opts(tcpSeg(40000, 80, TCPFlagSYN), 7, 7, 4, 0), kind: MalformedBadIHL, layer: ip4},
		{name: "ipv4 option without length byte", data: v4Opts(tcpSeg(40000, 80, TCPFlagSYN), 1, 1, 1, 68), kind: MalformedBadIHL,
			layer: ip4},

		// TCP options.
		{name: "tcp mss, sack permitted, timestamps, window scale",
			data: v4(hPeer4, hWeb4, rules.ProtoTCP, tcpOpts(2, 4, 5, 0xb4, 4, 2, 8, 10, 0, 0, 0, 1, 0, 0, 0, 0, 1, 3, 3, 7)),
			ok:   true, want: syn4(40000, 80), layer: tcp, at: 20},
		{name: "tcp 40 bytes of nop (more options than gopacket preallocates)", data: v4(hPeer4, hWeb4, rules.ProtoTCP, tcpOpts(make40(1)...)),
			ok: true, want: syn4(40000, 80), layer: tcp, at: 20},
		{name: "tcp end of options, padding", data: v6(hPeer6, hWeb6, rules.ProtoTCP, tcpOpts(0, 9, 9, 9)), ok: true, want: syn6(40000, 80),
			layer: tcp, at: 40},
		{name: "tcp option length 1", data: v4(hPeer4, hWeb4, rules.ProtoTCP, tcpOpts(2, 1, 0, 0)), kind: MalformedBadDataOffset,
			layer: tcp, at: 20},
		{name: "tcp option beyond header", data: v6(hPeer6, hWeb6, rules.ProtoTCP, tcpOpts(1, 2, 4, 5)), kind: MalformedBadDataOffset,
			layer: tcp, at: 40},
		{name: "tcp option without length byte", data: v4(hPeer4, hWeb4, rules.ProtoTCP, tcpOpts(1, 1, 1, 2)), kind: MalformedBadDataOffset,
			layer: tcp, at: 20},
		{name: "tcp option bad in a first fragment", data: v4(hPeer4, hWeb4, rules.ProtoTCP, tcpOpts(2, 1, 0, 0), func(b []byte) { b[6] = 0x20 }),
			kind: MalformedBadDataOffset, layer: tcp, at: 20},
		{name: "tcp option bad behind an extension header",
			data: v6(hPeer6, hWeb6, xDestOpts, ext(xDestOpts, rules.ProtoTCP, tcpOpts(2, 1, 0, 0)...)), kind: MalformedBadDataOffset,
			layer: tcp, at: 48},

		// Headers gopacket's IP layers cannot read.
		{name: "ipv4 BIG TCP over 64 KiB (total length 0)", data: big4, ok: true, want: bigWant},
		{name: "ipv6 hop-by-hop with a jumbo option gopacket refuses", data: v6(hPeer6, hWeb6, xHopByHop, cat(badJumboHBH, tcpSeg(40000, 80, TCPFlagSYN))),
			ok: true, want: syn6(40000, 80)},
		{name: "ipv6 hop-by-hop of 2046 pad1 options", data: v6(hPeer6, hWeb6, xHopByHop, cat(padHBH, tcpSeg(40000, 80, TCPFlagSYN))),
			ok: true, want: syn6(40000, 80)},
		{name: "ipv6 jumbo udp (payload and udp length 0)", data: v6(hPeer6, hWeb6, rules.ProtoUDP, udpDgram(5000, 53, 'q', 'u', 'e', 'r', 'y'),
			func(b []byte) { b[4], b[5], b[44], b[45] = 0, 0, 0, 0 }), ok: true,
			want: Packet{Src: hPeer6, Dst: hWeb6, SrcPort: 5000, DstPort: 53, Proto: rules.ProtoUDP, PayloadOff: 48, PayloadLen: 5}},
		{name: "icmpv6 echo behind hop-by-hop", data: v6(hPeer6, hWeb6, xHopByHop, ext(xHopByHop, rules.ProtoICMPv6, echo6...)), ok: true,
			want: Packet{Src: hPeer6, Dst: hWeb6, SrcPort: 0x1234, Proto: rules.ProtoICMPv6, ICMPType: layers.ICMPv6TypeEchoRequest}},
		{name: "icmpv6 echo behind destination options", data: v6(hPeer6, hWeb6, xDestOpts, ext(xDestOpts, rules.ProtoICMPv6, echo6...)),
			ok:   true,
			want: Packet{Src: hPeer6, Dst: hWeb6, SrcPort: 0x1234, Proto: rules.ProtoICMPv6, ICMPType: layers.ICMPv6TypeEchoRequest}},
		{name: "icmpv4 echo in a first fragment", data: v4(hPeer4, hWeb4, rules.ProtoICMP, echo4, func(b []byte) { b[6] = 0x20 }), ok: true,
			want: Packet{Src: hPeer4, Dst: hWeb4, SrcPort: 0x1234, Proto: rules.ProtoICMP, ICMPType: layers.ICMPv4TypeEchoRequest}},

		// What gopacket would go on decoding, but validate judges on
		// addresses and protocol only.
		{name: "icmpv6 in ipv4", data: v4(hPeer4, hWeb4, rules.ProtoICMPv6, echo6), ok: true,
			want: Packet{Src: hPeer4, Dst: hWeb4, Proto: rules.ProtoICMPv6}},
		{name: "icmpv4 in ipv6", data: v6(hPeer6, hWeb6, rules.ProtoICMP, echo4), ok: true,
			want: Packet{Src: hPeer6, Dst: hWeb6, Proto: rules.ProtoICMP}},
		{name: "6in4 with an inner packet gopacket refuses", data: v4(hPeer4, hWeb4, 41, inner6), ok: true,
			want: Packet{Src: hPeer4, Dst: hWeb4, Proto: 41}},
		{name: "ipip: addresses are the outer header's", data: v4(hPeer4, hWeb4, 4, v4(hWeb4, hPeer4, rules.ProtoTCP, tcpSeg(1, 2, TCPFlagSYN))),
			ok: true, want: Packet{Src: hPeer4, Dst: hWeb4, Proto: 4}},
		{name: "ipip as protocol 94", data: v4(hPeer4, hWeb4, 94, v4(hWeb4, hPeer4, rules.ProtoUDP, udpDgram(1, 2))),
			ok: true, want: Packet{Src: hPeer4, Dst: hWeb4, Proto: 94}},
		{name: "6in6: addresses are the outer header's", data: v6(hPeer6, hWeb6, 41, v6(hWeb6, hPeer6, rules.ProtoTCP, tcpSeg(1, 2, TCPFlagSYN))),
			ok: true, want: Packet{Src: hPeer6, Dst: hWeb6, Proto: 41}},
		{name: "6in6 with a cut inner header", data: v6(hPeer6, hWeb6, 41, make([]byte, 20)), ok: true,
			want: Packet{Src: hPeer6, Dst: hWeb6, Proto: 41}},
		{name: "4in6 with a cut inner packet", data: v6(hPeer6, hWeb6, 4, big4[:30]), ok: true,
			want: Packet{Src: hPeer6, Dst: hWeb6, Proto: 4}},
	}
}

// badJumboHBH is a hop-by-hop header (next: TCP) whose jumbo payload
// option has 2 bytes of data instead of 4: gopacket's IPv6 layer refuses
// it; validate, which reads no hop-by-hop option, does not.
var badJumboHBH = []byte{rules.ProtoTCP, 0, 0xc2, 2, 0, 0, 1, 0}

// make40 returns 40 bytes of b.
func make40(b byte) []byte {
	out := make([]byte, 40)
	for i := range out {
		out[i] = b
	}
	return out
}

// TestDecodeGopacket decodes each case: the exact kind or fields, and for
// the option cases, that gopacket's layer alone refuses exactly the
// packets Decode calls malformed (validate refuses them first, so that
// gopacket never builds an error for them).
func TestDecodeGopacket(t *testing.T) {
	d := NewDecoder()
	for _, tc := range gopacketCases() {
		t.Run(tc.name, func(t *testing.T) {
			var p Packet
			err := d.Decode(tc.data, &p)
			if tc.ok {
				if err != nil {
					t.Fatalf("Decode = %v, want no error", err)
				}
				want := tc.want
				want.Length = len(tc.data)
				if diff := cmp.Diff(want, p, cmpAddrs); diff != "" {
					t.Errorf("Decode (-want +got):\n%s", diff)
				}
			} else if k, isKind := err.(MalformedKind); !isKind || k != tc.kind {
				t.Fatalf("Decode = %v, want %v", err, tc.kind)
			}
			if tc.layer == nil {
				return
			}
			gerr := tc.layer().DecodeFromBytes(tc.data[tc.at:], gopacket.NilDecodeFeedback)
			if (gerr == nil) != tc.ok {
				t.Errorf("gopacket's layer alone: %v; Decode: %v", gerr, err)
			}
		})
	}
}

// TestJudgeGopacketDoesNotAllocate: judging each of these packets and
// each hostile packet, well-formed or not, allocates nothing, the 2046
// options of a hop-by-hop header included. Each packet is measured on its own: AllocsPerRun
// rounds an average down, which would hide one allocating packet among
// many.
func TestJudgeGopacketDoesNotAllocate(t *testing.T) {
	e, _ := newTestEngine(t, testConfig)
	now := time.Now()
	for _, tc := range gopacketCases() {
		if n := testing.AllocsPerRun(100, func() { e.Judge(tc.data, toContainer, now) }); n != 0 {
			t.Errorf("Judge of %s: %v allocations per packet, want 0", tc.name, n)
		}
	}
	for _, tc := range hostileCases() {
		if n := testing.AllocsPerRun(100, func() { e.Judge(tc.data, toContainer, now) }); n != 0 {
			t.Errorf("Judge of hostile %s: %v allocations per packet, want 0", tc.name, n)
		}
	}
}

// TestGopacketRefusalIsAKind: should gopacket refuse a layer that
// validate passed, Decode still answers with a MalformedKind. validate
// leaves no such packet, so the frames here are made by hand, as if
// validate had not checked options.
func TestGopacketRefusalIsAKind(t *testing.T) {
	tcpBad := v4(hPeer4, hWeb4, rules.ProtoTCP, tcpOpts(2, 1, 0, 0))
	ipBad := v4Opts(tcpSeg(40000, 80, TCPFlagSYN), 7, 2, 1, 1)
	hbhBad := v6(hPeer6, hWeb6, xHopByHop, cat(badJumboHBH, tcpSeg(1, 2, TCPFlagSYN)))
	tests := []struct {
		name string
		data []byte
		f    frame
		want MalformedKind
	}{
		{"tcp options", tcpBad, frame{end: len(tcpBad), l4: 20, proto: rules.ProtoTCP}, MalformedBadDataOffset},
		{"tcp options, transport parser", tcpBad, frame{end: len(tcpBad), l4: 20, proto: rules.ProtoTCP, ipByHand: true}, MalformedBadDataOffset},
		{"ipv4 options", ipBad, frame{end: len(ipBad), l4: 24, proto: rules.ProtoTCP}, MalformedBadIHL},
		{"ipv6 hop-by-hop", hbhBad, frame{end: len(hbhBad), l4: 48, proto: rules.ProtoTCP, ipv6: true}, MalformedIPv6ExtChain},
	}
	d := NewDecoder()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var p Packet
			k, err := d.decodeLayers(tt.data, &tt.f, &p)
			if err == nil || k != tt.want {
				t.Errorf("decodeLayers = %v, %v; want %v and gopacket's error", k, err, tt.want)
			}
		})
	}
}

// FuzzGopacketAgrees: whatever validate passes, gopacket decodes without
// refusing it, and the ports it reads are the ones at the offset validate
// found for the transport header.
func FuzzGopacketAgrees(f *testing.F) {
	for _, tc := range hostileCases() {
		f.Add(tc.data)
	}
	for _, tc := range gopacketCases() {
		if len(tc.data) <= 4096 {
			f.Add(tc.data)
		}
	}
	d := NewDecoder()
	f.Fuzz(func(t *testing.T, data []byte) {
		var p Packet
		fr, kind := validate(data, &p)
		if kind != kindNone {
			return
		}
		if k, err := d.decodeLayers(data, &fr, &p); err != nil {
			t.Fatalf("gopacket refused a packet validate passed (%v): %v", k, err)
		}
		if p.Proto == rules.ProtoTCP || p.Proto == rules.ProtoUDP {
			l4 := data[fr.l4:]
			if p.SrcPort != binary.BigEndian.Uint16(l4[0:2]) || p.DstPort != binary.BigEndian.Uint16(l4[2:4]) {
				t.Fatalf("ports %d → %d, but %x at the transport offset %d", p.SrcPort, p.DstPort, l4[:4], fr.l4)
			}
		}
		if p.PayloadLen > 0 && (p.PayloadOff < fr.l4 || p.PayloadOff+p.PayloadLen > fr.end) {
			t.Fatalf("payload at %d+%d, outside the transport part %d..%d", p.PayloadOff, p.PayloadLen, fr.l4, fr.end)
		}
	})
}
