package netns

import (
	"fmt"
	"os"
	"strconv"
	"syscall"
	"time"
)

// KillAll SIGKILLs every process other than this one whose network
// namespace is one of those at paths, or for which also (if not nil)
// reports true, and waits until none is left, for up to timeout. It is how
// a rig's Close makes sure nothing it started outlives its namespaces.
func KillAll(paths []string, also func(pid int) bool, timeout time.Duration) error {
	var inodes []uint64
	for _, p := range paths {
		var st syscall.Stat_t
		if err := syscall.Stat(p, &st); err == nil {
			inodes = append(inodes, st.Ino)
		}
	}
	deadline := time.Now().Add(timeout)
	for {
		pids, err := findPIDs(inodes, also)
		if err != nil {
			return fmt.Errorf("netns: find processes to kill: %w", err)
		}
		if len(pids) == 0 {
			return nil
		}
		for _, pid := range pids {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("netns: processes %v survive SIGKILL", pids)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// findPIDs lists the processes KillAll must kill.
func findPIDs(netnsInodes []uint64, also func(pid int) bool) ([]int, error) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return nil, err
	}
	self := os.Getpid()
	var pids []int
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		if inNetNS(pid, netnsInodes) || also != nil && also(pid) {
			pids = append(pids, pid)
		}
	}
	return pids, nil
}

func inNetNS(pid int, inodes []uint64) bool {
	var st syscall.Stat_t
	if err := syscall.Stat("/proc/"+strconv.Itoa(pid)+"/ns/net", &st); err != nil {
		return false
	}
	for _, ino := range inodes {
		if st.Ino == ino {
			return true
		}
	}
	return false
}
