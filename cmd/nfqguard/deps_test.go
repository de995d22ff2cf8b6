package main

// What the daemon binary links, and which way the module's imports point:
// read from `go list`, so that a new import anywhere is judged by the same
// rule.

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

const module = "github.com/nfqguard/nfqguard"

// rigs are the module's test rigs and lab tools: no package of the
// product may import them (test files may).
var rigs = []string{
	module + "/bench",
	module + "/internal/netlab",
	module + "/internal/dockerlab",
	module + "/internal/traffic",
	module + "/internal/netns",
	module + "/test",
	module + "/cmd/nfqguard-lab",
}

// within reports whether pkg is prefix or below it.
func within(pkg, prefix string) bool {
	return pkg == prefix || strings.HasPrefix(pkg, prefix+"/")
}

// goList runs go list with args from the module root and returns its
// lines.
func goList(t *testing.T, args ...string) []string {
	t.Helper()
	cmd := exec.Command("go", append([]string{"list"}, args...)...)
	cmd.Dir = "../.."
	out, err := cmd.Output()
	if err != nil {
		var stderr string
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = string(ee.Stderr)
		}
		t.Fatalf("go list %s: %v\n%s", strings.Join(args, " "), err, stderr)
	}
	return strings.Split(strings.TrimSpace(string(out)), "\n")
}

// TestDaemonLinksNoLab: the binary a Docker host runs as root links what
// it needs to judge packets and nothing else: no plotting, no lab or
// benchmark, no leak-check package. With -tags leakcheck (how the
// end-to-end tests build it) goleak comes in, which shows that the check
// looks at the right list.
func TestDaemonLinksNoLab(t *testing.T) {
	banned := append([]string{"go.uber.org/goleak"}, rigs...)
	for _, d := range goList(t, "-deps", "./cmd/nfqguard") {
		bad := strings.HasPrefix(d, "gonum.org/")
		for _, b := range banned {
			bad = bad || within(d, b)
		}
		if bad {
			t.Errorf("cmd/nfqguard links %s", d)
		}
	}
	tagged := goList(t, "-deps", "-tags", "leakcheck", "./cmd/nfqguard")
	if !slices.Contains(tagged, "go.uber.org/goleak") {
		t.Error("cmd/nfqguard built with -tags leakcheck does not link goleak: the check above reads the wrong list")
	}
}

// layers are the product's core packages in import order: a package may
// import those of a lower layer only (cmd -> daemon -> queue -> inspect ->
// rules; firewall, beside inspect, imports neither it nor rules).
var layers = map[string]int{
	module + "/rules":    0,
	module + "/inspect":  1,
	module + "/firewall": 1,
	module + "/queue":    2,
	module + "/daemon":   3,
	module + "/cmd":      4,
}

func layerOf(pkg string) (int, bool) {
	for prefix, l := range layers {
		if within(pkg, prefix) {
			return l, true
		}
	}
	return 0, false
}

// TestImportsPointOneWay: no product package imports a test rig, and the
// core layers import downwards only.
func TestImportsPointOneWay(t *testing.T) {
	n := 0
	for _, line := range goList(t, "-f", "{{.ImportPath}} {{join .Imports \" \"}}", "./...") {
		fields := strings.Fields(line)
		pkg, imports := fields[0], fields[1:]
		rig := false
		for _, r := range rigs {
			rig = rig || within(pkg, r)
		}
		from, layered := layerOf(pkg)
		for _, imp := range imports {
			if !strings.HasPrefix(imp, module+"/") {
				continue
			}
			n++
			if !rig {
				for _, r := range rigs {
					if within(imp, r) {
						t.Errorf("product package %s imports the test rig %s", pkg, imp)
					}
				}
			}
			if to, ok := layerOf(imp); layered && ok && to >= from && !within(imp, pkg) && !within(pkg, imp) {
				t.Errorf("%s (layer %d) imports %s (layer %d): imports point cmd -> daemon -> queue -> inspect -> rules", pkg, from, imp, to)
			}
		}
	}
	if n == 0 {
		t.Fatal("go list showed no import within the module: the check read nothing")
	}
}
