package rules

import (
	"io"
	"os"
	"path/filepath"
	"testing"
)

func FuzzParse(f *testing.F) {
	for _, file := range []string{"example.toml", "judge.toml", "docker.toml"} {
		data, err := os.ReadFile(filepath.Join("testdata", file))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	for _, s := range []string{
		"",
		"[engine",
		"[[container]]\nname = \"a\"\nips = [\"1.2.3.4/8\", 7]\n[[container.rule]]\nports = [\"9-1\"]\n",
		"[[container]]\n[[container.rule]]\n[[container]]\n[[container.rule]]\nid = \"\"\n",
		"engine = { queue = 65535, workers = 1024, mark = 1, bypass_mark = 1 }\n",
		"container = [{ name = \"x\", ips = [\"::ffff:1.2.3.4\"], rule = [{ id = \"r\", direction = \"egress\", to = [\"::ffff:0:0/96\"], action = \"drop\" }] }]\n",
		"a = \"\"\"\n[[container]]\n\"\"\"\n[log]\nblocked = '''x'''\n",
		"[defaults]\ningress = 'drop'\negress = \"\\u00e9\"\n",
		"[docker]\nsocket = \"unix:///x\"\n[[container]]\nname = \"r\"\nimage = \"redis:[*\"\nlabel = \"a=b\"\n",
		"[[container]]\nname = \"web\"\n[[container]]\nname = \"g\"\nlabel = \"=\"\nips = []\n",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		tbl, err := parse("fuzz.toml", data, testCPUs)
		if err != nil {
			for _, e := range configErrors(t, err) {
				if e.File != "fuzz.toml" || e.Msg == "" {
					t.Fatalf("malformed error %#v", e)
				}
			}
			return
		}
		if _, err := tbl.WriteTo(io.Discard); err != nil {
			t.Fatalf("WriteTo: %v", err)
		}
		rt, _ := tbl.Resolve(dockerHost())
		if _, err := rt.WriteTo(io.Discard); err != nil {
			t.Fatalf("WriteTo of the resolved table: %v", err)
		}
		if tbl.Engine.Workers < 1 || tbl.Engine.Mark&tbl.Engine.BypassMark != 0 {
			t.Fatalf("invalid engine config accepted: %+v", tbl.Engine)
		}
	})
}
