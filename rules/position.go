package rules

import (
	"sort"
	"strconv"
	"strings"
)

// BurntSushi/toml keeps key positions private, and its decoded values carry
// none, so error messages would otherwise have no line numbers. posIndex
// re-scans the raw text and records where every key path is defined.
//
// The scanner only runs on text the TOML parser has already accepted, so it
// does not validate anything; it merely must never panic or loop on odd
// input, because a wrong guess costs a slightly wrong line number at worst.

// posIndex maps key paths to byte offsets in the file. Paths use the same
// spelling as ConfigError.Key: "engine.mark", "container[1]",
// "container[1].rule[0].ports", "container[0].ips[2]".
type posIndex struct {
	offs       map[string]int
	lineStarts []int // byte offset at which each line begins
}

// lookup returns the 1-based line and column where key is defined. A key
// that is not in the file (a missing required key, say) falls back to its
// nearest recorded ancestor, typically the table header, so a message always
// points at the right table. It returns 0, 0 only if no ancestor is known.
func (x *posIndex) lookup(key string) (line, col int) {
	for key != "" {
		if off, ok := x.offs[key]; ok {
			return x.lineCol(off)
		}
		key = parentPath(key)
	}
	return 0, 0
}

func (x *posIndex) lineCol(off int) (line, col int) {
	// Index of the last line starting at or before off.
	i := sort.SearchInts(x.lineStarts, off+1) - 1
	if i < 0 {
		i = 0
	}
	return i + 1, off - x.lineStarts[i] + 1
}

// parentPath strips the last ".name" or "[n]" from a key path.
func parentPath(key string) string {
	if strings.HasSuffix(key, "]") {
		if i := strings.LastIndexByte(key, '['); i >= 0 {
			return key[:i]
		}
	}
	if i := strings.LastIndexByte(key, '.'); i >= 0 {
		return key[:i]
	}
	return ""
}

// joinPath appends a key name to a path.
func joinPath(path, name string) string {
	if path == "" {
		return name
	}
	return path + "." + name
}

// indexPath appends an array index to a path.
func indexPath(path string, i int) string {
	return path + "[" + strconv.Itoa(i) + "]"
}

// indexPositions scans TOML text and returns its position index.
func indexPositions(data []byte) *posIndex {
	s := &posScanner{data: data, offs: map[string]int{}, counts: map[string]int{}}
	s.run()
	return &posIndex{offs: s.offs, lineStarts: lineStarts(data)}
}

// lineStarts returns the byte offset at which each line begins.
func lineStarts(data []byte) []int {
	starts := []int{0}
	for i, c := range data {
		if c == '\n' {
			starts = append(starts, i+1)
		}
	}
	return starts
}

type posScanner struct {
	data []byte
	i    int
	offs map[string]int
	// counts holds, per array-of-tables path (parent indexes included), how
	// many [[...]] headers have been seen. Because the key includes the
	// parent's index, "container[1].rule" starts at zero when the parent
	// advances without any explicit reset.
	counts map[string]int
}

func (s *posScanner) eof() bool { return s.i >= len(s.data) }

func (s *posScanner) at(off int) byte {
	if s.i+off < len(s.data) {
		return s.data[s.i+off]
	}
	return 0
}

func (s *posScanner) record(path string, off int) {
	if _, ok := s.offs[path]; !ok {
		s.offs[path] = off
	}
}

func (s *posScanner) run() {
	table := ""
	for {
		s.skipSpaceNL()
		if s.eof() {
			return
		}
		start := s.i
		if s.data[s.i] == '[' {
			table = s.header()
		} else {
			s.keyval(table, true)
		}
		if s.i == start {
			s.i++ // unreachable on valid TOML; guarantees progress
		}
	}
}

// skipSpace skips blanks within a line.
func (s *posScanner) skipSpace() {
	for !s.eof() && (s.data[s.i] == ' ' || s.data[s.i] == '\t') {
		s.i++
	}
}

// skipSpaceNL skips blanks, newlines and comments.
func (s *posScanner) skipSpaceNL() {
	for !s.eof() {
		switch s.data[s.i] {
		case ' ', '\t', '\r', '\n':
			s.i++
		case '#':
			s.skipToEOL()
		default:
			return
		}
	}
}

func (s *posScanner) skipToEOL() {
	for !s.eof() && s.data[s.i] != '\n' {
		s.i++
	}
}

