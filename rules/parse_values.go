package rules

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// floatText writes a number as a file would: "20", "0.5", "1000000".
func floatText(f float64) string {
	return strconv.FormatFloat(f, 'f', -1, 64)
}

// durationText writes d as a file would: "250ms", "1s", "60s" (where
// time.Duration says "1m0s").
func durationText(d time.Duration) string {
	if d >= time.Second && d%time.Second == 0 {
		return strconv.FormatInt(int64(d/time.Second), 10) + "s"
	}
	return d.String()
}

// cleanName reports whether s is safe to print in logs and aligned output.
func cleanName(s string) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if unicode.IsSpace(r) || unicode.IsControl(r) {
			return false
		}
	}
	return true
}

// ---- typed accessors ----
//
// Each returns ok only when the key is present and valid; a present but
// invalid value has already been reported. Callers use has() to tell absent
// from invalid where that matters.

func has(m map[string]any, key string) bool {
	_, ok := m[key]
	return ok
}

func nonEmpty(v any) bool {
	switch v := v.(type) {
	case nil:
		return false
	case []any:
		return len(v) > 0
	}
	return true
}

// section returns the sub-table doc[key], reporting a non-table value.
func (p *parser) section(m map[string]any, at, key string) (map[string]any, bool) {
	v, ok := m[key]
	if !ok {
		return nil, false
	}
	sub, ok := v.(map[string]any)
	if !ok {
		p.errorf(joinPath(at, key), "must be a table ([%s]), got %s", key, describe(v))
	}
	return sub, ok
}

// tables returns the array of tables m[key]. A nil entry marks an element
// that was not a table (already reported), keeping indexes aligned.
func (p *parser) tables(m map[string]any, at, key string) ([]map[string]any, bool) {
	v, ok := m[key]
	if !ok {
		return nil, false
	}
	header := "[[" + key + "]]"
	if at != "" {
		header = "[[container." + key + "]]"
	}
	switch v := v.(type) {
	case []map[string]any:
		return v, true
	case []any:
		out := make([]map[string]any, len(v))
		for i, e := range v {
			if t, ok := e.(map[string]any); ok {
				out[i] = t
			} else {
				p.errorf(indexPath(joinPath(at, key), i), "must be a table, got %s", describe(e))
			}
		}
		return out, true
	}
	p.errorf(joinPath(at, key), "must be an array of tables (%s), got %s", header, describe(v))
	return nil, false
}

func (p *parser) str(m map[string]any, at, key string) (string, bool) {
	v, ok := m[key]
	if !ok {
		return "", false
	}
	s, ok := v.(string)
	if !ok {
		p.errorf(joinPath(at, key), "must be a string, got %s", describe(v))
	}
	return s, ok
}

func (p *parser) requiredStr(m map[string]any, at, key string) (string, bool) {
	if !has(m, key) {
		p.errorf(joinPath(at, key), "missing required key %q", key)
		return "", false
	}
	return p.str(m, at, key)
}

func (p *parser) boolean(m map[string]any, at, key string) (bool, bool) {
	v, ok := m[key]
	if !ok {
		return false, false
	}
	b, ok := v.(bool)
	if !ok {
		p.errorf(joinPath(at, key), "must be true or false, got %s", describe(v))
	}
	return b, ok
}

func (p *parser) integer(m map[string]any, at, key string) (int64, bool) {
	v, ok := m[key]
	if !ok {
		return 0, false
	}
	n, ok := v.(int64)
	if !ok {
		p.errorf(joinPath(at, key), "must be an integer, got %s", describe(v))
	}
	return n, ok
}

func (p *parser) intRange(m map[string]any, at, key string, lo, hi int64) (int64, bool) {
	n, ok := p.integer(m, at, key)
	if ok && (n < lo || n > hi) {
		p.errorf(joinPath(at, key), "%d is out of range %d..%d", n, lo, hi)
		return 0, false
	}
	return n, ok
}

// mask reads a non-zero 32-bit mark, shown in hex because that is how marks
// are written in the file and in iptables.
func (p *parser) mask(m map[string]any, at, key string) (uint32, bool) {
	n, ok := p.integer(m, at, key)
	switch {
	case !ok:
		return 0, false
	case n == 0:
		p.errorf(joinPath(at, key), "must be non-zero: it is the bit nfqguard sets and tests")
		return 0, false
	case n < 0 || n > 0xffffffff:
		p.errorf(joinPath(at, key), "%#x is out of range 0x1..0xffffffff (a 32-bit mark)", n)
		return 0, false
	}
	return uint32(n), true
}

