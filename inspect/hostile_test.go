package inspect

import (
	"encoding/binary"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/nfqguard/nfqguard/rules"
)

// Hostile packets, built byte by byte: what gopacket's serializer refuses
// to make (bad lengths, cut headers, extension chains, fragments).

// Addresses of the hostile packets: the peer talks to the container web
// of testConfig, which allows tcp 80 in and drops the rest in.
var (
	hPeer4, hWeb4 = mustAddr("203.0.113.2"), mustAddr("172.17.0.2")
	hPeer6, hWeb6 = mustAddr("2001:db8::7"), mustAddr("fd00::2")
)

// v4 returns an IPv4 header (no options) carrying l4 with protocol proto,
// total length set; edit changes the whole packet before it is returned.
func v4(src, dst netip.Addr, proto uint8, l4 []byte, edit ...func([]byte)) []byte {
	b := make([]byte, 20, 20+len(l4))
	b[0] = 0x45
	binary.BigEndian.PutUint16(b[2:4], uint16(20+len(l4)))
	b[8], b[9] = 64, proto
	s, d := src.As4(), dst.As4()
	copy(b[12:16], s[:])
	copy(b[16:20], d[:])
	b = append(b, l4...)
	for _, f := range edit {
		f(b)
	}
	return b
}

// v6 returns an IPv6 header with next header next, carrying payload,
// payload length set; edit changes the whole packet.
func v6(src, dst netip.Addr, next uint8, payload []byte, edit ...func([]byte)) []byte {
	b := make([]byte, 40, 40+len(payload))
	b[0] = 0x60
	binary.BigEndian.PutUint16(b[4:6], uint16(len(payload)))
	b[6], b[7] = next, 64
	s, d := src.As16(), dst.As16()
	copy(b[8:24], s[:])
	copy(b[24:40], d[:])
	b = append(b, payload...)
	for _, f := range edit {
		f(b)
	}
	return b
}

// tcpSeg returns a TCP header (data offset 5) and payload.
func tcpSeg(sport, dport uint16, flags uint8, payload ...byte) []byte {
	b := make([]byte, 20, 20+len(payload))
	binary.BigEndian.PutUint16(b[0:2], sport)
	binary.BigEndian.PutUint16(b[2:4], dport)
	binary.BigEndian.PutUint32(b[4:8], 1000)
	b[12], b[13] = 5<<4, flags
	binary.BigEndian.PutUint16(b[14:16], 1000)
	return append(b, payload...)
}

// udpDgram returns a UDP header, its length set, and payload.
func udpDgram(sport, dport uint16, payload ...byte) []byte {
	b := make([]byte, 8, 8+len(payload))
	binary.BigEndian.PutUint16(b[0:2], sport)
	binary.BigEndian.PutUint16(b[2:4], dport)
	binary.BigEndian.PutUint16(b[4:6], uint16(8+len(payload)))
	return append(b, payload...)
}

// icmpMsg returns an ICMP or ICMPv6 message: type, code, a zero
// checksum, the 4 bytes rest of header, and body.
func icmpMsg(typ, code uint8, rest uint32, body ...byte) []byte {
	b := make([]byte, 8, 8+len(body))
	b[0], b[1] = typ, code
	binary.BigEndian.PutUint32(b[4:8], rest)
	return append(b, body...)
}

// ext returns an IPv6 extension header of type typ (hop-by-hop,
// destination options or routing; 8 bytes) followed by rest, next header
// next. Options headers are filled with a PadN option.
func ext(typ, next uint8, rest ...byte) []byte {
	b := []byte{next, 0, 0, 0, 0, 0, 0, 0}
	switch typ {
	case 0, 60:
		b[2], b[3] = 1, 4 // PadN
	case 43:
		b[2], b[3] = 0, 0 // routing type 0, no segments left
	}
	return append(b, rest...)
}

// fragHdr returns an IPv6 fragment header for the fragment at byte offset
// off (a multiple of 8), followed by rest.
func fragHdr(next uint8, off uint16, more bool, rest ...byte) []byte {
	b := []byte{next, 0, 0, 0, 0, 0, 0x12, 0x34}
	v := off
	if more {
		v |= 1
	}
	binary.BigEndian.PutUint16(b[2:4], v)
	return append(b, rest...)
}

