package firewall

import (
	"flag"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"math/rand/v2"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
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

// TestRuleSpecHasNoStrings: the rules nfqguard writes are built from typed
// values only (queue numbers, mark bits, switches), so no string from the
// rule file can reach an iptables argument.
func TestRuleSpecHasNoStrings(t *testing.T) {
	typ := reflect.TypeFor[RuleSpec]()
	for i := range typ.NumField() {
		f := typ.Field(i)
		switch f.Type.Kind() {
		case reflect.Uint16, reflect.Uint32, reflect.Int, reflect.Bool:
		default:
			t.Errorf("RuleSpec.%s is a %v: the iptables arguments must be built from numbers and switches only", f.Name, f.Type)
		}
	}
}

// ruleToken is every word the redirect and companion rules may hold
// besides numbers and marks.
var ruleToken = map[string]bool{
	"-m": true, "mark": true, "connmark": true, "comment": true, "!": true, "--mark": true, "--comment": true,
	"-j": true, "NFQUEUE": true, "CONNMARK": true, "--queue-num": true, "--queue-balance": true, "--queue-bypass": true,
	"--set-xmark": true, commentRedirect: true, commentFastPath: true,
}

var (
	maskPattern    = regexp.MustCompile(`^0x[0-9a-f]{1,8}/0x[0-9a-f]{1,8}$`)
	queuePattern   = regexp.MustCompile(`^[0-9]{1,5}$`)
	balancePattern = regexp.MustCompile(`^[0-9]{1,5}:[0-9]{1,5}$`)
)

// TestRuleArgsStrict: over random valid specs, every argument of the
// redirect and the companion is a known token, a mark written as
// 0xBIT/0xBIT of the spec's mark, or the spec's queue numbers, in the
// places those go.
func TestRuleArgsStrict(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	specs := []RuleSpec{
		{FirstQueue: 0, Queues: 1, Mark: 1, BypassMark: 2},
		{FirstQueue: 65535, Queues: 1, Mark: 0x80000000, BypassMark: 0x40000000, FastPath: true, FailOpen: true},
		{FirstQueue: 64512, Queues: 1024, Mark: 0xffff0000, BypassMark: 0x0000ffff, FastPath: true},
	}
	for range 5000 {
		n := 1 + rng.IntN(1024)
		mark := rng.Uint32() | 1<<rng.IntN(32) // non-zero
		specs = append(specs, RuleSpec{
			FirstQueue: uint16(rng.IntN(65536 - n + 1)), Queues: n,
			Mark: mark, BypassMark: (rng.Uint32() | 1<<rng.IntN(32)) &^ mark,
			FastPath: rng.IntN(2) == 0, FailOpen: rng.IntN(2) == 0,
		})
	}
	for _, s := range specs {
		if s.BypassMark == 0 {
			continue // not a valid spec: the marks must not overlap and both be non-zero
		}
		for _, args := range [][]string{s.redirect(), s.companion()} {
			for i, a := range args {
				prev := ""
				if i > 0 {
					prev = args[i-1]
				}
				var ok bool
				switch prev {
				case "--mark", "--set-xmark":
					ok = maskPattern.MatchString(a) && (a == maskArg(s.Mark) || a == maskArg(s.BypassMark))
				case "--queue-num":
					ok = queuePattern.MatchString(a) && a == strconv.Itoa(int(s.FirstQueue)) && s.Queues == 1
				case "--queue-balance":
					ok = balancePattern.MatchString(a) && s.Queues > 1 &&
						a == fmt.Sprintf("%d:%d", s.FirstQueue, int(s.FirstQueue)+s.Queues-1)
				default:
					ok = ruleToken[a]
				}
				if !ok {
					t.Fatalf("spec %+v: argument %d %q (after %q) is not allowed there:\n%q", s, i, a, prev, args)
				}
			}
		}
	}
}

// TestIptablesCallsUseConstants reads iptables.go: every call into
// go-iptables names its table and chain with the package's constants, and
// passes rule arguments that are constants, literals, a RuleSpec's
// redirect or companion, or (in removeOurs only) a rule read back from
// `iptables -S`, never anything taken from the rule file.
func TestIptablesCallsUseConstants(t *testing.T) {
	fset := token.NewFileSet()
	file, err := parser.ParseFile(fset, "iptables.go", nil, 0)
	if err != nil {
		t.Fatal(err)
	}
	consts := map[string]bool{}
	for _, d := range file.Decls {
		if g, ok := d.(*ast.GenDecl); ok && g.Tok == token.CONST {
			for _, spec := range g.Specs {
				for _, n := range spec.(*ast.ValueSpec).Names {
					consts[n.Name] = true
				}
			}
		}
	}
	for _, c := range []string{"filterTable", "dockerUserChain", "forwardChain", "commentRedirect", "commentFastPath", "commentCreated"} {
		if !consts[c] {
			t.Fatalf("%s is not a constant of iptables.go", c)
		}
	}
	methods := map[string]bool{"ChainExists": true, "List": true, "NewChain": true, "Append": true, "Insert": true,
		"DeleteIfExists": true, "ClearAndDeleteChain": true, "Delete": true, "Exists": true, "AppendUnique": true, "ClearChain": true, "DeleteChain": true}
	calls := 0
	for _, d := range file.Decls {
		fn, ok := d.(*ast.FuncDecl)
		if !ok {
			continue
		}
		ast.Inspect(fn, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok || !methods[sel.Sel.Name] || !isIPTables(sel.X) {
				return true
			}
			calls++
			where := fset.Position(call.Pos())
			for i, arg := range call.Args {
				switch a := arg.(type) {
				case *ast.Ident:
					if !consts[a.Name] && !(fn.Name.Name == "deleteRules" && a.Name == "spec" && call.Ellipsis.IsValid()) {
						t.Errorf("%s: argument %d of %s is %s, not a constant", where, i, sel.Sel.Name, a.Name)
					}
				case *ast.BasicLit:
					if i < 2 {
						t.Errorf("%s: %s names its table or chain with a literal: use the constants", where, sel.Sel.Name)
					}
				case *ast.CallExpr:
					m, ok := a.Fun.(*ast.SelectorExpr)
					if !ok || (m.Sel.Name != "redirect" && m.Sel.Name != "companion") || i < 2 {
						t.Errorf("%s: argument %d of %s is a call that is not a RuleSpec's redirect or companion", where, i, sel.Sel.Name)
					}
				case *ast.SelectorExpr:
					// f.hook.table, f.hook.chain: a hook is one of the
					// package's two, built from the constants.
					inner, ok := a.X.(*ast.SelectorExpr)
					if !ok || inner.Sel.Name != "hook" || i >= 2 || (a.Sel.Name != "table" && a.Sel.Name != "chain") {
						t.Errorf("%s: argument %d of %s is %T that is not a hook's table or chain", where, i, sel.Sel.Name, arg)
					}
				default:
					t.Errorf("%s: argument %d of %s is a %T: only constants, literals and RuleSpec rules are allowed", where, i, sel.Sel.Name, arg)
				}
			}
			return true
		})
	}
	if calls < 10 {
		t.Errorf("found %d go-iptables calls in iptables.go; the test no longer sees them", calls)
	}
}

// isIPTables reports whether x is f.ipt (a family's *iptables.IPTables)
// or ipt (installRules' chainEditor, which is one).
func isIPTables(x ast.Expr) bool {
	if id, ok := x.(*ast.Ident); ok {
		return id.Name == "ipt"
	}
	sel, ok := x.(*ast.SelectorExpr)
	return ok && sel.Sel.Name == "ipt"
}
