package main

import (
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// shells are the programs that would interpret a string as a command line.
var shells = map[string]bool{
	"sh": true, "bash": true, "dash": true, "zsh": true, "ksh": true, "mksh": true, "ash": true,
	"csh": true, "tcsh": true, "fish": true, "busybox": true,
}

// TestNoShell proves that no string, from the rule file or elsewhere, ever
// reaches a shell: it reads every non-test Go file of the module's
// packages that a binary of ours links (go list -deps ./cmd/...; test
// rigs such as internal/dockerlab, which runs dockerd under a fixed
// script of its own, ship in no binary) and fails
// on a process started (exec.Command, exec.CommandContext, exec.Cmd,
// os.StartProcess, syscall.Exec, syscall.ForkExec) with a shell as the
// program, or with a "-c" argument when the program is not a literal name
// (a variable could hold a shell). Any string literal naming a shell fails
// too, whatever it is used for. The iptables binaries are run through
// go-iptables, which execs them directly (exec.Cmd with Path and Args).
func TestNoShell(t *testing.T) {
	root := filepath.Join("..", "..")
	shipped := shippedDirs(t)
	files, calls := 0, 0
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			if name := d.Name(); p != root && (strings.HasPrefix(name, ".") || name == "testdata" || name == "vendor") {
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return nil
		}
		if abs, err := filepath.Abs(filepath.Dir(p)); err != nil || !shipped[abs] {
			return err
		}
		files++
		n, errs := shellUses(p)
		calls += n
		for _, e := range errs {
			t.Error(e)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// The walk must have seen the module: the engine's own iptables probes
	// and the lab's commands start processes.
	if files < 50 || calls < 10 {
		t.Fatalf("walked %d Go files and %d process starts under %s: not the module?", files, calls, root)
	}
}

// shippedDirs returns the directories of the module's packages that the
// binaries under cmd/ link.
func shippedDirs(t *testing.T) map[string]bool {
	t.Helper()
	dirs := map[string]bool{}
	for _, d := range goList(t, "-deps", "-f", "{{if .Module}}{{if .Module.Main}}{{.Dir}}{{end}}{{end}}", "./cmd/...") {
		if d != "" {
			dirs[d] = true
		}
	}
	if len(dirs) < 10 {
		t.Fatalf("go list found %d packages of the module in the binaries", len(dirs))
	}
	return dirs
}

// shellUses parses one file and returns how many process starts it has and
// what in it could hand a string to a shell.
func shellUses(file string) (int, []string) {
	fset := token.NewFileSet()
	f, err := parser.ParseFile(fset, file, nil, 0)
	if err != nil {
		return 0, []string{err.Error()}
	}
	// The names the file imports os/exec, os and syscall under.
	names := map[string]string{}
	for _, imp := range f.Imports {
		p, _ := strconv.Unquote(imp.Path.Value)
		name := path.Base(p)
		if imp.Name != nil {
			name = imp.Name.Name
		}
		names[name] = p
	}
	var errs []string
	starts := 0
	report := func(n ast.Node, format string, args ...any) {
		errs = append(errs, fset.Position(n.Pos()).String()+": "+fmt.Sprintf(format, args...))
	}
	ast.Inspect(f, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.BasicLit:
			if s, err := strconv.Unquote(n.Value); err == nil && n.Kind == token.STRING && isShell(s) {
				report(n, "string literal %q names a shell", s)
			}
		case *ast.CompositeLit:
			if sel, ok := n.Type.(*ast.SelectorExpr); ok && names[identName(sel.X)] == "os/exec" && sel.Sel.Name == "Cmd" {
				starts++
			}
		case *ast.CallExpr:
			sel, ok := n.Fun.(*ast.SelectorExpr)
			if !ok {
				return true
			}
			pkg, fn := names[identName(sel.X)], sel.Sel.Name
			nameArg := -1
			switch {
			case pkg == "os/exec" && fn == "Command":
				nameArg = 0
			case pkg == "os/exec" && fn == "CommandContext":
				nameArg = 1
			case pkg == "os" && fn == "StartProcess", pkg == "syscall" && (fn == "Exec" || fn == "ForkExec"):
				nameArg = 0
			default:
				return true
			}
			starts++
			if nameArg >= len(n.Args) {
				return true
			}
			lit, literal := stringLit(n.Args[nameArg])
			if literal && isShell(lit) {
				report(n, "%s.%s runs the shell %q", path.Base(pkg), fn, lit)
			}
			for _, a := range n.Args[nameArg+1:] {
				if s, ok := stringLit(a); ok && s == "-c" && !literal {
					report(n, "%s.%s passes \"-c\" to a program that is not a literal name: it could be a shell", path.Base(pkg), fn)
				}
			}
		}
		return true
	})
	return starts, errs
}

// isShell reports whether s names a shell, as a name or a path.
func isShell(s string) bool {
	if s == "" || strings.ContainsAny(s, " \t\n") {
		return false
	}
	return shells[path.Base(s)]
}

func stringLit(e ast.Expr) (string, bool) {
	lit, ok := e.(*ast.BasicLit)
	if !ok || lit.Kind != token.STRING {
		return "", false
	}
	s, err := strconv.Unquote(lit.Value)
	return s, err == nil
}

func identName(e ast.Expr) string {
	if id, ok := e.(*ast.Ident); ok {
		return id.Name
	}
	return ""
}

// TestIsShell pins the matcher TestNoShell relies on.
func TestIsShell(t *testing.T) {
	for s, want := range map[string]bool{
		"sh": true, "/bin/sh": true, "/usr/bin/bash": true, "busybox": true,
		"iptables": false, "/usr/sbin/iptables-nft": false, "ip": false, "fish food": false, "": false,
		"shell": false, "./sh": true,
	} {
		if got := isShell(s); got != want {
			t.Errorf("isShell(%q) = %v, want %v", s, got, want)
		}
	}
}
