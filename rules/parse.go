package rules

import (
	"cmp"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/BurntSushi/toml"
)

// Defaults for optional keys, exported so that callers building an
// EngineConfig by hand (tests, tools) agree with the file's defaults.
const (
	DefaultMark       uint32 = 0x10000000 // engine.mark
	DefaultBypassMark uint32 = 0x20000000 // engine.bypass_mark
	DefaultMaxFlows          = 65536      // engine.max_flows
	DefaultQueueLen          = 4096       // engine.queue_len
	DefaultBlockedLog        = "stdout"   // log.blocked

	DefaultLogFormat    = "json"   // log.format
	DefaultLogRate      = 20       // log.rate: events per second per rule
	DefaultLogBurst     = 100      // log.burst
	DefaultPcapPackets  = 4        // log.pcap_packets
	DefaultPcapMaxBytes = 64 << 20 // log.pcap_max_bytes: 64 MiB
	DefaultPcapFiles    = 5        // log.pcap_files

	DefaultMetricsListen = "127.0.0.1:9477"              // metrics.listen
	DefaultStatusSocket  = "/run/nfqguard/nfqguard.sock" // status.socket

	DefaultMaxPackets          = 8           // inspect.max_packets
	DefaultMaxBytes            = 16384       // inspect.max_bytes
	DefaultUndecided    Action = Drop        // inspect.undecided
	DefaultMaxWait             = time.Second // inspect.max_wait
	DefaultMaxHeldFlows        = 256         // inspect.max_held_flows
)

// Limits enforced on [engine] keys.
const (
	MaxWorkers  = 1024     // engine.workers upper bound
	MinMaxFlows = 1024     // engine.max_flows lower bound
	MaxMaxFlows = 16777216 // engine.max_flows upper bound
	MaxQueueLen = 1048576  // engine.queue_len upper bound
)

// Limits enforced on [inspect] keys; max_packets and max_held_flows are at
// least 1.
const (
	MaxMaxPackets   = 64                    // inspect.max_packets upper bound
	MinMaxBytes     = 256                   // inspect.max_bytes lower bound
	MaxMaxBytes     = 65536                 // inspect.max_bytes upper bound
	MinMaxWait      = 10 * time.Millisecond // inspect.max_wait lower bound
	MaxMaxWait      = 60 * time.Second      // inspect.max_wait upper bound
	MaxMaxHeldFlows = 65536                 // inspect.max_held_flows upper bound
)

// Limits enforced on [log] keys; burst, pcap_packets and pcap_files are
// at least 1, rate at least 0.
const (
	MaxLogRate      = 1e6     // log.rate upper bound
	MaxLogBurst     = 1000000 // log.burst upper bound
	MaxPcapPackets  = 64      // log.pcap_packets upper bound
	MinPcapMaxBytes = 1 << 16 // log.pcap_max_bytes lower bound
	MaxPcapMaxBytes = 1 << 40 // log.pcap_max_bytes upper bound
	MaxPcapFiles    = 1000    // log.pcap_files upper bound
)

// Load reads the rule file at path and compiles it; see Parse.
func Load(path string) (*Table, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		// os errors already name the file: "open /etc/x.toml: no such file".
		return nil, fmt.Errorf("load rules: %w", err)
	}
	return Parse(path, data)
}

// Parse validates and compiles a rule file. name is used as FILE in error
// messages and as Table.Source. On failure the error joins (errors.Join) one
// *ConfigError per problem, sorted by position; no Table is returned.
func Parse(name string, data []byte) (*Table, error) {
	return parse(name, data, runtime.NumCPU())
}

// parse is Parse with the CPU count injected, so tests get stable output.
func parse(name string, data []byte, cpus int) (*Table, error) {
	// Decoding into a generic map instead of structs lets validation report
	// every type mismatch and unknown key with its full indexed key path;
	// the struct decoder stops at the first mismatch and loses array indexes.
	var doc map[string]any
	if _, err := toml.Decode(string(data), &doc); err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			line, col := pe.Position.Line, pe.Position.Col
			// toml counts a newline as part of the next line when an error
			// sits on it ("[engine" then EOL is reported at 2:8); deriving
			// both from the byte offset keeps them consistent.
			if off := pe.Position.Start; off > 0 && off <= len(data) {
				line, col = (&posIndex{lineStarts: lineStarts(data)}).lineCol(off)
			}
			return nil, &ConfigError{File: name, Line: line, Col: col, Msg: pe.Message}
		}
		return nil, &ConfigError{File: name, Msg: err.Error()}
	}
	p := &parser{file: name, data: data, cpus: cpus}
	t, specs := p.table(doc)
	if len(p.errs) > 0 {
		slices.SortStableFunc(p.errs, func(a, b *ConfigError) int {
			return cmp.Or(cmp.Compare(a.Line, b.Line), cmp.Compare(a.Col, b.Col))
		})
		errs := make([]error, len(p.errs))
		for i, e := range p.errs {
			errs[i] = e
		}
		return nil, errors.Join(errs...)
	}
	t.Source = name
	t.compile(specs)
	return t, nil
}

// parser walks the decoded document, collecting errors instead of stopping.
type parser struct {
	file string
	data []byte
	pos  *posIndex // built on the first error: valid files never need it
	cpus int
	errs []*ConfigError
	// badQueueLen: engine.queue_len was given but invalid (and reported),
	// so [inspect] is not checked against it.
	badQueueLen bool
}

