package inspect

import (
	"errors"
	"net/netip"
	"strconv"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"

	"github.com/nfqguard/nfqguard/rules"
)

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
	// Inner is set for ICMP errors: the flow the quoted packet belongs to,
	// seen from the quoted packet's sender.
	Inner    bool
	InnerSrc netip.AddrPort
	InnerDst netip.AddrPort
	InnerPro uint8
}

// IsICMPError reports whether p is an ICMP or ICMPv6 error message (as
// opposed to an echo or informational message).
func (p *Packet) IsICMPError() bool {
	switch p.Proto {
	case rules.ProtoICMP:
		switch p.ICMPType {
		case layers.ICMPv4TypeDestinationUnreachable, layers.ICMPv4TypeSourceQuench,
			layers.ICMPv4TypeRedirect, layers.ICMPv4TypeTimeExceeded, layers.ICMPv4TypeParameterProblem:
			return true
		}
	case rules.ProtoICMPv6:
		return p.ICMPType < 128
	}
	return false
}

// Errors returned by Decoder.Decode. They are sentinel values so that the
// malformed-packet path does not allocate either.
var (
	ErrEmpty       = errors.New("empty packet")
	ErrIPVersion   = errors.New("not an IPv4 or IPv6 packet")
	ErrTruncated   = errors.New("truncated or malformed header")
	ErrFragment    = errors.New("IP fragment without transport header")
	ErrUnsupported = errors.New("unsupported transport protocol")
)

// Decoder decodes IP packets into Packets. It reuses its layers between
// calls and is not safe for concurrent use: give each worker its own.
type Decoder struct {
	v4, v6  *gopacket.DecodingLayerParser
	ip4     layers.IPv4
	ip6     layers.IPv6
	tcp     layers.TCP
	udp     layers.UDP
	icmp4   layers.ICMPv4
	icmp6   layers.ICMPv6
	echo6   layers.ICMPv6Echo
	payload gopacket.Payload
	decoded []gopacket.LayerType
}

// NewDecoder returns a Decoder ready for use.
func NewDecoder() *Decoder {
	d := &Decoder{decoded: make([]gopacket.LayerType, 0, 8)}
	ls := []gopacket.DecodingLayer{&d.ip4, &d.ip6, &d.tcp, &d.udp, &d.icmp4, &d.icmp6, &d.echo6, &d.payload}
	d.v4 = gopacket.NewDecodingLayerParser(layers.LayerTypeIPv4, ls...)
	d.v6 = gopacket.NewDecodingLayerParser(layers.LayerTypeIPv6, ls...)
	for _, p := range []*gopacket.DecodingLayerParser{d.v4, d.v6} {
		// Unknown next headers end decoding quietly; Decode checks that a
		// transport layer was reached.
		p.IgnoreUnsupported = true
	}
	return d
}

// Decode decodes data, which starts with an IPv4 or IPv6 header, into p.
// It returns one of the package's sentinel errors when the packet cannot be
// judged by its transport header.
func (d *Decoder) Decode(data []byte, p *Packet) error {
	*p = Packet{Length: len(data)}
	if len(data) == 0 {
		return ErrEmpty
	}
	var parser *gopacket.DecodingLayerParser
	switch data[0] >> 4 {
	case 4:
		parser = d.v4
	case 6:
		parser = d.v6
	default:
		return ErrIPVersion
	}
	if err := parser.DecodeLayers(data, &d.decoded); err != nil && !d.hasTransport() {
		return ErrTruncated
	}
	ipSeen := false
	for _, t := range d.decoded {
		switch t {
		case layers.LayerTypeIPv4:
			ipSeen = true
			p.Src = addr4(d.ip4.SrcIP)
			p.Dst = addr4(d.ip4.DstIP)
			p.Proto = uint8(d.ip4.Protocol)
		case layers.LayerTypeIPv6:
			ipSeen = true
			p.Src = addr16(d.ip6.SrcIP)
			p.Dst = addr16(d.ip6.DstIP)
			p.Proto = uint8(d.ip6.NextHeader)
		case layers.LayerTypeTCP:
			p.Proto = rules.ProtoTCP
			d.setTCP(data, p)
			return nil
		case layers.LayerTypeUDP:
			p.Proto = rules.ProtoUDP
			d.setUDP(data, p)
			return nil
		case layers.LayerTypeICMPv4:
			p.Proto = rules.ProtoICMP
			p.ICMPType, p.ICMPCode = d.icmp4.TypeCode.Type(), d.icmp4.TypeCode.Code()
			if p.IsICMPError() {
				decodeQuoted(d.icmp4.Payload, p)
			} else {
				p.SrcPort, p.DstPort = echoPorts(p.ICMPType, d.icmp4.Id)
			}
			return nil
		case layers.LayerTypeICMPv6:
			p.Proto = rules.ProtoICMPv6
			p.ICMPType, p.ICMPCode = d.icmp6.TypeCode.Type(), d.icmp6.TypeCode.Code()
			if p.IsICMPError() {
				// ICMPv6 errors carry 4 bytes of message body before the quote.
				if len(d.icmp6.Payload) > 4 {
					decodeQuoted(d.icmp6.Payload[4:], p)
				}
				return nil
			}
		case layers.LayerTypeICMPv6Echo:
			p.SrcPort, p.DstPort = echoPorts(p.ICMPType, d.echo6.Identifier)
			return nil
		}
	}
	if !ipSeen {
		return ErrTruncated
	}
	if d.decoded[0] == layers.LayerTypeIPv6 && isIPv6Ext(p.Proto) {
		return d.decodeIPv6Ext(data, p)
	}
	switch {
	case p.Proto == rules.ProtoICMPv6:
		return nil // informational ICMPv6 without an identifier
	case d.isFragment():
		return ErrFragment
	case p.Proto == rules.ProtoTCP || p.Proto == rules.ProtoUDP || p.Proto == rules.ProtoICMP:
		return ErrTruncated // the IP header promised a transport header that did not decode
	}
	// Another transport (SCTP, GRE, ESP, ...): no ports, judged on addresses
	// and protocol only.
	return nil
}

