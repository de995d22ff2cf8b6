package control

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"slices"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/nfqguard/nfqguard/firewall"
	"github.com/nfqguard/nfqguard/inspect"
	"github.com/nfqguard/nfqguard/queue"
	"github.com/nfqguard/nfqguard/rules"
)

// Status is the daemon's state as "nfqguard status" shows it; --json
// prints it as is.
type Status struct {
	Time          time.Time     `json:"time"`
	PID           int           `json:"pid"`
	Config        string        `json:"config"`
	Started       time.Time     `json:"started"`
	UptimeSeconds float64       `json:"uptime_seconds"`
	Generation    uint64        `json:"generation"` // rule table generation: 0 at start, +1 per good reload
	LastReload    *ReloadResult `json:"last_reload,omitempty"`

	// PacketsPerSecond is the rate over the last RateWindowSeconds (up to
	// ten seconds; 0 right after the start).
	PacketsPerSecond  float64 `json:"packets_per_second"`
	RateWindowSeconds float64 `json:"rate_window_seconds"`

	Packets       uint64 `json:"packets"`
	Allowed       uint64 `json:"allowed"`
	Dropped       uint64 `json:"dropped"`
	Flows         uint64 `json:"flows"`
	BlockedFlows  uint64 `json:"blocked_flows"`
	FastPathFlows uint64 `json:"fast_path_flows"`
	HeldFlows     uint64 `json:"held_flows"`   // held for deep inspection now
	HeldPackets   uint64 `json:"held_packets"` // their packets waiting for a verdict now

	// Redirect is the state of nfqguard's rules in the host's firewall.
	Redirect Redirect `json:"redirect"`
	// Docker is what the rules in force know of Docker.
	Docker Docker `json:"docker"`

	Latency Latency `json:"verdict_latency"`
	Queues  []Queue `json:"queues"`
	// TopBlocked are the live blocked flows with the most packets.
	TopBlocked []Flow `json:"top_blocked_flows"`
	// TopRules are the rules that blocked the most flows since the start.
	TopRules []Rule `json:"top_blocking_rules"`
}

// Redirect is what the firewall watcher knows of the redirect.
type Redirect struct {
	// State is "in place", "shadowed" (a rule above the redirect may end
	// a packet's walk first), "restore failed" or "not watched".
	State      string `json:"state"`
	InPlace    bool   `json:"in_place"`
	ShadowedBy string `json:"shadowed_by,omitempty"`
	// Mismatch is set while Docker uses another firewall backend than
	// [engine] firewall insists on (state "backend mismatch").
	Mismatch string `json:"mismatch,omitempty"`
	Watch    string `json:"watch"` // how changes are noticed
	// Hooks says, per family, where the redirect is hooked: the iptables
	// binary and backend, and "filter DOCKER-USER" (Docker's iptables
	// backend) or "mangle NFQGUARD" (its nftables backend).
	Hooks []string `json:"hooks"`
	// Events is the number of looks that found the rules disturbed;
	// ByEvent counts them by what was found.
	Events    uint64            `json:"events"`
	ByEvent   map[string]uint64 `json:"by_event"`
	LastEvent *RedirectEvent    `json:"last_event,omitempty"`
	// Dropped counts packets nfqguard's own rules dropped: invalid,
	// untracked (no connection) and guard (unjudged while the redirect
	// was away).
	Dropped map[string]uint64 `json:"dropped_packets"`
}

// Docker is what the rule table in force knows of Docker.
type Docker struct {
	// State is "reachable" (the rules were resolved against its last
	// listing), "unreachable" (it could not be asked since
	// UnreachableSince) or "not watched" (no entry is resolved through
	// it and its socket was absent at start).
	State            string     `json:"state"`
	UnreachableSince *time.Time `json:"unreachable_since,omitempty"`
	// Unlisted is what happens to addresses no entry lists while Docker
	// is unreachable: "dropped" or "defaults" (docker.unreachable).
	Unlisted string `json:"unlisted,omitempty"`
	// Unresolved are the entries resolved through Docker that have no
	// address: their rules match nothing.
	Unresolved []string `json:"unresolved"`
}

func dockerOf(d *rules.DockerStatus) Docker {
	out := Docker{State: "not watched", Unresolved: []string{}}
	if d.Dynamic {
		out.Unresolved = append(out.Unresolved, d.Unresolved...)
	}
	switch {
	case !d.UnreachableSince.IsZero():
		since := d.UnreachableSince
		out.State, out.UnreachableSince, out.Unlisted = "unreachable", &since, "defaults"
		if d.DropUnlisted {
			out.Unlisted = "dropped"
		}
	case d.Resolved:
		out.State = "reachable"
	}
	return out
}

