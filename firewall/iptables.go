package firewall

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"

	"github.com/coreos/go-iptables/iptables"
)

// Chain names and the comments that tag every rule nfqguard writes, so that
// a later run can find (and replace) what a killed run left behind.
const (
	filterTable     = "filter"
	dockerUserChain = "DOCKER-USER"
	forwardChain    = "FORWARD"

	commentRedirect = "nfqguard-redirect"
	commentFastPath = "nfqguard-fastpath"
	commentCreated  = "nfqguard-created-chain"
)

// ErrNoChain is returned when Docker's DOCKER-USER chain does not exist.
var ErrNoChain = errors.New("no DOCKER-USER chain: is Docker running on this host? " +
	"(run with --create-chain to create it and the FORWARD jump the way Docker does)")

// ErrDockerNftables is returned when Docker uses its nftables backend, which
// has no DOCKER-USER chain, and Options.Backend insists on iptables.
var ErrDockerNftables = errors.New("the Docker daemon uses its nftables firewall backend, which has no DOCKER-USER chain, " +
	"and the firewall backend is set to iptables: set [engine] firewall to \"auto\" or \"nftables\"")

// ErrNoIPTablesNft is returned when the nftables hook is wanted and no
// iptables binary of the nf_tables backend (iptables-nft) is installed.
var ErrNoIPTablesNft = errors.New("the hook for Docker's nftables backend is written with iptables-nft " +
	"(the nf_tables backend of iptables), which is not installed (install the iptables package)")

// Firewall backends of Docker that the redirect can hook into
// (Options.Backend, and [engine] firewall).
const (
	BackendAuto     = "auto"     // follow Docker: its answer, else the tables it made
	BackendIPTables = "iptables" // DOCKER-USER
	BackendNftables = "nftables" // NFQGUARD in mangle, jumped to from mangle FORWARD
)

// RuleSpec is what the installed rules must do.
type RuleSpec struct {
	FirstQueue uint16
	Queues     int
	Mark       uint32 // packet-mark bit: already judged
	BypassMark uint32 // mark bit copied to the connmark: flow decided
	FastPath   bool
	FailOpen   bool
	// GuardMark is the packet-mark bit of the guard, which drops new flows
	// while the redirect is away (0: no guard; never with FailOpen).
	GuardMark uint32
	// DropInvalid drops packets that conntrack calls INVALID or does not
	// track, which the redirect cannot send to the queues.
	DropInvalid bool
}

// redirect returns the NFQUEUE rule: every not-yet-judged packet of a flow
// that is not on the fast path goes to the queues.
func (s RuleSpec) redirect() []string {
	r := []string{"-m", "mark", "!", "--mark", maskArg(s.Mark),
		"-m", "connmark", "!", "--mark", maskArg(s.BypassMark),
		"-m", "comment", "--comment", commentRedirect, "-j", "NFQUEUE"}
	if s.Queues <= 1 {
		r = append(r, "--queue-num", strconv.Itoa(int(s.FirstQueue)))
	} else {
		r = append(r, "--queue-balance", fmt.Sprintf("%d:%d", s.FirstQueue, int(s.FirstQueue)+s.Queues-1))
	}
	if s.FailOpen {
		r = append(r, "--queue-bypass")
	}
	return r
}

// companion returns the rule that copies the bypass bit of a packet that
// nfqguard answered into its connection's mark, so the redirect stops
// matching that connection.
func (s RuleSpec) companion() []string {
	return []string{"-m", "mark", "--mark", maskArg(s.BypassMark),
		"-m", "comment", "--comment", commentFastPath,
		"-j", "CONNMARK", "--set-xmark", maskArg(s.BypassMark)}
}

func maskArg(bit uint32) string { return fmt.Sprintf("0x%x/0x%x", bit, bit) }

// family is one address family's iptables binary and what nfqguard did in it.
type family struct {
	name    string // "IPv4" or "IPv6"
	proto   iptables.Protocol
	ipt     *iptables.IPTables
	path    string
	backend string // "nft" or "legacy"
	hook    hook   // where the redirect goes
	created bool   // DOCKER-USER was created by nfqguard and goes on exit
	watch   watchState
}

func (f *family) String() string {
	return fmt.Sprintf("%s: %s (%s), %s", f.name, f.path, f.backend, f.hook)
}

