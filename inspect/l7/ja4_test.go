package l7

import (
	"crypto/sha256"
	"crypto/tls"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"testing"

	"golang.org/x/crypto/cryptobyte"
)

// ja4Hello describes a ClientHello to build for a JA4 test.
type ja4Hello struct {
	legacy  uint16   // legacy_version
	ciphers []uint16 // in wire order
	exts    []tlsExt // in wire order
}

// bytes returns the hello as TLS records: one record unless it is longer
// than 2^14 bytes.
func (h ja4Hello) bytes() []byte {
	var b cryptobyte.Builder
	b.AddUint8(1)
	b.AddUint24LengthPrefixed(func(b *cryptobyte.Builder) {
		b.AddUint16(h.legacy)
		b.AddBytes(make([]byte, 32)) // random
		b.AddUint8(0)                // session id
		b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
			for _, c := range h.ciphers {
				b.AddUint16(c)
			}
		})
		b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddUint8(0) })
		if h.exts == nil {
			return
		}
		b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
			for _, e := range h.exts {
				b.AddUint16(e.typ)
				b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes(e.data) })
			}
		})
	})
	hs := b.BytesOrPanic()
	var sizes []int
	for n := len(hs); n > 1<<14; n -= 1 << 14 {
		sizes = append(sizes, 1<<14)
	}
	return reframe(hs, 0x0301, sizes...)
}

// parse parses the hello and fails the test unless it is Done.
func (h ja4Hello) parse(t testing.TB) *ClientHello {
	t.Helper()
	out := new(ClientHello)
	if st := ParseClientHello(h.bytes(), out); st != Done {
		t.Fatalf("built hello: %v, want Done", st)
	}
	return out
}

func ja4SNIExt(name string) tlsExt {
	var b cryptobyte.Builder
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
		b.AddUint8(0)
		b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes([]byte(name)) })
	})
	return tlsExt{typ: 0x0000, data: b.BytesOrPanic()}
}

func ja4ALPNExt(protos ...string) tlsExt {
	var b cryptobyte.Builder
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
		for _, p := range protos {
			b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) { b.AddBytes([]byte(p)) })
		}
	})
	return tlsExt{typ: 0x0010, data: b.BytesOrPanic()}
}

func ja4VersionsExt(vs ...uint16) tlsExt {
	var b cryptobyte.Builder
	b.AddUint8LengthPrefixed(func(b *cryptobyte.Builder) {
		for _, v := range vs {
			b.AddUint16(v)
		}
	})
	return tlsExt{typ: 0x002b, data: b.BytesOrPanic()}
}

func ja4SigAlgsExt(algs ...uint16) tlsExt {
	var b cryptobyte.Builder
	b.AddUint16LengthPrefixed(func(b *cryptobyte.Builder) {
		for _, a := range algs {
			b.AddUint16(a)
		}
	})
	return tlsExt{typ: 0x000d, data: b.BytesOrPanic()}
}

// ja4List parses a comma-separated list of 4-digit hex values.
func ja4List(t testing.TB, s string) []uint16 {
	t.Helper()
	if s == "" {
		return nil
	}
	var out []uint16
	for _, f := range strings.Split(s, ",") {
		v, err := strconv.ParseUint(f, 16, 16)
		if err != nil || len(f) != 4 {
			t.Fatalf("bad list entry %q", f)
		}
		out = append(out, uint16(v))
	}
	return out
}

// ja4Wire is the inverse of the version mapping, for building hellos.
var ja4Wire = map[string]uint16{
	"13": 0x0304, "12": 0x0303, "11": 0x0302, "10": 0x0301, "s3": 0x0300, "s2": 0x0002,
}

// ja4FromOriginal builds a hello from a JA4_ro string (the lists in wire
// order, GREASE removed, SNI and ALPN kept). alpn overrides the ALPN names
// derived from the ALPN characters. With grease, GREASE values are added to
// every list, which must not change the fingerprint.
func ja4FromOriginal(t testing.TB, ro string, alpn []string, grease bool) ja4Hello {
	t.Helper()
	parts := strings.Split(ro, "_")
	if len(parts) < 3 || len(parts) > 4 || len(parts[0]) != 10 {
		t.Fatalf("bad JA4_ro %q", ro)
	}
	a := parts[0]
	ver, ok := ja4Wire[a[1:3]]
	if !ok {
		t.Fatalf("JA4_ro %q: unknown version", ro)
	}
	if alpn == nil {
		switch a[8:10] {
		case "00":
		case "h1":
			alpn = []string{"http/1.1", "h2"}
		default:
			alpn = []string{a[8:10]}
		}
	}
	h := ja4Hello{legacy: ver, ciphers: ja4List(t, parts[1])}
	if grease {
		h.ciphers = append([]uint16{0x0a0a}, h.ciphers...)
		h.exts = append(h.exts, tlsExt{typ: 0x1a1a})
	}
	var sigs []uint16
	if len(parts) == 4 {
		sigs = ja4List(t, parts[3])
		if grease {
			sigs = append([]uint16{0x2a2a}, sigs...)
		}
	}
	for _, typ := range ja4List(t, parts[2]) {
		switch typ {
		case 0x0000:
			h.exts = append(h.exts, ja4SNIExt("example.com"))
		case 0x0010:
			h.exts = append(h.exts, ja4ALPNExt(alpn...))
		case 0x000d:
			h.exts = append(h.exts, ja4SigAlgsExt(sigs...))
		case 0x002b:
			h.legacy = 0x0303
			vs := []uint16{ver}
			if grease {
				vs = []uint16{0xfafa, ver, 0x0301}
			}
			h.exts = append(h.exts, ja4VersionsExt(vs...))
		default:
			h.exts = append(h.exts, tlsExt{typ: typ})
		}
	}
	if grease {
		h.exts = append(h.exts, tlsExt{typ: 0xeaea, data: []byte{0}})
	}
	return h
}

