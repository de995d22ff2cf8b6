// Package docker is a small client for the Docker Engine API over its unix
// socket: it lists running containers with their addresses, labels and
// published ports, and follows the daemon's event stream so that callers
// learn when containers start, stop, restart, are renamed or change
// networks.
//
// What it does:
//
//   - Client.Version, Client.Containers and Client.Events are GET requests
//     spoken with net/http over the socket, pinned to API version 1.41
//     (Docker 20.10; newer daemons accept it), except Version, which any
//     daemon answers.
//   - Watcher.Run lists containers, follows events, lists again after each
//     burst of relevant events, and reconnects with backoff when the daemon
//     is unreachable or the stream is cut, until its context ends. It calls
//     back with the full list; it knows nothing about rules.
//
// Why not the Docker SDK (github.com/docker/docker/client): nfqguard needs
// three read-only endpoints, and the SDK brings in the moby module with
// dozens of transitive modules (OpenTelemetry, gogo/protobuf, containerd
// and distribution packages, ...), a larger binary and a dependency whose
// API changes with every Docker release. The wire format of these three
// endpoints has been stable since API 1.41, and a fake daemon for tests
// (package fakedocker) is a few dozen lines of net/http.
//
// What it does not do: it never changes anything in Docker, does not talk
// TCP or TLS to remote daemons (nfqguard judges the local host's traffic,
// so only the local socket makes sense), and does not resolve rule
// selectors: package rules matches containers to [[container]] entries.
package docker
