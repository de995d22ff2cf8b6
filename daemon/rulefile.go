package daemon

// The rule file decides what every container may send and receive, and the
// engine that enforces it holds CAP_NET_ADMIN: whoever can change the file
// (or swap it, through a directory they can write) changes the host's
// firewall at the next start or reload. This is a filesystem policy of the
// commands that act on the file, not part of parsing it, so it lives here
// rather than in package rules, which parses whatever bytes it is given.

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"github.com/nfqguard/nfqguard/rules"
)

// ErrInsecureConfig marks a rule file refused because users other than root
// and the one nfqguard runs as could change it.
var ErrInsecureConfig = errors.New("insecure rule file")

// insecureEntry says why an entry on the way to the rule file is refused.
type insecureEntry struct{ why string }

func (e *insecureEntry) Error() string        { return e.why }
func (e *insecureEntry) Is(target error) bool { return target == ErrInsecureConfig }

func insecure(format string, args ...any) error {
	return &insecureEntry{why: fmt.Sprintf(format, args...)}
}

// maxConfigLinks bounds the symbolic links followed on the way to the rule
// file, as the kernel does (MAXSYMLINKS).
const maxConfigLinks = 40

// checkConfigFile refuses the rule file at path unless only root and the
// effective user can change it: every directory on the way from / to the
// file, through any symbolic links, and the file itself must be owned by
// root or the effective user; no directory may be writable by its group or
// others unless it is sticky (like /tmp, where only an entry's owner may
// rename or remove it, and every entry on the way is already required to be
// trusted); the file must be a regular file, not writable by its group or
// others. It is checked by run (at start), reload and check, so that check
// accepts exactly the files run would.
func checkConfigFile(path string) error {
	return configPolicy{euid: os.Geteuid()}.check(path)
}

// LoadRuleFile loads the rule file at path once checkConfigFile accepts
// it: how run, reload and check read it. A refused file's error wraps
// ErrInsecureConfig and names the entry, its mode and owner, and the fix.
func LoadRuleFile(path string) (*rules.Table, error) {
	if err := checkConfigFile(path); err != nil {
		return nil, err
	}
	return rules.Load(path)
}

// configPolicy is checkConfigFile for a given effective user.
type configPolicy struct {
	euid int
}

func (p configPolicy) check(path string) error {
	abs, err := filepath.Abs(path)
	if err != nil {
		return fmt.Errorf("rule file %s: %w", path, err)
	}
	links := 0
	final, fi, err := p.resolve(abs, &links)
	var ie *insecureEntry
	switch {
	case errors.As(err, &ie):
		return fmt.Errorf("%w %s: %s", ErrInsecureConfig, path, ie.why)
	case err != nil:
		return fmt.Errorf("rule file %s: %w", path, err)
	}
	if !fi.Mode().IsRegular() {
		return fmt.Errorf("rule file %s: %s is not a regular file (%v)", path, final, fi.Mode().Type())
	}
	return nil
}

// resolve walks abs (absolute and clean) from /, checking each directory
// and entry it passes and following symbolic links, and returns the path
// the file really has, and its FileInfo.
func (p configPolicy) resolve(abs string, links *int) (string, fs.FileInfo, error) {
	cur := "/"
	fi, err := os.Lstat(cur)
	if err != nil {
		return "", nil, err
	}
	if err := p.checkEntry(cur, fi); err != nil {
		return "", nil, err
	}
	for _, name := range strings.Split(strings.TrimPrefix(abs, "/"), "/") {
		if name == "" {
			continue
		}
		if !fi.IsDir() {
			return "", nil, &fs.PathError{Op: "open", Path: cur, Err: syscall.ENOTDIR}
		}
		next := filepath.Join(cur, name)
		fi, err = os.Lstat(next)
		if err != nil {
			return "", nil, err
		}
		if err := p.checkEntry(next, fi); err != nil {
			return "", nil, err
		}
		if fi.Mode()&fs.ModeSymlink != 0 {
			if *links++; *links > maxConfigLinks {
				return "", nil, &fs.PathError{Op: "open", Path: next, Err: syscall.ELOOP}
			}
			target, err := os.Readlink(next)
			if err != nil {
				return "", nil, err
			}
			if !filepath.IsAbs(target) {
				// cur has no symbolic links left in it, so a ".." in
				// target may be resolved lexically.
				target = filepath.Join(cur, target)
			}
			if next, fi, err = p.resolve(filepath.Clean(target), links); err != nil {
				return "", nil, err
			}
		}
		cur = next
	}
	return cur, fi, nil
}

// checkEntry applies the policy to one entry on the way: its owner, and for
// directories and files, who may write it. A symbolic link's own mode means
// nothing; its owner does, in a sticky directory.
func (p configPolicy) checkEntry(path string, fi fs.FileInfo) error {
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return nil // not a Unix file system's answer: nothing to judge by
	}
	kind := "file"
	switch {
	case fi.IsDir():
		kind = "directory"
	case fi.Mode()&fs.ModeSymlink != 0:
		kind = "symbolic link"
	}
	if uid := int(st.Uid); uid != 0 && uid != p.euid {
		fix := "chown root " + path
		if fi.IsDir() {
			fix = "move the rule file to a directory that only root controls, such as /etc/nfqguard"
		}
		return insecure("%s %s is owned by uid %d, who could change the rules: only root or uid %d (the user nfqguard runs as) may own it; fix: %s",
			kind, path, uid, p.euid, fix)
	}
	perm := fi.Mode().Perm()
	switch {
	case fi.IsDir() && perm&0o022 != 0 && fi.Mode()&fs.ModeSticky == 0:
		return insecure("directory %s is writable by %s (mode %04o, owner uid %d): whoever can write it can replace the rule file; fix: chmod go-w %s",
			path, writers(perm), perm, st.Uid, path)
	case fi.Mode().IsRegular() && perm&0o022 != 0:
		return insecure("file %s is writable by %s (mode %04o, owner uid %d); fix: chmod go-w %s",
			path, writers(perm), perm, st.Uid, path)
	}
	return nil
}

// writers names who besides the owner may write a file of mode perm.
func writers(perm fs.FileMode) string {
	switch {
	case perm&0o020 != 0 && perm&0o002 != 0:
		return "its group and others"
	case perm&0o020 != 0:
		return "its group"
	}
	return "others"
}