// refJA4 computes JA4 and JA4_r of a parsed hello the plain way, with fmt,
// sort, strings and crypto/sha256, reading the extension types from
// RawExtensions.
func refJA4(t testing.TB, h *ClientHello, transport byte) (ja4, raw string) {
	t.Helper()
	grease := func(v uint16) bool { return v>>8 == v&0xff && v&0x0f == 0x0a }
	hexList := func(b []byte) []string {
		var out []string
		for i := 0; i+2 <= len(b); i += 2 {
			if v := binary.BigEndian.Uint16(b[i:]); !grease(v) {
				out = append(out, fmt.Sprintf("%04x", v))
			}
		}
		return out
	}
	ciphers := hexList(h.CipherSuites)
	sigs := hexList(h.SignatureAlgorithms)
	var exts []string
	nExt := 0
	s := cryptobyte.String(h.RawExtensions)
	for !s.Empty() {
		var typ uint16
		var data cryptobyte.String
		if !s.ReadUint16(&typ) || !s.ReadUint16LengthPrefixed(&data) {
			t.Fatalf("refJA4: bad RawExtensions")
		}
		if grease(typ) {
			continue
		}
		nExt++
		if typ != 0x0000 && typ != 0x0010 {
			exts = append(exts, fmt.Sprintf("%04x", typ))
		}
	}
	version, ok := map[uint16]string{
		0x0304: "13", 0x0303: "12", 0x0302: "11", 0x0301: "10", 0x0300: "s3", 0x0002: "s2",
		0xfeff: "d1", 0xfefd: "d2", 0xfefc: "d3",
	}[h.Version]
	if !ok {
		version = "00"
	}
	sni := "i"
	if h.HasSNI {
		sni = "d"
	}
	alpn := "00"
	if len(h.ALPN) > 0 && len(h.ALPN[0]) > 0 {
		p := h.ALPN[0]
		const alnum = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
		if strings.IndexByte(alnum, p[0]) >= 0 && strings.IndexByte(alnum, p[len(p)-1]) >= 0 {
			alpn = string(p[:1]) + string(p[len(p)-1:])
		} else {
			x := hex.EncodeToString(p)
			alpn = x[:1] + x[len(x)-1:]
		}
	}
	a := fmt.Sprintf("%c%s%s%02d%02d%s", transport, version, sni, min(len(ciphers), 99), min(nExt, 99), alpn)
	sort.Strings(ciphers)
	sort.Strings(exts)
	b := strings.Join(ciphers, ",")
	c := strings.Join(exts, ",")
	if len(sigs) > 0 {
		c += "_" + strings.Join(sigs, ",")
	}
	hash := func(s string, empty bool) string {
		if empty {
			return "000000000000"
		}
		sum := sha256.Sum256([]byte(s))
		return hex.EncodeToString(sum[:])[:12]
	}
	return a + "_" + hash(b, len(ciphers) == 0) + "_" + hash(c, len(exts) == 0), a + "_" + b + "_" + c
}

// ja4Check checks both forms of h's fingerprint.
func ja4Check(t *testing.T, label string, h *ClientHello, transport byte, ja4, raw string) {
	t.Helper()
	if got := string(h.AppendJA4(nil, transport)); got != ja4 {
		t.Errorf("%s: JA4 = %s, want %s", label, got, ja4)
	}
	if got := string(h.AppendJA4Raw(nil, transport)); got != raw {
		t.Errorf("%s: JA4_r = %s\n\twant %s", label, got, raw)
	}
}

// The example of FoxIO-LLC/ja4 technical_details/JA4.md ("Extension hash",
// "Example" and "Raw Output").
var (
	ja4SpecCiphers = "1301,1302,1303,c02b,c02f,c02c,c030,cca9,cca8,c013,c014,009c,009d,002f,0035"
	ja4SpecExts    = "001b,0000,0033,0010,4469,0017,002d,000d,0005,0023,0012,002b,ff01,000b,000a,0015"
	ja4SpecSigAlgs = "0403,0804,0401,0503,0805,0501,0806,0601"
	ja4SpecJA4     = "t13d1516h2_8daaf6152771_e5627efa2ab1"
	ja4SpecJA4R    = "t13d1516h2_002f,0035,009c,009d,1301,1302,1303,c013,c014,c02b,c02c,c02f,c030,cca8,cca9_0005,000a,000b,000d,0012,0015,0017,001b,0023,002b,002d,0033,4469,ff01_0403,0804,0401,0503,0805,0501,0806,0601"
)

func ja4SpecHello(t testing.TB, grease bool) ja4Hello {
	return ja4FromOriginal(t, "t13d1516h2_"+ja4SpecCiphers+"_"+ja4SpecExts+"_"+ja4SpecSigAlgs, nil, grease)
}

func TestJA4SpecExample(t *testing.T) {
	// The spec's intermediate values first: the sorted cipher list, the
	// extension string and the string without signature algorithms.
	for s, want := range map[string]string{
		"002f,0035,009c,009d,1301,1302,1303,c013,c014,c02b,c02c,c02f,c030,cca8,cca9":                                    "8daaf6152771",
		"0005,000a,000b,000d,0012,0015,0017,001b,0023,002b,002d,0033,4469,ff01_0403,0804,0401,0503,0805,0501,0806,0601": "e5627efa2ab1",
		"0005,000a,000b,000d,0012,0015,0017,001b,0023,002b,002d,0033,4469,ff01":                                         "6d807ffa2a79",
	} {
		if got := string(ja4AppendHash(nil, []byte(s))); got != want {
			t.Errorf("hash of %s = %s, want %s", s, got, want)
		}
	}
	for _, grease := range []bool{false, true} {
		h := ja4SpecHello(t, grease).parse(t)
		label := fmt.Sprintf("grease=%v", grease)
		ja4Check(t, label, h, JA4TCP, ja4SpecJA4, ja4SpecJA4R)
		ja4Check(t, label+" quic", h, JA4QUIC, "q"+ja4SpecJA4[1:], "q"+ja4SpecJA4R[1:])
		if got := h.AppendJA4([]byte("ja4="), JA4TCP); string(got) != "ja4="+ja4SpecJA4 {
			t.Errorf("%s: appending to a prefix: %s", label, got)
		}
	}

	// "If there are no signature algorithms in the hello packet, then the
	// string ends without an underscore": 0x000d with an empty list, with
	// only GREASE, or malformed (then not recorded at all).
	noSigs := strings.TrimSuffix(ja4SpecJA4R, "_"+ja4SpecSigAlgs)
	for name, data := range map[string][]byte{
		"empty list":    {0, 0},
		"only GREASE":   {0, 4, 0x0a, 0x0a, 0xba, 0xba},
		"bad length":    {0, 4, 4, 3},
		"odd length":    {0, 3, 4, 3, 8},
		"no list":       nil,
		"trailing byte": {0, 2, 4, 3, 0},
	} {
		hh := ja4SpecHello(t, false)
		for i := range hh.exts {
			if hh.exts[i].typ == 0x000d {
				hh.exts[i].data = data
			}
		}
		ja4Check(t, "signature_algorithms "+name, hh.parse(t), JA4TCP, "t13d1516h2_8daaf6152771_6d807ffa2a79", noSigs)
	}
}

