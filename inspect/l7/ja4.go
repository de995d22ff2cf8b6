package l7

import (
	"crypto/sha256"
	"encoding/binary"
	"slices"
)

// JA4 transport markers, the first character of a JA4 fingerprint.
const (
	JA4TCP  byte = 't' // TLS over TCP
	JA4QUIC byte = 'q' // QUIC (the ClientHello of its Initial packets)
)

// JA4Len is the length of a JA4 fingerprint, e.g.
// "t13d1516h2_8daaf6152771_e5627efa2ab1".
const JA4Len = 36

// AppendJA4 appends the JA4 fingerprint of the ClientHello h to dst and
// returns the extended slice, JA4Len bytes longer. It follows FoxIO's
// specification for TLS clients (github.com/FoxIO-LLC/ja4,
// technical_details/JA4.md), which makes it three parts joined by "_":
//
//   - transport, the byte given (JA4TCP or JA4QUIC); then h.Version as "13",
//     "12", "11", "10", "s3" (0x0300), "s2" (0x0002), "d1", "d2", "d3"
//     (DTLS 1.0, 1.2, 1.3) or "00" for anything else; then 'd' if there is
//     a server_name extension (HasSNI), else 'i'; then the number of cipher
//     suites and the number of extensions (server_name and ALPN included),
//     two digits each and capped at 99; then two ALPN characters: the first
//     and last byte of the first ALPN name if both are ASCII letters or
//     digits, otherwise the first and last character of the name in
//     lower-case hex ("\xba\xad" gives "bd"), and "00" without an ALPN name.
//     A 1-byte name is both first and last: "h" gives "hh".
//   - the first 12 hex digits of the SHA-256 of the cipher suites as 4-digit
//     lower-case hex, sorted and comma separated; "000000000000" if there are
//     none.
//   - the same over the sorted extension types without server_name (0x0000)
//     and ALPN (0x0010), followed by "_" and the signature algorithms in
//     wire order, the "_" left out if there are none; "000000000000" if no
//     extension type is left.
//
// GREASE values (RFC 8701) are ignored in every list and count. AppendJA4
// is a pure function of h and keeps no reference to it. It allocates
// nothing beyond growing dst unless h has more than 256 cipher suites or
// 256 extensions, or the extension and signature algorithm text exceeds
// 2 KiB (about 400 values); such hellos are fingerprinted exactly too, in
// heap buffers proportional to the hello's size. Extensions beyond
// MaxExtensions are read from RawExtensions.
func (h *ClientHello) AppendJA4(dst []byte, transport byte) []byte {
	dst = h.ja4A(dst, transport)
	var vals [ja4SortLen]uint16
	var text [ja4TextLen]byte

	dst = append(dst, '_')
	if ciphers := h.ja4Ciphers(vals[:0]); len(ciphers) == 0 {
		dst = append(dst, ja4Empty...)
	} else {
		dst = ja4AppendHash(dst, ja4AppendList(text[:0], ciphers))
	}

	dst = append(dst, '_')
	if exts := h.ja4Extensions(vals[:0]); len(exts) == 0 {
		dst = append(dst, ja4Empty...)
	} else {
		dst = ja4AppendHash(dst, h.ja4AppendSigAlgs(ja4AppendList(text[:0], exts)))
	}
	return dst
}

// AppendJA4Raw appends the raw JA4 fingerprint of h, JA4_r in FoxIO's
// specification, to dst and returns the extended slice: the same first
// part as AppendJA4, then "_" and the sorted cipher list, then "_" and the
// sorted extension list followed by "_" and the signature algorithms (if
// any), that is the strings AppendJA4 hashes; an empty list is written as
// nothing. For example
//
//	t13d1516h2_002f,0035,…,cca9_0005,000a,…,ff01_0403,0804,…,0601
//	t10i010000_002f_   (no extensions)
//
// It allocates nothing beyond growing dst unless h has more than 256
// cipher suites or 256 extensions.
func (h *ClientHello) AppendJA4Raw(dst []byte, transport byte) []byte {
	dst = h.ja4A(dst, transport)
	var vals [ja4SortLen]uint16
	dst = append(dst, '_')
	dst = ja4AppendList(dst, h.ja4Ciphers(vals[:0]))
	dst = append(dst, '_')
	dst = ja4AppendList(dst, h.ja4Extensions(vals[:0]))
	return h.ja4AppendSigAlgs(dst)
}

const (
	// ja4SortLen is the number of values sorted in a stack buffer; longer
	// lists are sorted in a heap buffer.
	ja4SortLen = 256
	// ja4TextLen is the size of the stack buffer a list is formatted in
	// before it is hashed; a longer text grows onto the heap.
	ja4TextLen = 2048
	// ja4Empty stands for the hash of an empty list.
	ja4Empty     = "000000000000"
	ja4HexDigits = "0123456789abcdef"
)

// ja4A appends the first part of the fingerprint, e.g. "t13d1516h2".
func (h *ClientHello) ja4A(dst []byte, transport byte) []byte {
	dst = append(dst, transport)
	dst = append(dst, ja4Version(h.Version)...)
	if h.HasSNI {
		dst = append(dst, 'd')
	} else {
		dst = append(dst, 'i')
	}
	nc := 0
	for i := 0; i+1 < len(h.CipherSuites); i += 2 {
		if !isGREASE(binary.BigEndian.Uint16(h.CipherSuites[i:])) {
			nc++
		}
	}
	ne := 0
	h.eachExtension(func(typ uint16) {
		if !isGREASE(typ) {
			ne++
		}
	})
	dst = ja4AppendCount(dst, nc)
	dst = ja4AppendCount(dst, ne)
	return ja4AppendALPN(dst, h.ALPN)
}

