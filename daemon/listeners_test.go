package daemon

import (
	"bytes"
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/nfqguard/nfqguard/control"
	"github.com/nfqguard/nfqguard/metrics"
	"github.com/nfqguard/nfqguard/rules"
)

// TestListenersLocalByDefault: a file that says nothing about listeners
// gets a metrics endpoint on loopback only and a status socket, a unix
// socket nobody but its owner (and root) may use.
func TestListenersLocalByDefault(t *testing.T) {
	tbl, err := rules.Parse("empty.toml", nil)
	if err != nil {
		t.Fatal(err)
	}
	host, _, err := net.SplitHostPort(tbl.Metrics.Listen)
	if err != nil {
		t.Fatalf("default metrics listen %q: %v", tbl.Metrics.Listen, err)
	}
	if a, err := netip.ParseAddr(host); err != nil || !a.IsLoopback() {
		t.Errorf("default metrics listen %q: host %q is not a loopback address", tbl.Metrics.Listen, host)
	}
	// What the default resolves to once listening, as run checks it.
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Fatalf("listen on the default metrics host: %v", err)
	}
	defer ln.Close()
	if !isLoopback(ln.Addr()) {
		t.Errorf("listener on the default host %s: isLoopback(%v) = false", host, ln.Addr())
	}

	if tbl.Status.Socket != "/run/nfqguard/nfqguard.sock" {
		t.Errorf("default status socket %q, want /run/nfqguard/nfqguard.sock", tbl.Status.Socket)
	}
	// The socket itself, made as run makes it, in a directory of the
	// test's (the default one may be a running daemon's).
	path := filepath.Join(t.TempDir(), "run", "nfqguard.sock")
	srv, err := control.Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	defer srv.Close()
	fi, err := os.Lstat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != 0o600 {
		t.Errorf("status socket %s: mode %v, want a unix socket, 0600", path, fi.Mode())
	}
	if uid := fi.Sys().(*syscall.Stat_t).Uid; int(uid) != os.Geteuid() {
		t.Errorf("status socket owned by uid %d, want the daemon's, %d", uid, os.Geteuid())
	}
	di, err := os.Stat(filepath.Dir(path))
	if err != nil {
		t.Fatal(err)
	}
	if di.Mode().Perm() != 0o700 {
		t.Errorf("status socket directory: mode %v, want 0700", di.Mode())
	}
}

func TestIsLoopback(t *testing.T) {
	for addr, want := range map[string]bool{
		"127.0.0.1:9477":       true,
		"127.0.0.53:9477":      true,
		"[::1]:9477":           true,
		"0.0.0.0:9477":         false, // every interface
		"[::]:9477":            false,
		"203.0.113.1:9477":     false,
		"[2001:db8::1]:9477":   false,
		"[::ffff:127.0.0.1]:1": true,
	} {
		a, err := net.ResolveTCPAddr("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		if got := isLoopback(a); got != want {
			t.Errorf("isLoopback(%s) = %v, want %v", addr, got, want)
		}
	}
	if isLoopback(&net.UnixAddr{Name: "/x", Net: "unix"}) {
		t.Error("isLoopback(unix address) = true: only TCP addresses are metrics listeners")
	}
}

// TestOpenStatusSocket: a status socket that cannot be opened is logged
// and the start goes on with the gauge at 0; another nfqguard answering on
// the path, or a path that is not a socket, stops the start.
func TestOpenStatusSocket(t *testing.T) {
	dir := t.TempDir()
	newDaemon := func() (*Daemon, *bytes.Buffer) {
		var buf bytes.Buffer
		return &Daemon{log: slog.New(slog.NewTextHandler(&buf, nil)), sock: &metrics.StatusSocket{}}, &buf
	}

	t.Run("cannot be opened", func(t *testing.T) {
		// A directory that cannot be created (a file is in its way): any
		// user can meet this, where a permission error needs one other
		// than root (test/e2e's TestUnprivilegedEngine runs that).
		file := filepath.Join(dir, "file")
		must(t, os.WriteFile(file, nil, 0o600))
		path := filepath.Join(file, "s.sock")
		d, log := newDaemon()
		if err := d.openStatus(path); err != nil {
			t.Fatalf("openStatus(%s) = %v, want nil: the engine starts without the socket", path, err)
		}
		if d.ctl != nil || d.sock.Up() || len(d.closers) != 0 {
			t.Errorf("after a failed open: ctl %v, up %v, %d closers; want none, down, 0", d.ctl, d.sock.Up(), len(d.closers))
		}
		for _, want := range []string{`level=ERROR msg="status socket unavailable"`, "path=" + path, "not a directory"} {
			if !strings.Contains(log.String(), want) {
				t.Errorf("log %q, want it to contain %q", log.String(), want)
			}
		}
	})

	t.Run("opened", func(t *testing.T) {
		path := filepath.Join(dir, "run", "s.sock")
		d, log := newDaemon()
		if err := d.openStatus(path); err != nil || d.ctl == nil || !d.sock.Up() {
			t.Fatalf("openStatus(%s) = %v, ctl %v, up %v; want nil, a server, up", path, err, d.ctl, d.sock.Up())
		}
		if log.Len() != 0 {
			t.Errorf("logged %q opening the socket", log.String())
		}

		// Another engine on the same path is refused, and the first one's
		// socket stays.
		d2, _ := newDaemon()
		if err := d2.openStatus(path); !errors.Is(err, control.ErrRunning) || d2.sock.Up() {
			t.Errorf("second openStatus(%s) = %v, up %v; want control.ErrRunning, down", path, err, d2.sock.Up())
		}
		if c, err := net.Dial("unix", path); err != nil {
			t.Errorf("the first engine's socket after the refused second: %v", err)
		} else {
			c.Close()
		}

		must(t, d.closeAll())
		if d.sock.Up() {
			t.Error("gauge up after the socket was closed")
		}
	})

	t.Run("not a socket", func(t *testing.T) {
		path := filepath.Join(dir, "plain")
		must(t, os.WriteFile(path, nil, 0o600))
		d, _ := newDaemon()
		if err := d.openStatus(path); !errors.Is(err, control.ErrNotSocket) {
			t.Errorf("openStatus(%s) = %v, want control.ErrNotSocket", path, err)
		}
	})
}
