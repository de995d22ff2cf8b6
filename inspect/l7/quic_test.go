package l7

import (
	"bytes"
	"crypto/hkdf"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nfqguard/nfqguard/inspect/internal/quictest"
)

// quicRFCDCID is the Destination Connection ID of the sample packets of
// RFC 9001 Appendix A and RFC 9369 Appendix A.
var quicRFCDCID = mustHex("8394c8f03e515708")

func mustHex(s string) []byte {
	b, err := hex.DecodeString(strings.ReplaceAll(s, " ", ""))
	if err != nil {
		panic(err)
	}
	return b
}

// readHex reads a testdata/quic file: hex digits, lines starting with #
// are comments.
func readHex(t testing.TB, name string) []byte {
	t.Helper()
	raw, err := os.ReadFile(filepath.Join("testdata", "quic", name))
	if err != nil {
		t.Fatal(err)
	}
	var sb strings.Builder
	for line := range strings.SplitSeq(string(raw), "\n") {
		if !strings.HasPrefix(line, "#") {
			sb.WriteString(strings.TrimSpace(line))
		}
	}
	b, err := hex.DecodeString(sb.String())
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return b
}

// TestQUICInitialKeys checks the key schedule against RFC 9001 A.1 and
// RFC 9369 A.1, and the stack HMAC and HKDF against the standard library.
func TestQUICInitialKeys(t *testing.T) {
	for _, c := range []struct {
		name                       string
		version                    uint32
		secret, key, iv, hp        string
		keyLabel, ivLabel, hpLabel string
		salt                       [20]byte
	}{
		{"v1", QUICv1, "c00cf151ca5be075ed0ebfb5c80323c42d6b7db67881289af4008f1f6c357aea",
			"1f369613dd76d5467730efcbe3b1a22d", "fa044b2f42a3fd3b46fb255c", "9f50449e04a0e810283a1e9933adedd2",
			"quic key", "quic iv", "quic hp", quicV1Salt},
		{"v2", QUICv2, "14ec9d6eb9fd7af83bf5a668bc17a7e283766aade7ecd0891f70f9ff7f4bf47b",
			"8b1a0bc121284290a29e0971b5cd045d", "91f73e2351d8fa91660e909f", "45b95e15235d6f45a6b19cbcb0294ba9",
			"quicv2 key", "quicv2 iv", "quicv2 hp", quicV2Salt},
	} {
		t.Run(c.name, func(t *testing.T) {
			initial := hmacSHA256(c.salt[:], quicRFCDCID)
			client := hkdfExpandLabel(initial[:], "client in", 32)
			if got := hex.EncodeToString(client[:]); got != c.secret {
				t.Errorf("client_initial_secret %s, want %s", got, c.secret)
			}
			for _, k := range []struct{ label, want string }{{c.keyLabel, c.key}, {c.ivLabel, c.iv}, {c.hpLabel, c.hp}} {
				v := hkdfExpandLabel(client[:], k.label, len(k.want)/2)
				if got := hex.EncodeToString(v[:len(k.want)/2]); got != k.want {
					t.Errorf("%s: %s, want %s", k.label, got, k.want)
				}
			}
		})
	}
	r := rand.New(rand.NewPCG(1, 2))
	for range 200 {
		key, msg := make([]byte, r.IntN(65)), make([]byte, r.IntN(65))
		for i := range key {
			key[i] = byte(r.Uint32())
		}
		for i := range msg {
			msg[i] = byte(r.Uint32())
		}
		m := hmac.New(sha256.New, key)
		m.Write(msg)
		if got := hmacSHA256(key, msg); !bytes.Equal(got[:], m.Sum(nil)) {
			t.Fatalf("hmacSHA256(%x, %x) differs from crypto/hmac", key, msg)
		}
		label := strings.Repeat("x", r.IntN(20))
		want, err := hkdf.Expand(sha256.New, key, string(tls13Label(label, 16)), 16)
		if err != nil {
			t.Fatal(err)
		}
		if len(key) >= sha256.Size { // HKDF-Expand wants a PRK at least as long as the hash
			if got := hkdfExpandLabel(key, label, 16); !bytes.Equal(got[:16], want) {
				t.Fatalf("hkdfExpandLabel(%x, %q) differs from crypto/hkdf", key, label)
			}
		}
	}
}

