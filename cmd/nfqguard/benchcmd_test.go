package main

import (
	"errors"
	"strings"
	"testing"
)

func TestCLIBenchUsage(t *testing.T) {
	for _, tc := range []struct {
		name string
		args []string
		want string // in stderr
	}{
		{"bench help", []string{"bench", "-h"}, "usage: nfqguard bench [-c FILE] [--quick] [--out DIR]"},
		{"bench unknown flag", []string{"bench", "--no-such-flag"}, "flag provided but not defined: -no-such-flag"},
		{"bench extra argument", []string{"bench", "extra"}, `unexpected argument "extra"`},
		{"floor-go help", []string{"floor-go", "-h"}, "usage: nfqguard floor-go [--queue N]"},
		{"floor-go unknown flag", []string{"floor-go", "--quick"}, "flag provided but not defined: -quick"},
		{"floor-go queue out of range", []string{"floor-go", "--queue", "65536"}, "--queue 65536: want 0-65535"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			stdout, stderr, err := runCLI(t, tc.args...)
			if !errors.Is(err, errUsage) {
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
	for _, flag := range []string{"-c string", "-quick", "-out string"} {
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
