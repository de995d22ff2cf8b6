package docker_test

import (
	"context"
	"errors"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nfqguard/nfqguard/docker"
	"github.com/nfqguard/nfqguard/docker/fakedocker"
)

// Short enough to keep tests fast, long enough that a loaded CI machine
// does not turn a burst of events into two.
const (
	testDebounce = 50 * time.Millisecond
	waitLong     = 5 * time.Second
)

// checkGoroutines fails the test if, once its later cleanups have run, more
// goroutines are alive than when it was called. Call it first.
func checkGoroutines(t *testing.T) {
	before := runtime.NumGoroutine()
	t.Cleanup(func() {
		deadline := time.Now().Add(waitLong)
		for runtime.NumGoroutine() > before {
			if time.Now().After(deadline) {
				buf := make([]byte, 1<<20)
				t.Errorf("goroutine leak: %d before, %d after\n%s", before, runtime.NumGoroutine(), buf[:runtime.Stack(buf, true)])
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
}

// watch runs a Watcher on path until the test ends and returns the lists
// it delivers and the errors it reports.
type watch struct {
	lists  chan []docker.Container
	errs   chan error
	cancel context.CancelFunc
	done   chan error
}

func startWatch(t *testing.T, path string, tweak func(*docker.Watcher)) *watch {
	t.Helper()
	w := &watch{lists: make(chan []docker.Container, 100), errs: make(chan error, 100), done: make(chan error, 1)}
	dw := &docker.Watcher{
		Client:     docker.NewClient(path),
		Debounce:   testDebounce,
		MinBackoff: 10 * time.Millisecond,
		MaxBackoff: 40 * time.Millisecond,
		OnError: func(err error, _ time.Duration) {
			select {
			case w.errs <- err:
			default:
			}
		},
	}
	if tweak != nil {
		tweak(dw)
	}
	ctx, cancel := context.WithCancel(context.Background())
	w.cancel = cancel
	go func() { w.done <- dw.Run(ctx, func(cs []docker.Container) { w.lists <- cs }) }()
	t.Cleanup(func() { w.stop(t) })
	return w
}

// stop cancels the watcher and checks that Run returns promptly.
func (w *watch) stop(t *testing.T) {
	t.Helper()
	w.cancel()
	select {
	case err, ok := <-w.done:
		if ok && !errors.Is(err, context.Canceled) {
			t.Errorf("Run returned %v, want context.Canceled", err)
		}
		if ok {
			close(w.done)
		}
	case <-time.After(time.Second):
		t.Fatal("Run did not return within 1s of its context ending")
	}
}

func (w *watch) next(t *testing.T) []docker.Container {
	t.Helper()
	select {
	case cs := <-w.lists:
		return cs
	case <-time.After(waitLong):
		t.Fatal("no container list delivered")
		return nil
	}
}

func (w *watch) nextErr(t *testing.T) error {
	t.Helper()
	select {
	case err := <-w.errs:
		return err
	case <-time.After(waitLong):
		t.Fatal("no error reported")
		return nil
	}
}

func (w *watch) quiet(t *testing.T, d time.Duration) {
	t.Helper()
	select {
	case cs := <-w.lists:
		t.Errorf("unexpected list delivered: %v", names(cs))
	case <-time.After(d):
	}
}

func names(cs []docker.Container) string {
	var s []string
	for _, c := range cs {
		s = append(s, c.Name)
	}
	return strings.Join(s, ",")
}

func TestWatcherFollowsEvents(t *testing.T) {
	checkGoroutines(t)
	srv := fakedocker.New(t)
	srv.SetContainers(web)
	w := startWatch(t, srv.Path, nil)
	if got := names(w.next(t)); got != "web" {
		t.Fatalf("first list = %q, want web", got)
	}
	waitStreams(t, srv, 1)

	// A burst of events (docker restart) is one relisting.
	srv.SetContainers(web, db)
	for _, a := range []string{"kill", "die", "stop", "start", "restart"} {
		srv.Emit("container", a, db.ID, map[string]string{"name": "db"})
	}
	if got := names(w.next(t)); got != "db,web" {
		t.Errorf("list after start = %q, want db,web", got)
	}
	w.quiet(t, 4*testDebounce)
	if n := srv.Lists(); n != 2 {
		t.Errorf("daemon served %d lists, want 2 (one at start, one for the burst)", n)
	}

	// Events that change no address are ignored.
	srv.Emit("container", "exec_start: sh", web.ID, nil)
	srv.Emit("container", "health_status: healthy", web.ID, nil)
	w.quiet(t, 4*testDebounce)

	// Network connections are followed.
	srv.SetContainers(db)
	srv.Emit("network", "disconnect", "n1", map[string]string{"container": web.ID})
	if got := names(w.next(t)); got != "db" {
		t.Errorf("list after disconnect = %q, want db", got)
	}
}

func waitStreams(t *testing.T, srv *fakedocker.Server, n int) {
	t.Helper()
	deadline := time.Now().Add(waitLong)
	for srv.Streams() != n {
		if time.Now().After(deadline) {
			t.Fatalf("%d event streams open, want %d", srv.Streams(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestWatcherReconnectsAfterRestart(t *testing.T) {
	checkGoroutines(t)
	srv := fakedocker.New(t)
	srv.SetContainers(web)
	w := startWatch(t, srv.Path, nil)
	w.next(t)
	waitStreams(t, srv, 1)

	srv.Stop()
	if err := w.nextErr(t); !strings.Contains(err.Error(), "follow events") {
		t.Errorf("error after the daemon stopped = %v, want it to be about the event stream", err)
	}
	w.nextErr(t) // at least one failed reconnection while it is down
	srv.SetContainers(web, db)
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	if got := names(w.next(t)); got != "db,web" {
		t.Errorf("list after the daemon came back = %q, want db,web", got)
	}
	waitStreams(t, srv, 1)
	srv.SetContainers(db)
	srv.Emit("container", "die", web.ID, nil)
	if got := names(w.next(t)); got != "db" {
		t.Errorf("events are not followed after reconnecting: list = %q, want db", got)
	}
}

func TestWatcherStreamCut(t *testing.T) {
	checkGoroutines(t)
	srv := fakedocker.New(t)
	w := startWatch(t, srv.Path, nil)
	w.next(t)
	waitStreams(t, srv, 1)
	srv.CutStreams()
	if err := w.nextErr(t); !strings.Contains(err.Error(), "unexpected EOF") {
		t.Errorf("error after the stream was cut = %v", err)
	}
	w.next(t) // resubscribed and listed again
	waitStreams(t, srv, 1)
}

// retries records what a watcher reports to OnError, besides startWatch's
// own reporting.
type retries struct {
	mu    sync.Mutex
	errs  []error
	waits []time.Duration
}

// hook wraps dw.OnError; pass it as startWatch's tweak (after any other).
func (r *retries) hook(dw *docker.Watcher) {
	report := dw.OnError
	dw.OnError = func(err error, wait time.Duration) {
		r.mu.Lock()
		r.errs = append(r.errs, err)
		r.waits = append(r.waits, wait)
		r.mu.Unlock()
		report(err, wait)
	}
}

// since returns the errors and waits reported from the n-th on.
func (r *retries) since(n int) ([]error, []time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]error(nil), r.errs[min(n, len(r.errs)):]...), append([]time.Duration(nil), r.waits[min(n, len(r.waits)):]...)
}

func (r *retries) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.errs)
}

// downRetry is the tests' DownRetry, and hour a backoff no test may wait
// out: a watcher that backed off while no daemon listens would not be
// heard from again before the test gives up.
const (
	downRetry = 5 * time.Millisecond
	hour      = time.Hour
)

// TestWatcherUnreachableRetried: while the socket does not exist the
// watcher retries every DownRetry, however long it lasts, not with its
// backoff, and finds the daemon by itself once it is there.
func TestWatcherUnreachableRetried(t *testing.T) {
	checkGoroutines(t)
	path := filepath.Join(t.TempDir(), "later.sock")
	var r retries
	w := startWatch(t, path, func(dw *docker.Watcher) {
		dw.MinBackoff, dw.MaxBackoff, dw.DownRetry = hour, hour, downRetry
		r.hook(dw)
	})
	for range 5 {
		if err := w.nextErr(t); !strings.Contains(err.Error(), "dial unix "+path) || !errors.Is(err, syscall.ENOENT) {
			t.Errorf("error = %v, want the dial error naming the socket, ENOENT", err)
		}
	}
	if _, waits := r.since(0); slices.ContainsFunc(waits[:5], func(d time.Duration) bool { return d != downRetry }) {
		t.Errorf("retry delays = %v, want every one DownRetry (%v) while the socket does not exist", waits, downRetry)
	}

	// The daemon appears: the watcher finds it by itself.
	fakedocker.NewAt(t, path, db)
	if got := names(w.next(t)); got != "db" {
		t.Errorf("list once the daemon is up = %q, want db", got)
	}
}

// TestWatcherDaemonDown: a daemon that was up stops (its socket goes) or is
// killed (the socket stays, connecting is refused). The cut stream is
// retried after MinBackoff; then, however many attempts fail meanwhile,
// every DownRetry, so that the daemon is listed again soon after it is
// back; and the backoff has not grown meanwhile.
func TestWatcherDaemonDown(t *testing.T) {
	checkGoroutines(t)
	for _, tc := range []struct {
		name string
		down func(*fakedocker.Server)
		want syscall.Errno
	}{
		{"stopped", (*fakedocker.Server).Stop, syscall.ENOENT},
		{"killed", (*fakedocker.Server).Kill, syscall.ECONNREFUSED},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const minBackoff = 10 * time.Millisecond
			srv := fakedocker.New(t, web)
			var r retries
			w := startWatch(t, srv.Path, func(dw *docker.Watcher) {
				dw.MinBackoff, dw.MaxBackoff, dw.DownRetry = minBackoff, hour, downRetry
				r.hook(dw)
			})
			w.next(t)
			for round := range 2 {
				waitStreams(t, srv, 1)
				from := r.count()
				tc.down(srv)
				// The stream's end, then at least 8 failed attempts: a
				// backoff from 10 ms would have reached 2.56 s.
				deadline := time.Now().Add(waitLong)
				for r.count()-from < 9 && time.Now().Before(deadline) {
					time.Sleep(downRetry)
				}
				errs, waits := r.since(from)
				if len(errs) < 9 {
					t.Fatalf("round %d: %d errors reported within %v, want 9 (the stream's end and 8 retries); waits %v", round, len(errs), waitLong, waits)
				}
				if !strings.Contains(errs[0].Error(), "unexpected EOF") || waits[0] != minBackoff {
					t.Errorf("round %d: first report %v, retry in %v; want the stream's end, retried after MinBackoff (%v)", round, errs[0], waits[0], minBackoff)
				}
				for i, err := range errs[1:] {
					if !errors.Is(err, tc.want) || waits[i+1] != downRetry {
						t.Errorf("round %d: report %d: %v, retry in %v; want %q, retried after DownRetry (%v)",
							round, i+1, err, waits[i+1], tc.want, downRetry)
					}
				}
				srv.SetContainers(web, db)
				if err := srv.Start(); err != nil {
					t.Fatal(err)
				}
				if got := names(w.next(t)); got != "db,web" {
					t.Errorf("round %d: list once the daemon is back = %q, want db,web", round, got)
				}
				srv.SetContainers(web)
			}
		})
	}
}

// TestWatcherDefaultDownRetry: without DownRetry set, a daemon that does
// not listen is retried after DefaultDownRetry, 250 ms, whatever the
// backoff.
func TestWatcherDefaultDownRetry(t *testing.T) {
	checkGoroutines(t)
	if docker.DefaultDownRetry != 250*time.Millisecond {
		t.Errorf("DefaultDownRetry = %v, documented as 250 ms", docker.DefaultDownRetry)
	}
	var r retries
	w := startWatch(t, filepath.Join(t.TempDir(), "none.sock"), func(dw *docker.Watcher) {
		dw.MinBackoff, dw.MaxBackoff = hour, hour
		r.hook(dw)
	})
	w.nextErr(t)
	if _, waits := r.since(0); waits[0] != docker.DefaultDownRetry {
		t.Errorf("first retry in %v, want DefaultDownRetry (%v)", waits[0], docker.DefaultDownRetry)
	}
}

// TestWatcherListRefused: a daemon that answers with an error is retried
// with the backoff, doubling up to MaxBackoff, not every DownRetry.
func TestWatcherListRefused(t *testing.T) {
	checkGoroutines(t)
	srv := fakedocker.New(t)
	srv.FailList(500)
	var r retries
	w := startWatch(t, srv.Path, func(dw *docker.Watcher) {
		dw.DownRetry = downRetry
		r.hook(dw)
	})
	for range 4 {
		err := w.nextErr(t)
		if apiErr, ok := errors.AsType[*docker.APIError](err); !ok || apiErr.Status != 500 || !strings.Contains(err.Error(), "500 list refused") {
			t.Errorf("error = %v, want the daemon's 500", err)
		}
	}
	if _, waits := r.since(0); !slices.Equal(waits[:4], []time.Duration{10 * time.Millisecond, 20 * time.Millisecond, 40 * time.Millisecond, 40 * time.Millisecond}) {
		t.Errorf("retry delays = %v, want 10ms doubling up to 40ms", waits)
	}
	srv.FailList(0)
	w.next(t)
}

func TestWatcherListTimeout(t *testing.T) {
	checkGoroutines(t)
	srv := fakedocker.New(t)
	srv.DelayList(time.Hour)
	w := startWatch(t, srv.Path, func(dw *docker.Watcher) { dw.ListTimeout = 50 * time.Millisecond })
	if err := w.nextErr(t); !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), "no answer within 50ms") {
		t.Errorf("error = %v, want a timeout that says so", err)
	}
}

// TestWatcherCancel checks that Run returns promptly whatever it is doing
// when its context ends: following the stream, waiting to retry, or
// waiting for a listing.
func TestWatcherCancel(t *testing.T) {
	checkGoroutines(t)
	t.Run("streaming", func(t *testing.T) {
		srv := fakedocker.New(t)
		w := startWatch(t, srv.Path, nil)
		w.next(t)
		waitStreams(t, srv, 1)
		w.stop(t)
		waitStreams(t, srv, 0)
	})
	t.Run("backing off", func(t *testing.T) {
		w := startWatch(t, filepath.Join(t.TempDir(), "none.sock"), func(dw *docker.Watcher) {
			dw.MinBackoff, dw.MaxBackoff = time.Hour, time.Hour
		})
		w.nextErr(t)
		w.stop(t)
	})
	t.Run("listing", func(t *testing.T) {
		srv := fakedocker.New(t)
		srv.DelayList(time.Hour)
		w := startWatch(t, srv.Path, nil)
		waitStreams(t, srv, 1)
		w.stop(t)
	})
}