// Options configure OpenIPTables.
type Options struct {
	// CreateChain creates the IPv4 DOCKER-USER and the FORWARD jump to it
	// when Docker has not, and removes them again on Remove.
	CreateChain bool
	// Backend is Docker's firewall backend to hook into: BackendIPTables,
	// BackendNftables, or BackendAuto ("" too) to follow DockerBackend,
	// else the tables Docker made (its docker-bridges table means
	// nftables unless a FORWARD chain jumps to a DOCKER-USER).
	Backend string
	// DockerBackend is the backend Docker reports (GET /info,
	// FirewallBackend.Driver): "iptables", "nftables", or "" when unknown.
	DockerBackend string
	// DockerSays, when set, returns the backend Docker reports now ("" when
	// unknown): while running, the watcher asks it when the kernel holds
	// the tables of both backends (Docker leaves the old one's rules when
	// it is restarted with the other), to tell which one Docker uses.
	DockerSays func() string
	// Binaries overrides the iptables binaries tried for IPv4 and IPv6
	// (tests); by default iptables-nft, iptables-legacy, iptables.
	Binaries4, Binaries6 []string
}

// IPTables installs nfqguard's rules in the DOCKER-USER chain of each
// address family whose DOCKER-USER Docker actually jumps to, with the
// iptables binary (nft or legacy) of the backend Docker uses. Only Health
// is safe for concurrent use.
type IPTables struct {
	families []*family
	// follow: the hook follows Docker when it changes firewall backend
	// (Options.Backend auto); else a change is reported as a mismatch.
	follow     bool
	setting    string        // Options.Backend, for messages
	dockerSays func() string // Options.DockerSays; nil: Docker is not asked

	mu     sync.Mutex
	health Health
}

// OpenIPTables finds DOCKER-USER for IPv4 (required) and IPv6 (used when
// present). It changes nothing on the host unless opts.CreateChain is set
// and the chain is missing.
func OpenIPTables(opts Options) (*IPTables, error) {
	b4, b6 := opts.Binaries4, opts.Binaries6
	if b4 == nil {
		b4 = []string{"iptables-nft", "iptables-legacy", "iptables"}
	}
	if b6 == nil {
		b6 = []string{"ip6tables-nft", "ip6tables-legacy", "ip6tables"}
	}
	fw := &IPTables{health: Health{Events: map[string]uint64{}, Dropped: map[string]uint64{}},
		follow: opts.Backend == "" || opts.Backend == BackendAuto, setting: cmp.Or(opts.Backend, BackendAuto),
		dockerSays: opts.DockerSays}
	v4, err := findFamily("IPv4", iptables.ProtocolIPv4, b4, opts, opts.CreateChain)
	if err != nil {
		return nil, fmt.Errorf("IPv4 firewall: %w", err)
	}
	fw.families = append(fw.families, v4)
	// IPv6 is hooked only where Docker made an IPv6 DOCKER-USER (or its
	// ip6 docker-bridges table): hooking it anyway would queue all
	// forwarded IPv6 traffic of a host that never asked.
	v6, err := findFamily("IPv6", iptables.ProtocolIPv6, b6, opts, false)
	switch {
	case err == nil:
		fw.families = append(fw.families, v6)
	case errors.Is(err, ErrNoChain), errors.Is(err, exec.ErrNotFound):
		// Docker without IPv6: nothing to hook for that family.
	default:
		return nil, errors.Join(fmt.Errorf("IPv6 firewall: %w", err), fw.UndoCreate())
	}
	return fw, nil
}

// Families describes the chains in use, e.g. "IPv4: /usr/sbin/iptables-nft
// (nft), filter DOCKER-USER".
func (fw *IPTables) Families() []string {
	fw.mu.Lock()
	defer fw.mu.Unlock()
	var out []string
	for _, f := range fw.families {
		out = append(out, f.String())
	}
	return out
}

// HasIPv6 reports whether IPv6 is hooked (its DOCKER-USER, or the
// nftables hook where Docker has an ip6 docker-bridges table).
func (fw *IPTables) HasIPv6() bool {
	for _, f := range fw.families {
		if f.name == "IPv6" {
			return true
		}
	}
	return false
}