func (p *parser) action(m map[string]any, at, key string) (Action, bool) {
	s, ok := p.str(m, at, key)
	if !ok {
		return 0, false
	}
	switch s {
	case "allow":
		return Allow, true
	case "drop":
		return Drop, true
	}
	p.errorf(joinPath(at, key), `%q is not an action; use "allow" or "drop"`, s)
	return 0, false
}

// eachPort calls fn for every element of m["ports"] as text: the schema
// writes ports as strings ("80", "8000-8100"), and a bare number (80) is
// accepted too because that is how people write a port.
func (p *parser) eachPort(m map[string]any, at string, fn func(key, s string)) {
	v, ok := m["ports"]
	if !ok {
		return
	}
	path := joinPath(at, "ports")
	arr, ok := v.([]any)
	if !ok {
		p.errorf(path, "must be an array of ports, got %s", describe(v))
		return
	}
	for i, e := range arr {
		switch e := e.(type) {
		case string:
			fn(indexPath(path, i), e)
		case int64:
			fn(indexPath(path, i), strconv.FormatInt(e, 10))
		default:
			p.errorf(indexPath(path, i), `must be a port ("80" or 80) or a range ("8000-8100"), got %s`, describe(e))
		}
	}
}

// eachString calls fn for every element of the string array m[key], with the
// element's key path; non-string elements are reported.
func (p *parser) eachString(m map[string]any, at, key string, fn func(key, s string)) {
	v, ok := m[key]
	if !ok {
		return
	}
	path := joinPath(at, key)
	arr, ok := v.([]any)
	if !ok {
		p.errorf(path, "must be an array of strings, got %s", describe(v))
		return
	}
	for i, e := range arr {
		s, ok := e.(string)
		if !ok {
			p.errorf(indexPath(path, i), "must be a string, got %s", describe(e))
			continue
		}
		fn(indexPath(path, i), s)
	}
}

// checkKeys reports keys of m that are not in allowed. where names the table
// for the message ("" for the top level).
func (p *parser) checkKeys(m map[string]any, at, where string, allowed ...string) {
	var unknown []string
	for k := range m {
		if !slices.Contains(allowed, k) {
			unknown = append(unknown, k)
		}
	}
	slices.Sort(unknown) // map order is random; errors are re-sorted by line later
	for _, k := range unknown {
		msg := fmt.Sprintf("unknown key %q", k)
		if where != "" {
			msg += " in " + where
		} else {
			msg = fmt.Sprintf("unknown top-level key %q", k)
		}
		msg += suggest(k, allowed)
		p.errorf(joinPath(at, k), "%s", msg)
	}
}

// suggest names the allowed keys closest to k, if k is plausibly a typo of
// them, as ` (did you mean "a" or "b"?)`; ties are all listed because
// guessing wrong ("prots": proto or ports?) is worse than asking.
func suggest(k string, allowed []string) string {
	const maxTypo = 2 // more edits than this is a different word
	var best []string
	bestDist := maxTypo + 1
	for _, a := range allowed {
		d := editDistance(k, a)
		if d > maxTypo || d >= len(a) {
			continue
		}
		if d < bestDist {
			best, bestDist = best[:0], d
		}
		if d == bestDist {
			best = append(best, strconv.Quote(a))
		}
	}
	if len(best) == 0 {
		return ""
	}
	return " (did you mean " + strings.Join(best, " or ") + "?)"
}

// editDistance is the optimal-string-alignment distance between a and b in
// bytes: Levenshtein plus adjacent transpositions, the commonest typo.
func editDistance(a, b string) int {
	if len(a) > 64 || len(b) > 64 {
		return 1 << 30 // not a typo; also bounds the work on hostile input
	}
	// d[i][j] is the distance between a[:i] and b[:j].
	d := make([][]int, len(a)+1)
	for i := range d {
		d[i] = make([]int, len(b)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(a); i++ {
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && a[i-1] == b[j-2] && a[i-2] == b[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(a)][len(b)]
}

// describe names a decoded TOML value's type for messages, with the value
// itself when it is short enough to help.
func describe(v any) string {
	switch v := v.(type) {
	case string:
		if len(v) > 40 {
			return "a string"
		}
		return fmt.Sprintf("a string (%q)", v)
	case int64:
		return fmt.Sprintf("an integer (%d)", v)
	case float64:
		return fmt.Sprintf("a float (%v)", v)
	case bool:
		return fmt.Sprintf("a boolean (%v)", v)
	case time.Time: // local dates and times decode to time.Time as well
		return "a date/time"
	case []any, []map[string]any:
		return "an array"
	case map[string]any:
		return "a table"
	}
	return fmt.Sprintf("%T", v)
}
