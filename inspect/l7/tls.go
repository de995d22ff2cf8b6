package l7

import "golang.org/x/crypto/cryptobyte"

// Status is the outcome of parsing a stream prefix.
type Status uint8

const (
	NeedMore  Status = iota // the prefix is valid so far but incomplete
	Done                    // the fact was found (or proven absent: see the result)
	NotMatch                // the stream is not this protocol
	Malformed               // it claims to be this protocol but a length or field is invalid
)

// String returns the name of the status.
func (s Status) String() string {
	switch s {
	case NeedMore:
		return "NeedMore"
	case Done:
		return "Done"
	case NotMatch:
		return "NotMatch"
	case Malformed:
		return "Malformed"
	}
	return "Status(?)"
}

// ClientHello is what ParseClientHello reports. Byte slices point into the
// input (or into the scratch buffer given to ParseClientHelloScratch); they
// are capped at their length, so appending to them never writes into the
// input. They are valid as long as that memory is not modified.
type ClientHello struct {
	// SNI is the host_name of the server_name extension, exactly as sent:
	// not lowercased, not stripped of a trailing dot and not checked for
	// valid hostname characters — normalising it is the caller's job.
	// It is nil if the ClientHello has no server_name extension or no
	// host_name entry in it.
	SNI []byte
	// ECH reports an encrypted_client_hello extension (0xfe0d): SNI is then
	// the outer (public) name, not the name the client really wants.
	ECH bool
	// Version is the highest version offered: from supported_versions if
	// present (GREASE ignored), else legacy_version.
	Version uint16
	// ALPN holds the application_layer_protocol_negotiation protocol names
	// (at most maxALPN of them; further names are validated but not
	// reported). It is empty if the extension is absent. ParseClientHello
	// reuses the capacity of out.ALPN, so a caller that reuses its
	// ClientHello value parses without allocating after the first call.
	ALPN [][]byte

	// The fields below record what the JA4 fingerprint (AppendJA4) is
	// computed from; they are filled in for every Done result.

	// CipherSuites is the cipher_suites vector as sent, without its length:
	// big-endian 2-byte values in wire order, GREASE and signalling values
	// (0x00ff, 0x5600) included. After Done it is never empty and has an
	// even length.
	CipherSuites []byte
	// Extensions holds the types of the first MaxExtensions extensions in
	// wire order, GREASE included; Extensions[:min(NumExtensions,
	// MaxExtensions)] is the part that is set.
	Extensions [MaxExtensions]uint16
	// NumExtensions is the number of extensions in the ClientHello, GREASE
	// included. If it is above MaxExtensions, the types that did not fit in
	// Extensions can only be read from RawExtensions.
	NumExtensions int
	// RawExtensions is the body of the extensions vector as sent, without
	// its length: every extension's type, length and data. It is nil if the
	// ClientHello has no extensions vector.
	RawExtensions []byte
	// SignatureAlgorithms is the supported_signature_algorithms list of the
	// signature_algorithms extension (0x000d), without its length:
	// big-endian 2-byte SignatureScheme values in wire order, GREASE
	// included. It is nil if the extension is absent or its data is not one
	// length-prefixed list of 2-byte values; if the extension appears more
	// than once, the first one counts.
	SignatureAlgorithms []byte
	// HasSNI reports a server_name extension, even one without a host_name
	// entry (then SNI is nil).
	HasSNI bool
	// HasALPN reports an application_layer_protocol_negotiation extension;
	// ALPN then holds at least one name.
	HasALPN bool
}

const (
	recordTypeHandshake      = 22
	handshakeTypeClientHello = 1
	recordHeaderLen          = 5
	handshakeHeaderLen       = 4

	// maxRecordLen is the largest record payload accepted: 2^14 is the
	// plaintext limit of RFC 8446 §5.1, but crypto/tls servers accept
	// records up to 2^14+2048 before the version is known, so we parse
	// those too rather than reporting something a server would accept as
	// Malformed.
	maxRecordLen = 1<<14 + 2048
	// maxClientHelloLen is the largest ClientHello body accepted (the
	// crypto/tls maxHandshake; the protocol allows 2^24-1).
	maxClientHelloLen = 1 << 16
	// maxALPN is the number of ALPN protocol names reported.
	maxALPN = 16

	extServerName          = 0x0000
	extSignatureAlgorithms = 0x000d
	extALPN                = 0x0010
	extSupportedVersions   = 0x002b
	extEncryptedClientHelo = 0xfe0d
	sniHostName            = 0
)

