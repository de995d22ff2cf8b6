package rules

import (
	"net/netip"
	"reflect"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// startOnlyCases change each daemon key alone, from its default.
var startOnlyCases = []struct {
	key    string // the key's path
	value  string // a valid value other than the default, as TOML
	report string // what KeepStartOnly names for it; "" for a key a reload applies
}{
	{"engine.queue", "10", "engine.queue"},
	{"engine.workers", "2", "engine.workers"}, // the default is one per CPU: testCPUs
	{"engine.fail_open", "true", "engine.fail_open"},
	{"engine.mark", "0x100", "engine.mark"},
	{"engine.bypass_mark", "0x200", "engine.bypass_mark"},
	{"engine.fast_path", "false", "engine.fast_path"},
	{"engine.malformed", `"allow"`, ""},
	{"engine.max_flows", "2048", "engine.max_flows"},
	{"engine.queue_len", "8192", "engine.queue_len"},
	{"engine.rejudge_on_reload", "true", ""},
	{"engine.guard_mark", "0", "engine.guard_mark"},
	{"engine.invalid", `"docker"`, "engine.invalid"},
	{"engine.firewall", `"nftables"`, "engine.firewall"},
	{"inspect.max_packets", "4", "inspect.max_packets"},
	{"inspect.max_bytes", "4096", "inspect.max_bytes"},
	{"inspect.undecided", `"allow"`, ""},
	{"inspect.max_wait", `"250ms"`, "inspect.max_wait"},
	{"inspect.max_held_flows", "100", "inspect.max_held_flows"},
	{"dns.learn", "true", ""},
	{"dns.min_ttl", `"1s"`, ""},
	{"dns.max_ttl", `"10m"`, ""},
	{"dns.grace", `"5s"`, ""},
	{"dns.max_names", "100", "dns.max_names"},
	{"log.blocked", `"stderr"`, "log"},
	{"log.format", `"text"`, "log"},
	{"log.rate", "0.5", "log"},
	{"log.burst", "10", "log"},
	{"log.pcap", `"/var/log/nfqguard/blocked.pcap"`, "log"},
	{"log.pcap_packets", "2", "log"},
	{"log.pcap_max_bytes", "1048576", "log"},
	{"log.pcap_files", "2", "log"},
	{"metrics.listen", `""`, "metrics"},
	{"status.socket", `""`, "status"},
	{"docker.socket", `"/run/docker.sock"`, "docker"},
	{"docker.unreachable", `"defaults"`, ""},
	{"defaults.ingress", `"drop"`, ""},
	{"defaults.egress", `"drop"`, ""},
}

// settings are a Table's daemon sections and defaults.
type settings struct {
	Engine   EngineConfig
	Inspect  InspectConfig
	DNS      DNSConfig
	Log      LogConfig
	Metrics  MetricsConfig
	Status   StatusConfig
	Docker   DockerConfig
	Defaults [3]Action
}

func settingsOf(t *Table) settings {
	return settings{t.Engine, t.Inspect, t.DNS, t.Log, t.Metrics, t.Status, t.Docker, t.defaults}
}

// TestKeepStartOnly: a reload keeps and names each key a running engine
// applies only at restart, changed alone, and applies each other key
// without naming it.
func TestKeepStartOnly(t *testing.T) {
	cases := map[string]bool{}
	for _, tt := range startOnlyCases {
		cases[tt.key] = true
	}
	restart := map[string]bool{}
	for _, k := range Keys() {
		if strings.HasPrefix(k.Path, "container.") {
			continue // rules: see TestKeepStartOnlyRules
		}
		restart[k.Path] = k.Restart
		if !cases[k.Path] {
			t.Errorf("key %s has no case in startOnlyCases", k.Path)
		}
	}
	for _, tt := range startOnlyCases {
		t.Run(tt.key, func(t *testing.T) {
			section, name, _ := strings.Cut(tt.key, ".")
			src := "[" + section + "]\n" + name + " = " + tt.value + "\n"
			if r, ok := restart[tt.key]; !ok || r != (tt.report != "") {
				t.Errorf("Keys() has %s with Restart %t (listed %t), want Restart %t", tt.key, r, ok, tt.report != "")
			}
			running, next := mustParse(t, "old.toml", nil), mustParse(t, "new.toml", []byte(src))
			old, changed := settingsOf(running), settingsOf(next)
			if old == changed {
				t.Fatalf("%q sets nothing that differs from the defaults", src)
			}
			var want []string
			if tt.report != "" {
				want = []string{tt.report}
			}
			got := KeepStartOnly(running, next)
			if diff := cmp.Diff(want, got); diff != "" {
				t.Errorf("KeepStartOnly names (-want +got):\n%s", diff)
			}
			switch now := settingsOf(next); {
			case tt.report != "" && now != old:
				t.Errorf("next's settings after KeepStartOnly:\n%+v\nwant the running ones:\n%+v", now, old)
			case tt.report == "" && now != changed:
				t.Errorf("next's settings after KeepStartOnly:\n%+v\nwant the file's:\n%+v", now, changed)
			}
			if s := settingsOf(running); s != old {
				t.Errorf("KeepStartOnly changed running:\n%+v\nwas:\n%+v", s, old)
			}
		})
	}
}

// TestKeepStartOnlyRules: a reload applies the rules and names nothing for
// them.
func TestKeepStartOnlyRules(t *testing.T) {
	running := mustLoad(t, "testdata/judge.toml")
	next := mustLoad(t, "testdata/l7.toml")
	// Only the rules differ; the settings are running's.
	next.Engine, next.Inspect, next.Log = running.Engine, running.Inspect, running.Log
	next.Metrics, next.Status, next.Docker, next.defaults = running.Metrics, running.Status, running.Docker, running.defaults
	if got := KeepStartOnly(running, next); got != nil {
		t.Errorf("KeepStartOnly = %q, want nothing", got)
	}
	app := netip.MustParseAddr("172.17.0.5") // testdata/l7.toml's container
	if running.Listed(app) || !next.Listed(app) {
		t.Errorf("Listed(%s): running %t, next %t; want false, true", app, running.Listed(app), next.Listed(app))
	}
}

// TestKeepStartOnlyOrder: several changes are named in the order of Keys,
// a section once.
func TestKeepStartOnlyOrder(t *testing.T) {
	running := mustParse(t, "old.toml", nil)
	next := mustParse(t, "new.toml", []byte(src(
		`[engine]`, `queue_len = 8192`, `fail_open = true`, `malformed = "allow"`,
		`[inspect]`, `max_wait = "2s"`,
		`[log]`, `format = "text"`, `pcap = "/tmp/b.pcap"`,
		`[docker]`, `socket = "/run/docker.sock"`,
		`[metrics]`, `listen = ":9000"`,
	)))
	want := []string{"engine.fail_open", "engine.queue_len", "inspect.max_wait", "log", "metrics", "docker"}
	if diff := cmp.Diff(want, KeepStartOnly(running, next)); diff != "" {
		t.Errorf("KeepStartOnly names (-want +got):\n%s", diff)
	}
	if next.Engine.Malformed != Allow {
		t.Errorf("engine.malformed = %s after KeepStartOnly, want the file's allow", next.Engine.Malformed)
	}
}

// TestKeysCoverFields: every field of the daemon sections is some key's,
// so that KeepStartOnly sees every change.
func TestKeysCoverFields(t *testing.T) {
	base := mustParse(t, "base.toml", nil)
	for _, section := range []string{"Engine", "Inspect", "Log", "Metrics", "Status", "Docker"} {
		typ := reflect.ValueOf(base).Elem().FieldByName(section).Type()
		for i := range typ.NumField() {
			changed := *base
			f := reflect.ValueOf(&changed).Elem().FieldByName(section).Field(i)
			switch f.Kind() {
			case reflect.Bool:
				f.SetBool(!f.Bool())
			case reflect.Int, reflect.Int64:
				f.SetInt(f.Int() + 1)
			case reflect.Uint8, reflect.Uint16, reflect.Uint32:
				f.SetUint(f.Uint() + 1)
			case reflect.Float64:
				f.SetFloat(f.Float() + 1)
			case reflect.String:
				f.SetString(f.String() + "x")
			default:
				t.Fatalf("%s.%s: cannot change a %s", section, typ.Field(i).Name, f.Kind())
			}
			var by []string
			for _, kt := range tablesOf(&fileKeys) {
				for _, k := range kt.keys {
					if k.field != nil && !k.field.equal(base, &changed) {
						by = append(by, joinPath(kt.path, k.name))
					}
				}
			}
			if len(by) != 1 {
				t.Errorf("%s.%s is the field of keys %q, want one", section, typ.Field(i).Name, by)
			}
		}
	}
}