// ja4Published are fingerprints FoxIO's implementation published with their
// lists, from FoxIO-LLC/ja4 python/test/testdata/<src> (the JA4, JA4_r and
// JA4_ro fields of one TLS client of each distinct JA4). The hellos are
// rebuilt from JA4_ro, the lists in wire order.
var ja4Published = []struct {
	src              string
	alpn             []string // ALPN names, when not derivable from the fingerprint
	ja4, ja4r, ja4ro string
}{
	{
		src:   "badcurveball.pcap.json",
		ja4:   "t13d1615h2_46e7e9700bed_45f260be83e2",
		ja4r:  "t13d1615h2_000a,002f,0035,009c,009d,1301,1302,1303,c013,c014,c02b,c02c,c02f,c030,cca8,cca9_0005,000a,000b,000d,0012,0015,0017,001b,0023,002b,002d,0033,ff01_0403,0804,0401,0503,0805,0501,0806,0601,0201",
		ja4ro: "t13d1615h2_1301,1302,1303,c02b,c02f,c02c,c030,cca9,cca8,c013,c014,009c,009d,002f,0035,000a_0000,0017,ff01,000a,000b,0023,0010,0005,000d,0012,0033,002d,002b,001b,0015_0403,0804,0401,0503,0805,0501,0806,0601,0201",
	},
	{
		src:   "browsers-x509.pcapng.json",
		ja4:   "t13d1516h2_8daaf6152771_e5627efa2ab1",
		ja4r:  "t13d1516h2_002f,0035,009c,009d,1301,1302,1303,c013,c014,c02b,c02c,c02f,c030,cca8,cca9_0005,000a,000b,000d,0012,0015,0017,001b,0023,002b,002d,0033,4469,ff01_0403,0804,0401,0503,0805,0501,0806,0601",
		ja4ro: "t13d1516h2_1301,1302,1303,c02b,c02f,c02c,c030,cca9,cca8,c013,c014,009c,009d,002f,0035_000d,0000,000a,0005,000b,002b,001b,ff01,0033,4469,002d,0023,0017,0012,0010,0015_0403,0804,0401,0503,0805,0501,0806,0601",
	},
	{
		src:   "https3-301-get.pcap.json",
		ja4:   "t10d230100_6a57a6f57151_000000000000",
		ja4r:  "t10d230100_0003,0004,0005,0006,0008,0009,000a,0011,0012,0013,0014,0015,0016,002f,0032,0033,0035,0038,0039,0096,0099,009a,00ff_",
		ja4ro: "t10d230100_0039,0038,0035,0016,0013,000a,0033,0032,002f,009a,0099,0096,0005,0004,0015,0012,0009,0014,0011,0008,0006,0003,00ff_0000",
	},
	{
		src:   "ipv6.pcapng.json",
		ja4:   "t12d4605h2_85626a9a5f7f_aaf95bb78ec9",
		ja4r:  "t12d4605h2_0004,0005,000a,0016,002f,0033,0035,0039,003c,003d,0041,0045,0067,006b,0081,0084,0088,009c,009d,009e,009f,00ba,00be,00c0,00c4,00ff,c007,c008,c009,c00a,c011,c012,c013,c014,c023,c024,c027,c028,c02b,c02c,c02f,c030,cca8,cca9,ccaa,ff85_000a,000b,000d_0601,0603,efef,0501,0503,0401,0403,eeee,eded,0301,0303,0201,0203",
		ja4ro: "t12d4605h2_c030,c02c,c028,c024,c014,c00a,009f,006b,0039,cca9,cca8,ccaa,ff85,00c4,0088,0081,009d,003d,0035,00c0,0084,c02f,c02b,c027,c023,c013,c009,009e,0067,0033,00be,0045,009c,003c,002f,00ba,0041,c011,c007,0005,0004,c012,c008,0016,000a,00ff_0000,000b,000a,000d,0010_0601,0603,efef,0501,0503,0401,0403,eeee,eded,0301,0303,0201,0203",
	},
	{
		src:   "latest.pcapng.json",
		ja4:   "t12d190800_d83cc789557e_7af1ed941c26",
		ja4r:  "t12d190800_000a,002f,0035,003c,003d,009c,009d,c009,c00a,c013,c014,c023,c024,c027,c028,c02b,c02c,c02f,c030_0005,000a,000b,000d,0017,0023,ff01_0804,0805,0806,0401,0501,0201,0403,0503,0203,0202,0601,0603",
		ja4ro: "t12d190800_c02c,c02b,c030,c02f,c024,c023,c028,c027,c00a,c009,c014,c013,009d,009c,003d,003c,0035,002f,000a_0000,0005,000a,000b,000d,0023,0017,ff01_0804,0805,0806,0401,0501,0201,0403,0503,0203,0202,0601,0603",
	},
	{
		src:   "latest.pcapng.json",
		ja4:   "t13d1516h2_8daaf6152771_9b887d9acb53",
		ja4r:  "t13d1516h2_002f,0035,009c,009d,1301,1302,1303,c013,c014,c02b,c02c,c02f,c030,cca8,cca9_0005,000a,000b,000d,0012,0017,001b,0023,0029,002b,002d,0033,4469,ff01_0403,0804,0401,0503,0805,0501,0806,0601",
		ja4ro: "t13d1516h2_1301,1302,1303,c02b,c02f,c02c,c030,cca9,cca8,c013,c014,009c,009d,002f,0035_000d,0010,0000,000b,0023,4469,ff01,0033,000a,002d,002b,0005,0017,0012,001b,0029_0403,0804,0401,0503,0805,0501,0806,0601",
	},
	{
		src:   "macos_tcp_flags.pcap.json",
		ja4:   "t13d2613h2_2802a3db6c62_845d286b0d67",
		ja4r:  "t13d2613h2_000a,002f,0035,003c,003d,009c,009d,1301,1302,1303,c008,c009,c00a,c012,c013,c014,c023,c024,c027,c028,c02b,c02c,c02f,c030,cca8,cca9_0005,000a,000b,000d,0012,0015,0017,002b,002d,0033,ff01_0403,0804,0401,0503,0203,0805,0805,0501,0806,0601,0201",
		ja4ro: "t13d2613h2_1301,1302,1303,c02c,c02b,c024,c023,c00a,c009,cca9,c030,c02f,c028,c027,c014,c013,cca8,009d,009c,003d,003c,0035,002f,c008,c012,000a_ff01,0000,0017,000d,0005,0012,0010,000b,0033,002d,002b,000a,0015_0403,0804,0401,0503,0203,0805,0805,0501,0806,0601,0201",
	},
	{
		src:   "ssh2.pcapng.json",
		ja4:   "t12d1909h2_d83cc789557e_7af1ed941c26",
		ja4r:  "t12d1909h2_000a,002f,0035,003c,003d,009c,009d,c009,c00a,c013,c014,c023,c024,c027,c028,c02b,c02c,c02f,c030_0005,000a,000b,000d,0017,0023,ff01_0804,0805,0806,0401,0501,0201,0403,0503,0203,0202,0601,0603",
		ja4ro: "t12d1909h2_c02c,c02b,c030,c02f,c024,c023,c028,c027,c00a,c009,c014,c013,009d,009c,003d,003c,0035,002f,000a_0000,0005,000a,000b,000d,0023,0010,0017,ff01_0804,0805,0806,0401,0501,0201,0403,0503,0203,0202,0601,0603",
	},
	{
		src:   "tls-handshake.pcapng.json",
		ja4:   "t13d1516h1_8daaf6152771_e5627efa2ab1",
		ja4r:  "t13d1516h1_002f,0035,009c,009d,1301,1302,1303,c013,c014,c02b,c02c,c02f,c030,cca8,cca9_0005,000a,000b,000d,0012,0015,0017,001b,0023,002b,002d,0033,4469,ff01_0403,0804,0401,0503,0805,0501,0806,0601",
		ja4ro: "t13d1516h1_1301,1302,1303,c02b,c02f,c02c,c030,cca9,cca8,c013,c014,009c,009d,002f,0035_000d,0033,0000,ff01,002b,0023,002d,0005,0012,000b,0017,4469,0010,001b,000a,0015_0403,0804,0401,0503,0805,0501,0806,0601",
	},
	{
		src:   "tls-handshake.pcapng.json",
		ja4:   "t13d151400_8daaf6152771_de4a06bb82e3",
		ja4r:  "t13d151400_002f,0035,009c,009d,1301,1302,1303,c013,c014,c02b,c02c,c02f,c030,cca8,cca9_0005,000a,000b,000d,0012,0015,0017,001b,0023,002b,002d,0033,ff01_0403,0804,0401,0503,0805,0501,0806,0601",
		ja4ro: "t13d151400_1301,1302,1303,c02b,c02f,c02c,c030,cca9,cca8,c013,c014,009c,009d,002f,0035_0033,002b,001b,0000,0012,002d,000d,000a,0005,0023,0017,ff01,000b,0015_0403,0804,0401,0503,0805,0501,0806,0601",
	},
	{
		src:   "tls-handshake.pcapng.json",
		ja4:   "t13d1517h1_8daaf6152771_6cdcb247c39b",
		ja4r:  "t13d1517h1_002f,0035,009c,009d,1301,1302,1303,c013,c014,c02b,c02c,c02f,c030,cca8,cca9_0005,000a,000b,000d,0012,0015,0017,001b,0023,0029,002b,002d,0033,4469,ff01_0403,0804,0401,0503,0805,0501,0806,0601",
		ja4ro: "t13d1517h1_1301,1302,1303,c02b,c02f,c02c,c030,cca9,cca8,c013,c014,009c,009d,002f,0035_0000,0017,0005,002b,0012,0023,000a,0033,0010,002d,001b,4469,000b,000d,ff01,0015,0029_0403,0804,0401,0503,0805,0501,0806,0601",
	},
	{
		src:   "tls-handshake.pcapng.json",
		ja4:   "t13d1515h2_8daaf6152771_f37e75b10bcc",
		ja4r:  "t13d1515h2_002f,0035,009c,009d,1301,1302,1303,c013,c014,c02b,c02c,c02f,c030,cca8,cca9_0005,000a,000b,000d,0012,0017,001b,0023,002b,002d,0033,4469,ff01_0403,0804,0401,0503,0805,0501,0806,0601",
		ja4ro: "t13d1515h2_1301,1302,1303,c02b,c02f,c02c,c030,cca9,cca8,c013,c014,009c,009d,002f,0035_0005,001b,0033,002d,4469,000a,000d,0012,ff01,000b,0023,002b,0000,0017,0010_0403,0804,0401,0503,0805,0501,0806,0601",
	},
	{
		src: "tls-non-ascii-alpn.pcapng.json",
		// Published as t13d151699_…: FoxIO's implementations print "99" for
		// a non-ASCII ALPN, the specification the hex form: the first ALPN
		// name in that capture (pcap/tls-non-ascii-alpn.pcapng there) is
		// 0xba 0xad, so "bd".
		alpn:  []string{"\xba\xad", "http/1.1"},
		ja4:   "t13d1516bd_8daaf6152771_e5627efa2ab1",
		ja4r:  "t13d1516bd_002f,0035,009c,009d,1301,1302,1303,c013,c014,c02b,c02c,c02f,c030,cca8,cca9_0005,000a,000b,000d,0012,0015,0017,001b,0023,002b,002d,0033,4469,ff01_0403,0804,0401,0503,0805,0501,0806,0601",
		ja4ro: "t13d1516bd_1301,1302,1303,c02b,c02f,c02c,c030,cca9,cca8,c013,c014,009c,009d,002f,0035_ff01,0033,002d,0005,4469,000d,0010,0023,001b,002b,0000,0012,000a,0017,000b,0015_0403,0804,0401,0503,0805,0501,0806,0601",
	},
	{
		src:   "tls12.pcap.json",
		ja4:   "t13d1715h2_5b57614c22b0_3d5424432f57",
		ja4r:  "t13d1715h2_002f,0035,009c,009d,1301,1302,1303,c009,c00a,c013,c014,c02b,c02c,c02f,c030,cca8,cca9_0005,000a,000b,000d,0015,0017,001c,0022,0023,002b,002d,0033,ff01_0403,0503,0603,0804,0805,0806,0401,0501,0601,0203,0201",
		ja4ro: "t13d1715h2_1301,1303,1302,c02b,c02f,cca9,cca8,c02c,c030,c00a,c009,c013,c014,009c,009d,002f,0035_0000,0017,ff01,000a,000b,0023,0010,0005,0022,0033,002b,000d,002d,001c,0015_0403,0503,0603,0804,0805,0806,0401,0501,0601,0203,0201",
	},
	{
		src:   "sigalg-grease.pcapng.json",
		ja4:   "t13d1517h2_8daaf6152771_cb7bf5808d99",
		ja4r:  "t13d1517h2_002f,0035,009c,009d,1301,1302,1303,c013,c014,c02b,c02c,c02f,c030,cca8,cca9_0005,000a,000b,000d,0012,0017,001b,0023,002b,002d,0033,44cd,ca34,fe0d,ff01_0904,0905,0906,0403,0804,0401,0503,0805,0501,0806,0601",
		ja4ro: "t13d1517h2_1301,1302,1303,c02b,c02f,c02c,c030,cca9,cca8,c013,c014,009c,009d,002f,0035_fe0d,0010,0017,0033,44cd,ff01,000a,000d,0023,002b,000b,ca34,002d,0000,0005,001b,0012_0904,0905,0906,0403,0804,0401,0503,0805,0501,0806,0601",
	},
}

