package cli

// LeakCheckEnv names the environment variable that turns on the goroutine
// leak check: with NFQGUARD_LEAK_CHECK=1, once a command has returned and
// everything it started should have stopped, the binary looks for
// goroutines that outlived it, prints their stacks and exits with status
// ExitLeak. The end-to-end tests set it for every engine they start, so
// that a goroutine left behind by a shutdown path fails the test that took
// it.
//
// The check needs go.uber.org/goleak, which the daemon a host runs as root
// should not carry: it is compiled in only with the build tag "leakcheck"
// (go build -tags leakcheck), as the end-to-end tests build the binaries.
// A binary built without it refuses to run a command with the variable
// set, rather than pretend to check.
const LeakCheckEnv = "NFQGUARD_LEAK_CHECK"
