// Package docker is a small client for the Docker Engine API over its unix
// socket: it lists running containers with their addresses, labels and
// published ports, and follows the daemon's event stream so that callers
// learn when containers start, stop, restart, are renamed or change
// networks.
//
// What it does:
//
//   - Client.Version, Client.Containers and Client.Events are GET requests
//     spoken with net/http over the socket. Version (GET /version) is
//     unversioned, as every daemon answers it; the others are spoken in the
//     newest API version that both the daemon (its MinAPIVersion to its
//     ApiVersion) and this package (MinAPIVersion 1.41, Docker 20.10, to
//     MaxAPIVersion 1.52, Docker 29) know. A request refused as too old or
//     too new (Docker upgraded under a running nfqguard) negotiates again
//     once and is retried once; a daemon that went away is negotiated with
//     afresh when it is back.
//   - Watcher.Run lists containers, follows events, lists again after each
//     burst of relevant events, and reconnects when the daemon is
//     unreachable or the stream is cut, until its context ends: every
//     250 ms while no daemon listens on the socket (Docker stopped or
//     restarting), with backoff after other errors. It calls back with the
//     full list; it knows nothing about rules.
//
// Why not the Docker SDK (github.com/moby/moby/client v0.6.3 with
// github.com/moby/moby/api v1.57.0), measured on 2026-12-06: nfqguard
// needs four read-only endpoints. The SDK adds 19 modules to the build
// (OpenTelemetry's HTTP instrumentation, which wraps every request, the
// distribution, image-spec and containerd errdefs modules among them) and
// 1.7 MB to a binary (a program that only pings: 10.2 MB, against 8.5 MB
// for net/http alone); its connection errors carry a message instead of
// the errno (a refused connection becomes a string), which the Watcher
// needs to tell a daemon that is down from one that refuses; and it
// negotiates once per client, never again after Docker is upgraded under
// it, so the renegotiation would have to be written here anyway. The wire
// format of these endpoints has not changed from API 1.41 to 1.52, and the
// fake daemon of the tests (package fakedocker) refuses versions outside
// its range in Docker's words.
//
// What it does not do: it never changes anything in Docker, does not talk
// TCP or TLS to remote daemons (nfqguard judges the local host's traffic,
// so only the local socket makes sense), and does not resolve rule
// selectors: package rules matches containers to [[container]] entries.
package docker