func TestJA4Published(t *testing.T) {
	for _, c := range ja4Published {
		for _, grease := range []bool{false, true} {
			label := fmt.Sprintf("%s %s grease=%v", c.src, c.ja4, grease)
			h := ja4FromOriginal(t, c.ja4ro, c.alpn, grease).parse(t)
			ja4Check(t, label, h, JA4TCP, c.ja4, c.ja4r)
		}
	}
}

func TestJA4ALPN(t *testing.T) {
	for _, c := range []struct {
		alpn []string
		want string
	}{
		{nil, "00"},
		{[]string{""}, "00"}, // cannot be parsed, but can be built
		{[]string{"h2"}, "h2"},
		{[]string{"http/1.1"}, "h1"},
		{[]string{"h2", "http/1.1"}, "h2"}, // the first name counts
		{[]string{"\xab", "h2"}, "ab"},
		{[]string{"h3-29"}, "h9"},
		{[]string{"HTTP/1.1"}, "H1"}, // not lowercased
		// A 1-byte name is both the first and the last character.
		{[]string{"h"}, "hh"},
		{[]string{"0"}, "00"},
		{[]string{"Z"}, "ZZ"},
		// The examples of the specification: if the first or the last byte
		// is not an ASCII letter or digit, the first and last hex digit.
		{[]string{"\xab"}, "ab"},
		{[]string{"\x20"}, "20"},
		{[]string{"\xab\xcd"}, "ad"},
		{[]string{"\x20\x61"}, "21"},
		{[]string{"\x30\xab"}, "3b"},
		{[]string{"\x61\x20"}, "60"},
		{[]string{"\x30\x31\xab\xcd"}, "3d"},
		{[]string{"\x30\xab\xcd\x31"}, "01"}, // only the ends matter
		// Non-ASCII: UTF-8 "é" is 0xc3 0xa9.
		{[]string{"é"}, "c9"},
		{[]string{"éx"}, "c8"},
		{[]string{"xé"}, "79"},
		{[]string{"x\xffx"}, "xx"},
		{[]string{"\xff"}, "ff"},
		{[]string{"\x00"}, "00"},
		// The bytes next to the alphanumeric ranges.
		{[]string{"/a"}, "21"},
		{[]string{"a:"}, "6a"},
		{[]string{"@a"}, "41"},
		{[]string{"a["}, "6b"},
		{[]string{"`a"}, "61"},
		{[]string{"a{"}, "6b"},
		{[]string{"09AZaz"}, "0z"},
	} {
		var names [][]byte
		for _, p := range c.alpn {
			names = append(names, []byte(p))
		}
		h := &ClientHello{ALPN: names, HasALPN: names != nil, Version: 0x0304, CipherSuites: []byte{0x13, 0x01}}
		got := string(h.AppendJA4(nil, JA4TCP))
		if got[8:10] != c.want {
			t.Errorf("ALPN %q: %s, want ALPN characters %q", c.alpn, got, c.want)
		}
		if raw := string(h.AppendJA4Raw(nil, JA4TCP)); raw[:10] != got[:10] {
			t.Errorf("ALPN %q: JA4_r %s and JA4 %s differ in the first part", c.alpn, raw, got)
		}
		// The parser gives the same result for a hello carrying the names.
		if len(c.alpn) > 0 && c.alpn[0] != "" {
			hh := ja4Hello{legacy: 0x0303, ciphers: []uint16{0x1301}, exts: []tlsExt{ja4ALPNExt(c.alpn...)}}
			if got := string(hh.parse(t).AppendJA4(nil, JA4TCP)); got[8:10] != c.want {
				t.Errorf("parsed ALPN %q: %s, want ALPN characters %q", c.alpn, got, c.want)
			}
		}
	}
}

