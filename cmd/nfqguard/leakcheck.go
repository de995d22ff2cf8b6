package main

import (
	"fmt"
	"os"

	"go.uber.org/goleak"
)

// leakCheckEnv names the environment variable that turns on the goroutine
// leak check: with NFQGUARD_LEAK_CHECK=1, once a command has returned and
// everything it started should have stopped, nfqguard looks for goroutines
// that outlived it, prints their stacks and exits with status 3. The
// end-to-end tests set it for every engine they start, so that a
// goroutine left behind by a shutdown path fails the test that took it.
const leakCheckEnv = "NFQGUARD_LEAK_CHECK"

// exitLeak is the exit status of a command that left goroutines running.
const exitLeak = 3

// leakCheck returns a function to call when a command has returned: it
// reports the goroutines started since leakCheck was called that are still
// running (waiting for them to end for a while first, as goleak does), or
// nil when the check is off or found none.
func leakCheck() func() error {
	if os.Getenv(leakCheckEnv) != "1" {
		return func() error { return nil }
	}
	before := goleak.IgnoreCurrent()
	return func() error {
		if err := goleak.Find(before); err != nil {
			return fmt.Errorf("goroutines outlived the command (%s=1): %w", leakCheckEnv, err)
		}
		return nil
	}
}
