package main

// In-process tests of the command line: no root, no lab.

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/nfqguard/nfqguard/daemon"
	"github.com/nfqguard/nfqguard/internal/cli"
)

const repoConfig = "../../config.toml"

func runCLI(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errb bytes.Buffer
	err = run(t.Context(), args, &out, &errb)
	return out.String(), errb.String(), err
}

func TestCLICheckRepoConfig(t *testing.T) {
	src, err := os.ReadFile(repoConfig)
	if err != nil {
		t.Fatal(err)
	}
	ids := regexp.MustCompile(`(?m)^\s*id\s*=\s*"([^"]+)"`).FindAllStringSubmatch(string(src), -1)
	if len(ids) == 0 {
		t.Fatalf("no rule ids found in %s", repoConfig)
	}
	stdout, stderr, err := runCLI(t, "check", "-c", repoConfig)
	if err != nil {
		t.Fatalf("check %s: %v\nstderr:\n%s", repoConfig, err, stderr)
	}
	for _, id := range ids {
		if !strings.Contains(stdout, id[1]) {
			t.Errorf("check output lacks rule id %q:\n%s", id[1], stdout)
		}
	}
	for _, name := range []string{"web", "db"} {
		if !strings.Contains(stdout, name+" (") {
			t.Errorf("check output lacks container %q:\n%s", name, stdout)
		}
	}
	if !strings.Contains(stdout, repoConfig+": ok") {
		t.Errorf("check output does not end with %q:\n%s", repoConfig+": ok", stdout)
	}
}

func TestCLICheckBrokenConfig(t *testing.T) {
	for _, tc := range []struct {
		name, cfg string
		line      string
		key       string
	}{
		{"malformed", "[engine]\nqueue = 0\nqueue = 1\n", "3", "engine.queue"},
		{"invalid", "[[container]]\nname = \"web\"\nips = [\"172.17.0.2\"]\n\n  [[container.rule]]\n  id = \"web-in\"\n" +
			"  direction = \"ingress\"\n  from = [\"10.0.0.0/33\"]\n  action = \"allow\"\n", "8", "container[0].rule[0].from[0]"},
		{"unknown key", "[defaults]\ningres = \"drop\"\n", "2", "defaults.ingres"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "broken.toml")
			if err := os.WriteFile(path, []byte(tc.cfg), 0o644); err != nil {
				t.Fatal(err)
			}
			stdout, _, err := runCLI(t, "check", "-c", path)
			if err == nil {
				t.Fatalf("check accepted a broken file; stdout:\n%s", stdout)
			}
			if errors.Is(err, cli.ErrUsage) {
				t.Errorf("a broken rule file is not a usage error (exit 2): %v", err)
			}
			msg := err.Error()
			if loc := path + ":" + tc.line + ":"; !strings.Contains(msg, loc) || !strings.Contains(msg, tc.key) {
				t.Errorf("error %q: want the place %q and the key %q", msg, loc, tc.key)
			}
			if strings.Contains(stdout, ": ok") {
				t.Errorf("check printed ok for a broken file:\n%s", stdout)
			}
		})
	}
}

func TestCLIUsage(t *testing.T) {
	t.Run("no args", func(t *testing.T) {
		_, stderr, err := runCLI(t)
		if !errors.Is(err, cli.ErrUsage) {
			t.Errorf("no arguments: err = %v, want cli.ErrUsage", err)
		}
		if !strings.Contains(stderr, "usage: nfqguard") {
			t.Errorf("no arguments: stderr lacks the usage:\n%s", stderr)
		}
	})
	t.Run("unknown command", func(t *testing.T) {
		_, stderr, err := runCLI(t, "frobnicate")
		if !errors.Is(err, cli.ErrUsage) {
			t.Errorf("unknown command: err = %v, want cli.ErrUsage", err)
		}
		if !strings.Contains(stderr, `unknown command "frobnicate"`) {
			t.Errorf("unknown command: stderr does not name it:\n%s", stderr)
		}
	})
	t.Run("unknown flag", func(t *testing.T) {
		_, _, err := runCLI(t, "check", "--no-such-flag")
		if !errors.Is(err, cli.ErrUsage) {
			t.Errorf("unknown flag: err = %v, want cli.ErrUsage", err)
		}
	})
	t.Run("extra argument", func(t *testing.T) {
		_, _, err := runCLI(t, "check", "-c", repoConfig, "extra")
		if !errors.Is(err, cli.ErrUsage) {
			t.Errorf("extra argument: err = %v, want cli.ErrUsage", err)
		}
	})
	t.Run("help", func(t *testing.T) {
		stdout, _, err := runCLI(t, "help")
		if err != nil || !strings.Contains(stdout, "usage: nfqguard") {
			t.Errorf("help: err = %v, stdout:\n%s", err, stdout)
		}
	})
}

func TestCLIRunMissingConfig(t *testing.T) {
	path := filepath.Join(t.TempDir(), "does-not-exist.toml")
	stdout, _, err := runCLI(t, "run", "-c", path)
	if err == nil {
		t.Fatal("run with a missing config file succeeded")
	}
	if errors.Is(err, cli.ErrUsage) {
		t.Errorf("a missing config file is not a usage error: %v", err)
	}
	if !strings.Contains(err.Error(), path) || !errors.Is(err, os.ErrNotExist) {
		t.Errorf("error %q: want it to name %s and wrap os.ErrNotExist", err, path)
	}
	if stdout != "" {
		t.Errorf("run wrote to stdout: %q", stdout)
	}
}

// TestCLIRefusesInsecureConfig: check refuses what run would, and says how
// to fix it.
func TestCLIRefusesInsecureConfig(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "d")
	must(t, os.Mkdir(dir, 0o700))
	path := filepath.Join(dir, "config.toml")
	must(t, os.WriteFile(path, []byte("[defaults]\ningress = \"allow\"\n"), 0o600))
	if _, _, err := runCLI(t, "check", "-c", path); err != nil {
		t.Fatalf("check of a private file: %v", err)
	}
	must(t, os.Chmod(path, 0o666))
	stdout, _, err := runCLI(t, "check", "-c", path)
	if !errors.Is(err, daemon.ErrInsecureConfig) || !strings.Contains(err.Error(), "chmod go-w "+path) {
		t.Errorf("check of a world-writable file: %v, want it refused with the fix", err)
	}
	if stdout != "" {
		t.Errorf("check printed a table for a refused file:\n%s", stdout)
	}
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}