func (p *parser) lookup(key string) (line, col int) {
	if p.pos == nil {
		p.pos = indexPositions(p.data)
	}
	return p.pos.lookup(key)
}

func (p *parser) errorf(key, format string, args ...any) {
	line, col := p.lookup(key)
	p.errs = append(p.errs, &ConfigError{File: p.file, Line: line, Col: col, Key: key, Msg: fmt.Sprintf(format, args...)})
}

// lineOf is used in messages that refer to another place in the file.
func (p *parser) lineOf(key string) int {
	line, _ := p.lookup(key)
	return line
}

// table validates the whole document. The containers are returned for
// compilation rather than compiled here, since only an error-free file is.
func (p *parser) table(doc map[string]any) (*Table, []containerSpec) {
	p.checkKeys(doc, "", "", "engine", "log", "metrics", "status", "docker", "inspect", "defaults", "container")
	t := &Table{}
	t.Engine, t.autoWorkers = p.engine(doc)
	t.Log = p.log(doc)
	t.Metrics = p.metrics(doc)
	t.Status = p.status(doc)
	t.Docker = p.docker(doc)
	t.defaults[Ingress], t.defaults[Egress] = Allow, Allow
	if m, ok := p.section(doc, "", "defaults"); ok {
		p.checkKeys(m, "defaults", "[defaults]", "ingress", "egress")
		if a, ok := p.action(m, "defaults", "ingress"); ok {
			t.defaults[Ingress] = a
		}
		if a, ok := p.action(m, "defaults", "egress"); ok {
			t.defaults[Egress] = a
		}
	}
	specs := p.containers(doc, t.defaults)
	t.Inspect = p.inspect(doc, t.Engine, hasL7(specs))
	return t, specs
}

func (p *parser) engine(doc map[string]any) (EngineConfig, bool) {
	e := EngineConfig{
		Mark:       DefaultMark,
		BypassMark: DefaultBypassMark,
		FastPath:   true,
		Malformed:  Drop,
		MaxFlows:   DefaultMaxFlows,
		QueueLen:   DefaultQueueLen,
	}
	m, ok := p.section(doc, "", "engine")
	if !ok {
		m = nil // absent or wrong type: defaults, and the error is already out
	}
	const at = "engine"
	p.checkKeys(m, at, "[engine]", "queue", "workers", "fail_open", "mark", "bypass_mark",
		"fast_path", "malformed", "max_flows", "queue_len", "rejudge_on_reload")
	queueOK, workersOK := true, true
	if v, ok := p.intRange(m, at, "queue", 0, 65535); ok {
		e.Queue = uint16(v)
	} else {
		queueOK = !has(m, "queue")
	}
	if v, ok := p.intRange(m, at, "workers", 0, MaxWorkers); ok {
		e.Workers = int(v)
	} else {
		workersOK = !has(m, "workers")
	}
	if v, ok := p.boolean(m, at, "fail_open"); ok {
		e.FailOpen = v
	}
	if v, ok := p.boolean(m, at, "fast_path"); ok {
		e.FastPath = v
	}
	markOK, bypassOK := true, true
	if v, ok := p.mask(m, at, "mark"); ok {
		e.Mark = v
	} else {
		markOK = !has(m, "mark")
	}
	if v, ok := p.mask(m, at, "bypass_mark"); ok {
		e.BypassMark = v
	} else {
		bypassOK = !has(m, "bypass_mark")
	}
	if markOK && bypassOK && e.Mark&e.BypassMark != 0 {
		key := "engine.bypass_mark"
		if !has(m, "bypass_mark") {
			key = "engine.mark"
		}
		p.errorf(key, "mark 0x%08x and bypass_mark 0x%08x share bits 0x%08x; they must not overlap",
			e.Mark, e.BypassMark, e.Mark&e.BypassMark)
	}
	if a, ok := p.action(m, at, "malformed"); ok {
		e.Malformed = a
	}
	if v, ok := p.intRange(m, at, "max_flows", MinMaxFlows, MaxMaxFlows); ok {
		e.MaxFlows = int(v)
	}
	if v, ok := p.intRange(m, at, "queue_len", 1, MaxQueueLen); ok {
		e.QueueLen = uint32(v)
	} else {
		p.badQueueLen = has(m, "queue_len")
	}
	if v, ok := p.boolean(m, at, "rejudge_on_reload"); ok {
		e.RejudgeOnReload = v
	}
	auto := e.Workers == 0
	if auto {
		e.Workers = min(max(p.cpus, 1), MaxWorkers)
	}
	if queueOK && workersOK && int(e.Queue)+e.Workers-1 > 65535 {
		key, why := "engine.workers", ""
		if auto {
			key, why = "engine.queue", fmt.Sprintf(" (workers = 0 means one per CPU: %d)", e.Workers)
			if has(m, "workers") {
				key = "engine.workers"
			}
		}
		p.errorf(key, "queues %d..%d exceed 65535%s; lower queue or workers",
			e.Queue, int(e.Queue)+e.Workers-1, why)
	}
	return e, auto
}

