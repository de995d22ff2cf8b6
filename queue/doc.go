// Package queue is nfqguard's kernel side: it finds Docker's DOCKER-USER
// chain, installs the one NFQUEUE redirect (and its CONNMARK companion) in
// it, binds one NFQUEUE socket per worker, feeds every queued packet to that
// worker's inspect.Engine on the socket's receive goroutine, and answers the
// kernel: allow is NF_REPEAT with the "judged" mark so Docker's own rules
// still run, drop is NF_DROP.
//
// It does not decide anything itself (package inspect does) and holds no
// rule logic (package rules does). Everything it changes on the host it
// removes again when Run returns; a run killed without cleanup leaves rules
// that the next run replaces.
package queue
