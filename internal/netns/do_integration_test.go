package netns_test

import (
	"errors"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/nfqguard/nfqguard/internal/netlab"
	"github.com/nfqguard/nfqguard/internal/netlab/netlabtest"
	"github.com/nfqguard/nfqguard/internal/netns"
)

func TestDoRestoresNamespace(t *testing.T) {
	t.Parallel()
	l := netlabtest.New(t, netlab.Options{Containers: 1})
	host, other := l.NSPath(l.Host), l.NSPath(l.Containers[0].NS)
	initial := threadNetNS(t)
	hostNS := fileIno(t, host)
	if initial == hostNS {
		t.Fatal("test process already in the lab's host namespace")
	}

	// Inside Do the thread is in the namespace, and sees the lab's links.
	var inside uint64
	must(t, netns.Do(host, func() error {
		var err error
		inside, err = threadNSIno()
		return err
	}))
	if inside != hostNS {
		t.Errorf("inside Do: netns inode %d, want %d", inside, hostNS)
	}
	// Errors and panics come back to the caller.
	sentinel := errors.New("sentinel")
	if err := netns.Do(host, func() error { return sentinel }); !errors.Is(err, sentinel) {
		t.Errorf("Do error = %v, want sentinel", err)
	}
	func() {
		defer func() {
			if p := recover(); p != "boom" {
				t.Errorf("recovered %v, want boom", p)
			}
		}()
		_ = netns.Do(host, func() error { panic("boom") })
	}()

	// Hammer Do, then check that every thread the runtime hands out is
	// back in the original namespace.
	var wg sync.WaitGroup
	for range 4 * runtime.GOMAXPROCS(0) {
		wg.Go(func() { _ = netns.Do(other, func() error { runtime.Gosched(); return nil }) })
	}
	wg.Wait()
	var bad sync.Map
	for range 4 * runtime.GOMAXPROCS(0) {
		wg.Go(func() {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			if ino, err := threadNSIno(); err != nil || ino != initial {
				bad.Store(ino, err)
			}
			time.Sleep(time.Millisecond)
		})
	}
	wg.Wait()
	bad.Range(func(k, v any) bool {
		t.Errorf("thread left in netns inode %v (err %v)", k, v)
		return true
	})
}

func threadNSIno() (uint64, error) {
	var st syscall.Stat_t
	if err := syscall.Stat("/proc/thread-self/ns/net", &st); err != nil {
		return 0, err
	}
	return st.Ino, nil
}

func threadNetNS(t *testing.T) uint64 {
	t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	ino, err := threadNSIno()
	must(t, err)
	return ino
}

func fileIno(t *testing.T, path string) uint64 {
	t.Helper()
	var st syscall.Stat_t
	must(t, syscall.Stat(path, &st))
	return st.Ino
}

func TestSysctlAndRun(t *testing.T) {
	t.Parallel()
	l := netlabtest.New(t, netlab.Options{Containers: 1})
	out := l.NSPath(l.Out)

	// The outside namespace does not forward; the write is seen there only.
	must(t, netns.Sysctl(out, "net.ipv4.ip_forward", "1"))
	if v, err := netns.ReadSysctl(out, "net/ipv4/ip_forward"); err != nil || v != "1" {
		t.Errorf("ip_forward in %s = %q, %v; want 1", l.Out, v, err)
	}
	if v, err := netns.ReadSysctl(l.NSPath(l.Containers[0].NS), "net.ipv4.ip_forward"); err != nil || v != "0" {
		t.Errorf("ip_forward in %s = %q, %v; want 0, untouched", l.Containers[0].NS, v, err)
	}
	if ok, err := netns.HasSysctl(out, "net.ipv4.no_such_key"); err != nil || ok {
		t.Errorf("HasSysctl(no_such_key) = %v, %v; want false, nil", ok, err)
	}
	if ok, err := netns.HasSysctl(out, "net.ipv4.ip_forward"); err != nil || !ok {
		t.Errorf("HasSysctl(ip_forward) = %v, %v; want true, nil", ok, err)
	}

	// Commands run by Run see the namespace's interfaces.
	got, err := netns.Run(t.Context(), out, "ip", "-o", "addr", "show", "dev", "eth0")
	must(t, err)
	if !strings.Contains(got, l.Outside.String()+"/24") {
		t.Errorf("ip addr in %s = %q, want %s/24", l.Out, got, l.Outside)
	}
	if _, err := netns.Run(t.Context(), out, "ip", "link", "show", "dev", "ext0"); err == nil {
		t.Errorf("ext0 (the host's side) visible from %s", l.Out)
	}
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
