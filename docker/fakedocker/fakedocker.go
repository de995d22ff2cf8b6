// Package fakedocker is a fake Docker daemon for tests: it serves the few
// Engine API endpoints package docker uses (version, container list and
// inspect, the event stream) on a unix socket, from containers the test
// sets, and can be stopped and started again on the same socket to imitate
// a daemon restart.
package fakedocker

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// Container is a running container, in the daemon's own spelling.
type Container struct {
	ID, Name, Image string // Name without the leading "/"
	Labels          map[string]string
	Networks        map[string]Endpoint  // network name → addresses
	Ports           map[string][]Binding // "80/tcp" → bindings; a nil list is an exposed, unpublished port

	Gone    bool // listed, but inspecting it answers 404 (removed in between)
	Stopped bool // listed, but inspecting it says it is not running
}

// Endpoint is a container's addresses on one network; "" for none.
type Endpoint struct{ IPv4, IPv6 string }

// Binding is one published host address and port.
type Binding struct{ HostIP, HostPort string }

// Version is what GET /version answers unless SetVersion changed it: Docker
// 20.10's range. The server refuses requests in versions outside
// MinAPIVersion to ApiVersion of the current answer, in Docker's words.
var Version = map[string]string{"Version": "20.10.24+fake", "ApiVersion": "1.41", "MinAPIVersion": "1.12"}

// Docker29 is a /version answer of Docker 29 started with
// DOCKER_MIN_API_VERSION=1.44, which refuses Docker 20.10's API version.
var Docker29 = map[string]string{"Version": "29.0.0+fake", "ApiVersion": "1.52", "MinAPIVersion": "1.44"}

// Server is a fake daemon. Its methods are safe for concurrent use.
type Server struct {
	// Path is the socket the server listens on.
	Path string

	mu         sync.Mutex // guards the fields below
	srv        *http.Server
	ln         *net.UnixListener
	containers []Container
	version    map[string]string
	firewall   string // FirewallBackend.Driver in GET /info; "" omits it
	streams    map[chan []byte]struct{}
	lists      int      // container list requests served
	versions   []string // API version of each versioned request, in order
	filters    string   // filters of the last event subscription
	failList   int      // status to answer list requests with; 0 = serve them
	listDelay  time.Duration
}

// New starts a fake daemon running containers cs, on a socket in a
// temporary directory; it is stopped when the test ends.
func New(tb testing.TB, cs ...Container) *Server {
	tb.Helper()
	dir := tb.TempDir()
	if len(dir) > 90 { // sun_path holds 108 bytes
		var err error
		if dir, err = os.MkdirTemp("", "fakedocker"); err != nil {
			tb.Fatal(err)
		}
		tb.Cleanup(func() { os.RemoveAll(dir) })
	}
	return NewAt(tb, filepath.Join(dir, "docker.sock"), cs...)
}

// NewAt starts a fake daemon running containers cs on the socket at path;
// it is stopped when the test ends.
func NewAt(tb testing.TB, path string, cs ...Container) *Server {
	tb.Helper()
	s := &Server{Path: path, version: Version, streams: map[chan []byte]struct{}{}}
	s.SetContainers(cs...)
	if err := s.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(s.Stop)
	return s
}

// Start listens on Path again after Stop.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.srv != nil {
		return errors.New("fakedocker: already started")
	}
	os.Remove(s.Path)
	ln, err := net.Listen("unix", s.Path)
	if err != nil {
		return fmt.Errorf("fakedocker: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /version", s.serveVersion)
	mux.HandleFunc("GET /info", s.serveInfo)
	mux.HandleFunc("GET /{v}/version", s.versioned(s.serveVersion))
	mux.HandleFunc("GET /{v}/info", s.versioned(s.serveInfo))
	mux.HandleFunc("GET /{v}/containers/json", s.versioned(s.serveList))
	mux.HandleFunc("GET /{v}/containers/{id}/json", s.versioned(s.serveInspect))
	mux.HandleFunc("GET /{v}/events", s.versioned(s.serveEvents))
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "page not found: "+r.URL.Path)
	})
	s.srv = &http.Server{Handler: mux}
	s.ln = ln.(*net.UnixListener)
	go s.srv.Serve(ln) // returns ErrServerClosed on Stop
	return nil
}

