package pcaplog

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"

	"github.com/nfqguard/nfqguard/inspect"
)

// The engine feeds a Writer.
var _ inspect.Capture = (*Writer)(nil)

// t0 is the capture time of the first test packet; it has nanoseconds, which
// the file keeps to the microsecond.
var t0 = time.Date(2026, 11, 22, 10, 30, 0, 123456789, time.UTC)

// pkt is a test packet as handed to Capture.
type pkt struct {
	data  []byte
	t     time.Time
	v6    bool
	tcp   bool
	sport uint16
	dport uint16
}

// build serializes an IPv4 or IPv6 packet carrying a TCP or UDP segment with
// payload, with lengths and checksums computed.
func build(t testing.TB, v6, tcp bool, sport, dport uint16, payload []byte) []byte {
	t.Helper()
	var ip gopacket.SerializableLayer
	var nl gopacket.NetworkLayer
	proto := layers.IPProtocolUDP
	if tcp {
		proto = layers.IPProtocolTCP
	}
	if v6 {
		l := &layers.IPv6{Version: 6, HopLimit: 64, NextHeader: proto,
			SrcIP: net.ParseIP("fd00::2"), DstIP: net.ParseIP("2001:db8::9")}
		ip, nl = l, l
	} else {
		l := &layers.IPv4{Version: 4, IHL: 5, TTL: 64, Protocol: proto,
			SrcIP: net.IPv4(172, 17, 0, 2).To4(), DstIP: net.IPv4(192, 0, 2, 9).To4()}
		ip, nl = l, l
	}
	var l4 gopacket.SerializableLayer
	if tcp {
		l := &layers.TCP{SrcPort: layers.TCPPort(sport), DstPort: layers.TCPPort(dport), Seq: 1000, SYN: true, Window: 64240}
		if err := l.SetNetworkLayerForChecksum(nl); err != nil {
			t.Fatal(err)
		}
		l4 = l
	} else {
		l := &layers.UDP{SrcPort: layers.UDPPort(sport), DstPort: layers.UDPPort(dport)}
		if err := l.SetNetworkLayerForChecksum(nl); err != nil {
			t.Fatal(err)
		}
		l4 = l
	}
	buf := gopacket.NewSerializeBuffer()
	opts := gopacket.SerializeOptions{FixLengths: true, ComputeChecksums: true}
	if err := gopacket.SerializeLayers(buf, opts, ip, l4, gopacket.Payload(payload)); err != nil {
		t.Fatal(err)
	}
	return append([]byte(nil), buf.Bytes()...)
}

// packets returns n packets, cycling through IPv4/IPv6 and TCP/UDP, the
// i-th captured at t0 + i seconds with source port 10000+i, each of size
// bytes (at least 68) when size is not 0.
func packets(t testing.TB, n, size int) []pkt {
	t.Helper()
	var ps []pkt
	for i := range n {
		p := pkt{v6: i%4 >= 2, tcp: i%2 == 0, sport: uint16(10000 + i), dport: 53 + uint16(i%4), t: t0.Add(time.Duration(i) * time.Second)}
		payload := []byte(fmt.Sprintf("packet %d", i))
		p.data = build(t, p.v6, p.tcp, p.sport, p.dport, payload)
		if size != 0 {
			payload = append(payload, bytes.Repeat([]byte{'x'}, size-len(p.data))...)
			p.data = build(t, p.v6, p.tcp, p.sport, p.dport, payload)
			if len(p.data) != size {
				t.Fatalf("packet %d: %d bytes, want %d", i, len(p.data), size)
			}
		}
		ps = append(ps, p)
	}
	return ps
}

// record is a record read back from a pcap file.
type record struct {
	data []byte
	ci   gopacket.CaptureInfo
}

// readPcap reads the pcap file at path with pcapgo, checking that it is of
// link type RAW with the given snaplen and holds complete records only.
func readPcap(t *testing.T, path string, snaplen int) []record {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, err := pcapgo.NewReader(f)
	if err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if r.LinkType() != layers.LinkTypeRaw || r.LinkType() != 101 {
		t.Errorf("%s: link type %v, want RAW (101)", path, r.LinkType())
	}
	if r.Snaplen() != uint32(snaplen) {
		t.Errorf("%s: snaplen %d, want %d", path, r.Snaplen(), snaplen)
	}
	var rs []record
	for {
		data, ci, err := r.ReadPacketData()
		if err == io.EOF {
			return rs
		}
		if err != nil {
			t.Fatalf("%s: record %d: %v", path, len(rs), err)
		}
		rs = append(rs, record{data, ci})
	}
}