func TestJA4Version(t *testing.T) {
	for v, want := range map[uint16]string{
		0x0304: "13", 0x0303: "12", 0x0302: "11", 0x0301: "10", 0x0300: "s3", 0x0002: "s2",
		0xfeff: "d1", 0xfefd: "d2", 0xfefc: "d3",
		0x0000: "00", 0x0200: "00", 0x0305: "00", 0x7f1c: "00", 0xfafa: "00", 0xfefe: "00", 0xffff: "00",
	} {
		h := &ClientHello{Version: v}
		if got := string(h.AppendJA4(nil, JA4TCP)); got[1:3] != want {
			t.Errorf("version %#04x: %s, want %q", v, got, want)
		}
	}
	// From the wire: the highest non-GREASE supported_versions entry
	// (0xfafa is numerically higher but GREASE), else legacy_version (also
	// when supported_versions holds only GREASE).
	for _, c := range []struct {
		legacy uint16
		sv     []uint16
		want   string
	}{
		{0x0303, nil, "12"},
		{0x0301, nil, "10"},
		{0x0300, nil, "s3"},
		{0x0002, nil, "s2"},
		{0x0303, []uint16{0xfafa, 0x0304, 0x0303}, "13"},
		{0x0303, []uint16{0x0302, 0x0304, 0x0303}, "13"}, // not the first one
		{0x0301, []uint16{0x0303, 0x0302}, "12"},
		{0x0303, []uint16{0x0a0a}, "12"},
		{0x0303, []uint16{0x7f1c, 0x0304}, "00"}, // a TLS 1.3 draft is the highest
	} {
		h := ja4Hello{legacy: c.legacy, ciphers: []uint16{0x002f}, exts: []tlsExt{}}
		if c.sv != nil {
			h.exts = append(h.exts, ja4VersionsExt(c.sv...))
		}
		if got := string(h.parse(t).AppendJA4(nil, JA4TCP)); got[1:3] != c.want {
			t.Errorf("legacy %#04x, supported_versions %#04x: %s, want %q", c.legacy, c.sv, got, c.want)
		}
	}
}