func (d *Decoder) hasTransport() bool {
	for _, t := range d.decoded {
		switch t {
		case layers.LayerTypeTCP, layers.LayerTypeUDP, layers.LayerTypeICMPv4, layers.LayerTypeICMPv6:
			return true
		}
	}
	return false
}

func (d *Decoder) isFragment() bool {
	if len(d.decoded) == 0 {
		return false
	}
	switch d.decoded[0] {
	case layers.LayerTypeIPv4:
		return d.ip4.Flags&layers.IPv4MoreFragments != 0 || d.ip4.FragOffset != 0
	case layers.LayerTypeIPv6:
		return d.ip6.NextHeader == layers.IPProtocolIPv6Fragment
	}
	return false
}

// setTCP copies the decoded TCP header's fields into p; data is the
// packet the header was decoded from.
func (d *Decoder) setTCP(data []byte, p *Packet) {
	p.SrcPort, p.DstPort = uint16(d.tcp.SrcPort), uint16(d.tcp.DstPort)
	p.TCPFlags = tcpFlags(&d.tcp)
	p.Seq, p.Ack = d.tcp.Seq, d.tcp.Ack
	p.PayloadOff, p.PayloadLen = within(data, d.tcp.Payload)
}

// setUDP copies the decoded UDP header's fields into p.
func (d *Decoder) setUDP(data []byte, p *Packet) {
	p.SrcPort, p.DstPort = uint16(d.udp.SrcPort), uint16(d.udp.DstPort)
	p.PayloadOff, p.PayloadLen = within(data, d.udp.Payload)
}

// within locates sub, a subslice of data made by the layer decoders
// (which slice without limiting capacity), as an offset and length in
// data; 0, 0 if it is empty or not within data.
func within(data, sub []byte) (off, n int) {
	off = cap(data) - cap(sub)
	if len(sub) == 0 || off < 0 || off+len(sub) > len(data) {
		return 0, 0
	}
	return off, len(sub)
}

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

// decodeQuoted reads the IP header and the first transport bytes that an
// ICMP error quotes, so the error can be matched to the flow it is about.
// It checks every length itself: the quote is attacker-controlled.
func decodeQuoted(b []byte, p *Packet) {
	if len(b) < 1 {
		return
	}
	var src, dst netip.Addr
	var proto uint8
	var l4 []byte
	switch b[0] >> 4 {
	case 4:
		if len(b) < 20 {
			return
		}
		ihl := int(b[0]&0x0f) * 4
		if ihl < 20 || len(b) < ihl+4 {
			return
		}
		src = netip.AddrFrom4([4]byte(b[12:16]))
		dst = netip.AddrFrom4([4]byte(b[16:20]))
		proto = b[9]
		l4 = b[ihl:]
	case 6:
		if len(b) < 40+4 {
			return
		}
		src = netip.AddrFrom16([16]byte(b[8:24]))
		dst = netip.AddrFrom16([16]byte(b[24:40]))
		proto = b[6]
		l4 = b[40:]
	default:
		return
	}
	var sp, dp uint16
	switch proto {
	case rules.ProtoTCP, rules.ProtoUDP:
		sp = uint16(l4[0])<<8 | uint16(l4[1])
		dp = uint16(l4[2])<<8 | uint16(l4[3])
	case rules.ProtoICMP, rules.ProtoICMPv6:
		if len(l4) < 6 {
			return
		}
		sp, dp = echoPorts(l4[0], uint16(l4[4])<<8|uint16(l4[5]))
	default:
		return
	}
	p.Inner = true
	p.InnerSrc = netip.AddrPortFrom(src, sp)
	p.InnerDst = netip.AddrPortFrom(dst, dp)
	p.InnerPro = proto
}

