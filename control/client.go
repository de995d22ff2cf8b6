package control

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"syscall"
	"time"
)

// Ask sends req to the daemon listening on path and returns its response.
// The errors say what to do: no daemon running, not root, and so on.
func Ask(path string, req Request, timeout time.Duration) (*Response, error) {
	c, err := net.DialTimeout("unix", path, timeout)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		// An engine that could not open its socket runs without it: say
		// where it would have said so.
		return nil, fmt.Errorf("no nfqguard is running here (no status socket at %s; see [status] socket, "+
			"and the engine's log for \"status socket unavailable\" if one runs)", path)
	case errors.Is(err, syscall.ECONNREFUSED):
		return nil, fmt.Errorf("no nfqguard is running here (nothing listens on %s)", path)
	case errors.Is(err, fs.ErrPermission):
		return nil, fmt.Errorf("permission denied on %s: run as root", path)
	case err != nil:
		return nil, fmt.Errorf("status socket %s: %w", path, err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	if err := json.NewEncoder(c).Encode(req); err != nil {
		return nil, fmt.Errorf("status socket %s: send: %w", path, err)
	}
	var resp Response
	if err := json.NewDecoder(c).Decode(&resp); err != nil {
		return nil, fmt.Errorf("status socket %s: read answer: %w", path, err)
	}
	return &resp, nil
}
