package l7

// HTTP/1.x request head parsing (RFC 9112). Only the first request of a
// connection is examined: requests after the first on a keep-alive
// connection are out of scope.

// maxHTTPMethod bounds the request method. The longest registered method
// (UPDATEREDIRECTREF) is 17 bytes; 16 covers every method seen in practice
// and lets a non-HTTP stream be released after a few bytes.
const maxHTTPMethod = 16

// HTTPRequest is what ParseHTTPRequest learns from a request head. All
// slices alias the input buffer; they stay valid only as long as it does.
type HTTPRequest struct {
	// Method is the request method as sent (case-sensitive per RFC 9110).
	Method []byte
	// Target is the raw request-target: origin-form ("/p?q"),
	// absolute-form ("http://h/p"), authority-form ("h:443", CONNECT) or
	// asterisk-form ("*").
	Target []byte
	// Host is the raw authority the request is for, port included, case as
	// sent. Per RFC 9112 §3.2.2 the authority of an absolute-form target
	// wins over any Host header; otherwise it is the value of the first
	// Host header with surrounding whitespace removed. Host is nil when the
	// request has neither, and empty (non-nil) for an empty Host header.
	// Use HostName for matching.
	Host []byte
}

// httpAbsoluteForm reports whether t is an absolute-form target and where
// its authority starts.
func httpAbsoluteForm(t []byte) (authStart int, ok bool) {
	// scheme = ALPHA *( ALPHA / DIGIT / "+" / "-" / "." ) followed by "://"
	if len(t) == 0 || !httpIsAlpha(t[0]) {
		return 0, false
	}
	for i := 1; i < len(t); i++ {
		c := t[i]
		switch {
		case httpIsAlpha(c) || httpIsDigit(c) || c == '+' || c == '-' || c == '.':
		case c == ':':
			if len(t)-i >= 3 && t[i+1] == '/' && t[i+2] == '/' {
				return i + 3, true
			}
			return 0, false
		default:
			return 0, false
		}
	}
	return 0, false
}

// httpSplitAbsolute splits an absolute-form target after its "scheme://" into
// the host part of the authority (userinfo removed, port kept) and the rest
// (path, query, fragment).
func httpSplitAbsolute(t []byte, authStart int) (host, rest []byte) {
	end := len(t)
	for i := authStart; i < len(t); i++ {
		if c := t[i]; c == '/' || c == '?' || c == '#' {
			end = i
			break
		}
	}
	host = t[authStart:end]
	for i := len(host) - 1; i >= 0; i-- {
		if host[i] == '@' {
			host = host[i+1:]
			break
		}
	}
	return host, t[end:]
}

var httpSlashPath = []byte("/")

// Path returns the path of the target for matching http_path prefixes: the
// target up to the first '?' or '#' for origin-form, the path part for
// absolute-form (a static "/" when the absolute-form target has no path, as
// RFC 9112 §3.2.2 prescribes), and nil for authority-form and asterisk-form.
// Except for that static "/", the result aliases the input. It is not
// percent-decoded or normalised ("/a/../b" stays as sent).
func (r *HTTPRequest) Path() []byte {
	t := r.Target
	if len(t) == 0 {
		return nil
	}
	if t[0] != '/' {
		as, ok := httpAbsoluteForm(t)
		if !ok {
			return nil
		}
		_, t = httpSplitAbsolute(t, as)
		if len(t) == 0 || t[0] != '/' {
			return httpSlashPath
		}
	}
	for i, c := range t {
		if c == '?' || c == '#' {
			return t[:i]
		}
	}
	return t
}

// HostName returns Host without a ":port" suffix, without the brackets of an
// IPv6 literal and without one trailing dot, as a subslice of Host. Case is
// unchanged: compare case-insensitively. It returns nil when Host is nil.
func (r *HTTPRequest) HostName() []byte {
	h := r.Host
	if h == nil {
		return nil
	}
	if len(h) > 0 && h[0] == '[' {
		for i := 1; i < len(h); i++ {
			if h[i] == ']' {
				return h[1:i]
			}
		}
		return h // unterminated literal: leave as is
	}
	// Strip ":port" where port is all digits (possibly empty).
	for i := len(h) - 1; i >= 0; i-- {
		c := h[i]
		if c == ':' {
			h = h[:i]
			break
		}
		if !httpIsDigit(c) {
			break
		}
	}
	if n := len(h); n > 0 && h[n-1] == '.' {
		h = h[:n-1]
	}
	return h
}