// check checks that the records rs are the packets ps (truncated to
// snaplen), in order, and that the packets decode with their ports.
func check(t *testing.T, rs []record, ps []pkt, snaplen int) {
	t.Helper()
	if len(rs) != len(ps) {
		t.Fatalf("%d records, want %d", len(rs), len(ps))
	}
	for i, r := range rs {
		p := ps[i]
		want := p.data[:min(len(p.data), snaplen)]
		if !bytes.Equal(r.data, want) {
			t.Errorf("record %d: data differs", i)
		}
		if r.ci.CaptureLength != len(want) || r.ci.Length != len(p.data) {
			t.Errorf("record %d: capture length %d, length %d; want %d, %d", i, r.ci.CaptureLength, r.ci.Length, len(want), len(p.data))
		}
		if wt := p.t.Truncate(time.Microsecond); !r.ci.Timestamp.Equal(wt) {
			t.Errorf("record %d: time %v, want %v", i, r.ci.Timestamp, wt)
		}
		first := layers.LayerTypeIPv4
		if p.v6 {
			first = layers.LayerTypeIPv6
		}
		dp := gopacket.NewPacket(r.data, first, gopacket.Default)
		var sport, dport uint16
		if p.tcp {
			l, _ := dp.Layer(layers.LayerTypeTCP).(*layers.TCP)
			if l == nil {
				t.Errorf("record %d: no TCP layer in %v", i, dp)
				continue
			}
			sport, dport = uint16(l.SrcPort), uint16(l.DstPort)
		} else {
			l, _ := dp.Layer(layers.LayerTypeUDP).(*layers.UDP)
			if l == nil {
				t.Errorf("record %d: no UDP layer in %v", i, dp)
				continue
			}
			sport, dport = uint16(l.SrcPort), uint16(l.DstPort)
		}
		if sport != p.sport || dport != p.dport {
			t.Errorf("record %d: ports %d→%d, want %d→%d", i, sport, dport, p.sport, p.dport)
		}
		if len(want) == len(p.data) && dp.ErrorLayer() != nil {
			t.Errorf("record %d: %v", i, dp.ErrorLayer().Error())
		}
	}
}

func capture(w *Writer, ps []pkt) {
	for _, p := range ps {
		w.Capture(p.data, p.t)
	}
}

