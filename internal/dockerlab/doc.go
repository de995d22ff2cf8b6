// Package dockerlab runs a private Docker engine inside network namespaces of
// its own, so tests can put real Docker containers, Docker's real iptables
// chains and real traffic in front of nfqguard without touching the
// machine's network.
//
// Start builds:
//
//   - a Docker namespace (<prefix>dk) in which dockerd runs with its own
//     --data-root, --exec-root, --pidfile, socket, daemon.json and containerd
//     namespaces, all under one directory in os.TempDir. IP forwarding is off
//     when dockerd starts, so that Docker turns it on itself: Docker 20.10
//     sets the FORWARD policy to DROP only then, and with ACCEPT an
//     unpublished container port would be reachable by direct routing.
//     dockerd installs its chains, DOCKER-USER included, in this namespace
//     only. It is started with "nsenter --net=…" rather than "ip netns
//     exec", which remounts /sys and hides the cgroup hierarchy dockerd
//     needs;
//   - an outside client namespace (<prefix>out) linked to the Docker
//     namespace by a veth pair: ext0 (HostOutside, 203.0.113.1/24) on the
//     Docker side, eth0 (Outside, 203.0.113.2/24) outside, with a default
//     route and routes to Docker's default address pools (172.16.0.0/12,
//     192.168.0.0/16) via HostOutside. With Options.IPv6 the link also
//     carries 2001:db8:113::1/64 and ::2/64, with routes to fd00::/8, and
//     Docker 20.10's dockerd runs with --ip6tables --experimental (Docker
//     29 has ip6tables on by default and runs with its defaults).
//
// Images are not pulled: Image builds a static Go program (the testserver
// directory, embedded in this package) with the Go toolchain and imports it
// with "docker import". Run, Inspect, NetworkCreate and CLI drive the
// engine through the docker command line against the private socket.
//
// Traffic. Package internal/traffic (TCPExchange, UDPExchange,
// ServeTCPEcho, …) and internal/netns (Do, Sysctl, Run) take the path of a
// network namespace: OutPath or NSPath of a Docker, or Container.NSPath
// (/proc/PID/ns/net of the container's first process). They run the
// socket calls on a locked OS thread switched into that namespace, so the
// sockets belong to the test process: exact source ports, no exec per
// exchange, and errors as Go values. Traffic that must come from a process
// inside a container can use the test image's connect mode through Exec
// ("/srv connect HOST:PORT").
//
// The engine under test is run in the Docker namespace with Command
// ("ip netns exec", which gives it a /sys matching the namespace, as on a
// real host; it needs no cgroups).
//
// Stop, StartAgain and Restart stop and start that same dockerd, as
// "systemctl stop/start/restart docker" would on a host: same flags, state
// directory, socket and namespace, so its containers, images, networks
// and chains are found again, and containers with --restart always come
// back, each in a new network namespace (WaitRunning finds the new
// incarnation). The namespaces and what Command started keep running
// meanwhile: the engine under test sees Docker go away and come back.
//
// Close removes the containers, stops dockerd (its managed containerd exits
// with it), kills anything left in the namespaces or rooted in the data
// root, unmounts what is still mounted under the directory, removes it and
// deletes the namespaces, even after a partial Start.
//
// Engines. By default the engine is the one on PATH (Debian's docker.io,
// Docker 20.10). Options.Engine = Docker29 runs the Docker 29 engine that
// build-docker29.sh ("make deps") builds from Go modules into Docker29Dir,
// with dockerd's own containerd, runc and docker-proxy from there, in a
// mount namespace of its own with a sysfs of the Docker namespace, and
// DOCKER_MIN_API_VERSION=1.44; Options.FirewallBackend picks its iptables
// or nftables backend.
//
// Everything requires root and the dockerd, docker, nsenter, ip and
// iptables binaries; Image also needs the go command. No traffic leaves
// the namespaces created here. Outside them, dockerd and its containerd
// leave only empty directories (/run/docker/plugins, /run/containerd/s,
// which holds each container's shim socket while it runs) and load the
// kernel modules they need (overlay, br_netfilter).
package dockerlab