func TestJA4EmptyLists(t *testing.T) {
	for _, c := range []struct {
		name     string
		h        ja4Hello
		ja4, raw string
	}{
		// No extensions vector at all: count 00, 'i', "00", c zeros.
		{"no extensions", ja4Hello{legacy: 0x0301, ciphers: []uint16{0x0035, 0x002f}},
			"t10i020000_" + ja4TestHash("002f,0035") + "_000000000000", "t10i020000_002f,0035_"},
		{"empty extensions vector", ja4Hello{legacy: 0x0303, ciphers: []uint16{0x002f}, exts: []tlsExt{}},
			"t12i010000_" + ja4TestHash("002f") + "_000000000000", "t12i010000_002f_"},
		// Only GREASE cipher suites: b zeros; GREASE extensions only: c zeros.
		{"only GREASE", ja4Hello{legacy: 0x0303, ciphers: []uint16{0x0a0a, 0xfafa}, exts: []tlsExt{{typ: 0x1a1a}}},
			"t12i000000_000000000000_000000000000", "t12i000000__"},
		// Only SNI and ALPN: counted, but the sorted list is empty.
		{"only SNI and ALPN", ja4Hello{legacy: 0x0303, ciphers: []uint16{0x002f},
			exts: []tlsExt{ja4SNIExt("a.example"), ja4ALPNExt("h2")}},
			"t12d0102h2_" + ja4TestHash("002f") + "_000000000000", "t12d0102h2_002f_"},
		// A server_name extension without host_name still counts as SNI.
		{"server_name without host_name", ja4Hello{legacy: 0x0303, ciphers: []uint16{0x002f},
			exts: []tlsExt{{typ: 0x0000, data: []byte{0, 4, 1, 0, 1, 'x'}}, {typ: 0x0017}}},
			"t12d010200_" + ja4TestHash("002f") + "_" + ja4TestHash("0017"), "t12d010200_002f_0017"},
		// A repeated signature_algorithms extension: both are extensions,
		// the first list is the one used.
		{"two signature_algorithms", ja4Hello{legacy: 0x0303, ciphers: []uint16{0x002f},
			exts: []tlsExt{ja4SigAlgsExt(0x0804), ja4SigAlgsExt(0x0403)}},
			"t12i010200_" + ja4TestHash("002f") + "_" + ja4TestHash("000d,000d_0804"), "t12i010200_002f_000d,000d_0804"},
		// Signalling values are cipher suites for JA4; duplicates are kept.
		{"SCSV and duplicates", ja4Hello{legacy: 0x0303, ciphers: []uint16{0x5600, 0x00ff, 0xfe01, 0x002f, 0x002f},
			exts: []tlsExt{{typ: 0x0017}, {typ: 0x0017}, ja4SigAlgsExt(0x0403, 0x0403, 0x0201)}},
			"t12i050300_" + ja4TestHash("002f,002f,00ff,5600,fe01") + "_" + ja4TestHash("000d,0017,0017_0403,0403,0201"),
			"t12i050300_002f,002f,00ff,5600,fe01_000d,0017,0017_0403,0403,0201"},
	} {
		t.Run(c.name, func(t *testing.T) {
			h := c.h.parse(t)
			ja4Check(t, c.name, h, JA4TCP, c.ja4, c.raw)
			ref, refRaw := refJA4(t, h, JA4TCP)
			if ref != c.ja4 || refRaw != c.raw {
				t.Errorf("reference %s %s disagrees with the table", ref, refRaw)
			}
		})
	}
	// Hand-built: signature algorithms but no extension type left. The
	// spec sets the hash to zeros when the sorted extension list is empty.
	h := &ClientHello{CipherSuites: []byte{0, 0x2f}, SignatureAlgorithms: []byte{4, 3}}
	ja4Check(t, "hand-built", h, JA4TCP, "t00i010000_"+ja4TestHash("002f")+"_000000000000", "t00i010000_002f__0403")
	// The zero ClientHello.
	ja4Check(t, "zero", &ClientHello{}, JA4TCP, "t00i000000_000000000000_000000000000", "t00i000000__")
}

// TestJA4HandBuilt fingerprints ClientHello values no parse produces:
// AppendJA4 must not panic and must keep its length.
func TestJA4HandBuilt(t *testing.T) {
	for name, h := range map[string]*ClientHello{
		"odd lists":          {CipherSuites: []byte{0, 0x2f, 0x13}, SignatureAlgorithms: []byte{4}, NumExtensions: 1, Extensions: [MaxExtensions]uint16{0x17}},
		"negative count":     {NumExtensions: -5},
		"count beyond raw":   {NumExtensions: 1 << 40, RawExtensions: []byte{0, 0x17, 0, 0, 0, 0x2b, 0, 9}},
		"truncated raw":      {NumExtensions: MaxExtensions + 1, RawExtensions: []byte{0, 0x17, 0}},
		"ALPN without names": {HasALPN: true},
	} {
		ja4 := h.AppendJA4(nil, JA4TCP)
		raw := h.AppendJA4Raw(nil, JA4TCP)
		if len(ja4) != JA4Len || string(raw[:10]) != string(ja4[:10]) {
			t.Errorf("%s: JA4 %s, JA4_r %s", name, ja4, raw)
		}
	}
	// A raw vector cut inside its second extension: both types are read.
	h := &ClientHello{NumExtensions: MaxExtensions + 1, RawExtensions: []byte{0, 0x17, 0, 0, 0, 0x2b, 0, 9}}
	if got := string(h.AppendJA4Raw(nil, JA4TCP)); got != "t00i000200__0017,002b" {
		t.Errorf("count beyond raw: JA4_r %s", got)
	}
}

func ja4TestHash(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:6])
}

