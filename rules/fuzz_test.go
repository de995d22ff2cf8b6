package rules

import (
	"io"
	"os"
	"path/filepath"
	"testing"
)

func FuzzParse(f *testing.F) {
	for _, file := range []string{"example.toml", "judge.toml", "docker.toml", "l7.toml"} {
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
		"[inspect]\nmax_packets = 64\nmax_bytes = 256\nundecided = \"allow\"\nmax_wait = \"60s\"\nmax_held_flows = 65536\n[engine]\nqueue_len = 1048576\n",
		"inspect = { max_wait = \"1h\", max_held_flows = 0, max_packets = \"8\" }\n[engine]\nqueue_len = 7\n",
		"[[container]]\nname = \"a\"\nips = [\"10.0.0.1\"]\n[[container.rule]]\nid = \"undecided\"\ndirection = \"egress\"\nproto = \"udp\"\n" +
			"tls_sni = [\"*.A.b.\", \"*\", \"a..b\"]\nhttp_host = [\"::1\", \"[::1]:80\", \"h:1\"]\nhttp_path = [\"/a?b\", \"x\"]\n" +
			"http_method = [\"GET\", \"\", \"a b\"]\ndns_qname = []\naction = \"drop\"\n",
		"container = [{ name = \"x\", ips = [\"fd00::1\"], rule = [{ id = \"r\", direction = \"ingress\", proto = \"any\", " +
			"ports = [\"53\"], dns_qname = [\"x.\"], tls_sni = [\"x\"], http_path = [\"/,\\\"\"], action = \"allow\" }] }]\n",
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
		if in := tbl.Inspect; in.MaxPackets < 1 || in.MaxHeldFlows < 1 || in.MaxWait < MinMaxWait || in.Undecided == 0 ||
			(hasL7(tbl.source) && in.MaxPackets*in.MaxHeldFlows > int(tbl.Engine.QueueLen)) {
			t.Fatalf("invalid inspect config accepted: %+v with queue_len %d", in, tbl.Engine.QueueLen)
		}
	})
}