// tls13Label is the HkdfLabel of RFC 8446 §7.1 with an empty context.
func tls13Label(label string, length int) []byte {
	b := binary.BigEndian.AppendUint16(nil, uint16(length))
	b = append(b, byte(6+len(label)))
	b = append(b, "tls13 "+label...)
	return append(b, 0)
}

// goQUICClientHello is the ClientHello of Go's crypto/tls as a QUIC client,
// offering h3 (see quictest.ClientHello).
func goQUICClientHello(t testing.TB, serverName string) []byte {
	t.Helper()
	hello, err := quictest.ClientHello(serverName, "h3")
	if err != nil {
		t.Fatal(err)
	}
	return hello
}

// TestQUICOpenRFC opens the sample client Initial packets of RFC 9001 A.2
// (v1) and RFC 9369 A.2 (v2) and reads the ClientHello in them.
func TestQUICOpenRFC(t *testing.T) {
	crypto := readHex(t, "rfc9001-a2-crypto-frame.hex")
	for _, c := range []struct {
		file    string
		version uint32
	}{{"rfc9001-a2-client-initial.hex", QUICv1}, {"rfc9369-a2-client-initial.hex", QUICv2}} {
		t.Run(c.file, func(t *testing.T) {
			pkt := readHex(t, c.file)
			orig := bytes.Clone(pkt)
			o := NewQUICOpener()
			var p QUICPacket
			if st := o.Open(pkt, &p); st != Done {
				t.Fatalf("Open: %v", st)
			}
			if !bytes.Equal(pkt, orig) {
				t.Fatal("Open modified the datagram")
			}
			if p.Version != c.version || p.Type != QUICInitial || !bytes.Equal(p.DCID, quicRFCDCID) ||
				len(p.SCID) != 0 || len(p.Token) != 0 || p.PacketNumber != 2 || p.Size != 1200 {
				t.Fatalf("header %+v", p)
			}
			// The payload is the CRYPTO frame and PADDING up to 1162 bytes.
			want := append(bytes.Clone(crypto), make([]byte, 1162-len(crypto))...)
			if !bytes.Equal(p.Frames, want) {
				t.Fatalf("frames differ from the RFC's plaintext:\n got %x\nwant %x", p.Frames[:64], want[:64])
			}
			var f QUICFrames
			f.Reset(p.Frames)
			off, data, ok := f.NextCrypto()
			if !ok || off != 0 || len(data) != 241 {
				t.Fatalf("first CRYPTO frame: ok %v offset %d, %d bytes; status %v", ok, off, len(data), f.Status())
			}
			if _, _, ok := f.NextCrypto(); ok || f.Status() != Done {
				t.Fatalf("after the CRYPTO frame: ok %v, status %v, want the end (Done)", ok, f.Status())
			}
			var h ClientHello
			if st := ParseHandshakeClientHello(data, &h); st != Done {
				t.Fatalf("ParseHandshakeClientHello: %v", st)
			}
			if string(h.SNI) != "example.com" || h.Version != 0x0304 || len(h.ALPN) != 1 || string(h.ALPN[0]) != "alpn" {
				t.Fatalf("ClientHello SNI %q version %#x ALPN %q", h.SNI, h.Version, h.ALPN)
			}
		})
	}
}