// TestJA4Large checks the heap fallbacks: more cipher suites than sort in
// the stack buffer, more extensions than the Extensions array holds, a text
// longer than the stack buffer; and the counts capped at 99.
func TestJA4Large(t *testing.T) {
	seq := func(n int, base uint16) []uint16 {
		var s []uint16
		for i := range n {
			v := base + uint16(n-i)*3 // descending
			if isGREASE(v) {
				v++
			}
			s = append(s, v)
		}
		return s
	}
	extsOf := func(types []uint16) []tlsExt {
		var e []tlsExt
		for _, typ := range types {
			e = append(e, tlsExt{typ: typ})
		}
		return e
	}
	for _, c := range []struct {
		name           string
		ciphers, exts  int
		sigs           int
		wantNC, wantNE string
	}{
		{"98 and 99", 98, 99, 4, "98", "99"},
		{"100 and 100", 100, 100, 4, "99", "99"},
		{"300 ciphers", 300, 10, 4, "99", "12"},
		{"62 extensions", 5, 62, 4, "05", "64"}, // 65 with GREASE
		{"1000 extensions", 5, 1000, 4, "05", "99"},
		{"2000 signature algorithms", 5, 10, 2000, "05", "12"},
		{"all large", 5000, 3000, 3000, "99", "99"},
	} {
		t.Run(c.name, func(t *testing.T) {
			exts := append(extsOf(seq(c.exts, 0x1000)), ja4SigAlgsExt(seq(c.sigs, 0x0100)...))
			exts = append([]tlsExt{ja4SNIExt("x.example"), {typ: 0x4a4a}}, exts...)
			h := ja4Hello{legacy: 0x0303, ciphers: append(seq(c.ciphers, 0xc000), 0x0a0a), exts: exts}.parse(t)
			if h.NumExtensions != c.exts+3 {
				t.Fatalf("NumExtensions %d, want %d", h.NumExtensions, c.exts+3)
			}
			ja4, raw := refJA4(t, h, JA4TCP)
			ja4Check(t, c.name, h, JA4TCP, ja4, raw)
			got := string(h.AppendJA4(nil, JA4TCP))
			if got[4:6] != c.wantNC || got[6:8] != c.wantNE {
				t.Errorf("counts %s, want %s%s", got[4:8], c.wantNC, c.wantNE)
			}
			if len(got) != JA4Len {
				t.Errorf("length %d", len(got))
			}
		})
	}
}

// TestJA4CryptoTLS fingerprints ClientHellos of crypto/tls. What Go's
// configuration fixes is asserted literally; the hashes are compared with
// a recomputation from the parsed lists.
func TestJA4CryptoTLS(t *testing.T) {
	for _, c := range []struct {
		name   string
		cfg    *tls.Config
		prefix string // transport, version, SNI
		nc     int    // cipher suites, or -1 if Go's default list
		alpn   string
		b      string // the cipher hash, or "" if Go's default list
	}{
		// TLS 1.3 only: the three TLS 1.3 suites, whose hash 55b375c5d22e is
		// also in FoxIO's published QUIC fingerprints (q13d0310h3_55b375c5d22e_…
		// in FoxIO-LLC/ja4 rust/ja4/src/snapshots/ja4__insta@quic-tls-handshake.pcapng.snap).
		{"tls13 h2", &tls.Config{ServerName: "example.com", NextProtos: []string{"h2", "http/1.1"}, MinVersion: tls.VersionTLS13},
			"t13d", 3, "h2", "55b375c5d22e"},
		{"default http/1.1", &tls.Config{ServerName: "example.com", NextProtos: []string{"http/1.1"}},
			"t13d", -1, "h1", ""},
		{"tls12 fixed suites, IP", &tls.Config{ServerName: "192.0.2.1", MaxVersion: tls.VersionTLS12,
			CipherSuites: []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256}},
			"t12i", 2, "00", ja4TestHash("c02b,c02f")},
	} {
		t.Run(c.name, func(t *testing.T) {
			rec := captureHello(t, c.cfg)
			var h ClientHello
			if st := ParseClientHello(rec, &h); st != Done {
				t.Fatalf("ParseClientHello: %v", st)
			}
			got := string(h.AppendJA4(nil, JA4TCP))
			raw := string(h.AppendJA4Raw(nil, JA4TCP))
			t.Logf("JA4 %s\nJA4_r %s", got, raw)

			// The lists straight from the record, independently of the parser.
			ciphers, extTypes, sigs := ja4RecordLists(t, rec)
			if got[:4] != c.prefix {
				t.Errorf("JA4 %s, want prefix %s", got, c.prefix)
			}
			wantNC := len(ciphers)
			if c.nc >= 0 && wantNC != c.nc {
				t.Errorf("record has %d cipher suites, want %d", wantNC, c.nc)
			}
			if want := fmt.Sprintf("%02d%02d", wantNC, len(extTypes)); got[4:8] != want {
				t.Errorf("JA4 %s: counts %s, want %s", got, got[4:8], want)
			}
			if got[8:10] != c.alpn {
				t.Errorf("JA4 %s: ALPN %s, want %s", got, got[8:10], c.alpn)
			}
			// Go sends no GREASE, so the recomputation needs no filter.
			var exts []string
			for _, e := range extTypes {
				if e != "0000" && e != "0010" {
					exts = append(exts, e)
				}
			}
			sort.Strings(ciphers)
			sort.Strings(exts)
			wantB := ja4TestHash(strings.Join(ciphers, ","))
			if c.b != "" && wantB != c.b {
				t.Errorf("cipher hash of the record %s, want %s", wantB, c.b)
			}
			cText := strings.Join(exts, ",")
			if len(sigs) > 0 {
				cText += "_" + strings.Join(sigs, ",")
			}
			if want := got[:10] + "_" + wantB + "_" + ja4TestHash(cText); got != want {
				t.Errorf("JA4 %s, want %s", got, want)
			}
			if want := got[:10] + "_" + strings.Join(ciphers, ",") + "_" + cText; raw != want {
				t.Errorf("JA4_r %s, want %s", raw, want)
			}
			if len(sigs) == 0 || len(exts) == 0 {
				t.Errorf("crypto/tls sent no signature algorithms or extensions: %s", raw)
			}
		})
	}
}

// ja4RecordLists reads a single-record hello with cryptobyte and returns its
// cipher suites, extension types (wire order) and signature algorithms as
// 4-digit hex.
func ja4RecordLists(t testing.TB, rec []byte) (ciphers, exts, sigs []string) {
	t.Helper()
	s := cryptobyte.String(rec[9:])
	var sid, suites, comp, extBlock cryptobyte.String
	if !s.Skip(34) || !s.ReadUint8LengthPrefixed(&sid) || !s.ReadUint16LengthPrefixed(&suites) ||
		!s.ReadUint8LengthPrefixed(&comp) || !s.ReadUint16LengthPrefixed(&extBlock) || !s.Empty() {
		t.Fatal("ja4RecordLists: cannot parse hello")
	}
	for !suites.Empty() {
		var v uint16
		suites.ReadUint16(&v)
		ciphers = append(ciphers, fmt.Sprintf("%04x", v))
	}
	for !extBlock.Empty() {
		var typ uint16
		var data cryptobyte.String
		if !extBlock.ReadUint16(&typ) || !extBlock.ReadUint16LengthPrefixed(&data) {
			t.Fatal("ja4RecordLists: bad extension")
		}
		exts = append(exts, fmt.Sprintf("%04x", typ))
		if typ == 0x000d {
			var list cryptobyte.String
			if !data.ReadUint16LengthPrefixed(&list) {
				t.Fatal("ja4RecordLists: bad signature_algorithms")
			}
			for !list.Empty() {
				var v uint16
				list.ReadUint16(&v)
				sigs = append(sigs, fmt.Sprintf("%04x", v))
			}
		}
	}
	return ciphers, exts, sigs
}