// waitPackets waits until w has written n packets.
func waitPackets(t *testing.T, w *Writer, n uint64) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for w.Stats().Packets < n {
		if time.Now().After(deadline) {
			t.Fatalf("stats %+v: want %d packets written", w.Stats(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

func mustOpen(t *testing.T, path string, o Options) *Writer {
	t.Helper()
	w, err := Open(path, o)
	if err != nil {
		t.Fatal(err)
	}
	return w
}

func mustClose(t *testing.T, w *Writer) {
	t.Helper()
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestWriteAndReadBack(t *testing.T) {
	path := filepath.Join(t.TempDir(), "blocked.pcap")
	w := mustOpen(t, path, Options{MaxBytes: 1 << 20, Files: 3})
	ps := packets(t, 8, 0)
	capture(w, ps)
	mustClose(t, w)

	check(t, readPcap(t, path, DefaultSnaplen), ps, DefaultSnaplen)
	var size int
	for _, p := range ps {
		size += recordHeaderLen + len(p.data)
	}
	want := Stats{Packets: 8, Bytes: uint64(fileHeaderLen + size)}
	if st := w.Stats(); st != want {
		t.Errorf("stats %+v, want %+v", st, want)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Size() != int64(want.Bytes) {
		t.Errorf("file of %d bytes, want %d", fi.Size(), want.Bytes)
	}
	if perm := fi.Mode().Perm(); perm&^0o640 != 0 {
		t.Errorf("file mode %v, want at most 0640", perm)
	}
	if _, err := os.Stat(path + ".1"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s.1: %v, want it not to exist", path, err)
	}
}

// The file is readable (flushed) as soon as the writer has nothing left to
// write, before Close.
func TestFlushedWhenIdle(t *testing.T) {
	path := filepath.Join(t.TempDir(), "blocked.pcap")
	w := mustOpen(t, path, Options{MaxBytes: 1 << 20, Files: 1})
	defer mustClose(t, w)
	// The header is there at once.
	check(t, readPcap(t, path, DefaultSnaplen), nil, DefaultSnaplen)

	ps := packets(t, 3, 0)
	capture(w, ps)
	deadline := time.Now().Add(10 * time.Second)
	for {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Size() == int64(w.Stats().Bytes) && w.Stats().Packets == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("file of %d bytes, stats %+v", fi.Size(), w.Stats())
		}
		time.Sleep(time.Millisecond)
	}
	check(t, readPcap(t, path, DefaultSnaplen), ps, DefaultSnaplen)
}

func TestSnaplen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "blocked.pcap")
	const snaplen = 64
	w := mustOpen(t, path, Options{MaxBytes: 1 << 20, Files: 1, Snaplen: snaplen})
	ps := packets(t, 4, 1500)
	// A GSO-sized packet, and one shorter than snaplen.
	ps = append(ps, packets(t, 6, 0)[5:]...)
	big := packets(t, 7, 65000)[6]
	ps = append(ps, big)
	capture(w, ps)
	mustClose(t, w)

	rs := readPcap(t, path, snaplen)
	check(t, rs, ps, snaplen)
	if rs[0].ci.CaptureLength != snaplen || rs[0].ci.Length != 1500 {
		t.Errorf("record 0: capture length %d, length %d; want %d, 1500", rs[0].ci.CaptureLength, rs[0].ci.Length, snaplen)
	}
	if n := len(ps[4].data); rs[4].ci.CaptureLength != n || rs[4].ci.Length != n {
		t.Errorf("record 4: capture length %d, length %d; want %d, %d", rs[4].ci.CaptureLength, rs[4].ci.Length, n, n)
	}
	if rs[5].ci.Length != 65000 {
		t.Errorf("record 5: length %d, want 65000", rs[5].ci.Length)
	}
}

// names lists the files in dir.
func names(t *testing.T, dir string) []string {
	t.Helper()
	es, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var ns []string
	for _, e := range es {
		ns = append(ns, e.Name())
	}
	return ns
}

func TestRotation(t *testing.T) {
	// Records of 16+100 bytes: 3 fit in a file of 24+3×116 = 372 ≤ 400 bytes.
	const snaplen, size, maxBytes, perFile = 100, 100, 400, 3
	for _, files := range []int{1, 2, 3, 5} {
		t.Run(fmt.Sprint("files=", files), func(t *testing.T) {
			dir := t.TempDir()
			path := filepath.Join(dir, "blocked.pcap")
			w := mustOpen(t, path, Options{MaxBytes: maxBytes, Files: files, Snaplen: snaplen, Buffer: 4})
			ps := packets(t, 20, size)
			// Waiting for each packet makes the test independent of the
			// buffer: none is dropped.
			for i, p := range ps {
				w.Capture(p.data, p.t)
				waitPackets(t, w, uint64(i+1))
			}
			mustClose(t, w)

			// 20 packets make 7 files (6 rotations), of which the last
			// `files` are kept.
			want := []string{"blocked.pcap"}
			for i := 1; i < files; i++ {
				want = append(want, fmt.Sprint("blocked.pcap.", i))
			}
			if got := names(t, dir); strings.Join(got, " ") != strings.Join(want, " ") {
				t.Fatalf("files %q, want %q", got, want)
			}
			// Read back oldest first: the records are the last ones
			// captured, in order; the current file holds 20 mod 3 = 2.
			var rs []record
			for i := files - 1; i >= 0; i-- {
				name := path
				if i > 0 {
					name = fmt.Sprint(path, ".", i)
				}
				fi, err := os.Stat(name)
				if err != nil {
					t.Fatal(err)
				}
				if fi.Size() > maxBytes {
					t.Errorf("%s: %d bytes, more than %d", name, fi.Size(), maxBytes)
				}
				got := readPcap(t, name, snaplen)
				n := perFile
				if i == 0 {
					n = 20 % perFile
				}
				if len(got) != n {
					t.Errorf("%s: %d records, want %d", name, len(got), n)
				}
				rs = append(rs, got...)
			}
			check(t, rs, ps[len(ps)-len(rs):], snaplen)
			if want := uint64(perFile*(files-1) + 20%perFile); uint64(len(rs)) != want {
				t.Errorf("%d records kept, want %d", len(rs), want)
			}
			st := w.Stats()
			if st.Rotations != 6 || st.Packets != 20 || st.Bytes != 7*fileHeaderLen+20*(recordHeaderLen+size) || st.WriteErrors != 0 || st.Dropped != 0 {
				t.Errorf("stats %+v", st)
			}
		})
	}
}

func TestReopen(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "blocked.pcap")
	w := mustOpen(t, path, Options{MaxBytes: 1 << 20, Files: 2})
	ps := packets(t, 7, 0)
	capture(w, ps[:3])
	waitPackets(t, w, 3)
	// logrotate moves the file, then signals.
	if err := os.Rename(path, path+".old"); err != nil {
		t.Fatal(err)
	}
	w.Reopen()
	capture(w, ps[3:5])
	waitPackets(t, w, 5)
	// Reopen with the file in place continues it: no second header.
	w.Reopen()
	capture(w, ps[5:])
	mustClose(t, w)

	check(t, readPcap(t, path+".old", DefaultSnaplen), ps[:3], DefaultSnaplen)
	check(t, readPcap(t, path, DefaultSnaplen), ps[3:], DefaultSnaplen)
	if st := w.Stats(); st.Packets != 7 || st.Rotations != 0 || st.WriteErrors != 0 {
		t.Errorf("stats %+v", st)
	}
	// Reopen after Close does nothing.
	w.Reopen()
}

// A packet captured after Reopen goes to the new file even when the
// goroutine finds the request and the packet waiting together (its select
// alone would pick either at random).
func TestReopenFirst(t *testing.T) {
	ps := packets(t, 1, 0)
	for i := range 20 {
		path := filepath.Join(t.TempDir(), "blocked.pcap")
		w, err := newWriter(path, Options{MaxBytes: 1 << 20, Files: 1})
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(path, path+".old"); err != nil {
			t.Fatal(err)
		}
		w.Reopen()
		capture(w, ps)
		go w.run()
		mustClose(t, w)
		check(t, readPcap(t, path+".old", DefaultSnaplen), nil, DefaultSnaplen)
		check(t, readPcap(t, path, DefaultSnaplen), ps, DefaultSnaplen)
		if t.Failed() {
			t.Fatalf("run %d", i)
		}
	}
}

// A Writer whose goroutine is not running yet keeps Buffer packets and drops
// the rest at once.
func TestFullBuffer(t *testing.T) {
	path := filepath.Join(t.TempDir(), "blocked.pcap")
	w, err := newWriter(path, Options{MaxBytes: 1 << 20, Files: 1, Buffer: 4})
	if err != nil {
		t.Fatal(err)
	}
	ps := packets(t, 10, 0)
	start := time.Now()
	capture(w, ps)
	if d := time.Since(start); d > time.Second {
		t.Errorf("Capture took %v with a full buffer", d)
	}
	if st := w.Stats(); st.Dropped != 6 || st.Packets != 0 {
		t.Errorf("stats %+v, want 6 dropped, 0 written", st)
	}
	go w.run()
	mustClose(t, w)
	check(t, readPcap(t, path, DefaultSnaplen), ps[:4], DefaultSnaplen)
	if st := w.Stats(); st.Dropped != 6 || st.Packets != 4 {
		t.Errorf("stats %+v, want 6 dropped, 4 written", st)
	}
}

// writePcap writes a pcap file of the given link type and snaplen holding
// ps.
func writePcap(t *testing.T, path string, link layers.LinkType, snaplen int, ps []pkt) {
	t.Helper()
	var b bytes.Buffer
	pw := pcapgo.NewWriter(&b)
	if err := pw.WriteFileHeader(uint32(snaplen), link); err != nil {
		t.Fatal(err)
	}
	for _, p := range ps {
		if err := pw.WritePacket(gopacket.CaptureInfo{Timestamp: p.t, CaptureLength: len(p.data), Length: len(p.data)}, p.data); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(path, b.Bytes(), 0o640); err != nil {
		t.Fatal(err)
	}
}

func TestAppend(t *testing.T) {
	path := filepath.Join(t.TempDir(), "blocked.pcap")
	ps := packets(t, 5, 0)
	writePcap(t, path, layers.LinkTypeRaw, 65535, ps[:2])
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	w := mustOpen(t, path, Options{MaxBytes: 1 << 20, Files: 2})
	capture(w, ps[2:])
	mustClose(t, w)

	check(t, readPcap(t, path, 65535), ps, DefaultSnaplen)
	st := w.Stats()
	if st.Rotations != 0 || st.Packets != 3 {
		t.Errorf("stats %+v, want no rotation and 3 packets", st)
	}
	fi2, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi2.Size() != fi.Size()+int64(st.Bytes) {
		t.Errorf("file grew from %d to %d bytes, stats say %d written (no header)", fi.Size(), fi2.Size(), st.Bytes)
	}
	if _, err := os.Stat(path + ".1"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s.1: %v, want it not to exist", path, err)
	}
}

// The size of a file appended to counts towards MaxBytes.
func TestAppendFull(t *testing.T) {
	path := filepath.Join(t.TempDir(), "blocked.pcap")
	ps := packets(t, 5, 100)
	writePcap(t, path, layers.LinkTypeRaw, 100, ps[:3]) // 372 bytes
	w := mustOpen(t, path, Options{MaxBytes: 400, Files: 2, Snaplen: 100})
	capture(w, ps[3:])
	mustClose(t, w)
	check(t, readPcap(t, path+".1", 100), ps[:3], 100)
	check(t, readPcap(t, path, 100), ps[3:], 100)
	if st := w.Stats(); st.Rotations != 1 {
		t.Errorf("stats %+v, want 1 rotation", st)
	}
}

// A last record cut short is truncated away and the file continued.
func TestAppendCutShort(t *testing.T) {
	path := filepath.Join(t.TempDir(), "blocked.pcap")
	ps := packets(t, 4, 0)
	writePcap(t, path, layers.LinkTypeRaw, 65535, ps[:3])
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, cut := range []int{1, 10, recordHeaderLen, recordHeaderLen + 5} {
		if err := os.WriteFile(path, b[:len(b)-len(ps[2].data)-recordHeaderLen+cut], 0o640); err != nil {
			t.Fatal(err)
		}
		w := mustOpen(t, path, Options{MaxBytes: 1 << 20, Files: 2})
		capture(w, ps[3:])
		mustClose(t, w)
		check(t, readPcap(t, path, 65535), []pkt{ps[0], ps[1], ps[3]}, DefaultSnaplen)
		if st := w.Stats(); st.Rotations != 0 {
			t.Errorf("cut %d: stats %+v, want no rotation", cut, st)
		}
	}
}

// A file that is not a pcap the Writer can continue is rotated away.
func TestForeignFile(t *testing.T) {
	ps := packets(t, 2, 0)
	cases := map[string]func(t *testing.T, path string){
		"text": func(t *testing.T, path string) {
			if err := os.WriteFile(path, []byte("not a pcap file\n"), 0o644); err != nil {
				t.Fatal(err)
			}
		},
		"short": func(t *testing.T, path string) {
			if err := os.WriteFile(path, []byte{0xd4, 0xc3, 0xb2}, 0o644); err != nil {
				t.Fatal(err)
			}
		},
		"ethernet": func(t *testing.T, path string) {
			writePcap(t, path, layers.LinkTypeEthernet, 65535, nil)
		},
		"smaller snaplen": func(t *testing.T, path string) {
			writePcap(t, path, layers.LinkTypeRaw, 100, ps[:1])
		},
		"nanoseconds": func(t *testing.T, path string) {
			var b bytes.Buffer
			if err := pcapgo.NewWriterNanos(&b).WriteFileHeader(65535, layers.LinkTypeRaw); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(path, b.Bytes(), 0o644); err != nil {
				t.Fatal(err)
			}
		},
		"bad record": func(t *testing.T, path string) {
			writePcap(t, path, layers.LinkTypeRaw, 65535, nil)
			f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0)
			if err != nil {
				t.Fatal(err)
			}
			// capture length 70000 > snaplen
			if _, err := f.Write([]byte{0, 0, 0, 0, 0, 0, 0, 0, 0x70, 0x11, 0x01, 0, 0x70, 0x11, 0x01, 0}); err != nil {
				t.Fatal(err)
			}
			f.Close()
		},
	}
	for name, setup := range cases {
		for _, files := range []int{1, 3} {
			t.Run(fmt.Sprint(name, ",files=", files), func(t *testing.T) {
				path := filepath.Join(t.TempDir(), "blocked.pcap")
				setup(t, path)
				old, err := os.ReadFile(path)
				if err != nil {
					t.Fatal(err)
				}
				w := mustOpen(t, path, Options{MaxBytes: 1 << 20, Files: files})
				capture(w, ps)
				mustClose(t, w)
				check(t, readPcap(t, path, DefaultSnaplen), ps, DefaultSnaplen)
				if st := w.Stats(); st.Rotations != 1 {
					t.Errorf("stats %+v, want 1 rotation", st)
				}
				moved, err := os.ReadFile(path + ".1")
				if files == 1 {
					if !errors.Is(err, os.ErrNotExist) {
						t.Errorf("%s.1: %v, want it not to exist", path, err)
					}
				} else if err != nil || !bytes.Equal(moved, old) {
					t.Errorf("%s.1: %v, %q; want the old file, %q", path, err, moved, old)
				}
			})
		}
	}
}

func TestCaptureAllocs(t *testing.T) {
	ps := packets(t, 2, 1500)
	t.Run("queued", func(t *testing.T) {
		// Without the goroutine every slot stays taken: AllocsPerRun's
		// 1+100 calls all take the queuing path.
		w, err := newWriter(filepath.Join(t.TempDir(), "blocked.pcap"), Options{MaxBytes: 1 << 20, Files: 1, Buffer: 101})
		if err != nil {
			t.Fatal(err)
		}
		if n := testing.AllocsPerRun(100, func() { w.Capture(ps[0].data, ps[0].t) }); n != 0 {
			t.Errorf("Capture: %v allocations, want 0", n)
		}
		if st := w.Stats(); st.Dropped != 0 {
			t.Errorf("stats %+v, want nothing dropped", st)
		}
		if n := testing.AllocsPerRun(100, func() { w.Capture(ps[1].data, ps[1].t) }); n != 0 {
			t.Errorf("Capture dropping: %v allocations, want 0", n)
		}
		if st := w.Stats(); st.Dropped != 101 {
			t.Errorf("stats %+v, want 101 dropped", st)
		}
		go w.run()
		mustClose(t, w)
		if n := testing.AllocsPerRun(100, func() { w.Capture(ps[1].data, ps[1].t) }); n != 0 {
			t.Errorf("Capture after Close: %v allocations, want 0", n)
		}
	})
	t.Run("running", func(t *testing.T) {
		// With the goroutine writing (this counts its allocations too).
		w := mustOpen(t, filepath.Join(t.TempDir(), "blocked.pcap"), Options{MaxBytes: 1 << 30, Files: 1})
		defer mustClose(t, w)
		capture(w, ps)
		waitPackets(t, w, 2)
		if n := testing.AllocsPerRun(1000, func() { w.Capture(ps[0].data, ps[0].t) }); n != 0 {
			t.Errorf("Capture: %v allocations, want 0", n)
		}
	})
}

func TestCaptureAfterClose(t *testing.T) {
	path := filepath.Join(t.TempDir(), "blocked.pcap")
	w := mustOpen(t, path, Options{MaxBytes: 1 << 20, Files: 1})
	ps := packets(t, 3, 0)
	capture(w, ps[:1])
	mustClose(t, w)
	capture(w, ps[1:])
	if st := w.Stats(); st.Packets != 1 || st.Dropped != 2 {
		t.Errorf("stats %+v, want 1 written and 2 dropped", st)
	}
	mustClose(t, w) // a second Close is harmless too
	check(t, readPcap(t, path, DefaultSnaplen), ps[:1], DefaultSnaplen)
}

// Concurrent Capture, Reopen, Stats and Close, for the race detector.
func TestConcurrent(t *testing.T) {
	path := filepath.Join(t.TempDir(), "blocked.pcap")
	w := mustOpen(t, path, Options{MaxBytes: 1 << 16, Files: 3, Buffer: 16})
	ps := packets(t, 8, 1000)
	done := make(chan struct{})
	for g := range 4 {
		go func() {
			defer func() { done <- struct{}{} }()
			for i := range 500 {
				p := ps[(g+i)%len(ps)]
				w.Capture(p.data, p.t)
				if i%100 == 0 {
					w.Reopen()
					_ = w.Stats()
				}
			}
		}()
	}
	for range 4 {
		<-done
	}
	mustClose(t, w)
	st := w.Stats()
	if st.Packets+st.Dropped != 2000 || st.WriteErrors != 0 {
		t.Errorf("stats %+v: want 2000 packets written or dropped, no errors", st)
	}
	for _, name := range []string{path, path + ".1", path + ".2"} {
		if _, err := os.Stat(name); errors.Is(err, os.ErrNotExist) {
			continue
		}
		readPcap(t, name, DefaultSnaplen)
	}
}

// A write error is counted and returned by Close; the next packet opens the
// file again.
func TestWriteError(t *testing.T) {
	path := filepath.Join(t.TempDir(), "blocked.pcap")
	w, err := newWriter(path, Options{MaxBytes: 1 << 20, Files: 1})
	if err != nil {
		t.Fatal(err)
	}
	w.f.Close() // every write to it fails
	go w.run()
	ps := packets(t, 2, 0)
	capture(w, ps[:1])
	deadline := time.Now().Add(10 * time.Second)
	for w.Stats().WriteErrors == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("stats %+v: want a write error", w.Stats())
		}
		time.Sleep(time.Millisecond)
	}
	capture(w, ps[1:])
	err = w.Close()
	if !errors.Is(err, os.ErrClosed) || !strings.HasPrefix(err.Error(), "pcap "+path+": ") {
		t.Errorf("Close: %v, want the write error", err)
	}
	if err2 := w.Close(); err2 != err {
		t.Errorf("second Close: %v, want %v", err2, err)
	}
	// The first packet is counted as written to the buffer and lost with
	// it; the second went to the file opened again, after its header.
	if st := w.Stats(); st.WriteErrors != 1 || st.Packets != 2 {
		t.Errorf("stats %+v", st)
	}
	check(t, readPcap(t, path, DefaultSnaplen), ps[1:], DefaultSnaplen)
}

