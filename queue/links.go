package queue

import (
	"encoding/binary"
	"fmt"
	"slices"
	"sync/atomic"
	"syscall"
)

// Bridges knows which interfaces are Linux bridges (docker0, br-…): a
// packet forwarded out of one goes to a container, one forwarded in from one
// comes from a container. It satisfies inspect.Bridges and is safe for
// concurrent use; Refresh swaps in a new snapshot.
type Bridges struct {
	set atomic.Pointer[[]uint32] // sorted interface indexes
}

// IsBridge reports whether ifindex was a bridge at the last Refresh.
func (b *Bridges) IsBridge(ifindex uint32) bool {
	s := b.set.Load()
	if s == nil || ifindex == 0 {
		return false
	}
	_, ok := slices.BinarySearch(*s, ifindex)
	return ok
}

// Refresh lists the network namespace's links over rtnetlink.
func (b *Bridges) Refresh() error {
	idx, err := bridgeIndexes()
	if err != nil {
		return fmt.Errorf("list bridges: %w", err)
	}
	slices.Sort(idx)
	b.set.Store(&idx)
	return nil
}

// Names of the rtnetlink attributes read here (linux/if_link.h).
const (
	iflaLinkInfo = 18
	iflaInfoKind = 1
)

func bridgeIndexes() ([]uint32, error) {
	rib, err := syscall.NetlinkRIB(syscall.RTM_GETLINK, syscall.AF_UNSPEC)
	if err != nil {
		return nil, err
	}
	msgs, err := syscall.ParseNetlinkMessage(rib)
	if err != nil {
		return nil, err
	}
	var out []uint32
	for _, m := range msgs {
		if m.Header.Type != syscall.RTM_NEWLINK || len(m.Data) < syscall.SizeofIfInfomsg {
			continue
		}
		index := binary.NativeEndian.Uint32(m.Data[4:8])
		attrs, err := syscall.ParseNetlinkRouteAttr(&m)
		if err != nil {
			continue
		}
		for _, a := range attrs {
			if a.Attr.Type == iflaLinkInfo && linkKind(a.Value) == "bridge" {
				out = append(out, index)
			}
		}
	}
	return out, nil
}

// linkKind finds IFLA_INFO_KIND in the nested IFLA_LINKINFO attributes.
func linkKind(b []byte) string {
	for len(b) >= 4 {
		l := int(binary.NativeEndian.Uint16(b[0:2]))
		t := binary.NativeEndian.Uint16(b[2:4]) & 0x3fff
		if l < 4 || l > len(b) {
			return ""
		}
		if t == iflaInfoKind {
			v := b[4:l]
			for len(v) > 0 && v[len(v)-1] == 0 {
				v = v[:len(v)-1]
			}
			return string(v)
		}
		l = (l + 3) &^ 3
		if l > len(b) {
			return ""
		}
		b = b[l:]
	}
	return ""
}
