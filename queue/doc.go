// Package queue is nfqguard's NFQUEUE side: it binds one NFQUEUE socket per
// worker, feeds every queued packet to that worker's inspect.Engine on the
// socket's receive goroutine, and answers the kernel: allow is NF_REPEAT
// with the "judged" mark so Docker's own rules still run, drop is NF_DROP.
// Run starts and stops it all: it checks the process's capabilities, has
// package firewall install the one NFQUEUE redirect (and its CONNMARK
// companion) in DOCKER-USER and adopt the connections that already exist,
// and keeps the list of bridges current. It also cuts TCP flows dropped
// mid-stream with forged RSTs, and reports counters (Monitor).
//
// The worker reaches the kernel through a small socket interface (receive a
// batch, walk its packets, queue verdicts, flush), so the worker loop is
// tested against an in-memory fake without root.
//
// It does not decide anything itself (package inspect does), holds no rule
// logic (package rules does), and writes no iptables rule or connmark
// itself (package firewall does). Everything it changes on the host it
// removes again when Run returns; a run killed without cleanup leaves rules
// that the next run replaces.
package queue