func (p *parser) log(doc map[string]any) LogConfig {
	l := LogConfig{
		Blocked:      DefaultBlockedLog,
		Format:       DefaultLogFormat,
		Rate:         DefaultLogRate,
		Burst:        DefaultLogBurst,
		PcapPackets:  DefaultPcapPackets,
		PcapMaxBytes: DefaultPcapMaxBytes,
		PcapFiles:    DefaultPcapFiles,
	}
	m, ok := p.section(doc, "", "log")
	if !ok {
		m = nil
	}
	const at = "log"
	p.checkKeys(m, at, "[log]", "blocked", "format", "rate", "burst",
		"pcap", "pcap_packets", "pcap_max_bytes", "pcap_files")
	if s, ok := p.str(m, at, "blocked"); ok {
		if strings.TrimSpace(s) == "" {
			p.errorf("log.blocked", `must be "stdout", "stderr" or a file path, not empty`)
		} else {
			l.Blocked = s
		}
	}
	if s, ok := p.str(m, at, "format"); ok {
		switch s {
		case "json", "text":
			l.Format = s
		default:
			p.errorf("log.format", `%q is not a log format; use "json" (JSON lines) or "text" (key=value lines)`, s)
		}
	}
	if v, ok := m["rate"]; ok {
		var r float64
		isNum := true
		switch v := v.(type) {
		case int64:
			r = float64(v)
		case float64:
			r = v
		default:
			isNum = false
		}
		switch {
		case !isNum:
			p.errorf("log.rate", "must be a number of events per second (20 or 0.5; 0 means no limit), got %s", describe(v))
		case !(r >= 0 && r <= MaxLogRate): // NaN too
			p.errorf("log.rate", "%s is out of range 0..%d (events per second; 0 means no limit)",
				floatText(r), int64(MaxLogRate))
		default:
			l.Rate = r
		}
	}
	if v, ok := p.intRange(m, at, "burst", 1, MaxLogBurst); ok {
		l.Burst = int(v)
	}
	if s, ok := p.str(m, at, "pcap"); ok {
		switch {
		case strings.TrimSpace(s) == "":
			p.errorf("log.pcap", "must be a file path, not empty; leave it out to capture nothing")
		case strings.HasSuffix(s, "/"):
			p.errorf("log.pcap", "%q ends in \"/\"; name a file, such as %q", s, s+"blocked.pcap")
		default:
			l.Pcap = s
		}
	}
	if v, ok := p.intRange(m, at, "pcap_packets", 1, MaxPcapPackets); ok {
		l.PcapPackets = int(v)
	}
	if v, ok := p.intRange(m, at, "pcap_max_bytes", MinPcapMaxBytes, MaxPcapMaxBytes); ok {
		l.PcapMaxBytes = v
	}
	if v, ok := p.intRange(m, at, "pcap_files", 1, MaxPcapFiles); ok {
		l.PcapFiles = int(v)
	}
	return l
}

// floatText writes a number as a file would: "20", "0.5", "1000000".
func floatText(f float64) string {
	return strconv.FormatFloat(f, 'f', -1, 64)
}

// soleString returns the string key of section [name], a section with no
// other key, when the file sets it to a string; other keys and other
// types are reported.
func (p *parser) soleString(doc map[string]any, name, key string) (string, bool) {
	m, ok := p.section(doc, "", name)
	if !ok {
		return "", false
	}
	p.checkKeys(m, name, "["+name+"]", key)
	return p.str(m, name, key)
}

// metrics validates [metrics]: listen is "" (off) or host:port with the
// host an IP address, "localhost" or empty (all interfaces).
func (p *parser) metrics(doc map[string]any) MetricsConfig {
	c := MetricsConfig{Listen: DefaultMetricsListen}
	s, ok := p.soleString(doc, "metrics", "listen")
	if !ok {
		return c
	}
	const key = "metrics.listen"
	const example = `write "127.0.0.1:9477", "[::1]:9477" or ":9477" (all interfaces), or "" to disable`
	if s == "" {
		c.Listen = ""
		return c
	}
	host, port, err := net.SplitHostPort(s)
	switch {
	case err != nil && strings.Count(s, ":") > 1 && !strings.HasPrefix(s, "["):
		p.errorf(key, "%q is not host:port: an IPv6 address must be in brackets; %s", s, example)
		return c
	case err != nil:
		p.errorf(key, "%q is not host:port; %s", s, example)
		return c
	}
	if n, ok := parsePort(port); !ok || n < 1 || n > 65535 {
		p.errorf(key, "%q: port %q is not a number 1..65535; %s", s, port, example)
		return c
	}
	if host != "" && host != "localhost" {
		if _, err := netip.ParseAddr(host); err != nil {
			p.errorf(key, "%q: host %q is not an IP address, \"localhost\" or empty; %s", s, host, example)
			return c
		}
	}
	c.Listen = s
	return c
}

// status validates [status]: socket is "" (off) or an absolute path that
// fits in a unix socket address.
func (p *parser) status(doc map[string]any) StatusConfig {
	c := StatusConfig{Socket: DefaultStatusSocket}
	s, ok := p.soleString(doc, "status", "socket")
	if !ok {
		return c
	}
	const key = "status.socket"
	switch {
	case s == "":
		c.Socket = ""
	case !strings.HasPrefix(s, "/"):
		p.errorf(key, `%q is not an absolute path; write "/run/nfqguard/nfqguard.sock", or "" to disable`, s)
	case strings.HasSuffix(s, "/"):
		p.errorf(key, `%q ends in "/"; name the socket, such as %q`, s, s+"nfqguard.sock")
	case len(s) > maxSocketPath:
		p.errorf(key, `%q is %d bytes long; a unix socket path holds at most %d`, s, len(s), maxSocketPath)
	default:
		c.Socket = s
	}
	return c
}

