package l7

import (
	"bytes"
	"crypto/ecdh"
	"crypto/rand"
	"crypto/tls"
	"io"
	"net"
	"sync"
	"testing"
	"unsafe"

	"golang.org/x/crypto/cryptobyte"
)

// tlsCase is a ClientHello captured from crypto/tls and what it must parse to.
type tlsCase struct {
	name    string
	rec     []byte // the client's bytes: one handshake record
	sni     string // "" means SNI nil
	ech     bool
	version uint16
	alpn    []string
}

// captureHello runs a crypto/tls client over a net.Pipe and returns the first
// record it writes (crypto/tls writes the whole ClientHello as one record,
// then blocks reading the server's answer).
func captureHello(tb testing.TB, cfg *tls.Config) []byte {
	tb.Helper()
	client, server := net.Pipe()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		_ = tls.Client(client, cfg).Handshake() // fails once server closes
	}()
	hdr := make([]byte, 5)
	if _, err := io.ReadFull(server, hdr); err != nil {
		tb.Fatalf("read record header: %v", err)
	}
	rec := make([]byte, 5+(int(hdr[3])<<8|int(hdr[4])))
	copy(rec, hdr)
	if _, err := io.ReadFull(server, rec[5:]); err != nil {
		tb.Fatalf("read record body: %v", err)
	}
	server.Close()
	client.Close()
	wg.Wait()
	return rec
}

// echConfigList builds a serialized ECHConfigList (draft-ietf-tls-esni,
// version 0xfe0d) for X25519 / HKDF-SHA256 / AES-128-GCM with public name
// publicName.
func echConfigList(tb testing.TB, publicName string) []byte {
	tb.Helper()
	key, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	var b cryptobyte.Builder
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { // ECHConfigList
		b.AddUint16(0xfe0d)
		b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { // ECHConfigContents
			b.AddUint8(7)     // config_id
			b.AddUint16(0x20) // DHKEM(X25519, HKDF-SHA256)
			b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(key.PublicKey().Bytes()) })
			b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
				b.AddUint16(1) // HKDF-SHA256
				b.AddUint16(1) // AES-128-GCM
			})
			b.AddUint8(0) // maximum_name_length
			b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes([]byte(publicName)) })
			b.AddUint16(0) // extensions
		})
	})
	return b.BytesOrPanic()
}

var (
	tlsCasesOnce sync.Once
	tlsCasesVal  []tlsCase
)

// tlsCases captures the real ClientHellos once per test binary.
func tlsCases(tb testing.TB) []tlsCase {
	tb.Helper()
	tlsCasesOnce.Do(func() {
		c := []tlsCase{
			{name: "tls12", sni: "example.com", version: tls.VersionTLS12,
				rec: captureHello(tb, &tls.Config{ServerName: "example.com",
					MinVersion: tls.VersionTLS12, MaxVersion: tls.VersionTLS12})},
			{name: "tls13", sni: "Www.Example.ORG", version: tls.VersionTLS13, alpn: []string{"h2", "http/1.1"},
				rec: captureHello(tb, &tls.Config{ServerName: "Www.Example.ORG", NextProtos: []string{"h2", "http/1.1"},
					MinVersion: tls.VersionTLS13, MaxVersion: tls.VersionTLS13})},
			{name: "default", sni: "a.b.example", version: tls.VersionTLS13,
				rec: captureHello(tb, &tls.Config{ServerName: "a.b.example"})},
			{name: "nosni-ip", sni: "", version: tls.VersionTLS13,
				rec: captureHello(tb, &tls.Config{ServerName: "192.0.2.1"})},
			{name: "nosni-ip-tls12", sni: "", version: tls.VersionTLS12,
				rec: captureHello(tb, &tls.Config{ServerName: "192.0.2.1", MaxVersion: tls.VersionTLS12})},
			{name: "ech", sni: "public.example", ech: true, version: tls.VersionTLS13,
				rec: captureHello(tb, &tls.Config{ServerName: "secret.example", MinVersion: tls.VersionTLS13,
					EncryptedClientHelloConfigList: echConfigList(tb, "public.example")})},
		}
		tlsCasesVal = c
	})
	if tlsCasesVal == nil {
		tb.Fatal("capturing ClientHellos failed")
	}
	return tlsCasesVal
}

