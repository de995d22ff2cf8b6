// Package netlabtest adapts package netlab to Go tests.
package netlabtest

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"sync"
	"testing"

	"github.com/nfqguard/nfqguard/internal/netlab"
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

// Require fails the test (t.Fatal) when CI=true and the process is not root,
// cannot create a network namespace or lacks ip, iptables or
// iptables-restore; outside CI it skips (t.Skip) with the reason.
func Require(t testing.TB) {
	t.Helper()
	RequireBinaries(t, "ip", "iptables", "iptables-restore")
}

// RequireBinaries is Require for tests that need the given binaries on
// PATH besides root and network namespaces.
func RequireBinaries(t testing.TB, bins ...string) {
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

// New builds a lab with opts, registers Close with t.Cleanup (runs even when
// the test fails), and fails the test on error. It calls Require first, so
// tests need not. Unless opts.Prefix is set, namespace names get a random
// prefix, so parallel tests and test binaries do not clash.
func New(t testing.TB, opts netlab.Options) *netlab.Lab {
	t.Helper()
	Require(t)
	l, err := netlab.New(t.Context(), opts)
	if err != nil {
		t.Fatalf("labtest: %v", err)
	}
	t.Cleanup(func() {
		if err := l.Close(); err != nil {
			t.Errorf("labtest: close lab %s: %v", l.Prefix, err)
		}
	})
	return l
}
