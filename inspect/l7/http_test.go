package l7

import (
	"bytes"
	"fmt"
	"testing"
	"unsafe"
)

type httpWant struct {
	st                                   Status
	method, target, host, hostName, path string // "<nil>" means nil
}

func httpCases() []struct {
	name string
	in   string
	want httpWant
} {
	return []struct {
		name string
		in   string
		want httpWant
	}{
		{"GET", "GET /index.html?x=1 HTTP/1.1\r\nHost: example.com\r\nAccept: */*\r\n\r\n",
			httpWant{Done, "GET", "/index.html?x=1", "example.com", "example.com", "/index.html"}},
		{"POST with body", "POST /raw/abc HTTP/1.1\r\nContent-Length: 3\r\nHost: pastebin.com\r\n\r\nabc",
			httpWant{Done, "POST", "/raw/abc", "pastebin.com", "pastebin.com", "/raw/abc"}},
		{"host with port", "GET / HTTP/1.1\r\nHost: Example.COM:8080\r\n\r\n",
			httpWant{Done, "GET", "/", "Example.COM:8080", "Example.COM", "/"}},
		{"host trailing dot and port", "GET / HTTP/1.1\r\nHost: example.com.:80\r\n\r\n",
			httpWant{Done, "GET", "/", "example.com.:80", "example.com", "/"}},
		{"ipv6 host", "GET / HTTP/1.1\r\nHost: [2001:db8::1]:8080\r\n\r\n",
			httpWant{Done, "GET", "/", "[2001:db8::1]:8080", "2001:db8::1", "/"}},
		{"host OWS", "GET / HTTP/1.1\r\nHost: \t a.b \t\r\n\r\n",
			httpWant{Done, "GET", "/", "a.b", "a.b", "/"}},
		{"empty host", "GET / HTTP/1.1\r\nHost:\r\n\r\n",
			httpWant{Done, "GET", "/", "", "", "/"}},
		{"no host", "GET /a HTTP/1.0\r\nUser-Agent: x\r\n\r\n",
			httpWant{Done, "GET", "/a", "<nil>", "<nil>", "/a"}},
		{"no headers", "GET /a HTTP/1.0\r\n\r\n",
			httpWant{Done, "GET", "/a", "<nil>", "<nil>", "/a"}},
		{"first host wins", "GET / HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n\r\n",
			httpWant{Done, "GET", "/", "a.example", "a.example", "/"}},
		{"lowercase host", "GET /p HTTP/1.1\r\nhost: lower.example\r\n\r\n",
			httpWant{Done, "GET", "/p", "lower.example", "lower.example", "/p"}},
		{"LF only", "GET /p HTTP/1.1\nX: y\nHOST: lf.example\n\n",
			httpWant{Done, "GET", "/p", "lf.example", "lf.example", "/p"}},
		{"LF only no host", "GET /p HTTP/1.1\nX: y\n\n",
			httpWant{Done, "GET", "/p", "<nil>", "<nil>", "/p"}},
		{"leading empty line", "\r\nGET / HTTP/1.1\r\nHost: h\r\n\r\n",
			httpWant{Done, "GET", "/", "h", "h", "/"}},
		{"absolute-form", "GET http://abs.example:81/x/y?q HTTP/1.1\r\nHost: other.example\r\n\r\n",
			httpWant{Done, "GET", "http://abs.example:81/x/y?q", "abs.example:81", "abs.example", "/x/y"}},
		{"absolute-form no path", "GET HTTP://user:pw@abs.example HTTP/1.1\r\n\r\n",
			httpWant{Done, "GET", "HTTP://user:pw@abs.example", "abs.example", "abs.example", "/"}},
		{"absolute-form query only", "GET http://abs.example?q=/x HTTP/1.1\r\n\r\n",
			httpWant{Done, "GET", "http://abs.example?q=/x", "abs.example", "abs.example", "/"}},
		{"absolute-form empty authority", "GET http:///x HTTP/1.1\r\n\r\n",
			httpWant{Malformed, "", "", "<nil>", "<nil>", "<nil>"}},
		{"CONNECT authority-form", "CONNECT proxy.example:443 HTTP/1.1\r\nHost: proxy.example:443\r\n\r\n",
			httpWant{Done, "CONNECT", "proxy.example:443", "proxy.example:443", "proxy.example", "<nil>"}},
		{"OPTIONS asterisk", "OPTIONS * HTTP/1.1\r\nHost: h\r\n\r\n",
			httpWant{Done, "OPTIONS", "*", "h", "h", "<nil>"}},
		{"16-byte method", "ABCDEFGHIJKLMNOP / HTTP/1.1\r\nHost: h\r\n\r\n",
			httpWant{Done, "ABCDEFGHIJKLMNOP", "/", "h", "h", "/"}},

		{"17-byte method", "ABCDEFGHIJKLMNOPQ / HTTP/1.1\r\n\r\n", httpWant{st: NotMatch}},
		{"TLS record", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", httpWant{st: NotMatch}},
		{"TLS 2 bytes", "\x16\x03", httpWant{st: NotMatch}},
		{"SSH banner", "SSH-2.0-OpenSSH_9.6p1 Ubuntu-3ubuntu13\r\n", httpWant{st: NotMatch}},
		{"short SSH banner", "SSH-2.0-Go\r\n", httpWant{st: NotMatch}},
		{"HTTP/2 preface", "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n", httpWant{st: NotMatch}},
		{"HTTP/2 preface prefix", "PRI * HTTP/2", httpWant{st: NotMatch}},
		{"garbage", "\x00\x01\x02hello", httpWant{st: NotMatch}},
		{"lowercase version", "GET / http/1.1\r\n\r\n", httpWant{st: NotMatch}},
		{"HTTP/0.9", "GET /\r\n", httpWant{st: NotMatch}},
		{"double space", "GET  / HTTP/1.1\r\n\r\n", httpWant{st: NotMatch}},
		{"control in target", "GET /\x01 HTTP/1.1\r\n\r\n", httpWant{st: NotMatch}},
		{"version trailing junk", "GET / HTTP/1.1x\r\n\r\n", httpWant{st: NotMatch}},
		{"leading space", " GET / HTTP/1.1\r\n\r\n", httpWant{st: NotMatch}},

		{"header without colon", "GET / HTTP/1.1\r\nHost example.com\r\n\r\n", httpWant{st: Malformed}},
		{"space before colon", "GET / HTTP/1.1\r\nHost : example.com\r\n\r\n", httpWant{st: Malformed}},
		{"empty header name", "GET / HTTP/1.1\r\n: x\r\n\r\n", httpWant{st: Malformed}},
		{"obs-fold", "GET / HTTP/1.1\r\nX-A: 1\r\n  continued\r\nHost: h\r\n\r\n", httpWant{st: Malformed}},
		{"whitespace first line", "GET / HTTP/1.1\r\n Host: h\r\n\r\n", httpWant{st: Malformed}},
		{"bare CR in value", "GET / HTTP/1.1\r\nX: a\rb\r\nHost: h\r\n\r\n", httpWant{st: Malformed}},
		{"NUL in host", "GET / HTTP/1.1\r\nHost: a\x00b\r\n\r\n", httpWant{st: Malformed}},

		{"incomplete request line", "GET /index.ht", httpWant{st: NeedMore}},
		{"incomplete headers", "GET / HTTP/1.1\r\nAccept: */*\r\n", httpWant{st: NeedMore}},
		{"host line incomplete", "GET / HTTP/1.1\r\nHost: example.co", httpWant{st: NeedMore}},
		{"empty", "", httpWant{st: NeedMore}},
	}
}

func httpStr(b []byte) string {
	if b == nil {
		return "<nil>"
	}
	return string(b)
}

func checkHTTP(t *testing.T, in []byte, r *HTTPRequest, st Status, want httpWant) {
	t.Helper()
	if st != want.st {
		t.Fatalf("status = %v, want %v", st, want.st)
	}
	if st != Done {
		if r.Method != nil || r.Target != nil || r.Host != nil {
			t.Errorf("status %v but fields set: %+v", st, r)
		}
		return
	}
	got := httpWant{st, httpStr(r.Method), httpStr(r.Target), httpStr(r.Host), httpStr(r.HostName()), httpStr(r.Path())}
	if got != want {
		t.Errorf("got  %+v\nwant %+v", got, want)
	}
	for _, s := range [][]byte{r.Method, r.Target, r.Host, r.HostName(), r.Path()} {
		if !httpWithin(in, s) && !(len(s) == 1 && &s[0] == &httpSlashPath[0]) {
			t.Errorf("slice %q not within the input", s)
		}
	}
}

// within reports whether s is nil or a subslice of b.
func httpWithin(b, s []byte) bool {
	if s == nil {
		return true
	}
	if len(s) == 0 {
		return cap(s) == 0 || cap(b) > 0 && httpInRange(b, unsafe.SliceData(s))
	}
	return httpInRange(b, &s[0]) && httpInRange(b, &s[len(s)-1])
}

func httpInRange(b []byte, p *byte) bool {
	if cap(b) == 0 {
		return false
	}
	lo := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
	hi := lo + uintptr(cap(b))
	x := uintptr(unsafe.Pointer(p))
	return lo <= x && x <= hi
}

func TestParseHTTPRequest(t *testing.T) {
	for _, tc := range httpCases() {
		t.Run(tc.name, func(t *testing.T) {
			in := []byte(tc.in)
			var r HTTPRequest
			checkHTTP(t, in, &r, ParseHTTPRequest(in, &r), tc.want)
		})
	}
}

// TestParseHTTPRequestSplit feeds every prefix of each input: a prefix
// before the deciding byte gives NeedMore, and from there on the status and
// result are those of the whole input.
func TestParseHTTPRequestSplit(t *testing.T) {
	for _, tc := range httpCases() {
		t.Run(tc.name, func(t *testing.T) {
			full := []byte(tc.in)
			decided := -1
			for n := 0; n <= len(full); n++ {
				// A fresh copy of exactly n bytes so that reads past the prefix fault
				// the slice bounds.
				in := bytes.Clone(full[:n])
				var r HTTPRequest
				st := ParseHTTPRequest(in, &r)
				if decided < 0 {
					if st == NeedMore {
						continue
					}
					decided = n
				}
				if st != tc.want.st {
					t.Fatalf("prefix %d (decided at %d): status %v, want %v", n, decided, st, tc.want.st)
				}
				checkHTTP(t, in, &r, st, tc.want)
			}
			if decided < 0 && tc.want.st != NeedMore {
				t.Fatalf("never decided")
			}
		})
	}
}

func TestParseHTTPRequestEarlyNotMatch(t *testing.T) {
	for _, in := range []string{"\x16", "\x16\x03", "SSH-2.0-OpenSSH_9.6p1", "\x00", "PRI * HTTP/2"} {
		var r HTTPRequest
		if st := ParseHTTPRequest([]byte(in), &r); st != NotMatch {
			t.Errorf("%q: status %d, want NotMatch", in, st)
		}
	}
}

var httpBenchGET = []byte("GET /api/v1/items?page=2 HTTP/1.1\r\nHost: api.example.com\r\nUser-Agent: Go-http-client/1.1\r\nAccept-Encoding: gzip\r\n\r\n")

var httpBenchCurl = []byte("GET /raw/abcdef HTTP/1.1\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\nX-Request-Id: 0123456789abcdef\r\nHost: pastebin.com\r\n\r\n")

func TestParseHTTPRequestAllocs(t *testing.T) {
	var r HTTPRequest
	for _, in := range [][]byte{httpBenchGET, httpBenchCurl, []byte("\x16\x03\x01"), []byte("GET / HTTP/1.1\r\nX: y\r\n\r\n")} {
		a := testing.AllocsPerRun(1000, func() {
			ParseHTTPRequest(in, &r)
			_ = r.HostName()
			_ = r.Path()
		})
		if a != 0 {
			t.Errorf("%q: %v allocs per run, want 0", in, a)
		}
	}
}

func BenchmarkParseHTTPRequest(b *testing.B) {
	for _, bc := range []struct {
		name string
		in   []byte
	}{
		{"GET-host-first", httpBenchGET},
		{"curl-host-last", httpBenchCurl},
		{"TLS-notmatch", []byte("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03")},
	} {
		b.Run(bc.name, func(b *testing.B) {
			var r HTTPRequest
			b.ReportAllocs()
			b.SetBytes(int64(len(bc.in)))
			for b.Loop() {
				ParseHTTPRequest(bc.in, &r)
			}
		})
	}
}

func FuzzParseHTTPRequest(f *testing.F) {
	for _, tc := range httpCases() {
		f.Add([]byte(tc.in))
	}
	f.Add(httpBenchGET)
	f.Add(httpBenchCurl)
	f.Fuzz(func(t *testing.T, in []byte) {
		var r HTTPRequest
		st := ParseHTTPRequest(in, &r)
		if st > Malformed {
			t.Fatalf("bad status %d", st)
		}
		path := r.Path()
		for _, s := range [][]byte{r.Method, r.Target, r.Host, r.HostName(), path} {
			if !httpWithin(in, s) && !(len(s) == 1 && &s[0] == &httpSlashPath[0]) {
				t.Fatalf("slice %q not within the input", s)
			}
		}
		if st != Done && (r.Method != nil || r.Target != nil || r.Host != nil) {
			t.Fatalf("status %d with fields set", st)
		}
		if st == Done && (len(r.Method) == 0 || len(r.Method) > maxHTTPMethod || len(r.Target) == 0) {
			t.Fatalf("Done with method %q target %q", r.Method, r.Target)
		}
		// A decided prefix stays decided the same way when more bytes arrive.
		if st != NeedMore {
			more := append(bytes.Clone(in), "\r\n\r\nHost: x\r\n\r\n"...)
			var r2 HTTPRequest
			if st2 := ParseHTTPRequest(more, &r2); st2 != st ||
				fmt.Sprint(httpStr(r.Method), httpStr(r.Target), httpStr(r.Host)) != fmt.Sprint(httpStr(r2.Method), httpStr(r2.Target), httpStr(r2.Host)) {
				t.Fatalf("extending %q changed the result: %d %+v -> %d %+v", in, st, r, st2, r2)
			}
		}
	})
}