// inspect validates [inspect]. Its limits bound the packets the engine
// holds in each kernel queue while it inspects flows, which must fit in
// engine.queue_len; that is checked when the file has rules with L7 fields
// or sets those limits itself.
func (p *parser) inspect(doc map[string]any, e EngineConfig, l7 bool) InspectConfig {
	in := InspectConfig{
		MaxPackets:   DefaultMaxPackets,
		MaxBytes:     DefaultMaxBytes,
		Undecided:    DefaultUndecided,
		MaxWait:      DefaultMaxWait,
		MaxHeldFlows: DefaultMaxHeldFlows,
	}
	m, ok := p.section(doc, "", "inspect")
	if !ok {
		m = nil
	}
	const at = "inspect"
	p.checkKeys(m, at, "[inspect]", "max_packets", "max_bytes", "undecided", "max_wait", "max_held_flows")
	packetsOK, heldOK := true, true
	if v, ok := p.intRange(m, at, "max_packets", 1, MaxMaxPackets); ok {
		in.MaxPackets = int(v)
	} else {
		packetsOK = !has(m, "max_packets")
	}
	if v, ok := p.intRange(m, at, "max_bytes", MinMaxBytes, MaxMaxBytes); ok {
		in.MaxBytes = int(v)
	}
	if a, ok := p.action(m, at, "undecided"); ok {
		in.Undecided = a
	}
	if v, ok := m["max_wait"]; ok {
		key := joinPath(at, "max_wait")
		s, isStr := v.(string)
		d, err := time.ParseDuration(s)
		switch {
		case !isStr:
			p.errorf(key, `must be a duration such as "1s" or "250ms", got %s`, describe(v))
		case err != nil:
			p.errorf(key, `%q is not a duration; write "1s" or "250ms"`, s)
		case d < MinMaxWait || d > MaxMaxWait:
			p.errorf(key, "%q is out of range %s..%s", s, durationText(MinMaxWait), durationText(MaxMaxWait))
		default:
			in.MaxWait = d
		}
	}
	if v, ok := p.intRange(m, at, "max_held_flows", 1, MaxMaxHeldFlows); ok {
		in.MaxHeldFlows = int(v)
	} else {
		heldOK = !has(m, "max_held_flows")
	}
	setPackets, setHeld := has(m, "max_packets"), has(m, "max_held_flows")
	held := int64(in.MaxHeldFlows) * int64(in.MaxPackets)
	if !packetsOK || !heldOK || p.badQueueLen || !(l7 || setPackets || setHeld) || held <= int64(e.QueueLen) {
		return in
	}
	q := int64(e.QueueLen)
	what := fmt.Sprintf("max_held_flows %d * max_packets %d = %d packets may be held in a kernel queue, more than engine.queue_len %d",
		in.MaxHeldFlows, in.MaxPackets, held, q)
	switch {
	case setHeld && q/int64(in.MaxPackets) > 0:
		p.errorf("inspect.max_held_flows", "%s; lower max_held_flows to %d or raise queue_len to %d",
			what, q/int64(in.MaxPackets), held)
	case setHeld:
		p.errorf("inspect.max_held_flows", "%s; lower max_held_flows and max_packets or raise queue_len to %d", what, held)
	case setPackets:
		p.errorf("inspect.max_packets", "%s; lower max_packets to %d or raise queue_len to %d",
			what, max(q/int64(in.MaxHeldFlows), 1), held)
	default: // [inspect]'s defaults, which the file's rules with L7 fields use
		p.errorf("engine.queue_len", "%s (the [inspect] defaults, used by the rules with L7 fields); "+
			"raise queue_len to %d or set a lower inspect.max_held_flows (at most %d)",
			what, held, max(q/int64(in.MaxPackets), 1))
	}
	return in
}

// durationText writes d as a file would: "250ms", "1s", "60s" (where
// time.Duration says "1m0s").
func durationText(d time.Duration) string {
	if d >= time.Second && d%time.Second == 0 {
		return strconv.FormatInt(int64(d/time.Second), 10) + "s"
	}
	return d.String()
}

// hasL7 reports whether any rule has L7 fields.
func hasL7(specs []containerSpec) bool {
	for i := range specs {
		for j := range specs[i].rules {
			if specs[i].rules[j].l7 != 0 {
				return true
			}
		}
	}
	return false
}

// maxSocketPath is the longest unix socket path: sun_path holds 108 bytes,
// the last for the terminating NUL.
const maxSocketPath = 107

func (p *parser) docker(doc map[string]any) DockerConfig {
	var d DockerConfig
	m, ok := p.section(doc, "", "docker")
	if !ok {
		return d
	}
	p.checkKeys(m, "docker", "[docker]", "socket")
	s, ok := p.str(m, "docker", "socket")
	if !ok {
		return d
	}
	const key = "docker.socket"
	path := strings.TrimPrefix(s, "unix://")
	switch {
	case strings.TrimSpace(s) == "":
		p.errorf(key, `must not be empty; leave it out to use DOCKER_HOST or /var/run/docker.sock`)
	case strings.Contains(s, "://") && !strings.HasPrefix(s, "unix://"):
		p.errorf(key, `%q: only a local unix socket is supported ("/var/run/docker.sock" or "unix:///var/run/docker.sock")`, s)
	case !strings.HasPrefix(path, "/"):
		p.errorf(key, `%q is not an absolute path`, s)
	case len(path) > maxSocketPath:
		p.errorf(key, `%q is %d bytes long; a unix socket path holds at most %d`, s, len(path), maxSocketPath)
	case !cleanName(path):
		p.errorf(key, `%q must not contain spaces or control characters`, s)
	default:
		d.Socket = path
	}
	return d
}

