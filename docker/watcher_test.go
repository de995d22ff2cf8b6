package docker_test

import (
	"context"
	"errors"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
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

func TestWatcherUnreachableRetried(t *testing.T) {
	checkGoroutines(t)
	path := filepath.Join(t.TempDir(), "later.sock")
	var mu sync.Mutex
	var retries []time.Duration
	w := startWatch(t, path, func(dw *docker.Watcher) {
		report := dw.OnError
		dw.OnError = func(err error, retry time.Duration) {
			mu.Lock()
			retries = append(retries, retry)
			mu.Unlock()
			report(err, retry)
		}
	})
	for range 4 {
		if err := w.nextErr(t); !strings.Contains(err.Error(), "dial unix "+path) {
			t.Errorf("error = %v, want the dial error naming the socket", err)
		}
	}
	mu.Lock()
	if len(retries) < 4 || retries[0] != 10*time.Millisecond || retries[1] != 20*time.Millisecond ||
		retries[2] != 40*time.Millisecond || retries[3] != 40*time.Millisecond {
		t.Errorf("retry delays = %v, want 10ms doubling up to 40ms", retries)
	}
	mu.Unlock()

	// The daemon appears: the watcher finds it by itself.
	fakedocker.NewAt(t, path, db)
	if got := names(w.next(t)); got != "db" {
		t.Errorf("list once the daemon is up = %q, want db", got)
	}
}

func TestWatcherListRefused(t *testing.T) {
	checkGoroutines(t)
	srv := fakedocker.New(t)
	srv.FailList(500)
	w := startWatch(t, srv.Path, nil)
	if err := w.nextErr(t); !strings.Contains(err.Error(), "500 list refused") {
		t.Errorf("error = %v", err)
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