// handshakeOf returns the handshake message (header included) of a
// single-record hello.
func handshakeOf(rec []byte) []byte { return rec[5:] }

// reframe splits the handshake message hs into records whose payloads have
// the given sizes (the last record takes the rest).
func reframe(hs []byte, vers uint16, sizes ...int) []byte {
	var out []byte
	for _, n := range sizes {
		n = min(n, len(hs))
		out = append(out, 22, byte(vers>>8), byte(vers), byte(n>>8), byte(n))
		out = append(out, hs[:n]...)
		hs = hs[n:]
	}
	if len(hs) > 0 {
		out = append(out, 22, byte(vers>>8), byte(vers), byte(len(hs)>>8), byte(len(hs)))
		out = append(out, hs...)
	}
	return out
}

type tlsExt struct {
	typ  uint16
	data []byte
}

// editHello rebuilds a single-record hello with its extensions passed
// through edit.
func editHello(tb testing.TB, rec []byte, edit func([]tlsExt) []tlsExt) []byte {
	tb.Helper()
	s := cryptobyte.String(rec[9:])
	var fixed []byte
	var sid, suites, comp, exts cryptobyte.String
	if !s.ReadBytes(&fixed, 34) || !s.ReadUint8LengthPrefixed(&sid) || !s.ReadUint16LengthPrefixed(&suites) ||
		!s.ReadUint8LengthPrefixed(&comp) || !s.ReadUint16LengthPrefixed(&exts) || !s.Empty() {
		tb.Fatal("editHello: cannot parse hello")
	}
	var list []tlsExt
	for !exts.Empty() {
		var e tlsExt
		var d cryptobyte.String
		if !exts.ReadUint16(&e.typ) || !exts.ReadUint16LengthPrefixed(&d) {
			tb.Fatal("editHello: bad extension")
		}
		e.data = d
		list = append(list, e)
	}
	list = edit(list)
	var b cryptobyte.Builder
	b.AddUint8(1)
	b.AddUint24LengthPrefixed(func(b *cryptobyte.Builder) {
		b.AddBytes(fixed)
		b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(sid) })
		b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(suites) })
		b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(comp) })
		b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
			for _, e := range list {
				b.AddUint16(e.typ)
				b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(e.data) })
			}
		})
	})
	return reframe(b.BytesOrPanic(), 0x0301)
}

func without(e []tlsExt, typ uint16) []tlsExt {
	var out []tlsExt
	for _, x := range e {
		if x.typ != typ {
			out = append(out, x)
		}
	}
	return out
}

func checkHello(t *testing.T, label string, got ClientHello, c tlsCase) {
	t.Helper()
	if c.sni == "" {
		if got.SNI != nil {
			t.Errorf("%s: SNI = %q, want nil", label, got.SNI)
		}
	} else if string(got.SNI) != c.sni {
		t.Errorf("%s: SNI = %q, want %q", label, got.SNI, c.sni)
	}
	if got.ECH != c.ech {
		t.Errorf("%s: ECH = %v, want %v", label, got.ECH, c.ech)
	}
	if got.Version != c.version {
		t.Errorf("%s: Version = %#04x, want %#04x", label, got.Version, c.version)
	}
	if c.alpn != nil {
		var alpn []string
		for _, p := range got.ALPN {
			alpn = append(alpn, string(p))
		}
		if len(alpn) != len(c.alpn) || (len(alpn) > 0 && alpn[0] != c.alpn[0]) || (len(alpn) > 1 && alpn[1] != c.alpn[1]) {
			t.Errorf("%s: ALPN = %q, want %q", label, alpn, c.alpn)
		}
	}
}

