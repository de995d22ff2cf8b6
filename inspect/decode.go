package inspect

import (
	"net/netip"
	"strconv"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/nfqguard/nfqguard/rules"
)

// Decoding, the second step: a packet that validate passed is decoded by
// gopacket's DecodingLayerParser into layers reused from packet to packet,
// and Packet is filled from them.

// TCP flag bits as they appear in byte 13 of the TCP header.
const (
	TCPFlagFIN = 0x01
	TCPFlagSYN = 0x02
	TCPFlagRST = 0x04
	TCPFlagACK = 0x10
)

// Packet is the part of a decoded packet the engine needs. It holds no
// references into the packet's bytes.
type Packet struct {
	Src, Dst netip.Addr
	// SrcPort and DstPort are the TCP/UDP ports. For ICMP echo, the
	// identifier stands on the requester's side and 0 on the responder's
	// (request: SrcPort = id; reply: DstPort = id), so that a request and its
	// reply share a flow but a request the other way does not.
	SrcPort, DstPort uint16
	Proto            uint8 // IP protocol number of the transport header
	TCPFlags         uint8
	ICMPType         uint8
	ICMPCode         uint8
	// Length is the packet's length in bytes as handed to the decoder.
	Length int
	// Seq and Ack are the TCP sequence and acknowledgement numbers.
	Seq, Ack uint32
	// PayloadOff and PayloadLen locate the TCP or UDP payload in the bytes
	// handed to Decode (offsets rather than a slice, so that a Packet never
	// keeps a packet's memory alive). PayloadLen is 0 for other protocols.
	PayloadOff, PayloadLen int
	// Inner is set for ICMP errors whose quoted packet could be read: the
	// flow the quoted packet belongs to, seen from the quoted packet's
	// sender. An ICMP error with Inner false quotes something unreadable.
	Inner    bool
	InnerSrc netip.AddrPort
	InnerDst netip.AddrPort
	InnerPro uint8
}

// Decoder decodes IP packets into Packets, in two steps.
//
// validate first checks the packet's structure by hand, every length
// field against the bytes there are, and names what is wrong with a
// malformed packet. It does not leave that to gopacket for two reasons:
// gopacket's layers take an IPv4 total length or a UDP length beyond the
// packet as a mere truncation and decode what is there, and they build an
// error (fmt.Errorf) for every packet they refuse, which a flood of
// malformed packets would turn into garbage.
//
// A packet that passes is then decoded by gopacket's DecodingLayerParser
// into layers the Decoder reuses, and Packet is filled from those layers.
// validate also checks what gopacket's layers would refuse (IPv4 and TCP
// option framing), so gopacket is never handed a packet it refuses; were it
// to refuse one anyway, Decode would still return a MalformedKind.
//
// Neither step allocates, for well-formed and malformed packets alike. A
// Decoder is not safe for concurrent use: give each worker its own.
type Decoder struct {
	// ip4P and ip6P start at the IP header and go on as far as the
	// transport header right behind it. tcpP, udpP, icmp4P and icmp6P
	// start at a transport header that ip4P or ip6P did not reach: behind
	// IPv6 extension headers, in an IPv4 first fragment, or where the IP
	// header is not gopacket's to read (see decodeLayers). Each parser
	// knows only the layers it may meet, so that none of them decodes what
	// validate did not check (IPv6 in IPv4, ICMPv6 in IPv4, a tunnelled
	// packet, …).
	ip4P, ip6P                 *gopacket.DecodingLayerParser
	tcpP, udpP, icmp4P, icmp6P *gopacket.DecodingLayerParser

	ip4     layers.IPv4
	ip6     layers.IPv6
	tcp     layers.TCP
	udp     layers.UDP
	icmp4   layers.ICMPv4
	icmp6   layers.ICMPv6
	echo6   layers.ICMPv6Echo
	decoded []gopacket.LayerType
}

