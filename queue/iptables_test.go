package queue

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var update = flag.Bool("update", false, "rewrite golden files")

func TestRuleSpecGolden(t *testing.T) {
	specs := []struct {
		name string
		spec RuleSpec
	}{
		{"one-queue", RuleSpec{FirstQueue: 0, Queues: 1, Mark: 0x10000000, BypassMark: 0x20000000, FastPath: true}},
		{"balance-fail-open", RuleSpec{FirstQueue: 10, Queues: 4, Mark: 0x1, BypassMark: 0x2, FastPath: true, FailOpen: true}},
		{"per-packet", RuleSpec{FirstQueue: 0, Queues: 2, Mark: 0x10000000, BypassMark: 0x20000000}},
	}
	var b strings.Builder
	for _, s := range specs {
		b.WriteString("# " + s.name + "\n")
		b.WriteString("-A DOCKER-USER " + strings.Join(s.spec.redirect(), " ") + "\n")
		b.WriteString("-A DOCKER-USER " + strings.Join(s.spec.companion(), " ") + "\n")
	}
	golden := filepath.Join("testdata", "rules.golden")
	if *update {
		if err := os.WriteFile(golden, []byte(b.String()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), b.String()); diff != "" {
		t.Errorf("generated rules differ from %s (-want +got):\n%s", golden, diff)
	}
}

func TestRuleSpecOf(t *testing.T) {
	spec := RuleSpec{FirstQueue: 0, Queues: 2, Mark: 0x10000000, BypassMark: 0x20000000, FastPath: true}
	for _, args := range [][]string{spec.redirect(), spec.companion()} {
		line := "-A DOCKER-USER " + strings.Join(args, " ")
		if diff := cmp.Diff(args, ruleSpecOf(line)); diff != "" {
			t.Errorf("ruleSpecOf(%q) (-want +got):\n%s", line, diff)
		}
	}
	// iptables may quote comments.
	got := ruleSpecOf(`-A DOCKER-USER -m comment --comment "nfqguard-redirect" -j NFQUEUE --queue-num 0`)
	want := []string{"-m", "comment", "--comment", "nfqguard-redirect", "-j", "NFQUEUE", "--queue-num", "0"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("quoted comment (-want +got):\n%s", diff)
	}
	if got := ruleSpecOf("-N DOCKER-USER"); got != nil {
		t.Errorf("ruleSpecOf(chain line) = %q, want nil", got)
	}
}

func TestQueuesOfRule(t *testing.T) {
	for _, c := range []struct {
		spec RuleSpec
		want []uint16
	}{
		{RuleSpec{FirstQueue: 3, Queues: 1, Mark: 1, BypassMark: 2}, []uint16{3}},
		{RuleSpec{FirstQueue: 10, Queues: 4, Mark: 1, BypassMark: 2, FailOpen: true}, []uint16{10, 11, 12, 13}},
	} {
		line := "-A DOCKER-USER " + strings.Join(c.spec.redirect(), " ")
		if diff := cmp.Diff(c.want, queuesOfRule(line)); diff != "" {
			t.Errorf("queuesOfRule(%q) (-want +got):\n%s", line, diff)
		}
	}
}
