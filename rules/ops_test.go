package rules

import (
	"bytes"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// opsConfig gathers the operational settings of a table: [log],
// [metrics], [status] and engine.rejudge_on_reload.
type opsConfig struct {
	Rejudge bool
	Log     LogConfig
	Metrics MetricsConfig
	Status  StatusConfig
}

func opsOf(t *Table) opsConfig {
	return opsConfig{t.Engine.RejudgeOnReload, t.Log, t.Metrics, t.Status}
}

// opsDefaults are the documented defaults, written out rather than taken
// from the Default* constants so that a changed constant fails the tests.
func opsDefaults() opsConfig {
	return opsConfig{
		Rejudge: false,
		Log: LogConfig{
			Blocked:      "stdout",
			Format:       "json",
			Rate:         20,
			Burst:        100,
			Pcap:         "",
			PcapPackets:  4,
			PcapMaxBytes: 67108864,
			PcapFiles:    5,
		},
		Metrics: MetricsConfig{Listen: "127.0.0.1:9477"},
		Status:  StatusConfig{Socket: "/run/nfqguard/nfqguard.sock"},
	}
}

func TestOpsDefaultConstants(t *testing.T) {
	d := opsDefaults()
	got := opsConfig{
		Log: LogConfig{
			Blocked:      DefaultBlockedLog,
			Format:       DefaultLogFormat,
			Rate:         DefaultLogRate,
			Burst:        DefaultLogBurst,
			PcapPackets:  DefaultPcapPackets,
			PcapMaxBytes: DefaultPcapMaxBytes,
			PcapFiles:    DefaultPcapFiles,
		},
		Metrics: MetricsConfig{Listen: DefaultMetricsListen},
		Status:  StatusConfig{Socket: DefaultStatusSocket},
	}
	if diff := cmp.Diff(d, got); diff != "" {
		t.Errorf("Default* constants differ from the documented defaults (-doc +const):\n%s", diff)
	}
}

func TestOpsDefaults(t *testing.T) {
	for _, tt := range []struct{ name, src string }{
		{"empty file", ""},
		{"no ops sections", src(`[engine]`, `queue = 3`, `[[container]]`, `name = "web"`, `ips = ["172.17.0.2"]`)},
		{"empty sections", src(`[engine]`, `[log]`, `[metrics]`, `[status]`)},
		{"log with blocked only", src(`[log]`, `blocked = "stdout"`)},
		{"empty inline tables", src(`log = {}`, `metrics = {}`, `status = {}`)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tbl := mustParse(t, "ops.toml", []byte(tt.src))
			if diff := cmp.Diff(opsDefaults(), opsOf(tbl)); diff != "" {
				t.Errorf("settings mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestOpsParse(t *testing.T) {
	socket107 := "/" + strings.Repeat("s", 106)
	tests := []struct {
		name string
		src  string
		want func(c *opsConfig) // applied to opsDefaults()
	}{
		{"rejudge_on_reload true", src(`[engine]`, `rejudge_on_reload = true`),
			func(c *opsConfig) { c.Rejudge = true }},
		{"rejudge_on_reload false", src(`[engine]`, `rejudge_on_reload = false`),
			func(c *opsConfig) {}},

		{"format text", src(`[log]`, `format = "text"`), func(c *opsConfig) { c.Log.Format = "text" }},
		{"format json", src(`[log]`, `format = "json"`), func(c *opsConfig) {}},

		{"rate 0 (unlimited)", src(`[log]`, `rate = 0`), func(c *opsConfig) { c.Log.Rate = 0 }},
		{"rate 0.0", src(`[log]`, `rate = 0.0`), func(c *opsConfig) { c.Log.Rate = 0 }},
		{"rate integer", src(`[log]`, `rate = 5`), func(c *opsConfig) { c.Log.Rate = 5 }},
		{"rate float", src(`[log]`, `rate = 0.5`), func(c *opsConfig) { c.Log.Rate = 0.5 }},
		{"rate max integer", src(`[log]`, `rate = 1_000_000`), func(c *opsConfig) { c.Log.Rate = 1e6 }},
		{"rate max float", src(`[log]`, `rate = 1e6`), func(c *opsConfig) { c.Log.Rate = 1e6 }},

		{"burst min", src(`[log]`, `burst = 1`), func(c *opsConfig) { c.Log.Burst = 1 }},
		{"burst max", src(`[log]`, `burst = 1000000`), func(c *opsConfig) { c.Log.Burst = 1000000 }},
		{"burst with rate 0", src(`[log]`, `rate = 0`, `burst = 7`),
			func(c *opsConfig) { c.Log.Rate, c.Log.Burst = 0, 7 }},

		{"pcap absolute", src(`[log]`, `pcap = "/var/log/nfqguard/blocked.pcap"`),
			func(c *opsConfig) { c.Log.Pcap = "/var/log/nfqguard/blocked.pcap" }},
		{"pcap relative", src(`[log]`, `pcap = "captures/blocked.pcap"`),
			func(c *opsConfig) { c.Log.Pcap = "captures/blocked.pcap" }},
		{"pcap_packets min", src(`[log]`, `pcap_packets = 1`), func(c *opsConfig) { c.Log.PcapPackets = 1 }},
		{"pcap_packets max", src(`[log]`, `pcap_packets = 64`), func(c *opsConfig) { c.Log.PcapPackets = 64 }},
		{"pcap_max_bytes min", src(`[log]`, `pcap_max_bytes = 65536`),
			func(c *opsConfig) { c.Log.PcapMaxBytes = 65536 }},
		{"pcap_max_bytes max", src(`[log]`, `pcap_max_bytes = 1099511627776`),
			func(c *opsConfig) { c.Log.PcapMaxBytes = 1 << 40 }},
		{"pcap_files min", src(`[log]`, `pcap_files = 1`), func(c *opsConfig) { c.Log.PcapFiles = 1 }},
		{"pcap_files max", src(`[log]`, `pcap_files = 1000`), func(c *opsConfig) { c.Log.PcapFiles = 1000 }},
		{"all of log",
			src(`[log]`, `blocked = "stderr"`, `format = "text"`, `rate = 2.5`, `burst = 10`,
				`pcap = "/tmp/b.pcap"`, `pcap_packets = 8`, `pcap_max_bytes = 1048576`, `pcap_files = 3`),
			func(c *opsConfig) {
				c.Log = LogConfig{Blocked: "stderr", Format: "text", Rate: 2.5, Burst: 10,
					Pcap: "/tmp/b.pcap", PcapPackets: 8, PcapMaxBytes: 1 << 20, PcapFiles: 3}
			}},
		{"log inline table", src(`log = { format = "text", rate = 0 }`),
			func(c *opsConfig) { c.Log.Format, c.Log.Rate = "text", 0 }},

		{"listen disabled", src(`[metrics]`, `listen = ""`), func(c *opsConfig) { c.Metrics.Listen = "" }},
		{"listen all interfaces", src(`[metrics]`, `listen = ":9477"`), func(c *opsConfig) { c.Metrics.Listen = ":9477" }},
		{"listen localhost", src(`[metrics]`, `listen = "localhost:9100"`),
			func(c *opsConfig) { c.Metrics.Listen = "localhost:9100" }},
		{"listen ipv4", src(`[metrics]`, `listen = "0.0.0.0:1"`), func(c *opsConfig) { c.Metrics.Listen = "0.0.0.0:1" }},
		{"listen port max", src(`[metrics]`, `listen = "10.0.0.1:65535"`),
			func(c *opsConfig) { c.Metrics.Listen = "10.0.0.1:65535" }},
		{"listen ipv6", src(`[metrics]`, `listen = "[::1]:9477"`), func(c *opsConfig) { c.Metrics.Listen = "[::1]:9477" }},
		{"listen ipv6 any", src(`[metrics]`, `listen = "[::]:9477"`), func(c *opsConfig) { c.Metrics.Listen = "[::]:9477" }},
		{"listen dotted key", src(`metrics.listen = "127.0.0.2:9477"`),
			func(c *opsConfig) { c.Metrics.Listen = "127.0.0.2:9477" }},

		{"socket disabled", src(`[status]`, `socket = ""`), func(c *opsConfig) { c.Status.Socket = "" }},
		{"socket path", src(`[status]`, `socket = "/tmp/nfqguard.sock"`),
			func(c *opsConfig) { c.Status.Socket = "/tmp/nfqguard.sock" }},
		{"socket 107 bytes", src(`[status]`, `socket = "`+socket107+`"`),
			func(c *opsConfig) { c.Status.Socket = socket107 }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tbl := mustParse(t, "ops.toml", []byte(tt.src))
			want := opsDefaults()
			tt.want(&want)
			if diff := cmp.Diff(want, opsOf(tbl)); diff != "" {
				t.Errorf("settings mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestOpsErrors(t *testing.T) {
	socket108 := "/" + strings.Repeat("s", 107)
	tests := []struct {
		name string
		src  string
		pos  string // "LINE:COL" expected after "bad.toml:"
		msg  string // expected substring, key included
	}{
		// Sections and unknown keys.
		{"unknown engine key", src(`[engine]`, `rejudge = true`), "2:1", `engine.rejudge: unknown key "rejudge" in [engine]`},
		{"unknown log key", src(`[log]`, `pcap_file = 5`), "2:1",
			`log.pcap_file: unknown key "pcap_file" in [log] (did you mean "pcap_files"?)`},
		{"unknown log key far off", src(`[log]`, `level = "info"`), "2:1", `log.level: unknown key "level" in [log]`},
		{"unknown metrics key", src(`[metrics]`, `listen = ":9477"`, `listn = ":1"`), "3:1",
			`metrics.listn: unknown key "listn" in [metrics] (did you mean "listen"?)`},
		{"unknown metrics key far off", src(`[metrics]`, `path = "/metrics"`), "2:1",
			`metrics.path: unknown key "path" in [metrics]`},
		{"unknown status key", src(`[status]`, `sock = "/x.sock"`), "2:1",
			`status.sock: unknown key "sock" in [status] (did you mean "socket"?)`},
		{"unknown top-level metric", src(`[metric]`), "1:2", `metric: unknown top-level key "metric" (did you mean "metrics"?)`},
		{"unknown top-level stats", src(`[stats]`, `socket = ""`), "1:2", `stats: unknown top-level key "stats" (did you mean "status"?)`},
		{"integer for metrics", src(`metrics = 1`), "1:1", `metrics: must be a table ([metrics]), got an integer (1)`},
		{"string for status", src(`status = "/x.sock"`), "1:1", `status: must be a table ([status]), got a string ("/x.sock")`},
		{"integer for log", src(`log = 1`), "1:1", `log: must be a table ([log]), got an integer (1)`},

		// [engine] rejudge_on_reload.
		{"rejudge_on_reload string", src(`[engine]`, `rejudge_on_reload = "yes"`), "2:1",
			`engine.rejudge_on_reload: must be true or false, got a string ("yes")`},
		{"rejudge_on_reload integer", src(`[engine]`, `queue = 1`, `rejudge_on_reload = 1`), "3:1",
			`engine.rejudge_on_reload: must be true or false, got an integer (1)`},

		// [log] format.
		{"format upper case", src(`[log]`, `format = "JSON"`), "2:1",
			`log.format: "JSON" is not a log format; use "json" (JSON lines) or "text" (key=value lines)`},
		{"format empty", src(`[log]`, `format = ""`), "2:1", `log.format: "" is not a log format`},
		{"format integer", src(`[log]`, `format = 1`), "2:1", `log.format: must be a string, got an integer (1)`},

		// [log] rate.
		{"rate negative", src(`[log]`, `rate = -1`), "2:1",
			`log.rate: -1 is out of range 0..1000000 (events per second; 0 means no limit)`},
		{"rate negative float", src(`[log]`, `rate = -0.5`), "2:1", `log.rate: -0.5 is out of range 0..1000000`},
		{"rate too big", src(`[log]`, `rate = 1000001`), "2:1", `log.rate: 1000001 is out of range 0..1000000`},
		{"rate too big float", src(`[log]`, `rate = 1e7`), "2:1", `log.rate: 10000000 is out of range 0..1000000`},
		{"rate inf", src(`[log]`, `rate = inf`), "2:1", `log.rate: +Inf is out of range 0..1000000`},
		{"rate nan", src(`[log]`, `rate = nan`), "2:1", `log.rate: NaN is out of range 0..1000000`},
		{"rate string", src(`[log]`, `rate = "20"`), "2:1",
			`log.rate: must be a number of events per second (20 or 0.5; 0 means no limit), got a string ("20")`},
		{"rate boolean", src(`[log]`, `rate = false`), "2:1", `log.rate: must be a number of events per second`},

		// [log] burst.
		{"burst 0", src(`[log]`, `burst = 0`), "2:1", `log.burst: 0 is out of range 1..1000000`},
		{"burst too big", src(`[log]`, `burst = 1000001`), "2:1", `log.burst: 1000001 is out of range 1..1000000`},
		{"burst 0 with rate 0", src(`[log]`, `rate = 0`, `burst = 0`), "3:1", `log.burst: 0 is out of range 1..1000000`},
		{"burst float", src(`[log]`, `burst = 1.5`), "2:1", `log.burst: must be an integer, got a float (1.5)`},

		// [log] pcap and its limits.
		{"pcap empty", src(`[log]`, `pcap = ""`), "2:1",
			`log.pcap: must be a file path, not empty; leave it out to capture nothing`},
		{"pcap blank", src(`[log]`, `pcap = "  "`), "2:1", `log.pcap: must be a file path, not empty`},
		{"pcap directory", src(`[log]`, `pcap = "/var/log/"`), "2:1",
			`log.pcap: "/var/log/" ends in "/"; name a file, such as "/var/log/blocked.pcap"`},
		{"pcap relative directory", src(`[log]`, `pcap = "captures/"`), "2:1", `log.pcap: "captures/" ends in "/"`},
		{"pcap integer", src(`[log]`, `pcap = 1`), "2:1", `log.pcap: must be a string, got an integer (1)`},
		{"pcap_packets 0", src(`[log]`, `pcap_packets = 0`), "2:1", `log.pcap_packets: 0 is out of range 1..64`},
		{"pcap_packets 65", src(`[log]`, `pcap_packets = 65`), "2:1", `log.pcap_packets: 65 is out of range 1..64`},
		{"pcap_max_bytes too small", src(`[log]`, `pcap_max_bytes = 65535`), "2:1",
			`log.pcap_max_bytes: 65535 is out of range 65536..1099511627776`},
		{"pcap_max_bytes too big", src(`[log]`, `pcap_max_bytes = 1099511627777`), "2:1",
			`log.pcap_max_bytes: 1099511627777 is out of range 65536..1099511627776`},
		{"pcap_max_bytes string", src(`[log]`, `pcap_max_bytes = "64MiB"`), "2:1",
			`log.pcap_max_bytes: must be an integer, got a string ("64MiB")`},
		{"pcap_files 0", src(`[log]`, `pcap_files = 0`), "2:1", `log.pcap_files: 0 is out of range 1..1000`},
		{"pcap_files 1001", src(`[log]`, `pcap_files = 1001`), "2:1", `log.pcap_files: 1001 is out of range 1..1000`},
		{"pcap_files checked without pcap", src(`[log]`, `blocked = "stdout"`, `pcap_files = -1`), "3:1",
			`log.pcap_files: -1 is out of range 1..1000`},
		{"log inline table", src(`log = { format = "xml" }`), "1:9", `log.format: "xml" is not a log format`},

		// [metrics] listen.
		{"listen without port", src(`[metrics]`, `listen = "127.0.0.1"`), "2:1",
			`metrics.listen: "127.0.0.1" is not host:port; write "127.0.0.1:9477", "[::1]:9477" or ":9477" (all interfaces), or "" to disable`},
		{"listen bare port", src(`[metrics]`, `listen = "9477"`), "2:1", `metrics.listen: "9477" is not host:port; write "127.0.0.1:9477"`},
		{"listen ipv6 without brackets", src(`[metrics]`, `listen = "::1:9477"`), "2:1",
			`metrics.listen: "::1:9477" is not host:port: an IPv6 address must be in brackets; write "127.0.0.1:9477", "[::1]:9477"`},
		{"listen port 0", src(`[metrics]`, `listen = "127.0.0.1:0"`), "2:1",
			`metrics.listen: "127.0.0.1:0": port "0" is not a number 1..65535; write "127.0.0.1:9477"`},
		{"listen port too big", src(`[metrics]`, `listen = ":65536"`), "2:1",
			`metrics.listen: ":65536": port "65536" is not a number 1..65535`},
		{"listen named port", src(`[metrics]`, `listen = "127.0.0.1:http"`), "2:1",
			`metrics.listen: "127.0.0.1:http": port "http" is not a number 1..65535`},
		{"listen empty port", src(`[metrics]`, `listen = "localhost:"`), "2:1",
			`metrics.listen: "localhost:": port "" is not a number 1..65535`},
		{"listen host name", src(`[metrics]`, `listen = "metrics.example:9477"`), "2:1",
			`metrics.listen: "metrics.example:9477": host "metrics.example" is not an IP address, "localhost" or empty; write "127.0.0.1:9477"`},
		{"listen bad ipv4", src(`[metrics]`, `listen = "127.0.0.300:9477"`), "2:1",
			`metrics.listen: "127.0.0.300:9477": host "127.0.0.300" is not an IP address`},
		{"listen blank", src(`[metrics]`, `listen = " "`), "2:1", `metrics.listen: " " is not host:port`},
		{"listen integer", src(`[metrics]`, `listen = 9477`), "2:1", `metrics.listen: must be a string, got an integer (9477)`},
		{"listen dotted key", src(`metrics.listen = "x"`), "1:1", `metrics.listen: "x" is not host:port`},

		// [status] socket.
		{"socket relative", src(`[status]`, `socket = "run/nfqguard.sock"`), "2:1",
			`status.socket: "run/nfqguard.sock" is not an absolute path; write "/run/nfqguard/nfqguard.sock", or "" to disable`},
		{"socket blank", src(`[status]`, `socket = " "`), "2:1", `status.socket: " " is not an absolute path`},
		{"socket directory", src(`[status]`, `socket = "/run/nfqguard/"`), "2:1",
			`status.socket: "/run/nfqguard/" ends in "/"; name the socket, such as "/run/nfqguard/nfqguard.sock"`},
		{"socket root", src(`[status]`, `socket = "/"`), "2:1", `status.socket: "/" ends in "/"`},
		{"socket too long", src(`[status]`, `socket = "`+socket108+`"`), "2:1",
			`status.socket: "` + socket108 + `" is 108 bytes long; a unix socket path holds at most 107`},
		{"socket boolean", src(`[status]`, `socket = true`), "2:1", `status.socket: must be a string, got a boolean (true)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { wantOneError(t, tt.src, tt.pos, tt.msg) })
	}
}

// TestOpsReportsAllErrors checks that every bad key of the new sections is
// reported in one run, in file order.
func TestOpsReportsAllErrors(t *testing.T) {
	in := src(
		`[engine]`,                 // 1
		`rejudge_on_reload = 0`,    // 2
		`[log]`,                    // 3
		`format = "yaml"`,          // 4
		`rate = -3`,                // 5
		`burst = 0`,                // 6
		`pcap = "/tmp/"`,           // 7
		`pcap_packets = 100`,       // 8
		`pcap_max_bytes = 1`,       // 9
		`pcap_files = 0`,           // 10
		`[metrics]`,                // 11
		`listen = "host:9477"`,     // 12
		`[status]`,                 // 13
		`socket = "nfqguard.sock"`, // 14
		`owner = "root"`,           // 15
	)
	_, err := parse("multi.toml", []byte(in), testCPUs)
	var got []string
	for _, e := range configErrors(t, err) {
		got = append(got, e.Error())
	}
	want := []string{
		`multi.toml:2:1: engine.rejudge_on_reload: must be true or false, got an integer (0)`,
		`multi.toml:4:1: log.format: "yaml" is not a log format; use "json" (JSON lines) or "text" (key=value lines)`,
		`multi.toml:5:1: log.rate: -3 is out of range 0..1000000 (events per second; 0 means no limit)`,
		`multi.toml:6:1: log.burst: 0 is out of range 1..1000000`,
		`multi.toml:7:1: log.pcap: "/tmp/" ends in "/"; name a file, such as "/tmp/blocked.pcap"`,
		`multi.toml:8:1: log.pcap_packets: 100 is out of range 1..64`,
		`multi.toml:9:1: log.pcap_max_bytes: 1 is out of range 65536..1099511627776`,
		`multi.toml:10:1: log.pcap_files: 0 is out of range 1..1000`,
		`multi.toml:12:1: metrics.listen: "host:9477": host "host" is not an IP address, "localhost" or empty; ` +
			`write "127.0.0.1:9477", "[::1]:9477" or ":9477" (all interfaces), or "" to disable`,
		`multi.toml:14:1: status.socket: "nfqguard.sock" is not an absolute path; write "/run/nfqguard/nfqguard.sock", or "" to disable`,
		`multi.toml:15:1: status.owner: unknown key "owner" in [status]`,
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("errors mismatch (-want +got):\n%s", diff)
	}
}

// TestOpsWriteTo checks that `nfqguard check` shows the settings, both
// the defaults and every value set.
func TestOpsWriteTo(t *testing.T) {
	tests := []struct {
		name   string
		src    string
		engine string   // WriteTo's second [engine] line
		want   []string // the lines of [log], [metrics] and [status], in order
	}{
		{"defaults", "", "          mark 0x10000000, bypass_mark 0x20000000, fail_open false, fast_path true, malformed drop, rejudge_on_reload false",
			[]string{
				"log       blocked stdout, format json, rate 20 per second per rule, burst 100",
				"          pcap off",
				"metrics   listen 127.0.0.1:9477",
				"status    socket /run/nfqguard/nfqguard.sock",
			}},
		{"set", src(
			`[engine]`, `rejudge_on_reload = true`,
			`[log]`, `format = "text"`, `rate = 0.5`, `burst = 3`,
			`pcap = "/var/log/b.pcap"`, `pcap_packets = 2`, `pcap_max_bytes = 1048576`, `pcap_files = 9`,
			`[metrics]`, `listen = "[::1]:9100"`,
			`[status]`, `socket = "/tmp/s.sock"`,
		), "          mark 0x10000000, bypass_mark 0x20000000, fail_open false, fast_path true, malformed drop, rejudge_on_reload true",
			[]string{
				"log       blocked stdout, format text, rate 0.5 per second per rule, burst 3",
				"          pcap /var/log/b.pcap, pcap_packets 2 per flow, pcap_max_bytes 1048576, pcap_files 9",
				"metrics   listen [::1]:9100",
				"status    socket /tmp/s.sock",
			}},
		{"off", src(`[log]`, `rate = 0`, `[metrics]`, `listen = ""`, `[status]`, `socket = ""`), "", []string{
			"log       blocked stdout, format json, rate unlimited",
			"          pcap off",
			"metrics   off",
			"status    off",
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tbl := mustParse(t, "ops.toml", []byte(tt.src))
			var buf bytes.Buffer
			if _, err := tbl.WriteTo(&buf); err != nil {
				t.Fatal(err)
			}
			out := buf.String()
			if tt.engine != "" && !strings.Contains(out, "\n"+tt.engine+"\n") {
				t.Errorf("WriteTo output lacks\n%s\ngot:\n%s", tt.engine, out)
			}
			if !strings.Contains(out, strings.Join(tt.want, "\n")+"\n") {
				t.Errorf("WriteTo output lacks\n%s\ngot:\n%s", strings.Join(tt.want, "\n"), out)
			}
		})
	}
}
