package rules

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// The rule file's keys live in the tables below and nowhere else: the
// parser's unknown-key check and its suggestions, Keys, the settings
// `nfqguard check` shows and what a reload keeps (KeepStartOnly) read
// them, so a new key is added here once (and validated in parse_*.go).

// keyTable is one table of the rule file and the keys it accepts.
type keyTable struct {
	path   string // dotted path: "engine", "container.rule"; "" for the top level
	header string // as messages name it: "[engine]", "[[container.rule]]"; "" for the top level
	// keys are in the file's order: suggestions list ties, and
	// KeepStartOnly names changes, in it.
	keys []key
	// check lists the lines `nfqguard check` shows for a daemon section,
	// each the keys whose texts it joins with ", ".
	check [][]string
	// whole: KeepStartOnly names a change to any of the table's keys by
	// the table's path ("log"), since the section sets up one thing, the
	// log or a listener, that a restart replaces as a whole.
	whole bool
}

// key is one key of a keyTable.
type key struct {
	name string
	sub  *keyTable // the key holds a table or an array of tables
	// restart: a running daemon applies a change to the key only at its
	// next start (see KeyInfo.Restart).
	restart bool
	l7      L7 // a rule's L7 key: the protocol whose fields it names
	// field is the Table field a daemon section's key sets. The keys of
	// [[container]] and its rules have none: they are compiled into rules.
	field field
	// show gives the key's text in check's settings when "name value"
	// would not do; "" shows nothing.
	show func(t *Table) string
}

// text is the key's text in check's settings.
func (k *key) text(t *Table) string {
	if k.show != nil {
		return k.show(t)
	}
	return k.name + " " + k.field.text(t)
}

// field is a setting's place in a Table.
type field interface {
	text(t *Table) string // the value as check shows it unless key.show says otherwise
	equal(a, b *Table) bool
	keep(next, running *Table) // copy running's value into next
}

// fieldAt is a field of type T; at makes one, inferring T.
type fieldAt[T comparable] func(t *Table) *T

func at[T comparable](f func(t *Table) *T) field { return fieldAt[T](f) }

func (f fieldAt[T]) text(t *Table) string      { return fmt.Sprint(*f(t)) }
func (f fieldAt[T]) equal(a, b *Table) bool    { return *f(a) == *f(b) }
func (f fieldAt[T]) keep(next, running *Table) { *f(next) = *f(running) }

// none shows a key whose setting another key's text includes.
func none(*Table) string { return "" }

// ifPcap shows a capture setting only when there is a capture.
func ifPcap(show func(t *Table) string) func(t *Table) string {
	return func(t *Table) string {
		if t.Log.Pcap == "" {
			return ""
		}
		return show(t)
	}
}

// lookup returns the key named name, or nil.
func (kt *keyTable) lookup(name string) *key {
	for i := range kt.keys {
		if kt.keys[i].name == name {
			return &kt.keys[i]
		}
	}
	return nil
}

// fileKeys is the top level. Its order is that of check's settings and of
// KeepStartOnly's names.
var fileKeys = keyTable{keys: []key{
	{name: "engine", sub: &engineKeys},
	{name: "inspect", sub: &inspectKeys},
	{name: "dns", sub: &dnsKeys},
	{name: "log", sub: &logKeys},
	{name: "metrics", sub: &metricsKeys},
	{name: "status", sub: &statusKeys},
	{name: "docker", sub: &dockerKeys},
	{name: "defaults", sub: &defaultsKeys},
	{name: "container", sub: &containerKeys},
}}

// What a reload can change in the daemon sections: the verdicts
// (engine.malformed, inspect.undecided) and engine.rejudge_on_reload. The
// rest sizes or places what the engine sets up at start: queues, tables,
// the log, the listeners.