// Protocol numbers of IPv6 extension headers.
const (
	xHopByHop = 0
	xRouting  = 43
	xFragment = 44
	xAH       = 51
	xDestOpts = 60
)

func cat(bs ...[]byte) []byte {
	var out []byte
	for _, b := range bs {
		out = append(out, b...)
	}
	return out
}

// hostileCase is a packet and what decoding it must give.
type hostileCase struct {
	name string
	data []byte
	// kind is the MalformedKind Decode must return; ok means none.
	kind MalformedKind
	ok   bool
	// want is the decoded packet when ok (Length is filled in).
	want Packet
	// allow is the verdict the engine must give a well-formed packet
	// (malformed ones get the [engine] malformed setting).
	allow bool
}

func syn4(sport, dport uint16) Packet {
	return Packet{Src: hPeer4, Dst: hWeb4, SrcPort: sport, DstPort: dport, Proto: rules.ProtoTCP, TCPFlags: TCPFlagSYN, Seq: 1000}
}

func syn6(sport, dport uint16) Packet {
	return Packet{Src: hPeer6, Dst: hWeb6, SrcPort: sport, DstPort: dport, Proto: rules.ProtoTCP, TCPFlags: TCPFlagSYN, Seq: 1000}
}

// hostileCases lists every kind of hostile packet the issue names.
func hostileCases() []hostileCase {
	set := func(i int, v byte) func([]byte) { return func(b []byte) { b[i] = v } }
	set16 := func(i int, v uint16) func([]byte) { return func(b []byte) { binary.BigEndian.PutUint16(b[i:], v) } }
	cut := func(b []byte, n int) []byte { return b[:n] }
	tcp80 := tcpSeg(40000, 80, TCPFlagSYN)
	good4 := v4(hPeer4, hWeb4, rules.ProtoTCP, tcp80)
	good6 := v6(hPeer6, hWeb6, rules.ProtoTCP, tcp80)
	udp53 := udpDgram(5000, 53, 'q', 'u', 'e', 'r', 'y')
	// An IPv4 header with one word of options (IHL 6).
	withOpts := func(l4 []byte) []byte {
		b := v4(hPeer4, hWeb4, rules.ProtoTCP, append([]byte{1, 1, 1, 0}, l4...), set(0, 0x46))
		return b
	}
	udp4 := func(l4 []byte, edit ...func([]byte)) []byte { return v4(hPeer4, hWeb4, rules.ProtoUDP, l4, edit...) }
	udp6 := func(l4 []byte, edit ...func([]byte)) []byte { return v6(hPeer6, hWeb6, rules.ProtoUDP, l4, edit...) }
	udpWant4 := Packet{Src: hPeer4, Dst: hWeb4, SrcPort: 5000, DstPort: 53, Proto: rules.ProtoUDP, PayloadOff: 28, PayloadLen: 5}

	return []hostileCase{
		// Well-formed references: the mutations below start from these.
		{name: "ipv4 tcp syn", data: good4, ok: true, want: syn4(40000, 80), allow: true},
		{name: "ipv6 tcp syn", data: good6, ok: true, want: syn6(40000, 80), allow: true},
		{name: "ipv4 options", data: withOpts(tcp80), ok: true, want: syn4(40000, 80), allow: true},
		{name: "ipv4 udp", data: udp4(udp53), ok: true, want: udpWant4, allow: false},
		{name: "ipv4 trailing padding is not payload", data: append(udp4(udp53), 0, 0, 0), ok: true, want: udpWant4},
		{name: "ipv4 total length 0 (BIG TCP GSO) is the packet's", data: v4(hPeer4, hWeb4, rules.ProtoTCP, tcp80, set16(2, 0)),
			ok: true, want: syn4(40000, 80), allow: true},

		// Bad versions.
		{name: "empty", data: []byte{}, kind: MalformedBadVersion},
		{name: "version 0", data: v4(hPeer4, hWeb4, rules.ProtoTCP, tcp80, set(0, 0x05)), kind: MalformedBadVersion},
		{name: "version 5", data: v4(hPeer4, hWeb4, rules.ProtoTCP, tcp80, set(0, 0x55)), kind: MalformedBadVersion},
		{name: "single byte", data: []byte{0x45}, kind: MalformedTruncatedIPv4},

		// IPv4 header.
		{name: "ipv4 header cut at 19 bytes", data: cut(good4, 19), kind: MalformedTruncatedIPv4},
		{name: "ipv4 options cut", data: cut(withOpts(nil), 22), kind: MalformedTruncatedIPv4},
		{name: "ihl 4", data: v4(hPeer4, hWeb4, rules.ProtoTCP, tcp80, set(0, 0x44)), kind: MalformedBadIHL},
		{name: "ihl 0", data: v4(hPeer4, hWeb4, rules.ProtoTCP, tcp80, set(0, 0x40)), kind: MalformedBadIHL},
		{name: "ihl above total length", data: v4(hPeer4, hWeb4, rules.ProtoTCP, make([]byte, 40), set(0, 0x4f), set16(2, 40)),
			kind: MalformedBadIHL},
		{name: "total length below 20", data: v4(hPeer4, hWeb4, rules.ProtoTCP, tcp80, set16(2, 19)), kind: MalformedBadIHL},
		{name: "total length beyond packet", data: v4(hPeer4, hWeb4, rules.ProtoTCP, tcp80, set16(2, 41)), kind: MalformedBadIPLength},
		{name: "total length 65535", data: v4(hPeer4, hWeb4, rules.ProtoTCP, tcp80, set16(2, 0xffff)), kind: MalformedBadIPLength},

		// IPv6 header.
		{name: "ipv6 header cut at 39 bytes", data: cut(good6, 39), kind: MalformedTruncatedIPv6},
		{name: "ipv6 payload length beyond packet", data: v6(hPeer6, hWeb6, rules.ProtoTCP, tcp80, set16(4, 21)), kind: MalformedBadIPLength},
		{name: "ipv6 payload length 0 (BIG TCP GSO) is the packet's", data: v6(hPeer6, hWeb6, rules.ProtoTCP, tcp80, set16(4, 0)),
			ok: true, want: syn6(40000, 80), allow: true},

		// TCP header.
		{name: "ipv4 tcp cut", data: v4(hPeer4, hWeb4, rules.ProtoTCP, tcp80[:19]), kind: MalformedTruncatedTCP},
		{name: "ipv6 tcp cut", data: v6(hPeer6, hWeb6, rules.ProtoTCP, tcp80[:4]), kind: MalformedTruncatedTCP},
		{name: "ipv4 no tcp at all", data: v4(hPeer4, hWeb4, rules.ProtoTCP, nil), kind: MalformedTruncatedTCP},
		{name: "tcp cut by total length", data: v4(hPeer4, hWeb4, rules.ProtoTCP, tcp80, set16(2, 30)), kind: MalformedTruncatedTCP},
		{name: "tcp data offset 4", data: v4(hPeer4, hWeb4, rules.ProtoTCP, tcp80, set(32, 4<<4)), kind: MalformedBadDataOffset},
		{name: "tcp data offset 0", data: v6(hPeer6, hWeb6, rules.ProtoTCP, tcp80, set(52, 0)), kind: MalformedBadDataOffset},
		{name: "tcp data offset beyond segment", data: v4(hPeer4, hWeb4, rules.ProtoTCP, tcp80, set(32, 6<<4)), kind: MalformedBadDataOffset},
		{name: "tcp data offset 15", data: v4(hPeer4, hWeb4, rules.ProtoTCP, tcpSeg(1, 80, TCPFlagSYN, make([]byte, 39)...), set(32, 15<<4)),
			kind: MalformedBadDataOffset},

		// UDP header.
		{name: "ipv4 udp cut", data: udp4(udp53[:7]), kind: MalformedTruncatedUDP},
		{name: "ipv6 udp cut", data: udp6(udp53[:2]), kind: MalformedTruncatedUDP},
		{name: "udp length beyond datagram", data: udp4(udp53, set16(24, 14)), kind: MalformedBadUDPLength},
		{name: "ipv6 udp length beyond datagram", data: udp6(udp53, set16(44, 200)), kind: MalformedBadUDPLength},
		{name: "udp length 7", data: udp4(udp53, set16(24, 7)), kind: MalformedBadUDPLength},
		{name: "udp length 0", data: udp4(udp53, set16(24, 0)), kind: MalformedBadUDPLength},
		{name: "udp length below datagram: the rest is not payload", data: udp4(udp53, set16(24, 10)), ok: true,
			want: Packet{Src: hPeer4, Dst: hWeb4, SrcPort: 5000, DstPort: 53, Proto: rules.ProtoUDP, PayloadOff: 28, PayloadLen: 2}},

		// ICMP headers.
		{name: "icmp cut", data: v4(hPeer4, hWeb4, rules.ProtoICMP, []byte{8, 0, 0, 0, 0, 1}), kind: MalformedTruncatedICMP},
		{name: "icmpv6 cut", data: v6(hPeer6, hWeb6, rules.ProtoICMPv6, []byte{128, 0, 0, 0}), kind: MalformedTruncatedICMP},
		{name: "icmpv6 error cut", data: v6(hPeer6, hWeb6, rules.ProtoICMPv6, []byte{1, 4, 0, 0, 0, 0}), kind: MalformedTruncatedICMP},

		// IPv6 extension header chains.
		{name: "hop-by-hop then tcp", data: v6(hPeer6, hWeb6, xHopByHop, ext(xHopByHop, rules.ProtoTCP, tcp80...)), ok: true,
			want: syn6(40000, 80), allow: true},
		{name: "routing then udp", data: v6(hPeer6, hWeb6, xRouting, ext(xRouting, rules.ProtoUDP, udp53...)), ok: true,
			want: Packet{Src: hPeer6, Dst: hWeb6, SrcPort: 5000, DstPort: 53, Proto: rules.ProtoUDP, PayloadOff: 56, PayloadLen: 5}},
		{name: "destination options then tcp", data: v6(hPeer6, hWeb6, xDestOpts, ext(xDestOpts, rules.ProtoTCP, tcp80...)), ok: true,
			want: syn6(40000, 80), allow: true},
		{name: "hop-by-hop, destination options, routing, destination options then tcp",
			data: v6(hPeer6, hWeb6, xHopByHop, cat(ext(xHopByHop, xDestOpts), ext(xDestOpts, xRouting), ext(xRouting, xDestOpts),
				ext(xDestOpts, rules.ProtoTCP), tcpSeg(40000, 22, TCPFlagSYN))), ok: true,
			want: syn6(40000, 22), allow: false},
		{name: "authentication header then tcp", data: v6(hPeer6, hWeb6, xAH, cat([]byte{rules.ProtoTCP, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}, tcp80)),
			ok: true, want: syn6(40000, 80), allow: true},
		{name: "longer destination options then tcp",
			data: v6(hPeer6, hWeb6, xDestOpts, cat([]byte{rules.ProtoTCP, 1, 1, 12}, make([]byte, 12), tcp80)), ok: true,
			want: syn6(40000, 80), allow: true},
		{name: "chain of 8 headers then tcp", data: v6(hPeer6, hWeb6, xDestOpts, cat(
			ext(xDestOpts, xDestOpts), ext(xDestOpts, xDestOpts), ext(xDestOpts, xDestOpts), ext(xDestOpts, xDestOpts),
			ext(xDestOpts, xDestOpts), ext(xDestOpts, xDestOpts), ext(xDestOpts, xDestOpts), ext(xDestOpts, rules.ProtoTCP),
			tcp80)), ok: true, want: syn6(40000, 80), allow: true},
		{name: "chain of 9 headers", data: v6(hPeer6, hWeb6, xDestOpts, cat(
			ext(xDestOpts, xDestOpts), ext(xDestOpts, xDestOpts), ext(xDestOpts, xDestOpts), ext(xDestOpts, xDestOpts),
			ext(xDestOpts, xDestOpts), ext(xDestOpts, xDestOpts), ext(xDestOpts, xDestOpts), ext(xDestOpts, xDestOpts),
			ext(xDestOpts, rules.ProtoTCP), tcp80)), kind: MalformedIPv6ExtChain},
		{name: "ext header cut", data: v6(hPeer6, hWeb6, xDestOpts, ext(xDestOpts, rules.ProtoTCP)[:5]), kind: MalformedIPv6ExtChain},
		{name: "ext header length beyond packet", data: v6(hPeer6, hWeb6, xRouting, cat([]byte{rules.ProtoTCP, 3}, make([]byte, 6), tcp80)),
			kind: MalformedIPv6ExtChain},
		{name: "ext header cut by payload length", data: v6(hPeer6, hWeb6, xDestOpts, ext(xDestOpts, rules.ProtoTCP, tcp80...), set16(4, 6)),
			kind: MalformedIPv6ExtChain},
		{name: "hop-by-hop not first", data: v6(hPeer6, hWeb6, xDestOpts, cat(ext(xDestOpts, xHopByHop), ext(xHopByHop, rules.ProtoTCP), tcp80)),
			kind: MalformedIPv6ExtChain},
		{name: "tcp behind ext header cut", data: v6(hPeer6, hWeb6, xRouting, ext(xRouting, rules.ProtoTCP, tcp80[:12]...)),
			kind: MalformedTruncatedTCP},
		{name: "no next header after ext", data: v6(hPeer6, hWeb6, xDestOpts, ext(xDestOpts, 59)), ok: true,
			want: Packet{Src: hPeer6, Dst: hWeb6, Proto: 59}, allow: false},

		// Fragments.
		{name: "ipv4 first fragment, tcp whole", data: v4(hPeer4, hWeb4, rules.ProtoTCP, tcp80, set(6, 0x20)), ok: true,
			want: syn4(40000, 80), allow: true},
		{name: "ipv4 first fragment, udp length covers later fragments", data: udp4(udp53, set(6, 0x20), set16(24, 1400)), ok: true,
			want: udpWant4},
		{name: "ipv4 first fragment, tcp cut (tiny fragment)", data: v4(hPeer4, hWeb4, rules.ProtoTCP, tcp80[:8], set(6, 0x20)),
			kind: MalformedFragment},
		{name: "ipv4 first fragment, udp cut", data: udp4(udp53[:4], set(6, 0x20)), kind: MalformedFragment},
		{name: "ipv4 later fragment", data: udp4(udp53, set16(6, 185)), kind: MalformedFragment},
		{name: "ipv4 last fragment", data: v4(hPeer4, hWeb4, rules.ProtoTCP, tcp80, set16(6, 1)), kind: MalformedFragment},
		{name: "ipv4 later fragment at offset 8 (overlapping the tcp header)", data: v4(hPeer4, hWeb4, rules.ProtoTCP, tcp80[8:], set16(6, 0x2001)),
			kind: MalformedFragment},
		{name: "ipv6 first fragment, tcp whole", data: v6(hPeer6, hWeb6, xFragment, fragHdr(rules.ProtoTCP, 0, true, tcp80...)), ok: true,
			want: syn6(40000, 80), allow: true},
		{name: "ipv6 atomic fragment", data: v6(hPeer6, hWeb6, xFragment, fragHdr(rules.ProtoTCP, 0, false, tcp80...)), ok: true,
			want: syn6(40000, 80), allow: true},
		{name: "ipv6 hop-by-hop, fragment, destination options then tcp",
			data: v6(hPeer6, hWeb6, xHopByHop, cat(ext(xHopByHop, xFragment), fragHdr(xDestOpts, 0, true), ext(xDestOpts, rules.ProtoTCP), tcp80)),
			ok:   true, want: syn6(40000, 80), allow: true},
		{name: "ipv6 later fragment", data: v6(hPeer6, hWeb6, xFragment, fragHdr(rules.ProtoUDP, 1448, true, udp53...)), kind: MalformedFragment},
		{name: "ipv6 later fragment behind routing", data: v6(hPeer6, hWeb6, xRouting, cat(ext(xRouting, xFragment), fragHdr(rules.ProtoUDP, 8, false, 1, 2))),
			kind: MalformedFragment},
		{name: "ipv6 first fragment, tcp cut", data: v6(hPeer6, hWeb6, xFragment, fragHdr(rules.ProtoTCP, 0, true, tcp80[:10]...)), kind: MalformedFragment},
		{name: "ipv6 first fragment, chain cut", data: v6(hPeer6, hWeb6, xFragment, fragHdr(xDestOpts, 0, true, 60, 0, 1)), kind: MalformedFragment},
		{name: "ipv6 fragment header cut", data: v6(hPeer6, hWeb6, xFragment, []byte{6, 0, 0}), kind: MalformedIPv6ExtChain},
	}
}