// MaxExtensions is the number of extension types a ClientHello records in
// its Extensions array. Real clients send about 20.
const MaxExtensions = 64

// isGREASE reports whether v is a GREASE value (RFC 8701): 0x?a?a with both
// bytes equal.
func isGREASE(v uint16) bool {
	return v&0x0f0f == 0x0a0a && v>>8 == v&0xff
}

// ParseClientHello parses a TLS record stream prefix holding a ClientHello,
// possibly spread over several TLS records (handshake fragmentation) and
// incomplete. b is the client's byte stream from its first byte, in order.
//
// Decisions:
//   - A first byte other than 0x16 (handshake record) is NotMatch at once;
//     this covers plain HTTP, SSH and SSLv2-compatible hellos (0x80..).
//   - Every record version 0x03xx is accepted, including 0x0300: RFC 8446
//     §5.1 says the field MUST be ignored and servers (OpenSSL) check only
//     the major byte, so rejecting it would let a client dodge an SNI rule.
//     A 0x16 first byte followed by another major version is Malformed
//     (it claims to be TLS; crypto/tls servers even accept such records).
//   - Records before the end of the ClientHello must be non-empty handshake
//     records of at most 2^14+2048 bytes, and the first handshake message
//     must be a ClientHello of at most 64 KiB; otherwise Malformed.
//   - The ClientHello must end where a record ends (RFC 8446 §5.1: it
//     precedes a key change); Done is returned as soon as the whole message
//     is present and later bytes (records) are ignored. NotMatch and Malformed are final: a longer
//     prefix of the same stream gives the same answer.
//   - A duplicate server_name, supported_versions, ALPN or ECH extension,
//     or two host_name entries, is Malformed (as crypto/tls servers do).
//   - Other extensions, signature_algorithms included, are not validated:
//     a malformed signature_algorithms extension leaves
//     SignatureAlgorithms nil but does not make the hello Malformed, as no
//     rule is written against it.
//
// If the ClientHello is in a single record (the common case) nothing is
// copied or allocated. If it spans several records the fragments are copied
// into one newly allocated buffer, which the result points into; use
// ParseClientHelloScratch to avoid that allocation.
func ParseClientHello(b []byte, out *ClientHello) Status {
	return ParseClientHelloScratch(b, nil, out)
}

// ParseClientHelloScratch is ParseClientHello, but a ClientHello spanning
// several records is reassembled into scratch[:0] (the result then points
// into scratch). It does not allocate if cap(scratch) >= len(b); a smaller
// scratch is replaced by a new buffer when needed. scratch is only written
// when Done is possible, i.e. when the whole message is present.
func ParseClientHelloScratch(b, scratch []byte, out *ClientHello) Status {
	alpn := out.ALPN[:0]
	*out = ClientHello{ALPN: alpn}
	msg, st := clientHelloMessage(b, scratch)
	if st == Done {
		st = parseClientHelloBody(msg, out)
	}
	if st != Done {
		*out = ClientHello{ALPN: alpn}
	}
	return st
}

// ParseHandshakeClientHello parses a ClientHello carried without TLS
// records: b is a handshake stream prefix from its first byte, as QUIC's
// CRYPTO frames carry it (RFC 9001 §4), starting with the 4-byte handshake
// header. NeedMore until the whole message is present; a first message
// that is not a ClientHello, or one longer than 64 KiB, is Malformed. Bytes
// after the message are ignored. Nothing is copied: the result points
// into b.
func ParseHandshakeClientHello(b []byte, out *ClientHello) Status {
	alpn := out.ALPN[:0]
	*out = ClientHello{ALPN: alpn}
	if len(b) == 0 {
		return NeedMore
	}
	if b[0] != handshakeTypeClientHello {
		return Malformed
	}
	if len(b) < handshakeHeaderLen {
		return NeedMore
	}
	bodyLen := int(b[1])<<16 | int(b[2])<<8 | int(b[3])
	if bodyLen > maxClientHelloLen {
		return Malformed
	}
	if len(b) < handshakeHeaderLen+bodyLen {
		return NeedMore
	}
	end := handshakeHeaderLen + bodyLen
	st := parseClientHelloBody(b[handshakeHeaderLen:end:end], out)
	if st != Done {
		*out = ClientHello{ALPN: alpn}
	}
	return st
}

