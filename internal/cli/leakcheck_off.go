//go:build !leakcheck

package cli

import (
	"fmt"
	"os"
)

// leakCheck, in a binary built without the leakcheck tag, cannot look for
// leaked goroutines: when LeakCheckEnv asks for the check it refuses, so
// that a test never believes a check ran that did not.
func leakCheck() (func() error, error) {
	if os.Getenv(LeakCheckEnv) == "1" {
		return nil, fmt.Errorf("%s=1, but this binary was built without the leak check: build it with -tags leakcheck", LeakCheckEnv)
	}
	return func() error { return nil }, nil
}
