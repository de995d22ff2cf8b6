package l7

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha256"
	"encoding/binary"
)

// QUIC versions whose client Initial packets QUICOpener opens.
const (
	QUICv1 uint32 = 0x00000001 // RFC 9000, RFC 9001
	QUICv2 uint32 = 0x6b3343cf // RFC 9369
)

// QUICPacketType is the type of a QUIC long-header packet, independent of
// how the version encodes it.
type QUICPacketType uint8

// Long-header packet types (RFC 9000 §17.2, RFC 9369 §3.2).
const (
	QUICInitial QUICPacketType = iota + 1
	QUIC0RTT
	QUICHandshake
	QUICRetry
)

// String returns the packet type's name.
func (t QUICPacketType) String() string {
	switch t {
	case QUICInitial:
		return "Initial"
	case QUIC0RTT:
		return "0-RTT"
	case QUICHandshake:
		return "Handshake"
	case QUICRetry:
		return "Retry"
	}
	return "none"
}

// QUICPacket is a client Initial packet that QUICOpener.Open decrypted, or
// what could be read of a long header that it did not.
type QUICPacket struct {
	// Version is the long header's version. It is set whenever the
	// datagram starts with a long header, also when Open returns NotMatch:
	// 0 is a Version Negotiation packet, any value but QUICv1 and QUICv2 a
	// version this package cannot open.
	Version uint32
	// Type is the long-header packet type, for the two known versions.
	Type QUICPacketType
	// DCID, SCID and Token alias the datagram.
	DCID, SCID, Token []byte
	// PacketNumber is the packet number as sent (truncated to 1 to 4
	// bytes). A client's Initial packets are numbered from 0, so it is the
	// full number for every Initial packet a client sends in practice.
	PacketNumber uint64
	// Frames is the decrypted payload. It aliases the opener's buffer and
	// is valid until the opener's next Open.
	Frames []byte
	// Size is the packet's length in the datagram: coalesced packets
	// (RFC 9000 §12.2) follow at datagram[Size:].
	Size int
}

// Initial salts (RFC 9001 §5.2, RFC 9369 §3.3.1) and the labels of the
// Initial keys.
var (
	quicV1Salt = [20]byte{0x38, 0x76, 0x2c, 0xf7, 0xf5, 0x59, 0x34, 0xb3, 0x4d, 0x17,
		0x9a, 0xe6, 0xa4, 0xc8, 0x0c, 0xad, 0xcc, 0xbb, 0x7f, 0x0a}
	quicV2Salt = [20]byte{0x0d, 0xed, 0xe3, 0xde, 0xf7, 0x00, 0xa6, 0xdb, 0x81, 0x93,
		0x81, 0xbe, 0x6e, 0x26, 0x9d, 0xcb, 0xf9, 0xbd, 0x2e, 0xd9}
)

const (
	quicMaxCIDLen     = 20 // RFC 9000 §17.2: a version 1 connection ID has at most 20 bytes
	quicSampleLen     = 16 // header protection sample (AES)
	quicTagLen        = 16 // AEAD_AES_128_GCM tag
	quicKeyCache      = 8  // connections whose keys an opener keeps
	quicMaxCryptoEnd  = 1<<62 - 1
	quicPlainBufSize  = 2048
	quicHeaderBufSize = 256
)

// quicKeys are the client Initial keys of one (version, DCID).
type quicKeys struct {
	version uint32
	dcid    [quicMaxCIDLen]byte
	dcidLen uint8
	aead    cipher.AEAD
	hp      cipher.Block
	iv      [12]byte
}

// QUICOpener decrypts client Initial packets. It keeps the keys of the last
// few connections it saw (they are derived from the Destination Connection
// ID the client chose) and the buffers the plaintext goes to, so that
// opening a packet of a connection whose keys it holds allocates nothing.
// Deriving the keys of a new connection allocates what the standard
// library's AES and GCM need: three allocations. An opener is not safe for
// concurrent use; keep one per worker.
type QUICOpener struct {
	keys  [quicKeyCache]quicKeys
	used  int // entries of keys in use
	next  int // entry to replace next once all are used
	plain []byte
	hdr   []byte
	// mask and nonce go to the ciphers' interface methods: on the stack
	// they would escape, one allocation each per packet.
	mask  [aes.BlockSize]byte
	nonce [12]byte
}