// TestQUICSealerMatchesRFC proves the tests' packet builder: it must build
// the RFC's sample packets byte for byte.
func TestQUICSealerMatchesRFC(t *testing.T) {
	crypto := readHex(t, "rfc9001-a2-crypto-frame.hex")
	for _, c := range []struct {
		file    string
		version uint32
		first   byte
	}{{"rfc9001-a2-client-initial.hex", QUICv1, 0xc3}, {"rfc9369-a2-client-initial.hex", QUICv2, 0xd3}} {
		got := quictest.Seal(c.version, c.first, quicRFCDCID, nil, nil, 2, 4, crypto, 1200)
		if want := readHex(t, c.file); !bytes.Equal(got, want) {
			t.Errorf("%s: the test sealer does not build the RFC's packet:\n got %x\nwant %x", c.file, got[:48], want[:48])
		}
	}
}

func TestQUICOpenRejects(t *testing.T) {
	v1 := readHex(t, "rfc9001-a2-client-initial.hex")
	mod := func(f func(b []byte) []byte) []byte { return f(bytes.Clone(v1)) }
	frames := quictest.CryptoFrame(0, []byte{1, 0, 0, 0})
	for _, c := range []struct {
		name    string
		pkt     []byte
		want    Status
		version uint32
		typ     QUICPacketType
	}{
		{"empty", nil, NotMatch, 0, 0},
		{"short header", mod(func(b []byte) []byte { b[0] = 0x40; return b }), NotMatch, 0, 0},
		{"4 bytes", v1[:4], NotMatch, 0, 0},
		{"version negotiation", mod(func(b []byte) []byte { copy(b[1:5], []byte{0, 0, 0, 0}); return b }), NotMatch, 0, 0},
		{"unknown version", mod(func(b []byte) []byte { copy(b[1:5], []byte{0xff, 0, 0, 0x1d}); return b }), NotMatch, 0xff00001d, 0},
		{"v1 handshake", mod(func(b []byte) []byte { b[0] = b[0]&^0x30 | 0x20; return b }), NotMatch, QUICv1, QUICHandshake},
		{"v1 0-RTT", mod(func(b []byte) []byte { b[0] = b[0]&^0x30 | 0x10; return b }), NotMatch, QUICv1, QUIC0RTT},
		{"v1 retry", mod(func(b []byte) []byte { b[0] |= 0x30; return b }), NotMatch, QUICv1, QUICRetry},
		{"v1 header only", v1[:22], Malformed, QUICv1, QUICInitial},
		{"truncated", v1[:1199], Malformed, QUICv1, QUICInitial},
		{"DCID too long", mod(func(b []byte) []byte { b[5] = 21; return b }), Malformed, QUICv1, QUICInitial},
		{"DCID beyond the datagram", v1[:10], Malformed, QUICv1, QUICInitial},
		{"ciphertext changed", mod(func(b []byte) []byte { b[600] ^= 1; return b }), Malformed, QUICv1, QUICInitial},
		{"tag changed", mod(func(b []byte) []byte { b[1199] ^= 0x80; return b }), Malformed, QUICv1, QUICInitial},
		{"other DCID", mod(func(b []byte) []byte { b[6] ^= 1; return b }), Malformed, QUICv1, QUICInitial},
		{"v1 packet labelled v2", mod(func(b []byte) []byte {
			copy(b[1:5], []byte{0x6b, 0x33, 0x43, 0xcf})
			b[0] = b[0]&^0x30 | 0x10 // v2's Initial type bits
			return b
		}), Malformed, QUICv2, QUICInitial},
		{"reserved bits set", quictest.Seal(QUICv1, 0xc4, []byte{1, 2, 3, 4, 5, 6, 7, 8}, nil, nil, 0, 1, frames, 1200), Malformed, QUICv1, QUICInitial},
		{"no frames", quictest.Seal(QUICv1, 0xc3, []byte{1, 2, 3, 4, 5, 6, 7, 8}, nil, nil, 0, 4, nil, 0), Malformed, QUICv1, QUICInitial},
	} {
		t.Run(c.name, func(t *testing.T) {
			var p QUICPacket
			if st := NewQUICOpener().Open(c.pkt, &p); st != c.want || p.Version != c.version || p.Type != c.typ {
				t.Fatalf("Open: %v, version %#x, type %v; want %v, %#x, %v", st, p.Version, p.Type, c.want, c.version, c.typ)
			}
			if c.want != Done && p.Frames != nil {
				t.Fatalf("%v with frames", c.want)
			}
		})
	}
	// A packet whose only payload is the 16-byte tag cannot be sampled;
	// one with a single byte of payload can, and opens.
	dcid := []byte{9, 9, 9, 9}
	if st := NewQUICOpener().Open(quictest.Seal(QUICv1, 0xc0, dcid, nil, nil, 0, 1, []byte{0x01, 0, 0}, 0), &QUICPacket{}); st != Done {
		t.Errorf("smallest packet that can be protected: %v, want Done", st)
	}
	if st := NewQUICOpener().Open(quictest.Seal(QUICv1, 0xc0, dcid, nil, nil, 0, 1, []byte{0x01, 0}, 0), &QUICPacket{}); st != Malformed {
		t.Errorf("packet too short for the sample: %v, want Malformed", st)
	}
}

