// Package traffic makes and serves test traffic from sockets that live in
// a network namespace given by its path (see internal/netns): TCP and UDP
// echo exchanges from an exact source port, plain dials, and servers that
// track their connections so that Close stops everything they started.
// The test rigs (internal/netlab, internal/dockerlab), the benchmark, the
// end-to-end tests and the demo all use it.
//
// Sockets are created on a thread switched into the namespace and used from
// goroutines of the calling process: no child process per exchange, errors
// as Go values that wrap the socket error (a blocked exchange is a timeout,
// os.ErrDeadlineExceeded).
//
// It does not build namespaces, speak application protocols (netlab's TLS,
// HTTP and DNS servers are handlers given to ServeTCP and ServeUDP) or
// measure anything. Everything requires root.
package traffic