// checkPrefixes checks that every proper prefix of stream is NeedMore and
// the whole stream (and the stream with trailing bytes) is Done as c says.
func checkPrefixes(t *testing.T, label string, stream []byte, c tlsCase) {
	t.Helper()
	var out ClientHello
	scratch := make([]byte, 0, len(stream))
	for i := 0; i < len(stream); i++ {
		if st := ParseClientHello(stream[:i], &out); st != NeedMore {
			t.Fatalf("%s: prefix %d/%d: %v, want NeedMore", label, i, len(stream), st)
		}
		if st := ParseClientHelloScratch(stream[:i], scratch, &out); st != NeedMore {
			t.Fatalf("%s: scratch prefix %d/%d: %v, want NeedMore", label, i, len(stream), st)
		}
	}
	if st := ParseClientHello(stream, &out); st != Done {
		t.Fatalf("%s: full stream: %v, want Done", label, st)
	}
	checkHello(t, label, out, c)
	if st := ParseClientHelloScratch(stream, scratch, &out); st != Done {
		t.Fatalf("%s: full stream with scratch: %v, want Done", label, st)
	}
	checkHello(t, label+" scratch", out, c)
	more := append(append([]byte(nil), stream...), 0x14, 0x03, 0x03, 0x00, 0x01, 0x01, 0x17)
	if st := ParseClientHello(more, &out); st != Done {
		t.Fatalf("%s: stream + trailing bytes: %v, want Done", label, st)
	}
	checkHello(t, label+" trailing", out, c)
}

func TestTLSClientHelloCaptured(t *testing.T) {
	for _, c := range tlsCases(t) {
		t.Run(c.name, func(t *testing.T) {
			checkPrefixes(t, "single record", c.rec, c)
		})
	}
}

func TestTLSClientHelloMultiRecord(t *testing.T) {
	splits := [][]int{{1, 1}, {1, 2}, {2, 1}, {3, 1}, {4, 1}, {5, 100}, {40, 2}, {100, 200}, {300, 7}}
	for _, c := range tlsCases(t) {
		hs := handshakeOf(c.rec)
		t.Run(c.name, func(t *testing.T) {
			for _, sp := range splits {
				if sp[0]+sp[1] >= len(hs) {
					continue
				}
				stream := reframe(hs, 0x0303, sp...)
				checkPrefixes(t, "3 records", stream, c)
			}
			// The last record exactly two thirds, and some odd sizes.
			third := len(hs) / 3
			checkPrefixes(t, "thirds", reframe(hs, 0x0301, third, third), c)
			checkPrefixes(t, "record version 0x0300", reframe(hs, 0x0300, third), c)
			checkPrefixes(t, "one byte per record", reframe(hs, 0x0303, onesOf(len(hs)-1)...), c)
		})
	}
}

func onesOf(n int) []int {
	s := make([]int, n)
	for i := range s {
		s[i] = 1
	}
	return s
}

func TestTLSGREASEAndECH(t *testing.T) {
	cs := tlsCases(t)
	base := cs[0] // TLS 1.2, no supported_versions
	if base.name != "tls12" {
		t.Fatal("unexpected case order")
	}
	// GREASE versions (0xfafa is numerically above 0x0304) and a GREASE
	// extension must be ignored.
	greased := editHello(t, base.rec, func(e []tlsExt) []tlsExt {
		e = append([]tlsExt{{typ: 0x1a1a}}, without(e, 0x002b)...)
		return append(e, tlsExt{typ: 0x002b, data: []byte{6, 0xfa, 0xfa, 0x03, 0x04, 0x03, 0x03}},
			tlsExt{typ: 0xdada, data: []byte{0}})
	})
	checkPrefixes(t, "grease", greased, tlsCase{sni: base.sni, version: tls.VersionTLS13})
	onlyGrease := editHello(t, base.rec, func(e []tlsExt) []tlsExt {
		return append(without(e, 0x002b), tlsExt{typ: 0x002b, data: []byte{2, 0x0a, 0x0a}})
	})
	checkPrefixes(t, "grease only", onlyGrease, tlsCase{sni: base.sni, version: tls.VersionTLS12})
	// Crafted ECH extension on a TLS 1.2 hello, in addition to the real ECH
	// capture in tlsCases.
	withECH := editHello(t, base.rec, func(e []tlsExt) []tlsExt {
		return append(e, tlsExt{typ: 0xfe0d, data: []byte{1}})
	})
	checkPrefixes(t, "crafted ech", withECH, tlsCase{sni: base.sni, ech: true, version: tls.VersionTLS12})
	// No extensions at all.
	noExt := editHello(t, base.rec, func([]tlsExt) []tlsExt { return nil })
	// editHello always writes the extensions vector; drop it (2 bytes).
	noExt = noExt[:len(noExt)-2]
	noExt[3], noExt[4] = byte((len(noExt)-5)>>8), byte(len(noExt)-5)
	hl := len(noExt) - 9
	noExt[6], noExt[7], noExt[8] = byte(hl>>16), byte(hl>>8), byte(hl)
	checkPrefixes(t, "no extensions", noExt, tlsCase{version: tls.VersionTLS12})
}

