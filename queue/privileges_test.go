package queue

import (
	"errors"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// TestCheckCaps: the decision is made on the effective capability set,
// whatever the uid, and a refusal names what is missing and what there is.
func TestCheckCaps(t *testing.T) {
	status := func(eff string) string {
		return "Name:\tnfqguard\nUid:\t65534\t65534\t65534\t65534\nCapInh:\t0000000000000000\n" +
			"CapPrm:\t" + eff + "\nCapEff:\t" + eff + "\nCapBnd:\t" + eff + "\n"
	}
	for _, c := range []struct {
		name string
		eff  string
		euid int
		want []string // in the error; nil: allowed
	}{
		{"root with every capability", "000001ffffffffff", 0, nil},
		{"nobody with CAP_NET_ADMIN", "0000000000001000", 65534, nil},
		{"nobody with CAP_NET_ADMIN and CAP_NET_RAW", "0000000000003000", 65534, nil},
		{"nobody with CAP_NET_RAW", "0000000000002000", 65534, []string{"CAP_NET_ADMIN is missing", "uid 65534 has CAP_NET_RAW"}},
		{"nobody with nothing", "0000000000000000", 65534, []string{"CAP_NET_ADMIN is missing", "uid 65534 has none", "AmbientCapabilities="}},
		{"root without CAP_NET_ADMIN", "000001ffffffefff", 0, []string{"CAP_NET_ADMIN is missing", "uid 0 has CAP_NET_RAW, 39 other"}},
	} {
		t.Run(c.name, func(t *testing.T) {
			err := checkCaps(status(c.eff), c.euid)
			if c.want == nil {
				if err != nil {
					t.Fatalf("checkCaps: %v, want nil", err)
				}
				return
			}
			if !errors.Is(err, ErrNotPermitted) {
				t.Fatalf("checkCaps = %v, want ErrNotPermitted", err)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q lacks %q", err, w)
				}
			}
		})
	}
	// Without a CapEff line (no /proc, an odd kernel) the kernel decides.
	if err := checkCaps("Name:\tx\n", 1000); err != nil {
		t.Errorf("checkCaps without CapEff: %v, want nil", err)
	}
}

func TestRawSocketErrNamesCapability(t *testing.T) {
	if err := rawSocketErr(unix.EPERM); !errors.Is(err, unix.EPERM) || !strings.Contains(err.Error(), "CAP_NET_RAW") {
		t.Errorf("rawSocketErr(EPERM) = %v, want it to name CAP_NET_RAW and wrap EPERM", err)
	}
	if err := rawSocketErr(unix.EMFILE); err != unix.EMFILE {
		t.Errorf("rawSocketErr(EMFILE) = %v, want it unchanged", err)
	}
}
