package inspect

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"strconv"

	"github.com/google/gopacket/layers"

	"github.com/nfqguard/nfqguard/rules"
)

// Validation, the first step of decoding: the hand-written checks of every
// header and length field against the bytes there are, and the
// MalformedKinds they name. Decoding proper (decode.go) only sees packets
// that pass.

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
func ipv4OptionsOK(b []byte) bool { return optionsOK(b, 3) }

// tcpOptionsOK reports whether the TCP options b are framed as gopacket's
// TCP layer (and RFC 9293 3.1) requires: after End of Option List,
// padding; No-Operation is one byte; any other option has a length byte of
// at least 2 that stays within the header.
func tcpOptionsOK(b []byte) bool { return optionsOK(b, 2) }

// optionsOK walks IPv4 or TCP options, which share their framing (kind 0
// ends the list, kind 1 is a single byte, any other kind has a length
// byte), requiring every length to be at least minLen and to stay within
// b.
func optionsOK(b []byte, minLen byte) bool {
	for len(b) > 0 {
		switch b[0] {
		case 0:
			return true
		case 1:
			b = b[1:]
		default:
			if len(b) < 2 || b[1] < minLen || int(b[1]) > len(b) {
				return false
			}
			b = b[b[1]:]
		}
	}
	return true
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