func TestTLSMalformed(t *testing.T) {
	base := tlsCases(t)[0]
	dupSNI := editHello(t, base.rec, func(e []tlsExt) []tlsExt {
		for _, x := range e {
			if x.typ == 0 {
				return append(e, x)
			}
		}
		t.Fatal("no SNI")
		return nil
	})
	twoNames := editHello(t, base.rec, func(e []tlsExt) []tlsExt {
		d := []byte{0, 10, 0, 0, 2, 'a', 'b', 0, 0, 2, 'c', 'd'}
		for i := range e {
			if e[i].typ == 0 {
				e[i].data = d
			}
		}
		return e
	})
	hs := handshakeOf(base.rec)
	midAlert := reframe(hs, 0x0303, 10)
	midAlert = append(midAlert[:15:15], append([]byte{21, 3, 3, 0, 2, 2, 40}, midAlert[15:]...)...)
	serverHello := append([]byte{22, 3, 3, 0, 4, 2}, 0, 0, 0)
	for name, in := range map[string][]byte{
		"record major 0":        {22, 0, 1},
		"record major 2":        {22, 2},
		"empty record":          {22, 3, 1, 0, 0},
		"huge record":           {22, 3, 1, 0xff, 0xff},
		"server hello":          serverHello,
		"huge hello":            {22, 3, 1, 0, 4, 1, 0x10, 0, 0},
		"alert inside hello":    midAlert,
		"duplicate SNI ext":     dupSNI,
		"two host_name":         twoNames,
		"empty record in hello": reframe(hs, 0x0303, 10, 0),
	} {
		var out ClientHello
		if st := ParseClientHello(in, &out); st != Malformed {
			t.Errorf("%s: %v, want Malformed", name, st)
		}
	}
}

func TestTLSNotMatch(t *testing.T) {
	for _, in := range []string{
		"GET / HTTP/1.1\r\n",
		"SSH-2.0-OpenSSH_9.6\r\n",
		"\x80\x2e\x01\x03\x01\x00\x15\x00\x00\x00\x10", // SSLv2-compatible hello
		"\x15\x03\x03\x00\x02\x02\x28",                 // alert record
		"G",
	} {
		var out ClientHello
		if st := ParseClientHello([]byte(in), &out); st != NotMatch {
			t.Errorf("%q: %v, want NotMatch", in, st)
		}
	}
	var out ClientHello
	if st := ParseClientHello(nil, &out); st != NeedMore {
		t.Errorf("empty: %v, want NeedMore", st)
	}
}

