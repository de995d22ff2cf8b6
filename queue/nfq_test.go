package queue

import (
	"encoding/binary"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"
)

// packetMsg builds an NFQNL_MSG_PACKET datagram as the kernel sends it.
func packetMsg(id, mark, in, out uint32, payload []byte) []byte {
	attrs := nlAttr(nfqaPacketHdr, append(be32(id), 0x08, 0x00, 3)) // id, hw proto, hook
	attrs = append(attrs, nlAttr(nfqaMark, be32(mark))...)
	attrs = append(attrs, nlAttr(4, make([]byte, 16))...) // NFQA_TIMESTAMP, ignored
	attrs = append(attrs, nlAttr(nfqaIfIndexIn, be32(in))...)
	attrs = append(attrs, nlAttr(nfqaIfIndexOut, be32(out))...)
	attrs = append(attrs, nlAttr(nfqaPayload, payload)...)
	body := append(nfgenmsg(0), attrs...)
	b := binary.NativeEndian.AppendUint32(nil, uint32(nlmsgHdrLen+len(body)))
	b = binary.NativeEndian.AppendUint16(b, nfnlSubsysQueue<<8|nfqnlMsgPacket)
	b = binary.NativeEndian.AppendUint16(b, 0)
	b = binary.NativeEndian.AppendUint32(b, 0)
	b = binary.NativeEndian.AppendUint32(b, 0)
	return append(b, body...)
}

func TestParsePacket(t *testing.T) {
	payload := []byte{0x45, 0, 0, 20, 1, 2, 3} // odd length: padded attribute
	msg := packetMsg(77, 0x4000, 3, 9, payload)
	var p packet
	if err := parsePacket(msg[nlmsgHdrLen:], &p); err != nil {
		t.Fatal(err)
	}
	want := packet{id: 77, mark: 0x4000, inDev: 3, outDev: 9, payload: payload}
	if diff := cmp.Diff(want, p, cmp.AllowUnexported(packet{})); diff != "" {
		t.Errorf("parsePacket (-want +got):\n%s", diff)
	}
	// Cut anywhere: an error or a packet, never a panic.
	for i := range msg[nlmsgHdrLen:] {
		_ = parsePacket(msg[nlmsgHdrLen:nlmsgHdrLen+i], &p)
	}
	if err := parsePacket(nfgenmsg(0), &p); err == nil {
		t.Error("message without a packet header accepted")
	}
}

func TestPacketsIteratesBatch(t *testing.T) {
	n := &nfq{}
	for i := range n.bufs {
		n.bufs[i] = make([]byte, recvBuf)
	}
	msgs := [][]byte{packetMsg(1, 0, 1, 2, []byte{0x45}), packetMsg(2, 0, 1, 2, []byte{0x60})}
	for i, m := range msgs {
		n.hdrs[i].len = uint32(copy(n.bufs[i], m))
	}
	// A netlink error (a refused verdict) in a third datagram.
	e := binary.NativeEndian.AppendUint32(nil, nlmsgHdrLen+4+nlmsgHdrLen)
	e = binary.NativeEndian.AppendUint16(e, unix.NLMSG_ERROR)
	e = append(e, make([]byte, 10)...)
	errno := -int32(unix.ENOENT)
	e = binary.NativeEndian.AppendUint32(e, uint32(errno))
	e = append(e, make([]byte, nlmsgHdrLen)...)
	n.hdrs[2].len = uint32(copy(n.bufs[2], e))
	n.n = 3
	var ids []uint32
	refused := n.packets(func(p *packet) { ids = append(ids, p.id) })
	if diff := cmp.Diff([]uint32{1, 2}, ids); diff != "" || refused != 1 {
		t.Errorf("ids (-want +got):\n%s\nrefused = %d, want 1", diff, refused)
	}
}

