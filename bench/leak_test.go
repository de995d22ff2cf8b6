package bench_test

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests when any goroutine they started is
// still running once they have all returned. The nfqguard engines the
// bench starts check themselves the same way when they exit
// (NFQGUARD_LEAK_CHECK, see internal/cli; the test builds them with
// -tags leakcheck): a leak there fails the run
// that stopped them.
func TestMain(m *testing.M) {
	os.Setenv("NFQGUARD_LEAK_CHECK", "1")
	goleak.VerifyTestMain(m)
}