func TestQUICOpenHeaderFields(t *testing.T) {
	dcid, scid, token := []byte{1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20}, []byte{0xaa, 0xbb}, bytes.Repeat([]byte{0x55}, 70)
	frames := quictest.CryptoFrame(5, []byte("hello"))
	for _, pnLen := range []int{1, 2, 3, 4} {
		for _, version := range []uint32{QUICv1, QUICv2} {
			first := byte(0xc0)
			if version == QUICv2 {
				first = 0xd0
			}
			first |= byte(pnLen - 1)
			pn := uint32(0x01020304) >> (8 * (4 - pnLen))
			pkt := quictest.Seal(version, first, dcid, scid, token, pn, pnLen, frames, 1200)
			// A coalesced packet follows the Initial.
			datagram := append(bytes.Clone(pkt), 0xe0, 1, 2, 3)
			var p QUICPacket
			if st := NewQUICOpener().Open(datagram, &p); st != Done {
				t.Fatalf("v%#x pn length %d: %v", version, pnLen, st)
			}
			if !bytes.Equal(p.DCID, dcid) || !bytes.Equal(p.SCID, scid) || !bytes.Equal(p.Token, token) ||
				p.PacketNumber != uint64(pn) || p.Size != len(pkt) || !bytes.HasPrefix(p.Frames, frames) {
				t.Fatalf("v%#x pn length %d: %+v", version, pnLen, p)
			}
		}
	}
}

func TestQUICFrames(t *testing.T) {
	ack := []byte{0x02, 0x05, 0x00, 0x02, 0x01, 0x00, 0x01, 0x00, 0x00}    // largest 5, delay 0, 2 ranges, first 1
	ackECN := []byte{0x03, 0x05, 0x00, 0x00, 0x01, 0x07, 0x40, 0x08, 0x00} // 0 ranges, ECN counts 7, 8, 0
	closeFrame := []byte{0x1c, 0x0a, 0x00, 0x03, 'b', 'y', 'e'}            // PROTOCOL_VIOLATION, "bye"
	join := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	type piece struct {
		off  uint64
		data string
	}
	for _, c := range []struct {
		name   string
		frames []byte
		want   []piece
		status Status
	}{
		{"padding only", make([]byte, 10), nil, Done},
		{"everything allowed", join([]byte{0x01}, quictest.CryptoFrame(3, []byte("def")), []byte{0, 0}, ack, quictest.CryptoFrame(0, []byte("abc")), ackECN, closeFrame),
			[]piece{{3, "def"}, {0, "abc"}}, Done},
		{"two-byte offset", quictest.CryptoFrame(1000, []byte("x")), []piece{{1000, "x"}}, Done},
		{"STREAM frame", join(quictest.CryptoFrame(0, []byte("a")), []byte{0x08, 0x00, 'x'}), []piece{{0, "a"}}, Malformed},
		{"HANDSHAKE_DONE", []byte{0x1e}, nil, Malformed},
		{"application CONNECTION_CLOSE", []byte{0x1d, 0, 0}, nil, Malformed},
		{"CRYPTO past the payload", []byte{0x06, 0x00, 0x05, 'a', 'b'}, nil, Malformed},
		{"CRYPTO without length", []byte{0x06, 0x00}, nil, Malformed},
		{"CRYPTO beyond 2^62-1", join([]byte{0x06}, quictest.AppendVarint(nil, 1<<62-1), []byte{0x01, 'x'}), nil, Malformed},
		{"ACK truncated", ack[:4], nil, Malformed},
		{"ACK with a range count too large", []byte{0x02, 0x05, 0x00, 0x3f, 0x01, 0, 0}, nil, Malformed},
		{"ACK_ECN without counts", ackECN[:6], nil, Malformed},
		{"CONNECTION_CLOSE reason past the end", closeFrame[:5], nil, Malformed},
		{"frame type cut", []byte{0x40}, nil, Malformed},
	} {
		t.Run(c.name, func(t *testing.T) {
			var f QUICFrames
			f.Reset(c.frames)
			var got []piece
			for {
				off, data, ok := f.NextCrypto()
				if !ok {
					break
				}
				got = append(got, piece{off, string(data)})
			}
			if f.Status() != c.status || len(got) != len(c.want) {
				t.Fatalf("status %v, frames %v; want %v, %v", f.Status(), got, c.status, c.want)
			}
			for i := range got {
				if got[i] != c.want[i] {
					t.Fatalf("frames %v, want %v", got, c.want)
				}
			}
		})
	}
}

