package flowlog

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/nfqguard/nfqguard/inspect"
	"github.com/nfqguard/nfqguard/rules"
)

// EventLog writes events as JSON lines, one object per flow, on its own
// goroutine so that a slow disk never stalls a queue. When its buffer is
// full, Emit drops the event and counts it.
type EventLog struct {
	ch      chan inspect.Event
	w       *bufio.Writer
	done    chan struct{}
	dropped atomic.Uint64
	err     error // first write error; read after done is closed
}

// NewEventLog starts a writer to w holding up to buffer pending events.
// Close must be called, after the last Emit, to flush and stop it.
func NewEventLog(w io.Writer, buffer int) *EventLog {
	l := &EventLog{ch: make(chan inspect.Event, buffer), w: bufio.NewWriter(w), done: make(chan struct{})}
	go l.run()
	return l
}

// Emit queues ev for writing without blocking.
func (l *EventLog) Emit(ev inspect.Event) bool {
	select {
	case l.ch <- ev:
		return true
	default:
		l.dropped.Add(1)
		return false
	}
}

// Dropped returns the number of events lost to a full buffer.
func (l *EventLog) Dropped() uint64 { return l.dropped.Load() }

// Close flushes pending events and stops the writer. No Emit may follow.
func (l *EventLog) Close() error {
	close(l.ch)
	<-l.done
	return l.err
}

// Record is the JSON form of an Event: the blocked-flow log's schema. The
// Docker fields are left out when empty.
type Record struct {
	Time       time.Time `json:"time"`
	Event      string    `json:"event"` // "blocked" or "allowed"
	Rule       string    `json:"rule"`  // rule id, "default", or a reason's name
	Container  string    `json:"container"`
	DockerName string    `json:"docker_name,omitempty"`
	Image      string    `json:"image,omitempty"`
	Direction  string    `json:"direction"`
	Proto      string    `json:"proto"`
	Src        string    `json:"src"`
	SrcPort    uint16    `json:"sport"`
	Dst        string    `json:"dst"`
	DstPort    uint16    `json:"dport"`
	Published  string    `json:"published,omitempty"` // "HOSTIP:HOSTPORT[,…]" the ingress port is published on
	Packets    uint32    `json:"packets"`
	Reason     string    `json:"reason,omitempty"`

	// The L7 fact the flow was judged by (see Event.L7).
	L7         string `json:"l7,omitempty"` // "tls", "http" or "dns"
	SNI        string `json:"sni,omitempty"`
	ECH        bool   `json:"ech,omitempty"` // sni is the ECH outer (public) name
	HTTPHost   string `json:"http_host,omitempty"`
	HTTPPath   string `json:"http_path,omitempty"`
	HTTPMethod string `json:"http_method,omitempty"`
	QName      string `json:"qname,omitempty"`
	QueryID    uint16 `json:"query_id,omitempty"` // DNS message id, for a query judged on its own (UDP)
}

// RecordOf converts an event to its log record.
func RecordOf(ev inspect.Event) Record {
	r := Record{
		Time:      ev.Time.UTC(),
		Event:     "allowed",
		Rule:      ev.RuleID,
		Container: ev.Container,
		Direction: ev.Direction.String(),
		Proto:     ProtoName(ev.Proto),
		Src:       ev.Src.Addr().String(),
		SrcPort:   ev.Src.Port(),
		Dst:       ev.Dst.Addr().String(),
		DstPort:   ev.Dst.Port(),
		Packets:   ev.Packets,
		Reason:    ev.Reason,

		DockerName: ev.DockerName,
		Image:      ev.Image,
		Published:  ev.Published,

		SNI: ev.SNI, ECH: ev.ECH, HTTPHost: ev.HTTPHost, HTTPPath: ev.HTTPPath, HTTPMethod: ev.HTTPMethod,
		QName: ev.QName, QueryID: ev.QueryID,
	}
	if ev.L7 != 0 {
		r.L7 = ev.L7.String()
	}
	if ev.Action == rules.Drop {
		r.Event = "blocked"
	}
	return r
}

func (l *EventLog) run() {
	defer close(l.done)
	enc := json.NewEncoder(l.w)
	for ev := range l.ch {
		if err := enc.Encode(RecordOf(ev)); err != nil && l.err == nil {
			l.err = fmt.Errorf("write flow log: %w", err)
		}
		// Flush when nothing else is waiting, so lines appear promptly but
		// a burst is written in few syscalls.
		if len(l.ch) == 0 {
			if err := l.w.Flush(); err != nil && l.err == nil {
				l.err = fmt.Errorf("write flow log: %w", err)
			}
		}
	}
	if err := l.w.Flush(); err != nil && l.err == nil {
		l.err = fmt.Errorf("write flow log: %w", err)
	}
}

// ProtoName names an IP protocol number as the config does.
func ProtoName(p uint8) string {
	switch p {
	case rules.ProtoTCP:
		return "tcp"
	case rules.ProtoUDP:
		return "udp"
	case rules.ProtoICMP:
		return "icmp"
	case rules.ProtoICMPv6:
		return "icmpv6"
	}
	return strconv.Itoa(int(p))
}
