package rules

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
	"github.com/google/go-cmp/cmp"
)

// everyKey sets every key the loader accepts, with valid values: ips and
// image/label, from and to, to and to_names cannot share an entry, so it has
// two of each.
const everyKey = `
[engine]
queue = 10
workers = 2
fail_open = true
mark = 0x100
bypass_mark = 0x200
fast_path = false
malformed = "allow"
max_flows = 2048
queue_len = 2048
rejudge_on_reload = true
guard_mark = 0x400
invalid = "docker"
firewall = "nftables"

[inspect]
max_packets = 4
max_bytes = 4096
undecided = "allow"
max_wait = "250ms"
max_held_flows = 100

[dns]
learn = true
min_ttl = "1s"
max_ttl = "10m"
grace = "5s"
max_names = 100

[log]
blocked = "stderr"
format = "text"
rate = 0.5
burst = 10
pcap = "/var/log/nfqguard/blocked.pcap"
pcap_packets = 2
pcap_max_bytes = 1048576
pcap_files = 2

[metrics]
listen = "[::1]:9477"

[status]
socket = "/run/nfqguard/test.sock"

[docker]
socket = "/run/docker.sock"
unreachable = "defaults"

[defaults]
ingress = "drop"
egress = "drop"

[[container]]
name = "web"
ips = ["172.17.0.2"]
ingress = "allow"
egress = "allow"

  [[container.rule]]
  id = "in"
  direction = "ingress"
  proto = "tcp"
  ports = ["443"]
  from = ["10.0.0.0/8"]
  action = "drop"
  log = true
  tls_sni = ["example.com"]
  tls_ja4 = ["t13d1516h2_*"]
  app_proto = ["tls", "http", "ssh", "dns", "unknown"]
  http_host = ["example.com"]
  http_path = ["/x"]
  http_method = ["GET"]
  dns_qname = ["example.com"]

  [[container.rule]]
  id = "out"
  direction = "egress"
  to = ["10.0.0.0/8"]
  action = "drop"

  [[container.rule]]
  id = "out-names"
  direction = "egress"
  to_names = ["example.com", "*.example.net"]
  action = "allow"

[[container]]
name = "caches"
image = "redis:*"
label = "tier=db"
`

// keyPaths returns the dotted paths of the keys holding values in a
// decoded TOML document, without array indexes.
func keyPaths(doc map[string]any) []string {
	var out []string
	var walk func(at string, m map[string]any)
	walk = func(at string, m map[string]any) {
		for k, v := range m {
			path := joinPath(at, k)
			switch v := v.(type) {
			case map[string]any:
				walk(path, v)
			case []map[string]any:
				for _, e := range v {
					walk(path, e)
				}
			default:
				out = append(out, path)
			}
		}
	}
	walk("", doc)
	slices.Sort(out)
	return slices.Compact(out)
}

func keysPaths() []string {
	var out []string
	for _, k := range Keys() {
		out = append(out, k.Path)
	}
	return out
}

// TestKeysComplete: a file setting every key of Keys loads, and it sets no
// key Keys leaves out.
func TestKeysComplete(t *testing.T) {
	mustParse(t, "every.toml", []byte(everyKey))
	var doc map[string]any
	if _, err := toml.Decode(everyKey, &doc); err != nil {
		t.Fatal(err)
	}
	want := keysPaths()
	slices.Sort(want)
	if diff := cmp.Diff(want, keyPaths(doc)); diff != "" {
		t.Errorf("keys set by the test file differ from Keys() (-Keys +file):\n%s", diff)
	}
	if n := len(slices.Compact(want)); n != len(Keys()) {
		t.Errorf("Keys() has %d keys, %d distinct", len(Keys()), n)
	}
}

// commentedKey finds the keys and tables config.toml shows commented out
// ("# rate = 20", "# [metrics]"), which belong to the schema as much as the
// others.
var commentedKey = regexp.MustCompile(`(?m)^#\s?(\[[a-z_.]+\]|[a-z_]+\s*=)`)

// TestKeysCoverFiles: every key of the repository's config.toml (commented
// out or not) and of testdata/*.toml is one Keys knows.
func TestKeysCoverFiles(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("testdata", "*.toml"))
	if err != nil || len(files) == 0 {
		t.Fatalf("no testdata: %v", err)
	}
	files = append(files, filepath.Join("..", "config.toml"))
	known := keysPaths()
	for _, file := range files {
		data, err := os.ReadFile(file)
		if err != nil {
			t.Fatal(err)
		}
		text := string(data)
		if filepath.Base(file) == "config.toml" {
			text = commentedKey.ReplaceAllString(text, "$1")
		}
		var doc map[string]any
		if _, err := toml.Decode(text, &doc); err != nil {
			t.Fatalf("%s: %v", file, err)
		}
		paths := keyPaths(doc)
		if len(paths) == 0 {
			t.Errorf("%s: no keys found", file)
		}
		for _, p := range paths {
			if !slices.Contains(known, p) {
				t.Errorf("%s: key %s is not in Keys()", file, p)
			}
		}
	}
}

