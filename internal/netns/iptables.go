package netns

import (
	"context"
	"fmt"
	"slices"
	"strings"
)

// IPTables runs the iptables binaries of one backend in one network
// namespace: both rigs keep the firewall under test in a namespace of
// their own.
type IPTables struct {
	// Path is the network namespace's path.
	Path string
	// Legacy selects iptables-legacy and its kin; false selects the
	// binaries named plain "iptables" (the nf_tables backend on Debian,
	// the one Docker 20.10 uses there).
	Legacy bool
}

// Binary returns the name of the backend's binary: iptables, or ip6tables
// with v6; with "-legacy" for a Legacy backend and "-restore" with
// restore.
func (x IPTables) Binary(v6, restore bool) string {
	name := "iptables"
	if v6 {
		name = "ip6tables"
	}
	if x.Legacy {
		name += "-legacy"
	}
	if restore {
		name += "-restore"
	}
	return name
}

// Run runs the backend's iptables (ip6tables with v6) with args in the
// namespace and returns its combined output. "-w" is added so that
// legacy invocations wait for the (system-wide) xtables lock.
func (x IPTables) Run(ctx context.Context, v6 bool, args ...string) (string, error) {
	out, err := Run(ctx, x.Path, x.Binary(v6, false), append([]string{"-w"}, args...)...)
	if err != nil {
		return out, fmt.Errorf("netns: in %s: %w", x.Path, err)
	}
	return out, nil
}

// WithoutEmptyTable returns iptables-save output without the table name
// when that table holds no rule and every chain of it accepts by policy:
// such a table judges nothing. nfqguard's guard leaves the mangle table
// so behind (iptables-nft deletes its chains, so it hooks nothing;
// iptables-legacy cannot un-instantiate a table), and before/after
// comparisons of a firewall use this to see through it.
func WithoutEmptyTable(saved, name string) string {
	lines := strings.SplitAfter(saved, "\n")
	start := slices.IndexFunc(lines, func(l string) bool { return strings.TrimSpace(l) == "*"+name })
	if start < 0 {
		return saved
	}
	for end := start + 1; end < len(lines); end++ {
		l := strings.TrimSpace(lines[end])
		switch {
		case l == "COMMIT":
			return strings.Join(slices.Delete(lines, start, end+1), "")
		case strings.HasPrefix(l, ":") && strings.Contains(l, " ACCEPT"), strings.HasPrefix(l, "#"):
		default:
			return saved
		}
	}
	return saved
}
