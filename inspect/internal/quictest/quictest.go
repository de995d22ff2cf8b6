// Package quictest builds QUIC client Initial packets for tests, the way a
// client does (RFC 9001 §5, RFC 9369 §3): with the key schedule of the
// standard library's crypto/hkdf, independent of the one package l7 opens
// them with, so that a test of one against the other proves both. Package
// l7's tests check it against the sample packets of RFC 9001 A.2 and
// RFC 9369 A.2.
package quictest

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"crypto/tls"
	"encoding/binary"
	"fmt"
)

// Versions.
const (
	V1 uint32 = 0x00000001
	V2 uint32 = 0x6b3343cf
)

// InitialType is the first byte of an Initial packet of version with a
// packet number of pnLen bytes, before header protection.
func InitialType(version uint32, pnLen int) byte {
	first := byte(0xc0) // long header, fixed bit, v1 Initial (0b00)
	if version == V2 {
		first = 0xd0 // v2 Initial (0b01)
	}
	return first | byte(pnLen-1)
}

// keys are a client's Initial keys.
type keys struct {
	aead cipher.AEAD
	hp   cipher.Block
	iv   []byte
}

func clientKeys(version uint32, dcid []byte) keys {
	salt := []byte{0x38, 0x76, 0x2c, 0xf7, 0xf5, 0x59, 0x34, 0xb3, 0x4d, 0x17, 0x9a, 0xe6, 0xa4, 0xc8, 0x0c, 0xad, 0xcc, 0xbb, 0x7f, 0x0a}
	prefix := "quic "
	if version == V2 {
		salt = []byte{0x0d, 0xed, 0xe3, 0xde, 0xf7, 0x00, 0xa6, 0xdb, 0x81, 0x93, 0x81, 0xbe, 0x6e, 0x26, 0x9d, 0xcb, 0xf9, 0xbd, 0x2e, 0xd9}
		prefix = "quicv2 "
	}
	initial, err := hkdf.Extract(sha256.New, dcid, salt)
	if err != nil {
		panic(err)
	}
	client := expandLabel(initial, "client in", 32)
	block, err := aes.NewCipher(expandLabel(client, prefix+"key", 16))
	if err != nil {
		panic(err)
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		panic(err)
	}
	hp, err := aes.NewCipher(expandLabel(client, prefix+"hp", 16))
	if err != nil {
		panic(err)
	}
	return keys{aead: aead, hp: hp, iv: expandLabel(client, prefix+"iv", 12)}
}

// expandLabel is HKDF-Expand-Label (RFC 8446 §7.1) with an empty context.
func expandLabel(secret []byte, label string, length int) []byte {
	info := binary.BigEndian.AppendUint16(nil, uint16(length))
	info = append(info, byte(len("tls13 ")+len(label)))
	info = append(info, "tls13 "+label...)
	info = append(info, 0)
	out, err := hkdf.Expand(sha256.New, secret, string(info), length)
	if err != nil {
		panic(err)
	}
	return out
}

// Seal builds a client Initial packet: first is the first byte before
// header protection (InitialType, or with other bits set on purpose), pn
// the packet number sent in pnLen bytes, frames the plaintext payload.
// With pad > 0, PADDING frames make the packet pad bytes long. A packet too
// short for header protection's sample is returned without it.
func Seal(version uint32, first byte, dcid, scid, token []byte, pn uint32, pnLen int, frames []byte, pad int) []byte {
	k := clientKeys(version, dcid)
	hdr := []byte{first}
	hdr = binary.BigEndian.AppendUint32(hdr, version)
	hdr = append(hdr, byte(len(dcid)))
	hdr = append(hdr, dcid...)
	hdr = append(hdr, byte(len(scid)))
	hdr = append(hdr, scid...)
	hdr = AppendVarint(hdr, uint64(len(token)))
	hdr = append(hdr, token...)
	const tagLen = 16
	if pad > 0 {
		if n := pad - len(hdr) - 2 - pnLen - len(frames) - tagLen; n > 0 {
			frames = append(bytes.Clone(frames), make([]byte, n)...)
		}
	}
	length := pnLen + len(frames) + tagLen
	hdr = append(hdr, 0x40|byte(length>>8), byte(length)) // a 2-byte varint
	pnOffset := len(hdr)
	for i := pnLen - 1; i >= 0; i-- {
		hdr = append(hdr, byte(pn>>(8*i)))
	}
	nonce := bytes.Clone(k.iv)
	for i := range 8 {
		nonce[4+i] ^= byte(uint64(pn) >> (56 - 8*i))
	}
	pkt := k.aead.Seal(bytes.Clone(hdr), nonce, frames, hdr)
	if len(pkt) < pnOffset+4+16 {
		return pkt
	}
	mask := make([]byte, 16)
	k.hp.Encrypt(mask, pkt[pnOffset+4:pnOffset+4+16])
	pkt[0] ^= mask[0] & 0x0f
	for i := range pnLen {
		pkt[pnOffset+i] ^= mask[1+i]
	}
	return pkt
}

