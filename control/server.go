package control

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// ioTimeout bounds one request: a stuck client cannot hold a connection.
const ioTimeout = 10 * time.Second

// maxRequest bounds a request line.
const maxRequest = 4096

// Request is what a client asks.
type Request struct {
	Cmd string `json:"cmd"`           // "status" or "reload"
	Top int    `json:"top,omitempty"` // status: how many top blocked flows and rules (default 10)
}

// Response is the daemon's answer.
type Response struct {
	OK     bool          `json:"ok"`
	Error  string        `json:"error,omitempty"`
	Status *Status       `json:"status,omitempty"`
	Reload *ReloadResult `json:"reload,omitempty"`
}

// ReloadResult is what a reload did.
type ReloadResult struct {
	Time       time.Time `json:"time"`
	OK         bool      `json:"ok"`
	Error      string    `json:"error,omitempty"` // why the file was refused, with file:line:col
	Generation uint64    `json:"generation"`      // the table generation in use afterwards
	// Restart lists settings that changed in the file but only take
	// effect when the daemon restarts.
	Restart []string `json:"restart_needed,omitempty"`
	// Returned is how many fast-path connections were sent back to be
	// judged again (rejudge_on_reload).
	Returned int `json:"fast_path_returned,omitempty"`
}

// Handler answers requests; its methods are called from the server's
// goroutines.
type Handler interface {
	Status(top int) (*Status, error)
	Reload() ReloadResult
}

// Server listens on the control socket.
type Server struct {
	path string
	ln   *net.UnixListener
	uid  int
	wg   sync.WaitGroup
}

// Errors of Listen that mean the socket must not be replaced: the daemon
// treats them as fatal, where a socket it merely cannot open (permissions,
// a read-only directory) leaves it running without one.
var (
	// ErrRunning: a socket at the path answers, so another nfqguard runs
	// there.
	ErrRunning = errors.New("another nfqguard is running and answers on it")
	// ErrNotSocket: something other than a socket is at the path.
	ErrNotSocket = errors.New("exists and is not a socket")
)

// Listen creates the socket at path (and its directory, mode 0700, if
// missing), mode 0600. A socket left by a daemon that died is replaced;
// one that answers belongs to a running nfqguard, and Listen fails with
// ErrRunning; a path that is not a socket fails with ErrNotSocket. A
// permission error says how to give the daemon's user a directory.
func Listen(path string) (*Server, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, socketError(path, err)
	}
	if fi, err := os.Lstat(path); err == nil {
		if fi.Mode()&os.ModeSocket == 0 {
			return nil, fmt.Errorf("status socket %s: %w", path, ErrNotSocket)
		}
		if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
			c.Close()
			return nil, fmt.Errorf("status socket %s: %w", path, ErrRunning)
		}
		if err := os.Remove(path); err != nil {
			return nil, socketError(path, fmt.Errorf("remove stale socket: %w", err))
		}
	}
	// Created with no permissions for group and others from the start,
	// rather than opened up and then narrowed.
	old := unix.Umask(0o177)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	unix.Umask(old)
	if err != nil {
		return nil, socketError(path, err)
	}
	ln.SetUnlinkOnClose(true)
	return &Server{path: path, ln: ln, uid: os.Geteuid()}, nil
}

// socketError wraps err, a failure to make the socket at path, and for a
// permission error (a user other than root, with /run/nfqguard missing or
// root's) says how to give that user a directory of its own: the fix is
// the same whether the directory could not be created, the stale socket
// not removed or the socket not bound.
func socketError(path string, err error) error {
	if errors.Is(err, fs.ErrPermission) {
		return fmt.Errorf("status socket %s: %w (as uid %d: %s must exist and belong to that user, mode 0700 "+
			"(systemd: RuntimeDirectory=nfqguard), or choose another [status] socket or --status-socket)",
			path, err, os.Geteuid(), filepath.Dir(path))
	}
	return fmt.Errorf("status socket %s: %w", path, err)
}

// Path is the socket's path.
func (s *Server) Path() string { return s.path }

// Serve answers requests with h until ctx ends, then removes the socket.
func (s *Server) Serve(ctx context.Context, h Handler) error {
	stop := context.AfterFunc(ctx, func() { s.ln.Close() })
	defer stop()
	for {
		c, err := s.ln.AcceptUnix()
		if err != nil {
			s.wg.Wait()
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return fmt.Errorf("status socket %s: %w", s.path, err)
		}
		s.wg.Add(1)
		go func() {
			defer s.wg.Done()
			s.serve(c, h)
		}()
	}
}

// Close stops listening and removes the socket.
func (s *Server) Close() error { return s.ln.Close() }

func (s *Server) serve(c *net.UnixConn, h Handler) {
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(ioTimeout))
	enc := json.NewEncoder(c)
	if err := s.checkPeer(c); err != nil {
		_ = enc.Encode(Response{Error: err.Error()})
		return
	}
	line, err := bufio.NewReaderSize(c, maxRequest).ReadSlice('\n')
	if err != nil {
		_ = enc.Encode(Response{Error: "request: want one JSON object on one line"})
		return
	}
	var req Request
	if err := json.Unmarshal(line, &req); err != nil {
		_ = enc.Encode(Response{Error: "request: " + err.Error()})
		return
	}
	_ = enc.Encode(answer(h, req))
}

func answer(h Handler, req Request) Response {
	switch req.Cmd {
	case "status":
		top := req.Top
		if top <= 0 {
			top = 10
		}
		st, err := h.Status(min(top, 100))
		if err != nil {
			return Response{Error: err.Error()}
		}
		return Response{OK: true, Status: st}
	case "reload":
		r := h.Reload()
		return Response{OK: r.OK, Error: r.Error, Reload: &r}
	}
	return Response{Error: fmt.Sprintf("unknown command %q: want \"status\" or \"reload\"", req.Cmd)}
}

// checkPeer admits root and the daemon's own user: the socket's mode
// already keeps others out, this guards against a mode changed by hand.
func (s *Server) checkPeer(c *net.UnixConn) error {
	raw, err := c.SyscallConn()
	if err != nil {
		return fmt.Errorf("peer credentials: %w", err)
	}
	var cred *unix.Ucred
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	}); err != nil {
		return fmt.Errorf("peer credentials: %w", err)
	}
	if credErr != nil {
		return fmt.Errorf("peer credentials: %w", credErr)
	}
	if cred.Uid != 0 && int(cred.Uid) != s.uid {
		return fmt.Errorf("permission denied: uid %d may not use the status socket", cred.Uid)
	}
	return nil
}
