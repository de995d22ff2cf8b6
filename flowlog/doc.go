// Package flowlog writes the blocked-flow log: the events the engine emits
// (a flow's first block, its end, and allowed flows of rules with
// log = true) as JSON lines or text, on a goroutine of its own so that a
// slow disk never stalls a queue.
package flowlog
