// Package pcaplog writes packets of blocked flows to a pcap file.
//
// The engine (package inspect) hands the first [log] pcap_packets packets of
// each flow it blocks to a Writer through the inspect.Capture interface, so
// that what a container tried to send can be looked at later with tcpdump,
// Wireshark, tshark or gopacket.
//
// # File format
//
// The file is a classic libpcap file (not pcapng) as written by
// github.com/google/gopacket/pcapgo: version 2.4, little-endian, microsecond
// timestamps, link type RAW (101). Each record holds an IP packet starting
// with its IPv4 or IPv6 header, with no link-layer header in front; readers
// tell the two versions apart by the first nibble. A record keeps at most
// Options.Snaplen bytes of its packet (4096 by default; packets coalesced by
// GSO can be up to 64 KiB) and the packet's original length.
//
// # Rotation
//
// No file grows past Options.MaxBytes. Before a record would take the
// current file past it, the file is closed and rotated like logrotate
// does: path.N-2 becomes path.N-1, …, path.1 becomes path.2, path becomes
// path.1, and a new path is started with a fresh header, N being
// Options.Files, the number of files kept in all (the current one
// included); the oldest is overwritten. With Files = 1 the file is truncated
// and started again. Files numbered N or more, left by an earlier setting,
// are not touched.
//
// # An existing file
//
// At Open (and at Reopen) a file already at path is dealt with as follows:
//
//   - empty: a header is written;
//   - a pcap this package can continue (the byte order, timestamp
//     resolution, version and link type it writes itself, a snaplen at
//     least Options.Snaplen, and records that hold together): new records
//     are appended, without a second header, and its size counts towards
//     MaxBytes. If its last record is cut short (a crash mid-write), the
//     cut-off bytes are truncated first;
//   - anything else (not a pcap, another link type, …): it is rotated away
//     as if it were full, and with Files = 1 therefore overwritten.
//
// A path that is not a regular file is refused.
//
// # Hot path
//
// Capture is called on a queue's packet path. It copies the packet into one
// of Options.Buffer slots allocated at Open and passes the slot to the
// Writer's goroutine, which writes it through a bufio.Writer and flushes
// whenever it has nothing else to write, so that the file can be read
// promptly. Capture never blocks and never allocates: when every slot is
// taken it drops the packet and counts it (Stats.Dropped).
//
// # Reopening
//
// After logrotate (or anyone) has renamed the file, Reopen makes the Writer
// close it and open path again, starting a new file there. Send SIGUSR1 from
// logrotate's postrotate and call Reopen on it; copytruncate is not
// supported (records would be written after a hole, or without a header).
package pcaplog