func TestVerdictEncoding(t *testing.T) {
	n := &nfq{queue: 0x0102}
	n.verdict(7, 4, 0x30000000, true) // NF_REPEAT with mark
	n.verdict(8, 0, 0, false)         // NF_DROP
	b := n.out
	// First message: header, nfgenmsg with the queue, verdict, mark.
	if l := binary.NativeEndian.Uint32(b[0:4]); l != 40 {
		t.Fatalf("first message length %d, want 40", l)
	}
	if typ := binary.NativeEndian.Uint16(b[4:6]); typ != nfnlSubsysQueue<<8|nfqnlMsgVerdict {
		t.Errorf("type %#x", typ)
	}
	if b[18] != 0x01 || b[19] != 0x02 {
		t.Errorf("res_id %x %x, want the queue 0x0102 big-endian", b[18], b[19])
	}
	if v, id := binary.BigEndian.Uint32(b[24:28]), binary.BigEndian.Uint32(b[28:32]); v != 4 || id != 7 {
		t.Errorf("verdict %d id %d, want 4 and 7", v, id)
	}
	if m := binary.BigEndian.Uint32(b[36:40]); m != 0x30000000 {
		t.Errorf("mark %#x", m)
	}
	if l := binary.NativeEndian.Uint32(b[40:44]); l != 32 || len(b) != 72 {
		t.Errorf("second message length %d, total %d; want 32 and 72", l, len(b))
	}
	if n.pending != 2 {
		t.Errorf("pending = %d, want 2", n.pending)
	}
}

func TestReceiveLoopDoesNotAllocate(t *testing.T) {
	n := &nfq{}
	for i := range n.bufs {
		n.bufs[i] = make([]byte, recvBuf)
	}
	n.out = make([]byte, 0, recvBatch*verdictLen)
	msg := packetMsg(1, 0, 1, 2, make([]byte, 60))
	for i := range n.hdrs {
		n.hdrs[i].len = uint32(copy(n.bufs[i], msg))
	}
	n.n = recvBatch
	fn := func(p *packet) { n.verdict(p.id, 4, p.mark|1, true) }
	if a := testing.AllocsPerRun(100, func() {
		n.packets(fn)
		n.out, n.pending = n.out[:0], 0
	}); a != 0 {
		t.Errorf("parsing a batch and encoding its verdicts allocates %v times", a)
	}
}

// FuzzParsePacket feeds netlink datagrams to the receive path's parser:
// the message walk of packets and the attribute walk of parsePacket. Both
// read what the kernel wrote, but trust no length; a packet handed out has
// an id and a payload inside the datagram.
func FuzzParsePacket(f *testing.F) {
	f.Add(packetMsg(77, 0x4000, 3, 9, []byte{0x45, 0, 0, 20, 1, 2, 3}))
	f.Add(append(packetMsg(1, 0, 1, 2, []byte{0x45}), packetMsg(2, 0, 1, 2, []byte{0x60})...))
	f.Add(packetMsg(5, 0, 0, 0, nil)[:30])
	n := &nfq{}
	n.bufs[0] = make([]byte, recvBuf)
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) > recvBuf {
			b = b[:recvBuf]
		}
		if len(b) >= nlmsgHdrLen {
			var p packet
			if parsePacket(b[nlmsgHdrLen:], &p) == nil && !within(b, p.payload) {
				t.Fatalf("parsePacket: payload of %d bytes outside the message", len(p.payload))
			}
		}
		n.hdrs[0].len = uint32(copy(n.bufs[0], b))
		n.n = 1
		buf := n.bufs[0][:len(b)]
		n.packets(func(p *packet) {
			if !within(buf, p.payload) {
				t.Fatalf("packets: payload of %d bytes outside the datagram", len(p.payload))
			}
		})
	})
}

// within reports whether sub lies inside b (or is empty).
func within(b, sub []byte) bool {
	if len(sub) == 0 {
		return true
	}
	off := cap(b) - cap(sub)
	return off >= 0 && off+len(sub) <= len(b)
}
