package control

import (
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// hintBaseEnv, when set, makes TestListenPermissionHint check the
// fixtures under that directory only: it is the test run again as a user
// other than root.
const hintBaseEnv = "NFQGUARD_TEST_HINT_BASE"

// unprivileged is the user the test runs itself as when started as root.
const unprivileged = 65534

// hintCases are the paths a user other than root cannot make a socket at,
// relative to the fixtures' directory, and the step that fails.
var hintCases = []struct{ name, path string }{
	{"directory cannot be created", "ro/nfqguard/s.sock"},  // mkdir
	{"directory not the user's", "ro/s.sock"},              // bind
	{"stale socket not the user's", "stale/nfqguard.sock"}, // remove
}

// hintFixtures makes, under base, directories nobody but root may write:
// ro (empty) and stale (holding a socket nothing listens on).
func hintFixtures(t *testing.T, base string) {
	t.Helper()
	for _, d := range []string{"ro", "stale"} {
		if err := os.Mkdir(filepath.Join(base, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: filepath.Join(base, "stale", "nfqguard.sock"), Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	for _, d := range []string{"ro", "stale"} {
		if err := os.Chmod(filepath.Join(base, d), 0o555); err != nil {
			t.Fatal(err)
		}
	}
}

// checkHints calls Listen on each case and wants a permission error that
// says how to fix it, naming the user and the directory.
func checkHints(t *testing.T, base string) {
	t.Helper()
	for _, c := range hintCases {
		path := filepath.Join(base, c.path)
		s, err := Listen(path)
		if err == nil {
			s.Close()
			t.Errorf("%s: Listen(%s) as uid %d succeeded, want a permission error", c.name, path, os.Geteuid())
			continue
		}
		msg := err.Error()
		for _, want := range []string{
			"status socket " + path, "permission denied", fmt.Sprintf("as uid %d", os.Geteuid()),
			filepath.Dir(path) + " must exist and belong to that user", "RuntimeDirectory=nfqguard", "--status-socket",
		} {
			if !strings.Contains(msg, want) {
				t.Errorf("%s: Listen(%s) = %q, want it to contain %q", c.name, path, msg, want)
			}
		}
		if !errors.Is(err, fs.ErrPermission) || errors.Is(err, ErrRunning) || errors.Is(err, ErrNotSocket) {
			t.Errorf("%s: Listen(%s) = %v: want an fs.ErrPermission, neither ErrRunning nor ErrNotSocket", c.name, path, err)
		}
	}
}

// TestListenPermissionHint: a user other than root, whose socket directory
// cannot be created or exists but is root's, is told how to give it one,
// whichever step failed. Root passes every permission check, so as root the
// test runs itself again as uid 65534.
func TestListenPermissionHint(t *testing.T) {
	if base := os.Getenv(hintBaseEnv); base != "" {
		checkHints(t, base)
		return
	}
	if os.Geteuid() != 0 {
		base := t.TempDir()
		hintFixtures(t, base)
		t.Cleanup(func() { os.Chmod(filepath.Join(base, "ro"), 0o755); os.Chmod(filepath.Join(base, "stale"), 0o755) })
		checkHints(t, base)
		return
	}
	// Under a directory the other user may enter (t.TempDir's parent is
	// root's alone), with a copy of the test binary it may execute.
	base, err := os.MkdirTemp("", "nfqguard-hint-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(base) })
	if err := os.Chmod(base, 0o755); err != nil {
		t.Fatal(err)
	}
	hintFixtures(t, base)
	exe := filepath.Join(base, "control.test")
	copySelf(t, exe)
	cmd := exec.Command(exe, "-test.run=^TestListenPermissionHint$", "-test.count=1", "-test.v")
	cmd.Dir = base
	cmd.Env = append(os.Environ(), hintBaseEnv+"="+base)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: unprivileged, Gid: unprivileged}}
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: TestListenPermissionHint") {
		t.Errorf("as uid %d: %v\n%s", unprivileged, err, out)
	}
}

// copySelf copies the running test binary to dst, mode 0755.
func copySelf(t *testing.T, dst string) {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	in, err := os.Open(self)
	if err != nil {
		t.Fatal(err)
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		t.Fatal(err)
	}
	if err := out.Close(); err != nil {
		t.Fatal(err)
	}
}