// header handles "[a.b]" and "[[a.b]]" and returns the table's full path.
func (s *posScanner) header() string {
	array := s.at(1) == '['
	if array {
		s.i += 2
	} else {
		s.i++
	}
	s.skipSpace()
	keyStart := s.i
	segs := s.key()
	s.skipSpace()
	for n := 0; n < 2 && s.at(0) == ']'; n++ {
		s.i++
	}
	if len(segs) == 0 {
		s.skipToEOL()
		return ""
	}
	path := ""
	for j, seg := range segs {
		path = joinPath(path, seg)
		if j == len(segs)-1 && array {
			n := s.counts[path]
			s.counts[path] = n + 1
			path = indexPath(path, n)
			break
		}
		// A name that is an array of tables refers to its latest element,
		// exactly as TOML resolves [[container.rule]].
		if n := s.counts[path]; n > 0 {
			path = indexPath(path, n-1)
		}
		s.record(path, keyStart)
	}
	s.record(path, keyStart)
	return path
}

// key reads a possibly dotted, possibly quoted key.
func (s *posScanner) key() []string {
	var segs []string
	for {
		s.skipSpace()
		seg, ok := s.keySegment()
		if !ok {
			return segs
		}
		segs = append(segs, seg)
		s.skipSpace()
		if s.at(0) != '.' {
			return segs
		}
		s.i++
	}
}

func (s *posScanner) keySegment() (string, bool) {
	if s.eof() {
		return "", false
	}
	start := s.i
	switch s.data[s.i] {
	case '"':
		s.skipString('"', true)
		raw := string(s.data[start:s.i])
		if v, err := strconv.Unquote(raw); err == nil {
			return v, true
		}
		return strings.Trim(raw, `"`), true
	case '\'':
		s.skipString('\'', false)
		return strings.Trim(string(s.data[start:s.i]), "'"), true
	}
	for !s.eof() && isBareKeyChar(s.data[s.i]) {
		s.i++
	}
	return string(s.data[start:s.i]), s.i > start
}

func isBareKeyChar(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-'
}

// keyval handles "key = value" inside table (or inside an inline table).
func (s *posScanner) keyval(table string, topLevel bool) {
	keyStart := s.i
	segs := s.key()
	s.skipSpace()
	if len(segs) == 0 || s.at(0) != '=' {
		if topLevel {
			s.skipToEOL()
		}
		return
	}
	s.i++
	s.skipSpace()
	path := table
	for _, seg := range segs {
		path = joinPath(path, seg)
		s.record(path, keyStart) // dotted keys create their parents here
	}
	s.value(path)
}

// value skips one value, recording the position of every array element and
// inline-table key inside it.
func (s *posScanner) value(path string) {
	if s.eof() {
		return
	}
	switch s.data[s.i] {
	case '"':
		if s.at(1) == '"' && s.at(2) == '"' {
			s.skipMultiline('"', true)
		} else {
			s.skipString('"', true)
		}
	case '\'':
		if s.at(1) == '\'' && s.at(2) == '\'' {
			s.skipMultiline('\'', false)
		} else {
			s.skipString('\'', false)
		}
	case '[':
		s.i++
		for elem := 0; ; {
			s.skipSpaceNL()
			if s.eof() {
				return
			}
			switch s.data[s.i] {
			case ']':
				s.i++
				return
			case ',':
				s.i++
				continue
			}
			p := indexPath(path, elem)
			elem++
			s.record(p, s.i)
			start := s.i
			s.value(p)
			if s.i == start {
				s.i++
			}
		}
	case '{':
		s.i++
		for {
			s.skipSpaceNL()
			if s.eof() {
				return
			}
			switch s.data[s.i] {
			case '}':
				s.i++
				return
			case ',':
				s.i++
				continue
			}
			start := s.i
			s.keyval(path, false)
			if s.i == start {
				s.i++
			}
		}
	default: // number, bool, date: runs until a delimiter
		for !s.eof() && !strings.ContainsRune(",]}#\r\n", rune(s.data[s.i])) {
			s.i++
		}
	}
}

// skipString skips a single-line string starting at its opening quote.
func (s *posScanner) skipString(quote byte, escapes bool) {
	s.i++
	for !s.eof() {
		c := s.data[s.i]
		switch {
		case escapes && c == '\\':
			s.i += 2
		case c == quote:
			s.i++
			return
		case c == '\n':
			return
		default:
			s.i++
		}
	}
}

// skipMultiline skips a """ or ”' string starting at its opening delimiter.
func (s *posScanner) skipMultiline(quote byte, escapes bool) {
	s.i += 3
	for !s.eof() {
		c := s.data[s.i]
		switch {
		case escapes && c == '\\':
			s.i += 2
		case c == quote && s.at(1) == quote && s.at(2) == quote:
			s.i += 3
			// Up to two more quotes belong to the content: """a"""""
			for n := 0; n < 2 && s.at(0) == quote; n++ {
				s.i++
			}
			return
		default:
			s.i++
		}
	}
}
