package rules

import (
	"strconv"
	"strings"
)

// ConfigError is one problem found in a rule file. Parse returns all of them
// joined with errors.Join, sorted by position, so a user can fix a file in
// one pass instead of one error per run.
type ConfigError struct {
	File string // name given to Parse (the path for Load)
	Line int    // 1-based; 0 when the problem has no place in the file
	Col  int    // 1-based byte column; 0 when unknown
	Key  string // key path such as "container[1].rule[0].ports"; may be empty
	Msg  string
}

// Error renders FILE:LINE:COL: KEY: MSG, leaving out the parts that are
// unknown, which is the format editors and CI annotate.
func (e *ConfigError) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		b.WriteByte(':')
		b.WriteString(strconv.Itoa(e.Line))
		if e.Col > 0 {
			b.WriteByte(':')
			b.WriteString(strconv.Itoa(e.Col))
		}
	}
	if b.Len() > 0 {
		b.WriteString(": ")
	}
	if e.Key != "" {
		b.WriteString(e.Key)
		b.WriteString(": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}
