package flowlog

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nfqguard/nfqguard/inspect"
	"github.com/nfqguard/nfqguard/inspect/names"
	"github.com/nfqguard/nfqguard/rules"
)

var t0 = time.Date(2026, 11, 21, 23, 27, 30, 100000000, time.UTC)

// clock is a fake time for Options.Now, safe for concurrent use.
type clock struct{ ns atomic.Int64 }

func newClock() *clock {
	c := &clock{}
	c.ns.Store(t0.UnixNano())
	return c
}

func (c *clock) Now() time.Time          { return time.Unix(0, c.ns.Load()).UTC() }
func (c *clock) Advance(d time.Duration) { c.ns.Add(int64(d)) }
func (c *clock) opts(o Options) Options  { o.Now = c.Now; return o }

// start returns a Log whose "suppressed" records are written only by tick
// (and Close), never by a real ticker.
func start(t *testing.T, d Dest, o Options) *Log {
	t.Helper()
	l, err := newLog(d, o)
	if err != nil {
		t.Fatal(err)
	}
	go l.run(nil, nil)
	return l
}

// tick writes the "suppressed" records as the ticker would, once the
// events emitted before are written.
func tick(l *Log) { l.sync(l.writeSuppressed) }

// blocked returns a blocked flow's verdict on rule of container; i varies
// the source port.
func blocked(rule, container string, i int) inspect.Event {
	return inspect.Event{
		Time: t0, Action: rules.Drop, RuleID: rule, Container: container,
		Direction: rules.Ingress, Proto: rules.ProtoTCP,
		Src:     netip.AddrPortFrom(netip.MustParseAddr("203.0.113.2"), uint16(40000+i%20000)),
		Dst:     netip.MustParseAddrPort("172.18.0.2:80"),
		Packets: 1,
	}
}

// endOf returns the end of the flow of verdict ev.
func endOf(ev inspect.Event) inspect.Event {
	ev.Kind = inspect.EventEnd
	ev.Start = ev.Time
	ev.Time = ev.Time.Add(1500 * time.Millisecond)
	ev.Packets, ev.Bytes = 3, 180
	return ev
}

func records(t *testing.T, b []byte) []Record {
	t.Helper()
	var rs []Record
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		var r Record
		if err := json.Unmarshal(sc.Bytes(), &r); err != nil {
			t.Fatalf("line %q: %v", sc.Text(), err)
		}
		rs = append(rs, r)
	}
	return rs
}

func count(rs []Record, event string) (n int, suppressed uint64) {
	for _, r := range rs {
		if r.Event == event {
			n++
			suppressed += r.Suppressed
		}
	}
	return n, suppressed
}

