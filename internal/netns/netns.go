package netns

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"runtime"

	"golang.org/x/sys/unix"
)

// Dir is where "ip netns add" bind-mounts named namespaces.
const Dir = "/var/run/netns"

// Path returns the bind-mount path of the named namespace ns, Dir/ns.
func Path(ns string) string { return filepath.Join(Dir, ns) }

// Do runs fn on a locked OS thread switched into the network namespace at
// path (a /var/run/netns bind mount, or a process's /proc/PID/ns/net) and
// switches the thread back afterwards. Sockets created inside fn stay in
// that namespace for their whole life, so fn typically creates a listener or
// dials and returns the socket for use elsewhere; commands started inside fn
// are forked from the thread and run in the namespace.
//
// fn runs on a goroutine of its own: goroutines it starts do NOT run in the
// namespace, and it must not call testing.T.FailNow (or Fatal). A panic in
// fn is re-raised in the caller after the thread has been switched back. If
// the thread cannot be switched back it is left locked, so the Go runtime
// discards it when the goroutine exits.
func Do(path string, fn func() error) error {
	target, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("netns: open namespace %s: %w", path, err)
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
			done <- result{err: fmt.Errorf("netns: open current namespace: %w", err)}
			return
		}
		defer orig.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			// The thread may or may not have switched; do not reuse it.
			done <- result{err: fmt.Errorf("netns: enter namespace %s: %w", path, err)}
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
				res.err = fmt.Errorf("netns: leave namespace %s: %w (after fn returned %v)", path, err, res.err)
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

// Prefix returns p, or a random "nfqgXXXXXX-" when p is empty, after
// checking it can start namespace names: letters, digits, '-', '_' and '.'
// only, at most max bytes. Random prefixes keep parallel tests and test
// binaries apart.
func Prefix(p string, max int) (string, error) {
	if p == "" {
		var b [3]byte
		if _, err := rand.Read(b[:]); err != nil {
			return "", fmt.Errorf("random prefix: %w", err)
		}
		p = "nfqg" + hex.EncodeToString(b[:]) + "-"
	}
	for _, r := range p {
		ok := r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.'
		if !ok {
			return "", fmt.Errorf("invalid prefix %q: only letters, digits, '-', '_' and '.' allowed", p)
		}
	}
	if len(p) > max {
		return "", fmt.Errorf("prefix %q too long (at most %d characters)", p, max)
	}
	return p, nil
}