// TestDecodeHostile decodes every hostile packet: no panic, the exact
// kind, and for the well-formed ones the exact fields.
func TestDecodeHostile(t *testing.T) {
	d := NewDecoder()
	for _, tc := range hostileCases() {
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
				return
			}
			k, isKind := err.(MalformedKind)
			if !isKind || k != tc.kind {
				t.Fatalf("Decode = %v, want %v", err, tc.kind)
			}
		})
	}
}

var cmpAddrs = cmp.Options{
	cmp.Comparer(func(a, b netip.Addr) bool { return a == b }),
	cmp.Comparer(func(a, b netip.AddrPort) bool { return a == b }),
}

// TestJudgeHostile judges every hostile packet with [engine] malformed set
// to drop and to allow: the verdict, and exactly one malformed counter of
// the right kind (the total and the legacy class counter with it).
func TestJudgeHostile(t *testing.T) {
	for _, setting := range []string{"drop", "allow"} {
		cfg := strings.Replace(testConfig, "fast_path = true", "fast_path = true\nmalformed = \""+setting+"\"", 1)
		for _, tc := range hostileCases() {
			t.Run(setting+"/"+tc.name, func(t *testing.T) {
				e, _ := newTestEngine(t, cfg)
				v := e.Judge(tc.data, toContainer, time.Now())
				c := e.Counts()
				want := Counts{Packets: 1, FlowTableSize: c.FlowTableSize}
				if tc.ok {
					if v.Allow != tc.allow || v.Hold || v.Bypass != tc.allow {
						t.Errorf("verdict %+v, want allow = %v (bypassed if allowed)", v, tc.allow)
					}
					want.Flows, want.FlowTableFlows = 1, 1
					if tc.allow {
						want.Allowed, want.FastPath = 1, 1
					} else {
						want.Dropped, want.Blocked = 1, 1
					}
				} else {
					wantAllow := setting == "allow"
					if v != (Verdict{Allow: wantAllow}) {
						t.Errorf("verdict %+v, want allow = %v and no bypass", v, wantAllow)
					}
					if wantAllow {
						want.Allowed = 1
					} else {
						want.Dropped = 1
					}
					want.Malformed = 1
					want.MalformedKinds[tc.kind] = 1
					switch tc.kind {
					case MalformedFragment:
						want.Fragments = 1
					case MalformedBadVersion:
						want.BadVersion = 1
					default:
						want.Truncated = 1
					}
				}
				if diff := cmp.Diff(want, c); diff != "" {
					t.Errorf("counts (-want +got):\n%s", diff)
				}
			})
		}
	}
}