// lengthFieldOffsets returns the offsets of every byte of every length field
// the parser reads in a single-record hello.
// strict marks the record, handshake and extension-block length bytes.
func lengthFieldOffsets(t *testing.T, rec []byte) (offs []int, strict map[int]bool) {
	t.Helper()
	u16 := func(i int) int { return int(rec[i])<<8 | int(rec[i+1]) }
	offs = []int{3, 4, 6, 7, 8}
	o := 9 + 34
	offs = append(offs, o) // session id
	o += 1 + int(rec[o])
	offs = append(offs, o, o+1) // cipher suites
	o += 2 + u16(o)
	offs = append(offs, o) // compression
	o += 1 + int(rec[o])
	offs = append(offs, o, o+1) // extensions
	strict = map[int]bool{3: true, 4: true, 6: true, 7: true, 8: true, o: true, o + 1: true}
	o += 2
	for o < len(rec) {
		typ, n := u16(o), u16(o+2)
		offs = append(offs, o+2, o+3)
		d := o + 4
		switch typ {
		case extServerName:
			offs = append(offs, d, d+1)
			for e := d + 2; e < d+n; e += 3 + u16(e+1) {
				offs = append(offs, e+1, e+2)
			}
		case extSupportedVersions:
			offs = append(offs, d)
		case extALPN:
			offs = append(offs, d, d+1)
			for e := d + 2; e < d+n; e += 1 + int(rec[e]) {
				offs = append(offs, e)
			}
		}
		o = d + n
	}
	if o != len(rec) {
		t.Fatalf("lengthFieldOffsets: walked to %d of %d", o, len(rec))
	}
	return offs, strict
}

// refSNI is an independent, straightforward reading of a single-record
// hello used to cross-check mutated inputs that still parse: it returns the
// host_name and whether the structure is well formed.
func refSNI(rec []byte) (sni []byte, ok bool) {
	s := cryptobyte.String(rec)
	var typ uint8
	var vers uint16
	var body, hs cryptobyte.String
	if !s.ReadUint8(&typ) || !s.ReadUint16(&vers) || !s.ReadUint16LengthPrefixed(&body) ||
		!body.ReadUint8(&typ) || typ != 1 || !body.ReadUint24LengthPrefixed(&hs) || !body.Empty() {
		return nil, false
	}
	var sid, suites, comp, exts cryptobyte.String
	if !hs.Skip(34) || !hs.ReadUint8LengthPrefixed(&sid) || !hs.ReadUint16LengthPrefixed(&suites) ||
		!hs.ReadUint8LengthPrefixed(&comp) {
		return nil, false
	}
	if hs.Empty() {
		return nil, true
	}
	if !hs.ReadUint16LengthPrefixed(&exts) || !hs.Empty() {
		return nil, false
	}
	for !exts.Empty() {
		var et uint16
		var d, list, name cryptobyte.String
		var nt uint8
		if !exts.ReadUint16(&et) || !exts.ReadUint16LengthPrefixed(&d) {
			return nil, false
		}
		if et == 0 && d.ReadUint16LengthPrefixed(&list) && list.ReadUint8(&nt) && nt == 0 &&
			list.ReadUint16LengthPrefixed(&name) {
			sni = name
		}
	}
	return sni, true
}

// TestTLSCorruptedLengths mutates every byte of every length field the
// parser reads to every other value. Record, handshake and extension-block
// lengths are checked exactly, so a mutation of them is always Malformed or
// NeedMore. A mutated inner length (session id, cipher suites, one
// extension) can by chance re-align onto a different well-formed hello; then
// Done is allowed, but only if an independent reading agrees on the SNI.
func TestTLSCorruptedLengths(t *testing.T) {
	for _, c := range tlsCases(t) {
		t.Run(c.name, func(t *testing.T) {
			offs, strict := lengthFieldOffsets(t, c.rec)
			mut := make([]byte, len(c.rec))
			var out ClientHello
			counts := map[Status]int{}
			for _, off := range offs {
				for v := 0; v < 256; v++ {
					if byte(v) == c.rec[off] {
						continue
					}
					copy(mut, c.rec)
					mut[off] = byte(v)
					st := ParseClientHello(mut, &out)
					counts[st]++
					switch {
					case st == Malformed || st == NeedMore:
					case st == Done && !strict[off]:
						ref, ok := refSNI(mut)
						if !ok || !bytes.Equal(ref, out.SNI) || !within(out.SNI, mut) {
							t.Errorf("offset %d = %#02x: Done with SNI %q, reference %q ok=%v", off, v, out.SNI, ref, ok)
						}
					default:
						t.Errorf("offset %d = %#02x: %v, want Malformed or NeedMore", off, v, st)
					}
				}
			}
			t.Logf("%d length bytes mutated: %v", len(offs), counts)
		})
	}
}