func TestQUICCryptoStream(t *testing.T) {
	msg := []byte("0123456789abcdefghijklmnopqrstuvwxyz")
	t.Run("in order, out of order, repeated", func(t *testing.T) {
		var s QUICCryptoStream
		s.Reset(make([]byte, len(msg)))
		for _, p := range [][2]int{{10, 20}, {30, 36}, {0, 5}, {0, 5}, {3, 12}, {20, 30}} {
			if st := s.Add(uint64(p[0]), msg[p[0]:p[1]]); st != Done {
				t.Fatalf("Add %v: %v", p, st)
			}
		}
		if !bytes.Equal(s.Prefix(), msg) || !s.Full() || s.n != 1 {
			t.Fatalf("prefix %q (%d ranges), want %q", s.Prefix(), s.n, msg)
		}
	})
	t.Run("hole", func(t *testing.T) {
		var s QUICCryptoStream
		s.Reset(make([]byte, 64))
		s.Add(5, msg[5:10])
		if len(s.Prefix()) != 0 {
			t.Fatalf("prefix %q before offset 0 arrived", s.Prefix())
		}
		s.Add(0, msg[:4])
		if string(s.Prefix()) != "0123" || s.Full() {
			t.Fatalf("prefix %q, want 0123 (a hole at 4)", s.Prefix())
		}
		s.Add(4, msg[4:5])
		if string(s.Prefix()) != "0123456789" {
			t.Fatalf("prefix %q, want 0123456789", s.Prefix())
		}
	})
	t.Run("conflicting overlap", func(t *testing.T) {
		var s QUICCryptoStream
		s.Reset(make([]byte, 64))
		s.Add(0, []byte("example.com"))
		if st := s.Add(4, []byte("PLE")); st != Malformed {
			t.Fatalf("different bytes at the same offset: %v, want Malformed", st)
		}
		if string(s.Prefix()) != "example.com" {
			t.Fatalf("prefix %q after a refused frame", s.Prefix())
		}
	})
	t.Run("beyond the buffer", func(t *testing.T) {
		var s QUICCryptoStream
		s.Reset(make([]byte, 8))
		s.Add(6, msg[6:20])
		s.Add(100, msg)
		s.Add(0, msg[:6])
		if string(s.Prefix()) != "01234567" || !s.Full() {
			t.Fatalf("prefix %q, want the buffer's 8 bytes", s.Prefix())
		}
	})
	t.Run("too many holes", func(t *testing.T) {
		var s QUICCryptoStream
		s.Reset(make([]byte, 1000))
		for i := range quicMaxRanges {
			if st := s.Add(uint64(10*i+5), []byte{'x'}); st != Done {
				t.Fatalf("hole %d: %v", i, st)
			}
		}
		if st := s.Add(999, []byte{'x'}); st != Malformed {
			t.Fatalf("one hole too many: %v, want Malformed", st)
		}
		if st := s.Add(6, []byte{'x'}); st != Done {
			t.Fatalf("a piece that touches a range needs no new one: %v", st)
		}
	})
	t.Run("random splits and orders", func(t *testing.T) {
		r := rand.New(rand.NewPCG(3, 4))
		big := make([]byte, 3000)
		for i := range big {
			big[i] = byte(r.Uint32())
		}
		for range 500 {
			var s QUICCryptoStream
			s.Reset(make([]byte, len(big)))
			var pieces [][2]int
			for from := 0; from < len(big); {
				to := min(len(big), from+1+r.IntN(400))
				pieces = append(pieces, [2]int{max(0, from-r.IntN(20)), to}) // overlapping a little
				from = to
			}
			r.Shuffle(len(pieces), func(i, j int) { pieces[i], pieces[j] = pieces[j], pieces[i] })
			for _, p := range pieces {
				if st := s.Add(uint64(p[0]), big[p[0]:p[1]]); st != Done {
					t.Fatalf("Add %v: %v", p, st)
				}
			}
			if !bytes.Equal(s.Prefix(), big) {
				t.Fatalf("reassembled %d bytes, want %d equal to the input (pieces %v)", len(s.Prefix()), len(big), pieces)
			}
		}
	})
}

