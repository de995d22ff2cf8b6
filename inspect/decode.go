package inspect

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"strconv"

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
	// above the total length.
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
	// segment.
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

// Decoder decodes IP packets into Packets. It reads the headers itself,
// checking every length against the bytes it has, and allocates nothing,
// for well-formed and malformed packets alike. The zero value is ready
// for use; it holds no state, but give each worker its own anyway.
type Decoder struct{}

// NewDecoder returns a Decoder ready for use.
func NewDecoder() *Decoder { return &Decoder{} }

// Decode decodes data, which starts with an IPv4 or IPv6 header, into p.
// It returns a MalformedKind when the packet cannot be judged by its
// transport header; p then holds what could be read (addresses, protocol)
// for logging. Another transport than TCP, UDP, ICMP and ICMPv6 (SCTP,
// GRE, ESP, …) decodes without ports: it is judged on addresses and
// protocol only.
func (d *Decoder) Decode(data []byte, p *Packet) error {
	*p = Packet{Length: len(data)}
	if len(data) == 0 {
		return MalformedBadVersion
	}
	var (
		l4     []byte // the transport header and what follows, within the IP datagram
		l4Off  int    // l4's offset in data
		frag   bool   // data is the first fragment of a datagram
		noLen  bool   // the IP length was 0 (BIG TCP): the packet's own length stands
		isIPv6 bool
	)
	switch data[0] >> 4 {
	case 4:
		if len(data) < 20 {
			return MalformedTruncatedIPv4
		}
		ihl := int(data[0]&0x0f) * 4
		if ihl < 20 {
			return MalformedBadIHL
		}
		if len(data) < ihl {
			return MalformedTruncatedIPv4
		}
		total := int(binary.BigEndian.Uint16(data[2:4]))
		if total == 0 {
			total, noLen = len(data), true
		}
		if total < ihl {
			return MalformedBadIHL
		}
		p.Src = netip.AddrFrom4([4]byte(data[12:16]))
		p.Dst = netip.AddrFrom4([4]byte(data[16:20]))
		p.Proto = data[9]
		if total > len(data) {
			return MalformedBadIPLength
		}
		ff := binary.BigEndian.Uint16(data[6:8])
		if ff&0x1fff != 0 {
			return MalformedFragment
		}
		frag = ff&0x2000 != 0
		l4, l4Off = data[ihl:total], ihl
	case 6:
		if len(data) < 40 {
			return MalformedTruncatedIPv6
		}
		isIPv6 = true
		p.Src = netip.AddrFrom16([16]byte(data[8:24]))
		p.Dst = netip.AddrFrom16([16]byte(data[24:40]))
		p.Proto = data[6]
		plen := int(binary.BigEndian.Uint16(data[4:6]))
		if plen == 0 {
			plen, noLen = len(data)-40, true
		}
		if 40+plen > len(data) {
			return MalformedBadIPLength
		}
		next, rest, isFrag, kind := walkIPv6Ext(data[6], data[40:40+plen])
		if kind != kindNone {
			return kind
		}
		p.Proto, frag = next, isFrag
		l4, l4Off = rest, 40+plen-len(rest)
	default:
		return MalformedBadVersion
	}
	return decodeTransport(l4, l4Off, frag, noLen, isIPv6, p)
}

// kindNone is the MalformedKind of "no error" for the internal helpers
// that return a kind rather than an error.
const kindNone MalformedKind = 0xff

// decodeTransport reads the transport header at the start of l4, which
// ends where the IP datagram does and starts at off in the packet; frag
// says the datagram is a first fragment (the UDP length then covers bytes
// not here, and a cut header is a tiny fragment rather than a truncation).
func decodeTransport(l4 []byte, off int, frag, noLen, isIPv6 bool, p *Packet) error {
	cut := func(k MalformedKind) error {
		if frag {
			return MalformedFragment
		}
		return k
	}
	switch p.Proto {
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
		p.SrcPort = binary.BigEndian.Uint16(l4[0:2])
		p.DstPort = binary.BigEndian.Uint16(l4[2:4])
		p.Seq = binary.BigEndian.Uint32(l4[4:8])
		p.Ack = binary.BigEndian.Uint32(l4[8:12])
		p.TCPFlags = l4[13] & (TCPFlagFIN | TCPFlagSYN | TCPFlagRST | TCPFlagACK)
		p.setPayload(off+doff, len(l4)-doff)
	case rules.ProtoUDP:
		if len(l4) < 8 {
			return cut(MalformedTruncatedUDP)
		}
		n := int(binary.BigEndian.Uint16(l4[4:6]))
		switch {
		case n == 0 && noLen && isIPv6:
			n = len(l4) // a jumbogram's UDP length (RFC 2675)
		case n < 8:
			return MalformedBadUDPLength
		case frag:
			n = len(l4) // the rest of the datagram is in later fragments
		case n > len(l4):
			return MalformedBadUDPLength
		}
		p.SrcPort = binary.BigEndian.Uint16(l4[0:2])
		p.DstPort = binary.BigEndian.Uint16(l4[2:4])
		p.setPayload(off+8, n-8)
	case rules.ProtoICMP, rules.ProtoICMPv6:
		if len(l4) < 8 {
			return cut(MalformedTruncatedICMP)
		}
		if (p.Proto == rules.ProtoICMP) == isIPv6 {
			// ICMPv4 in IPv6 or ICMPv6 in IPv4: judged as another protocol
			// would be, on addresses and protocol number.
			return nil
		}
		p.ICMPType, p.ICMPCode = l4[0], l4[1]
		if p.IsICMPError() {
			// Both ICMP and ICMPv6 errors carry 4 bytes of message body
			// before the quote.
			decodeQuoted(l4[8:], p)
		} else {
			p.SrcPort, p.DstPort = echoPorts(p.ICMPType, binary.BigEndian.Uint16(l4[4:6]))
		}
	}
	return nil
}

// setPayload records the transport payload's place in the packet.
func (p *Packet) setPayload(off, n int) {
	if n > 0 {
		p.PayloadOff, p.PayloadLen = off, n
	}
}

// decodeQuoted reads the IP header and the first transport bytes that an
// ICMP error quotes, so the error can be matched to the flow it is about.
// The quote is cut short by design (an ICMPv4 error need quote only 8
// bytes past the IP header), so the quoted lengths are not held against
// it; but every byte read is checked to be there. A quote that cannot be
// read leaves p.Inner false.
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
