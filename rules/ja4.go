package rules

import (
	"strings"
)

// ja4Pattern is a validated tls_ja4 entry: a JA4 fingerprint
// ("t13d1516h2_8daaf6152771_e5627efa2ab1") whose sections may each be "*"
// (any value): "t13d1812h2_*_*" (written "t13d1812h2_*" too),
// "*_*_e5627efa2ab1". An empty section means "*".
type ja4Pattern struct {
	a, b, c string
}

// String returns the pattern as the file would write it, normalised.
func (p *ja4Pattern) String() string {
	or := func(s string) string {
		if s == "" {
			return "*"
		}
		return s
	}
	return or(p.a) + "_" + or(p.b) + "_" + or(p.c)
}

// matches reports whether fingerprint fp (36 bytes, as the engine computes
// it) matches p.
func (p *ja4Pattern) matches(fp []byte) bool {
	if len(fp) != 36 || fp[10] != '_' || fp[23] != '_' {
		return false
	}
	return (p.a == "" || string(fp[:10]) == p.a) &&
		(p.b == "" || string(fp[11:23]) == p.b) &&
		(p.c == "" || string(fp[24:]) == p.c)
}

// ja4Match reports whether fp matches one of ps.
func ja4Match(ps []ja4Pattern, fp []byte) bool {
	for i := range ps {
		if ps[i].matches(fp) {
			return true
		}
	}
	return false
}

// ja4Pattern validates a tls_ja4 entry: three sections joined by "_",
// each "*" or exact; a "*" last stands for the sections after it. The first is 10 characters: the transport ("t" TLS
// over TCP, "q" QUIC, "d" DTLS), the version ("13", "12", "11", "10",
// "s3", "s2", "d1", "d2", "d3" or "00"), "d" or "i" (server name or
// not), two 2-digit counts and two ALPN characters (letters or digits,
// case kept); the others are 12 hex digits (written in either case,
// compared in lower case).
func (p *parser) ja4Pattern(key, s string) (ja4Pattern, bool) {
	parts := strings.Split(s, "_")
	// A "*" last stands for the parts left out: "t13d1812h2_*".
	for len(parts) < 3 && parts[len(parts)-1] == "*" {
		parts = append(parts, "*")
	}
	if len(parts) != 3 {
		p.errorf(key, `%q is not a JA4 fingerprint: want three parts joined by "_", such as "t13d1516h2_8daaf6152771_e5627efa2ab1", each one exact or "*" (a "*" last stands for the parts after it: "t13d1516h2_*")`, s)
		return ja4Pattern{}, false
	}
	var out ja4Pattern
	if a := parts[0]; a != "*" {
		if !ja4ValidA(a) {
			p.errorf(key, `%q: the first part %q is not a JA4 prefix: want 10 characters such as "t13d1516h2" (t, q or d; a version; d or i; two 2-digit counts; two ALPN letters or digits), or "*"`, s, a)
			return ja4Pattern{}, false
		}
		out.a = a
	}
	for i, h := range parts[1:] {
		if h == "*" {
			continue
		}
		h = strings.ToLower(h)
		if len(h) != 12 || strings.Trim(h, "0123456789abcdef") != "" {
			p.errorf(key, `%q: part %d %q is not a JA4 hash: want 12 hex digits, or "*"`, s, i+2, parts[i+1])
			return ja4Pattern{}, false
		}
		if i == 0 {
			out.b = h
		} else {
			out.c = h
		}
	}
	if out == (ja4Pattern{}) {
		p.errorf(key, `%q matches every fingerprint: leave the key out`, s)
		return ja4Pattern{}, false
	}
	return out, true
}

// ja4ValidA reports whether a is a JA4 first part.
func ja4ValidA(a string) bool {
	if len(a) != 10 || !strings.ContainsRune("tqd", rune(a[0])) {
		return false
	}
	switch a[1:3] {
	case "13", "12", "11", "10", "s3", "s2", "d1", "d2", "d3", "00":
	default:
		return false
	}
	if a[3] != 'd' && a[3] != 'i' {
		return false
	}
	for _, c := range []byte(a[4:8]) {
		if c < '0' || c > '9' {
			return false
		}
	}
	for _, c := range []byte(a[8:]) {
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z') {
			return false
		}
	}
	return true
}
