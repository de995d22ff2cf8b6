package bench

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
)

// queueProc is the kernel's NFQUEUE table of the reading thread's network
// namespace. /proc/net is a link to /proc/self/net, which follows the
// namespace of the process's main thread; thread-self follows the thread
// that lab.Do switched.
const queueProc = "/proc/thread-self/net/netfilter/nfnetlink_queue"

// QueueCounters are the kernel's counters of the bound NFQUEUE queues of
// a namespace, summed over the queues.
type QueueCounters struct {
	Queues       int    `json:"queues"`        // bound queues
	QueueDropped uint64 `json:"queue_dropped"` // dropped because the queue was full
	UserDropped  uint64 `json:"user_dropped"`  // dropped because the socket buffer was full
	IDSequence   uint64 `json:"id_sequence"`   // last packet id: packets queued since each queue was bound
}

// parseQueueProc sums the lines of nfnetlink_queue:
// queue_num portid queue_total copy_mode copy_range queue_dropped
// user_dropped id_sequence 1.
func parseQueueProc(r io.Reader) (QueueCounters, error) {
	var c QueueCounters
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 0 {
			continue
		}
		if len(f) < 8 {
			return c, fmt.Errorf("unexpected line %q", sc.Text())
		}
		var v [3]uint64
		for i, s := range f[5:8] {
			n, err := strconv.ParseUint(s, 10, 64)
			if err != nil {
				return c, fmt.Errorf("unexpected line %q: %w", sc.Text(), err)
			}
			v[i] = n
		}
		c.Queues++
		c.QueueDropped += v[0]
		c.UserDropped += v[1]
		c.IDSequence += v[2]
	}
	return c, sc.Err()
}

// readQueueCounters reads the counters of the calling thread's namespace;
// call it inside lab.Do.
func readQueueCounters() (QueueCounters, error) {
	f, err := os.Open(queueProc)
	if err != nil {
		return QueueCounters{}, err
	}
	defer f.Close()
	c, err := parseQueueProc(f)
	if err != nil {
		return c, fmt.Errorf("parse %s: %w", queueProc, err)
	}
	return c, nil
}

// userHZ is the unit of /proc/PID/stat's times: USER_HZ, 100 on every
// Linux architecture's ABI.
const userHZ = 100

// processCPU returns the user plus system CPU time of process pid (all of
// its threads) in seconds, from /proc/PID/stat.
func processCPU(pid int) (float64, error) {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, fmt.Errorf("read CPU time: %w", err)
	}
	return parseStatCPU(string(b))
}

// parseStatCPU reads utime and stime (fields 14 and 15) from a
// /proc/PID/stat line. The command name (field 2) may contain spaces and
// parentheses, so fields are counted after its last ')'.
func parseStatCPU(stat string) (float64, error) {
	i := strings.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, fmt.Errorf("parse /proc stat %q: no command name", stat)
	}
	f := strings.Fields(stat[i+1:])
	// f[0] is field 3 (state); utime is field 14.
	if len(f) < 13 {
		return 0, fmt.Errorf("parse /proc stat %q: too few fields", stat)
	}
	var ticks uint64
	for _, s := range f[11:13] {
		n, err := strconv.ParseUint(s, 10, 64)
		if err != nil {
			return 0, fmt.Errorf("parse /proc stat: %w", err)
		}
		ticks += n
	}
	return float64(ticks) / userHZ, nil
}