// readQUICHello opens each datagram, reassembles the CRYPTO stream and
// parses the ClientHello once it is whole.
func readQUICHello(t testing.TB, o *QUICOpener, s *QUICCryptoStream, datagrams [][]byte, out *ClientHello) Status {
	t.Helper()
	st := NeedMore
	for _, d := range datagrams {
		var p QUICPacket
		if got := o.Open(d, &p); got != Done {
			return got
		}
		var f QUICFrames
		f.Reset(p.Frames)
		for {
			off, data, ok := f.NextCrypto()
			if !ok {
				break
			}
			if s.Add(off, data) != Done {
				return Malformed
			}
		}
		if f.Status() != Done {
			return Malformed
		}
		st = ParseHandshakeClientHello(s.Prefix(), out)
	}
	return st
}

// TestQUICClientHelloAcrossPackets reads a real client's ClientHello
// (crypto/tls, post-quantum key share) split over two or more Initial
// packets, in order and out of order, with the server name cut across
// CRYPTO frames (as quic-go since v0.52 and Firefox do).
func TestQUICClientHelloAcrossPackets(t *testing.T) {
	hello := goQUICClientHello(t, "pastebin.com")
	if len(hello) <= 1200 {
		t.Fatalf("crypto/tls sent a ClientHello of %d bytes: too small for this test (no post-quantum key share?)", len(hello))
	}
	sni := bytes.Index(hello, []byte("pastebin.com"))
	if sni < 0 {
		t.Fatal("no server name in the ClientHello")
	}
	mid := len(hello) / 2
	dcid := []byte{0xde, 0xad, 0xbe, 0xef, 1, 2, 3, 4}
	for _, version := range []uint32{QUICv1, QUICv2} {
		for _, c := range []struct {
			name      string
			cuts      []int
			order     []int
			perPacket int
			reorder   bool // datagrams arrive last first
		}{
			{"two packets in order", []int{mid}, nil, 1, false},
			{"two packets, second first", []int{mid}, nil, 1, true},
			{"SNI cut in three frames, shuffled, two packets", []int{sni + 3, sni + 7, mid}, []int{2, 0, 3, 1}, 2, false},
			{"SNI cut, every frame its own packet, last first", []int{sni + 1, sni + 5, mid, mid + 100}, nil, 1, true},
		} {
			t.Run(c.name, func(t *testing.T) {
				ds := quictest.Datagrams(version, dcid, hello, c.cuts, c.order, c.perPacket)
				if len(ds) < 2 {
					t.Fatalf("%d datagrams, want at least 2", len(ds))
				}
				if c.reorder {
					for i, j := 0, len(ds)-1; i < j; i, j = i+1, j-1 {
						ds[i], ds[j] = ds[j], ds[i]
					}
				}
				o := NewQUICOpener()
				var s QUICCryptoStream
				s.Reset(make([]byte, 4096))
				var h ClientHello
				// Every datagram but the last leaves the hello incomplete.
				if st := readQUICHello(t, o, &s, ds[:len(ds)-1], &h); st != NeedMore {
					t.Fatalf("after %d of %d datagrams: %v, want NeedMore", len(ds)-1, len(ds), st)
				}
				if st := readQUICHello(t, o, &s, ds[len(ds)-1:], &h); st != Done {
					t.Fatalf("after all datagrams: %v", st)
				}
				if string(h.SNI) != "pastebin.com" || len(h.ALPN) != 1 || string(h.ALPN[0]) != "h3" || h.Version != 0x0304 {
					t.Fatalf("SNI %q ALPN %q version %#x", h.SNI, h.ALPN, h.Version)
				}
			})
		}
	}
}

