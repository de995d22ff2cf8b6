package pcaplog

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/google/gopacket"
	"github.com/google/gopacket/layers"
	"github.com/google/gopacket/pcapgo"
)

// Sizes of the pcap file format.
const (
	fileHeaderLen   = 24
	recordHeaderLen = 16

	// magicMicro is the magic number of the files pcapgo.NewWriter writes
	// (little-endian, microsecond timestamps), versionMajor.versionMinor
	// their version.
	magicMicro   = 0xa1b2c3d4
	versionMajor = 2
	versionMinor = 4
)

// Defaults and limits of Options.
const (
	// DefaultSnaplen is the number of bytes kept of each packet when
	// Options.Snaplen is 0.
	DefaultSnaplen = 4096
	// MaxSnaplen is the largest Options.Snaplen accepted (libpcap's own
	// limit).
	MaxSnaplen = 262144
	// DefaultBuffer is the number of packets that may wait for the writer
	// when Options.Buffer is 0.
	DefaultBuffer = 1024
)

// Options configure a Writer.
type Options struct {
	// MaxBytes is the size cap of one file, headers included. It must be
	// at least 24+16+Snaplen, the size of a file holding a single record
	// of the largest size.
	MaxBytes int64
	// Files is the number of files kept in all, the current one included:
	// path, path.1, …, path.(Files-1). It must be at least 1.
	Files int
	// Snaplen is the number of bytes kept of each packet, 1 to
	// MaxSnaplen; 0 means DefaultSnaplen.
	Snaplen int
	// Buffer is the number of packets that may wait for the writer
	// goroutine; 0 means DefaultBuffer. Buffer×Snaplen bytes are allocated
	// at Open.
	Buffer int
}

// Stats are a Writer's counters, as returned by Writer.Stats.
type Stats struct {
	// Packets is the number of packets written (to the file's buffer: a
	// write error may still lose the last of them, see WriteErrors).
	Packets uint64
	// Dropped is the number of packets Capture dropped because no buffer
	// slot was free, or because the Writer was closed.
	Dropped uint64
	// Bytes is the number of bytes written to files: file headers and
	// records. Bytes already in a file that was appended to are not
	// counted.
	Bytes uint64
	// Rotations is the number of times a file was rotated away, because
	// it was full or because it was found at Open or Reopen and could not
	// be appended to.
	Rotations uint64
	// WriteErrors is the number of file operations that failed: opening,
	// examining, writing, flushing, renaming or closing a file. After
	// such an error the file is closed; the next packet opens it again as
	// Reopen does, and a packet that cannot be written because that fails
	// too is counted here as well.
	WriteErrors uint64
}

// Writer writes captured packets to a pcap file on a goroutine of its own.
// It implements inspect.Capture. Its methods may be called from any
// goroutine.
type Writer struct {
	path string
	o    Options

	slots []slot
	free  chan int32 // indexes of the slots Capture may fill
	queue chan int32 // indexes of the slots waiting for the writer

	reopen chan struct{} // a Reopen request, buffered 1
	stop   chan struct{} // closed by Close
	done   chan struct{} // closed when run has returned
	closed atomic.Bool

	packets, dropped, bytes, rotations, writeErrors atomic.Uint64

	// Owned by the writer goroutine (by Open before it starts).
	f    *os.File // nil after an error, until a packet opens it again
	bw   *bufio.Writer
	pw   *pcapgo.Writer
	size int64 // bytes in f, counting those still in bw
	err  error // the first error; read by Close after done is closed
}

// slot holds a packet between Capture and the writer goroutine.
type slot struct {
	buf    []byte // Snaplen bytes
	n      int    // bytes of buf in use
	length int    // length of the packet captured
	t      time.Time
}

// Open starts a Writer to the pcap file at path, creating the file with mode
// 0640 (less the umask) or continuing an existing one as the package
// documentation describes. Close must be called to flush and stop it.
func Open(path string, o Options) (*Writer, error) {
	w, err := newWriter(path, o)
	if err != nil {
		return nil, err
	}
	go w.run()
	return w, nil
}