// TestTLSClientHelloJA4Fields checks the fields JA4 is computed from
// against an independent reading of each captured record, for a single
// record and for the hello spread over records.
func TestTLSClientHelloJA4Fields(t *testing.T) {
	for _, c := range tlsCases(t) {
		t.Run(c.name, func(t *testing.T) {
			ciphers, exts, sigs := ja4RecordLists(t, c.rec)
			hs := handshakeOf(c.rec)
			multi := reframe(hs, 0x0303, 7, len(hs)/2)
			scratch := make([]byte, 0, len(multi))
			for _, in := range []struct {
				label   string
				b       []byte
				scratch []byte
				inside  []byte
			}{
				{"single record", c.rec, nil, c.rec},
				{"multi record", multi, scratch, scratch[:cap(scratch)]},
			} {
				var h ClientHello
				if st := ParseClientHelloScratch(in.b, in.scratch, &h); st != Done {
					t.Fatalf("%s: %v", in.label, st)
				}
				hexOf := func(b []byte) []string {
					var out []string
					for i := 0; i+1 < len(b); i += 2 {
						out = append(out, fmt.Sprintf("%04x", binary.BigEndian.Uint16(b[i:])))
					}
					return out
				}
				var gotExts []string
				for _, e := range h.Extensions[:min(h.NumExtensions, MaxExtensions)] {
					gotExts = append(gotExts, fmt.Sprintf("%04x", e))
				}
				if g := strings.Join(hexOf(h.CipherSuites), ","); g != strings.Join(ciphers, ",") {
					t.Errorf("%s: CipherSuites %s, want %s", in.label, g, strings.Join(ciphers, ","))
				}
				if g := strings.Join(gotExts, ","); h.NumExtensions != len(exts) || g != strings.Join(exts, ",") {
					t.Errorf("%s: %d Extensions %s, want %s", in.label, h.NumExtensions, g, strings.Join(exts, ","))
				}
				if g := strings.Join(hexOf(h.SignatureAlgorithms), ","); g != strings.Join(sigs, ",") || len(sigs) == 0 {
					t.Errorf("%s: SignatureAlgorithms %s, want %s", in.label, g, strings.Join(sigs, ","))
				}
				if h.HasSNI != (c.sni != "") || h.HasALPN != (c.alpn != nil) {
					t.Errorf("%s: HasSNI %v HasALPN %v, want SNI %q ALPN %q", in.label, h.HasSNI, h.HasALPN, c.sni, c.alpn)
				}
				for name, f := range map[string][]byte{"CipherSuites": h.CipherSuites, "RawExtensions": h.RawExtensions, "SignatureAlgorithms": h.SignatureAlgorithms} {
					if !within(f, in.inside) || cap(f) != len(f) {
						t.Errorf("%s: %s does not alias the input or has spare capacity", in.label, name)
					}
				}
				if ja4, raw := refJA4(t, &h, JA4TCP); string(h.AppendJA4(nil, JA4TCP)) != ja4 || string(h.AppendJA4Raw(nil, JA4TCP)) != raw {
					t.Errorf("%s: JA4 %s, reference %s", in.label, h.AppendJA4(nil, JA4TCP), ja4)
				}
			}
		})
	}
}

func TestJA4Allocs(t *testing.T) {
	spec := ja4SpecHello(t, true).bytes()
	go13 := tlsCases(t)[1].rec // TLS 1.3 with ALPN
	var h ClientHello
	buf := make([]byte, 0, 512)
	for name, in := range map[string][]byte{"spec example": spec, "crypto/tls": go13} {
		if ParseClientHello(in, &h) != Done {
			t.Fatalf("%s: not Done", name)
		}
		if n := testing.AllocsPerRun(100, func() { buf = h.AppendJA4(buf[:0], JA4TCP) }); n != 0 {
			t.Errorf("%s: AppendJA4: %v allocs, want 0", name, n)
		}
		if n := testing.AllocsPerRun(100, func() { buf = h.AppendJA4Raw(buf[:0], JA4TCP) }); n != 0 {
			t.Errorf("%s: AppendJA4Raw: %v allocs, want 0", name, n)
		}
		// Parsing and fingerprinting into a stack array, as a caller would.
		if n := testing.AllocsPerRun(100, func() {
			var fp [JA4Len]byte
			if ParseClientHello(in, &h) != Done || len(h.AppendJA4(fp[:0], JA4QUIC)) != JA4Len {
				t.Fatal("parse and fingerprint failed")
			}
		}); n != 0 {
			t.Errorf("%s: parse and AppendJA4 into an array: %v allocs, want 0", name, n)
		}
	}
}

func BenchmarkJA4(b *testing.B) {
	cs := tlsCases(b)
	var many []tlsExt
	for i := range 200 {
		many = append(many, tlsExt{typ: uint16(0x1000 + i)})
	}
	large := ja4Hello{legacy: 0x0303, ciphers: []uint16{0x1301, 0x1302}, exts: many}.bytes()
	for _, bc := range []struct {
		name string
		in   []byte
		raw  bool
	}{
		{"spec", ja4SpecHello(b, true).bytes(), false},
		{"spec-raw", ja4SpecHello(b, true).bytes(), true},
		{"tls13-alpn", cs[1].rec, false},
		{"200-extensions", large, false},
	} {
		b.Run(bc.name, func(b *testing.B) {
			var h ClientHello
			if ParseClientHello(bc.in, &h) != Done {
				b.Fatal("not Done")
			}
			buf := make([]byte, 0, 1024)
			b.ReportAllocs()
			for b.Loop() {
				if bc.raw {
					buf = h.AppendJA4Raw(buf[:0], JA4TCP)
				} else {
					buf = h.AppendJA4(buf[:0], JA4TCP)
				}
			}
		})
	}
}
