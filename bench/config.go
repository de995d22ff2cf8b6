package bench

import (
	"fmt"
	"regexp"
	"strings"
)

var (
	// tableHeader matches a TOML table or array-of-tables header line.
	tableHeader = regexp.MustCompile(`^\s*\[`)
	// engineHeader matches the [engine] header, with an optional comment.
	engineHeader = regexp.MustCompile(`^\s*\[\s*engine\s*\]\s*(#.*)?$`)
	// fastPathKey matches a fast_path assignment line.
	fastPathKey = regexp.MustCompile(`^\s*fast_path\s*=`)
)

// setFastPath returns the TOML text src with [engine] fast_path set to on.
// It edits the text rather than re-encoding the document, so the copy keeps
// the user's comments, order and every other key: an existing fast_path
// line inside [engine] is replaced, else the key is inserted right after
// the [engine] header, else an [engine] section holding it is prepended
// (the schema has no top-level keys, so nothing else changes meaning).
func setFastPath(src string, on bool) string {
	line := fmt.Sprintf("fast_path = %t  # set by nfqguard bench", on)
	lines := strings.SplitAfter(src, "\n")
	header := -1
	for i, l := range lines {
		text := strings.TrimRight(l, "\r\n")
		if header < 0 {
			if engineHeader.MatchString(text) {
				header = i
			}
			continue
		}
		if tableHeader.MatchString(text) {
			break // end of [engine] without the key
		}
		if fastPathKey.MatchString(text) {
			indent := text[:len(text)-len(strings.TrimLeft(text, " \t"))]
			lines[i] = indent + line + eol(l)
			return strings.Join(lines, "")
		}
	}
	if header < 0 {
		return "[engine]\n" + line + "\n\n" + src
	}
	h := lines[header]
	if eol(h) == "" {
		h += "\n" // [engine] is the last line, without a newline
	}
	out := append(lines[:header:header], h, line+"\n")
	return strings.Join(append(out, lines[header+1:]...), "")
}

// eol returns the line ending l ends with, if any.
func eol(l string) string {
	switch {
	case strings.HasSuffix(l, "\r\n"):
		return "\r\n"
	case strings.HasSuffix(l, "\n"):
		return "\n"
	}
	return ""
}