// newWriter does Open's work but for starting the writer goroutine, which
// tests may then start when they like.
func newWriter(path string, o Options) (*Writer, error) {
	if o.Snaplen == 0 {
		o.Snaplen = DefaultSnaplen
	}
	if o.Buffer == 0 {
		o.Buffer = DefaultBuffer
	}
	switch {
	case o.Snaplen < 0 || o.Snaplen > MaxSnaplen:
		return nil, fmt.Errorf("pcap %s: snaplen %d is not within 1 to %d", path, o.Snaplen, MaxSnaplen)
	case o.Buffer < 0:
		return nil, fmt.Errorf("pcap %s: buffer %d is negative", path, o.Buffer)
	case o.Files < 1:
		return nil, fmt.Errorf("pcap %s: %d files: at least 1 must be kept", path, o.Files)
	case o.MaxBytes < fileHeaderLen+recordHeaderLen+int64(o.Snaplen):
		return nil, fmt.Errorf("pcap %s: max bytes %d cannot hold a header and a record of %d bytes (%d)",
			path, o.MaxBytes, o.Snaplen, fileHeaderLen+recordHeaderLen+o.Snaplen)
	}
	w := &Writer{
		path:   path,
		o:      o,
		slots:  make([]slot, o.Buffer),
		free:   make(chan int32, o.Buffer),
		queue:  make(chan int32, o.Buffer),
		reopen: make(chan struct{}, 1),
		stop:   make(chan struct{}),
		done:   make(chan struct{}),
	}
	backing := make([]byte, o.Buffer*o.Snaplen)
	for i := range w.slots {
		w.slots[i].buf = backing[i*o.Snaplen : (i+1)*o.Snaplen : (i+1)*o.Snaplen]
		w.free <- int32(i)
	}
	if err := w.open(); err != nil {
		return nil, err
	}
	return w, nil
}

// Capture queues the first Snaplen bytes of the IP packet data, captured at
// t, for writing. It copies data, never blocks and never allocates: when no
// buffer slot is free, or the Writer is closed, it drops the packet and
// counts it. A packet captured while Close runs may be neither written nor
// counted.
func (w *Writer) Capture(data []byte, t time.Time) {
	if w.closed.Load() {
		w.dropped.Add(1)
		return
	}
	var i int32
	select {
	case i = <-w.free:
	default:
		w.dropped.Add(1)
		return
	}
	s := &w.slots[i]
	s.n = copy(s.buf, data)
	s.length = len(data)
	s.t = t
	// Never blocks: queue has room for every slot.
	w.queue <- i
}

// Reopen asks the writer goroutine to close the file and open path again,
// for use after the file was renamed (logrotate, then SIGUSR1). It does not
// wait: packets captured after it returns go to the file opened again,
// packets captured before it to either file. Requests made before the
// first is acted on count as one.
func (w *Writer) Reopen() {
	select {
	case w.reopen <- struct{}{}:
	default:
	}
}

// Stats returns the Writer's counters.
func (w *Writer) Stats() Stats {
	return Stats{
		Packets:     w.packets.Load(),
		Dropped:     w.dropped.Load(),
		Bytes:       w.bytes.Load(),
		Rotations:   w.rotations.Load(),
		WriteErrors: w.writeErrors.Load(),
	}
}

// Close writes the packets still queued, flushes and closes the file, and
// stops the writer goroutine. It returns the first error the Writer met, if
// any, wrapped with the path. Capture and Reopen may still be called after
// Close (and do nothing but count the packet dropped); Close may be called
// again and returns the same error.
func (w *Writer) Close() error {
	if w.closed.CompareAndSwap(false, true) {
		close(w.stop)
	}
	<-w.done
	return w.err
}