// TestKeysUnknownNeighbour: a misspelt key beside each key of Keys, and a
// misspelt table beside each table, is refused with the key it misspells
// as the suggestion.
func TestKeysUnknownNeighbour(t *testing.T) {
	type tc struct {
		src  string // the misspelt key or table on the last line
		key  string // ConfigError.Key
		msg  string
		line int // 0: not checked
	}
	var tests []tc
	tables := map[string]bool{}
	for _, k := range Keys() {
		// The lines opening k's table, and the path of its entry.
		open, at := k.Table, strings.Trim(k.Table, "[]")
		if strings.HasPrefix(k.Table, "[[") {
			parts := strings.Split(at, ".")
			open, at = "", ""
			for i, part := range parts {
				open += "[[" + strings.Join(parts[:i+1], ".") + "]]\n"
				at = indexPath(joinPath(at, part), 0)
			}
			open = strings.TrimSuffix(open, "\n")
		}
		lines := strings.Count(open, "\n") + 1
		name := k.Path[strings.LastIndexByte(k.Path, '.')+1:]
		typo := name + name[len(name)-1:]
		tests = append(tests, tc{open + "\n" + typo + " = 1\n", joinPath(at, typo),
			fmt.Sprintf("unknown key %q in %s (did you mean %q?)", typo, k.Table, name), lines + 1})

		// The table itself, misspelt where it is opened.
		if tables[k.Table] {
			continue
		}
		tables[k.Table] = true
		parent, table := "", strings.Trim(k.Table, "[]")
		if i := strings.LastIndexByte(table, '.'); i >= 0 {
			parent, table = table[:i], table[i+1:]
		}
		typo = table + table[len(table)-1:]
		src := strings.Replace(open, table+"]", typo+"]", 1) + "\n"
		msg := fmt.Sprintf("unknown top-level key %q (did you mean %q?)", typo, table)
		key := typo
		if parent != "" {
			msg = fmt.Sprintf("unknown key %q in [[%s]] (did you mean %q?)", typo, parent, table)
			key = indexPath(parent, 0) + "." + typo
		}
		// (The position of a misspelt array-of-tables header is not
		// checked: the position index does not find those today.)
		line := lines
		if strings.HasPrefix(k.Table, "[[") {
			line = 0
		}
		tests = append(tests, tc{src, key, msg, line})
	}
	if len(tables) < 9 {
		t.Fatalf("Keys() has keys in %d tables, want the 9 of the file", len(tables))
	}
	for _, tt := range tests {
		_, err := parse("bad.toml", []byte(tt.src), testCPUs)
		if err == nil {
			t.Errorf("%q: no error", tt.src)
			continue
		}
		var got []string
		found := false
		for _, e := range configErrors(t, err) {
			got = append(got, e.Error())
			if e.Key == tt.key && e.Msg == tt.msg && (tt.line == 0 || e.Line == tt.line) {
				found = true
			}
		}
		if !found {
			t.Errorf("%q:\n got %q\nwant line %d: %s: %s", tt.src, got, tt.line, tt.key, tt.msg)
		}
	}
}

// TestKeysCheckLayout: check shows every key of a daemon section once, and
// the keys of [[container]] and its rules, which WriteTo shows per entry,
// belong to no settings line.
func TestKeysCheckLayout(t *testing.T) {
	for _, kt := range tablesOf(&fileKeys) {
		daemon := kt != &containerKeys && kt != &ruleKeys
		shown := map[string]int{}
		for _, line := range kt.check {
			for _, name := range line {
				if kt.lookup(name) == nil {
					t.Errorf("%s: check shows %q, which is no key of it", kt.header, name)
				}
				shown[name]++
			}
		}
		for _, k := range kt.keys {
			switch {
			case daemon && (k.field == nil || shown[k.name] != 1):
				t.Errorf("%s: key %q has field %v and is shown %d times by check, want a field shown once",
					kt.header, k.name, k.field != nil, shown[k.name])
			case !daemon && (k.field != nil || k.show != nil || len(kt.check) > 0):
				t.Errorf("%s: key %q has a setting of its own; the table's entries are compiled into rules", kt.header, k.name)
			}
		}
	}
}

// tablesOf returns the tables under kt.
func tablesOf(kt *keyTable) []*keyTable {
	var out []*keyTable
	for _, k := range kt.keys {
		if k.sub != nil {
			out = append(append(out, k.sub), tablesOf(k.sub)...)
		}
	}
	return out
}
