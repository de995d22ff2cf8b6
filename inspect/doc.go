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
//
// # Words
//
// The code uses one word per idea:
//
//   - judge: give one packet its Verdict (Engine.Judge, judgeQuery,
//     judgeICMPError). Packets are judged; flows are decided.
//   - match: ask the rules of one end of a flow, a container, for a
//     rules.Match (matchEnd, over rules.Table.Judge and JudgeFacts, which
//     package rules names from its own side).
//   - decide: work out a flow's decision from the matches of both its ends
//     (decide), or from its L7 facts or the undecided action
//     (decideInspected); settle records it in the flow's slot and the
//     counters. Every later packet of the flow follows its decision. A DNS
//     query over UDP is decided on its own, datagram by datagram.
//   - inspect: seek the L7 fact (TLS server name, HTTP host, DNS name)
//     that a flow's decision waits for.
//   - hold: keep back the verdict of a packet of a flow under inspection
//     while the fact is sought (Verdict.Hold): the packet stays in the
//     kernel's queue. A held flow is one with packets held.
//   - release: decide a held flow and answer its held packets with the
//     flow's verdict (release; Released, Tick, ReleaseAll).
//   - undecided: the action the rule file's inspect section sets with
//     "undecided" (rule id "undecided"), which decides an inspected flow
//     whose fact could not be had; the reason… strings say why.
//   - rejudge: decide a live flow again because a reloaded table may
//     decide it otherwise ([engine] rejudge_on_reload).
//   - fast path, bypass: Verdict.Bypass asks for an allowed flow to be
//     marked so that the kernel stops queueing it (the connmark fast
//     path); Stats.FastPath counts such flows.
//   - end: a flow ends when its slot is forgotten (it expired or was
//     evicted, or the engine stops: EndAll); a blocked flow whose decision
//     was logged then gets an EventEnd (endFlow). A flow's two ends, as
//     nouns, are its initiator (client) and responder (server).
//
// Nouns: a Verdict is a packet's answer; a decision is a flow's (the rule
// that matched, its direction, the facts it waits for or was decided by);
// a tuple is a flow as its initiator sees it; work holds the packet being
// judged and what is known of it, carried through the engine by pointer.
package inspect