// run is the writer goroutine.
func (w *Writer) run() {
	defer close(w.done)
	for {
		select {
		case <-w.reopen:
			w.reopenFile()
		case i := <-w.queue:
			w.handle(i)
		case <-w.stop:
			// Only this goroutine receives from queue: these never block.
			for len(w.queue) > 0 {
				w.handle(<-w.queue)
			}
			w.closeFile()
			return
		}
	}
}

// handle writes the packet in slot i, frees the slot, and flushes if
// nothing else is waiting.
func (w *Writer) handle(i int32) {
	// A Reopen made before this packet was captured takes effect first
	// (the select in run picks among ready cases at random).
	select {
	case <-w.reopen:
		w.reopenFile()
	default:
	}
	w.write(&w.slots[i])
	w.free <- i // never blocks: free has room for every slot
	if len(w.queue) == 0 && w.f != nil {
		if err := w.bw.Flush(); err != nil {
			w.broken(err)
		}
	}
}

// write writes the packet in s, opening the file first if an error closed
// it, and rotating it first if the record would take it past MaxBytes.
func (w *Writer) write(s *slot) {
	if w.f == nil {
		if err := w.open(); err != nil {
			w.fail(err)
			return
		}
	}
	rec := int64(recordHeaderLen + s.n)
	if w.size+rec > w.o.MaxBytes {
		w.closeFile()
		if err := w.rotate(); err != nil {
			w.fail(err)
			return
		}
	}
	ci := gopacket.CaptureInfo{Timestamp: s.t, CaptureLength: s.n, Length: s.length}
	if err := w.pw.WritePacket(ci, s.buf[:s.n]); err != nil {
		w.broken(err)
		return
	}
	w.size += rec
	w.bytes.Add(uint64(rec))
	w.packets.Add(1)
}

// reopenFile closes the file (if it is open) and opens path again.
func (w *Writer) reopenFile() {
	w.closeFile()
	if err := w.open(); err != nil {
		w.fail(err)
	}
}

// open opens path: it continues a pcap file found there that it can append
// to, starts a new one if there is none or it is empty, and rotates any
// other file away first. On error no file is open.
func (w *Writer) open() error {
	f, err := os.OpenFile(w.path, os.O_RDWR|os.O_CREATE|os.O_APPEND, 0o640)
	if err != nil {
		return fmt.Errorf("pcap %s: %w", w.path, err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("pcap %s: %w", w.path, err)
	}
	if !fi.Mode().IsRegular() {
		f.Close()
		return fmt.Errorf("pcap %s: not a regular file (%s)", w.path, fi.Mode().Type())
	}
	if fi.Size() == 0 {
		return w.start(f)
	}
	end, ok, err := examine(f, w.o.Snaplen)
	if err != nil {
		f.Close()
		return fmt.Errorf("pcap %s: %w", w.path, err)
	}
	if !ok {
		// Not ours to append to: rotate it away like a full file.
		if err := f.Close(); err != nil {
			return fmt.Errorf("pcap %s: %w", w.path, err)
		}
		return w.rotate()
	}
	if end < fi.Size() {
		// The last record was cut short: drop its bytes.
		if err := f.Truncate(end); err != nil {
			f.Close()
			return fmt.Errorf("pcap %s: %w", w.path, err)
		}
	}
	w.use(f, end)
	return nil
}

// rotate shifts the closed file at path to path.1 (and path.1 to path.2, …)
// and starts a new file at path; with Files = 1 it truncates path instead.
// If a rename fails, rotate stops there and returns the error, leaving the
// files as they are and none open: a file is never overwritten for want of
// a rename (the next packet tries again). On error no file is open.
func (w *Writer) rotate() error {
	if w.o.Files > 1 {
		for i := w.o.Files - 2; i >= 0; i-- {
			from := w.path
			if i > 0 {
				from += "." + strconv.Itoa(i)
			}
			err := os.Rename(from, w.path+"."+strconv.Itoa(i+1))
			if err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("pcap %s: rotate: %w", w.path, err)
			}
		}
	}
	w.rotations.Add(1)
	f, err := os.OpenFile(w.path, os.O_RDWR|os.O_CREATE|os.O_APPEND|os.O_TRUNC, 0o640)
	if err != nil {
		return fmt.Errorf("pcap %s: %w", w.path, err)
	}
	return w.start(f)
}

