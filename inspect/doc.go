// Package inspect turns a raw IP packet into a verdict.
//
// It decodes the packet's headers itself, trusting no length field (see
// MalformedKind for what it refuses and why), works out which side of
// the packet is a container and in which direction the flow was initiated,
// keeps per-flow state so that every packet of a flow follows the verdict of
// its first packet, and asks a compiled rules.Table for that verdict.
//
// An Engine belongs to exactly one goroutine (one NFQUEUE queue): the kernel
// hashes both directions of a flow to the same queue, so flow state needs no
// locks. Nothing here talks to the kernel; package queue feeds packets in and
// turns verdicts into NFQUEUE answers. The hot path (Engine.Judge) allocates
// nothing, for packets that decode cleanly and for malformed ones alike.
package inspect