// ja4Version is the two-character form of a TLS (or DTLS) version.
func ja4Version(v uint16) string {
	switch v {
	case 0x0304:
		return "13"
	case 0x0303:
		return "12"
	case 0x0302:
		return "11"
	case 0x0301:
		return "10"
	case 0x0300:
		return "s3"
	case 0x0002:
		return "s2"
	case 0xfeff:
		return "d1"
	case 0xfefd:
		return "d2"
	case 0xfefc:
		return "d3"
	}
	return "00"
}

// ja4AppendCount appends n as two decimal digits, capped at 99.
func ja4AppendCount(dst []byte, n int) []byte {
	n = min(n, 99)
	return append(dst, byte('0'+n/10), byte('0'+n%10))
}

// ja4AppendALPN appends the ALPN characters of the fingerprint for the
// ALPN names alpn (only the first one counts).
func ja4AppendALPN(dst []byte, alpn [][]byte) []byte {
	if len(alpn) == 0 || len(alpn[0]) == 0 {
		return append(dst, '0', '0')
	}
	first, last := alpn[0][0], alpn[0][len(alpn[0])-1]
	if ja4Alnum(first) && ja4Alnum(last) {
		return append(dst, first, last)
	}
	// The first and last character of the name in hex.
	return append(dst, ja4HexDigits[first>>4], ja4HexDigits[last&0xf])
}

// ja4Alnum reports whether c is an ASCII digit or letter.
func ja4Alnum(c byte) bool {
	return '0' <= c && c <= '9' || 'A' <= c && c <= 'Z' || 'a' <= c && c <= 'z'
}

// ja4Ciphers appends the non-GREASE cipher suites of h to buf, sorted.
func (h *ClientHello) ja4Ciphers(buf []uint16) []uint16 {
	if n := len(h.CipherSuites) / 2; n > cap(buf) {
		buf = make([]uint16, 0, n)
	}
	for i := 0; i+1 < len(h.CipherSuites); i += 2 {
		if v := binary.BigEndian.Uint16(h.CipherSuites[i:]); !isGREASE(v) {
			buf = append(buf, v)
		}
	}
	slices.Sort(buf)
	return buf
}

// ja4Extensions appends the extension types of h that JA4 hashes (all
// but GREASE, server_name and ALPN) to buf, sorted.
func (h *ClientHello) ja4Extensions(buf []uint16) []uint16 {
	n := max(h.NumExtensions, 0)
	if n > MaxExtensions {
		n = len(h.RawExtensions) / 4 // eachExtension reads at most this many
	}
	if n > cap(buf) {
		buf = make([]uint16, 0, n)
	}
	h.eachExtension(func(typ uint16) {
		if !isGREASE(typ) && typ != extServerName && typ != extALPN {
			buf = append(buf, typ)
		}
	})
	slices.Sort(buf)
	return buf
}

// eachExtension calls f with every extension type of h in wire order: the
// Extensions array, or RawExtensions when the array could not hold them
// all.
func (h *ClientHello) eachExtension(f func(typ uint16)) {
	if h.NumExtensions <= MaxExtensions {
		for _, typ := range h.Extensions[:max(h.NumExtensions, 0)] {
			f(typ)
		}
		return
	}
	// Walk the raw vector; every length in it was checked by the parser,
	// but h may have been built by hand, so check again.
	for b := h.RawExtensions; len(b) >= 4; {
		f(binary.BigEndian.Uint16(b))
		n := 4 + int(binary.BigEndian.Uint16(b[2:]))
		if n > len(b) {
			break
		}
		b = b[n:]
	}
}

// ja4AppendSigAlgs appends "_" and the non-GREASE signature
// algorithms of h in wire order, or nothing if there are none.
func (h *ClientHello) ja4AppendSigAlgs(dst []byte) []byte {
	sep := byte('_')
	for i := 0; i+1 < len(h.SignatureAlgorithms); i += 2 {
		if v := binary.BigEndian.Uint16(h.SignatureAlgorithms[i:]); !isGREASE(v) {
			dst = append(dst, sep)
			dst = ja4AppendHex16(dst, v)
			sep = ','
		}
	}
	return dst
}

// ja4AppendList appends vals as 4-digit lower-case hex, comma separated.
func ja4AppendList(dst []byte, vals []uint16) []byte {
	for i, v := range vals {
		if i > 0 {
			dst = append(dst, ',')
		}
		dst = ja4AppendHex16(dst, v)
	}
	return dst
}

func ja4AppendHex16(dst []byte, v uint16) []byte {
	return append(dst, ja4HexDigits[v>>12], ja4HexDigits[v>>8&0xf], ja4HexDigits[v>>4&0xf], ja4HexDigits[v&0xf])
}

// ja4AppendHash appends the first 12 lower-case hex digits of the SHA-256
// of text.
func ja4AppendHash(dst, text []byte) []byte {
	sum := sha256.Sum256(text)
	for _, b := range sum[:6] {
		dst = append(dst, ja4HexDigits[b>>4], ja4HexDigits[b&0xf])
	}
	return dst
}
