package dockerlab

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/nfqguard/nfqguard/internal/netns"
	"golang.org/x/sys/unix"
)

// Bounds of the shutdown steps.
const (
	removeTimeout  = 30 * time.Second
	dockerdTimeout = 20 * time.Second
	killTimeout    = 5 * time.Second
)

// Close removes every container, stops dockerd, kills any process left in
// the namespaces or running from the data root (containerd, shims,
// docker-proxy, container processes, commands from Command), unmounts
// whatever is still mounted under the state directory, removes it and
// deletes both namespaces. It works on a partially started Docker too, and
// after Stop, StartAgain or Restart, whether they succeeded or not; it
// ends a StartAgain still waiting for the API. It is idempotent: calls
// after the first return nil.
func (d *Docker) Close() error {
	var err error
	d.closeOnce.Do(func() { err = d.close() })
	return err
}

func (d *Docker) close() error {
	d.mu.Lock()
	d.closed = true
	d.mu.Unlock()
	d.cancel() // kills what Command started, ends a StartAgain's wait
	d.lifeMu.Lock()
	defer d.lifeMu.Unlock()

	d.mu.Lock()
	p := d.dockerd
	dir := d.dir
	namespaces := d.namespaces
	d.mu.Unlock()

	var errs []error
	if p != nil && !p.exited() {
		errs = append(errs, d.removeContainers()...)
		if err := terminate(context.Background(), p); err != nil {
			errs = append(errs, err)
		}
	}
	if err := killLeftovers(namespaces, dir); err != nil {
		errs = append(errs, err)
	}
	if dir != "" {
		if err := unmountUnder(dir); err != nil {
			errs = append(errs, err)
		}
		if err := os.RemoveAll(dir); err != nil {
			errs = append(errs, fmt.Errorf("dockerlab: remove %s: %w", dir, err))
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, ns := range namespaces {
		if _, err := os.Stat(netns.Path(ns)); err != nil {
			continue
		}
		if err := netns.IPBatch(ctx, "", "netns del "+ns+"\n"); err != nil {
			errs = append(errs, fmt.Errorf("dockerlab: delete namespace %s: %w", ns, err))
		}
	}
	return errors.Join(errs...)
}

// removeContainers force-removes every container of the running dockerd,
// so that Close leaves none of their processes or mounts behind.
func (d *Docker) removeContainers() []error {
	var errs []error
	ctx, cancel := context.WithTimeout(context.Background(), removeTimeout)
	defer cancel()
	if ids, err := d.CLI(ctx, "ps", "-aq"); err != nil {
		errs = append(errs, err)
	} else if f := strings.Fields(ids); len(f) > 0 {
		if _, err := d.CLI(ctx, append([]string{"rm", "-f"}, f...)...); err != nil {
			errs = append(errs, err)
		}
	}
	return errs
}

// terminate stops dockerd with SIGTERM, as systemd stops docker.service:
// it stops the running containers and its managed containerd on the way
// out. After dockerdTimeout, or once ctx is done, it escalates to SIGKILL
// and reports that it had to. It returns once dockerd has exited.
func terminate(ctx context.Context, p *dockerdProc) error {
	if p.exited() {
		return nil
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	timer := time.NewTimer(dockerdTimeout)
	defer timer.Stop()
	var why string
	select {
	case <-p.done:
		return nil
	case <-timer.C:
		why = fmt.Sprintf("did not stop within %v of SIGTERM", dockerdTimeout)
	case <-ctx.Done():
		why = fmt.Sprintf("still stopping when the wait ended (%v)", ctx.Err())
	}
	_ = p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
	return fmt.Errorf("dockerlab: dockerd %s; killed", why)
}

// killLeftovers SIGKILLs every process (other than this one) whose network
// namespace is one of namespaces, or whose root directory or executable
// lies under dir (a container's processes live in network namespaces of
// their own, but their root is an overlay mount under the data root),
// and waits until they are gone.
func killLeftovers(namespaces []string, dir string) error {
	paths := make([]string, len(namespaces))
	for i, ns := range namespaces {
		paths[i] = netns.Path(ns)
	}
	var rooted func(pid int) bool
	if dir != "" {
		rooted = func(pid int) bool { return rootedUnder(pid, dir) }
	}
	if err := netns.KillAll(paths, rooted, killTimeout); err != nil {
		return fmt.Errorf("dockerlab: %w", err)
	}
	return nil
}

// rootedUnder reports whether process pid's root directory or executable
// lies under dir.
func rootedUnder(pid int, dir string) bool {
	for _, link := range []string{"root", "exe"} {
		if target, err := os.Readlink("/proc/" + strconv.Itoa(pid) + "/" + link); err == nil && within(target, dir) {
			return true
		}
	}
	return false
}

func within(path, dir string) bool {
	return path == dir || strings.HasPrefix(path, dir+"/")
}

// unmountUnder unmounts every mount point under dir, deepest first, until
// none is left (mounts may be stacked).
func unmountUnder(dir string) error {
	if real, err := filepath.EvalSymlinks(dir); err == nil {
		dir = real
	}
	for range 10 {
		mps, err := MountsUnder(dir)
		if err != nil {
			return err
		}
		if len(mps) == 0 {
			return nil
		}
		sort.Slice(mps, func(i, j int) bool { return len(mps[i]) > len(mps[j]) })
		for _, mp := range mps {
			if err := unix.Unmount(mp, 0); err != nil {
				// Busy (a process we could not kill keeps it): detach it so
				// the directory can go; the kernel frees it later.
				_ = unix.Unmount(mp, unix.MNT_DETACH)
			}
		}
	}
	mps, err := MountsUnder(dir)
	if err == nil && len(mps) > 0 {
		err = fmt.Errorf("still mounted: %s", strings.Join(mps, ", "))
	}
	if err != nil {
		return fmt.Errorf("dockerlab: unmount under %s: %w", dir, err)
	}
	return nil
}

// MountsUnder returns the mount points of the calling process's mount
// namespace at or below dir, from /proc/self/mountinfo. dockerd, entered
// with nsenter --net only, mounts in that namespace too.
func MountsUnder(dir string) ([]string, error) {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 64*1024), 1024*1024)
	for sc.Scan() {
		// id parent major:minor root mountpoint options ...
		fields := strings.Fields(sc.Text())
		if len(fields) < 5 {
			continue
		}
		mp := unescapeMount(fields[4])
		if within(mp, dir) {
			out = append(out, mp)
		}
	}
	return out, sc.Err()
}

// unescapeMount undoes mountinfo's octal escapes (\040 for a space, …).
func unescapeMount(s string) string {
	if !strings.Contains(s, `\`) {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '\\' && i+3 < len(s) {
			if n, err := strconv.ParseUint(s[i+1:i+4], 8, 8); err == nil {
				b.WriteByte(byte(n))
				i += 3
				continue
			}
		}
		b.WriteByte(s[i])
	}
	return b.String()
}
