package flowlog

import (
	"fmt"
	"io"
	"math"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nfqguard/nfqguard/inspect"
	"github.com/nfqguard/nfqguard/rules"
)

// DefaultBuffer is the number of events waiting for the writer when
// Options.Buffer is 0.
const DefaultBuffer = 4096

// SuppressedPeriod is how often a Log writes its "suppressed" records.
const SuppressedPeriod = time.Second

// flushSize is how much the writer gathers, while events keep coming,
// before it writes.
const flushSize = 64 << 10

// Options configure a Log.
type Options struct {
	// Format is "json" (JSON lines, the default when "") or "text"
	// (key=value lines).
	Format string
	// Rate and Burst limit the verdicts written per container and rule: a
	// token bucket refilled at Rate events per second holding at most
	// Burst, full at first. Rate 0 means no limit. Burst 0 with a Rate
	// means Rate rounded up (at least 1).
	Rate  float64
	Burst int
	// Buffer is the number of events waiting for the writer; Emit drops
	// events beyond it. 0 means DefaultBuffer.
	Buffer int
	// Now tells the time of rate limiting and of "suppressed" records;
	// nil means time.Now. For tests.
	Now func() time.Time
	// OnError, if set, is called on the writer's goroutine when a Reopen
	// fails, and when a write fails after the previous one succeeded (a
	// destination that keeps failing is reported once until it recovers).
	// It must not block for long, nor call Close.
	OnError func(error)
}

// OptionsFrom returns the Options of the log section (rules.LogConfig): its
// format, rate and burst.
func OptionsFrom(c rules.LogConfig) Options {
	return Options{Format: c.Format, Rate: c.Rate, Burst: c.Burst}
}

// Stats are a Log's counters; see Log.Stats.
type Stats struct {
	Blocked, Allowed, Ends uint64 // records written, by kind
	// Suppressed counts the verdicts not written because of the rate
	// limit, SuppressedRecords the "suppressed" records telling of them.
	Suppressed, SuppressedRecords uint64
	Dropped                       uint64 // events lost to a full buffer
	// WriteErrors counts failed writes (each losing the records gathered
	// for it) and failures to close a file after a reopen.
	WriteErrors uint64
	// Reopens counts the files opened by Reopen, ReopenErrors the Reopens
	// that failed (the Log keeps writing to the file it had).
	Reopens, ReopenErrors uint64
}

type counters struct {
	blocked, allowed, ends        atomic.Uint64
	suppressed, suppressedRecords atomic.Uint64
	dropped, writeErrors          atomic.Uint64
	reopens, reopenErrors         atomic.Uint64
}

// Log writes the blocked-flow log (see the package documentation). It is
// an inspect.Sink: Emit may be called from any number of goroutines. Its
// writer runs until Close.
type Log struct {
	now     func() time.Time
	lim     *limiter // nil: no rate limit
	onError func(error)
	path    string // of a file destination, "" for a writer

	mu     sync.RWMutex // Emit holds it for reading; Close sets closed
	closed bool

	ch     chan inspect.Event
	reopen chan struct{} // a pending Reopen
	ctl    chan func()   // tests: run on the writer once it caught up
	done   chan struct{} // closed when the writer returned
	once   sync.Once
	stats  counters

	// Owned by the writer's goroutine.
	out     io.Writer
	file    *os.File // the open file of a path destination
	enc     encoder
	r       rec
	pending []suppression
	failing bool  // the last write failed
	err     error // the first write error; read after done
}

// New starts a Log writing to d. It returns an error for invalid options
// (an unknown Format, a negative or infinite Rate, a negative Burst); d is
// then left open. Close must be called, after the last Emit, to flush and
// stop the Log; it closes d's file.
func New(d Dest, o Options) (*Log, error) {
	l, err := newLog(d, o)
	if err != nil {
		return nil, err
	}
	t := time.NewTicker(SuppressedPeriod)
	go l.run(t.C, t.Stop)
	return l, nil
}