// Stop closes the socket and every connection, event streams included, as
// a daemon that exits does.
func (s *Server) Stop() {
	s.stop(true)
}

// Kill closes the socket and every connection as Stop does, but leaves the
// socket file behind, as a daemon killed with SIGKILL does: connecting to
// it is then refused (ECONNREFUSED) rather than failing for want of a
// file (ENOENT). Start listens again.
func (s *Server) Kill() {
	s.stop(false)
}

func (s *Server) stop(unlink bool) {
	s.mu.Lock()
	srv, ln := s.srv, s.ln
	s.srv, s.ln = nil, nil
	s.mu.Unlock()
	if srv != nil {
		ln.SetUnlinkOnClose(unlink)
		srv.Close()
	}
}

// SetContainers replaces the running containers.
func (s *Server) SetContainers(cs ...Container) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.containers = append([]Container(nil), cs...)
}

// SetVersion replaces GET /version's answer.
func (s *Server) SetVersion(v map[string]string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.version = v
}

// SetFirewallBackend sets the FirewallBackend driver GET /info reports, as
// Docker 28+ does ("iptables", "nftables"); "" reports none, as 20.10.
func (s *Server) SetFirewallBackend(driver string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.firewall = driver
}

// FailList makes container list requests fail with status (0: serve them
// again).
func (s *Server) FailList(status int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.failList = status
}

// DelayList makes each container list request wait d before answering.
func (s *Server) DelayList(d time.Duration) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.listDelay = d
}

// APIVersions returns the API version of every versioned request the
// server received, refused ones included, in order.
func (s *Server) APIVersions() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.versions...)
}

// versioned serves h under /vVERSION/ when VERSION is within the range
// GET /version reports, and refuses it otherwise as Docker does: status
// 400 and "client version V is too old. Minimum supported API version is
// MIN, ..." or "... is too new. Maximum supported API version is MAX".
func (s *Server) versioned(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		v, ok := strings.CutPrefix(r.PathValue("v"), "v")
		if !ok {
			writeError(w, http.StatusNotFound, "page not found: "+r.URL.Path)
			return
		}
		s.mu.Lock()
		s.versions = append(s.versions, v)
		lo, hi := s.version["MinAPIVersion"], s.version["ApiVersion"]
		s.mu.Unlock()
		switch {
		case older(v, lo):
			writeError(w, http.StatusBadRequest, fmt.Sprintf("client version %s is too old. Minimum supported API version is %s, please upgrade your client to a newer version", v, lo))
		case older(hi, v):
			writeError(w, http.StatusBadRequest, fmt.Sprintf("client version %s is too new. Maximum supported API version is %s", v, hi))
		default:
			h(w, r)
		}
	}
}

// older reports whether API version a is older than b ("1.9" < "1.41").
func older(a, b string) bool {
	amaj, amin, _ := strings.Cut(a, ".")
	bmaj, bmin, _ := strings.Cut(b, ".")
	an, _ := strconv.Atoi(amaj)
	bn, _ := strconv.Atoi(bmaj)
	if an != bn {
		return an < bn
	}
	am, _ := strconv.Atoi(amin)
	bm, _ := strconv.Atoi(bmin)
	return am < bm
}

// Lists returns how many container list requests were served.
func (s *Server) Lists() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lists
}

// Streams returns how many event streams are open.
func (s *Server) Streams() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.streams)
}

// Filters returns the filters parameter of the last event subscription.
func (s *Server) Filters() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.filters
}