func TestOpenErrors(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "blocked.pcap")
	for _, o := range []Options{
		{MaxBytes: 1 << 20, Files: 0},
		{MaxBytes: 1 << 20, Files: -1},
		{MaxBytes: 24 + 16 + 4095, Files: 1},
		{MaxBytes: 24 + 16 + 99, Files: 1, Snaplen: 100},
		{MaxBytes: 1 << 20, Files: 1, Snaplen: -1},
		{MaxBytes: 1 << 20, Files: 1, Snaplen: MaxSnaplen + 1},
		{MaxBytes: 1 << 20, Files: 1, Buffer: -1},
	} {
		if w, err := Open(path, o); err == nil {
			w.Close()
			t.Errorf("Open %+v succeeded", o)
		} else if !strings.HasPrefix(err.Error(), "pcap "+path+": ") {
			t.Errorf("Open %+v: %v, want the path in front", o, err)
		}
	}
	if _, err := os.Stat(path); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("a failed Open left %s: %v", path, err)
	}
	// The smallest cap works.
	w := mustOpen(t, path, Options{MaxBytes: 24 + 16 + 100, Files: 1, Snaplen: 100})
	mustClose(t, w)

	for _, p := range []string{filepath.Join(dir, "missing", "blocked.pcap"), dir} {
		_, err := Open(p, Options{MaxBytes: 1 << 20, Files: 1})
		if err == nil || !strings.HasPrefix(err.Error(), "pcap "+p+": ") {
			t.Errorf("Open %s: %v, want an error with the path in front", p, err)
		}
	}
}

// tcpdump (libpcap) reads the file too. make test installs it; outside
// CI a machine without it skips this check.
func TestTcpdump(t *testing.T) {
	tcpdump, err := exec.LookPath("tcpdump")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("tcpdump is not installed (make deps installs it)")
		}
		t.Skip("tcpdump is not installed")
	}
	path := filepath.Join(t.TempDir(), "blocked.pcap")
	w := mustOpen(t, path, Options{MaxBytes: 1 << 20, Files: 1})
	ps := packets(t, 4, 0)
	capture(w, ps)
	mustClose(t, w)
	out, err := exec.Command(tcpdump, "-nn", "-r", path).CombinedOutput()
	if err != nil {
		t.Fatalf("tcpdump: %v\n%s", err, out)
	}
	var got []string
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if strings.HasPrefix(l, "reading from file") {
			continue
		}
		got = append(got, l)
	}
	if len(got) != 4 {
		t.Fatalf("tcpdump read %d packets, want 4:\n%s", len(got), out)
	}
	for i, l := range got {
		if want := fmt.Sprintf(".%d > ", 10000+i); !strings.Contains(l, want) {
			t.Errorf("tcpdump line %q: want source port %d", l, 10000+i)
		}
	}
}
