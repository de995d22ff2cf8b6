package docker

import (
	"context"
	"errors"
	"fmt"
	"syscall"
	"time"
)

// Watcher defaults; see the Watcher fields of the same names.
const (
	DefaultDebounce    = 100 * time.Millisecond
	DefaultMinBackoff  = time.Second
	DefaultMaxBackoff  = 30 * time.Second
	DefaultListTimeout = 30 * time.Second
	// DefaultDownRetry is the wait between attempts while no daemon
	// listens on the socket (it does not exist, or connecting is
	// refused): Docker is stopped or restarting, and a quarter of a
	// second after it is back the containers are listed again. Backing
	// off instead would make a Docker that was down a while wait up to
	// MaxBackoff to be seen, with the name-keyed rules stale meanwhile.
	// A connection attempt to a missing socket costs one failed
	// connect(2).
	DefaultDownRetry = 250 * time.Millisecond
)

// Watcher follows the running containers of one daemon. The zero value of
// every field but Client means its default. Set the fields before Run; a
// Watcher runs once at a time.
type Watcher struct {
	Client *Client

	// Debounce is how long after the first relevant event of a burst the
	// containers are listed again; the burst's other events (a restart is
	// kill, die, stop, start and restart) share that listing.
	Debounce time.Duration
	// MinBackoff and MaxBackoff bound the wait before retrying after an
	// error; it doubles with each failure in a row. Failures to reach a
	// daemon where none listens are retried after DownRetry instead, and
	// leave the backoff as it was.
	MinBackoff, MaxBackoff time.Duration
	// DownRetry is the wait before retrying while no daemon listens on
	// the socket (see DefaultDownRetry).
	DownRetry time.Duration
	// ListTimeout bounds one listing, so that a hung daemon is retried.
	ListTimeout time.Duration
	// OnError, if set, is called on Run's goroutine with each failure (the
	// daemon unreachable, the stream cut, a listing refused) and the wait
	// before the next attempt.
	OnError func(err error, retryIn time.Duration)
}

// Run lists the running containers and calls onChange with them, then
// follows the event stream and calls onChange with a fresh list after each
// burst of events that may change containers' addresses (see
// Event.Changes). After an error it reports it to OnError, waits and
// starts over, subscribing and listing again; onChange is therefore called
// after every (re)connection, whether or not anything changed meanwhile.
// The wait is DownRetry (250 ms by default) while no daemon listens on the
// socket, so that a Docker that was stopped or restarting is seen soon
// after it is back however long it was away; after any other error (the
// daemon refused a request, did not answer, cut the stream) it is the
// backoff, 1 s doubling to 30 s by default.
//
// onChange runs on Run's goroutine: while it runs no events are lost, but
// the next listing waits. Run returns ctx's error once ctx is done, after
// every goroutine it started has ended.
func (w *Watcher) Run(ctx context.Context, onChange func([]Container)) error {
	minB, maxB := orDefault(w.MinBackoff, DefaultMinBackoff), orDefault(w.MaxBackoff, DefaultMaxBackoff)
	backoff := minB
	for {
		listed, err := w.session(ctx, onChange)
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if listed {
			backoff = minB // it worked for a while: retry promptly
		}
		wait, down := backoff, noDaemon(err)
		if down {
			wait = orDefault(w.DownRetry, DefaultDownRetry)
		}
		if w.OnError != nil {
			w.OnError(err, wait)
		}
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-t.C:
		}
		if !down {
			backoff = min(2*backoff, maxB)
		}
	}
}

// noDaemon reports whether err says that no daemon listens on the socket:
// it does not exist (Docker stopped, or not yet listening after a start)
// or connecting to it is refused (a socket file left behind by a daemon
// that was killed). A daemon that answers, even with an error, or a
// socket this process may not open (EACCES) is not this case.
func noDaemon(err error) bool {
	return errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED)
}

// session subscribes to events, lists, and relists after events until an
// error or ctx ends. listed reports whether a listing reached onChange.
func (w *Watcher) session(ctx context.Context, onChange func([]Container)) (listed bool, err error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// Subscribe before listing, so that a change between the listing and
	// the subscription cannot be missed.
	stream, err := w.Client.Events(ctx)
	if err != nil {
		return false, err
	}
	changed := make(chan struct{}, 1) // a pending relist; extra signals merge
	streamErr := make(chan error, 1)
	readerDone := make(chan struct{})
	go func() {
		defer close(readerDone)
		for {
			ev, err := stream.Next()
			if err != nil {
				streamErr <- err
				return
			}
			if ev.Changes() {
				select {
				case changed <- struct{}{}:
				default:
				}
			}
		}
	}()
	defer func() {
		stream.Close() // unblocks the reader's Next
		<-readerDone
	}()

	if err := w.list(ctx, onChange); err != nil {
		return false, err
	}
	debounce := orDefault(w.Debounce, DefaultDebounce)
	var timer *time.Timer
	var fire <-chan time.Time // nil while no relist is scheduled
	defer func() {
		if timer != nil {
			timer.Stop()
		}
	}()
	for {
		select {
		case <-ctx.Done():
			return true, ctx.Err()
		case err := <-streamErr:
			return true, err
		case <-changed:
			if fire == nil {
				timer = time.NewTimer(debounce)
				fire = timer.C
			}
		case <-fire:
			fire = nil
			if err := w.list(ctx, onChange); err != nil {
				return true, err
			}
		}
	}
}

func (w *Watcher) list(ctx context.Context, onChange func([]Container)) error {
	lctx, cancel := context.WithTimeout(ctx, orDefault(w.ListTimeout, DefaultListTimeout))
	defer cancel()
	cs, err := w.Client.Containers(lctx)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			return fmt.Errorf("%w (no answer within %v)", err, orDefault(w.ListTimeout, DefaultListTimeout))
		}
		return err
	}
	onChange(cs)
	return nil
}

func orDefault(d, def time.Duration) time.Duration {
	if d <= 0 {
		return def
	}
	return d
}
