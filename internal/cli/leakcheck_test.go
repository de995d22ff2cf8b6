package cli

import (
	"strings"
	"testing"
)

// TestLeakCheck: with the variable unset the check is off; with it set, a
// binary with the check finds nothing in a clean run, and one without it
// refuses rather than pretend (see leakcheck_*_test.go for which).
func TestLeakCheck(t *testing.T) {
	t.Setenv(LeakCheckEnv, "")
	done, err := leakCheck()
	if err != nil || done() != nil {
		t.Fatalf("check off: %v", err)
	}
	t.Setenv(LeakCheckEnv, "1")
	done, err = leakCheck()
	if !leakCheckBuilt {
		if err == nil || !strings.Contains(err.Error(), "-tags leakcheck") {
			t.Errorf("without the leakcheck tag: leakCheck() error = %v, want a refusal naming -tags leakcheck", err)
		}
		return
	}
	if err != nil {
		t.Fatal(err)
	}
	if err := done(); err != nil {
		t.Errorf("no goroutine started, yet: %v", err)
	}
	stop := make(chan struct{})
	go func() { <-stop }()
	err = done()
	close(stop)
	if err == nil || !strings.Contains(err.Error(), "outlived the command") {
		t.Errorf("a goroutine outlived the command: done() = %v, want it reported", err)
	}
}
