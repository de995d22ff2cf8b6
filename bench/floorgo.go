package bench

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"

	nfqueue "github.com/florianl/go-nfqueue/v2"
	"github.com/mdlayher/netlink"
)

// The floors' queue settings, the same in C and Go.
const (
	floorCopyRange = 0xffff   // copy whole packets, as the engine does
	floorQueueLen  = 4096     // the engine's default queue_len
	floorRcvBuf    = 16 << 20 // socket receive buffer: room for a full queue of MTU-sized packets
)

// FloorGo is the go-nfqueue floor of the benchmark: a consumer that binds
// NFQUEUE queue with go-nfqueue and accepts every packet, with nothing
// else, the way the library's README does it (Open, RegisterWithErrorFunc,
// SetVerdict NfAccept from the hook). It copies whole packets, sets the
// queue length to 4096 and a 16 MiB socket receive buffer, and suppresses
// ENOBUFS reports (overruns are counted by the kernel, see
// QueueCounters.UserDropped). It calls ready once the queue is bound and
// returns when ctx is done (nil) or receiving fails.
//
// Packets it accepts end their walk through the netfilter chain that
// queued them, unlike nfqguard's NF_REPEAT: it measures the cost of the
// round trip to userspace and back, not a firewall.
func FloorGo(ctx context.Context, queue uint16, ready func()) error {
	nf, err := nfqueue.Open(&nfqueue.Config{
		NfQueue:      queue,
		MaxPacketLen: floorCopyRange,
		MaxQueueLen:  floorQueueLen,
		Copymode:     nfqueue.NfQnlCopyPacket,
		Flags:        nfqueue.NfQaCfgFlagGSO, // as nfqguard: GSO packets whole
		WriteTimeout: time.Second,
	})
	if err != nil {
		return fmt.Errorf("floor-go: open queue %d: %w", queue, err)
	}
	defer nf.Close()
	if err := nf.SetOption(netlink.NoENOBUFS, true); err != nil {
		return fmt.Errorf("floor-go: queue %d: suppress ENOBUFS: %w", queue, err)
	}
	if err := nf.Con.SetReadBuffer(floorRcvBuf); err != nil {
		return fmt.Errorf("floor-go: queue %d: set receive buffer: %w", queue, err)
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var verdictErrs atomic.Uint64
	recvErr := make(chan error, 1)
	hook := func(a nfqueue.Attribute) int {
		if a.PacketID != nil {
			if err := nf.SetVerdict(*a.PacketID, nfqueue.NfAccept); err != nil {
				verdictErrs.Add(1)
			}
		}
		return 0
	}
	onErr := func(err error) int {
		if ctx.Err() == nil {
			recvErr <- err // at most once: returning non-zero ends receiving
		}
		return 1
	}
	if err := nf.RegisterWithErrorFunc(ctx, hook, onErr); err != nil {
		return fmt.Errorf("floor-go: bind queue %d: %w", queue, err)
	}
	ready()
	select {
	case <-ctx.Done():
	case err := <-recvErr:
		return fmt.Errorf("floor-go: queue %d: receive: %w", queue, err)
	}
	if n := verdictErrs.Load(); n > 0 {
		return fmt.Errorf("floor-go: queue %d: %d verdicts failed", queue, n)
	}
	return nil
}
