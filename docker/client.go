package docker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"strings"
)

// DefaultSocketPath is where the Docker daemon listens unless told otherwise.
const DefaultSocketPath = "/var/run/docker.sock"

// APIVersion is the Engine API version every request except Version is
// pinned to: Docker 20.10's, which newer daemons still serve. Pinning keeps
// the JSON this package parses the same whatever the daemon's version.
const APIVersion = "1.41"

// maxResponse bounds a JSON response body. A host with thousands of
// containers stays far below it; a broken daemon cannot exhaust memory.
const maxResponse = 64 << 20

// DefaultSocket returns the socket the docker CLI would use: the path in
// DOCKER_HOST when that is a unix:// address, else DefaultSocketPath.
// Other DOCKER_HOST schemes (tcp://, ssh://) are ignored: nfqguard only
// talks to the local daemon.
func DefaultSocket() string {
	if p, ok := strings.CutPrefix(os.Getenv("DOCKER_HOST"), "unix://"); ok && p != "" {
		return p
	}
	return DefaultSocketPath
}

// Client talks to one Docker daemon. It is safe for concurrent use and
// holds no connection between requests, so it needs no closing and survives
// daemon restarts.
type Client struct {
	socket string
	hc     *http.Client
}

// NewClient returns a client for the daemon listening on the unix socket at
// path. Nothing is dialled until a request is made.
func NewClient(path string) *Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", path)
		},
		// A fresh connection per request costs a connect(2) on a local
		// socket, and leaves no idle connection (and goroutines) behind
		// to go stale when the daemon restarts.
		DisableKeepAlives: true,
	}
	// No client-wide timeout: the event stream is long-lived. Callers bound
	// the other requests through their contexts.
	return &Client{socket: path, hc: &http.Client{Transport: tr}}
}

// Socket returns the path the client dials.
func (c *Client) Socket() string { return c.socket }

// Version is what GET /version reports about the daemon.
type Version struct {
	Version       string // Docker version, such as "20.10.24"
	APIVersion    string `json:"ApiVersion"`    // highest API version the daemon serves
	MinAPIVersion string `json:"MinAPIVersion"` // lowest
}

// Version asks the daemon for its version. The request is not pinned to
// APIVersion, so it also answers for daemons too old for the other calls.
func (c *Client) Version(ctx context.Context) (Version, error) {
	var v Version
	if err := c.getJSON(ctx, "/version", &v); err != nil {
		return Version{}, &OpError{Op: "get version", Err: err}
	}
	return v, nil
}

// Info is the part of GET /info nfqguard uses.
type Info struct {
	// FirewallBackend is reported by Docker 28 and later ("iptables" or
	// "nftables"); empty for older daemons, which only have iptables.
	FirewallBackend struct {
		Driver string
	}
}

// Info asks the daemon about itself. Like Version it is not pinned to
// APIVersion: FirewallBackend exists only in newer API versions, and a
// daemon answers an unversioned request in its own.
func (c *Client) Info(ctx context.Context) (Info, error) {
	var i Info
	if err := c.getJSON(ctx, "/info", &i); err != nil {
		return Info{}, &OpError{Op: "get info", Err: err}
	}
	return i, nil
}

// OpError is an error of one API operation.
type OpError struct {
	Op  string // "list containers", "follow events", ...
	Err error
}

// Error renders "docker: OP: ERR".
func (e *OpError) Error() string { return "docker: " + e.Op + ": " + e.Err.Error() }

// Unwrap returns the underlying error.
func (e *OpError) Unwrap() error { return e.Err }

// APIError is a response with an error status: the daemon understood the
// request and refused it.
type APIError struct {
	Status  int    // HTTP status code
	Message string // the daemon's "message", or the status text
}

// Error renders "STATUS MESSAGE", as "404 No such container: web".
func (e *APIError) Error() string { return fmt.Sprintf("%d %s", e.Status, e.Message) }

// versioned returns an API path pinned to APIVersion.
func versioned(p string) string { return "/v" + APIVersion + p }

// get sends a GET request and returns the response of a 2xx status; other
// statuses become an *APIError. The host part of the URL is a placeholder:
// the transport always dials the socket.
func (c *Client) get(ctx context.Context, path string) (*http.Response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://docker"+path, nil)
	if err != nil {
		return nil, err
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		// url.Error repeats the placeholder URL; the dial error below it
		// already names the socket.
		if ue, ok := errors.AsType[*url.Error](err); ok {
			err = ue.Err
		}
		return nil, err
	}
	if resp.StatusCode/100 != 2 {
		defer resp.Body.Close()
		return nil, apiError(resp)
	}
	return resp, nil
}

func apiError(resp *http.Response) error {
	e := &APIError{Status: resp.StatusCode, Message: http.StatusText(resp.StatusCode)}
	var body struct{ Message string }
	if json.NewDecoder(io.LimitReader(resp.Body, 64<<10)).Decode(&body) == nil && body.Message != "" {
		e.Message = body.Message
	}
	return e
}

func (c *Client) getJSON(ctx context.Context, path string, v any) error {
	resp, err := c.get(ctx, path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxResponse)).Decode(v); err != nil {
		return fmt.Errorf("decode response: %w", err)
	}
	return nil
}
