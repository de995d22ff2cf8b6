// Package netns does what both test rigs (internal/netlab and
// internal/dockerlab) need from Linux network namespaces: run Go code in
// one on a locked OS thread (Do), read and write its sysctls, run a
// command or the iptables binaries in it, configure it with an "ip -batch"
// script (Script, IPBatch), and build the one piece of topology the rigs
// share, the outside link from an outside client namespace (OutsideLink).
// Prefix picks name prefixes that keep parallel rigs apart.
//
// A namespace is named by its path (a /var/run/netns bind mount or a
// process's /proc/PID/ns/net), except where the ip command itself wants a
// name from /var/run/netns: IPBatch and Command, which run "ip -n NAME"
// and "ip netns exec NAME".
//
// It adds and deletes namespaces only when told to (an IPBatch script),
// builds no topology beyond the outside link (bridges, containers and
// rulesets are each rig's own) and makes no traffic (package
// internal/traffic does, on top of Do). Everything requires root.
package netns