// NewDecoder returns a Decoder ready for use.
func NewDecoder() *Decoder {
	d := &Decoder{decoded: make([]gopacket.LayerType, 0, 4)}
	parser := func(first gopacket.LayerType, ls ...gopacket.DecodingLayer) *gopacket.DecodingLayerParser {
		// A sparse container: a slice indexed by layer type, the fastest
		// lookup gopacket offers.
		dlc := gopacket.DecodingLayerContainer(gopacket.DecodingLayerSparse(nil))
		for _, l := range ls {
			dlc = dlc.Put(l)
		}
		p := gopacket.NewDecodingLayerParser(first)
		p.SetDecodingLayerContainer(dlc)
		// A layer type the parser does not know ends decoding quietly
		// (UnsupportedLayerType would be an error to build); decodeLayers
		// checks that the transport layer it expects was reached.
		p.IgnoreUnsupported = true
		return p
	}
	d.ip4P = parser(layers.LayerTypeIPv4, &d.ip4, &d.tcp, &d.udp, &d.icmp4)
	d.ip6P = parser(layers.LayerTypeIPv6, &d.ip6, &d.tcp, &d.udp, &d.icmp6, &d.echo6)
	d.tcpP = parser(layers.LayerTypeTCP, &d.tcp)
	d.udpP = parser(layers.LayerTypeUDP, &d.udp)
	d.icmp4P = parser(layers.LayerTypeICMPv4, &d.icmp4)
	d.icmp6P = parser(layers.LayerTypeICMPv6, &d.icmp6, &d.echo6)
	return d
}

// Decode decodes data, which starts with an IPv4 or IPv6 header, into p.
// It returns a MalformedKind when the packet cannot be judged by its
// transport header; p then holds what could be read (addresses, protocol)
// for logging. Another transport than TCP, UDP, ICMP and ICMPv6 (SCTP,
// GRE, ESP, …) decodes without ports: it is judged on addresses and
// protocol only.
func (d *Decoder) Decode(data []byte, p *Packet) error {
	*p = Packet{Length: len(data)}
	f, kind := validate(data, p)
	if kind == kindNone {
		kind, _ = d.decodeLayers(data, &f, p)
	}
	if kind != kindNone {
		return kind
	}
	return nil
}

// decodeLayers decodes data, which validate passed and found to be laid
// out as f, with gopacket and fills p from the layers. It returns kindNone
// and nil, or, if gopacket refused a layer, that layer's MalformedKind and
// gopacket's error. validate checks everything gopacket does, so the
// latter is there only to keep Decode's promise of a MalformedKind should
// a gopacket version check more (FuzzGopacketAgrees holds the two
// together).
func (d *Decoder) decodeLayers(data []byte, f *frame, p *Packet) (MalformedKind, error) {
	data = data[:f.end]
	want, l4P := d.transport(f)
	d.decoded = d.decoded[:0]
	if !f.ipByHand {
		ipP, ip, ipType := d.ip4P, gopacket.DecodingLayer(&d.ip4), layers.LayerTypeIPv4
		if f.ipv6 {
			ipP, ip, ipType = d.ip6P, &d.ip6, layers.LayerTypeIPv6
		}
		if want != gopacket.LayerTypeZero {
			if err := ipP.DecodeLayers(data, &d.decoded); err != nil {
				if !d.has(ipType) {
					return refusedKind(ipType), err
				}
				return refusedKind(want), err
			}
		} else if err := ip.DecodeFromBytes(data, gopacket.NilDecodeFeedback); err != nil {
			// Nothing behind the IP header is decoded, so its layer is
			// decoded alone: the parser would go on into a tunnelled
			// packet (protocol 4, 41 or 94), decoding its header into the
			// layer that holds the outer one's.
			return refusedKind(ipType), err
		}
		if f.ipv6 {
			p.Src = netip.AddrFrom16([16]byte(d.ip6.SrcIP))
			p.Dst = netip.AddrFrom16([16]byte(d.ip6.DstIP))
		} else {
			p.Src = netip.AddrFrom4([4]byte(d.ip4.SrcIP))
			p.Dst = netip.AddrFrom4([4]byte(d.ip4.DstIP))
		}
	}
	// The IP layer names the first extension header, if any: the
	// transport protocol is the one validate found behind them.
	p.Proto = f.proto
	if want == gopacket.LayerTypeZero {
		return kindNone, nil // judged on addresses and protocol only
	}
	if !d.has(want) {
		// gopacket's parser stops at an IPv6 extension header other than
		// hop-by-hop and at an IPv4 fragment (even a first one, which
		// carries the transport header): decode from where validate found
		// the transport header.
		if err := l4P.DecodeLayers(data[f.l4:], &d.decoded); err != nil {
			return refusedKind(want), err
		}
	}
	switch want {
	case layers.LayerTypeTCP:
		p.SrcPort, p.DstPort = uint16(d.tcp.SrcPort), uint16(d.tcp.DstPort)
		p.TCPFlags = tcpFlags(&d.tcp)
		p.Seq, p.Ack = d.tcp.Seq, d.tcp.Ack
		p.setPayload(f.l4+len(d.tcp.Contents), len(d.tcp.Payload))
	case layers.LayerTypeUDP:
		p.SrcPort, p.DstPort = uint16(d.udp.SrcPort), uint16(d.udp.DstPort)
		p.setPayload(f.l4+len(d.udp.Contents), len(d.udp.Payload))
	case layers.LayerTypeICMPv4:
		p.ICMPType, p.ICMPCode = d.icmp4.TypeCode.Type(), d.icmp4.TypeCode.Code()
		if p.IsICMPError() {
			decodeQuoted(d.icmp4.Payload, p)
		} else {
			p.SrcPort, p.DstPort = echoPorts(p.ICMPType, d.icmp4.Id)
		}
	case layers.LayerTypeICMPv6:
		p.ICMPType, p.ICMPCode = d.icmp6.TypeCode.Type(), d.icmp6.TypeCode.Code()
		switch {
		case p.IsICMPError():
			// gopacket's ICMPv6 layer ends after type, code and checksum;
			// an error's 4 bytes of message body (there: validate wants 8
			// bytes of header) come before the quote.
			decodeQuoted(d.icmp6.Payload[4:], p)
		case d.has(layers.LayerTypeICMPv6Echo):
			p.SrcPort, p.DstPort = echoPorts(p.ICMPType, d.echo6.Identifier)
		}
	}
	return kindNone, nil
}