// clientHelloMessage walks the records of b and returns the ClientHello
// body (without its 4-byte handshake header) once all of it is present.
func clientHelloMessage(b, scratch []byte) ([]byte, Status) {
	if len(b) == 0 {
		return nil, NeedMore
	}
	if b[0] != recordTypeHandshake {
		return nil, NotMatch
	}
	var (
		hdr     [handshakeHeaderLen]byte // handshake header, maybe split across records
		nh      int                      // bytes of hdr seen
		need    = -1                     // total handshake bytes (header + body) once known
		got     int                      // handshake bytes seen
		records int
		rest    = cryptobyte.String(b)
	)
	for {
		if len(rest) == 0 {
			return nil, NeedMore
		}
		// Check the header bytes we have before waiting for the rest, so
		// that garbage is reported as early as possible.
		if rest[0] != recordTypeHandshake || len(rest) > 1 && rest[1] != 3 {
			return nil, Malformed
		}
		var typ, major, minor uint8
		var n uint16
		if !rest.ReadUint8(&typ) || !rest.ReadUint8(&major) || !rest.ReadUint8(&minor) || !rest.ReadUint16(&n) {
			return nil, NeedMore
		}
		if n == 0 || n > maxRecordLen {
			return nil, Malformed
		}
		records++
		frag := rest[:min(len(rest), int(n))]
		for i := 0; nh < handshakeHeaderLen && i < len(frag); i++ {
			hdr[nh] = frag[i]
			nh++
		}
		if nh >= 1 && hdr[0] != handshakeTypeClientHello {
			return nil, Malformed
		}
		if nh == handshakeHeaderLen && need < 0 {
			bodyLen := int(hdr[1])<<16 | int(hdr[2])<<8 | int(hdr[3])
			if bodyLen > maxClientHelloLen {
				return nil, Malformed
			}
			need = handshakeHeaderLen + bodyLen
		}
		// A ClientHello must end at a record boundary: in TLS 1.3 a key
		// change follows it (RFC 8446 §5.1), in TLS 1.2 the client sends
		// nothing more before the server's flight. A record reaching past
		// the message is Malformed, which also catches a lying length.
		if need >= 0 && got+int(n) > need {
			return nil, Malformed
		}
		got += len(frag)
		if need >= 0 && got >= need {
			break
		}
		if !rest.Skip(int(n)) {
			return nil, NeedMore
		}
	}

	if records == 1 {
		// The whole message is in the first record: need <= len(frag).
		return b[recordHeaderLen+handshakeHeaderLen : recordHeaderLen+need], Done
	}

	// Reassemble the fragments. The first pass proved that every record
	// header up to the one completing the message is present and valid.
	if cap(scratch) < need {
		scratch = make([]byte, 0, need)
	}
	buf := scratch[:0]
	rest = cryptobyte.String(b)
	for len(buf) < need {
		var n uint16
		var frag []byte
		if !rest.Skip(3) || !rest.ReadUint16(&n) {
			return nil, Malformed // unreachable
		}
		take := min(int(n), need-len(buf), len(rest))
		if !rest.ReadBytes(&frag, take) {
			return nil, Malformed // unreachable
		}
		buf = append(buf, frag...)
		if take < int(n) {
			break
		}
	}
	if len(buf) != need {
		return nil, Malformed // unreachable
	}
	return buf[handshakeHeaderLen:need:need], Done
}

