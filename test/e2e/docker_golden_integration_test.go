package e2e

import (
	"context"
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"github.com/nfqguard/nfqguard/internal/dockerlab"
	"github.com/nfqguard/nfqguard/internal/netns"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from what the engines install")

// dkOurSave returns, for both families, the lines of iptables-save
// (ip6tables-save) of the Docker namespace that are nfqguard's, under
// their table headers: what the engine installed, in the normalised form
// iptables prints (counters removed). With Docker's nftables backend
// nfqguard's rules are iptables-nft rules too (mangle NFQGUARD), so the
// same listing shows them.
func dkOurSave(t testing.TB, d *dockerlab.Docker) string {
	t.Helper()
	var b strings.Builder
	for _, bin := range []string{"iptables-save", "ip6tables-save"} {
		out, err := netns.Run(context.Background(), d.NSPath(), bin)
		if err != nil {
			t.Fatal(err)
		}
		b.WriteString("# " + bin + "\n")
		table := ""
		for _, line := range strings.Split(comparableSave(out), "\n") {
			switch {
			case strings.HasPrefix(line, "*"):
				table = line
			case strings.Contains(line, "nfqguard") || strings.Contains(line, "NFQGUARD"):
				if table != "" {
					b.WriteString(table + "\n")
					table = ""
				}
				b.WriteString(line + "\n")
			}
		}
	}
	return b.String()
}

// testDockerGoldenRules: what an engine with an allow-all table installs
// in the Docker namespace, both families, is exactly the golden listing
// of that engine and backend (testdata/docker-ENGINE-BACKEND.golden;
// go test -run 'TestDocker$/.*/GoldenRules' -update rewrites it), and a
// clean stop leaves iptables-save (nft list ruleset with Docker's
// nftables backend) of both families as it was before the start.
func testDockerGoldenRules(t *testing.T, d *dockerlab.Docker) {
	before4, before6 := dkSave(t, d, false), dkSave(t, d, true)
	e := startDockerEngine(t, d, allowAllConfig(true, false))
	got := dkOurSave(t, d)
	golden := filepath.Join("testdata", "docker-"+d.Engine().String()+"-"+d.FirewallBackend()+".golden")
	if *update {
		must(t, os.MkdirAll("testdata", 0o755))
		must(t, os.WriteFile(golden, []byte(got), 0o644))
	}
	want, err := os.ReadFile(golden)
	must(t, err)
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("nfqguard's rules after start differ from %s (-want +got):\n%s", golden, diff)
	}
	e.stopClean()
	if after := dkOurSave(t, d); after != "# iptables-save\n# ip6tables-save\n" {
		t.Errorf("nfqguard's rules after a clean stop:\n%s", after)
	}
	if after := dkSave(t, d, false); after != before4 {
		t.Errorf("the IPv4 firewall changed after a clean stop:\n%s", cmp.Diff(before4, after))
	}
	if after := dkSave(t, d, true); after != before6 {
		t.Errorf("the IPv6 firewall changed after a clean stop:\n%s", cmp.Diff(before6, after))
	}
}