func (p *parser) containers(doc map[string]any, defaults [3]Action) []containerSpec {
	tables, ok := p.tables(doc, "", "container")
	if !ok {
		return nil
	}
	var specs []containerSpec
	names := map[string]string{} // name → key path of its first use
	ids := map[string]string{}   // rule id → key path of its first use
	type owned struct{ label, key string }
	owner := map[netip.Addr]owned{} // address → first container and ips key
	for i, m := range tables {
		at := indexPath("container", i)
		if m == nil {
			continue
		}
		p.checkKeys(m, at, "[[container]]", "name", "ips", "image", "label", "ingress", "egress", "rule")
		c := containerSpec{def: defaults}
		label := at // how messages refer to this container
		if name, ok := p.requiredStr(m, at, "name"); ok {
			nameKey := joinPath(at, "name")
			switch {
			case name == "":
				p.errorf(nameKey, "must not be empty")
			case !cleanName(name):
				p.errorf(nameKey, "%q must not contain spaces or control characters", name)
			case names[name] != "":
				p.errorf(nameKey, "duplicate container name %q (first defined at line %d)", name, p.lineOf(names[name]))
			default:
				names[name] = nameKey
				c.name, label = name, name
			}
		}
		p.eachString(m, at, "ips", func(key, s string) {
			a, ok := p.hostAddr(key, s)
			if !ok {
				return
			}
			if prev, dup := owner[a]; dup {
				if strings.HasPrefix(prev.key, at+".") {
					p.errorf(key, "address %s is listed twice in container %q (first at line %d)", a, label, p.lineOf(prev.key))
				} else {
					p.errorf(key, "address %s is listed under both container %q (line %d) and container %q",
						a, prev.label, p.lineOf(prev.key), label)
				}
				return
			}
			owner[a] = owned{label, key}
			c.addrs = append(c.addrs, a)
		})
		c.dynamic, c.sel = p.selector(m, at, c.name)
		for _, d := range []Direction{Ingress, Egress} {
			if a, ok := p.action(m, at, d.String()); ok {
				c.def[d], c.own[d] = a, true
			}
		}
		rules, _ := p.tables(m, at, "rule")
		for j, rm := range rules {
			if rm == nil {
				continue
			}
			if r, ok := p.rule(rm, indexPath(joinPath(at, "rule"), j), ids); ok {
				c.rules = append(c.rules, r)
			}
		}
		specs = append(specs, c)
	}
	return specs
}

// selector validates how a [[container]] finds its addresses: ips (static),
// or through Docker by image and/or label, or else by its name. dynamic
// reports whether the entry is resolved through Docker; name is the
// validated name ("" if it was invalid).
func (p *parser) selector(m map[string]any, at, name string) (dynamic bool, sel selector) {
	hasImage, hasLabel := has(m, "image"), has(m, "label")
	if s, ok := p.str(m, at, "image"); ok {
		key := joinPath(at, "image")
		switch {
		case s == "":
			p.errorf(key, `must not be empty; write a reference such as "redis:7" or a pattern such as "redis:*"`)
		case !cleanName(s):
			p.errorf(key, "%q must not contain spaces or control characters", s)
		default:
			if _, err := path.Match(s, ""); err != nil {
				p.errorf(key, `%q is not a valid pattern (*, ?, [a-z] and \ as in path.Match): %v`, s, err)
			} else {
				sel.image = s
			}
		}
	}
	if s, ok := p.str(m, at, "label"); ok {
		key := joinPath(at, "label")
		k, v, hasValue := strings.Cut(s, "=")
		switch {
		case s == "":
			p.errorf(key, `must not be empty; write "key" (label present) or "key=value"`)
		case k == "":
			p.errorf(key, `%q has no key before "="; write "key" (label present) or "key=value"`, s)
		case !cleanName(k):
			p.errorf(key, "%q: the label key must not contain spaces or control characters", s)
		case !utf8.ValidString(v) || strings.ContainsFunc(v, unicode.IsControl):
			p.errorf(key, "%q: the label value must not contain control characters", s)
		default:
			sel.label, sel.value, sel.hasValue = k, v, hasValue
		}
	}
	if has(m, "ips") {
		for _, k := range []string{"image", "label"} {
			if has(m, k) {
				p.errorf(joinPath(at, k), "%s cannot be used with ips: use ips for a container with fixed addresses, "+
					"or image and label (without ips) to select containers through Docker", k)
			}
		}
		if arr, ok := m["ips"].([]any); ok && len(arr) == 0 {
			p.errorf(joinPath(at, "ips"), "is empty: list the container's addresses, "+
				"or leave ips out to resolve the container through Docker by its name")
		}
		return false, selector{}
	}
	if !hasImage && !hasLabel && name != "" {
		if !dockerName(name) {
			p.errorf(joinPath(at, "name"), "%q can never be a Docker container name (letters, digits, \"_\", \".\" and \"-\", "+
				"starting with a letter or digit): give the container ips, or select it with image or label", name)
		}
		sel.name = name
	}
	return true, sel
}

