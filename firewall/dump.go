package firewall

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"strconv"
	"strings"
)

// table is one table of one family as `iptables -t T -S -v` lists it:
// which chains exist and their rules in order, with their packet counters.
type table struct {
	chains map[string][]listedRule
	policy map[string]string // built-in chain -> its policy
}

// listedRule is one "-A CHAIN …" line without its counters.
type listedRule struct {
	chain   string
	args    []string // after "-A CHAIN", as iptables-restore reads them back
	line    string   // "-A CHAIN …" without the counters, for messages
	packets uint64
}

// target returns the rule's -j or -g target and whether it is a goto.
func (r listedRule) target() (string, bool) {
	for i := 0; i+1 < len(r.args); i++ {
		switch r.args[i] {
		case "-j", "--jump":
			return r.args[i+1], false
		case "-g", "--goto":
			return r.args[i+1], true
		}
	}
	return "", false
}

// has reports whether the chain exists.
func (t *table) has(chain string) bool {
	_, ok := t.chains[chain]
	return ok
}

// parseTable reads `iptables -S -v` output. Built-in chains appear through
// their "-P" lines, user chains through "-N".
func parseTable(out string) (*table, error) {
	t := &table{chains: map[string][]listedRule{}, policy: map[string]string{}}
	for n, line := range strings.Split(out, "\n") {
		line = strings.TrimSpace(line)
		if line == "" {
			continue
		}
		words, err := splitWords(line)
		if err != nil {
			return nil, fmt.Errorf("line %d %q: %w", n+1, line, err)
		}
		if len(words) < 2 {
			return nil, fmt.Errorf("line %d %q: too short", n+1, line)
		}
		switch words[0] {
		case "-P", "-N":
			if words[0] == "-P" && len(words) > 2 {
				t.policy[words[1]] = words[2]
			}
			if _, ok := t.chains[words[1]]; !ok {
				t.chains[words[1]] = nil
			}
		case "-A":
			r := listedRule{chain: words[1]}
			rest := words[2:]
			for i := 0; i < len(rest); i++ {
				if rest[i] == "-c" && i+2 < len(rest) {
					if p, err := strconv.ParseUint(rest[i+1], 10, 64); err == nil {
						r.packets = p
						i += 2
						continue
					}
				}
				r.args = append(r.args, rest[i])
			}
			r.line = "-A " + r.chain + " " + joinWords(r.args)
			t.chains[r.chain] = append(t.chains[r.chain], r)
		default:
			return nil, fmt.Errorf("line %d %q: unknown command %s", n+1, line, words[0])
		}
	}
	return t, nil
}

// splitWords splits a line of iptables -S output into words the way
// iptables-restore does: on blanks, with double quotes around a word that
// holds blanks and backslash escaping a quote inside one.
func splitWords(line string) ([]string, error) {
	var words []string
	var w strings.Builder
	inWord, quoted := false, false
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case quoted && c == '\\' && i+1 < len(line) && (line[i+1] == '"' || line[i+1] == '\\'):
			i++
			w.WriteByte(line[i])
		case c == '"':
			quoted = !quoted
			inWord = true
		case !quoted && (c == ' ' || c == '\t'):
			if inWord {
				words = append(words, w.String())
				w.Reset()
				inWord = false
			}
		default:
			w.WriteByte(c)
			inWord = true
		}
	}
	if quoted {
		return nil, fmt.Errorf("unterminated quote")
	}
	if inWord {
		words = append(words, w.String())
	}
	return words, nil
}

// joinWords is the inverse of splitWords.
func joinWords(words []string) string {
	var b strings.Builder
	for i, w := range words {
		if i > 0 {
			b.WriteByte(' ')
		}
		if w == "" || strings.ContainsAny(w, " \t\"\\") {
			b.WriteByte('"')
			b.WriteString(strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(w))
			b.WriteByte('"')
			continue
		}
		b.WriteString(w)
	}
	return b.String()
}

// listTable runs `BIN -w -t T -S -v`.
func listTable(ctx context.Context, bin, name string) (*table, error) {
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, "-w", "-t", name, "-S", "-v")
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("%s -t %s -S: %w: %s", bin, name, err, strings.TrimSpace(stderr.String()))
	}
	t, err := parseTable(string(out))
	if err != nil {
		return nil, fmt.Errorf("%s -t %s -S: %w", bin, name, err)
	}
	return t, nil
}

// restore applies script (nothing when it is empty) with `BIN-restore -w --noflush`: one transaction,
// so that a rule replaced in it is never missing in between.
func restore(ctx context.Context, bin, script string) error {
	if script == "" {
		return nil
	}
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, bin+restoreSuffix, "-w", "--noflush")
	cmd.Stdin = strings.NewReader(script)
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s%s: %w: %s", bin, restoreSuffix, err, strings.TrimSpace(stderr.String()))
	}
	return nil
}
