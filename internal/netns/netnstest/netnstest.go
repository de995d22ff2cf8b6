package netnstest

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"runtime"
	"sync"
	"testing"

	"golang.org/x/sys/unix"
)

var (
	checkOnce sync.Once
	checkErr  error
)

// check reports why this process cannot run namespace tests (not root, or
// no network namespaces), or nil.
func check() error {
	checkOnce.Do(func() {
		if os.Geteuid() != 0 {
			checkErr = errors.New("namespace tests need root")
			return
		}
		// Try to create a network namespace on a throwaway thread: the
		// goroutine exits with the thread still locked, so the runtime
		// discards the thread instead of reusing it in the new namespace.
		done := make(chan error, 1)
		go func() {
			runtime.LockOSThread()
			done <- unix.Unshare(unix.CLONE_NEWNET)
		}()
		if err := <-done; err != nil {
			checkErr = fmt.Errorf("cannot create a network namespace: %w", err)
		}
	})
	return checkErr
}

// Require fails the test (t.Fatal) when CI=true and the process is not
// root, cannot create a network namespace or lacks one of bins on PATH;
// outside CI it skips (t.Skip) with the reason.
func Require(t testing.TB, bins ...string) {
	t.Helper()
	err := check()
	for _, bin := range bins {
		if err != nil {
			break
		}
		if _, lerr := exec.LookPath(bin); lerr != nil {
			err = fmt.Errorf("need %s (make deps installs it): %w", bin, lerr)
		}
	}
	if err == nil {
		return
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("labtest: %v", err)
	}
	t.Skipf("labtest: %v", err)
}

// Open opens a rig with open, given the test's context, fails the test
// (t.Fatal) on its error and closes the rig when the test ends, even when
// it fails, reporting Close's error with t.Error. name starts both
// messages.
func Open[R io.Closer](t testing.TB, name string, open func(context.Context) (R, error)) R {
	t.Helper()
	r, err := open(t.Context())
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	t.Cleanup(func() {
		if err := r.Close(); err != nil {
			t.Errorf("%s: close: %v", name, err)
		}
	})
	return r
}
