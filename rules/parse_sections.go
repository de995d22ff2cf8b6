package rules

import (
	"fmt"
	"net"
	"net/netip"
	"strings"
	"time"
)

func (p *parser) engine(doc map[string]any) (EngineConfig, bool) {
	e := EngineConfig{
		Mark:        DefaultMark,
		BypassMark:  DefaultBypassMark,
		GuardMark:   DefaultGuardMark,
		DropInvalid: true,
		Firewall:    FirewallAuto,
		FastPath:    true,
		Malformed:   Drop,
		MaxFlows:    DefaultMaxFlows,
		QueueLen:    DefaultQueueLen,
	}
	m, ok := p.section(doc, "", "engine")
	if !ok {
		m = nil // absent or wrong type: defaults, and the error is already out
	}
	const at = "engine"
	p.checkKeys(m, at, &engineKeys)
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
	if v, ok := p.integer(m, at, "guard_mark"); ok && v == 0 {
		e.GuardMark = 0 // no guard
	} else if v, ok := p.mask(m, at, "guard_mark"); ok {
		e.GuardMark = v
	}
	if markOK && bypassOK && e.GuardMark&(e.Mark|e.BypassMark) != 0 {
		p.errorf("engine.guard_mark", "guard_mark 0x%08x shares bits 0x%08x with mark 0x%08x or bypass_mark 0x%08x; they must not overlap",
			e.GuardMark, e.GuardMark&(e.Mark|e.BypassMark), e.Mark, e.BypassMark)
	}
	if s, ok := p.str(m, at, "invalid"); ok {
		switch s {
		case "drop":
			e.DropInvalid = true
		case "docker":
			e.DropInvalid = false
		default:
			p.errorf("engine.invalid", `must be "drop" or "docker", got %q`, s)
		}
	}
	if s, ok := p.str(m, at, "firewall"); ok {
		switch s {
		case FirewallAuto, FirewallIPTables, FirewallNftables:
			e.Firewall = s
		default:
			p.errorf("engine.firewall", `must be "auto", "iptables" or "nftables", got %q`, s)
		}
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
	p.checkKeys(m, at, &logKeys)
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

// soleString returns the value of the one key of section kt, a section
// with no other key, when the file sets it to a string; other keys and
// other types are reported.
func (p *parser) soleString(doc map[string]any, kt *keyTable) (string, bool) {
	m, ok := p.section(doc, "", kt.path)
	if !ok {
		return "", false
	}
	p.checkKeys(m, kt.path, kt)
	return p.str(m, kt.path, kt.keys[0].name)
}

// metrics validates [metrics]: listen is "" (off) or host:port with the
// host an IP address, "localhost" or empty (all interfaces).
func (p *parser) metrics(doc map[string]any) MetricsConfig {
	c := MetricsConfig{Listen: DefaultMetricsListen}
	s, ok := p.soleString(doc, &metricsKeys)
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
	s, ok := p.soleString(doc, &statusKeys)
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
	p.checkKeys(m, at, &inspectKeys)
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
	if d, ok := p.duration(m, at, "max_wait", MinMaxWait, MaxMaxWait); ok {
		in.MaxWait = d
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

// hasL7 reports whether any rule has L7 fields.
// dns validates [dns]. names tells whether some rule has to_names, which
// needs learning.
func (p *parser) dns(doc map[string]any, names bool) DNSConfig {
	c := DNSConfig{Learn: names, MinTTL: DefaultMinTTL, MaxTTL: DefaultMaxTTL, Grace: DefaultGrace, MaxNames: DefaultMaxNames}
	m, ok := p.section(doc, "", "dns")
	if !ok {
		return c
	}
	const at = "dns"
	p.checkKeys(m, at, &dnsKeys)
	if v, ok := p.boolean(m, at, "learn"); ok {
		if !v && names {
			p.errorf("dns.learn", "is false, but rules use to_names, which match only the names learned; remove learn or those rules")
		}
		c.Learn = v
	}
	minOK := true
	if d, ok := p.duration(m, at, "min_ttl", 0, MaxMinTTL); ok {
		c.MinTTL = d
	} else {
		minOK = !has(m, "min_ttl")
	}
	if d, ok := p.duration(m, at, "max_ttl", MinMaxTTL, MaxMaxTTL); ok {
		if minOK && d < c.MinTTL {
			p.errorf("dns.max_ttl", "%q is less than min_ttl %q", durationText(d), durationText(c.MinTTL))
		}
		c.MaxTTL = d
	}
	if d, ok := p.duration(m, at, "grace", 0, MaxGrace); ok {
		c.Grace = d
	}
	if v, ok := p.intRange(m, at, "max_names", 1, MaxMaxNames); ok {
		c.MaxNames = int(v)
	}
	return c
}

// duration reads key of m as a duration within lo..hi.
func (p *parser) duration(m map[string]any, at, key string, lo, hi time.Duration) (time.Duration, bool) {
	v, ok := m[key]
	if !ok {
		return 0, false
	}
	k := joinPath(at, key)
	s, isStr := v.(string)
	d, err := time.ParseDuration(s)
	switch {
	case !isStr:
		p.errorf(k, `must be a duration such as "1s" or "250ms", got %s`, describe(v))
	case err != nil:
		p.errorf(k, `%q is not a duration; write "1s" or "250ms"`, s)
	case d < lo || d > hi:
		p.errorf(k, "%q is out of range %s..%s", s, durationText(lo), durationText(hi))
	default:
		return d, true
	}
	return 0, false
}

// hasNames reports whether some rule has to_names.
func hasNames(specs []containerSpec) bool {
	for i := range specs {
		for j := range specs[i].rules {
			if specs[i].rules[j].names != nil {
				return true
			}
		}
	}
	return false
}

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
	d := DockerConfig{DropUnreachable: true}
	m, ok := p.section(doc, "", "docker")
	if !ok {
		return d
	}
	p.checkKeys(m, "docker", &dockerKeys)
	if s, ok := p.str(m, "docker", "unreachable"); ok {
		switch s {
		case "drop":
			d.DropUnreachable = true
		case "defaults":
			d.DropUnreachable = false
		default:
			p.errorf("docker.unreachable", `must be "drop" or "defaults", got %q`, s)
		}
	}
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