// transport returns the layer type of f's transport header, and the
// parser that starts there, or LayerTypeZero for a transport judged on
// addresses and protocol only (including ICMPv4 in IPv6 and ICMPv6 in
// IPv4).
func (d *Decoder) transport(f *frame) (gopacket.LayerType, *gopacket.DecodingLayerParser) {
	switch {
	case f.proto == rules.ProtoTCP:
		return layers.LayerTypeTCP, d.tcpP
	case f.proto == rules.ProtoUDP:
		return layers.LayerTypeUDP, d.udpP
	case f.proto == rules.ProtoICMP && !f.ipv6:
		return layers.LayerTypeICMPv4, d.icmp4P
	case f.proto == rules.ProtoICMPv6 && f.ipv6:
		return layers.LayerTypeICMPv6, d.icmp6P
	}
	return gopacket.LayerTypeZero, nil
}

// has reports whether the last parser run decoded a layer of type t.
func (d *Decoder) has(t gopacket.LayerType) bool {
	for _, got := range d.decoded {
		if got == t {
			return true
		}
	}
	return false
}

// refusedKind is the MalformedKind of a packet validate passed but whose
// layer of type t gopacket refused: the kind whose checks are nearest to
// what gopacket checks beyond validate in that layer.
func refusedKind(t gopacket.LayerType) MalformedKind {
	switch t {
	case layers.LayerTypeIPv4:
		return MalformedBadIHL // the header as IHL frames it: its options
	case layers.LayerTypeIPv6:
		return MalformedIPv6ExtChain // its hop-by-hop header
	case layers.LayerTypeTCP:
		return MalformedBadDataOffset // the header as the data offset frames it: its options
	case layers.LayerTypeUDP:
		return MalformedBadUDPLength
	}
	return MalformedTruncatedICMP
}

// setPayload records the transport payload's place in the packet.
func (p *Packet) setPayload(off, n int) {
	if n > 0 {
		p.PayloadOff, p.PayloadLen = off, n
	}
}

// tcpFlags packs the TCP flags the engine uses as they stand in the
// header (TCPFlagFIN, …).
func tcpFlags(t *layers.TCP) uint8 {
	var f uint8
	if t.FIN {
		f |= TCPFlagFIN
	}
	if t.SYN {
		f |= TCPFlagSYN
	}
	if t.RST {
		f |= TCPFlagRST
	}
	if t.ACK {
		f |= TCPFlagACK
	}
	return f
}

// ProtoName names an IP protocol number as the rule file does ("tcp",
// "udp", "icmp", "icmpv6"), else by its number.
func ProtoName(p uint8) string {
	switch p {
	case rules.ProtoTCP:
		return "tcp"
	case rules.ProtoUDP:
		return "udp"
	case rules.ProtoICMP:
		return "icmp"
	case rules.ProtoICMPv6:
		return "icmpv6"
	}
	return strconv.Itoa(int(p))
}