func TestTLSAllocs(t *testing.T) {
	c := tlsCases(t)[1] // TLS 1.3 with ALPN
	var out ClientHello
	if n := testing.AllocsPerRun(100, func() { ParseClientHello(c.rec, &out) }); n != 0 {
		t.Errorf("single record: %v allocs, want 0", n)
	}
	multi := reframe(handshakeOf(c.rec), 0x0303, 100, 300)
	scratch := make([]byte, 0, len(multi))
	if n := testing.AllocsPerRun(100, func() { ParseClientHelloScratch(multi, scratch, &out) }); n != 0 {
		t.Errorf("multi record with scratch: %v allocs, want 0", n)
	}
	if n := testing.AllocsPerRun(100, func() { ParseClientHello(multi, &out) }); n != 1 {
		t.Errorf("multi record without scratch: %v allocs, want 1", n)
	}
	if n := testing.AllocsPerRun(100, func() { ParseClientHello(multi[:len(multi)-1], &out) }); n != 0 {
		t.Errorf("incomplete multi record: %v allocs, want 0", n)
	}
	if ParseClientHelloScratch(multi, scratch, &out) != Done || !within(out.SNI, scratch[:cap(scratch)]) {
		t.Errorf("multi record: SNI %q not in scratch", out.SNI)
	}
}

// within reports whether sub is empty or lies inside buf's memory.
func within(sub, buf []byte) bool {
	if len(sub) == 0 {
		return true
	}
	if len(buf) == 0 {
		return false
	}
	s := uintptr(unsafe.Pointer(unsafe.SliceData(sub)))
	b := uintptr(unsafe.Pointer(unsafe.SliceData(buf)))
	return s >= b && s+uintptr(len(sub)) <= b+uintptr(len(buf))
}