// Emit sends an event to every open stream, shaped as Docker 20.10 sends
// it. For network events id is the network and the container goes in the
// "container" attribute.
func (s *Server) Emit(typ, action, id string, attrs map[string]string) {
	b, err := json.Marshal(map[string]any{
		"status": action, "id": id, "Type": typ, "Action": action,
		"Actor": map[string]any{"ID": id, "Attributes": attrs},
		"scope": "local", "time": time.Now().Unix(), "timeNano": time.Now().UnixNano(),
	})
	if err != nil {
		panic(err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for ch := range s.streams {
		select {
		case ch <- append(b, '\n'):
		default: // a test that floods a stream loses events, like a slow client
		}
	}
}

// CutStreams ends every open event stream cleanly, the daemon staying up.
func (s *Server) CutStreams() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for ch := range s.streams {
		close(ch)
		delete(s.streams, ch)
	}
}

func (s *Server) serveVersion(w http.ResponseWriter, _ *http.Request) {
	s.mu.Lock()
	v := s.version
	s.mu.Unlock()
	writeJSON(w, v)
}

func (s *Server) serveInfo(w http.ResponseWriter, _ *http.Request) {
	s.mu.Lock()
	fw := s.firewall
	s.mu.Unlock()
	info := map[string]any{"ServerVersion": "fake"}
	if fw != "" {
		info["FirewallBackend"] = map[string]string{"Driver": fw}
	}
	writeJSON(w, info)
}

func (s *Server) serveList(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	fail, delay := s.failList, s.listDelay
	cs := s.containers
	if fail == 0 {
		s.lists++
	}
	s.mu.Unlock()
	if delay > 0 {
		select {
		case <-time.After(delay):
		case <-r.Context().Done():
			return
		}
	}
	if fail != 0 {
		writeError(w, fail, "list refused by the test")
		return
	}
	if r.URL.Query().Get("all") == "1" {
		writeError(w, http.StatusBadRequest, "fakedocker serves running containers only")
		return
	}
	list := make([]map[string]any, 0, len(cs))
	for _, c := range cs {
		list = append(list, map[string]any{
			"Id": c.ID, "Names": []string{"/" + c.Name}, "Image": c.Image, "Labels": c.Labels,
			"State": "running", "NetworkSettings": map[string]any{"Networks": networks(c)},
		})
	}
	writeJSON(w, list)
}

func (s *Server) serveInspect(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	s.mu.Lock()
	var found *Container
	for i := range s.containers {
		if c := &s.containers[i]; c.ID == id || c.Name == id {
			found = c
			break
		}
	}
	s.mu.Unlock()
	if found == nil || found.Gone {
		writeError(w, http.StatusNotFound, "No such container: "+id)
		return
	}
	c := found
	ports := map[string]any{}
	for k, bs := range c.Ports {
		if bs == nil {
			ports[k] = nil
			continue
		}
		list := make([]map[string]string, 0, len(bs))
		for _, b := range bs {
			list = append(list, map[string]string{"HostIp": b.HostIP, "HostPort": b.HostPort})
		}
		ports[k] = list
	}
	writeJSON(w, map[string]any{
		"Id": c.ID, "Name": "/" + c.Name, "Image": "sha256:0123",
		"Config":          map[string]any{"Image": c.Image, "Labels": c.Labels},
		"State":           map[string]any{"Status": "running", "Running": !c.Stopped},
		"NetworkSettings": map[string]any{"Ports": ports, "Networks": networks(*c)},
	})
}

func networks(c Container) map[string]any {
	nets := map[string]any{}
	for name, e := range c.Networks {
		nets[name] = map[string]any{"IPAddress": e.IPv4, "GlobalIPv6Address": e.IPv6, "IPPrefixLen": 16}
	}
	return nets
}

func (s *Server) serveEvents(w http.ResponseWriter, r *http.Request) {
	ch := make(chan []byte, 256)
	s.mu.Lock()
	s.streams[ch] = struct{}{}
	s.filters = r.URL.Query().Get("filters")
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.streams, ch)
		s.mu.Unlock()
	}()
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(http.StatusOK)
	fl := w.(http.Flusher)
	fl.Flush() // as dockerd: the client learns at once that it is subscribed
	for {
		select {
		case <-r.Context().Done():
			return
		case b, ok := <-ch:
			if !ok {
				return
			}
			w.Write(b) // if the client went away, its context ends the loop
			fl.Flush()
		}
	}
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v) // an error means the client went away
}

func writeError(w http.ResponseWriter, status int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(map[string]string{"message": strings.TrimSpace(msg)}) // an error means the client went away
}
