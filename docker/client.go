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
	"strconv"
	"strings"
	"sync"
)

// DefaultSocketPath is where the Docker daemon listens unless told otherwise.
const DefaultSocketPath = "/var/run/docker.sock"

// The Engine API versions this package speaks. MinAPIVersion is Docker
// 20.10's: every field this package reads has been there since. MaxAPIVersion
// is Docker 29's, the newest whose answers it was checked against. With
// each daemon the client speaks the newest version both know (see
// Client.APIVersion); a daemon whose range does not meet this one is
// refused with a *VersionError.
const (
	MinAPIVersion = "1.41"
	MaxAPIVersion = "1.52"
)

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

	mu      sync.Mutex
	version string // negotiated; "" until a request needs one, and after the daemon went away
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

// Version asks the daemon for its version, with the unversioned GET
// /version that every daemon answers. It also negotiates the API version of
// the requests that follow, when the daemon's range allows one.
func (c *Client) Version(ctx context.Context) (Version, error) {
	var v Version
	if err := c.getJSON(ctx, "/version", &v); err != nil {
		return Version{}, &OpError{Op: "get version", Err: err}
	}
	if pick, err := negotiate(v); err == nil {
		c.setVersion(pick)
	}
	return v, nil
}

// APIVersion returns the API version the client speaks to the daemon: the
// newest that both it (MinAPIVersion to MaxAPIVersion) and the daemon
// (its MinAPIVersion to its ApiVersion) know. It is "" until a request
// negotiated it, and again after the daemon became unreachable: a daemon
// that comes back may be another version.
func (c *Client) APIVersion() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.version
}

func (c *Client) setVersion(v string) {
	c.mu.Lock()
	c.version = v
	c.mu.Unlock()
}

// VersionError is a daemon whose API versions and this package's do not
// overlap.
type VersionError struct {
	Daemon Version // what the daemon's GET /version said
}

// Error says which side is too old.
func (e *VersionError) Error() string {
	if versionLess(e.Daemon.APIVersion, MinAPIVersion) {
		return fmt.Sprintf("Docker %s serves API versions up to %s; nfqguard needs %s or newer (Docker 20.10)",
			e.Daemon.Version, e.Daemon.APIVersion, MinAPIVersion)
	}
	return fmt.Sprintf("Docker %s serves API versions %s and newer (its DOCKER_MIN_API_VERSION); nfqguard speaks %s to %s",
		e.Daemon.Version, e.Daemon.MinAPIVersion, MinAPIVersion, MaxAPIVersion)
}

// negotiate picks the newest API version that both this package and the
// daemon that answered v know.
func negotiate(v Version) (string, error) {
	if _, _, ok := parseVersion(v.APIVersion); !ok {
		return "", fmt.Errorf("the daemon reported API version %q", v.APIVersion)
	}
	pick := MaxAPIVersion
	if versionLess(v.APIVersion, pick) {
		pick = v.APIVersion
	}
	// A daemon that reports no minimum is older than the field (API 1.25)
	// and serves every version up to its own.
	if versionLess(pick, MinAPIVersion) || (v.MinAPIVersion != "" && versionLess(pick, v.MinAPIVersion)) {
		return "", &VersionError{Daemon: v}
	}
	return pick, nil
}

// parseVersion splits an API version, "1.41".
func parseVersion(s string) (major, minor int, ok bool) {
	a, b, found := strings.Cut(s, ".")
	major, err1 := strconv.Atoi(a)
	minor, err2 := strconv.Atoi(b)
	return major, minor, found && err1 == nil && err2 == nil && major >= 0 && minor >= 0
}

// versionLess reports whether API version a is older than b; a version
// that does not parse is older than any that does.
func versionLess(a, b string) bool {
	amaj, amin, aok := parseVersion(a)
	bmaj, bmin, bok := parseVersion(b)
	if !aok || !bok {
		return !aok && bok
	}
	return amaj < bmaj || amaj == bmaj && amin < bmin
}

// Info is the part of GET /info nfqguard uses.
type Info struct {
	// FirewallBackend is reported by Docker 28 and later ("iptables" or
	// "nftables"); empty for older daemons, which only have iptables.
	FirewallBackend struct {
		Driver string
	}
}

// Info asks the daemon about itself. Like Version it is unversioned:
// FirewallBackend exists only in newer API versions, and a daemon answers
// an unversioned request in its own.
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

// getVersioned sends GET /vVERSION+p in the negotiated version,
// negotiating first when there is none. A daemon that refuses the version
// as too old or too new (it was upgraded or downgraded under us) is asked
// again for its range once, and the request retried once in the version
// that gives. A request that cannot reach the daemon forgets the version.
func (c *Client) getVersioned(ctx context.Context, p string) (*http.Response, error) {
	v := c.APIVersion()
	renegotiated := false
	if v == "" {
		var err error
		if v, err = c.renegotiate(ctx); err != nil {
			return nil, err
		}
		renegotiated = true
	}
	resp, err := c.get(ctx, "/v"+v+p)
	if versionRefused(err) && !renegotiated {
		if v, err = c.renegotiate(ctx); err != nil {
			return nil, err
		}
		resp, err = c.get(ctx, "/v"+v+p)
	}
	if _, refused := errors.AsType[*APIError](err); err != nil && !refused && ctx.Err() == nil {
		c.setVersion("")
	}
	return resp, err
}

// renegotiate asks the daemon for its API versions and keeps the one to
// speak.
func (c *Client) renegotiate(ctx context.Context) (string, error) {
	var v Version
	if err := c.getJSON(ctx, "/version", &v); err != nil {
		return "", fmt.Errorf("negotiate API version: %w", err)
	}
	pick, err := negotiate(v)
	if err != nil {
		return "", err
	}
	c.setVersion(pick)
	return pick, nil
}

// versionRefused reports whether err is a daemon's refusal of the request's
// API version, which Docker words as "client version 1.41 is too old.
// Minimum supported API version is 1.44, ..." or "client version 1.52 is
// too new. Maximum supported API version is 1.41".
func versionRefused(err error) bool {
	ae, ok := errors.AsType[*APIError](err)
	return ok && ae.Status == http.StatusBadRequest && strings.HasPrefix(ae.Message, "client version ") &&
		(strings.Contains(ae.Message, " is too old") || strings.Contains(ae.Message, " is too new"))
}

// getVersionedJSON is getVersioned decoding the answer into v.
func (c *Client) getVersionedJSON(ctx context.Context, p string, v any) error {
	resp, err := c.getVersioned(ctx, p)
	if err != nil {
		return err
	}
	return decode(resp, v)
}

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
	return decode(resp, v)
}

// decode reads a JSON answer into v and closes it.
func decode(resp *http.Response, v any) error {
	defer resp.Body.Close()
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxResponse)).Decode(v); err != nil {
		return fmt.Errorf("decode response: %w", err)
	}
	return nil
}
