package queue

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

// adoptExisting sets bit on the connmark of every connection conntrack
// knows, so that connections which existed before nfqguard started never
// enter the queue: installing the redirect must not cut them. It returns
// how many connections it marked.
func adoptExisting(bit uint32) (int, error) {
	c, err := netlink.Dial(unix.NETLINK_NETFILTER, nil)
	if err != nil {
		return 0, fmt.Errorf("adopt existing connections: open ctnetlink: %w", err)
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
		return 0, fmt.Errorf("adopt existing connections: dump conntrack: %w", err)
	}
	adopted := 0
	for _, m := range msgs {
		req, ok := markRequest(m.Data, bit)
		if !ok {
			continue
		}
		if _, err := c.Execute(req); err != nil {
			if errors.Is(err, unix.ENOENT) {
				continue // the connection ended meanwhile
			}
			return adopted, fmt.Errorf("adopt existing connections: set connmark: %w", err)
		}
		adopted++
	}
	return adopted, nil
}

// markRequest builds the update that ORs bit into the connmark of the
// connection a dump message describes, or reports false when there is
// nothing to do.
func markRequest(data []byte, bit uint32) (netlink.Message, bool) {
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
	if ad.Err() != nil || tuple == nil || mark&bit != 0 {
		return netlink.Message{}, false
	}
	attrs := []netlink.Attribute{
		{Type: ctaTupleOrig | unix.NLA_F_NESTED, Data: tuple},
		// The kernel keeps the bits outside the mask and XORs in the mark:
		// with mark = mask = bit, that sets bit and leaves the rest alone.
		{Type: ctaMark, Data: be32(bit)},
		{Type: ctaMarkMask, Data: be32(bit)},
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