func FuzzParseClientHello(f *testing.F) {
	for _, c := range tlsCases(f) {
		hs := handshakeOf(c.rec)
		f.Add(c.rec)
		f.Add(reframe(hs, 0x0303, 1, 200))
		f.Add(reframe(hs, 0x0301, len(hs)/3, len(hs)/3))
	}
	f.Add(ja4SpecHello(f, true).bytes())
	f.Add(ja4Hello{legacy: 0x0303, ciphers: []uint16{0x0a0a}, exts: []tlsExt{ja4ALPNExt("\xba\xad"), ja4SigAlgsExt()}}.bytes())
	f.Add([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
	f.Add([]byte("SSH-2.0-OpenSSH_9.6\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		var out, out2 ClientHello
		scratch := make([]byte, 0, len(b))
		st := ParseClientHello(b, &out)
		st2 := ParseClientHelloScratch(b, scratch, &out2)
		if st != st2 || !bytes.Equal(out.SNI, out2.SNI) || out.ECH != out2.ECH || out.Version != out2.Version ||
			len(out.ALPN) != len(out2.ALPN) || !bytes.Equal(out.CipherSuites, out2.CipherSuites) ||
			out.Extensions != out2.Extensions || out.NumExtensions != out2.NumExtensions ||
			!bytes.Equal(out.RawExtensions, out2.RawExtensions) ||
			!bytes.Equal(out.SignatureAlgorithms, out2.SignatureAlgorithms) ||
			out.HasSNI != out2.HasSNI || out.HasALPN != out2.HasALPN {
			t.Fatalf("ParseClientHello %v %+v != ParseClientHelloScratch %v %+v", st, out, st2, out2)
		}
		if st != Done && (out.SNI != nil || out.ECH || out.Version != 0 || len(out.ALPN) != 0 ||
			out.CipherSuites != nil || out.NumExtensions != 0 || out.Extensions != [MaxExtensions]uint16{} ||
			out.RawExtensions != nil || out.SignatureAlgorithms != nil || out.HasSNI || out.HasALPN) {
			t.Fatalf("%v with a result %+v", st, out)
		}
		// JA4 never panics (not even on a result that is not Done), has a
		// fixed length, is deterministic, agrees with the scratch parse and
		// with the plain reference computation.
		ja4 := out.AppendJA4(nil, JA4TCP)
		raw := out.AppendJA4Raw(nil, JA4QUIC)
		if len(ja4) != JA4Len || string(out.AppendJA4(nil, JA4TCP)) != string(ja4) ||
			string(out2.AppendJA4(nil, JA4TCP)) != string(ja4) || string(raw[1:10]) != string(ja4[1:10]) {
			t.Fatalf("JA4 %s, again %s, scratch parse %s, JA4_r %s", ja4, out.AppendJA4(nil, JA4TCP), out2.AppendJA4(nil, JA4TCP), raw)
		}
		if st == Done {
			if ref, refRaw := refJA4(t, &out, JA4QUIC); "q"+string(ja4[1:]) != ref || string(raw) != refRaw {
				t.Fatalf("JA4 %s, JA4_r %s; reference %s, %s", ja4, raw, ref, refRaw)
			}
		}
		if (out.SNI != nil) != (out2.SNI != nil) {
			t.Fatalf("SNI nil-ness differs")
		}
		if !within(out.SNI, b) && !within(out.SNI, scratch[:cap(scratch)]) && out.SNI != nil && len(b) > 0 {
			// Without scratch a multi-record hello is copied: compare with
			// the scratch run, which must point into b or scratch.
			if !within(out2.SNI, b) && !within(out2.SNI, scratch[:cap(scratch)]) {
				t.Fatalf("SNI %q points outside input and scratch", out2.SNI)
			}
		}
		if !within(out2.SNI, b) && !within(out2.SNI, scratch[:cap(scratch)]) {
			t.Fatalf("SNI %q points outside input and scratch", out2.SNI)
		}
		if len(out.SNI) > 0 && cap(out.SNI) != len(out.SNI) {
			t.Fatalf("SNI capacity %d exceeds length %d", cap(out.SNI), len(out.SNI))
		}
		// Decisions are final: a prefix that is decided gives the same
		// answer as the whole input.
		stride := max(1, len(b)/32)
		for i := 0; i < len(b); i += stride {
			var p ClientHello
			ps := ParseClientHello(b[:i], &p)
			if ps == NeedMore {
				continue
			}
			if ps != st {
				t.Fatalf("prefix %d: %v, whole input: %v", i, ps, st)
			}
			if ps == Done && (!bytes.Equal(p.SNI, out.SNI) || p.Version != out.Version || p.ECH != out.ECH ||
				string(p.AppendJA4(nil, JA4TCP)) != string(ja4)) {
				t.Fatalf("prefix %d: %+v, whole input: %+v", i, p, out)
			}
		}
	})
}

func BenchmarkParseClientHello(b *testing.B) {
	cs := tlsCases(b)
	multi := reframe(handshakeOf(cs[1].rec), 0x0303, 100, 300)
	for _, bc := range []struct {
		name    string
		in      []byte
		scratch bool
	}{
		{"tls12", cs[0].rec, false},
		{"tls13-alpn", cs[1].rec, false},
		{"ech", cs[5].rec, false},
		{"3records-scratch", multi, true},
		{"3records-alloc", multi, false},
	} {
		b.Run(bc.name, func(b *testing.B) {
			var out ClientHello
			var scratch []byte
			if bc.scratch {
				scratch = make([]byte, 0, len(bc.in))
			}
			b.SetBytes(int64(len(bc.in)))
			b.ReportAllocs()
			for b.Loop() {
				if ParseClientHelloScratch(bc.in, scratch, &out) != Done {
					b.Fatal("not Done")
				}
			}
		})
	}
}