// NewQUICOpener returns an opener with buffers for packets of the usual
// size (up to 1500-byte datagrams; larger ones grow them once).
func NewQUICOpener() *QUICOpener {
	return &QUICOpener{
		plain: make([]byte, 0, quicPlainBufSize),
		hdr:   make([]byte, 0, quicHeaderBufSize),
	}
}

// Open decrypts the first packet of datagram if it is a client Initial of
// QUIC v1 or v2: it reads the long header, derives the client Initial
// keys from its Destination Connection ID (RFC 9001 §5.2), removes header
// protection (§5.4) and decrypts the payload with AEAD_AES_128_GCM (§5.3).
//
//   - NotMatch: the datagram does not start with a long header (a short
//     header, or fewer than 5 bytes), or its version is not QUICv1 or
//     QUICv2 (out.Version says which), or it is another packet type than
//     Initial (out.Type says which).
//   - Malformed: a long-header Initial of a known version whose lengths do
//     not fit the datagram, whose connection ID is longer than 20 bytes,
//     that is too short to be protected, that does not decrypt (a forged
//     or corrupted packet, or one sealed with other keys), whose reserved
//     header bits are not zero, or that holds no frames.
//   - Done: out holds the header fields and the decrypted frames.
//
// The datagram is not modified.
func (o *QUICOpener) Open(datagram []byte, out *QUICPacket) Status {
	*out = QUICPacket{}
	b := datagram
	if len(b) < 5 || b[0]&0x80 == 0 {
		return NotMatch
	}
	version := binary.BigEndian.Uint32(b[1:5])
	out.Version = version
	if version != QUICv1 && version != QUICv2 {
		return NotMatch
	}
	out.Type = quicPacketType(version, b[0])
	if out.Type != QUICInitial {
		return NotMatch
	}
	p := 5
	var ok bool
	if out.DCID, p, ok = quicCID(b, p); !ok {
		return Malformed
	}
	if out.SCID, p, ok = quicCID(b, p); !ok {
		return Malformed
	}
	tokenLen, n := quicVarint(b[p:])
	if n == 0 || tokenLen > uint64(len(b)-p-n) {
		return Malformed
	}
	p += n
	out.Token = b[p : p+int(tokenLen) : p+int(tokenLen)]
	p += int(tokenLen)
	length, n := quicVarint(b[p:])
	if n == 0 || length > uint64(len(b)-p-n) {
		return Malformed
	}
	p += n
	pnOffset, end := p, p+int(length)
	// The sample starts 4 bytes after the packet number's first byte,
	// whatever the number's length (RFC 9001 §5.4.2): a packet shorter
	// than that is one no sender can protect.
	if end < pnOffset+4+quicSampleLen {
		return Malformed
	}
	k := o.keysFor(version, out.DCID)
	mask := &o.mask
	k.hp.Encrypt(mask[:], b[pnOffset+4:pnOffset+4+quicSampleLen])
	first := b[0] ^ mask[0]&0x0f
	pnLen := int(first&0x03) + 1
	var pn uint64
	for i := range pnLen {
		pn = pn<<8 | uint64(b[pnOffset+i]^mask[1+i])
	}
	// The header as sent before protection is the AEAD's associated data.
	hdr := append(o.hdr[:0], b[:pnOffset+pnLen]...)
	hdr[0] = first
	for i := range pnLen {
		hdr[pnOffset+i] ^= mask[1+i]
	}
	o.hdr = hdr[:0]
	o.nonce = k.iv
	for i := range 8 {
		o.nonce[4+i] ^= byte(pn >> (56 - 8*i))
	}
	plain, err := k.aead.Open(o.plain[:0], o.nonce[:], b[pnOffset+pnLen:end], hdr)
	if err != nil {
		return Malformed
	}
	o.plain = plain[:0]
	// Reserved bits are checked after both protections are removed
	// (RFC 9000 §17.2); a packet without frames is a protocol violation
	// (§12.4).
	if first&0x0c != 0 || len(plain) == 0 {
		return Malformed
	}
	out.PacketNumber = pn
	out.Frames = plain[:len(plain):len(plain)]
	out.Size = end
	return Done
}

