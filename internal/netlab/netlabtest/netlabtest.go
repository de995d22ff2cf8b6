// Package netlabtest adapts package netlab to Go tests.
package netlabtest

import (
	"context"
	"testing"

	"github.com/nfqguard/nfqguard/internal/netlab"
	"github.com/nfqguard/nfqguard/internal/netns/netnstest"
)

// Require fails the test (t.Fatal) when CI=true and the process is not root,
// cannot create a network namespace or lacks ip, iptables or
// iptables-restore; outside CI it skips (t.Skip) with the reason.
func Require(t testing.TB) {
	t.Helper()
	netnstest.Require(t, "ip", "iptables", "iptables-restore")
}

// New builds a lab with opts, registers Close with t.Cleanup (runs even when
// the test fails), and fails the test on error. It calls Require first, so
// tests need not. Unless opts.Prefix is set, namespace names get a random
// prefix, so parallel tests and test binaries do not clash.
func New(t testing.TB, opts netlab.Options) *netlab.Lab {
	t.Helper()
	Require(t)
	return netnstest.Open(t, "labtest", func(ctx context.Context) (*netlab.Lab, error) {
		return netlab.New(ctx, opts)
	})
}