// start writes the file header to the empty file f, flushes it so that the
// file is a valid (empty) pcap at once, and makes f the current file.
func (w *Writer) start(f *os.File) error {
	w.use(f, 0)
	if err := w.pw.WriteFileHeader(uint32(w.o.Snaplen), layers.LinkTypeRaw); err != nil {
		w.drop()
		return fmt.Errorf("pcap %s: %w", w.path, err)
	}
	if err := w.bw.Flush(); err != nil {
		w.drop()
		return fmt.Errorf("pcap %s: %w", w.path, err)
	}
	w.size = fileHeaderLen
	w.bytes.Add(fileHeaderLen)
	return nil
}

// use makes f, holding size bytes, the current file.
func (w *Writer) use(f *os.File, size int64) {
	w.f = f
	if w.bw == nil {
		w.bw = bufio.NewWriterSize(f, 64<<10)
	} else {
		w.bw.Reset(f)
	}
	w.pw = pcapgo.NewWriter(w.bw)
	w.size = size
}

// closeFile flushes and closes the current file, if one is open.
func (w *Writer) closeFile() {
	if w.f == nil {
		return
	}
	err := w.bw.Flush()
	if cerr := w.f.Close(); err == nil {
		err = cerr
	}
	w.f = nil
	if err != nil {
		w.fail(fmt.Errorf("pcap %s: %w", w.path, err))
	}
}

// broken counts err and closes the file without flushing: a bufio.Writer
// that failed fails for good. The next packet opens the file again.
func (w *Writer) broken(err error) {
	w.fail(fmt.Errorf("pcap %s: %w", w.path, err))
	w.drop()
}

// drop closes the current file without flushing it.
func (w *Writer) drop() {
	w.f.Close()
	w.f = nil
	w.bw.Reset(io.Discard)
}

// fail counts an error and keeps it if it is the first.
func (w *Writer) fail(err error) {
	w.writeErrors.Add(1)
	if w.err == nil {
		w.err = err
	}
}

// examine reads the pcap file f from its start. It reports whether the
// Writer can append to it (see the package documentation) and, if so, where
// its last complete record ends.
func examine(f *os.File, snaplen int) (end int64, ok bool, err error) {
	r := bufio.NewReaderSize(f, 64<<10)
	var h [fileHeaderLen]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		if err == io.EOF || err == io.ErrUnexpectedEOF {
			return 0, false, nil // a cut-off header: not a pcap
		}
		return 0, false, err
	}
	le := binary.LittleEndian
	fileSnaplen := le.Uint32(h[16:20])
	if le.Uint32(h[0:4]) != magicMicro || le.Uint16(h[4:6]) != versionMajor || le.Uint16(h[6:8]) != versionMinor ||
		layers.LinkType(le.Uint32(h[20:24])) != layers.LinkTypeRaw || fileSnaplen < uint32(snaplen) {
		return 0, false, nil
	}
	end = fileHeaderLen
	var rh [recordHeaderLen]byte
	for {
		switch _, err := io.ReadFull(r, rh[:]); err {
		case nil:
		case io.EOF, io.ErrUnexpectedEOF:
			return end, true, nil
		default:
			return 0, false, err
		}
		capLen, length := le.Uint32(rh[8:12]), le.Uint32(rh[12:16])
		if capLen > fileSnaplen || capLen > length {
			return 0, false, nil // not a record: this is not a pcap we wrote
		}
		switch _, err := r.Discard(int(capLen)); err {
		case nil:
		case io.EOF:
			return end, true, nil // cut short
		default:
			return 0, false, err
		}
		end += recordHeaderLen + int64(capLen)
	}
}