// dockerName reports whether s can be a Docker container name; Docker
// allows [a-zA-Z0-9][a-zA-Z0-9_.-]+.
func dockerName(s string) bool {
	for i, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		case i > 0 && (r == '_' || r == '.' || r == '-'):
		default:
			return false
		}
	}
	return s != ""
}

// rule validates one [[container.rule]]; ok is false if anything was wrong.
func (p *parser) rule(m map[string]any, at string, ids map[string]string) (ruleSpec, bool) {
	n := len(p.errs)
	p.checkKeys(m, at, "[[container.rule]]", "id", "direction", "proto", "ports", "from", "to", "action", "log",
		"tls_sni", "http_host", "http_path", "http_method", "dns_qname")
	var r ruleSpec
	if id, ok := p.requiredStr(m, at, "id"); ok {
		idKey := joinPath(at, "id")
		switch {
		case id == "":
			p.errorf(idKey, "must not be empty")
		case id == RuleIDDefault:
			p.errorf(idKey, "%q is reserved for the default verdict; choose another id", id)
		case id == RuleIDUndecided:
			p.errorf(idKey, "%q is reserved for flows deep inspection could not settle; choose another id", id)
		case !cleanName(id):
			p.errorf(idKey, "%q must not contain spaces or control characters", id)
		case ids[id] != "":
			first := parentPath(ids[id])
			p.errorf(idKey, "duplicate rule id %q (first used at %s, line %d)", id, first, p.lineOf(ids[id]))
		default:
			ids[id] = idKey
			r.id = id
		}
	}
	if s, ok := p.requiredStr(m, at, "direction"); ok {
		switch s {
		case "ingress":
			r.dir = Ingress
		case "egress":
			r.dir = Egress
		default:
			p.errorf(joinPath(at, "direction"), `%q is not a direction; use "ingress" or "egress"`, s)
		}
	}
	r.proto = "any"
	if s, ok := p.str(m, at, "proto"); ok {
		switch s {
		case "tcp", "udp", "icmp", "any":
			r.proto = s
		default:
			p.errorf(joinPath(at, "proto"), `%q is not a protocol; use "tcp", "udp", "icmp" or "any"`, s)
		}
	}
	p.eachPort(m, at, func(key, s string) {
		if pr, ok := p.portRange(key, s); ok {
			r.ports = append(r.ports, pr)
		}
	})
	if r.proto == "icmp" && nonEmpty(m["ports"]) {
		p.errorf(joinPath(at, "ports"), `ports cannot be used with proto "icmp"`)
	}
	p.l7Fields(m, at, &r)
	switch r.proto {
	case "tcp":
		r.protos = classTCP
	case "udp":
		r.protos = classUDP
	case "icmp":
		r.protos = classICMP
	default:
		r.protos = classAll
		if len(r.ports) > 0 || r.l7 != 0 {
			r.protos = classTCP | classUDP // only they have ports, or L7 protocols
		}
	}
	r.ports = mergePorts(r.ports)
	for _, peerKey := range []string{"from", "to"} {
		if !has(m, peerKey) {
			continue
		}
		if r.dir == Ingress && peerKey == "to" {
			p.errorf(joinPath(at, "to"), `"to" is for egress rules; an ingress rule names its peers with "from"`)
		}
		if r.dir == Egress && peerKey == "from" {
			p.errorf(joinPath(at, "from"), `"from" is for ingress rules; an egress rule names its peers with "to"`)
		}
		p.eachString(m, at, peerKey, func(key, s string) {
			if pfx, ok := p.prefix(key, s); ok {
				r.peers = append(r.peers, pfx)
			}
		})
	}
	if a, ok := p.action(m, at, "action"); ok {
		r.action = a
	} else if !has(m, "action") {
		p.errorf(joinPath(at, "action"), `missing required key "action" ("allow" or "drop")`)
	}
	if v, ok := p.boolean(m, at, "log"); ok {
		r.log = v
	}
	return r, len(p.errs) == n
}

// hostAddr parses one entry of ips.
func (p *parser) hostAddr(key, s string) (netip.Addr, bool) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		if _, perr := netip.ParsePrefix(s); perr == nil {
			p.errorf(key, "%q is a CIDR prefix; ips takes single addresses", s)
		} else {
			p.errorf(key, "%q is not an IP address", s)
		}
		return netip.Addr{}, false
	}
	if a.Zone() != "" {
		p.errorf(key, "%q: zones are not allowed in container addresses", s)
		return netip.Addr{}, false
	}
	a = a.Unmap()
	if a.IsUnspecified() || a.IsMulticast() {
		p.errorf(key, "%q is not a host address", s)
		return netip.Addr{}, false
	}
	return a, true
}

