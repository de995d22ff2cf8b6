// Package docs_test keeps the documentation honest: every TOML example in
// README.md, CONTRIBUTING.md and docs/*.md loads with the real loader, every
// key the loader accepts is documented somewhere, and every relative link
// leads to a file of the repository (as coredns's readme_test.go does for
// its plugins' READMEs).
package docs_test

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/BurntSushi/toml"

	"github.com/nfqguard/nfqguard/rules"
)

// docFiles are the documents checked, relative to the repository root.
func docFiles(t *testing.T) []string {
	t.Helper()
	files := []string{"README.md", "CONTRIBUTING.md"}
	more, err := filepath.Glob("../docs/*.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range more {
		files = append(files, filepath.Join("docs", filepath.Base(m)))
	}
	return files
}

// block is one fenced code block of a document.
type block struct {
	file string
	line int // of the opening fence
	info string
	text string
}

// blocks returns the fenced code blocks of a Markdown document.
func blocks(file, src string) []block {
	var out []block
	var cur *block
	var fence string
	for i, l := range strings.Split(src, "\n") {
		trimmed := strings.TrimSpace(l)
		switch {
		case cur == nil && (strings.HasPrefix(trimmed, "```") || strings.HasPrefix(trimmed, "~~~")):
			fence = trimmed[:3]
			cur = &block{file: file, line: i + 1, info: strings.TrimSpace(trimmed[3:])}
		case cur != nil && strings.HasPrefix(trimmed, fence) && strings.TrimSpace(strings.TrimLeft(trimmed, fence[:1])) == "":
			out = append(out, *cur)
			cur = nil
		case cur != nil:
			cur.text += l + "\n"
		}
	}
	return out
}

func read(t *testing.T, file string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", file))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// tomlKeys collects the dotted paths of the keys a TOML document sets,
// with arrays of tables named by their header ("container.rule.id").
func tomlKeys(prefix string, v any, into map[string]bool) {
	switch v := v.(type) {
	case map[string]any:
		for k, sub := range v {
			p := k
			if prefix != "" {
				p = prefix + "." + k
			}
			switch sub.(type) {
			case map[string]any, []map[string]any:
				tomlKeys(p, sub, into)
			default:
				into[p] = true
			}
		}
	case []map[string]any:
		for _, m := range v {
			tomlKeys(prefix, m, into)
		}
	}
}

// TestTOMLExamplesLoad: every ```toml block is a rule file the loader
// accepts as it stands.
func TestTOMLExamplesLoad(t *testing.T) {
	n := 0
	for _, f := range docFiles(t) {
		for _, b := range blocks(f, read(t, f)) {
			if b.info != "toml" {
				continue
			}
			n++
			name := fmt.Sprintf("%s:%d", b.file, b.line)
			if _, err := rules.Parse(name, []byte(b.text)); err != nil {
				t.Errorf("the TOML example at %s does not load (lines count from its first line):\n%v", name, err)
			}
		}
	}
	if n == 0 {
		t.Fatal("no ```toml block found: the test read nothing")
	}
}

// documented returns the keys the documents name: set in a ```toml block,
// or written as their dotted path in backticks.
func documented(t *testing.T) map[string]bool {
	t.Helper()
	keys := map[string]bool{}
	tick := regexp.MustCompile("`([a-z_]+(?:\\.[a-z_0-9]+)+)`")
	for _, f := range docFiles(t) {
		src := read(t, f)
		for _, b := range blocks(f, src) {
			if b.info != "toml" {
				continue
			}
			var m map[string]any
			if _, err := toml.Decode(b.text, &m); err == nil {
				tomlKeys("", m, keys)
			}
		}
		for _, m := range tick.FindAllStringSubmatch(src, -1) {
			keys[m[1]] = true
		}
	}
	return keys
}

// undocumented returns the keys of all that doc does not name.
func undocumented(all []rules.KeyInfo, doc map[string]bool) []rules.KeyInfo {
	var out []rules.KeyInfo
	for _, k := range all {
		if !doc[k.Path] {
			out = append(out, k)
		}
	}
	return out
}

// TestEveryKeyDocumented: a key the loader accepts that no document names
// is a setting nobody can find.
func TestEveryKeyDocumented(t *testing.T) {
	all := rules.Keys()
	if len(all) == 0 {
		t.Fatal("rules.Keys() is empty")
	}
	for _, k := range undocumented(all, documented(t)) {
		t.Errorf("key %s (under %s) is documented nowhere: name it as `%s` in docs/configuration.md or set it in a ```toml example",
			k.Path, k.Table, k.Path)
	}
}

// TestUndocumentedKeyFails: the check above bites. A key the loader would
// accept but no document names is reported, and so is a real key once the
// documents stop naming it.
func TestUndocumentedKeyFails(t *testing.T) {
	doc := documented(t)
	all := rules.Keys()
	fake := rules.KeyInfo{Path: "engine.no_such_key", Table: "[engine]"}
	if got := undocumented(append(slices.Clone(all), fake), doc); !slices.Contains(got, fake) {
		t.Errorf("an undocumented key was not reported: %v", got)
	}
	delete(doc, all[0].Path)
	if got := undocumented(all, doc); !slices.Contains(got, all[0]) {
		t.Errorf("%s, no longer named, was not reported: %v", all[0].Path, got)
	}
}

// TestLinksResolve: every relative link of the documents names a file or
// folder of the repository.
func TestLinksResolve(t *testing.T) {
	link := regexp.MustCompile(`\]\(([^)\s]+)\)`)
	for _, f := range docFiles(t) {
		for _, m := range link.FindAllStringSubmatch(read(t, f), -1) {
			target := m[1]
			if strings.Contains(target, "://") || strings.HasPrefix(target, "#") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			target, _, _ = strings.Cut(target, "#")
			p := filepath.Join("..", filepath.Dir(f), target)
			if _, err := os.Stat(p); err != nil {
				t.Errorf("%s links to %s, which does not exist", f, m[1])
			}
		}
	}
}
