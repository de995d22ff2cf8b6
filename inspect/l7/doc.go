// Package l7 parses the first bytes of an application-layer stream, or one
// datagram, far enough to learn the fact a rule is written against: the TLS
// ClientHello server name, the HTTP/1.x request method, target and Host, and
// the question names of a DNS query (UDP datagram or length-prefixed TCP
// message), and, for rules by the names a container resolved, the question,
// CNAME chain and addresses of a DNS response (ParseDNSResponse). For QUIC
// (v1, RFC 9000/9001, and v2, RFC 9369) it opens a
// client's Initial packets (QUICOpener), walks their CRYPTO frames
// (QUICFrames) and reassembles the ClientHello they carry (QUICCryptoStream,
// in any order and split at any offset, across packets), which
// ParseHandshakeClientHello then reads like one sent over TCP. A parsed
// ClientHello also gives its JA4 fingerprint (ClientHello.AppendJA4,
// FoxIO's TLS client fingerprint), over TCP or QUIC.
//
// # Contract
//
// Every parser takes the contiguous, in-order prefix of the client's stream
// that has been seen so far (or the whole datagram) and returns a Status:
//
//   - NeedMore: the prefix is valid so far but does not yet contain the fact;
//     call again with a longer prefix.
//   - Done: the fact was found, or proven absent (e.g. an HTTP request whose
//     headers ended without a Host); the output struct is filled in.
//   - NotMatch: the bytes are not this protocol; the caller should stop
//     holding the flow for this parser.
//   - Malformed: the bytes claim to be this protocol but a field is invalid.
//
// Parsers are pure functions of their input: calling one again with a longer
// prefix re-parses from the start and gives the same result as if the longer
// prefix had arrived in one piece. Output fields are only meaningful after
// Done. Byte slices in outputs alias the input (HTTP) or the output struct
// itself (DNS names); nothing is copied to the heap, and the common case
// allocates nothing. Every length read from the wire is checked against the
// input before it is used; no input makes a parser panic (fuzzed). The same
// holds for the JA4 fingerprint of a ClientHello: a pure function of the
// parse result, allocation-free in the common case, and never a panic.
//
// The QUIC types keep state, by necessity: a QUICOpener caches the keys of
// the last connections it saw (what Open returns is still a function of
// the datagram alone; deriving a new connection's keys costs the three
// allocations of the standard library's AES and GCM), and a
// QUICCryptoStream holds the stream's bytes in a buffer the caller gives.
//
// # What this package does not do
//
// Except for QUIC's CRYPTO stream, which only exists after decryption, it
// does not reassemble segments, order or deduplicate them, hold flows,
// enforce the per-flow budget, or match rule patterns: the engine in package
// inspect does all of that and calls these parsers with the prefix it has.
// Only the first request of a connection is parsed: later requests on an
// HTTP keep-alive connection, and later DNS messages on a TCP connection,
// are out of scope.
package l7