func TestQUICAllocs(t *testing.T) {
	hello := goQUICClientHello(t, "example.org")
	dcid := []byte{1, 2, 3, 4, 5, 6, 7, 8}
	ds := quictest.Datagrams(QUICv1, dcid, hello, []int{len(hello) / 2}, nil, 1)
	o := NewQUICOpener()
	var s QUICCryptoStream
	buf := make([]byte, 4096)
	var h ClientHello
	if n := testing.AllocsPerRun(100, func() {
		s.Reset(buf)
		if readQUICHello(t, o, &s, ds, &h) != Done {
			t.Fatal("not Done")
		}
	}); n != 0 {
		t.Errorf("opening, reassembling and parsing a known connection's ClientHello: %v allocations, want 0", n)
	}
	// A new connection's keys: the AES key schedules and the GCM.
	i := 0
	var p QUICPacket
	if n := testing.AllocsPerRun(100, func() {
		i++
		d := bytes.Clone(ds[0])
		d[6] = byte(i) // another DCID: the packet no longer decrypts, but the keys are derived
		o.Open(d, &p)
	}); n > 3+1 { // +1: the clone
		t.Errorf("a new connection: %v allocations, want at most 3 besides the test's own", n)
	}
}

func BenchmarkQUICClientHello(b *testing.B) {
	hello := goQUICClientHello(b, "example.org")
	ds := quictest.Datagrams(QUICv1, []byte{1, 2, 3, 4, 5, 6, 7, 8}, hello, []int{len(hello) / 2}, nil, 1)
	b.Run("known connection", func(b *testing.B) {
		o := NewQUICOpener()
		var s QUICCryptoStream
		buf := make([]byte, 4096)
		var h ClientHello
		b.ReportAllocs()
		for b.Loop() {
			s.Reset(buf)
			if readQUICHello(b, o, &s, ds, &h) != Done {
				b.Fatal("not Done")
			}
		}
	})
	b.Run("new connection", func(b *testing.B) {
		var s QUICCryptoStream
		buf := make([]byte, 4096)
		var h ClientHello
		b.ReportAllocs()
		for b.Loop() {
			o := QUICOpener{plain: make([]byte, 0, quicPlainBufSize), hdr: make([]byte, 0, quicHeaderBufSize)}
			s.Reset(buf)
			if readQUICHello(b, &o, &s, ds, &h) != Done {
				b.Fatal("not Done")
			}
		}
	})
}