// writeText prints Docker's line for a terminal.
func (d *Docker) writeText(b *strings.Builder, now time.Time) {
	fmt.Fprintf(b, "docker     %s", d.State)
	if d.UnreachableSince != nil {
		fmt.Fprintf(b, " since %s (%s)", d.UnreachableSince.Format(time.RFC3339), now.Sub(*d.UnreachableSince).Round(time.Second))
		if d.Unlisted == "dropped" {
			b.WriteString(": traffic of addresses no entry lists is DROPPED until Docker answers")
		} else {
			b.WriteString(": addresses no entry lists get [defaults]; entries resolved through Docker keep the last known containers")
		}
	}
	if len(d.Unresolved) > 0 {
		fmt.Fprintf(b, "; unresolved (their rules match nothing): %s", strings.Join(d.Unresolved, ", "))
	}
	b.WriteString("\n")
}

// RedirectEvent is the watcher's last event.
type RedirectEvent struct {
	Time        time.Time `json:"time"`
	Family      string    `json:"family"`
	Found       []string  `json:"found"`
	Rule        string    `json:"rule,omitempty"`
	TookSeconds float64   `json:"took_seconds"`
	Error       string    `json:"error,omitempty"`
	Moved       string    `json:"moved,omitempty"`    // backend_changed: "filter DOCKER-USER -> mangle NFQGUARD"
	Mismatch    string    `json:"mismatch,omitempty"` // backend_mismatch: what Docker uses and what the setting wants
}

// Latency is the verdict latency (packet received → verdict sent) since
// the start, in seconds; each percentile is an upper bound within 25%.
type Latency struct {
	Count uint64  `json:"count"`
	P50   float64 `json:"p50_seconds"`
	P90   float64 `json:"p90_seconds"`
	P99   float64 `json:"p99_seconds"`
	P999  float64 `json:"p999_seconds"`
}

// Queue is one NFQUEUE queue and its worker.
type Queue struct {
	Queue            uint16  `json:"queue"`
	PacketsPerSecond float64 `json:"packets_per_second"`
	Packets          uint64  `json:"packets"`
	Allowed          uint64  `json:"allowed"`
	Dropped          uint64  `json:"dropped"`
	KernelDropped    uint64  `json:"kernel_dropped"` // queue full
	UserDropped      uint64  `json:"user_dropped"`   // could not be sent to nfqguard
	ENOBUFS          uint64  `json:"enobufs"`
	Flows            uint64  `json:"flows"` // in the flow table now
	Slots            uint64  `json:"slots"` // the flow table's size
	Evictions        uint64  `json:"evictions"`
	HeldFlows        uint64  `json:"held_flows"`
}

// Flow is a live blocked flow.
type Flow struct {
	Queue     uint16    `json:"queue"`
	Src       string    `json:"src"` // initiator, address:port
	Dst       string    `json:"dst"`
	Proto     string    `json:"proto"`
	Container string    `json:"container"`
	Rule      string    `json:"rule"`
	Direction string    `json:"direction"`
	Packets   uint32    `json:"packets"`
	Bytes     uint64    `json:"bytes"`
	Start     time.Time `json:"start"`
	Last      time.Time `json:"last"`
}

// Rule is what one rule judged since the start.
type Rule struct {
	Container string `json:"container"`
	Rule      string `json:"rule"`
	Direction string `json:"direction"`
	Verdict   string `json:"verdict"`
	Flows     uint64 `json:"flows"`
	Packets   uint64 `json:"packets"`
}

// rateWindow is how far back Sampler keeps totals for the packet rates.
const rateWindow = 10 * time.Second

// Sampler records packet totals once a second, for rates over the last
// ten seconds.
type Sampler struct {
	mon *queue.Monitor

	mu      sync.Mutex
	samples []sample // oldest first, at most rateWindow apart
}

type sample struct {
	t       time.Time
	packets map[uint16]uint64
}

// NewSampler returns a Sampler of mon; call Run to start it.
func NewSampler(mon *queue.Monitor) *Sampler { return &Sampler{mon: mon} }

