package rules

import (
	"fmt"
	"strconv"
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