// TestFlood: 10,000 blocked flows on one rule from 4 goroutines give Burst
// lines and one "suppressed" record for the rest.
func TestFlood(t *testing.T) {
	const total, workers, burst = 10000, 4, 20
	c := newClock()
	var buf bytes.Buffer
	l := start(t, Writer(&buf), c.opts(Options{Rate: 10, Burst: burst, Buffer: total}))
	var passed, refused atomic.Int64
	var first atomic.Value // a verdict that passed
	var wg sync.WaitGroup
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < total; i += workers {
				ev := blocked("default", "front", i)
				if l.Emit(ev) {
					passed.Add(1)
					first.CompareAndSwap(nil, ev)
				} else {
					refused.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if passed.Load() != burst || refused.Load() != total-burst {
		t.Errorf("Emit: %d true, %d false; want %d, %d", passed.Load(), refused.Load(), burst, total-burst)
	}
	if !l.Emit(endOf(first.Load().(inspect.Event))) {
		t.Error("Emit of an end refused")
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	rs := records(t, buf.Bytes())
	nb, _ := count(rs, EventBlocked)
	ne, _ := count(rs, EventEnd)
	ns, sup := count(rs, EventSuppressed)
	if nb != burst || ne != 1 || ns != 1 || uint64(nb)+sup != total {
		t.Errorf("%d blocked, %d end, %d suppressed records counting %d; want %d, 1, 1, %d",
			nb, ne, ns, sup, burst, total-burst)
	}
	if last := rs[len(rs)-1]; last.Event != EventSuppressed || last.Rule != "default" || last.Container != "front" ||
		!last.Since.Equal(t0) || !last.Time.Equal(t0) {
		t.Errorf("last record %+v", last)
	}
	want := Stats{Blocked: burst, Ends: 1, Suppressed: total - burst, SuppressedRecords: 1}
	if s := l.Stats(); s != want {
		t.Errorf("Stats %+v, want %+v", s, want)
	}
}

// TestFloodTicker runs a flood against the real ticker: a "suppressed"
// record appears within a period or two, before Close.
func TestFloodTicker(t *testing.T) {
	if testing.Short() {
		t.Skip("waits for the ticker")
	}
	var mu sync.Mutex
	var buf bytes.Buffer
	l, err := New(Writer(writerFunc(func(p []byte) (int, error) {
		mu.Lock()
		defer mu.Unlock()
		return buf.Write(p)
	})), Options{Rate: 1, Burst: 5})
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	for i := range 1000 {
		l.Emit(blocked("default", "front", i))
	}
	// Wait for the record(s) to account for every event; a tick in the
	// middle of the flood may split them in two.
	var nb, ns int
	var sup uint64
	for deadline := time.Now().Add(5 * SuppressedPeriod); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		mu.Lock()
		rs := records(t, buf.Bytes())
		mu.Unlock()
		nb, _ = count(rs, EventBlocked)
		ns, sup = count(rs, EventSuppressed)
		if uint64(nb)+sup == 1000 {
			break
		}
	}
	if ns < 1 || ns > 2 || uint64(nb)+sup != 1000 || nb < 5 || nb > 7 {
		t.Errorf("%d blocked, %d suppressed records counting %d", nb, ns, sup)
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// TestBuckets: each container and rule has its own bucket; ends and Rate 0
// are not limited.
func TestBuckets(t *testing.T) {
	c := newClock()
	var buf bytes.Buffer
	l := start(t, Writer(&buf), c.opts(Options{Rate: 1, Burst: 2}))
	n := 0
	for _, k := range []struct{ rule, container string }{{"b", "front"}, {"a", "front"}, {"a", "back"}} {
		for i := range 5 {
			ev := blocked(k.rule, k.container, i)
			if l.Emit(ev) {
				n++
				if !l.Emit(endOf(ev)) {
					t.Errorf("end of %v refused", k)
				}
			}
		}
	}
	if n != 6 {
		t.Errorf("%d verdicts passed, want 6", n)
	}
	tick(l)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	rs := records(t, buf.Bytes())
	var got []string
	for _, r := range rs {
		if r.Event == EventSuppressed {
			got = append(got, r.Container+"/"+r.Rule+":"+itoa(r.Suppressed))
		}
	}
	if want := "back/a:3 front/a:3 front/b:3"; strings.Join(got, " ") != want {
		t.Errorf("suppressed records %q, want %q", got, want)
	}
	if s := l.Stats(); s.Blocked != 6 || s.Ends != 6 || s.Suppressed != 9 || s.SuppressedRecords != 3 {
		t.Errorf("Stats %+v", s)
	}

	// Rate 0: no limit, no bucket.
	l = start(t, Writer(io.Discard), c.opts(Options{Rate: 0, Burst: 2}))
	for i := range 1000 {
		if !l.Emit(blocked("default", "front", i)) {
			t.Fatalf("event %d refused without a rate", i)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if s := l.Stats(); s.Blocked != 1000 || s.Suppressed != 0 || l.lim != nil {
		t.Errorf("Rate 0: Stats %+v", s)
	}
}

func itoa(n uint64) string { return string(appendUint(nil, n)) }

func appendUint(b []byte, n uint64) []byte {
	e := encoder{b: b}
	e.first = true
	e.text = true
	e.uint("", n)
	return e.b[1:]
}

// TestRefill: tokens come back at Rate up to Burst, and "suppressed"
// records tell of each period's suppressed events once.
func TestRefill(t *testing.T) {
	c := newClock()
	var buf bytes.Buffer
	l := start(t, Writer(&buf), c.opts(Options{Rate: 2, Burst: 1}))
	i := 0
	emit := func() bool { i++; return l.Emit(blocked("default", "front", i)) }
	steps := []struct {
		advance time.Duration
		want    bool
	}{
		{0, true}, {0, false},
		{499 * time.Millisecond, false}, // 0.998 tokens
		{time.Millisecond, true},
		{10 * time.Second, true}, // the bucket holds 1
		{0, false},
	}
	for n, s := range steps {
		c.Advance(s.advance)
		if got := emit(); got != s.want {
			t.Errorf("step %d: Emit %v, want %v", n, got, s.want)
		}
	}
	tick(l) // 3 suppressed, the first at t0
	tick(l) // none since
	c.Advance(time.Second)
	if !emit() || emit() {
		t.Error("after 1s at 2/s with Burst 1: want one event to pass")
	}
	tick(l)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range records(t, buf.Bytes()) {
		if r.Event == EventSuppressed {
			got = append(got, itoa(r.Suppressed)+"@"+r.Since.Sub(t0).String()+"/"+r.Time.Sub(t0).String())
		}
	}
	if want := "3@0s/10.5s 1@11.5s/11.5s"; strings.Join(got, " ") != want {
		t.Errorf("suppressed records %q, want %q", got, want)
	}
}

// TestPrune: a bucket idle and full again is forgotten, not before its
// suppressed events are reported.
func TestPrune(t *testing.T) {
	c := newClock()
	l := start(t, Writer(io.Discard), c.opts(Options{Rate: 1, Burst: 1}))
	defer l.Close()
	l.Emit(blocked("a", "front", 0))
	l.Emit(blocked("a", "front", 1))
	l.Emit(blocked("b", "front", 1))
	c.Advance(pruneAfter)
	tick(l) // reports a's suppression, forgets b
	if n := l.lim.size(); n != 1 {
		t.Errorf("%d buckets, want 1", n)
	}
	tick(l)
	if n := l.lim.size(); n != 0 {
		t.Errorf("%d buckets, want 0", n)
	}
	if !l.Emit(blocked("a", "front", 2)) {
		t.Error("a new bucket is not full")
	}
}

// TestFormats pins the end and suppressed records in JSON and all three
// in text.
func TestFormats(t *testing.T) {
	ev := blocked("default", "front", 0)
	end := endOf(ev)
	for _, tt := range []struct {
		format string
		want   string
	}{
		{"json", `{"time":"2026-11-21T23:27:30.1Z","event":"blocked","rule":"default","container":"front","direction":"ingress",` +
			`"proto":"tcp","src":"203.0.113.2","sport":40000,"dst":"172.18.0.2","dport":80,"packets":1}` + "\n" +
			`{"time":"2026-11-21T23:27:31.6Z","event":"end","rule":"default","container":"front","direction":"ingress",` +
			`"proto":"tcp","src":"203.0.113.2","sport":40000,"dst":"172.18.0.2","dport":80,"packets":3,"bytes":180,` +
			`"start":"2026-11-21T23:27:30.1Z","duration_seconds":1.5}` + "\n" +
			`{"time":"2026-11-21T23:27:32.1Z","event":"suppressed","rule":"default","container":"front","suppressed":2,` +
			`"since":"2026-11-21T23:27:30.1Z"}` + "\n"},
		{"text", `time=2026-11-21T23:27:30.1Z event=blocked rule=default container=front direction=ingress proto=tcp ` +
			`src=203.0.113.2 sport=40000 dst=172.18.0.2 dport=80 packets=1` + "\n" +
			`time=2026-11-21T23:27:31.6Z event=end rule=default container=front direction=ingress proto=tcp ` +
			`src=203.0.113.2 sport=40000 dst=172.18.0.2 dport=80 packets=3 bytes=180 start=2026-11-21T23:27:30.1Z duration_seconds=1.5` + "\n" +
			`time=2026-11-21T23:27:32.1Z event=suppressed rule=default container=front suppressed=2 since=2026-11-21T23:27:30.1Z` + "\n"},
	} {
		c := newClock()
		var buf bytes.Buffer
		l := start(t, Writer(&buf), c.opts(Options{Format: tt.format, Rate: 1, Burst: 1}))
		l.Emit(ev)
		l.Emit(end)
		l.Emit(ev)
		c.Advance(500 * time.Millisecond)
		l.Emit(ev)
		c.Advance(1500 * time.Millisecond)
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		if buf.String() != tt.want {
			t.Errorf("%s:\n%s want\n%s", tt.format, buf.String(), tt.want)
		}
	}
}

// TestTextQuoting: values are quoted when empty (and shown), or holding a
// space, a quote, an '=' or a control character; the JSON's empty fields
// are left out.
func TestTextQuoting(t *testing.T) {
	ev := blocked("no port=80", "", 0)
	ev.Action = rules.Allow
	ev.L7, ev.HTTPHost, ev.HTTPPath, ev.HTTPMethod = rules.L7HTTP, "例え.jp", "/a\"b\nc", "GET"
	ev.Reason = `back\slash`
	var buf bytes.Buffer
	l := start(t, Writer(&buf), Options{Format: "text"})
	l.Emit(ev)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	want := `time=2026-11-21T23:27:30.1Z event=allowed rule="no port=80" container="" direction=ingress proto=tcp ` +
		`src=203.0.113.2 sport=40000 dst=172.18.0.2 dport=80 packets=1 reason=back\slash l7=http http_host=例え.jp ` +
		`http_path="/a\"b\nc" http_method=GET` + "\n"
	if buf.String() != want {
		t.Errorf("got\n%s want\n%s", buf.String(), want)
	}
}

// plainRecord is Record without its MarshalJSON: encoding/json's view of
// the struct tags.
type plainRecord Record

// TestJSONCompat: the writer's lines, Record.MarshalJSON and encoding/json
// on Record's tags agree, escaping included.
func TestJSONCompat(t *testing.T) {
	base := blocked("r1", "front", 7)
	var evs []inspect.Event
	add := func(f func(e *inspect.Event)) {
		e := base
		f(&e)
		evs = append(evs, e)
	}
	add(func(e *inspect.Event) {})
	add(func(e *inspect.Event) { e.Action = rules.Allow; e.Direction = rules.Egress; e.Proto = rules.ProtoUDP })
	add(func(e *inspect.Event) {
		e.DockerName, e.Image, e.Published = "web-1", "nginx:1.27", "0.0.0.0:8080,[::]:8080"
		e.Src, e.Dst = netip.MustParseAddrPort("[2001:db8::1]:5353"), netip.MustParseAddrPort("[fe80::1%eth0]:53")
		e.L7, e.QName, e.QueryID, e.Proto = rules.L7DNS, "evil.example.", 4660, 17
	})
	add(func(e *inspect.Event) {
		e.L7, e.SNI, e.ECH = rules.L7TLS, "public.example", true
		e.Reason = "<script>&\"quote\"\\ \x01\x7f\u2028\u2029 \xff\xfe é"
	})
	add(func(e *inspect.Event) {
		e.L7, e.SNI, e.QUIC, e.Proto = rules.L7TLS, "quic.example", 0x6b3343cf, 17
		e.JA4, e.App = "q13d0312h3_55b375c5d22e_aaaaaaaaaaaa", rules.AppQUIC
	})
	add(func(e *inspect.Event) { e.L7, e.SNI, e.QUIC, e.Proto = rules.L7TLS, "quic.example", 0xff00001d, 17 })
	add(func(e *inspect.Event) {
		e.L7, e.HTTPHost, e.HTTPPath, e.HTTPMethod = rules.L7HTTP|rules.L7TLS, "h", "/p?<&>", "POST"
		e.Proto = 47
		e.Src, e.Dst = netip.AddrPort{}, netip.AddrPort{}
	})
	for _, d := range []time.Duration{0, 500, 1500 * time.Millisecond, 3 * time.Microsecond, 1e6 * time.Hour} {
		add(func(e *inspect.Event) {
			*e = endOf(*e)
			e.Time = e.Start.Add(d)
		})
	}
	add(func(e *inspect.Event) { *e = endOf(*e); e.Start = time.Time{}; e.Bytes = 0 })
	add(func(e *inspect.Event) { e.Time = time.Date(2026, 1, 2, 3, 4, 5, 0, time.FixedZone("X", 3600)) })
	add(func(e *inspect.Event) { e.Names = learnedNames(t, "github.com", "edge\"x.example") })

	var buf bytes.Buffer
	l := start(t, Writer(&buf), Options{})
	for _, e := range evs {
		l.Emit(e)
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	lines := strings.SplitAfter(buf.String(), "\n")
	for i, e := range evs {
		r := RecordOf(e)
		std, err := json.Marshal(plainRecord(r))
		if err != nil {
			t.Fatal(err)
		}
		own, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		if lines[i] != string(std)+"\n" || string(own) != string(std) {
			t.Errorf("event %d:\nwriter       %s\nMarshalJSON  %s\nencoding/json %s", i, lines[i], own, std)
		}
		var back Record
		if err := json.Unmarshal(own, &back); err != nil {
			t.Fatal(err)
		}
	}

	// A suppressed record leaves out the fields it does not have.
	s := Record{Time: t0, Event: EventSuppressed, Rule: "r", Container: "c", Suppressed: 3, Since: t0}
	b, _ := json.Marshal(s)
	if want := `{"time":"2026-11-21T23:27:30.1Z","event":"suppressed","rule":"r","container":"c","suppressed":3,"since":"2026-11-21T23:27:30.1Z"}`; string(b) != want {
		t.Errorf("suppressed record %s, want %s", b, want)
	}
}

// TestRecordOfEnd: RecordOf fills an end's fields.
func TestRecordOfEnd(t *testing.T) {
	r := RecordOf(endOf(blocked("default", "front", 0)))
	if r.Event != EventEnd || r.Packets != 3 || r.Bytes != 180 || !r.Start.Equal(t0) || r.Duration != 1.5 ||
		r.Src != "203.0.113.2" || r.Dst != "172.18.0.2" || r.Start.Location() != time.UTC {
		t.Errorf("%+v", r)
	}
}

// TestReopen: after the file is renamed, Reopen makes the log write to a
// new file at the path; no line is lost.
func TestReopen(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "blocked.log")
	d, err := OpenFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var errs []error
	var mu sync.Mutex
	l := start(t, d, Options{OnError: func(err error) { mu.Lock(); errs = append(errs, err); mu.Unlock() }})
	for i := range 4 {
		l.Emit(blocked("old", "front", i))
	}
	l.sync(nil)
	if err := os.Rename(path, path+".1"); err != nil {
		t.Fatal(err)
	}
	l.Emit(blocked("old", "front", 4)) // written after the rename: the old file
	l.sync(nil)
	l.Reopen()
	for i := range 2 {
		l.Emit(blocked("new", "front", i)) // emitted after Reopen: the new one
	}
	l.sync(nil)

	// A path that cannot be opened: the log stays on the file it has.
	if err := os.Rename(path, path+".2"); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(path, 0o755); err != nil {
		t.Fatal(err)
	}
	l.Reopen()
	l.Emit(blocked("new", "front", 2))
	l.sync(nil)
	if s := l.Stats(); s.Reopens != 1 || s.ReopenErrors != 1 {
		t.Errorf("Stats %+v", s)
	}
	mu.Lock()
	if len(errs) != 1 || !errors.Is(errs[0], errIsDir(path)) {
		t.Errorf("OnError got %v", errs)
	}
	mu.Unlock()
	// It retries on the next Reopen.
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	l.Reopen()
	l.Emit(blocked("newest", "front", 0))
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if s := l.Stats(); s.Reopens != 2 || s.ReopenErrors != 1 || s.Blocked != 9 || s.WriteErrors != 0 {
		t.Errorf("Stats %+v", s)
	}
	for _, f := range []struct {
		name  string
		rules string
	}{{".1", "old old old old old"}, {".2", "new new new"}, {"", "newest"}} {
		b, err := os.ReadFile(path + f.name)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, r := range records(t, b) {
			got = append(got, r.Rule)
		}
		if strings.Join(got, " ") != f.rules {
			t.Errorf("file%s: rules %q, want %q", f.name, got, f.rules)
		}
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o640&^umask() {
		t.Errorf("new file: %v, %v", fi.Mode(), err)
	}

	// Reopen of a writer does nothing.
	l = start(t, Writer(io.Discard), Options{})
	l.Reopen()
	l.Emit(blocked("x", "y", 0))
	if err := l.Close(); err != nil || l.Stats().Reopens != 0 {
		t.Errorf("writer Reopen: %v, %+v", err, l.Stats())
	}
}

// errIsDir matches the error of opening a directory for writing.
func errIsDir(path string) error {
	_, err := os.OpenFile(path, os.O_WRONLY, 0)
	var pe *os.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

func umask() os.FileMode {
	dir, _ := os.MkdirTemp("", "umask")
	defer os.RemoveAll(dir)
	f, err := os.OpenFile(filepath.Join(dir, "f"), os.O_CREATE|os.O_WRONLY, 0o777)
	if err != nil {
		return 0
	}
	defer f.Close()
	fi, _ := f.Stat()
	return 0o777 &^ fi.Mode().Perm()
}

// gate is a writer that blocks its first Write until released.
type gate struct {
	entered chan struct{}
	release chan struct{}
	stuck   atomic.Bool
	n       atomic.Int64 // lines written
}

func (g *gate) Write(p []byte) (int, error) {
	if g.stuck.CompareAndSwap(false, true) {
		close(g.entered)
		<-g.release
	}
	g.n.Add(int64(bytes.Count(p, []byte("\n"))))
	return len(p), nil
}

// TestDropped: an event that finds the buffer full is dropped and counted.
func TestDropped(t *testing.T) {
	g := &gate{entered: make(chan struct{}), release: make(chan struct{})}
	l := start(t, Writer(g), Options{Buffer: 1})
	if !l.Emit(blocked("a", "b", 0)) {
		t.Fatal("first event refused")
	}
	<-g.entered // the writer is stuck writing it
	if !l.Emit(blocked("a", "b", 1)) {
		t.Error("second event (buffer) refused")
	}
	if l.Emit(blocked("a", "b", 2)) || l.Emit(endOf(blocked("a", "b", 2))) {
		t.Error("event beyond the buffer taken")
	}
	close(g.release)
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	if s := l.Stats(); s.Dropped != 2 || s.Blocked != 2 || g.n.Load() != 2 {
		t.Errorf("Stats %+v, %d lines", s, g.n.Load())
	}
}

// TestClose: Emit after Close, or racing with it, returns false without
// panicking; Close is idempotent and returns the first write error.
func TestClose(t *testing.T) {
	var wg sync.WaitGroup
	l := start(t, Writer(io.Discard), Options{Rate: 1000, Burst: 10})
	for w := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 10000 {
				l.Emit(blocked("r", "c", w*10000+i))
			}
		}()
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	wg.Wait()
	if l.Emit(blocked("r", "c", 0)) || l.Emit(endOf(blocked("r", "c", 0))) {
		t.Error("Emit after Close returned true")
	}
	l.Reopen()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}

	var reported []error
	boom := errors.New("disk full")
	fails := 0
	w := writerFunc(func(p []byte) (int, error) {
		if fails < 2 {
			fails++
			return 0, boom
		}
		return len(p), nil
	})
	l = start(t, Writer(w), Options{OnError: func(err error) { reported = append(reported, err) }})
	for i := range 4 {
		l.Emit(blocked("r", "c", i))
		l.sync(nil)
	}
	err := l.Close()
	if !errors.Is(err, boom) || !errors.Is(l.Close(), boom) {
		t.Errorf("Close: %v", err)
	}
	if s := l.Stats(); s.WriteErrors != 2 || s.Blocked != 4 || len(reported) != 1 {
		t.Errorf("Stats %+v, reported %v", s, reported)
	}
}

// TestOptions: invalid options are refused; Burst defaults to Rate.
func TestOptions(t *testing.T) {
	for _, o := range []Options{{Format: "xml"}, {Rate: -1}, {Burst: -1}} {
		if _, err := New(Writer(io.Discard), o); err == nil {
			t.Errorf("%+v accepted", o)
		}
	}
	l, err := newLog(Dest{}, Options{Rate: 2.5})
	if err != nil || l.lim.burst != 3 || l.out != io.Discard {
		t.Errorf("Rate 2.5: %v, %+v", err, l.lim)
	}
	o := OptionsFrom(rules.LogConfig{Format: "text", Rate: 5, Burst: 7, Blocked: "x"})
	if o.Format != "text" || o.Rate != 5 || o.Burst != 7 {
		t.Errorf("OptionsFrom: %+v", o)
	}
	d, err := OpenDest("stderr", io.Discard, os.Stderr)
	if err != nil || d.w != os.Stderr || d.Path() != "" || d.Close() != nil {
		t.Errorf("OpenDest stderr: %+v, %v", d, err)
	}
	p := filepath.Join(t.TempDir(), "f")
	if d, err = OpenDest(p, nil, nil); err != nil || d.Path() != p || d.Close() != nil {
		t.Errorf("OpenDest path: %+v, %v", d, err)
	}
	if _, err := OpenFile(filepath.Join(p, "x")); err == nil {
		t.Error("OpenFile under a file succeeded")
	}
}

// TestEmitAllocs: Emit, and the writer behind it, allocate nothing once a
// rule has its bucket, whether the event passes or is suppressed.
func TestEmitAllocs(t *testing.T) {
	ev := blocked("default", "front", 0)
	ev.L7, ev.SNI = rules.L7TLS, "example.com"
	end := endOf(ev)
	for _, tt := range []struct {
		name string
		o    Options
	}{
		{"passed json", Options{Rate: 1, Burst: 1 << 30}},
		{"passed text", Options{Format: "text", Rate: 1, Burst: 1 << 30}},
		{"suppressed", Options{Rate: 1, Burst: 1}},
		{"unlimited", Options{}},
	} {
		l := start(t, Writer(io.Discard), tt.o)
		l.Emit(ev) // makes the bucket, and the writer's buffers
		l.Emit(end)
		l.sync(l.writeSuppressed)
		if n := testing.AllocsPerRun(1000, func() { l.Emit(ev) }); n != 0 {
			t.Errorf("%s: %v allocations per Emit", tt.name, n)
		}
		if n := testing.AllocsPerRun(1000, func() { l.Emit(end) }); n != 0 {
			t.Errorf("%s: %v allocations per Emit of an end", tt.name, n)
		}
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestRecordOfQUIC(t *testing.T) {
	for _, c := range []struct {
		version uint32
		want    string
	}{{1, "v1"}, {0x6b3343cf, "v2"}, {0xff00001d, "0xff00001d"}} {
		ev := blocked("r1", "front", 7)
		ev.L7, ev.SNI, ev.QUIC = rules.L7TLS, "quic.example", c.version
		if r := RecordOf(ev); r.L7 != "quic" || r.QUICVersion != c.want || r.SNI != "quic.example" {
			t.Errorf("QUIC %#x: l7 %q, quic_version %q, sni %q; want quic, %s", c.version, r.L7, r.QUICVersion, r.SNI, c.want)
		}
	}
	ev := blocked("r1", "front", 7)
	ev.L7, ev.SNI = rules.L7TLS, "tcp.example"
	if r := RecordOf(ev); r.L7 != "tls" || r.QUICVersion != "" {
		t.Errorf("TLS over TCP: l7 %q, quic_version %q", r.L7, r.QUICVersion)
	}
}

// learnedNames is a names.List holding ns, as the engine gets it from its
// store.
func learnedNames(tb testing.TB, ns ...string) names.List {
	tb.Helper()
	s := names.New(10)
	c, a := netip.MustParseAddr("172.18.0.2"), netip.MustParseAddr("140.82.121.4")
	s.Learn(c, &names.Answer{Addr: a, TTL: time.Hour, Names: ns}, names.Limits{MaxTTL: time.Hour}, time.Now())
	l := s.List(c, a, time.Now())
	if len(l.Strings()) != len(ns) {
		tb.Fatalf("store holds %q, want %q", l.Strings(), ns)
	}
	return l
}

// TestNamesField: the names learned for the remote address, as a JSON
// array and as one comma-joined text value.
func TestNamesField(t *testing.T) {
	ev := blocked("r1", "front", 0)
	ev.Direction = rules.Egress
	ev.Names = learnedNames(t, "objects.githubusercontent.com", "github.map.fastly.net")
	for _, tt := range []struct{ format, want string }{
		{"json", `"packets":1,"names":["objects.githubusercontent.com","github.map.fastly.net"]}`},
		{"text", ` packets=1 names=objects.githubusercontent.com,github.map.fastly.net` + "\n"},
	} {
		var buf bytes.Buffer
		l := start(t, Writer(&buf), Options{Format: tt.format})
		l.Emit(ev)
		if err := l.Close(); err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(buf.String(), tt.want) {
			t.Errorf("%s: %s lacks %s", tt.format, buf.String(), tt.want)
		}
	}
}