func addr4(ip []byte) netip.Addr {
	if len(ip) != 4 {
		return netip.Addr{}
	}
	return netip.AddrFrom4([4]byte(ip))
}

func addr16(ip []byte) netip.Addr {
	if len(ip) != 16 {
		return netip.Addr{}
	}
	return netip.AddrFrom16([16]byte(ip))
}

// isIPv6Ext reports whether next is an IPv6 extension header that can stand
// between the IPv6 header and the transport header.
func isIPv6Ext(next uint8) bool {
	switch layers.IPProtocol(next) {
	case layers.IPProtocolIPv6HopByHop, layers.IPProtocolIPv6Routing, layers.IPProtocolIPv6Fragment,
		layers.IPProtocolIPv6Destination, layers.IPProtocolAH:
		return true
	}
	return false
}

// maxIPv6Ext bounds the extension header walk; real traffic has one or two.
const maxIPv6Ext = 8

// decodeIPv6Ext walks an IPv6 extension header chain that gopacket's
// parser stopped at, so that a transport header behind a routing or
// destination-options header is judged by its ports like any other.
func (d *Decoder) decodeIPv6Ext(data []byte, p *Packet) error {
	// gopacket decodes a hop-by-hop header as part of IPv6 and leaves
	// Payload after it.
	b, next := d.ip6.Payload, p.Proto
	if d.ip6.HopByHop != nil {
		next = uint8(d.ip6.HopByHop.NextHeader)
	}
	for i := 0; isIPv6Ext(next); i++ {
		if i == maxIPv6Ext || len(b) < 8 {
			return ErrTruncated
		}
		var n int
		switch layers.IPProtocol(next) {
		case layers.IPProtocolIPv6Fragment:
			if off := uint16(b[2])<<8 | uint16(b[3]); off&^7 != 0 {
				return ErrFragment // not the first fragment: no transport header
			}
			n = 8
		case layers.IPProtocolAH:
			n = (int(b[1]) + 2) * 4
		default:
			n = (int(b[1]) + 1) * 8
		}
		if len(b) < n {
			return ErrTruncated
		}
		next, b = b[0], b[n:]
	}
	p.Proto = next
	switch next {
	case rules.ProtoTCP:
		if d.tcp.DecodeFromBytes(b, gopacket.NilDecodeFeedback) != nil {
			return ErrTruncated
		}
		d.setTCP(data, p)
	case rules.ProtoUDP:
		if d.udp.DecodeFromBytes(b, gopacket.NilDecodeFeedback) != nil {
			return ErrTruncated
		}
		d.setUDP(data, p)
	case rules.ProtoICMPv6:
		if len(b) < 4 {
			return ErrTruncated
		}
		p.ICMPType, p.ICMPCode = b[0], b[1]
		if p.IsICMPError() {
			if len(b) > 8 {
				decodeQuoted(b[8:], p)
			}
		} else if len(b) >= 8 && (p.ICMPType == layers.ICMPv6TypeEchoRequest || p.ICMPType == layers.ICMPv6TypeEchoReply) {
			p.SrcPort, p.DstPort = echoPorts(p.ICMPType, uint16(b[4])<<8|uint16(b[5]))
		}
	}
	return nil
}

// echoPorts places an ICMP or ICMPv6 echo identifier on the requester's
// side (see Packet.SrcPort). Other ICMP messages have no identifier.
func echoPorts(icmpType uint8, id uint16) (src, dst uint16) {
	switch icmpType {
	case layers.ICMPv4TypeEchoRequest, layers.ICMPv6TypeEchoRequest:
		return id, 0
	case layers.ICMPv4TypeEchoReply, layers.ICMPv6TypeEchoReply:
		return 0, id
	}
	return 0, 0
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