// ParseHTTPRequest parses the head of the first HTTP/1.x request in b, the
// in-order prefix of the client's stream. It never allocates. out is zeroed
// and is filled in only when the result is Done.
//
// The request line must be METHOD SP request-target SP HTTP/1.d followed by
// CRLF or a bare LF; leading empty lines are skipped (RFC 9112 §2.2). Any
// deviation in the request line — a non-token byte or more than 16 bytes in
// the method, a control byte or space in the target, another version such
// as the HTTP/2 preface "PRI * HTTP/2.0" — returns NotMatch as soon as the
// offending byte is in b, so TLS, SSH and other protocols are released at
// once. Once the request line is complete:
//
//   - with an absolute-form target the Host is known and Done is returned
//     immediately (an empty authority is Malformed);
//   - otherwise header lines are read: Done as soon as the first Host
//     header line is complete (later headers, including a second Host, are
//     not examined: a conforming server rejects such a request), Done with
//     Host nil at the empty line ending the head, NeedMore before that.
//
// A header line without a colon, with a non-token name, with whitespace
// before the colon, with a control byte in its value, or starting with
// whitespace (obs-fold) is Malformed.
func ParseHTTPRequest(b []byte, out *HTTPRequest) Status {
	*out = HTTPRequest{}
	i := 0
	// Skip empty lines before the request line.
	for i < len(b) {
		if b[i] == '\n' {
			i++
		} else if b[i] == '\r' {
			if i+1 < len(b) && b[i+1] != '\n' {
				return NotMatch
			}
			i++
		} else {
			break
		}
	}

	// Method.
	ms := i
	for ; i < len(b) && b[i] != ' '; i++ {
		if !httpIsToken(b[i]) || i-ms >= maxHTTPMethod {
			return NotMatch
		}
	}
	if i == len(b) {
		return NeedMore
	}
	if i == ms {
		return NotMatch
	}
	method := b[ms:i]
	i++ // SP

	// Request target: visible ASCII up to SP.
	ts := i
	for ; i < len(b) && b[i] != ' '; i++ {
		if c := b[i]; c <= ' ' || c >= 0x7f {
			return NotMatch
		}
	}
	if i == len(b) {
		return NeedMore
	}
	if i == ts {
		return NotMatch
	}
	target := b[ts:i]
	i++ // SP

	// HTTP-version "HTTP/1." DIGIT, then CRLF or LF.
	const ver = "HTTP/1."
	for k := 0; k < len(ver); k++ {
		if i+k == len(b) {
			return NeedMore
		}
		if b[i+k] != ver[k] {
			return NotMatch
		}
	}
	i += len(ver)
	if i == len(b) {
		return NeedMore
	}
	if !httpIsDigit(b[i]) {
		return NotMatch
	}
	i++
	switch st, n := httpLineEnd(b, i); st {
	case Done:
		i = n
	default:
		return st
	}

	if as, ok := httpAbsoluteForm(target); ok {
		host, _ := httpSplitAbsolute(target, as)
		if len(host) == 0 {
			return Malformed
		}
		*out = HTTPRequest{Method: method, Target: target, Host: host}
		return Done
	}

	// Header fields.
	for {
		if i == len(b) {
			return NeedMore
		}
		// End of the head: an empty line.
		if st, _ := httpLineEnd(b, i); st != NotMatch {
			if st == Done { // the head ended without a Host
				out.Method, out.Target = method, target
			}
			return st
		}
		if c := b[i]; c == ' ' || c == '\t' {
			return Malformed // obs-fold, or whitespace before the first field
		}
		ns := i
		for ; i < len(b) && b[i] != ':'; i++ {
			if !httpIsToken(b[i]) {
				return Malformed // includes a line without a colon
			}
		}
		if i == len(b) {
			return NeedMore
		}
		name := b[ns:i]
		if len(name) == 0 {
			return Malformed
		}
		i++ // ':'
		vs := i
		for i < len(b) && b[i] != '\r' && b[i] != '\n' {
			if c := b[i]; (c < ' ' && c != '\t') || c == 0x7f {
				return Malformed
			}
			i++
		}
		ve := i
		st, n := httpLineEnd(b, i)
		switch st {
		case NeedMore:
			return NeedMore
		case Done:
			i = n
		default:
			return Malformed
		}
		if httpEqualFold(name, "host") {
			*out = HTTPRequest{Method: method, Target: target, Host: httpTrimOWS(b[vs:ve])}
			return Done
		}
	}
}

// httpLineEnd checks for CRLF or LF at b[i]. It returns Done and the index after
// the line end, NeedMore when b ends inside it, or NotMatch when b[i] starts
// no line end (including a CR not followed by LF).
func httpLineEnd(b []byte, i int) (Status, int) {
	if i >= len(b) {
		return NeedMore, i
	}
	switch b[i] {
	case '\n':
		return Done, i + 1
	case '\r':
		if i+1 == len(b) {
			return NeedMore, i
		}
		if b[i+1] == '\n' {
			return Done, i + 2
		}
	}
	return NotMatch, i
}

func httpTrimOWS(v []byte) []byte {
	for len(v) > 0 && (v[0] == ' ' || v[0] == '\t') {
		v = v[1:]
	}
	for len(v) > 0 && (v[len(v)-1] == ' ' || v[len(v)-1] == '\t') {
		v = v[:len(v)-1]
	}
	return v
}

// httpEqualFold compares b with the lowercase ASCII string s, ignoring case.
func httpEqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range b {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}

func httpIsAlpha(c byte) bool { return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' }
func httpIsDigit(c byte) bool { return '0' <= c && c <= '9' }

// httpIsToken reports whether c is a tchar (RFC 9110 §5.6.2).
func httpIsToken(c byte) bool {
	return httpTokenTable[c]
}

var httpTokenTable = [256]bool{
	'!': true, '#': true, '$': true, '%': true, '&': true, '\'': true, '*': true,
	'+': true, '-': true, '.': true, '^': true, '_': true, '`': true, '|': true, '~': true,
	'0': true, '1': true, '2': true, '3': true, '4': true, '5': true, '6': true, '7': true, '8': true, '9': true,
	'A': true, 'B': true, 'C': true, 'D': true, 'E': true, 'F': true, 'G': true, 'H': true, 'I': true,
	'J': true, 'K': true, 'L': true, 'M': true, 'N': true, 'O': true, 'P': true, 'Q': true, 'R': true,
	'S': true, 'T': true, 'U': true, 'V': true, 'W': true, 'X': true, 'Y': true, 'Z': true,
	'a': true, 'b': true, 'c': true, 'd': true, 'e': true, 'f': true, 'g': true, 'h': true, 'i': true,
	'j': true, 'k': true, 'l': true, 'm': true, 'n': true, 'o': true, 'p': true, 'q': true, 'r': true,
	's': true, 't': true, 'u': true, 'v': true, 'w': true, 'x': true, 'y': true, 'z': true,
}