// findFamily picks the hook (DOCKER-USER, or nfqguard's own chain where
// Docker uses nftables) and, for DOCKER-USER, the backend whose DOCKER-USER
// the FORWARD chain jumps to: a rule written to the other backend would
// silently do nothing.
func findFamily(name string, proto iptables.Protocol, bins []string, opts Options, create bool) (*family, error) {
	var found []*family
	var probeErr error // why a backend that may be in use could not be looked at
	for _, bin := range bins {
		path, err := exec.LookPath(bin)
		if err != nil {
			continue
		}
		backend := backendOf(path)
		if containsBinary(found, path, backend) {
			continue
		}
		if backend == "legacy" {
			// Even listing a legacy table instantiates it (and makes every
			// iptables-nft command warn about legacy tables): look only
			// where the legacy firewall is already in use.
			exists, err := legacyFilterExists(proto)
			if err != nil && probeErr == nil {
				probeErr = fmt.Errorf("%w; %s was not looked at: %v "+
					"(run nfqguard as root where Docker uses iptables-legacy)", ErrNoChain, path, err)
			}
			if !exists {
				continue
			}
		}
		ipt, err := iptables.New(iptables.IPFamily(proto), iptables.Path(path), iptables.Timeout(10))
		if err != nil {
			continue
		}
		found = append(found, &family{name: name, proto: proto, ipt: ipt, path: path, backend: backend})
	}
	if len(found) == 0 {
		if !anyOnPath(bins) {
			return nil, fmt.Errorf("%s: %w (install the iptables package)", strings.Join(bins, ", "), exec.ErrNotFound)
		}
		if probeErr != nil {
			return nil, probeErr
		}
		return nil, ErrNoChain
	}
	nftHook := func() (*family, error) {
		if proto == iptables.ProtocolIPv6 && !dockerNftables(proto) {
			return nil, ErrNoChain // Docker without IPv6 tables: nothing to hook
		}
		for _, f := range found {
			if f.backend == "nft" {
				f.hook = nftablesHook
				return f, nil
			}
		}
		return nil, ErrNoIPTablesNft
	}
	if opts.Backend == BackendNftables || (opts.Backend != BackendIPTables && opts.DockerBackend == BackendNftables) {
		return nftHook()
	}
	var withChain *family
	for _, f := range found {
		f.hook = dockerUserHook
		ok, err := f.ipt.ChainExists(filterTable, dockerUserChain)
		if err != nil && f.backend == "legacy" {
			// The legacy filter table exists (checked above), so this
			// backend is in use and its DOCKER-USER may be the one: say
			// why it could not be read rather than that there is none.
			probeErr = fmt.Errorf("%s: list chains: %w%s", f, err, legacyHint(err))
		}
		if err != nil || !ok {
			continue
		}
		if jumps, _ := f.jumpsToDockerUser(); jumps {
			return f, nil
		}
		if withChain == nil {
			withChain = f
		}
	}
	auto := opts.Backend != BackendIPTables && opts.DockerBackend == ""
	if auto && dockerNftables(proto) {
		// Docker's nftables table, and no FORWARD jumps to a DOCKER-USER:
		// Docker uses nftables (a DOCKER-USER alone may be left over).
		return nftHook()
	}
	if withChain != nil {
		return withChain, nil
	}
	if probeErr != nil {
		// Creating DOCKER-USER in another backend would hide the one that
		// could not be read.
		return nil, probeErr
	}
	if opts.Backend == BackendIPTables && (dockerNftables(proto) || opts.DockerBackend == BackendNftables) {
		return nil, ErrDockerNftables
	}
	if !create {
		return nil, ErrNoChain
	}
	f := creationFamily(found, bins[len(bins)-1])
	if err := f.createChain(); err != nil {
		return nil, err
	}
	return f, nil
}

// creationFamily picks the backend to create DOCKER-USER in: the one whose
// FORWARD chain already has rules (the firewall in use), else the one the
// plain command (iptables, ip6tables) runs.
func creationFamily(found []*family, plain string) *family {
	for _, f := range found {
		if rules, err := f.ipt.List(filterTable, forwardChain); err == nil && len(rules) > 1 {
			return f
		}
	}
	if path, err := exec.LookPath(plain); err == nil {
		b := backendOf(path)
		for _, f := range found {
			if f.backend == b {
				return f
			}
		}
	}
	return found[0]
}

// legacyHint explains the usual reason iptables-legacy fails for a user
// other than root that holds the capabilities: it opens root's lock file.
func legacyHint(err error) string {
	if strings.Contains(err.Error(), "xtables.lock") {
		return " (iptables-legacy must open /run/xtables.lock, root's, to serialise with Docker: " +
			"run nfqguard as root where Docker uses iptables-legacy)"
	}
	return ""
}