// AppendVarint appends v as a QUIC variable-length integer (RFC 9000 §16).
func AppendVarint(b []byte, v uint64) []byte {
	switch {
	case v < 1<<6:
		return append(b, byte(v))
	case v < 1<<14:
		return append(b, 0x40|byte(v>>8), byte(v))
	case v < 1<<30:
		return binary.BigEndian.AppendUint32(b, 0x80<<24|uint32(v))
	}
	return binary.BigEndian.AppendUint64(b, 0xc0<<56|v)
}

// CryptoFrame is a CRYPTO frame holding data at offset.
func CryptoFrame(offset uint64, data []byte) []byte {
	b := AppendVarint([]byte{0x06}, offset)
	b = AppendVarint(b, uint64(len(data)))
	return append(b, data...)
}

// ClientHello returns the ClientHello Go's crypto/tls sends as a QUIC client
// to serverName (no server name if it is ""), offering alpn: the bytes of
// its Initial CRYPTO stream. With Go 1.24+'s default X25519MLKEM768 key
// share it is larger than one 1200-byte datagram.
func ClientHello(serverName string, alpn ...string) ([]byte, error) {
	cfg := &tls.Config{ServerName: serverName, NextProtos: alpn, MinVersion: tls.VersionTLS13}
	if serverName == "" {
		cfg.InsecureSkipVerify = true
	}
	c := tls.QUICClient(&tls.QUICConfig{TLSConfig: cfg})
	c.SetTransportParameters([]byte{0x01, 0x02, 0x40, 0x64}) // max_idle_timeout = 100
	if err := c.Start(context.Background()); err != nil {
		return nil, err
	}
	defer c.Close()
	var hello []byte
	for {
		ev := c.NextEvent()
		if ev.Kind == tls.QUICNoEvent {
			break
		}
		if ev.Kind == tls.QUICWriteData && ev.Level == tls.QUICEncryptionLevelInitial {
			hello = append(hello, ev.Data...)
		}
	}
	if len(hello) == 0 {
		return nil, fmt.Errorf("crypto/tls wrote no Initial data")
	}
	return hello, nil
}

// Datagrams splits hello into CRYPTO frames cut at cuts (ascending
// offsets) and puts them, in the order given by order (indexes of the
// frames; nil: in stream order), perPacket frames with a PING after each
// (as Chrome's chaos protection mixes them), into Initial packets of
// version padded to 1200 bytes, numbered from 0, with 2-byte packet
// numbers.
func Datagrams(version uint32, dcid, hello []byte, cuts, order []int, perPacket int) [][]byte {
	bounds := append(append([]int{0}, cuts...), len(hello))
	var frames [][]byte
	for i := 0; i+1 < len(bounds); i++ {
		frames = append(frames, CryptoFrame(uint64(bounds[i]), hello[bounds[i]:bounds[i+1]]))
	}
	if order == nil {
		for i := range frames {
			order = append(order, i)
		}
	}
	var out [][]byte
	for i, pn := 0, uint32(0); i < len(order); i, pn = i+perPacket, pn+1 {
		var payload []byte
		for _, j := range order[i:min(i+perPacket, len(order))] {
			payload = append(payload, frames[j]...)
			payload = append(payload, 0x01) // PING
		}
		out = append(out, Seal(version, InitialType(version, 2), dcid, []byte{0x11, 0x22}, nil, pn, 2, payload, 1200))
	}
	return out
}
