package main

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/nfqguard/nfqguard/internal/cli"
)

// runCLI runs the lab binary's command line in process.
func runCLI(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errb bytes.Buffer
	err = run(t.Context(), args, &out, &errb)
	return out.String(), errb.String(), err
}

func TestCLIBenchUsage(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string // in stderr
	}{
		{"bench help", []string{"bench", "-h"}, "usage: nfqguard-lab bench [-c FILE] [--quick] [--out DIR]"},
		{"bench unknown flag", []string{"bench", "--no-such-flag"}, "flag provided but not defined: -no-such-flag"},
		{"bench extra argument", []string{"bench", "extra"}, `unexpected argument "extra"`},
		{"floor-go help", []string{"floor-go", "-h"}, "usage: nfqguard-lab floor-go [--queue N]"},
		{"floor-go unknown flag", []string{"floor-go", "--quick"}, "flag provided but not defined: -quick"},
		{"floor-go queue out of range", []string{"floor-go", "--queue", "65536"}, "--queue 65536: want 0-65535"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stdout, stderr, err := runCLI(t, tc.args...)
			if !errors.Is(err, cli.ErrUsage) {
				t.Errorf("err = %v, want a usage error (exit 2)", err)
			}
			if !strings.Contains(stderr, tc.want) {
				t.Errorf("stderr lacks %q:\n%s", tc.want, stderr)
			}
			if stdout != "" {
				t.Errorf("stdout = %q, want nothing", stdout)
			}
		})
	}
	// -h lists every flag.
	_, stderr, _ := runCLI(t, "bench", "-h")
	for _, flag := range []string{"-c string", "-quick", "-out string", "-engine string"} {
		if !strings.Contains(stderr, flag) {
			t.Errorf("bench -h does not list %s:\n%s", flag, stderr)
		}
	}
}

func TestCLIUsageListsBench(t *testing.T) {
	stdout, _, err := runCLI(t, "help")
	if err != nil {
		t.Fatal(err)
	}
	for _, cmd := range []string{"bench  [-c FILE] [--quick] [--out DIR]", "floor-go [--queue N]"} {
		if !strings.Contains(stdout, cmd) {
			t.Errorf("usage lacks %q:\n%s", cmd, stdout)
		}
	}
}

// TestFindEngine: --engine wins; else the nfqguard beside the lab binary.
func TestFindEngine(t *testing.T) {
	dir := t.TempDir()
	named := filepath.Join(dir, "my-nfqguard")
	if got, err := findEngine(named); err != nil || got != named {
		t.Errorf("findEngine(%q) = %q, %v; want it as given", named, got, err)
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	beside := filepath.Join(filepath.Dir(self), "nfqguard")
	if _, err := os.Stat(beside); err == nil {
		t.Fatalf("%s exists already: cannot test the lookup beside the test binary", beside)
	}
	if err := os.WriteFile(beside, []byte("#!/bin/false\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	defer os.Remove(beside)
	if got, err := findEngine(""); err != nil || got != beside {
		t.Errorf("findEngine(\"\") = %q, %v; want %s, beside the binary", got, err, beside)
	}
}
