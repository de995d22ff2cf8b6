package rules

import (
	"strings"
	"testing"

	"github.com/BurntSushi/toml"
)

// positionSrc exercises everything the scanner must not be fooled by:
// brackets, '=' and '#' inside strings and comments, multi-line strings that
// look like headers, multi-line arrays with comments, inline tables, dotted
// and quoted keys, and nested arrays of tables whose counters must reset.
const positionSrc = `# comment with [brackets] and key = "value"
title = "a [not a table] # not a comment"
defaults.ingress = "allow"
[engine]
queue = 1   # trailing [comment]
mark = 0x10
"quoted key" = 1
desc = """
[[container]]
name = "fake \""" ]
"""
[[container]]
name = 'a'
ips = [
  "10.0.0.1", # first
  # "10.0.0.9",
  "10.0.0.2",
]
  [[container.rule]]
  id = "a0"
  [[container.rule]]
  id = "a1"
  ports = ["80", "81"]
[[container]]
name = "b"
  [[ container . rule ]]
  id = '''b0'''
  peer.extra = { x = [1, [2, 3]], y = "}" }
  nested = [[1, 2], [3]]
[log]
blocked = 'C:\logs' # literal string, backslash is not an escape
`

func TestPositionIndex(t *testing.T) {
	// The scanner only ever sees text the TOML parser accepted.
	var doc map[string]any
	if _, err := toml.Decode(positionSrc, &doc); err != nil {
		t.Fatalf("positionSrc is not valid TOML: %v", err)
	}
	x := indexPositions([]byte(positionSrc))
	lines := strings.Split(positionSrc, "\n")
	tests := []struct {
		key    string
		line   int
		marker string // the key's column is where marker starts on line
	}{
		{"title", 2, "title"},
		{"defaults", 3, "defaults"},
		{"defaults.ingress", 3, "defaults"},
		{"engine", 4, "engine"},
		{"engine.queue", 5, "queue"},
		{"engine.mark", 6, "mark"},
		{"engine.quoted key", 7, `"quoted`},
		{"engine.desc", 8, "desc"},
		{"container[0]", 12, "container"},
		{"container[0].name", 13, "name"},
		{"container[0].ips", 14, "ips"},
		{"container[0].ips[0]", 15, `"10.0.0.1"`},
		{"container[0].ips[1]", 17, `"10.0.0.2"`},
		{"container[0].rule[0]", 19, "container.rule"},
		{"container[0].rule[0].id", 20, "id"},
		{"container[0].rule[1]", 21, "container.rule"},
		{"container[0].rule[1].id", 22, "id"},
		{"container[0].rule[1].ports[1]", 23, `"81"`},
		{"container[1]", 24, "container"},
		{"container[1].name", 25, "name"},
		{"container[1].rule[0]", 26, "container ."},
		{"container[1].rule[0].id", 27, "id"},
		{"container[1].rule[0].peer.extra", 28, "peer"},
		{"container[1].rule[0].peer.extra.x", 28, "x ="},
		{"container[1].rule[0].peer.extra.x[1]", 28, "[2, 3]"},
		{"container[1].rule[0].peer.extra.x[1][1]", 28, "3]"},
		{"container[1].rule[0].peer.extra.y", 28, "y ="},
		{"container[1].rule[0].nested[1]", 29, "[3]"},
		{"log", 30, "log"},
		{"log.blocked", 31, "blocked"},
		// Not in the file: fall back to the nearest ancestor.
		{"container[1].rule[0].action", 26, "container ."},
		{"container[0].ips[7]", 14, "ips"},
		{"engine.workers", 4, "engine"},
	}
	for _, tt := range tests {
		wantCol := strings.Index(lines[tt.line-1], tt.marker) + 1
		if wantCol == 0 {
			t.Fatalf("bad test: marker %q not on line %d", tt.marker, tt.line)
		}
		line, col := x.lookup(tt.key)
		if line != tt.line || col != wantCol {
			t.Errorf("lookup(%q) = %d:%d, want %d:%d", tt.key, line, col, tt.line, wantCol)
		}
	}
	// The fake header inside the multi-line string must not have created a
	// third container, nor must "name" inside it be taken for a key.
	for _, key := range []string{"container[2]", "engine.name", "title.not a table"} {
		if _, ok := x.offs[key]; ok {
			t.Errorf("index has %q, which is not a key in the file", key)
		}
	}
	if line, _ := x.lookup("nowhere"); line != 0 {
		t.Errorf("lookup of unknown top-level key = line %d, want 0", line)
	}
}

func TestParentPath(t *testing.T) {
	for in, want := range map[string]string{
		"container[1].rule[0].ports": "container[1].rule[0]",
		"container[1].rule[0]":       "container[1].rule",
		"container[1]":               "container",
		"container":                  "",
	} {
		if got := parentPath(in); got != want {
			t.Errorf("parentPath(%q) = %q, want %q", in, got, want)
		}
	}
}
