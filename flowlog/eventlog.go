package flowlog

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/nfqguard/nfqguard/inspect"
	"github.com/nfqguard/nfqguard/inspect/l7"
	"github.com/nfqguard/nfqguard/rules"
)

// The values of Record.Event.
const (
	EventBlocked    = "blocked"    // a blocked flow's verdict
	EventAllowed    = "allowed"    // an allowed flow's verdict (rule with log = true)
	EventEnd        = "end"        // a blocked flow's end
	EventSuppressed = "suppressed" // verdicts left out by the rate limit
)

// Record is one line of the blocked-flow log: its JSON form, and the keys
// and order of its text form. The fields marked omitempty are left out when
// empty or zero.
//
// A "suppressed" record has only Time, Event, Rule, Container, Suppressed
// and Since.
type Record struct {
	Time       time.Time `json:"time"`
	Event      string    `json:"event"` // EventBlocked, EventAllowed, EventEnd or EventSuppressed
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

	// An "end" record's flow: its IP bytes, first packet's time (UTC), and
	// the time from its first packet to its last (Time).
	Bytes    uint64    `json:"bytes,omitempty"`
	Start    time.Time `json:"start,omitzero"`
	Duration float64   `json:"duration_seconds,omitempty"`

	Reason string `json:"reason,omitempty"`

	// The L7 fact the flow was judged by (see Event.L7).
	L7          string `json:"l7,omitempty"`           // "tls", "quic" (TLS in QUIC), "http" or "dns"
	QUICVersion string `json:"quic_version,omitempty"` // with l7 "quic": "v1", "v2"
	AppProto    string `json:"app_proto,omitempty"`    // the application protocol identified: tls, http, ssh, dns, quic, unknown
	SNI         string `json:"sni,omitempty"`
	JA4         string `json:"ja4,omitempty"` // the ClientHello's JA4 fingerprint (TLS and QUIC)
	ECH         bool   `json:"ech,omitempty"` // sni is the ECH outer (public) name
	HTTPHost    string `json:"http_host,omitempty"`
	HTTPPath    string `json:"http_path,omitempty"`
	HTTPMethod  string `json:"http_method,omitempty"`
	QName       string `json:"qname,omitempty"`
	QueryID     uint16 `json:"query_id,omitempty"` // DNS message id, for a query judged on its own (UDP)

	// Names are the DNS names the container resolved the remote address
	// from, learned from its answers ([dns]), whatever rule judged the
	// flow; latest expiry first. The text form joins them with ",".
	Names []string `json:"names,omitempty"`

	// A "suppressed" record: how many verdicts of Rule and Container were
	// not written because of the rate limit, from Since (UTC) to Time.
	Suppressed uint64    `json:"suppressed,omitempty"`
	Since      time.Time `json:"since,omitzero"`
}

// RecordOf converts an event, a verdict or an end, to its log record.
func RecordOf(ev inspect.Event) Record {
	var r rec
	r.fill(&ev)
	r.Src = ev.Src.Addr().String()
	r.Dst = ev.Dst.Addr().String()
	return r.Record
}

// MarshalJSON writes r as the log does, without the newline. It is
// encoding/json's output for the struct's tags, except that a
// "suppressed" record leaves out the fields it does not have.
func (r Record) MarshalJSON() ([]byte, error) {
	e := encoder{b: make([]byte, 0, 256)}
	x := rec{Record: r}
	x.encode(&e)
	return e.b[:len(e.b)-1], nil
}

// rec is a Record as the writer fills it: the addresses stay netip.Addr
// (appended, not converted to strings) so that writing allocates nothing.
// When src or dst is not valid, Src or Dst is written instead.
type rec struct {
	Record
	src, dst netip.Addr
}

// fill sets r from ev, leaving Src and Dst to the caller, or r.src and
// r.dst when the address is valid.
func (r *rec) fill(ev *inspect.Event) {
	r.Record = Record{
		Time:      ev.Time.UTC(),
		Event:     EventAllowed,
		Rule:      ev.RuleID,
		Container: ev.Container,
		Direction: ev.Direction.String(),
		Proto:     inspect.ProtoName(ev.Proto),
		SrcPort:   ev.Src.Port(),
		DstPort:   ev.Dst.Port(),
		Packets:   ev.Packets,
		Reason:    ev.Reason,

		DockerName: ev.DockerName,
		Image:      ev.Image,
		Published:  ev.Published,

		SNI: ev.SNI, JA4: ev.JA4, ECH: ev.ECH, HTTPHost: ev.HTTPHost, HTTPPath: ev.HTTPPath, HTTPMethod: ev.HTTPMethod,
		QName: ev.QName, QueryID: ev.QueryID, Names: ev.Names.Strings(),
	}
	r.src, r.dst = netip.Addr{}, netip.Addr{}
	if ev.L7 != 0 {
		r.L7 = ev.L7.String()
	}
	if ev.App != 0 {
		r.AppProto = ev.App.String()
	}
	if ev.QUIC != 0 {
		r.L7, r.QUICVersion = "quic", quicVersion(ev.QUIC)
	}
	switch {
	case ev.Kind == inspect.EventEnd:
		r.Event = EventEnd
		r.Bytes = ev.Bytes
		if !ev.Start.IsZero() {
			r.Start = ev.Start.UTC()
			r.Duration = ev.Time.Sub(ev.Start).Seconds()
		}
	case ev.Action == rules.Drop:
		r.Event = EventBlocked
	}
}

// quicVersion names a QUIC version for the log: "v1", "v2", or its number
// in hex.
func quicVersion(v uint32) string {
	switch v {
	case l7.QUICv1:
		return "v1"
	case l7.QUICv2:
		return "v2"
	}
	return fmt.Sprintf("0x%08x", v)
}
