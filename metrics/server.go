package metrics

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Options say where the metrics come from. Every field may be nil: its
// metrics are left out.
type Options struct {
	Source       Source        // the engine (a *queue.Monitor)
	Reloads      *Reloads      // configuration loads
	StatusSocket *StatusSocket // the status socket (nil when it is off)
	Log          LogSource     // the blocked-flow log
	Pcap         PcapSource    // the packet capture
}

// HTTP limits of the endpoint.
const (
	scrapeTimeout   = 10 * time.Second // gathering the metrics
	shutdownTimeout = 5 * time.Second  // scrapes in progress when the context ends
	maxScrapes      = 4                // scrapes served at once
)

// Server is the metrics endpoint: /metrics in the Prometheus exposition
// format, and / linking to it. Its registry holds nfqguard's Collector and
// the Go runtime and process collectors (go_*, process_*: memory,
// goroutines, CPU, open files).
type Server struct {
	handler http.Handler
}

// New returns a Server exposing the metrics of o.
func New(o Options) *Server {
	reg := prometheus.NewRegistry()
	reg.MustRegister(
		NewCollector(o),
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	metrics := promhttp.InstrumentMetricHandler(reg, promhttp.HandlerFor(reg, promhttp.HandlerOpts{
		// A failed scrape is not logged: it is answered with a 500
		// saying why, and counted in promhttp_metric_handler_errors_total.
		ErrorLog:            nil,
		ErrorHandling:       promhttp.HTTPErrorOnError,
		Registry:            reg,
		MaxRequestsInFlight: maxScrapes,
		Timeout:             scrapeTimeout,
	}))
	mux := http.NewServeMux()
	mux.Handle("/metrics", metrics)
	mux.HandleFunc("/{$}", index)
	return &Server{handler: mux}
}

const indexPage = `<!DOCTYPE html>
<html><head><title>nfqguard</title></head>
<body><h1>nfqguard</h1><p><a href="/metrics">Metrics</a></p></body></html>
`

func index(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, http.StatusText(http.StatusMethodNotAllowed), http.StatusMethodNotAllowed)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	_, _ = w.Write([]byte(indexPage))
}

// Handler returns the endpoint's HTTP handler (/ and /metrics), for a
// caller that runs its own http.Server.
func (s *Server) Handler() http.Handler { return s.handler }

// Listen opens the TCP listener for Serve on addr (host:port; port 0 picks
// one: see the listener's Addr). Errors are reported early this way, before
// the daemon starts its other work.
func (s *Server) Listen(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics %s: %w", addr, err)
	}
	return ln, nil
}

// Serve serves the endpoint on ln until ctx ends, then lets scrapes in
// progress finish (for a few seconds) and returns nil. It closes ln. Any
// other error ends it early.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	addr := ln.Addr().String()
	srv := &http.Server{
		Handler:           s.handler,
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      scrapeTimeout + 5*time.Second,
		IdleTimeout:       time.Minute,
		MaxHeaderBytes:    16 << 10,
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("metrics %s: %w", addr, err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), shutdownTimeout)
	defer cancel()
	err := srv.Shutdown(sctx)
	if errors.Is(err, context.DeadlineExceeded) {
		err = srv.Close()
	}
	if serr := <-errc; !errors.Is(serr, http.ErrServerClosed) && err == nil {
		err = serr
	}
	if err != nil {
		return fmt.Errorf("metrics %s: %w", addr, err)
	}
	return nil
}

// ListenAndServe is Listen and Serve.
func (s *Server) ListenAndServe(ctx context.Context, addr string) error {
	ln, err := s.Listen(addr)
	if err != nil {
		return err
	}
	return s.Serve(ctx, ln)
}
