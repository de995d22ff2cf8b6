package docker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
)

// Event is one message of the daemon's event stream.
type Event struct {
	Type   string // "container", "network", ...
	Action string // "start", "die", "connect", ...
	Actor  Actor
}

// Actor is the object an event is about.
type Actor struct {
	ID         string            // container or network ID
	Attributes map[string]string // for containers: "name", "image", labels; for networks: "container", "name"
}

// Changes reports whether e may change a container's addresses, name or
// port bindings, and so calls for a new listing: a container started,
// stopped, restarted, was removed or renamed, or was connected to or
// disconnected from a network. Exec, health, attach, pause and image events do
// not.
func (e *Event) Changes() bool {
	switch e.Type {
	case "container":
		switch e.Action {
		case "start", "restart", "die", "stop", "kill", "destroy", "rename":
			return true
		}
	case "network":
		return e.Action == "connect" || e.Action == "disconnect"
	}
	return false
}

// EventStream is an open GET /events request. Next blocks until the daemon
// sends an event; Close ends the stream and unblocks Next.
type EventStream struct {
	body io.ReadCloser
	dec  *json.Decoder
}

// Events subscribes to container and network events. It returns once the
// daemon has answered, so an event that happens after Events returns is
// delivered: a caller that subscribes first and lists containers second
// misses nothing. The stream lasts until ctx ends, Close is called or the
// daemon goes away.
func (c *Client) Events(ctx context.Context) (*EventStream, error) {
	filters, err := json.Marshal(map[string][]string{"type": {"container", "network"}})
	if err != nil {
		return nil, &OpError{Op: "follow events", Err: err}
	}
	resp, err := c.getVersioned(ctx, "/events?filters="+url.QueryEscape(string(filters)))
	if err != nil {
		return nil, &OpError{Op: "follow events", Err: err}
	}
	return &EventStream{body: resp.Body, dec: json.NewDecoder(resp.Body)}, nil
}

// Next returns the next event. At the end of the stream (the daemon stopped
// or closed it) the error wraps io.ErrUnexpectedEOF: the daemon never ends
// a stream the client asked for.
func (s *EventStream) Next() (Event, error) {
	var e Event
	if err := s.dec.Decode(&e); err != nil {
		if errors.Is(err, io.EOF) {
			err = io.ErrUnexpectedEOF
		}
		return Event{}, &OpError{Op: "follow events", Err: fmt.Errorf("read stream: %w", err)}
	}
	return e, nil
}

// Close ends the stream.
func (s *EventStream) Close() error { return s.body.Close() }