// quicPacketType reads the long-header packet type bits of version.
func quicPacketType(version uint32, first byte) QUICPacketType {
	bits := first >> 4 & 0x03
	if version == QUICv2 {
		// RFC 9369 §3.2: Initial 0b01, 0-RTT 0b10, Handshake 0b11, Retry 0b00.
		return [4]QUICPacketType{QUICRetry, QUICInitial, QUIC0RTT, QUICHandshake}[bits]
	}
	return [4]QUICPacketType{QUICInitial, QUIC0RTT, QUICHandshake, QUICRetry}[bits]
}

// quicCID reads a length-prefixed connection ID at b[p:].
func quicCID(b []byte, p int) (cid []byte, next int, ok bool) {
	if p >= len(b) {
		return nil, p, false
	}
	n := int(b[p])
	p++
	if n > quicMaxCIDLen || n > len(b)-p {
		return nil, p, false
	}
	return b[p : p+n : p+n], p + n, true
}

// quicVarint reads a variable-length integer (RFC 9000 §16). n is the
// number of bytes it took, 0 if b is too short.
func quicVarint(b []byte) (v uint64, n int) {
	if len(b) == 0 {
		return 0, 0
	}
	n = 1 << (b[0] >> 6)
	if len(b) < n {
		return 0, 0
	}
	v = uint64(b[0] & 0x3f)
	for i := 1; i < n; i++ {
		v = v<<8 | uint64(b[i])
	}
	return v, n
}

// keysFor returns the client Initial keys of (version, dcid), deriving
// them if the opener does not hold them.
func (o *QUICOpener) keysFor(version uint32, dcid []byte) *quicKeys {
	for i := range o.used {
		k := &o.keys[i]
		if k.version == version && int(k.dcidLen) == len(dcid) && string(k.dcid[:k.dcidLen]) == string(dcid) {
			return k
		}
	}
	i := o.used
	if o.used < quicKeyCache {
		o.used++
	} else {
		i = o.next
		o.next = (o.next + 1) % quicKeyCache
	}
	k := &o.keys[i]
	deriveQUICKeys(k, version, dcid)
	return k
}

// deriveQUICKeys fills k with the client Initial keys of (version, dcid)
// (RFC 9001 §5.2, RFC 9369 §3.3).
func deriveQUICKeys(k *quicKeys, version uint32, dcid []byte) {
	salt, keyLabel, ivLabel, hpLabel := quicV1Salt, "quic key", "quic iv", "quic hp"
	if version == QUICv2 {
		salt, keyLabel, ivLabel, hpLabel = quicV2Salt, "quicv2 key", "quicv2 iv", "quicv2 hp"
	}
	initial := hmacSHA256(salt[:], dcid) // HKDF-Extract
	client := hkdfExpandLabel(initial[:], "client in", 32)
	key := hkdfExpandLabel(client[:], keyLabel, 16)
	iv := hkdfExpandLabel(client[:], ivLabel, 12)
	hp := hkdfExpandLabel(client[:], hpLabel, 16)

	k.version = version
	k.dcidLen = uint8(copy(k.dcid[:], dcid))
	copy(k.iv[:], iv[:12])
	// AES-128 keys of 16 bytes and the standard nonce and tag sizes:
	// neither constructor can fail.
	block, _ := aes.NewCipher(key[:16])
	k.aead, _ = cipher.NewGCM(block)
	k.hp, _ = aes.NewCipher(hp[:16])
}

// hmacSHA256 is HMAC-SHA256 (RFC 2104) for a key of at most 64 bytes and a
// message of at most 64, on the stack: crypto/hmac allocates.
func hmacSHA256(key, msg []byte) [sha256.Size]byte {
	var buf [sha256.BlockSize + 64]byte
	for i := range sha256.BlockSize {
		buf[i] = 0x36
		if i < len(key) {
			buf[i] ^= key[i]
		}
	}
	n := sha256.BlockSize + copy(buf[sha256.BlockSize:], msg)
	inner := sha256.Sum256(buf[:n])
	for i := range sha256.BlockSize {
		buf[i] = 0x5c
		if i < len(key) {
			buf[i] ^= key[i]
		}
	}
	copy(buf[sha256.BlockSize:], inner[:])
	return sha256.Sum256(buf[:sha256.BlockSize+sha256.Size])
}