// newLog returns a Log whose writer is not started.
func newLog(d Dest, o Options) (*Log, error) {
	var text bool
	switch o.Format {
	case "", "json":
	case "text":
		text = true
	default:
		return nil, fmt.Errorf("flow log: unknown format %q (want json or text)", o.Format)
	}
	if o.Rate < 0 || math.IsNaN(o.Rate) || math.IsInf(o.Rate, 0) {
		return nil, fmt.Errorf("flow log: invalid rate %v", o.Rate)
	}
	if o.Burst < 0 {
		return nil, fmt.Errorf("flow log: invalid burst %d", o.Burst)
	}
	buffer := o.Buffer
	if buffer <= 0 {
		buffer = DefaultBuffer
	}
	l := &Log{
		now:     o.Now,
		onError: o.OnError,
		path:    d.path,
		ch:      make(chan inspect.Event, buffer),
		reopen:  make(chan struct{}, 1),
		ctl:     make(chan func()),
		done:    make(chan struct{}),
		out:     d.w,
		file:    d.file,
		enc:     encoder{b: make([]byte, 0, flushSize+4096), text: text},
	}
	if l.now == nil {
		l.now = time.Now
	}
	if l.out == nil {
		l.out = io.Discard
	}
	if o.Rate > 0 {
		burst := o.Burst
		if burst == 0 {
			burst = max(1, int(math.Ceil(o.Rate)))
		}
		l.lim = newLimiter(o.Rate, burst)
	}
	return l, nil
}

// Emit queues ev for writing without blocking, and reports whether it
// will be written. A verdict (inspect.EventVerdict) over its container and
// rule's rate limit is not: it is counted as suppressed and told of in the
// next "suppressed" record. Ends (inspect.EventEnd) are not rate limited.
// An event that finds the buffer full is dropped and counted. Emit after
// Close returns false.
func (l *Log) Emit(ev inspect.Event) bool {
	l.mu.RLock()
	defer l.mu.RUnlock()
	if l.closed {
		return false
	}
	if ev.Kind == inspect.EventVerdict && l.lim != nil && !l.lim.allow(ev.Container, ev.RuleID, l.now()) {
		l.stats.suppressed.Add(1)
		return false
	}
	select {
	case l.ch <- ev:
		return true
	default:
		l.stats.dropped.Add(1)
		return false
	}
}

// Reopen asks the writer to open the destination file again by its path,
// creating it, once logrotate moved it away: it writes what it gathered to
// the old file, opens the path, and closes the old file. It does not
// block; events emitted after it returns go to the new file. When the
// path cannot be opened, the failure is counted (Stats.ReopenErrors) and
// passed to Options.OnError, and the Log keeps writing to the old file
// until a later Reopen succeeds. Reopen does nothing for a Dest from
// Writer.
func (l *Log) Reopen() {
	if l.path == "" {
		return
	}
	select {
	case l.reopen <- struct{}{}:
	default: // one is pending already
	}
}

// Stats returns the Log's counters. It may be called at any time, from any
// goroutine.
func (l *Log) Stats() Stats {
	return Stats{
		Blocked:           l.stats.blocked.Load(),
		Allowed:           l.stats.allowed.Load(),
		Ends:              l.stats.ends.Load(),
		Suppressed:        l.stats.suppressed.Load(),
		SuppressedRecords: l.stats.suppressedRecords.Load(),
		Dropped:           l.stats.dropped.Load(),
		WriteErrors:       l.stats.writeErrors.Load(),
		Reopens:           l.stats.reopens.Load(),
		ReopenErrors:      l.stats.reopenErrors.Load(),
	}
}

// Close writes the pending events and "suppressed" records, stops the
// writer, closes the destination's file (not a Writer's), and returns the
// first write error. Emit after Close returns false; Close again returns
// the same error.
func (l *Log) Close() error {
	l.once.Do(func() {
		l.mu.Lock()
		l.closed = true
		l.mu.Unlock()
		close(l.ch)
		<-l.done
	})
	return l.err
}

