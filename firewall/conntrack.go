package firewall

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// ctnetlink message and attribute types (linux/netfilter/nfnetlink_conntrack.h).
const (
	nfnlSubsysCtnetlink = 1
	ipctnlMsgCtNew      = 0
	ipctnlMsgCtGet      = 1

	ctaTupleOrig = 1
	ctaMark      = 8
	ctaZone      = 18
	ctaMarkMask  = 21
)

// AdoptExisting sets bit, the bypass mark, on the connmark of every
// connection conntrack knows, so that connections which existed before
// nfqguard started never enter the queue: installing the redirect must not
// cut them. It returns how many connections it marked.
func AdoptExisting(bit uint32) (int, error) {
	n, err := changeConnmarks(bit, true)
	if err != nil {
		return n, fmt.Errorf("adopt existing connections: %w", err)
	}
	return n, nil
}

// ReturnFastPathFlows clears bit, the bypass mark, from the connmark of
// every connection conntrack knows, so that flows on the fast path come
// back to the queue and are judged again (after a reload with [engine]
// rejudge_on_reload). The engine marks again those it still allows. It
// returns how many connections it changed.
func ReturnFastPathFlows(bit uint32) (int, error) {
	n, err := changeConnmarks(bit, false)
	if err != nil {
		return n, fmt.Errorf("return fast-path flows: %w", err)
	}
	return n, nil
}

// changeConnmarks sets (or clears) bit in the connmark of every
// connection, and returns how many it changed.
func changeConnmarks(bit uint32, set bool) (int, error) {
	c, err := netlink.Dial(unix.NETLINK_NETFILTER, nil)
	if err != nil {
		return 0, fmt.Errorf("open ctnetlink: %w", err)
	}
	defer c.Close()
	msgs, err := c.Execute(netlink.Message{
		Header: netlink.Header{
			Type:  netlink.HeaderType(nfnlSubsysCtnetlink<<8 | ipctnlMsgCtGet),
			Flags: netlink.Request | netlink.Dump,
		},
		Data: []byte{unix.AF_UNSPEC, unix.NFNETLINK_V0, 0, 0},
	})
	if err != nil {
		return 0, fmt.Errorf("dump conntrack: %w", err)
	}
	changed := 0
	for _, m := range msgs {
		req, ok := markRequest(m.Data, bit, set)
		if !ok {
			continue
		}
		if _, err := c.Execute(req); err != nil {
			if errors.Is(err, unix.ENOENT) {
				continue // the connection ended meanwhile
			}
			return changed, fmt.Errorf("set connmark: %w", err)
		}
		changed++
	}
	return changed, nil
}

// markRequest builds the update that sets (or clears) bit in the connmark
// of the connection a dump message describes, or reports false when there
// is nothing to do.
func markRequest(data []byte, bit uint32, set bool) (netlink.Message, bool) {
	if len(data) < 4 {
		return netlink.Message{}, false
	}
	ad, err := netlink.NewAttributeDecoder(data[4:])
	if err != nil {
		return netlink.Message{}, false
	}
	var tuple, zone []byte
	var mark uint32
	for ad.Next() {
		switch ad.Type() {
		case ctaTupleOrig:
			tuple = ad.Bytes()
		case ctaZone:
			zone = ad.Bytes()
		case ctaMark:
			if b := ad.Bytes(); len(b) == 4 {
				mark = binary.BigEndian.Uint32(b)
			}
		}
	}
	if ad.Err() != nil || tuple == nil || (mark&bit != 0) == set {
		return netlink.Message{}, false
	}
	// The kernel keeps the bits outside the mask and XORs in the mark:
	// with mask = bit, mark = bit sets bit and mark = 0 clears it, leaving
	// the rest alone.
	value := uint32(0)
	if set {
		value = bit
	}
	attrs := []netlink.Attribute{
		{Type: ctaTupleOrig | unix.NLA_F_NESTED, Data: tuple},
		{Type: ctaMark, Data: binary.BigEndian.AppendUint32(nil, value)},
		{Type: ctaMarkMask, Data: binary.BigEndian.AppendUint32(nil, bit)},
	}
	if zone != nil {
		attrs = append(attrs, netlink.Attribute{Type: ctaZone, Data: zone})
	}
	b, err := netlink.MarshalAttributes(attrs)
	if err != nil {
		return netlink.Message{}, false
	}
	return netlink.Message{
		Header: netlink.Header{
			Type:  netlink.HeaderType(nfnlSubsysCtnetlink<<8 | ipctnlMsgCtNew),
			Flags: netlink.Request | netlink.Acknowledge,
		},
		Data: append([]byte{data[0], unix.NFNETLINK_V0, 0, 0}, b...),
	}, true
}
