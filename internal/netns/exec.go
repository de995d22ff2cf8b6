package netns

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
)

// Run runs name with args in the network namespace at path (only the
// network namespace changes) and returns its combined output. The error
// carries that output too.
func Run(ctx context.Context, path, name string, args ...string) (string, error) {
	var out []byte
	err := Do(path, func() error {
		// The child is forked from this thread, in path's namespace.
		var err error
		out, err = exec.CommandContext(ctx, name, args...).CombinedOutput()
		return err
	})
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return string(out), nil
}

// IPBatch runs "ip -n ns -batch -" with the commands cmds, one a line, or
// "ip -batch -" in the caller's namespace when ns is empty (to add and
// delete named namespaces). ns is a name from Dir, as ip wants it.
func IPBatch(ctx context.Context, ns, cmds string) error {
	args := []string{"-batch", "-"}
	if ns != "" {
		args = append([]string{"-n", ns}, args...)
	}
	cmd := exec.CommandContext(ctx, "ip", args...)
	cmd.Stdin = strings.NewReader(cmds)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// Command returns a command running "ip netns exec ns name args..." (ns a
// name from Dir). ip netns exec also mounts a /sys that shows the
// namespace's interfaces, as on a real host, which is what a program
// under test expects. The command runs in its own process group; if it is
// still running when ctx is done, the whole group is killed.
func Command(ctx context.Context, ns, name string, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns, name}, args...)...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error {
		err := syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		if errors.Is(err, syscall.ESRCH) {
			return os.ErrProcessDone
		}
		return err
	}
	return cmd
}

// Sysctl writes value to the sysctl key (dotted, "net.ipv4.ip_forward", or
// slash-separated, "net/ipv4/conf/eth0.1/forwarding") in the network
// namespace at path.
func Sysctl(path, key, value string) error {
	err := Do(path, func() error {
		return os.WriteFile(sysctlPath(key), []byte(value+"\n"), 0)
	})
	if err != nil {
		return fmt.Errorf("netns: sysctl %s=%s in %s: %w", key, value, path, err)
	}
	return nil
}

// ReadSysctl reads the sysctl key (as for Sysctl) in the network namespace
// at path, without the trailing newline.
func ReadSysctl(path, key string) (string, error) {
	var b []byte
	err := Do(path, func() error {
		var err error
		b, err = os.ReadFile(sysctlPath(key))
		return err
	})
	if err != nil {
		return "", fmt.Errorf("netns: sysctl %s in %s: %w", key, path, err)
	}
	return strings.TrimSpace(string(b)), nil
}

// HasSysctl reports whether the sysctl key exists in the network namespace
// at path (bridge netfilter's, for one, exist only once br_netfilter is
// loaded).
func HasSysctl(path, key string) (bool, error) {
	exists := true
	err := Do(path, func() error {
		_, err := os.Stat(sysctlPath(key))
		if errors.Is(err, os.ErrNotExist) {
			exists = false
			return nil
		}
		return err
	})
	if err != nil {
		return false, fmt.Errorf("netns: sysctl %s in %s: %w", key, path, err)
	}
	return exists, nil
}

// sysctlPath returns the /proc/sys file of key: a dotted key has its dots
// turned into slashes, a key with a slash is taken as it is (interface
// names may hold dots).
func sysctlPath(key string) string {
	if strings.Contains(key, "/") {
		return filepath.Join("/proc/sys", key)
	}
	return filepath.Join("/proc/sys", strings.ReplaceAll(key, ".", "/"))
}

// PrepareIPv6 readies the namespace at path for interfaces that are yet
// to appear: with ipv6, duplicate address detection off, so that
// addresses are usable at once; without, IPv6 off, so that an IPv4-only
// namespace stays quiet (no link-local addresses, router solicitations or
// DAD).
func PrepareIPv6(path string, ipv6 bool) error {
	keys, value := []string{"net.ipv6.conf.all.disable_ipv6", "net.ipv6.conf.default.disable_ipv6"}, "1"
	if ipv6 {
		keys, value = []string{"net.ipv6.conf.all.accept_dad", "net.ipv6.conf.default.accept_dad"}, "0"
	}
	for _, k := range keys {
		if err := Sysctl(path, k, value); err != nil {
			return err
		}
	}
	return nil
}
