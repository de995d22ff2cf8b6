package daemon

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestConfigPolicyModes: who may write the file and the directories on its
// way. The test's own files are owned by the test's user, whom the policy
// trusts as the effective user.
func TestConfigPolicyModes(t *testing.T) {
	p := configPolicy{euid: os.Geteuid()}
	for _, c := range []struct {
		name    string
		dirMode fs.FileMode // of the directory holding the file
		mode    fs.FileMode // of the file
		want    []string    // in the error; nil: accepted
	}{
		{"private", 0o700, 0o600, nil},
		{"readable by all", 0o755, 0o644, nil},
		{"file writable by group", 0o700, 0o664, []string{"file", "its group", "mode 0664", "chmod go-w"}},
		{"file writable by others", 0o700, 0o602, []string{"file", "by others", "mode 0602", "chmod go-w"}},
		{"directory writable by group", 0o770, 0o600, []string{"directory", "its group", "mode 0770", "chmod go-w"}},
		{"directory writable by all", 0o777, 0o600, []string{"directory", "its group and others", "mode 0777", "chmod go-w"}},
		{"sticky directory writable by all", 0o777 | fs.ModeSticky, 0o644, nil},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "d")
			must(t, os.Mkdir(dir, 0o700))
			file := filepath.Join(dir, "config.toml")
			must(t, os.WriteFile(file, []byte("[defaults]\n"), 0o600))
			must(t, os.Chmod(file, c.mode))
			must(t, os.Chmod(dir, c.dirMode))
			t.Cleanup(func() { os.Chmod(dir, 0o700) })
			err := p.check(file)
			checkPolicyErr(t, err, file, c.want)
			if c.want != nil {
				offender := file
				if c.want[0] == "directory" {
					offender = dir
				}
				if !strings.Contains(err.Error(), "chmod go-w "+offender) {
					t.Errorf("error %q: want the fix for %s", err, offender)
				}
			}
		})
	}
}

// checkPolicyErr fails unless err is nil when want is, or else refuses
// file (ErrInsecureConfig, naming it) with every string of want.
func checkPolicyErr(t *testing.T, err error, file string, want []string) {
	t.Helper()
	if want == nil {
		if err != nil {
			t.Fatalf("check(%s): %v, want it accepted", file, err)
		}
		return
	}
	if !errors.Is(err, ErrInsecureConfig) {
		t.Fatalf("check(%s) = %v, want an insecure rule file error", file, err)
	}
	if !strings.HasPrefix(err.Error(), "insecure rule file "+file+": ") {
		t.Errorf("error %q does not start by naming the file", err)
	}
	for _, w := range want {
		if !strings.Contains(err.Error(), w) {
			t.Errorf("error %q lacks %q", err, w)
		}
	}
}

