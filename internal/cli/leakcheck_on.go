//go:build leakcheck

package cli

import (
	"fmt"
	"os"

	"go.uber.org/goleak"
)

// leakCheck returns a function to call when a command has returned: it
// reports the goroutines started since leakCheck was called that are still
// running (waiting for them to end for a while first, as goleak does), or
// nil when the check is off or found none.
func leakCheck() (func() error, error) {
	if os.Getenv(LeakCheckEnv) != "1" {
		return func() error { return nil }, nil
	}
	before := goleak.IgnoreCurrent()
	return func() error {
		if err := goleak.Find(before); err != nil {
			return fmt.Errorf("goroutines outlived the command (%s=1): %w", LeakCheckEnv, err)
		}
		return nil
	}, nil
}