// prefix parses one entry of from/to. A bare address means a single host;
// host bits after the prefix length are masked off, as iptables does.
func (p *parser) prefix(key, s string) (netip.Prefix, bool) {
	var pfx netip.Prefix
	if strings.Contains(s, "/") {
		var err error
		if pfx, err = netip.ParsePrefix(s); err != nil {
			p.errorf(key, "%q is not a CIDR prefix: %s", s, netipReason(err))
			return pfx, false
		}
	} else {
		a, err := netip.ParseAddr(s)
		if err != nil {
			p.errorf(key, "%q is not an IP address or CIDR prefix", s)
			return pfx, false
		}
		if a.Zone() != "" {
			p.errorf(key, "%q: zones are not allowed in peer addresses", s)
			return pfx, false
		}
		pfx = netip.PrefixFrom(a, a.BitLen())
	}
	// Peers are unmapped before matching, so a v4-mapped prefix must become
	// the IPv4 prefix it describes or it could never match.
	if a := pfx.Addr(); a.Is4In6() {
		if pfx.Bits() < 96 {
			p.errorf(key, "%q mixes IPv4-mapped and IPv6 space; write the IPv4 prefix instead", s)
			return pfx, false
		}
		pfx = netip.PrefixFrom(a.Unmap(), pfx.Bits()-96)
	}
	return pfx.Masked(), true
}

// netipReason strips netip's `netip.ParsePrefix("..."): ` preamble, which
// would repeat the value we already quote.
func netipReason(err error) string {
	msg := err.Error()
	if i := strings.Index(msg, "): "); i >= 0 {
		return msg[i+3:]
	}
	return msg
}

// portRange parses "80" or "8000-8100".
func (p *parser) portRange(key, s string) (portRange, bool) {
	loStr, hiStr, isRange := strings.Cut(s, "-")
	lo, okLo := parsePort(loStr)
	hi, okHi := lo, okLo
	if isRange {
		hi, okHi = parsePort(hiStr)
	}
	if !okLo || !okHi {
		p.errorf(key, `%q is not a port or range; write "80" or "8000-8100"`, s)
		return portRange{}, false
	}
	for _, n := range []int{lo, hi} {
		if n < 1 || n > 65535 {
			p.errorf(key, "%q: port %d is out of range 1..65535", s, n)
			return portRange{}, false
		}
	}
	if lo > hi {
		p.errorf(key, "%q: start %d is greater than end %d", s, lo, hi)
		return portRange{}, false
	}
	return portRange{uint16(lo), uint16(hi)}, true
}

