package queue

import (
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"strconv"
	"strings"
)

// boundQueues reads which NFQUEUE queues have a listener in this thread's
// network namespace, from /proc/net/netfilter/nfnetlink_queue.
func boundQueues() (map[uint16]bool, error) {
	qs, err := queueDrops()
	if err != nil {
		return nil, fmt.Errorf("read bound queues: %w", err)
	}
	bound := make(map[uint16]bool, len(qs))
	for q := range qs {
		bound[q] = true
	}
	return bound, nil
}

// checkNoOtherEngine refuses to take over DOCKER-USER while another live
// process listens on a queue an installed redirect sends to: that is a
// running nfqguard (one per host), not leftovers of a killed one.
//
// The list of bound queues is readable only by root (mode 0440). A user
// other than root cannot tell, and goes on with a warning: the redirect is
// replaced, as after a killed run. Refusing would keep an unprivileged
// engine from ever restarting after a crash, which with fail_open = false
// stops container traffic until someone removes the rules by hand; and the
// kernel still refuses a second engine on the same queues.
func checkNoOtherEngine(fw hook, first uint16, n int, log *slog.Logger) error {
	qs, err := fw.InstalledQueues()
	if err != nil {
		return err
	}
	if len(qs) == 0 {
		return nil
	}
	bound, err := boundQueues()
	if errors.Is(err, fs.ErrPermission) {
		log.Warn("cannot tell whether another nfqguard listens on the queues the redirect left in DOCKER-USER sends to "+
			"(the list of bound queues is readable by root only): replacing it, as after a killed run",
			"queues", qs, "err", err)
		return nil
	}
	if err != nil {
		return err
	}
	for _, q := range qs {
		ours := q >= first && int(q) < int(first)+n
		if bound[q] && !ours {
			return fmt.Errorf("another nfqguard is running: DOCKER-USER already sends traffic to queue %d, "+
				"which another process listens on; stop it first (one engine per host)", q)
		}
	}
	return nil
}

// drops are a queue's drop counters in /proc/net/netfilter/nfnetlink_queue,
// which lists the queues that have a listener.
type drops struct {
	queue uint64 // queue_dropped: the queue was full
	user  uint64 // user_dropped: the packet could not be sent to the listener
}

// queueDrops reads the drop counters of the queues bound in this thread's
// network namespace. The file's columns are: queue number, listener port
// id, packets waiting, copy mode, copy range, queue_dropped, user_dropped,
// last packet id, 1.
func queueDrops() (map[uint16]drops, error) {
	b, err := os.ReadFile("/proc/thread-self/net/netfilter/nfnetlink_queue")
	if err != nil {
		return nil, err
	}
	return parseQueueDrops(string(b)), nil
}

func parseQueueDrops(s string) map[uint16]drops {
	out := map[uint16]drops{}
	for _, line := range strings.Split(s, "\n") {
		f := strings.Fields(line)
		if len(f) < 7 {
			continue
		}
		q, err1 := strconv.ParseUint(f[0], 10, 16)
		qd, err2 := strconv.ParseUint(f[5], 10, 64)
		ud, err3 := strconv.ParseUint(f[6], 10, 64)
		if err1 != nil || err2 != nil || err3 != nil {
			continue
		}
		out[uint16(q)] = drops{queue: qd, user: ud}
	}
	return out
}
