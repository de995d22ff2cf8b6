package flowlog

import (
	"math"
	"net/netip"
	"strconv"
	"time"
	"unicode"
	"unicode/utf8"
)

// encoder appends records to b, as JSON lines or, when text is set, as
// key=value lines. Both forms come from one walk over the fields (see
// rec.encode), so they have the same keys in the same order and leave out
// the same empty fields.
type encoder struct {
	b       []byte
	text    bool
	first   bool
	scratch []byte
}

func (e *encoder) begin() {
	if !e.text {
		e.b = append(e.b, '{')
	}
	e.first = true
}

func (e *encoder) end() {
	if !e.text {
		e.b = append(e.b, '}')
	}
	e.b = append(e.b, '\n')
}

func (e *encoder) key(k string) {
	if e.text {
		if !e.first {
			e.b = append(e.b, ' ')
		}
		e.b = append(e.b, k...)
		e.b = append(e.b, '=')
	} else {
		if !e.first {
			e.b = append(e.b, ',')
		}
		e.b = append(e.b, '"')
		e.b = append(e.b, k...)
		e.b = append(e.b, '"', ':')
	}
	e.first = false
}

func (e *encoder) str(k, v string) {
	e.key(k)
	if e.text {
		e.b = appendTextValue(e.b, v)
	} else {
		e.b = appendJSONString(e.b, v)
	}
}

func (e *encoder) strOmit(k, v string) {
	if v != "" {
		e.str(k, v)
	}
}

// strsOmit writes vs, unless empty, as a JSON array or, in text, joined
// with ",".
func (e *encoder) strsOmit(k string, vs []string) {
	if len(vs) == 0 {
		return
	}
	e.key(k)
	if e.text {
		e.scratch = e.scratch[:0]
		for i, v := range vs {
			if i > 0 {
				e.scratch = append(e.scratch, ',')
			}
			e.scratch = append(e.scratch, v...)
		}
		e.b = appendTextValue(e.b, e.scratch)
		return
	}
	e.b = append(e.b, '[')
	for i, v := range vs {
		if i > 0 {
			e.b = append(e.b, ',')
		}
		e.b = appendJSONString(e.b, v)
	}
	e.b = append(e.b, ']')
}

// addr writes a when it is valid, else s.
func (e *encoder) addr(k string, a netip.Addr, s string) {
	if !a.IsValid() {
		e.str(k, s)
		return
	}
	e.scratch = a.AppendTo(e.scratch[:0])
	e.key(k)
	if e.text {
		e.b = appendTextValue(e.b, e.scratch)
	} else {
		e.b = appendJSONString(e.b, e.scratch)
	}
}

func (e *encoder) uint(k string, v uint64) {
	e.key(k)
	e.b = strconv.AppendUint(e.b, v, 10)
}

func (e *encoder) uintOmit(k string, v uint64) {
	if v != 0 {
		e.uint(k, v)
	}
}

func (e *encoder) boolOmit(k string, v bool) {
	if v {
		e.key(k)
		e.b = append(e.b, "true"...)
	}
}

func (e *encoder) time(k string, t time.Time) {
	e.key(k)
	if !e.text {
		e.b = append(e.b, '"')
	}
	e.b = t.AppendFormat(e.b, time.RFC3339Nano)
	if !e.text {
		e.b = append(e.b, '"')
	}
}

func (e *encoder) timeOmit(k string, t time.Time) {
	if !t.IsZero() {
		e.time(k, t)
	}
}

// floatOmit writes f as encoding/json does (ES6 number formatting).
func (e *encoder) floatOmit(k string, f float64) {
	if f == 0 || math.IsNaN(f) || math.IsInf(f, 0) {
		return
	}
	e.key(k)
	format := byte('f')
	if abs := math.Abs(f); abs < 1e-6 || abs >= 1e21 {
		format = 'e'
	}
	e.b = strconv.AppendFloat(e.b, f, format, -1, 64)
	if format == 'e' {
		// e-09 → e-9
		if n := len(e.b); n >= 4 && e.b[n-4] == 'e' && e.b[n-3] == '-' && e.b[n-2] == '0' {
			e.b[n-2] = e.b[n-1]
			e.b = e.b[:n-1]
		}
	}
}