// TestConfigPolicyLinks: symbolic links are followed, and the directories
// holding each link and each target are checked.
func TestConfigPolicyLinks(t *testing.T) {
	p := configPolicy{euid: os.Geteuid()}
	root := t.TempDir()
	mkdir := func(name string, mode fs.FileMode) string {
		d := filepath.Join(root, name)
		must(t, os.Mkdir(d, 0o700))
		must(t, os.Chmod(d, mode))
		t.Cleanup(func() { os.Chmod(d, 0o700) })
		return d
	}
	safe, open := mkdir("safe", 0o755), mkdir("open", 0o777)
	must(t, os.WriteFile(filepath.Join(safe, "real.toml"), nil, 0o644))
	must(t, os.WriteFile(filepath.Join(open, "real.toml"), nil, 0o644))
	must(t, os.Symlink("real.toml", filepath.Join(safe, "rel.toml")))
	must(t, os.Symlink(filepath.Join(open, "real.toml"), filepath.Join(safe, "to-open.toml")))
	must(t, os.Symlink(filepath.Join(safe, "real.toml"), filepath.Join(open, "to-safe.toml")))
	must(t, os.Symlink("../safe", filepath.Join(safe, "dirlink")))
	must(t, os.Symlink("loop", filepath.Join(safe, "loop")))
	must(t, os.Mkdir(filepath.Join(safe, "sub"), 0o755))

	for _, c := range []struct {
		name string
		path string
		want []string // nil: accepted
	}{
		{"relative link in a safe directory", filepath.Join(safe, "rel.toml"), nil},
		{"link through a directory link", filepath.Join(safe, "dirlink", "dirlink", "real.toml"), nil},
		{"link to a file in an open directory", filepath.Join(safe, "to-open.toml"), []string{"directory " + open, "mode 0777"}},
		{"link in an open directory", filepath.Join(open, "to-safe.toml"), []string{"directory " + open}},
	} {
		t.Run(c.name, func(t *testing.T) { checkPolicyErr(t, p.check(c.path), c.path, c.want) })
	}

	t.Run("not a regular file", func(t *testing.T) {
		err := p.check(filepath.Join(safe, "sub"))
		if err == nil || errors.Is(err, ErrInsecureConfig) || !strings.Contains(err.Error(), "not a regular file") {
			t.Errorf("check(directory) = %v, want \"not a regular file\"", err)
		}
	})
	t.Run("missing", func(t *testing.T) {
		path := filepath.Join(safe, "missing.toml")
		err := p.check(path)
		if !errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), path) {
			t.Errorf("check(missing) = %v, want it to name %s and wrap fs.ErrNotExist", err, path)
		}
	})
	t.Run("loop", func(t *testing.T) {
		if err := p.check(filepath.Join(safe, "loop")); !errors.Is(err, syscall.ELOOP) {
			t.Errorf("check(loop) = %v, want ELOOP", err)
		}
	})
}

// TestConfigPolicyOwners: entries must be owned by root or the effective
// user. Files are given away with chown, which needs root.
func TestConfigPolicyOwners(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") == "true" {
			t.Fatal("giving files to another user needs root")
		}
		t.Skip("giving files to another user needs root")
	}
	const other = 65534
	root := t.TempDir()
	mine := filepath.Join(root, "mine")
	must(t, os.Mkdir(mine, 0o755))
	theirs := filepath.Join(root, "theirs")
	must(t, os.Mkdir(theirs, 0o755))
	must(t, os.Chown(theirs, other, other))
	sticky := filepath.Join(root, "sticky")
	must(t, os.Mkdir(sticky, 0o755))
	must(t, os.Chmod(sticky, 0o777|fs.ModeSticky))
	write := func(dir, name string, owner int) string {
		p := filepath.Join(dir, name)
		must(t, os.WriteFile(p, nil, 0o644))
		must(t, os.Chown(p, owner, owner))
		return p
	}
	fileTheirs := write(mine, "theirs.toml", other)
	inTheirs := write(theirs, "root.toml", 0)
	stickyTheirs := write(sticky, "theirs.toml", other)
	stickyRoot := write(sticky, "root.toml", 0)
	linkTheirs := filepath.Join(sticky, "link.toml")
	must(t, os.Symlink(filepath.Join(mine, "x"), linkTheirs))
	must(t, os.Lchown(linkTheirs, other, other))

	asRoot, asOther := configPolicy{euid: 0}, configPolicy{euid: other}
	for _, c := range []struct {
		name string
		p    configPolicy
		path string
		want []string
	}{
		{"file of another user", asRoot, fileTheirs, []string{"file " + fileTheirs, "owned by uid 65534", "chown root " + fileTheirs}},
		{"file of the effective user", asOther, fileTheirs, nil},
		{"directory of another user", asRoot, inTheirs, []string{"directory " + theirs, "owned by uid 65534", "/etc/nfqguard"}},
		{"directory of the effective user", asOther, inTheirs, nil},
		{"another user's file in a sticky directory", asRoot, stickyTheirs, []string{"owned by uid 65534"}},
		{"root's file in a sticky directory", asOther, stickyRoot, nil},
		{"another user's link in a sticky directory", asRoot, linkTheirs, []string{"symbolic link " + linkTheirs, "owned by uid 65534"}},
	} {
		t.Run(c.name, func(t *testing.T) { checkPolicyErr(t, c.p.check(c.path), c.path, c.want) })
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
