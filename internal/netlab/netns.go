package netlab

import (
	"fmt"
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

// Do runs fn on a locked OS thread switched into network namespace ns of
// the lab; see InNetNS.
func (l *Lab) Do(ns string, fn func() error) error {
	return InNetNS(l.NSPath(ns), fn)
}

// InNetNS runs fn on a locked OS thread switched into the network namespace
// at nsPath (a /var/run/netns bind mount, or a process's /proc/PID/ns/net)
// and switches the thread back afterwards. Sockets created inside fn stay in
// that namespace for their whole life, so fn typically creates a listener or
// dials and returns the socket for use elsewhere; commands started inside fn
// are forked from the thread and run in the namespace.
//
// fn runs on a goroutine of its own: goroutines it starts do NOT run in the
// namespace, and it must not call testing.T.FailNow (or Fatal). A panic in
// fn is re-raised in the caller after the thread has been switched back. If
// the thread cannot be switched back it is left locked, so the Go runtime
// discards it when the goroutine exits.
func InNetNS(nsPath string, fn func() error) error {
	target, err := os.Open(nsPath)
	if err != nil {
		return fmt.Errorf("lab: open namespace %s: %w", nsPath, err)
	}
	defer target.Close()

	type result struct {
		err   error
		panic any
	}
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			done <- result{err: fmt.Errorf("lab: open current namespace: %w", err)}
			return
		}
		defer orig.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			// The thread may or may not have switched; do not reuse it.
			done <- result{err: fmt.Errorf("lab: enter namespace %s: %w", nsPath, err)}
			return
		}
		var res result
		func() {
			defer func() {
				if p := recover(); p != nil {
					res.panic = p
				}
			}()
			res.err = fn()
		}()
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			// Leave the thread locked: it exits with this goroutine.
			if res.panic == nil {
				res.err = fmt.Errorf("lab: leave namespace %s: %w (after fn returned %v)", nsPath, err, res.err)
			}
			done <- res
			return
		}
		runtime.UnlockOSThread()
		done <- res
	}()
	res := <-done
	if res.panic != nil {
		panic(res.panic)
	}
	return res.err
}