// hkdfExpandLabel is TLS 1.3's HKDF-Expand-Label (RFC 8446 §7.1) with an
// empty context, for lengths up to one SHA-256 block of output.
func hkdfExpandLabel(secret []byte, label string, length int) [sha256.Size]byte {
	// HkdfLabel: uint16 length, opaque label<7..255> = "tls13 " + label,
	// opaque context<0..255> = "", then HKDF-Expand's counter byte 0x01.
	var info [64]byte
	binary.BigEndian.PutUint16(info[:], uint16(length))
	info[2] = byte(len("tls13 ") + len(label))
	n := 3 + copy(info[3:], "tls13 ")
	n += copy(info[n:], label)
	info[n] = 0 // empty context
	info[n+1] = 1
	return hmacSHA256(secret, info[:n+2])
}

// QUICFrames walks the frames of a decrypted Initial payload and yields its
// CRYPTO frames. The zero value walks nothing; Reset starts a walk.
type QUICFrames struct {
	rest []byte
	st   Status
}

// Reset starts a walk over frames (QUICPacket.Frames).
func (f *QUICFrames) Reset(frames []byte) { *f = QUICFrames{rest: frames, st: NeedMore} }

// NextCrypto returns the next CRYPTO frame's stream offset and data
// (aliasing the frames), skipping the other frames a client Initial may
// hold: PADDING, PING, ACK and CONNECTION_CLOSE (RFC 9000 §12.4, Table 3).
// It returns ok false at the end of the frames or at the first frame that
// is invalid or not allowed in an Initial packet; Status then says which.
func (f *QUICFrames) NextCrypto() (offset uint64, data []byte, ok bool) {
	for f.st == NeedMore {
		if len(f.rest) == 0 {
			f.st = Done
			break
		}
		typ, n := quicVarint(f.rest)
		if n == 0 {
			f.st = Malformed
			break
		}
		b, valid := f.rest[n:], false
		switch typ {
		case 0x00, 0x01: // PADDING, PING
			valid = true
		case 0x02, 0x03: // ACK, ACK with ECN counts
			b, valid = skipQUICAck(b, typ == 0x03)
		case 0x06: // CRYPTO
			offset, data, b, valid = quicCryptoFrame(b)
			if valid {
				f.rest = b
				return offset, data, true
			}
		case 0x1c: // CONNECTION_CLOSE (transport): code, frame type, reason
			b, valid = skipQUICConnectionClose(b)
		}
		if !valid {
			// Another frame type (not allowed in an Initial packet), or a
			// frame that does not fit.
			f.st = Malformed
			break
		}
		f.rest = b
	}
	return 0, nil, false
}

// quicCryptoFrame reads a CRYPTO frame's fields after its type
// (RFC 9000 §19.6).
func quicCryptoFrame(b []byte) (offset uint64, data, rest []byte, ok bool) {
	offset, n := quicVarint(b)
	if n == 0 {
		return 0, nil, nil, false
	}
	b = b[n:]
	length, n := quicVarint(b)
	if n == 0 || length > uint64(len(b)-n) || offset+length > quicMaxCryptoEnd {
		return 0, nil, nil, false
	}
	end := n + int(length)
	return offset, b[n:end:end], b[end:], true
}

// skipQUICConnectionClose skips a CONNECTION_CLOSE frame's fields after its
// type (RFC 9000 §19.19, type 0x1c).
func skipQUICConnectionClose(b []byte) ([]byte, bool) {
	b, ok := skipQUICVarints(b, 2)
	if !ok {
		return nil, false
	}
	reason, n := quicVarint(b)
	if n == 0 || reason > uint64(len(b)-n) {
		return nil, false
	}
	return b[n+int(reason):], true
}

// Status is Done after NextCrypto walked all frames, Malformed if it
// stopped at an invalid frame, NeedMore while the walk goes on.
func (f *QUICFrames) Status() Status { return f.st }