var engineKeys = keyTable{
	path: "engine", header: "[engine]",
	keys: []key{
		{name: "queue", restart: true, field: at(func(t *Table) *uint16 { return &t.Engine.Queue }),
			show: func(t *Table) string {
				e := t.Engine
				workers := strconv.Itoa(e.Workers) + " workers"
				if t.autoWorkers {
					workers += ", one per CPU"
				}
				return fmt.Sprintf("queues %d..%d (%s)", e.Queue, int(e.Queue)+e.Workers-1, workers)
			}},
		{name: "workers", restart: true, field: at(func(t *Table) *int { return &t.Engine.Workers }), show: none},
		{name: "fail_open", restart: true, field: at(func(t *Table) *bool { return &t.Engine.FailOpen })},
		{name: "mark", restart: true, field: at(func(t *Table) *uint32 { return &t.Engine.Mark }),
			show: func(t *Table) string { return fmt.Sprintf("mark 0x%08x", t.Engine.Mark) }},
		{name: "bypass_mark", restart: true, field: at(func(t *Table) *uint32 { return &t.Engine.BypassMark }),
			show: func(t *Table) string { return fmt.Sprintf("bypass_mark 0x%08x", t.Engine.BypassMark) }},
		{name: "fast_path", restart: true, field: at(func(t *Table) *bool { return &t.Engine.FastPath })},
		{name: "malformed", field: at(func(t *Table) *Action { return &t.Engine.Malformed })},
		{name: "max_flows", restart: true, field: at(func(t *Table) *int { return &t.Engine.MaxFlows }),
			show: func(t *Table) string { return fmt.Sprintf("max_flows %d per worker", t.Engine.MaxFlows) }},
		{name: "queue_len", restart: true, field: at(func(t *Table) *uint32 { return &t.Engine.QueueLen })},
		{name: "rejudge_on_reload", field: at(func(t *Table) *bool { return &t.Engine.RejudgeOnReload })},
		{name: "guard_mark", restart: true, field: at(func(t *Table) *uint32 { return &t.Engine.GuardMark }),
			show: func(t *Table) string {
				switch {
				case t.Engine.GuardMark == 0:
					return "guard off"
				case t.Engine.FailOpen:
					return fmt.Sprintf("guard_mark 0x%08x (unused: fail_open)", t.Engine.GuardMark)
				}
				return fmt.Sprintf("guard_mark 0x%08x", t.Engine.GuardMark)
			}},
		{name: "invalid", restart: true, field: at(func(t *Table) *bool { return &t.Engine.DropInvalid }),
			show: func(t *Table) string {
				if t.Engine.DropInvalid {
					return `invalid "drop"`
				}
				return `invalid "docker"`
			}},
		{name: "firewall", restart: true, field: at(func(t *Table) *string { return &t.Engine.Firewall }),
			show: func(t *Table) string { return fmt.Sprintf("firewall %q", t.Engine.Firewall) }},
	},
	check: [][]string{
		{"queue", "workers", "queue_len", "max_flows"},
		{"mark", "bypass_mark", "fail_open", "fast_path", "malformed", "rejudge_on_reload"},
		{"guard_mark", "invalid", "firewall"},
	},
}

var inspectKeys = keyTable{
	path: "inspect", header: "[inspect]",
	keys: []key{
		{name: "max_packets", restart: true, field: at(func(t *Table) *int { return &t.Inspect.MaxPackets })},
		{name: "max_bytes", restart: true, field: at(func(t *Table) *int { return &t.Inspect.MaxBytes })},
		{name: "undecided", field: at(func(t *Table) *Action { return &t.Inspect.Undecided })},
		{name: "max_wait", restart: true, field: at(func(t *Table) *time.Duration { return &t.Inspect.MaxWait }),
			show: func(t *Table) string { return "max_wait " + durationText(t.Inspect.MaxWait) }},
		{name: "max_held_flows", restart: true, field: at(func(t *Table) *int { return &t.Inspect.MaxHeldFlows }),
			show: func(t *Table) string { return fmt.Sprintf("max_held_flows %d per worker", t.Inspect.MaxHeldFlows) }},
	},
	check: [][]string{{"max_packets", "max_bytes", "max_wait", "max_held_flows", "undecided"}},
}

// dnsKeys: a reload applies them all but max_names, which sizes the store
// of learned names at start.
var dnsKeys = keyTable{
	path: "dns", header: "[dns]",
	keys: []key{
		{name: "learn", field: at(func(t *Table) *bool { return &t.DNS.Learn }),
			show: func(t *Table) string {
				if t.DNS.Learn {
					return "learn on"
				}
				return "learn off"
			}},
		{name: "min_ttl", field: at(func(t *Table) *time.Duration { return &t.DNS.MinTTL }),
			show: func(t *Table) string { return "min_ttl " + durationText(t.DNS.MinTTL) }},
		{name: "max_ttl", field: at(func(t *Table) *time.Duration { return &t.DNS.MaxTTL }),
			show: func(t *Table) string { return "max_ttl " + durationText(t.DNS.MaxTTL) }},
		{name: "grace", field: at(func(t *Table) *time.Duration { return &t.DNS.Grace }),
			show: func(t *Table) string { return "grace " + durationText(t.DNS.Grace) }},
		{name: "max_names", restart: true, field: at(func(t *Table) *int { return &t.DNS.MaxNames }),
			show: func(t *Table) string { return fmt.Sprintf("max_names %d per container", t.DNS.MaxNames) }},
	},
	check: [][]string{{"learn", "min_ttl", "max_ttl", "grace", "max_names"}},
}

