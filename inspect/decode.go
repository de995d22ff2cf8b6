package inspect

import (
	"encoding/binary"
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
	// Inner is set for ICMP errors whose quoted packet could be read: the
	// flow the quoted packet belongs to, seen from the quoted packet's
	// sender. An ICMP error with Inner false quotes something unreadable.
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

// Broad classes of the errors returned by Decoder.Decode: every
// MalformedKind is ErrIPVersion, ErrTruncated or ErrFragment (errors.Is).
// An empty packet is MalformedBadVersion, so ErrEmpty, like
// ErrUnsupported, is never returned; both are kept for callers that name
// them.
var (
	ErrEmpty       = errors.New("empty packet")
	ErrIPVersion   = errors.New("not an IPv4 or IPv6 packet")
	ErrTruncated   = errors.New("truncated or malformed header")
	ErrFragment    = errors.New("IP fragment without transport header")
	ErrUnsupported = errors.New("unsupported transport protocol")
)

// MalformedKind says why a packet could not be judged by its transport
// header. It is the error Decoder.Decode returns: a plain number, so that
// returning it and counting it allocate nothing however many hostile
// packets arrive.
type MalformedKind uint8

// The kinds of malformed packets. Lengths are checked against the bytes
// handed to the decoder and never trusted: a length field that claims more
// bytes than the packet has makes the packet malformed (the kernel drops
// such IPv4 and IPv6 packets before PREROUTING, so on the queue they mean
// a bug or a truncated copy, and a verdict on half a header would be a
// guess). A length of 0 in the IPv4 total length or the IPv6 payload
// length means "the packet's own length": the kernel's encoding of GSO
// packets larger than 64 KiB (BIG TCP), which it validates itself.
const (
	// MalformedBadVersion: an empty packet, or an IP version other than 4
	// or 6.
	MalformedBadVersion MalformedKind = iota
	// MalformedTruncatedIPv4: fewer than 20 bytes, or fewer than the
	// header length (IHL) says.
	MalformedTruncatedIPv4
	// MalformedBadIHL: IPv4 header length below 5 words (20 bytes), or
	// above the total length, or options it frames that do not parse (see
	// ipv4OptionsOK).
	MalformedBadIHL
	// MalformedBadIPLength: IPv4 total length or IPv6 payload length
	// beyond the packet's bytes.
	MalformedBadIPLength
	// MalformedTruncatedIPv6: fewer than 40 bytes.
	MalformedTruncatedIPv6
	// MalformedIPv6ExtChain: an IPv6 extension header cut short, longer
	// than the packet, a hop-by-hop header other than first, or a chain of
	// more than maxIPv6Ext headers.
	MalformedIPv6ExtChain
	// MalformedFragment: an IPv4 or IPv6 fragment other than the first
	// (no transport header), or a first fragment too short to hold its
	// transport header.
	MalformedFragment
	// MalformedTruncatedTCP: fewer than 20 bytes of TCP header.
	MalformedTruncatedTCP
	// MalformedBadDataOffset: TCP data offset below 5 words, or beyond the
	// segment, or options it frames that do not parse (see tcpOptionsOK).
	MalformedBadDataOffset
	// MalformedTruncatedUDP: fewer than 8 bytes of UDP header.
	MalformedTruncatedUDP
	// MalformedBadUDPLength: UDP length below 8 or beyond the datagram.
	MalformedBadUDPLength
	// MalformedTruncatedICMP: fewer than 8 bytes of ICMP or ICMPv6 header.
	MalformedTruncatedICMP

	// MalformedKinds is the number of kinds: Stats.MalformedKinds is
	// indexed by MalformedKind.
	MalformedKinds int = iota
)

var malformedNames = [MalformedKinds]string{
	"bad_version", "truncated_ipv4", "bad_ihl", "bad_ip_length", "truncated_ipv6", "ipv6_ext_chain",
	"fragment", "truncated_tcp", "bad_data_offset", "truncated_udp", "bad_udp_length", "truncated_icmp",
}

// String names the kind as the metrics do ("truncated_tcp", …).
func (k MalformedKind) String() string {
	if int(k) < MalformedKinds {
		return malformedNames[k]
	}
	return "malformed_" + strconv.Itoa(int(k))
}

// Error implements error.
func (k MalformedKind) Error() string { return "malformed packet: " + k.String() }

// Is reports whether target is the broad class of k (ErrIPVersion,
// ErrFragment or ErrTruncated).
func (k MalformedKind) Is(target error) bool {
	switch k {
	case MalformedBadVersion:
		return target == ErrIPVersion
	case MalformedFragment:
		return target == ErrFragment
	}
	return target == ErrTruncated
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

// kindNone is the MalformedKind of "no error" for the internal helpers
// that return a kind rather than an error.
const kindNone MalformedKind = 0xff

// frame is where validate found a well-formed packet's headers.
type frame struct {
	end   int   // end of the IP datagram in data: what follows is link-layer padding
	l4    int   // offset of the transport header in data
	proto uint8 // transport protocol, behind any IPv6 extension headers
	ipv6  bool
	// ipByHand: gopacket's IP layer cannot read this header, so the
	// addresses validate read stand (see decodeLayers).
	ipByHand bool
}

// validate checks the IP header, any IPv6 extension headers and the
// transport header of data, trusting no length field, and returns where
// they are, or the MalformedKind of the first thing wrong. It fills in
// p's addresses and protocol as soon as they are read, so that a
// malformed packet can still be logged.
func validate(data []byte, p *Packet) (frame, MalformedKind) {
	if len(data) == 0 {
		return frame{}, MalformedBadVersion
	}
	var (
		f     frame
		frag  bool // data is the first fragment of a datagram
		noLen bool // the IP length was 0 (BIG TCP): the packet's own length stands
	)
	switch data[0] >> 4 {
	case 4:
		if len(data) < 20 {
			return f, MalformedTruncatedIPv4
		}
		ihl := int(data[0]&0x0f) * 4
		if ihl < 20 {
			return f, MalformedBadIHL
		}
		if len(data) < ihl {
			return f, MalformedTruncatedIPv4
		}
		total := int(binary.BigEndian.Uint16(data[2:4]))
		if total == 0 {
			total, noLen = len(data), true
		}
		if total < ihl {
			return f, MalformedBadIHL
		}
		p.Src = netip.AddrFrom4([4]byte(data[12:16]))
		p.Dst = netip.AddrFrom4([4]byte(data[16:20]))
		p.Proto = data[9]
		if total > len(data) {
			return f, MalformedBadIPLength
		}
		ff := binary.BigEndian.Uint16(data[6:8])
		if ff&0x1fff != 0 {
			return f, MalformedFragment
		}
		if !ipv4OptionsOK(data[20:ihl]) {
			return f, MalformedBadIHL
		}
		frag = ff&0x2000 != 0
		// gopacket takes a total length of 0 for the packet's length, but
		// in 16 bits: a BIG TCP packet over 64 KiB would wrap.
		f = frame{end: total, l4: ihl, proto: data[9], ipByHand: noLen && total > 0xffff}
	case 6:
		if len(data) < 40 {
			return f, MalformedTruncatedIPv6
		}
		p.Src = netip.AddrFrom16([16]byte(data[8:24]))
		p.Dst = netip.AddrFrom16([16]byte(data[24:40]))
		p.Proto = data[6]
		plen := int(binary.BigEndian.Uint16(data[4:6]))
		if plen == 0 {
			plen, noLen = len(data)-40, true
		}
		if 40+plen > len(data) {
			return f, MalformedBadIPLength
		}
		next, rest, isFrag, kind := walkIPv6Ext(data[6], data[40:40+plen])
		if kind != kindNone {
			return f, kind
		}
		p.Proto, frag = next, isFrag
		// gopacket's IPv6 layer decodes a hop-by-hop header itself,
		// allocating for each of its options, and refuses a payload length
		// of 0 unless a hop-by-hop jumbo option gives the length: the
		// kernel's BIG TCP packets have none.
		f = frame{end: 40 + plen, l4: 40 + plen - len(rest), proto: next, ipv6: true,
			ipByHand: noLen || data[6] == uint8(layers.IPProtocolIPv6HopByHop)}
	default:
		return f, MalformedBadVersion
	}
	return f, validateTransport(data[f.l4:f.end], f.proto, frag, noLen, f.ipv6)
}

// validateTransport checks the transport header at the start of l4, which
// ends where the IP datagram does; frag says the datagram is a first
// fragment (the UDP length then covers bytes not here, and a cut header is
// a tiny fragment rather than a truncation).
func validateTransport(l4 []byte, proto uint8, frag, noLen, isIPv6 bool) MalformedKind {
	cut := func(k MalformedKind) MalformedKind {
		if frag {
			return MalformedFragment
		}
		return k
	}
	switch proto {
	case rules.ProtoTCP:
		if len(l4) < 20 {
			return cut(MalformedTruncatedTCP)
		}
		doff := int(l4[12]>>4) * 4
		if doff < 20 {
			return MalformedBadDataOffset
		}
		if doff > len(l4) {
			return cut(MalformedBadDataOffset)
		}
		if !tcpOptionsOK(l4[20:doff]) {
			return MalformedBadDataOffset
		}
	case rules.ProtoUDP:
		if len(l4) < 8 {
			return cut(MalformedTruncatedUDP)
		}
		n := int(binary.BigEndian.Uint16(l4[4:6]))
		switch {
		case n == 0 && noLen && isIPv6:
			// A jumbogram's UDP length (RFC 2675): the datagram's.
		case n < 8:
			return MalformedBadUDPLength
		case frag:
			// The rest of the datagram is in later fragments.
		case n > len(l4):
			return MalformedBadUDPLength
		}
	case rules.ProtoICMP, rules.ProtoICMPv6:
		// ICMPv4 in IPv6 and ICMPv6 in IPv4 are judged as another
		// protocol would be, on addresses and protocol number, but their
		// header must be there too.
		if len(l4) < 8 {
			return cut(MalformedTruncatedICMP)
		}
	}
	return kindNone
}

// ipv4OptionsOK reports whether the IPv4 options b are framed as
// gopacket's IPv4 layer requires: after End of Options, padding; No
// Operation is one byte; any other option has a length byte of at least
// 3 (gopacket refuses 2, which the kernel would take) that stays within
// the header.
func ipv4OptionsOK(b []byte) bool {
	for len(b) > 0 {
		switch b[0] {
		case 0:
			return true
		case 1:
			b = b[1:]
		default:
			if len(b) < 2 || b[1] <= 2 || int(b[1]) > len(b) {
				return false
			}
			b = b[b[1]:]
		}
	}
	return true
}

// tcpOptionsOK reports whether the TCP options b are framed as gopacket's
// TCP layer (and RFC 9293 3.1) requires: after End of Option List,
// padding; No-Operation is one byte; any other option has a length byte of
// at least 2 that stays within the header.
func tcpOptionsOK(b []byte) bool {
	for len(b) > 0 {
		switch b[0] {
		case 0:
			return true
		case 1:
			b = b[1:]
		default:
			if len(b) < 2 || b[1] < 2 || int(b[1]) > len(b) {
				return false
			}
			b = b[b[1]:]
		}
	}
	return true
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

// decodeQuoted reads the IP header and the first transport bytes that an
// ICMP error quotes, so the error can be matched to the flow it is about.
// It stays hand-written: the quote is a packet cut short by design (an
// ICMPv4 error need quote only 8 bytes past the IP header), which
// gopacket's layers cannot decode as a packet (its TCP layer wants 20
// bytes, and refusing builds an error). The quoted lengths are therefore
// not held against it; but every byte read is checked to be there. A
// quote that cannot be read leaves p.Inner false.
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
		if ihl < 20 || len(b) < ihl {
			return
		}
		if binary.BigEndian.Uint16(b[6:8])&0x1fff != 0 {
			return // a later fragment quoted: it has no ports
		}
		src = netip.AddrFrom4([4]byte(b[12:16]))
		dst = netip.AddrFrom4([4]byte(b[16:20]))
		proto = b[9]
		l4 = b[ihl:]
	case 6:
		if len(b) < 40 {
			return
		}
		src = netip.AddrFrom16([16]byte(b[8:24]))
		dst = netip.AddrFrom16([16]byte(b[24:40]))
		next, rest, _, kind := walkIPv6Ext(b[6], b[40:])
		if kind != kindNone {
			return
		}
		proto, l4 = next, rest
	default:
		return
	}
	var sp, dp uint16
	switch proto {
	case rules.ProtoTCP, rules.ProtoUDP:
		if len(l4) < 4 {
			return
		}
		sp = binary.BigEndian.Uint16(l4[0:2])
		dp = binary.BigEndian.Uint16(l4[2:4])
	case rules.ProtoICMP, rules.ProtoICMPv6:
		if len(l4) < 6 {
			return
		}
		sp, dp = echoPorts(l4[0], binary.BigEndian.Uint16(l4[4:6]))
	default:
		return
	}
	p.Inner = true
	p.InnerSrc = netip.AddrPortFrom(src, sp)
	p.InnerDst = netip.AddrPortFrom(dst, dp)
	p.InnerPro = proto
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

// walkIPv6Ext walks the extension header chain that starts with header
// type next at b, up to the transport header. It returns the transport's
// protocol number and bytes, whether a fragment header (of a first
// fragment) was crossed, and a MalformedKind, or kindNone. Headers are
// skipped by their length fields, each checked against b.
func walkIPv6Ext(next uint8, b []byte) (proto uint8, l4 []byte, frag bool, kind MalformedKind) {
	for i := 0; isIPv6Ext(next); i++ {
		bad := MalformedIPv6ExtChain
		if frag {
			// Headers missing from a first fragment are in a later one:
			// a tiny fragment, like one whose transport header is cut.
			bad = MalformedFragment
		}
		if i == maxIPv6Ext || len(b) < 8 {
			return 0, nil, frag, bad
		}
		var n int
		switch layers.IPProtocol(next) {
		case layers.IPProtocolIPv6HopByHop:
			if i != 0 {
				return 0, nil, frag, MalformedIPv6ExtChain // RFC 8200 4.1: only right after the IPv6 header
			}
			n = (int(b[1]) + 1) * 8
		case layers.IPProtocolIPv6Fragment:
			if binary.BigEndian.Uint16(b[2:4])&^7 != 0 {
				return 0, nil, true, MalformedFragment // not the first fragment: no transport header
			}
			frag, n = true, 8
		case layers.IPProtocolAH:
			n = (int(b[1]) + 2) * 4
		default:
			n = (int(b[1]) + 1) * 8
		}
		if len(b) < n {
			return 0, nil, frag, bad
		}
		next, b = b[0], b[n:]
	}
	return next, b, frag, kindNone
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