// parsePort accepts only decimal digits: no signs, spaces or hex, so that
// "0x50" or " 80" are reported rather than guessed at.
func parsePort(s string) (int, bool) {
	if s == "" || len(s) > 6 {
		return 0, false
	}
	n := 0
	for _, c := range []byte(s) {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

// mergePorts sorts ranges and merges overlapping or adjacent ones, which
// keeps portsContain's early exit correct and its scan short.
func mergePorts(rs []portRange) []portRange {
	if len(rs) == 0 {
		return nil
	}
	slices.SortFunc(rs, func(a, b portRange) int { return cmp.Compare(a.lo, b.lo) })
	out := rs[:1]
	for _, r := range rs[1:] {
		last := &out[len(out)-1]
		if int(r.lo) <= int(last.hi)+1 {
			last.hi = max(last.hi, r.hi)
			continue
		}
		out = append(out, r)
	}
	return slices.Clip(out)
}

// cleanName reports whether s is safe to print in logs and aligned output.
func cleanName(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if unicode.IsSpace(r) || unicode.IsControl(r) {
			return false
		}
	}
	return true
}

// ---- typed accessors ----
//
// Each returns ok only when the key is present and valid; a present but
// invalid value has already been reported. Callers use has() to tell absent
// from invalid where that matters.

func has(m map[string]any, key string) bool {
	_, ok := m[key]
	return ok
}

func nonEmpty(v any) bool {
	switch v := v.(type) {
	case nil:
		return false
	case []any:
		return len(v) > 0
	}
	return true
}

// section returns the sub-table doc[key], reporting a non-table value.
func (p *parser) section(m map[string]any, at, key string) (map[string]any, bool) {
	v, ok := m[key]
	if !ok {
		return nil, false
	}
	sub, ok := v.(map[string]any)
	if !ok {
		p.errorf(joinPath(at, key), "must be a table ([%s]), got %s", key, describe(v))
	}
	return sub, ok
}

// tables returns the array of tables m[key]. A nil entry marks an element
// that was not a table (already reported), keeping indexes aligned.
func (p *parser) tables(m map[string]any, at, key string) ([]map[string]any, bool) {
	v, ok := m[key]
	if !ok {
		return nil, false
	}
	header := "[[" + key + "]]"
	if at != "" {
		header = "[[container." + key + "]]"
	}
	switch v := v.(type) {
	case []map[string]any:
		return v, true
	case []any:
		out := make([]map[string]any, len(v))
		for i, e := range v {
			if t, ok := e.(map[string]any); ok {
				out[i] = t
			} else {
				p.errorf(indexPath(joinPath(at, key), i), "must be a table, got %s", describe(e))
			}
		}
		return out, true
	}
	p.errorf(joinPath(at, key), "must be an array of tables (%s), got %s", header, describe(v))
	return nil, false
}

func (p *parser) str(m map[string]any, at, key string) (string, bool) {
	v, ok := m[key]
	if !ok {
		return "", false
	}
	s, ok := v.(string)
	if !ok {
		p.errorf(joinPath(at, key), "must be a string, got %s", describe(v))
	}
	return s, ok
}

func (p *parser) requiredStr(m map[string]any, at, key string) (string, bool) {
	if !has(m, key) {
		p.errorf(joinPath(at, key), "missing required key %q", key)
		return "", false
	}
	return p.str(m, at, key)
}

func (p *parser) boolean(m map[string]any, at, key string) (bool, bool) {
	v, ok := m[key]
	if !ok {
		return false, false
	}
	b, ok := v.(bool)
	if !ok {
		p.errorf(joinPath(at, key), "must be true or false, got %s", describe(v))
	}
	return b, ok
}

func (p *parser) integer(m map[string]any, at, key string) (int64, bool) {
	v, ok := m[key]
	if !ok {
		return 0, false
	}
	n, ok := v.(int64)
	if !ok {
		p.errorf(joinPath(at, key), "must be an integer, got %s", describe(v))
	}
	return n, ok
}

func (p *parser) intRange(m map[string]any, at, key string, lo, hi int64) (int64, bool) {
	n, ok := p.integer(m, at, key)
	if ok && (n < lo || n > hi) {
		p.errorf(joinPath(at, key), "%d is out of range %d..%d", n, lo, hi)
		return 0, false
	}
	return n, ok
}

// mask reads a non-zero 32-bit mark, shown in hex because that is how marks
// are written in the file and in iptables.
func (p *parser) mask(m map[string]any, at, key string) (uint32, bool) {
	n, ok := p.integer(m, at, key)
	switch {
	case !ok:
		return 0, false
	case n == 0:
		p.errorf(joinPath(at, key), "must be non-zero: it is the bit nfqguard sets and tests")
		return 0, false
	case n < 0 || n > 0xffffffff:
		p.errorf(joinPath(at, key), "%#x is out of range 0x1..0xffffffff (a 32-bit mark)", n)
		return 0, false
	}
	return uint32(n), true
}

func (p *parser) action(m map[string]any, at, key string) (Action, bool) {
	s, ok := p.str(m, at, key)
	if !ok {
		return 0, false
	}
	switch s {
	case "allow":
		return Allow, true
	case "drop":
		return Drop, true
	}
	p.errorf(joinPath(at, key), `%q is not an action; use "allow" or "drop"`, s)
	return 0, false
}

// eachPort calls fn for every element of m["ports"] as text: the schema
// writes ports as strings ("80", "8000-8100"), and a bare number (80) is
// accepted too because that is how people write a port.
func (p *parser) eachPort(m map[string]any, at string, fn func(key, s string)) {
	v, ok := m["ports"]
	if !ok {
		return
	}
	path := joinPath(at, "ports")
	arr, ok := v.([]any)
	if !ok {
		p.errorf(path, "must be an array of ports, got %s", describe(v))
		return
	}
	for i, e := range arr {
		switch e := e.(type) {
		case string:
			fn(indexPath(path, i), e)
		case int64:
			fn(indexPath(path, i), strconv.FormatInt(e, 10))
		default:
			p.errorf(indexPath(path, i), `must be a port ("80" or 80) or a range ("8000-8100"), got %s`, describe(e))
		}
	}
}

// eachString calls fn for every element of the string array m[key], with the
// element's key path; non-string elements are reported.
func (p *parser) eachString(m map[string]any, at, key string, fn func(key, s string)) {
	v, ok := m[key]
	if !ok {
		return
	}
	path := joinPath(at, key)
	arr, ok := v.([]any)
	if !ok {
		p.errorf(path, "must be an array of strings, got %s", describe(v))
		return
	}
	for i, e := range arr {
		s, ok := e.(string)
		if !ok {
			p.errorf(indexPath(path, i), "must be a string, got %s", describe(e))
			continue
		}
		fn(indexPath(path, i), s)
	}
}

// checkKeys reports keys of m that are not in allowed. where names the table
// for the message ("" for the top level).
func (p *parser) checkKeys(m map[string]any, at, where string, allowed ...string) {
	var unknown []string
	for k := range m {
		if !slices.Contains(allowed, k) {
			unknown = append(unknown, k)
		}
	}
	slices.Sort(unknown) // map order is random; errors are re-sorted by line later
	for _, k := range unknown {
		msg := fmt.Sprintf("unknown key %q", k)
		if where != "" {
			msg += " in " + where
		} else {
			msg = fmt.Sprintf("unknown top-level key %q", k)
		}
		msg += suggest(k, allowed)
		p.errorf(joinPath(at, k), "%s", msg)
	}
}

// suggest names the allowed keys closest to k, if k is plausibly a typo of
// them, as ` (did you mean "a" or "b"?)`; ties are all listed because
// guessing wrong ("prots": proto or ports?) is worse than asking.
func suggest(k string, allowed []string) string {
	const maxTypo = 2 // more edits than this is a different word
	var best []string
	bestDist := maxTypo + 1
	for _, a := range allowed {
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

// describe names a decoded TOML value's type for messages, with the value
// itself when it is short enough to help.
func describe(v any) string {
	switch v := v.(type) {
	case string:
		if len(v) > 40 {
			return "a string"
		}
		return fmt.Sprintf("a string (%q)", v)
	case int64:
		return fmt.Sprintf("an integer (%d)", v)
	case float64:
		return fmt.Sprintf("a float (%v)", v)
	case bool:
		return fmt.Sprintf("a boolean (%v)", v)
	case time.Time: // local dates and times decode to time.Time as well
		return "a date/time"
	case []any, []map[string]any:
		return "an array"
	case map[string]any:
		return "a table"
	}
	return fmt.Sprintf("%T", v)
}