var logKeys = keyTable{
	path: "log", header: "[log]", whole: true,
	keys: []key{
		{name: "blocked", restart: true, field: at(func(t *Table) *string { return &t.Log.Blocked })},
		{name: "format", restart: true, field: at(func(t *Table) *string { return &t.Log.Format })},
		{name: "rate", restart: true, field: at(func(t *Table) *float64 { return &t.Log.Rate }),
			show: func(t *Table) string {
				if t.Log.Rate > 0 {
					return "rate " + floatText(t.Log.Rate) + " per second per rule"
				}
				return "rate unlimited"
			}},
		{name: "burst", restart: true, field: at(func(t *Table) *int { return &t.Log.Burst }),
			show: func(t *Table) string {
				if t.Log.Rate > 0 {
					return "burst " + strconv.Itoa(t.Log.Burst)
				}
				return "" // no bucket
			}},
		{name: "pcap", restart: true, field: at(func(t *Table) *string { return &t.Log.Pcap }),
			show: func(t *Table) string {
				if t.Log.Pcap == "" {
					return "pcap off"
				}
				return "pcap " + t.Log.Pcap
			}},
		{name: "pcap_packets", restart: true, field: at(func(t *Table) *int { return &t.Log.PcapPackets }),
			show: ifPcap(func(t *Table) string { return fmt.Sprintf("pcap_packets %d per flow", t.Log.PcapPackets) })},
		{name: "pcap_max_bytes", restart: true, field: at(func(t *Table) *int64 { return &t.Log.PcapMaxBytes }),
			show: ifPcap(func(t *Table) string { return fmt.Sprintf("pcap_max_bytes %d", t.Log.PcapMaxBytes) })},
		{name: "pcap_files", restart: true, field: at(func(t *Table) *int { return &t.Log.PcapFiles }),
			show: ifPcap(func(t *Table) string { return fmt.Sprintf("pcap_files %d", t.Log.PcapFiles) })},
	},
	check: [][]string{
		{"blocked", "format", "rate", "burst"},
		{"pcap", "pcap_packets", "pcap_max_bytes", "pcap_files"},
	},
}

var metricsKeys = keyTable{
	path: "metrics", header: "[metrics]", whole: true,
	keys: []key{
		{name: "listen", restart: true, field: at(func(t *Table) *string { return &t.Metrics.Listen }),
			show: func(t *Table) string { return orOff("listen", t.Metrics.Listen) }},
	},
	check: [][]string{{"listen"}},
}

var statusKeys = keyTable{
	path: "status", header: "[status]", whole: true,
	keys: []key{
		{name: "socket", restart: true, field: at(func(t *Table) *string { return &t.Status.Socket }),
			show: func(t *Table) string { return orOff("socket", t.Status.Socket) }},
	},
	check: [][]string{{"socket"}},
}

var dockerKeys = keyTable{
	path: "docker", header: "[docker]", whole: true,
	keys: []key{
		{name: "socket", restart: true, field: at(func(t *Table) *string { return &t.Docker.Socket }),
			show: func(t *Table) string {
				if t.Docker.Socket == "" {
					return "socket from DOCKER_HOST (unix://), else /var/run/docker.sock"
				}
				return "socket " + t.Docker.Socket
			}},
		{name: "unreachable", field: at(func(t *Table) *bool { return &t.Docker.DropUnreachable }),
			show: func(t *Table) string {
				if t.Docker.DropUnreachable {
					return `unreachable "drop"`
				}
				return `unreachable "defaults"`
			}},
	},
	check: [][]string{{"socket", "unreachable"}},
}

var defaultsKeys = keyTable{
	path: "defaults", header: "[defaults]",
	keys: []key{
		{name: "ingress", field: at(func(t *Table) *Action { return &t.defaults[Ingress] })},
		{name: "egress", field: at(func(t *Table) *Action { return &t.defaults[Egress] })},
	},
	check: [][]string{{"ingress", "egress"}},
}

// orOff shows a listener's setting, "" being off.
func orOff(name, value string) string {
	if value == "" {
		return "off"
	}
	return name + " " + value
}

var containerKeys = keyTable{path: "container", header: "[[container]]", keys: []key{
	{name: "name"},
	{name: "ips"},
	{name: "image"},
	{name: "label"},
	{name: "ingress"},
	{name: "egress"},
	{name: "rule", sub: &ruleKeys},
}}