func anyOnPath(bins []string) bool {
	for _, b := range bins {
		if _, err := exec.LookPath(b); err == nil {
			return true
		}
	}
	return false
}

// containsBinary reports whether path is one of fs's binaries under another
// name: Debian's "iptables" is a link to the same multi-call binary as
// "iptables-nft" or "iptables-legacy".
func containsBinary(fs []*family, path, backend string) bool {
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		return false
	}
	for _, f := range fs {
		if r, err := filepath.EvalSymlinks(f.path); err == nil && r == real && f.backend == backend {
			return true
		}
	}
	return false
}

// legacyFilterExists reports whether the legacy (x_tables) filter table of
// proto exists in this thread's network namespace, without creating it. The
// file is missing when x_tables is not loaded (then no legacy table exists),
// and readable only by root (mode 0440): a user other than root holding
// CAP_NET_ADMIN cannot tell, and gets an error saying so.
func legacyFilterExists(proto iptables.Protocol) (bool, error) {
	file := "/proc/thread-self/net/ip_tables_names"
	if proto == iptables.ProtocolIPv6 {
		file = "/proc/thread-self/net/ip6_tables_names"
	}
	b, err := os.ReadFile(file)
	if errors.Is(err, fs.ErrPermission) {
		return false, fmt.Errorf("cannot tell whether the legacy firewall is in use: %w", err)
	}
	if err != nil {
		return false, nil
	}
	for _, name := range strings.Fields(string(b)) {
		if name == filterTable {
			return true, nil
		}
	}
	return false, nil
}

func backendOf(path string) string {
	out, err := exec.Command(path, "--version").Output()
	if err == nil && strings.Contains(string(out), "nf_tables") {
		return "nft"
	}
	return "legacy"
}

// ownChainExists reports whether the hook's chain of nfqguard's own exists.
func (f *family) ownChainExists() bool {
	ok, err := f.ipt.ChainExists(f.hook.table, f.hook.chain)
	return err == nil && ok
}

func (f *family) jumpsToDockerUser() (bool, error) {
	rules, err := f.ipt.List(filterTable, forwardChain)
	if err != nil {
		return false, err
	}
	for _, r := range rules {
		if strings.Contains(r, "-j "+dockerUserChain) {
			return true, nil
		}
	}
	return false, nil
}

// createChain creates DOCKER-USER as Docker does: a chain ending in RETURN,
// jumped to first thing in FORWARD. Both rules carry nfqguard's comment so
// that a later run knows the chain is nfqguard's to remove.
func (f *family) createChain() error {
	if err := f.ipt.NewChain(filterTable, dockerUserChain); err != nil {
		return fmt.Errorf("%s: create %s: %w", f.name, dockerUserChain, err)
	}
	f.created = true
	if err := f.ipt.Append(filterTable, dockerUserChain, "-m", "comment", "--comment", commentCreated, "-j", "RETURN"); err != nil {
		return errors.Join(fmt.Errorf("%s: create %s: %w", f.name, dockerUserChain, err), f.deleteCreated())
	}
	if err := f.ipt.Insert(filterTable, forwardChain, 1, "-m", "comment", "--comment", commentCreated, "-j", dockerUserChain); err != nil {
		return errors.Join(fmt.Errorf("%s: jump from %s to %s: %w", f.name, forwardChain, dockerUserChain, err), f.deleteCreated())
	}
	return nil
}

// ownsChain reports whether DOCKER-USER is one nfqguard created, in this run
// or in a run that was killed.
func (f *family) ownsChain() bool {
	if f.created {
		return true
	}
	rules, err := f.ipt.List(filterTable, dockerUserChain)
	if err != nil {
		return false
	}
	for _, r := range rules {
		if strings.Contains(r, commentCreated) {
			return true
		}
	}
	return false
}

func (f *family) deleteCreated() error {
	var errs []error
	if err := f.ipt.DeleteIfExists(filterTable, forwardChain, "-m", "comment", "--comment", commentCreated, "-j", dockerUserChain); err != nil {
		errs = append(errs, err)
	}
	if err := f.ipt.ClearAndDeleteChain(filterTable, dockerUserChain); err != nil {
		errs = append(errs, err)
	}
	f.created = false
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%s: remove %s: %w", f.name, dockerUserChain, err)
	}
	return nil
}