// TestHostileDoesNotAllocate: judging malformed packets allocates nothing
// (the decoder's errors are numbers), so a flood of them costs no garbage.
func TestHostileDoesNotAllocate(t *testing.T) {
	e, _ := newTestEngine(t, testConfig)
	now := time.Now()
	var bad [][]byte
	for _, tc := range hostileCases() {
		if !tc.ok {
			bad = append(bad, tc.data)
		}
	}
	i := 0
	if n := testing.AllocsPerRun(1000, func() { e.Judge(bad[i%len(bad)], toContainer, now); i++ }); n != 0 {
		t.Errorf("Judge of a malformed packet: %v allocations, want 0", n)
	}
	if got := e.Counts().Malformed; got < 1000 {
		t.Errorf("Malformed = %d after 1000+ malformed packets", got)
	}
}

func TestMalformedKindNames(t *testing.T) {
	seen := map[string]bool{}
	for k := range MalformedKind(MalformedKinds) {
		s := k.String()
		if s == "" || strings.HasPrefix(s, "malformed_") || seen[s] {
			t.Errorf("kind %d: name %q empty, generic or repeated", k, s)
		}
		seen[s] = true
	}
	if got := MalformedKind(MalformedKinds).String(); got != "malformed_12" {
		t.Errorf("String of an unknown kind = %q", got)
	}
}