// ruleKeys' L7 keys are last, in the order WriteTo shows them.
var ruleKeys = keyTable{path: "container.rule", header: "[[container.rule]]", keys: []key{
	{name: "id"},
	{name: "direction"},
	{name: "proto"},
	{name: "ports"},
	{name: "from"},
	{name: "to"},
	{name: "to_names"},
	{name: "action"},
	{name: "log"},
	{name: "app_proto", l7: L7App},
	{name: "tls_sni", l7: L7TLS},
	{name: "tls_ja4", l7: L7TLS},
	{name: "http_host", l7: L7HTTP},
	{name: "http_path", l7: L7HTTP},
	{name: "http_method", l7: L7HTTP},
	{name: "dns_qname", l7: L7DNS},
}}

// KeyInfo describes a key of the rule file.
type KeyInfo struct {
	// Path is the key's dotted path without array indexes:
	// "engine.fail_open", "container.name", "container.rule.tls_sni".
	Path string
	// Table is the header of the table the key is written in, as error
	// messages name it: "[engine]", "[[container]]", "[[container.rule]]".
	Table string
	// Restart is true when a running daemon applies a change to the key
	// only at its next start: a reload keeps the running value and names
	// the key (see KeepStartOnly). Rules and defaults are always live.
	Restart bool
}

// Keys returns every key the loader accepts, in the order of the file's
// tables. The tables themselves ([engine], [[container]], ...) are not
// keys of their own: KeyInfo.Table names them.
func Keys() []KeyInfo {
	var out []KeyInfo
	var walk func(kt *keyTable)
	walk = func(kt *keyTable) {
		for _, k := range kt.keys {
			if k.sub != nil {
				walk(k.sub)
				continue
			}
			out = append(out, KeyInfo{Path: joinPath(kt.path, k.name), Table: kt.header, Restart: k.restart})
		}
	}
	walk(&fileKeys)
	return out
}

// KeepStartOnly readies next, a table loaded to replace running on a
// reload, for a running engine: it copies into next the settings of
// running that the engine cannot change (queues, table sizes, the log's
// and listeners' places), and names those that differ, so that the next
// restart applies them. What can change live stays next's: rules,
// defaults, engine.malformed, engine.rejudge_on_reload and
// inspect.undecided (the keys whose KeyInfo.Restart is false). A key of
// [engine] or [inspect] is named by its path ("engine.queue_len"), a change
// to [log], [metrics], [status] or [docker] by the section ("log"), in the
// order of Keys. It writes next, so it is called before next is in use.
func KeepStartOnly(running, next *Table) []string {
	var diff []string
	for _, top := range fileKeys.keys {
		kt := top.sub
		changed := false
		for _, k := range kt.keys {
			if !k.restart || k.field.equal(running, next) {
				continue
			}
			k.field.keep(next, running)
			if kt.whole {
				changed = true
			} else {
				diff = append(diff, joinPath(kt.path, k.name))
			}
		}
		if changed {
			diff = append(diff, kt.path)
		}
	}
	return diff
}

// checkKeys reports the keys of m, table kt at path at, that kt does not
// accept.
func (p *parser) checkKeys(m map[string]any, at string, kt *keyTable) {
	var unknown []string
	for k := range m {
		if kt.lookup(k) == nil {
			unknown = append(unknown, k)
		}
	}
	slices.Sort(unknown) // map order is random; errors are re-sorted by line later
	for _, k := range unknown {
		msg := fmt.Sprintf("unknown key %q", k)
		if kt.header != "" {
			msg += " in " + kt.header
		} else {
			msg = fmt.Sprintf("unknown top-level key %q", k)
		}
		msg += suggest(k, kt.keys)
		p.errorf(joinPath(at, k), "%s", msg)
	}
}

// suggest names the allowed keys closest to k, if k is plausibly a typo of
// them, as ` (did you mean "a" or "b"?)`; ties are all listed because
// guessing wrong ("prots": proto or ports?) is worse than asking.
func suggest(k string, allowed []key) string {
	const maxTypo = 2 // more edits than this is a different word
	var best []string
	bestDist := maxTypo + 1
	for _, c := range allowed {
		a := c.name
		d := editDistance(k, a)
		if d > maxTypo || d >= len(a) {
			continue
		}
		if d < bestDist {
			best, bestDist = best[:0], d
		}
		if d == bestDist {
			best = append(best, strconv.Quote(a))
		}
	}
	if len(best) == 0 {
		return ""
	}
	return " (did you mean " + strings.Join(best, " or ") + "?)"
}

// editDistance is the optimal-string-alignment distance between a and b in
// bytes: Levenshtein plus adjacent transpositions, the commonest typo.
func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 1 << 30 // not a typo; also bounds the work on hostile input
	}
	// d[i][j] is the distance between a[:i] and b[:j].
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}