// Install puts spec's rules in place in every family: the redirect, the
// companion and the INVALID drops at the top of the hook's chain
// (DOCKER-USER, or NFQGUARD), a FORWARD jump to it where none is there,
// and the guard in the mangle table. Rules a previous run left are
// replaced in the same transaction, so a restarting fail-closed engine
// never leaves the chain without a redirect; a redirect a previous run
// left in the other hook goes after the new one is in. On error it removes
// whatever it had written, in every family.
func (fw *IPTables) Install(spec RuleSpec) error {
	for _, f := range fw.families {
		if err := f.apply(spec, modeInstall); err != nil {
			return errors.Join(err, fw.Remove())
		}
	}
	return nil
}

// apply reads the family's tables and writes what reconcile says, the
// hook's table first when installing (the redirect before the guard that
// relies on it) and the mangle table first when removing. Both install and
// remove take out a redirect of nfqguard's in the other hook (see unhook).
func (f *family) apply(spec RuleSpec, m mode) error {
	ctx := context.Background()
	hooked, mangle, err := f.listTables(ctx, m == modeInstall && (spec.guarded() || f.hook.table == mangleTable))
	if err != nil {
		return fmt.Errorf("%s: %w", f.name, err)
	}
	fd := reconcile(f.hook, hooked, mangle, spec, m, false)
	s := script(f.hook.table, fd.hook) + script(mangleTable, fd.mangle)
	if m == modeRemove {
		s = script(mangleTable, fd.mangle) + script(f.hook.table, fd.hook)
	}
	if err := restore(ctx, f.path, s); err != nil {
		return fmt.Errorf("%s: %w", f.name, err)
	}
	if err := f.unhookOther(ctx); err != nil {
		return err
	}
	if m == modeRemove {
		return f.dropEmptyHooks(ctx, mangle)
	}
	return nil
}

// listTables lists the hook's table and the mangle table: one listing when
// the hook is in mangle. needMangle says nfqguard is about to write to
// mangle (see listMangle).
func (f *family) listTables(ctx context.Context, needMangle bool) (hooked, mangle *table, err error) {
	if mangle, err = f.listMangle(ctx, needMangle); err != nil {
		return nil, nil, err
	}
	if f.hook.table == mangleTable {
		return mangle, mangle, nil
	}
	if hooked, err = listTable(ctx, f.path, f.hook.table); err != nil {
		return nil, nil, err
	}
	return hooked, mangle, nil
}

// otherHook is the hook a family does not use: a killed run may have left
// its redirect there (Docker changed backend meanwhile).
func (f *family) otherHook() hook {
	if f.hook == nftablesHook {
		return dockerUserHook
	}
	return nftablesHook
}

// unhookOther takes out a redirect of nfqguard's in the other hook, if any.
// The nftables hook exists only with iptables-nft, and a legacy table is
// not listed when it does not exist (listing would create it).
func (f *family) unhookOther(ctx context.Context) error {
	h := f.otherHook()
	if h == nftablesHook && f.backend != "nft" {
		return nil
	}
	var t *table
	var err error
	if h.table == mangleTable {
		t, err = f.listMangle(ctx, false)
	} else {
		t, err = listTable(ctx, f.path, h.table)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", f.name, err)
	}
	if err := restore(ctx, f.path, script(h.table, unhook(h, t))); err != nil {
		return fmt.Errorf("%s: take the redirect out of %s: %w", f.name, h, err)
	}
	return nil
}

// listMangle lists the mangle table. With iptables-legacy, listing a table
// instantiates it in the kernel (and hooks it into every packet's path), so
// a table that does not exist yet is not listed but taken as empty, unless
// need says nfqguard is about to write to it anyway.
func (f *family) listMangle(ctx context.Context, need bool) (*table, error) {
	if f.backend == "legacy" && !need {
		names := "/proc/thread-self/net/ip_tables_names"
		if f.name == "IPv6" {
			names = "/proc/thread-self/net/ip6_tables_names"
		}
		b, err := os.ReadFile(names)
		if err == nil && !slices.Contains(strings.Fields(string(b)), mangleTable) {
			return &table{chains: map[string][]listedRule{}, policy: map[string]string{}}, nil
		}
	}
	return listTable(ctx, f.path, mangleTable)
}