// encode appends r's line. The order is Record's field order.
func (r *rec) encode(e *encoder) {
	e.begin()
	e.time("time", r.Time)
	e.str("event", r.Event)
	e.str("rule", r.Rule)
	e.str("container", r.Container)
	if r.Event == EventSuppressed {
		e.uint("suppressed", r.Suppressed)
		e.time("since", r.Since)
		e.end()
		return
	}
	e.strOmit("docker_name", r.DockerName)
	e.strOmit("image", r.Image)
	e.str("direction", r.Direction)
	e.str("proto", r.Proto)
	e.addr("src", r.src, r.Src)
	e.uint("sport", uint64(r.SrcPort))
	e.addr("dst", r.dst, r.Dst)
	e.uint("dport", uint64(r.DstPort))
	e.strOmit("published", r.Published)
	e.uint("packets", uint64(r.Packets))
	e.uintOmit("bytes", r.Bytes)
	e.timeOmit("start", r.Start)
	e.floatOmit("duration_seconds", r.Duration)
	e.strOmit("reason", r.Reason)
	e.strOmit("l7", r.L7)
	e.strOmit("quic_version", r.QUICVersion)
	e.strOmit("app_proto", r.AppProto)
	e.strOmit("sni", r.SNI)
	e.strOmit("ja4", r.JA4)
	e.boolOmit("ech", r.ECH)
	e.strOmit("http_host", r.HTTPHost)
	e.strOmit("http_path", r.HTTPPath)
	e.strOmit("http_method", r.HTTPMethod)
	e.strOmit("qname", r.QName)
	e.uintOmit("query_id", uint64(r.QueryID))
	e.strsOmit("names", r.Names)
	e.uintOmit("suppressed", r.Suppressed)
	e.timeOmit("since", r.Since)
	e.end()
}

// appendTextValue appends s bare, or quoted by strconv when it is empty or
// holds a space, a quote, an '=', or anything else that would make the
// line ambiguous (control characters, invalid UTF-8, unprintable runes).
func appendTextValue[S []byte | string](dst []byte, s S) []byte {
	if !needsQuote(s) {
		return append(dst, s...)
	}
	return strconv.AppendQuote(dst, string(s))
}

func needsQuote[S []byte | string](s S) bool {
	if len(s) == 0 {
		return true
	}
	for i := 0; i < len(s); {
		b := s[i]
		if b < utf8.RuneSelf {
			if b <= ' ' || b == '"' || b == '=' || b == 0x7f {
				return true
			}
			i++
			continue
		}
		n := min(len(s)-i, utf8.UTFMax)
		c, size := utf8.DecodeRuneInString(string(s[i : i+n]))
		if c == utf8.RuneError && size == 1 || !unicode.IsPrint(c) {
			return true
		}
		i += size
	}
	return false
}

const hexDigits = "0123456789abcdef"

// appendJSONString appends s as a JSON string exactly as encoding/json
// does (with its HTML escaping): the log lines must not change.
func appendJSONString[S []byte | string](dst []byte, s S) []byte {
	dst = append(dst, '"')
	start := 0
	for i := 0; i < len(s); {
		if b := s[i]; b < utf8.RuneSelf {
			if b >= ' ' && b != '"' && b != '\\' && b != '<' && b != '>' && b != '&' {
				i++
				continue
			}
			dst = append(dst, s[start:i]...)
			switch b {
			case '\\', '"':
				dst = append(dst, '\\', b)
			case '\b':
				dst = append(dst, '\\', 'b')
			case '\f':
				dst = append(dst, '\\', 'f')
			case '\n':
				dst = append(dst, '\\', 'n')
			case '\r':
				dst = append(dst, '\\', 'r')
			case '\t':
				dst = append(dst, '\\', 't')
			default:
				dst = append(dst, '\\', 'u', '0', '0', hexDigits[b>>4], hexDigits[b&0xF])
			}
			i++
			start = i
			continue
		}
		n := min(len(s)-i, utf8.UTFMax)
		c, size := utf8.DecodeRuneInString(string(s[i : i+n]))
		if c == utf8.RuneError && size == 1 {
			dst = append(dst, s[start:i]...)
			dst = append(dst, `\ufffd`...)
			i += size
			start = i
			continue
		}
		if c == '\u2028' || c == '\u2029' {
			dst = append(dst, s[start:i]...)
			dst = append(dst, '\\', 'u', '2', '0', '2', hexDigits[c&0xF])
			i += size
			start = i
			continue
		}
		i += size
	}
	dst = append(dst, s[start:]...)
	return append(dst, '"')
}
