package rules

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// testCPUs makes "workers = 0" resolve identically on every machine.
const testCPUs = 4

func mustParse(tb testing.TB, name string, data []byte) *Table {
	tb.Helper()
	t, err := parse(name, data, testCPUs)
	if err != nil {
		tb.Fatalf("parse %s: %v", name, err)
	}
	return t
}

func mustLoad(tb testing.TB, path string) *Table {
	tb.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	return mustParse(tb, filepath.Base(path), data)
}

// configErrors flattens an errors.Join of *ConfigError.
func configErrors(tb testing.TB, err error) []*ConfigError {
	tb.Helper()
	var errs []error
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		errs = j.Unwrap()
	} else {
		errs = []error{err}
	}
	out := make([]*ConfigError, 0, len(errs))
	for _, e := range errs {
		var ce *ConfigError
		if !errors.As(e, &ce) {
			tb.Fatalf("error %q (%T) is not a *ConfigError", e, e)
		}
		out = append(out, ce)
	}
	return out
}

// wantOneError checks that src, parsed as bad.toml, fails with exactly one
// error, at pos ("LINE:COL"), whose text contains msg.
func wantOneError(t *testing.T, src, pos, msg string) {
	t.Helper()
	_, err := parse("bad.toml", []byte(src), testCPUs)
	if err == nil {
		t.Fatalf("parse succeeded, want error %q", msg)
	}
	errs := configErrors(t, err)
	if len(errs) != 1 {
		t.Fatalf("got %d errors, want 1:\n%v", len(errs), err)
	}
	got := errs[0].Error()
	if want := "bad.toml:" + pos + ": "; !strings.HasPrefix(got, want) {
		t.Errorf("error %q does not start with %q", got, want)
	}
	if !strings.Contains(got, msg) {
		t.Errorf("error %q does not contain %q", got, msg)
	}
}
