package l7

import "testing"

func TestParseSSHBanner(t *testing.T) {
	for _, c := range []struct {
		in   string
		want Status
	}{
		{"", NeedMore},
		{"S", NeedMore},
		{"SSH", NeedMore},
		{"SSH-", Done},
		{"SSH-2.0-OpenSSH_9.6\r\n", Done},
		{"SSH-1.99-x\r\n", Done},
		{"ssh-2.0-x", NotMatch},
		{"GET / HTTP/1.1", NotMatch},
		{"\x16\x03\x01", NotMatch},
		{"SSX-", NotMatch},
	} {
		if got := ParseSSHBanner([]byte(c.in)); got != c.want {
			t.Errorf("%q: %v, want %v", c.in, got, c.want)
		}
	}
}
