// Package inspect turns a raw IP packet into a verdict.
//
// Decoding is done in two steps. The packet's structure is first checked
// by hand, trusting no length field (see MalformedKind for what is refused
// and why): gopacket's layers take an IPv4 total length or a UDP length
// beyond the packet for a mere truncation and decode what is there, and
// they build an error for every packet they refuse, which a flood of
// malformed packets would turn into garbage. A packet that passes is then
// decoded by gopacket (a DecodingLayerParser into layers reused from packet
// to packet), and the fields the engine uses are read from its layers.
//
// The package works out which side of the packet is a container and in
// which direction the flow was initiated, keeps per-flow state so that
// every packet of a flow follows the verdict of its first packet, and asks
// a compiled rules.Table for that verdict.
//
// An Engine belongs to exactly one goroutine (one NFQUEUE queue): the kernel
// hashes both directions of a flow to the same queue, so flow state needs no
// locks. Nothing here talks to the kernel; package queue feeds packets in and
// turns verdicts into NFQUEUE answers. The hot path (Engine.Judge) allocates
// nothing, for packets that decode cleanly and for malformed ones alike.
package inspect