// dropEmptyHooks deletes, with iptables-nft, the built-in mangle chains
// that held only nfqguard's rules (the guard, the jump to NFQGUARD) in the
// listing taken before they were removed, and accept by policy: iptables-nft
// creates built-in chains on demand, and an empty one still costs every
// packet a hook. Legacy built-in chains cannot be deleted, and are left.
func (f *family) dropEmptyHooks(ctx context.Context, mangle *table) error {
	if f.backend != "nft" {
		return nil
	}
	for _, c := range []string{forwardChain, postroutingChain} {
		rs := mangle.chains[c]
		if len(rs) == 0 || slices.ContainsFunc(rs, func(r listedRule) bool { return tagOf(r.args) == "" }) ||
			mangle.policy[c] != "ACCEPT" {
			continue
		}
		if out, err := exec.CommandContext(ctx, f.path, "-w", "-t", mangleTable, "-X", c).CombinedOutput(); err != nil {
			return fmt.Errorf("%s: delete the empty mangle %s chain: %w: %s", f.name, c, err, strings.TrimSpace(string(out)))
		}
	}
	return nil
}

// ruleSpecOf turns a line of `iptables -S CHAIN` back into arguments for
// -D. nfqguard's rules hold no quoted or spaced values, so splitting on
// white space and dropping quotes is exact for them.
func ruleSpecOf(line string) []string {
	fields := strings.Fields(line)
	if len(fields) < 2 || fields[0] != "-A" {
		return nil
	}
	spec := fields[2:]
	for i, f := range spec {
		spec[i] = strings.Trim(f, "\"")
	}
	return spec
}

// Remove deletes nfqguard's rules, and DOCKER-USER itself where nfqguard
// created it. It reports every failure but tries every family.
func (fw *IPTables) Remove() error {
	var errs []error
	for _, f := range fw.families {
		if err := f.apply(RuleSpec{}, modeRemove); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(append(errs, fw.removeCreated())...)
}

// UndoCreate removes the DOCKER-USER chains this IPTables created, and only
// those: on a failed start, a chain another running nfqguard created must
// stay.
func (fw *IPTables) UndoCreate() error {
	var errs []error
	for _, f := range fw.families {
		if f.created {
			errs = append(errs, f.deleteCreated())
		}
	}
	return errors.Join(errs...)
}

// removeCreated removes the DOCKER-USER chains created by nfqguard: by this
// run, or by a run that was killed before it could clean up.
func (fw *IPTables) removeCreated() error {
	var errs []error
	for _, f := range fw.families {
		if f.ownsChain() {
			errs = append(errs, f.deleteCreated())
		}
	}
	return errors.Join(errs...)
}

// Rules returns the nfqguard rules currently in the hook's chain of each
// family, as `iptables -S` prints them (for status and tests).
func (fw *IPTables) Rules() ([]string, error) {
	var out []string
	for _, f := range fw.families {
		rules, err := f.ipt.List(f.hook.table, f.hook.chain)
		if err != nil && f.hook.own && !f.ownChainExists() {
			continue // not installed (yet, or any more)
		}
		if err != nil {
			return nil, fmt.Errorf("%s: list %s: %w", f.name, f.hook, err)
		}
		for _, r := range rules {
			if strings.Contains(r, "nfqguard-") {
				out = append(out, r)
			}
		}
	}
	return out, nil
}

// InstalledQueues returns the queues that nfqguard redirect rules already
// in the hook's chain send to: those of a running engine, or of a killed one.
func (fw *IPTables) InstalledQueues() ([]uint16, error) {
	rules, err := fw.Rules()
	if err != nil {
		return nil, err
	}
	var qs []uint16
	for _, r := range rules {
		if strings.Contains(r, commentRedirect) {
			qs = append(qs, queuesOfRule(r)...)
		}
	}
	return qs, nil
}

// queuesOfRule returns the queues an NFQUEUE rule, as `iptables -S` prints
// it, sends to.
func queuesOfRule(line string) []uint16 {
	args := ruleSpecOf(line)
	var qs []uint16
	for i := 0; i+1 < len(args); i++ {
		switch args[i] {
		case "--queue-num":
			if n, err := strconv.ParseUint(args[i+1], 10, 16); err == nil {
				qs = append(qs, uint16(n))
			}
		case "--queue-balance":
			lo, hi, _ := strings.Cut(args[i+1], ":")
			a, err1 := strconv.ParseUint(lo, 10, 16)
			b, err2 := strconv.ParseUint(hi, 10, 16)
			for q := a; err1 == nil && err2 == nil && q <= b; q++ {
				qs = append(qs, uint16(q))
			}
		}
	}
	return qs
}