// run is the writer's goroutine. tick drives the "suppressed" records;
// stop, if not nil, is called on return.
func (l *Log) run(tick <-chan time.Time, stop func()) {
	defer close(l.done)
	if stop != nil {
		defer stop()
	}
	for {
		select {
		case ev, ok := <-l.ch:
			if !ok {
				l.finish()
				return
			}
			l.writeEvent(&ev)
			// Write when nothing else is waiting, so that lines appear
			// promptly but a burst is written in few syscalls.
			if len(l.ch) == 0 || len(l.enc.b) >= flushSize {
				l.flush()
			}
		case <-l.reopen:
			l.doReopen()
		case <-tick:
			l.writeSuppressed()
			l.flush()
		case f := <-l.ctl:
			for len(l.ch) > 0 {
				ev := <-l.ch
				l.writeEvent(&ev)
			}
			l.flush()
			f()
			l.flush()
		}
	}
}

// sync runs f on the writer once it has written the events emitted before.
// For tests; not after Close.
func (l *Log) sync(f func()) {
	done := make(chan struct{})
	l.ctl <- func() {
		if f != nil {
			f()
		}
		close(done)
	}
	<-done
}

func (l *Log) finish() {
	l.writeSuppressed()
	l.flush()
	if l.file != nil {
		if err := l.file.Close(); err != nil {
			l.writeFailed(fmt.Errorf("close flow log: %w", err))
		}
		l.file = nil
	}
}

func (l *Log) writeEvent(ev *inspect.Event) {
	// A Reopen requested before ev was emitted applies to ev.
	select {
	case <-l.reopen:
		l.doReopen()
	default:
	}
	r := &l.r
	r.fill(ev)
	if r.src = ev.Src.Addr(); !r.src.IsValid() {
		r.Src = r.src.String()
	}
	if r.dst = ev.Dst.Addr(); !r.dst.IsValid() {
		r.Dst = r.dst.String()
	}
	r.encode(&l.enc)
	switch r.Event {
	case EventBlocked:
		l.stats.blocked.Add(1)
	case EventAllowed:
		l.stats.allowed.Add(1)
	case EventEnd:
		l.stats.ends.Add(1)
	}
}

// writeSuppressed gathers a "suppressed" record for each container and
// rule with verdicts suppressed since its last one.
func (l *Log) writeSuppressed() {
	if l.lim == nil {
		return
	}
	now := l.now()
	l.pending = l.lim.collect(now, l.pending[:0])
	for _, s := range l.pending {
		l.r = rec{Record: Record{
			Time: now.UTC(), Event: EventSuppressed, Rule: s.rule, Container: s.container,
			Suppressed: s.n, Since: s.since.UTC(),
		}}
		l.r.encode(&l.enc)
		l.stats.suppressedRecords.Add(1)
	}
	clear(l.pending)
}

// flush writes what the writer gathered. A failed write loses it.
func (l *Log) flush() {
	if len(l.enc.b) == 0 {
		return
	}
	_, err := l.out.Write(l.enc.b)
	l.enc.b = l.enc.b[:0]
	if err != nil {
		l.writeFailed(fmt.Errorf("write flow log: %w", err))
		return
	}
	l.failing = false
}

func (l *Log) writeFailed(err error) {
	l.stats.writeErrors.Add(1)
	if l.err == nil {
		l.err = err
	}
	if !l.failing {
		l.failing = true
		l.report(err)
	}
}

func (l *Log) report(err error) {
	if l.onError != nil {
		l.onError(err)
	}
}

// doReopen opens the path again, and only then closes the old file, so
// that a failure leaves the Log writing where it was.
func (l *Log) doReopen() {
	if l.path == "" {
		return
	}
	l.flush()
	f, err := openAppend(l.path)
	if err != nil {
		l.stats.reopenErrors.Add(1)
		l.report(fmt.Errorf("reopen flow log: %w", err))
		return
	}
	if l.file != nil {
		if err := l.file.Close(); err != nil {
			l.writeFailed(fmt.Errorf("close flow log: %w", err))
		}
	}
	l.file, l.out = f, f
	l.failing = false
	l.stats.reopens.Add(1)
}
