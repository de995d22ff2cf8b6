package rules

import (
	"errors"
	"io/fs"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// src joins lines so that a case's line numbers can be read off its
// argument positions: the first argument is line 1.
func src(lines ...string) string { return strings.Join(lines, "\n") + "\n" }

// A container with one valid ingress rule; lines 1-7. Cases append the line
// under test as line 8.
var okRule = []string{
	`[[container]]`,        // 1
	`name = "web"`,         // 2
	`ips = ["172.17.0.2"]`, // 3
	`[[container.rule]]`,   // 4
	`id = "r"`,             // 5
	`direction = "ingress"`,
	`action = "allow"`, // 7
}

func withRule(extra ...string) string {
	return src(append(append([]string{}, okRule...), extra...)...)
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		src  string
		pos  string // "LINE" or "LINE:COL" expected after "bad.toml:"
		msg  string // expected substring, key included
	}{
		// Syntax.
		{"malformed toml", src(`[engine]`, `queue = = 1`), "2:9", "expected value but found '='"},
		{"unclosed table header", src(`[engine`), "1:8", `expected '.' or ']' to end table name`},

		// Unknown keys, one per kind of table.
		{"unknown top-level table", src(`[engin]`, `queue = 1`), "1:2",
			`engin: unknown top-level key "engin" (did you mean "engine"?)`},
		{"unknown top-level key", src(`verbose = true`), "1:1", `verbose: unknown top-level key "verbose"`},
		{"unknown engine key", src(`[engine]`, `queue = 1`, `qeue = 2`), "3:1",
			`engine.qeue: unknown key "qeue" in [engine] (did you mean "queue"?)`},
		{"unknown container key", src(`[[container]]`, `name = "a"`, `  ip = ["172.17.0.2"]`), "3:3",
			`container[0].ip: unknown key "ip" in [[container]] (did you mean "ips"?)`},
		{"unknown rule key", withRule(`prots = ["80"]`), "8:1",
			`container[0].rule[0].prots: unknown key "prots" in [[container.rule]] (did you mean "proto" or "ports"?)`},
		{"unknown defaults key", src(`[defaults]`, `ingres = "drop"`), "2:1",
			`defaults.ingres: unknown key "ingres" in [defaults] (did you mean "ingress"?)`},

		// Container addresses.
		{"bad ip", src(`[[container]]`, `name = "a"`, `ips = ["172.17.0.2", "172.17.0.300"]`), "3:22",
			`container[0].ips[1]: "172.17.0.300" is not an IP address`},
		{"cidr in ips", src(`[[container]]`, `name = "a"`, `ips = ["172.17.0.0/16"]`), "3:8",
			`container[0].ips[0]: "172.17.0.0/16" is a CIDR prefix; ips takes single addresses`},
		{"zone in ips", src(`[[container]]`, `name = "a"`, `ips = ["fe80::1%eth0"]`), "3:8",
			`container[0].ips[0]: "fe80::1%eth0": zones are not allowed`},
		{"unspecified ip", src(`[[container]]`, `name = "a"`, `ips = ["0.0.0.0"]`), "3:8",
			`container[0].ips[0]: "0.0.0.0" is not a host address`},
		{"ip under two containers",
			src(`[[container]]`, `name = "a"`, `ips = ["172.17.0.2"]`, `[[container]]`, `name = "b"`, `ips = ["::ffff:172.17.0.2"]`),
			"6:8", `container[1].ips[0]: address 172.17.0.2 is listed under both container "a" (line 3) and container "b"`},
		{"ip twice in one container", src(`[[container]]`, `name = "a"`, `ips = ["fd00::2", "FD00::2"]`), "3:19",
			`container[0].ips[1]: address fd00::2 is listed twice in container "a" (first at line 3)`},

		// Names.
		{"missing name", src(`[[container]]`, `ips = ["172.17.0.9"]`), "1:3", `container[0].name: missing required key "name"`},
		{"empty name", src(`[[container]]`, `name = ""`), "2:1", `container[0].name: must not be empty`},
		{"duplicate container name", src(`[[container]]`, `name = "a"`, `[[container]]`, `name = "a"`), "4:1",
			`container[1].name: duplicate container name "a" (first defined at line 2)`},

		// Peers.
		{"bad cidr in from", withRule(`from = ["10.0.0.0/33"]`), "8:9",
			`container[0].rule[0].from[0]: "10.0.0.0/33" is not a CIDR prefix: prefix length out of range`},
		{"bad address in from", withRule(`from = ["10.0.0.x"]`), "8:9",
			`container[0].rule[0].from[0]: "10.0.0.x" is not an IP address or CIDR prefix`},
		{"bad cidr in to", src(`[[container]]`, `name = "a"`, `[[container.rule]]`, `id = "r"`, `direction = "egress"`, `action = "drop"`, `to = ["fd00::/129"]`),
			"7:7", `container[0].rule[0].to[0]: "fd00::/129" is not a CIDR prefix`},
		{"to on ingress", withRule(`to = ["10.0.0.0/8"]`), "8:1",
			`container[0].rule[0].to: "to" is for egress rules; an ingress rule names its peers with "from"`},
		{"from on egress", src(`[[container]]`, `name = "a"`, `[[container.rule]]`, `id = "r"`, `direction = "egress"`, `action = "drop"`, `from = ["10.0.0.0/8"]`),
			"7:1", `container[0].rule[0].from: "from" is for ingress rules; an egress rule names its peers with "to"`},

		// Ports.
		{"bad port", withRule(`ports = ["http"]`), "8:10",
			`container[0].rule[0].ports[0]: "http" is not a port or range; write "80" or "8000-8100"`},
		{"port 0", withRule(`ports = ["0"]`), "8:10", `container[0].rule[0].ports[0]: "0": port 0 is out of range 1..65535`},
		{"port too big", withRule(`ports = ["80", "1-70000"]`), "8:16",
			`container[0].rule[0].ports[1]: "1-70000": port 70000 is out of range 1..65535`},
		{"inverted range", withRule(`ports = [`, `  "80",`, `  "90-80",`, `]`), "10:3",
			`container[0].rule[0].ports[1]: "90-80": start 90 is greater than end 80`},
		{"ports with icmp", withRule(`proto = "icmp"`, `ports = ["80"]`), "9:1",
			`container[0].rule[0].ports: ports cannot be used with proto "icmp"`},
		{"port as boolean", withRule(`ports = [true]`), "8:10",
			`container[0].rule[0].ports[0]: must be a port ("80" or 80) or a range ("8000-8100"), got a boolean (true)`},
		{"port as out-of-range integer", withRule(`ports = [70000]`), "8:10",
			`container[0].rule[0].ports[0]: "70000": port 70000 is out of range 1..65535`},

		// Rule fields.
		{"bad action", src(`[[container]]`, `name = "a"`, `[[container.rule]]`, `id = "r"`, `direction = "ingress"`, `action = "accept"`),
			"6:1", `container[0].rule[0].action: "accept" is not an action; use "allow" or "drop"`},
		{"missing action", src(`[[container]]`, `name = "a"`, `[[container.rule]]`, `id = "r"`, `direction = "ingress"`),
			"3:3", `container[0].rule[0].action: missing required key "action"`},
		{"bad direction", src(`[[container]]`, `name = "a"`, `[[container.rule]]`, `id = "r"`, `direction = "in"`, `action = "drop"`),
			"5:1", `container[0].rule[0].direction: "in" is not a direction; use "ingress" or "egress"`},
		{"missing direction", src(`[[container]]`, `name = "a"`, `[[container.rule]]`, `id = "r"`, `action = "drop"`),
			"3:3", `container[0].rule[0].direction: missing required key "direction"`},
		{"bad proto", withRule(`proto = "sctp"`), "8:1",
			`container[0].rule[0].proto: "sctp" is not a protocol; use "tcp", "udp", "icmp" or "any"`},
		{"missing id", src(`[[container]]`, `name = "a"`, `[[container.rule]]`, `direction = "ingress"`, `action = "drop"`),
			"3:3", `container[0].rule[0].id: missing required key "id"`},
		{"reserved id", src(`[[container]]`, `name = "a"`, `[[container.rule]]`, `id = "default"`, `direction = "ingress"`, `action = "drop"`),
			"4:1", `container[0].rule[0].id: "default" is reserved`},
		{"duplicate rule id",
			src(`[[container]]`, `name = "a"`, `[[container.rule]]`, `id = "r"`, `direction = "ingress"`, `action = "drop"`,
				`[[container]]`, `name = "b"`, `[[container.rule]]`, `  id = "r"`, `direction = "ingress"`, `action = "drop"`),
			"10:3", `container[1].rule[0].id: duplicate rule id "r" (first used at container[0].rule[0], line 4)`},
		{"log not bool", withRule(`log = "yes"`), "8:1", `container[0].rule[0].log: must be true or false, got a string ("yes")`},

		// Defaults.
		{"bad default", src(`[defaults]`, `egress = "reject"`), "2:1",
			`defaults.egress: "reject" is not an action; use "allow" or "drop"`},
		{"bad container default", src(`[[container]]`, `name = "a"`, `ingress = "deny"`), "3:1",
			`container[0].ingress: "deny" is not an action`},

		// Engine.
		{"mark 0", src(`[engine]`, `mark = 0`), "2:1", `engine.mark: must be non-zero`},
		{"mark too wide", src(`[engine]`, `mark = 0x100000000`), "2:1",
			`engine.mark: 0x100000000 is out of range 0x1..0xffffffff`},
		{"mark overlap", src(`[engine]`, `mark = 0x30000000`, `bypass_mark = 0x20000000`), "3:1",
			`engine.bypass_mark: mark 0x30000000 and bypass_mark 0x20000000 share bits 0x20000000; they must not overlap`},
		{"mark overlaps default bypass_mark", src(`[engine]`, `mark = 0x20000000`), "2:1",
			`engine.mark: mark 0x20000000 and bypass_mark 0x20000000 share bits`},
		{"guard_mark overlaps mark", src(`[engine]`, `guard_mark = 0x10000000`), "2:1",
			`engine.guard_mark: guard_mark 0x10000000 shares bits 0x10000000 with mark 0x10000000 or bypass_mark 0x20000000; they must not overlap`},
		{"guard_mark too wide", src(`[engine]`, `guard_mark = 0x100000000`), "2:1",
			`engine.guard_mark: 0x100000000 is out of range 0x1..0xffffffff`},
		{"invalid policy", src(`[engine]`, `invalid = "accept"`), "2:1", `engine.invalid: must be "drop" or "docker", got "accept"`},
		{"invalid not a string", src(`[engine]`, `invalid = false`), "2:1", `engine.invalid: must be a string`},
		{"firewall unknown", src(`[engine]`, `firewall = "ebpf"`), "2:1", `engine.firewall: must be "auto", "iptables" or "nftables", got "ebpf"`},
		{"docker unreachable policy", src(`[docker]`, `unreachable = "allow"`), "2:1", `docker.unreachable: must be "drop" or "defaults", got "allow"`},
		{"reserved id docker-unreachable", src(`[[container]]`, `name = "a"`, `[[container.rule]]`, `id = "docker-unreachable"`, `direction = "ingress"`, `action = "drop"`),
			"4:1", `container[0].rule[0].id: "docker-unreachable" is reserved for flows judged while Docker cannot be asked; choose another id`},
		{"queue out of range", src(`[engine]`, `queue = 70000`), "2:1", `engine.queue: 70000 is out of range 0..65535`},
		{"negative queue", src(`[engine]`, `queue = -1`), "2:1", `engine.queue: -1 is out of range 0..65535`},
		{"workers out of range", src(`[engine]`, `workers = 1025`), "2:1", `engine.workers: 1025 is out of range 0..1024`},
		{"queues past 65535", src(`[engine]`, `queue = 65530`, `workers = 8`), "3:1",
			`engine.workers: queues 65530..65537 exceed 65535; lower queue or workers`},
		{"auto workers past 65535", src(`[engine]`, `queue = 65535`), "2:1",
			`engine.queue: queues 65535..65538 exceed 65535 (workers = 0 means one per CPU: 4)`},
		{"max_flows too small", src(`[engine]`, `max_flows = 10`), "2:1", `engine.max_flows: 10 is out of range 1024..16777216`},
		{"queue_len 0", src(`[engine]`, `queue_len = 0`), "2:1", `engine.queue_len: 0 is out of range 1..1048576`},
		{"bad malformed", src(`[engine]`, `malformed = "pass"`), "2:1", `engine.malformed: "pass" is not an action`},
		{"empty blocked log", src(`[log]`, `blocked = ""`), "2:1", `log.blocked: must be "stdout", "stderr" or a file path`},

		// TOML types.
		{"string for integer", src(`[engine]`, `queue = "0"`), "2:1", `engine.queue: must be an integer, got a string ("0")`},
		{"float for integer", src(`[engine]`, `workers = 2.0`), "2:1", `engine.workers: must be an integer, got a float (2)`},
		{"string for bool", src(`[engine]`, `fail_open = "no"`), "2:1", `engine.fail_open: must be true or false, got a string ("no")`},
		{"string for ips", src(`[[container]]`, `name = "a"`, `ips = "172.17.0.2"`), "3:1",
			`container[0].ips: must be an array of strings, got a string ("172.17.0.2")`},
		{"table for container", src(`[container]`, `name = "a"`), "1:2",
			`container: must be an array of tables ([[container]]), got a table`},
		{"integer for engine", src(`engine = 1`), "1:1", `engine: must be a table ([engine]), got an integer (1)`},
		{"integer for name", src(`[[container]]`, `name = 7`), "2:1", `container[0].name: must be a string, got an integer (7)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { wantOneError(t, tt.src, tt.pos, tt.msg) })
	}
}

// TestParseReportsAllErrors checks that one run reports every problem, in
// file order, each with its own position.
func TestParseReportsAllErrors(t *testing.T) {
	in := src(
		`[engine]`,          // 1
		`queue = 70000`,     // 2
		`mark = 0`,          // 3
		`[[container]]`,     // 4
		`name = "web"`,      // 5
		`ips = ["1.2.3.x"]`, // 6
		`[[container.rule]]`,
		`id = "a"`, // 8
		`direction = "egress"`,
		`proto = "icmp"`,     // 10
		`ports = ["90-80"]`,  // 11
		`from = ["1.2.3.4"]`, // 12
		`action = "allow"`,
	)
	_, err := parse("multi.toml", []byte(in), testCPUs)
	var got []string
	for _, e := range configErrors(t, err) {
		got = append(got, e.Error())
	}
	want := []string{
		`multi.toml:2:1: engine.queue: 70000 is out of range 0..65535`,
		`multi.toml:3:1: engine.mark: must be non-zero: it is the bit nfqguard sets and tests`,
		`multi.toml:6:8: container[0].ips[0]: "1.2.3.x" is not an IP address`,
		`multi.toml:11:1: container[0].rule[0].ports: ports cannot be used with proto "icmp"`,
		`multi.toml:11:10: container[0].rule[0].ports[0]: "90-80": start 90 is greater than end 80`,
		`multi.toml:12:1: container[0].rule[0].from: "from" is for ingress rules; an egress rule names its peers with "to"`,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("errors mismatch (-want +got):\n%s", diff)
	}
	// The joined error prints one problem per line.
	if n := strings.Count(err.Error(), "\n") + 1; n != len(want) {
		t.Errorf("err.Error() has %d lines, want %d", n, len(want))
	}
}

func TestConfigErrorFormat(t *testing.T) {
	tests := []struct {
		err  ConfigError
		want string
	}{
		{ConfigError{File: "f.toml", Line: 3, Col: 7, Key: "engine.mark", Msg: "m"}, "f.toml:3:7: engine.mark: m"},
		{ConfigError{File: "f.toml", Line: 3, Msg: "m"}, "f.toml:3: m"},
		{ConfigError{File: "f.toml", Key: "k", Msg: "m"}, "f.toml: k: m"},
		{ConfigError{Msg: "m"}, "m"},
	}
	for _, tt := range tests {
		if got := tt.err.Error(); got != tt.want {
			t.Errorf("Error() = %q, want %q", got, tt.want)
		}
	}
}

func TestLoadMissingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "nope.toml")
	_, err := Load(path)
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("Load(%q) = %v, want fs.ErrNotExist", path, err)
	}
	if !strings.Contains(err.Error(), path) {
		t.Errorf("error %q does not name the file", err)
	}
}

func TestLoadSetsSource(t *testing.T) {
	path := filepath.Join("testdata", "example.toml")
	tbl, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if tbl.Source != path {
		t.Errorf("Source = %q, want %q", tbl.Source, path)
	}
}