// Run samples once a second until ctx ends.
func (s *Sampler) Run(ctx context.Context) {
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		if snap, ok := s.mon.Snapshot(); ok {
			s.add(snap)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

func (s *Sampler) add(snap queue.Snapshot) {
	p := make(map[uint16]uint64, len(snap.Queues))
	for _, q := range snap.Queues {
		p[q.Queue] = q.Engine.Packets
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.samples = append(s.samples, sample{t: snap.Time, packets: p})
	for len(s.samples) > 1 && snap.Time.Sub(s.samples[0].t) > rateWindow {
		s.samples = s.samples[1:]
	}
}

// oldest is the oldest sample, if any.
func (s *Sampler) oldest() (sample, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.samples) == 0 {
		return sample{}, false
	}
	return s.samples[0], true
}

// Build assembles a Status from a snapshot, the top blocked flows, and the
// sampler's oldest sample for rates (nil sampler: no rates).
func Build(snap queue.Snapshot, top []queue.BlockedFlow, s *Sampler, n int) *Status {
	st := &Status{
		Time: snap.Time, Started: snap.Started, UptimeSeconds: snap.Time.Sub(snap.Started).Seconds(),
		Generation: snap.Generation,
		Latency: Latency{
			Count: snap.Percentiles.Count,
			P50:   seconds(snap.Percentiles.P50), P90: seconds(snap.Percentiles.P90),
			P99: seconds(snap.Percentiles.P99), P999: seconds(snap.Percentiles.P999),
		},
		Queues: []Queue{}, TopBlocked: []Flow{}, TopRules: []Rule{},
		Redirect: redirectOf(&snap.Redirect),
		Docker:   dockerOf(&snap.Docker),
	}
	var old sample
	var dt float64
	if s != nil {
		if o, ok := s.oldest(); ok && snap.Time.Sub(o.t) > 0 {
			old, dt = o, snap.Time.Sub(o.t).Seconds()
		}
	}
	st.RateWindowSeconds = dt
	for _, q := range snap.Queues {
		e := &q.Engine
		qs := Queue{
			Queue: q.Queue, Packets: e.Packets, Allowed: e.Allowed, Dropped: e.Dropped,
			KernelDropped: q.KernelDropped, UserDropped: q.UserDropped, ENOBUFS: q.ENOBUFS,
			Flows: e.FlowTableFlows, Slots: e.FlowTableSize, Evictions: e.Evictions, HeldFlows: e.HeldNow,
		}
		if dt > 0 {
			if before, ok := old.packets[q.Queue]; ok && e.Packets >= before {
				qs.PacketsPerSecond = float64(e.Packets-before) / dt
			}
		}
		st.Queues = append(st.Queues, qs)
		st.PacketsPerSecond += qs.PacketsPerSecond
		st.Packets += e.Packets
		st.Allowed += e.Allowed
		st.Dropped += e.Dropped
		st.Flows += e.Flows
		st.BlockedFlows += e.Blocked
		st.FastPathFlows += e.FastPath
		st.HeldFlows += e.HeldNow
		st.HeldPackets += e.HeldPacketsNow
	}
	for _, f := range top {
		st.TopBlocked = append(st.TopBlocked, Flow{
			Queue: f.Queue, Src: f.Src.String(), Dst: f.Dst.String(), Proto: inspect.ProtoName(f.Proto),
			Container: f.Container, Rule: f.RuleID, Direction: f.Direction.String(),
			Packets: f.Packets, Bytes: f.Bytes, Start: f.Start, Last: f.Last,
		})
	}
	for _, r := range snap.Rules {
		if r.Verdict == "drop" && r.Flows > 0 {
			st.TopRules = append(st.TopRules, Rule(r))
		}
	}
	slices.SortStableFunc(st.TopRules, func(a, b Rule) int { return cmp.Compare(b.Flows, a.Flows) })
	st.TopRules = st.TopRules[:min(n, len(st.TopRules))]
	return st
}

func redirectOf(h *firewall.Health) Redirect {
	r := Redirect{State: h.State, InPlace: h.InPlace, ShadowedBy: h.ShadowedBy, Mismatch: h.Mismatch, Watch: h.Method,
		Hooks: slices.Clone(h.Hooks), Events: h.Total, ByEvent: map[string]uint64{}, Dropped: map[string]uint64{}}
	if r.State == "" {
		r.State = "not watched"
	}
	for _, k := range firewall.EventKinds {
		r.ByEvent[k] = h.Events[k]
	}
	for _, k := range firewall.DropKinds {
		r.Dropped[k] = h.Dropped[k]
	}
	if e := h.Last; e != nil {
		r.LastEvent = &RedirectEvent{Time: e.Time, Family: e.Family, Found: e.Found, Rule: e.Rule,
			TookSeconds: e.Took.Seconds(), Error: e.Err, Moved: e.Moved, Mismatch: e.Mismatch}
	}
	return r
}

// writeText prints the redirect's lines for a terminal.
func (r *Redirect) writeText(b *strings.Builder) {
	fmt.Fprintf(b, "redirect   %s", r.State)
	if r.ShadowedBy != "" {
		fmt.Fprintf(b, " by %s: traffic it ends the walk for is NOT judged", r.ShadowedBy)
	}
	if r.Mismatch != "" {
		fmt.Fprintf(b, " (%s)", r.Mismatch)
	}
	if r.Events == 1 {
		b.WriteString("; 1 event")
	} else {
		fmt.Fprintf(b, "; %d events", r.Events)
	}
	if e := r.LastEvent; e != nil {
		fmt.Fprintf(b, ", last %s %s (%s)", e.Time.Format(time.RFC3339), strings.Join(e.Found, ","), e.Family)
		if e.Moved != "" {
			fmt.Fprintf(b, ", moved %s", e.Moved)
		}
		if e.Error != "" {
			fmt.Fprintf(b, ": %s", e.Error)
		} else if e.TookSeconds > 0 {
			fmt.Fprintf(b, ", restored in %s", dur(e.TookSeconds))
		}
	}
	fmt.Fprintf(b, "\n           watched by %s; dropped: %d invalid, %d untracked, %d by the guard\n",
		orDash(r.Watch), r.Dropped["invalid"], r.Dropped["untracked"], r.Dropped["guard"])
	for _, h := range r.Hooks {
		fmt.Fprintf(b, "           hooked %s\n", h)
	}
}

func seconds(ns int64) float64 { return time.Duration(ns).Seconds() }

// WriteText prints st for a terminal.
func (st *Status) WriteText(w io.Writer) error {
	var b strings.Builder
	fmt.Fprintf(&b, "nfqguard pid %d, up %s, config %s (generation %d)\n",
		st.PID, time.Duration(st.UptimeSeconds*float64(time.Second)).Round(time.Second), st.Config, st.Generation)
	if r := st.LastReload; r != nil {
		if r.OK {
			fmt.Fprintf(&b, "last reload: %s, ok\n", r.Time.Format(time.RFC3339))
		} else {
			fmt.Fprintf(&b, "last reload: %s, FAILED: %s (the previous rules stay in force)\n", r.Time.Format(time.RFC3339), r.Error)
		}
	}
	st.Redirect.writeText(&b)
	st.Docker.writeText(&b, st.Time)
	window := "rate warming up"
	if st.RateWindowSeconds > 0 {
		window = fmt.Sprintf("over the last %.0fs", st.RateWindowSeconds)
	}
	fmt.Fprintf(&b, "\npackets/s  %.0f (%s)\n", st.PacketsPerSecond, window)
	fmt.Fprintf(&b, "packets    %d: %d allowed, %d dropped\n", st.Packets, st.Allowed, st.Dropped)
	fmt.Fprintf(&b, "flows      %d judged: %d blocked, %d on the fast path\n", st.Flows, st.BlockedFlows, st.FastPathFlows)
	fmt.Fprintf(&b, "held       %d flows, %d packets waiting for deep inspection\n", st.HeldFlows, st.HeldPackets)
	l := st.Latency
	fmt.Fprintf(&b, "verdict latency since start (%d packets): p50 %s  p90 %s  p99 %s  p99.9 %s\n\n",
		l.Count, dur(l.P50), dur(l.P90), dur(l.P99), dur(l.P999))

	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintln(tw, "QUEUE\tPKTS/S\tPACKETS\tDROPPED\tKERNEL DROPS\tUSER DROPS\tENOBUFS\tFLOWS\tSLOTS\tEVICTIONS\tHELD\t")
	for _, q := range st.Queues {
		fmt.Fprintf(tw, "%d\t%.0f\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t%d\t\n", q.Queue, q.PacketsPerSecond, q.Packets, q.Dropped,
			q.KernelDropped, q.UserDropped, q.ENOBUFS, q.Flows, q.Slots, q.Evictions, q.HeldFlows)
	}
	tw.Flush()

	b.WriteString("\ntop blocked flows (live):\n")
	if len(st.TopBlocked) == 0 {
		b.WriteString("  none\n")
	} else {
		tw = tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "  PACKETS\tBYTES\tPROTO\tSRC\tDST\tCONTAINER\tRULE\tDIRECTION\tFOR")
		for _, f := range st.TopBlocked {
			fmt.Fprintf(tw, "  %d\t%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", f.Packets, f.Bytes, f.Proto, f.Src, f.Dst,
				orDash(f.Container), f.Rule, f.Direction, f.Last.Sub(f.Start).Round(time.Second))
		}
		tw.Flush()
	}
	b.WriteString("\nrules that blocked the most flows:\n")
	if len(st.TopRules) == 0 {
		b.WriteString("  none\n")
	} else {
		tw = tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "  FLOWS\tPACKETS\tCONTAINER\tRULE\tDIRECTION")
		for _, r := range st.TopRules {
			fmt.Fprintf(tw, "  %d\t%d\t%s\t%s\t%s\n", r.Flows, r.Packets, orDash(r.Container), r.Rule, r.Direction)
		}
		tw.Flush()
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func dur(s float64) string {
	return time.Duration(s * float64(time.Second)).String()
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