// parseClientHelloBody parses a complete ClientHello body (RFC 8446 §4.1.2).
func parseClientHelloBody(body []byte, out *ClientHello) Status {
	s := cryptobyte.String(body)
	var (
		legacyVersion                  uint16
		sessionID, suites, compression cryptobyte.String
		exts                           cryptobyte.String
		seenSV, seenSigAlgs            bool
		maxVersion                     uint16
	)
	if !s.ReadUint16(&legacyVersion) || !s.Skip(32) ||
		!s.ReadUint8LengthPrefixed(&sessionID) || len(sessionID) > 32 ||
		!s.ReadUint16LengthPrefixed(&suites) || len(suites) == 0 || len(suites)%2 != 0 ||
		!s.ReadUint8LengthPrefixed(&compression) || len(compression) == 0 {
		return Malformed
	}
	out.Version = legacyVersion
	out.CipherSuites = suites[:len(suites):len(suites)]
	if s.Empty() {
		return Done // no extensions: a valid TLS 1.2 (or older) hello without SNI
	}
	if !s.ReadUint16LengthPrefixed(&exts) || !s.Empty() {
		return Malformed
	}
	out.RawExtensions = exts[:len(exts):len(exts)]
	for !exts.Empty() {
		var typ uint16
		var data cryptobyte.String
		if !exts.ReadUint16(&typ) || !exts.ReadUint16LengthPrefixed(&data) {
			return Malformed
		}
		if out.NumExtensions < MaxExtensions {
			out.Extensions[out.NumExtensions] = typ
		}
		out.NumExtensions++
		switch typ {
		case extServerName:
			if out.HasSNI || !parseServerName(data, out) {
				return Malformed
			}
			out.HasSNI = true
		case extSupportedVersions:
			var list cryptobyte.String
			if seenSV || !data.ReadUint8LengthPrefixed(&list) || !data.Empty() ||
				len(list) == 0 || len(list)%2 != 0 {
				return Malformed
			}
			seenSV = true
			for !list.Empty() {
				var v uint16
				if !list.ReadUint16(&v) {
					return Malformed
				}
				if !isGREASE(v) && v > maxVersion {
					maxVersion = v
				}
			}
		case extALPN:
			var list cryptobyte.String
			if out.HasALPN || !data.ReadUint16LengthPrefixed(&list) || !data.Empty() || list.Empty() {
				return Malformed
			}
			out.HasALPN = true
			for !list.Empty() {
				var proto cryptobyte.String
				if !list.ReadUint8LengthPrefixed(&proto) || len(proto) == 0 {
					return Malformed
				}
				if len(out.ALPN) < maxALPN {
					out.ALPN = append(out.ALPN, proto[:len(proto):len(proto)])
				}
			}
		case extSignatureAlgorithms:
			// Recorded, not validated (see ParseClientHello): a bad list is
			// left out rather than rejected.
			var list cryptobyte.String
			if !seenSigAlgs && data.ReadUint16LengthPrefixed(&list) && data.Empty() && len(list)%2 == 0 {
				out.SignatureAlgorithms = list[:len(list):len(list)]
			}
			seenSigAlgs = true
		case extEncryptedClientHelo:
			if out.ECH {
				return Malformed
			}
			out.ECH = true
		}
		// Everything else, GREASE extensions included, is skipped.
	}
	if maxVersion != 0 {
		out.Version = maxVersion
	}
	return Done
}

// parseServerName parses server_name extension data (RFC 6066 §3) and sets
// out.SNI to the host_name entry, if any.
func parseServerName(data cryptobyte.String, out *ClientHello) bool {
	var list cryptobyte.String
	if !data.ReadUint16LengthPrefixed(&list) || !data.Empty() || list.Empty() {
		return false
	}
	for !list.Empty() {
		var nameType uint8
		var name cryptobyte.String
		if !list.ReadUint8(&nameType) || !list.ReadUint16LengthPrefixed(&name) || len(name) == 0 {
			return false
		}
		if nameType != sniHostName {
			continue
		}
		if out.SNI != nil {
			return false // RFC 6066: at most one name per name_type
		}
		out.SNI = name[:len(name):len(name)]
	}
	return true
}