// skipQUICAck skips an ACK frame's fields after its type (RFC 9000 §19.3).
func skipQUICAck(b []byte, ecn bool) ([]byte, bool) {
	// Largest Acknowledged, ACK Delay, ACK Range Count, First ACK Range.
	var count uint64
	var ok bool
	if b, ok = skipQUICVarints(b, 2); !ok {
		return nil, false
	}
	count, n := quicVarint(b)
	if n == 0 {
		return nil, false
	}
	b = b[n:]
	if b, ok = skipQUICVarints(b, 1); !ok {
		return nil, false
	}
	// Each range is two varints of at least one byte: a count larger than
	// what is left cannot fit, and the loop is bounded by the input.
	if count > uint64(len(b))/2 {
		return nil, false
	}
	if b, ok = skipQUICVarints(b, 2*int(count)); !ok {
		return nil, false
	}
	if ecn {
		return skipQUICVarints(b, 3)
	}
	return b, true
}

// skipQUICVarints skips n variable-length integers.
func skipQUICVarints(b []byte, n int) ([]byte, bool) {
	for range n {
		_, m := quicVarint(b)
		if m == 0 {
			return nil, false
		}
		b = b[m:]
	}
	return b, true
}

// QUICCryptoStream reassembles the start of a QUIC connection's CRYPTO
// stream (its ClientHello) from frames that may come in any order, split
// at any offset, repeated or overlapping, across several Initial packets.
// It keeps the bytes in a buffer the caller gives and tracks which ranges
// it holds in a fixed list: it allocates nothing.
type QUICCryptoStream struct {
	buf    []byte // len(buf) is the capacity the stream is reassembled into
	ranges [quicMaxRanges]struct{ from, to uint32 }
	n      int // ranges in use, sorted by from, never touching
}

// quicMaxRanges is the number of separate pieces a stream may be in at
// once. Pieces that touch merge, so only a client that leaves more than
// this many holes at a time runs out.
const quicMaxRanges = 32

// Reset empties the stream and makes buf its buffer: bytes at offsets
// beyond len(buf) are not kept.
func (s *QUICCryptoStream) Reset(buf []byte) { *s = QUICCryptoStream{buf: buf} }

// Add puts a CRYPTO frame's data at offset. Bytes beyond the buffer are
// dropped (Prefix then stops there, and the caller's budget decides). Data
// that overlaps what the stream holds must repeat it: RFC 9000 §2.2 lets
// a receiver treat different data at the same offset as a protocol
// violation, and a client that sends it is trying to show a middlebox
// another ClientHello than the server reads. Add returns Malformed for
// that, and for more holes than the stream tracks; Done otherwise.
func (s *QUICCryptoStream) Add(offset uint64, data []byte) Status {
	if offset >= uint64(len(s.buf)) || len(data) == 0 {
		return Done
	}
	from := uint32(offset)
	data = data[:min(uint64(len(data)), uint64(len(s.buf))-offset)]
	to := from + uint32(len(data))
	// Where the held ranges overlap the new data, the bytes must agree.
	for i := range s.n {
		r := s.ranges[i]
		lo, hi := max(r.from, from), min(r.to, to)
		if lo < hi && string(s.buf[lo:hi]) != string(data[lo-from:hi-from]) {
			return Malformed
		}
	}
	copy(s.buf[from:to], data)
	// Merge [from, to) with every range it overlaps or touches.
	i := 0
	for i < s.n && s.ranges[i].to < from {
		i++
	}
	j := i
	for j < s.n && s.ranges[j].from <= to {
		from, to = min(from, s.ranges[j].from), max(to, s.ranges[j].to)
		j++
	}
	// ranges[i:j] become one.
	if i == j {
		if s.n == quicMaxRanges {
			return Malformed
		}
		copy(s.ranges[i+1:s.n+1], s.ranges[i:s.n])
		s.n++
	} else {
		copy(s.ranges[i+1:], s.ranges[j:s.n])
		s.n -= j - i - 1
	}
	s.ranges[i].from, s.ranges[i].to = from, to
	return Done
}

// Prefix is the in-order part of the stream held from offset 0.
func (s *QUICCryptoStream) Prefix() []byte {
	if s.n == 0 || s.ranges[0].from != 0 {
		return s.buf[:0]
	}
	return s.buf[:s.ranges[0].to]
}

// Full reports whether the stream holds every byte its buffer can.
func (s *QUICCryptoStream) Full() bool { return len(s.Prefix()) == len(s.buf) }