// FuzzQUICInitial opens arbitrary datagrams: most fail to decrypt, so the
// seeds are real packets whose header bytes the fuzzer mutates.
func FuzzQUICInitial(f *testing.F) {
	f.Add(readHex(f, "rfc9001-a2-client-initial.hex"))
	f.Add(readHex(f, "rfc9369-a2-client-initial.hex"))
	hello := goQUICClientHello(f, "example.org")
	for _, d := range quictest.Datagrams(QUICv2, []byte{5, 5, 5, 5}, hello, []int{100, 700}, []int{1, 0, 2}, 3) {
		f.Add(d)
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		orig := bytes.Clone(b)
		o := NewQUICOpener()
		var p, p2 QUICPacket
		st := o.Open(b, &p)
		if !bytes.Equal(b, orig) {
			t.Fatal("Open modified its input")
		}
		frames := bytes.Clone(p.Frames)
		if st2 := NewQUICOpener().Open(b, &p2); st2 != st || !bytes.Equal(p2.Frames, frames) || p2.Version != p.Version {
			t.Fatalf("not deterministic: %v then %v", st, st2)
		}
		if st == Done && (p.Size > len(b) || len(p.Frames) == 0) {
			t.Fatalf("Done with size %d of %d, %d frame bytes", p.Size, len(b), len(p.Frames))
		}
		walkQUICFrames(t, p.Frames)
	})
}

// FuzzQUICFrames walks arbitrary decrypted payloads: frames, reassembly
// and the ClientHello parser behind them.
func FuzzQUICFrames(f *testing.F) {
	hello := goQUICClientHello(f, "example.org")
	f.Add(readHex(f, "rfc9001-a2-crypto-frame.hex"))
	f.Add(append(append(quictest.CryptoFrame(200, hello[200:]), 0x01, 0x00), quictest.CryptoFrame(0, hello[:200])...))
	f.Add([]byte{0x02, 0x05, 0x00, 0x02, 0x01, 0x00, 0x01, 0x00, 0x00, 0x1c, 0x0a, 0x00, 0x00})
	f.Fuzz(walkQUICFrames)
}

func walkQUICFrames(t *testing.T, frames []byte) {
	var f QUICFrames
	f.Reset(frames)
	var s QUICCryptoStream
	s.Reset(make([]byte, 2048))
	for {
		off, data, ok := f.NextCrypto()
		if !ok {
			break
		}
		if !within(data, frames) {
			t.Fatal("CRYPTO data outside the frames")
		}
		s.Add(off, data)
		if p := s.Prefix(); len(p) > len(s.buf) {
			t.Fatalf("prefix of %d bytes in a %d-byte buffer", len(p), len(s.buf))
		}
	}
	if f.Status() == NeedMore {
		t.Fatal("walk ended with NeedMore")
	}
	var h ClientHello
	if ParseHandshakeClientHello(s.Prefix(), &h) != Done && (h.SNI != nil || h.Version != 0) {
		t.Fatalf("result without Done: %+v", h)
	}
}

func TestParseHandshakeClientHello(t *testing.T) {
	hello := goQUICClientHello(t, "example.net")
	var h ClientHello
	for n := range len(hello) {
		if st := ParseHandshakeClientHello(hello[:n], &h); st != NeedMore || h.SNI != nil {
			t.Fatalf("%d of %d bytes: %v (SNI %q), want NeedMore", n, len(hello), st, h.SNI)
		}
	}
	if st := ParseHandshakeClientHello(append(bytes.Clone(hello), 2, 0, 0, 0), &h); st != Done || string(h.SNI) != "example.net" {
		t.Fatalf("whole message and more: %v, SNI %q", st, h.SNI)
	}
	for _, c := range []struct {
		name string
		b    []byte
	}{
		{"ServerHello", append([]byte{2}, hello[1:]...)},
		{"longer than 64 KiB", []byte{1, 0x01, 0x00, 0x01}},
		{"body not a ClientHello", []byte{1, 0, 0, 2, 3, 3}},
	} {
		if st := ParseHandshakeClientHello(c.b, &h); st != Malformed || h.SNI != nil {
			t.Errorf("%s: %v, want Malformed", c.name, st)
		}
	}
}
