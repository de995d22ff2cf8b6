package cli

import (
	"bytes"
	"errors"
	"strings"
	"testing"
)

func TestParseFlags(t *testing.T) {
	for _, tc := range []struct {
		name    string
		args    []string
		wantErr bool
		stderr  string
	}{
		{"ok", []string{"-c", "x.toml"}, false, ""},
		{"help", []string{"-h"}, true, "Usage of prog cmd"},
		{"unknown flag", []string{"--nope"}, true, "flag provided but not defined: -nope"},
		{"extra argument", []string{"-c", "x.toml", "extra"}, true, `unexpected argument "extra"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stderr bytes.Buffer
			fs := NewFlags("prog", "cmd", &stderr)
			c := fs.String("c", "", "")
			err := ParseFlags(fs, tc.args)
			if got := err != nil; got != tc.wantErr {
				t.Fatalf("ParseFlags(%q) = %v, want error %v", tc.args, err, tc.wantErr)
			}
			if err != nil && !errors.Is(err, ErrUsage) {
				t.Errorf("ParseFlags(%q) = %v, want it to wrap ErrUsage", tc.args, err)
			}
			if !strings.Contains(stderr.String(), tc.stderr) {
				t.Errorf("stderr %q lacks %q", stderr.String(), tc.stderr)
			}
			if !tc.wantErr && *c != "x.toml" {
				t.Errorf("-c = %q, want x.toml", *c)
			}
			if set := FlagSet(fs, "c"); !tc.wantErr && !set {
				t.Errorf("FlagSet(c) = false after -c was given")
			}
		})
	}
	fs := NewFlags("prog", "cmd", &bytes.Buffer{})
	fs.String("c", "default", "")
	if err := ParseFlags(fs, nil); err != nil || FlagSet(fs, "c") {
		t.Errorf("no flags: err %v, FlagSet(c) = %v; want nil, false", err, FlagSet(fs, "c"))
	}
}
