package dist

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nfqguard/nfqguard/rules"
)

const (
	unitFile      = "nfqguard.service"
	logrotateFile = "nfqguard.logrotate"
	nonRootDropIn = "nfqguard-nonroot.conf"
	sysusersFile  = "nfqguard.sysusers"

	binary     = "/usr/local/bin/nfqguard"
	configPath = "/etc/nfqguard/config.toml"
	logDir     = "/var/log/nfqguard"
	xtLock     = "/run/xtables.lock"

	// minSystemd is the oldest systemd that knows every key the unit uses
	// (ProtectClock= came in 245); systemd-analyze verify is not run with
	// older ones, which warn about the keys they do not know.
	minSystemd = 245
)

// unit is a parsed systemd unit file: section, then key, then every
// assignment of the key in file order.
type unit map[string]map[string][]string

// parseUnit reads the subset of systemd.syntax(7) unit files use: sections,
// key=value lines, comments starting with # or ;, and lines continued by a
// trailing backslash.
func parseUnit(text string) (unit, error) {
	u := unit{}
	section := ""
	var cont strings.Builder
	sc := bufio.NewScanner(strings.NewReader(text))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";") {
			continue
		}
		if s, ok := strings.CutSuffix(line, `\`); ok {
			cont.WriteString(strings.TrimSpace(s) + " ")
			continue
		}
		line = strings.TrimSpace(cont.String() + line)
		cont.Reset()
		switch {
		case line == "":
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			section = line[1 : len(line)-1]
			if u[section] == nil {
				u[section] = map[string][]string{}
			}
		default:
			key, value, ok := strings.Cut(line, "=")
			if !ok {
				return nil, fmt.Errorf("line %d: %q is not key=value", n, line)
			}
			if section == "" {
				return nil, fmt.Errorf("line %d: %q is outside any section", n, line)
			}
			key = strings.TrimSpace(key)
			u[section][key] = append(u[section][key], strings.TrimSpace(value))
		}
	}
	if cont.Len() > 0 {
		return nil, fmt.Errorf("the last line ends in a backslash")
	}
	return u, sc.Err()
}

// last returns the value a single-valued key ends up with.
func (u unit) last(section, key string) (string, bool) {
	v := u[section][key]
	if len(v) == 0 {
		return "", false
	}
	return v[len(v)-1], true
}

// list returns the words of a list-valued key, as systemd merges its
// assignments: each adds its words, an empty one clears the list.
func (u unit) list(section, key string) []string {
	var words []string
	for _, v := range u[section][key] {
		if v == "" {
			words = nil
			continue
		}
		words = append(words, strings.Fields(v)...)
	}
	return words
}

// truthy reports whether a systemd boolean is true.
func truthy(v string) bool {
	switch strings.ToLower(v) {
	case "1", "yes", "y", "true", "t", "on":
		return true
	}
	return false
}

func readFile(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func loadUnit(t *testing.T) unit {
	t.Helper()
	u, err := parseUnit(readFile(t, unitFile))
	if err != nil {
		t.Fatalf("%s: %v", unitFile, err)
	}
	return u
}

func TestUnit(t *testing.T) {
	u := loadUnit(t)

	want := func(section, key, value string) {
		t.Helper()
		if got, ok := u.last(section, key); !ok || got != value {
			t.Errorf("[%s] %s = %q (set: %v), want %q", section, key, got, ok, value)
		}
	}
	wantTrue := func(key string) {
		t.Helper()
		if got, ok := u.last("Service", key); !ok || !truthy(got) {
			t.Errorf("[Service] %s = %q (set: %v), want yes", key, got, ok)
		}
	}
	wantWords := func(section, key string, words ...string) {
		t.Helper()
		got := u.list(section, key)
		for _, w := range words {
			if !slices.Contains(got, w) {
				t.Errorf("[%s] %s = %q, want it to include %q", section, key, got, w)
			}
		}
	}

	// What runs, and how systemd follows it.
	if typ, _ := u.last("Service", "Type"); typ != "simple" && typ != "exec" {
		t.Errorf("[Service] Type = %q, want simple or exec: nfqguard neither forks nor notifies", typ)
	}
	start, _ := u.last("Service", "ExecStart")
	if got, want := strings.Fields(start), []string{binary, "run", "-c", configPath}; !slices.Equal(got, want) {
		t.Errorf("[Service] ExecStart = %q, want %q", start, strings.Join(want, " "))
	}
	want("Service", "Restart", "on-failure")
	if sig, ok := u.last("Service", "KillSignal"); ok && sig != "SIGTERM" && sig != "TERM" {
		t.Errorf("[Service] KillSignal = %q: nfqguard stops cleanly (removes its rule) on SIGTERM", sig)
	}
	wantWords("Unit", "After", "docker.service")
	wantWords("Unit", "Wants", "docker.service")
	wantWords("Install", "WantedBy", "multi-user.target")

	// Reload: SIGHUP to the daemon, and any check of the file first reads
	// the file the daemon runs with.
	hup := false
	for _, cmd := range u["Service"]["ExecReload"] {
		if sendsSignal(cmd, "HUP") {
			hup = true
		}
		if strings.Contains(cmd, binary) && !strings.Contains(cmd, "-c "+configPath) {
			t.Errorf("[Service] ExecReload = %q runs nfqguard on another file than ExecStart (%s)", cmd, configPath)
		}
	}
	if !hup {
		t.Errorf("[Service] ExecReload = %q: none sends SIGHUP to $MAINPID", u["Service"]["ExecReload"])
	}

	// Privileges: root confined to CAP_NET_ADMIN and CAP_NET_RAW.
	caps := u.list("Service", "CapabilityBoundingSet")
	slices.Sort(caps)
	if want := []string{"CAP_NET_ADMIN", "CAP_NET_RAW"}; !slices.Equal(caps, want) {
		t.Errorf("[Service] CapabilityBoundingSet = %q, want exactly %q", caps, want)
	}
	if user, _ := u.last("Service", "User"); user == "" || user == "root" || user == "0" {
		if amb := u.list("Service", "AmbientCapabilities"); len(amb) > 0 {
			t.Errorf("[Service] AmbientCapabilities = %q with User=%q: needed only for a user other than root", amb, user)
		}
	} else {
		t.Errorf("[Service] User = %q, want root: iptables-legacy needs root's /run/xtables.lock", user)
	}
	wantTrue("NoNewPrivileges")

	// The host's network namespace, and nothing that hides it.
	for section, keys := range u {
		for _, key := range []string{"JoinsNamespaceOf", "PrivateNetwork", "NetworkNamespacePath", "PrivateUsers", "IPAddressDeny", "ProcSubset"} {
			if v, ok := keys[key]; ok {
				t.Errorf("[%s] %s = %q: nfqguard must run in the host's network namespace and see /proc/sys and /proc/net", section, key, v)
			}
		}
	}
	wantWords("Service", "RestrictAddressFamilies", "AF_UNIX", "AF_NETLINK", "AF_INET", "AF_INET6")
	for _, f := range u.list("Service", "RestrictAddressFamilies") {
		if strings.HasPrefix(f, "~") {
			t.Errorf("[Service] RestrictAddressFamilies has %q: list what is allowed instead", f)
		}
	}

	// The sandbox, and the paths written through it.
	want("Service", "ProtectSystem", "strict")
	for _, key := range []string{"ProtectHome", "PrivateTmp", "ProtectKernelModules", "ProtectControlGroups",
		"RestrictNamespaces", "LockPersonality", "MemoryDenyWriteExecute"} {
		wantTrue(key)
	}
	want("Service", "SystemCallArchitectures", "native")
	runDir := filepath.Dir(rules.DefaultStatusSocket)
	if !slices.Contains(u.list("Service", "RuntimeDirectory"), strings.TrimPrefix(runDir, "/run/")) {
		t.Errorf("[Service] RuntimeDirectory = %q, want it to create %s, where the status socket %s is",
			u.list("Service", "RuntimeDirectory"), runDir, rules.DefaultStatusSocket)
	}
	want("Service", "RuntimeDirectoryMode", "0700")
	want("Service", "LogsDirectory", strings.TrimPrefix(logDir, "/var/log/"))
	rw := u.list("Service", "ReadWritePaths")
	if !slices.Contains(rw, xtLock) && !slices.Contains(rw, "-"+xtLock) {
		t.Errorf("[Service] ReadWritePaths = %q, want %s (read-only under ProtectSystem=strict)", rw, xtLock)
	}
	created := false
	for _, cmd := range u["Service"]["ExecStartPre"] {
		if strings.HasPrefix(cmd, "+") && strings.Contains(cmd, "touch") && strings.Contains(cmd, xtLock) {
			created = true
		}
	}
	if !created {
		t.Errorf("[Service] no ExecStartPre=+.../touch %s: ReadWritePaths= cannot open a lock that does not exist yet", xtLock)
	}
}

// TestNonRootDropIn: the drop-in runs nfqguard as a user of its own with
// exactly the unit's two capabilities, ambient, and nothing to regain more;
// the sysusers file creates that user without a login; the docker group
// (root-equivalent) is not joined by default.
func TestNonRootDropIn(t *testing.T) {
	drop, err := parseUnit(readFile(t, nonRootDropIn))
	if err != nil {
		t.Fatalf("%s: %v", nonRootDropIn, err)
	}
	for section := range drop {
		if section != "Service" {
			t.Errorf("%s has a [%s] section: a drop-in for the user changes [Service] only", nonRootDropIn, section)
		}
	}
	u, err := parseUnit(readFile(t, unitFile) + "\n" + readFile(t, nonRootDropIn))
	if err != nil {
		t.Fatal(err)
	}
	user, _ := u.last("Service", "User")
	group, _ := u.last("Service", "Group")
	if user == "" || user == "root" || user == "0" || group == "" || group == "root" || group == "0" {
		t.Fatalf("with %s: User=%q Group=%q, want a user and group other than root", nonRootDropIn, user, group)
	}
	want := []string{"CAP_NET_ADMIN", "CAP_NET_RAW"}
	for _, key := range []string{"AmbientCapabilities", "CapabilityBoundingSet"} {
		caps := u.list("Service", key)
		slices.Sort(caps)
		if !slices.Equal(caps, want) {
			t.Errorf("with %s: %s = %q, want exactly %q", nonRootDropIn, key, caps, want)
		}
	}
	if v, _ := u.last("Service", "NoNewPrivileges"); !truthy(v) {
		t.Errorf("with %s: NoNewPrivileges = %q, want yes", nonRootDropIn, v)
	}
	if groups := u.list("Service", "SupplementaryGroups"); slices.Contains(groups, "docker") {
		t.Errorf("with %s: SupplementaryGroups = %q: the docker group is root-equivalent; leave it to the operator", nonRootDropIn, groups)
	}

	var found bool
	for _, line := range strings.Split(readFile(t, sysusersFile), "\n") {
		f := strings.Fields(line)
		if len(f) == 0 || strings.HasPrefix(f[0], "#") {
			continue
		}
		if f[0] != "u" || f[1] != user {
			t.Errorf("%s: unexpected line %q", sysusersFile, line)
			continue
		}
		found = true
		if shell := f[len(f)-1]; !strings.HasSuffix(shell, "nologin") {
			t.Errorf("%s: user %s gets shell %q, want nologin", sysusersFile, user, shell)
		}
	}
	if !found || group != user {
		t.Errorf("%s does not create user %s with its group %s (u creates a group of the same name)", sysusersFile, user, group)
	}
}

// sendsSignal reports whether an Exec command is kill(1) sending sig to
// $MAINPID.
func sendsSignal(cmd, sig string) bool {
	f := strings.Fields(strings.TrimLeft(cmd, "-+!@:|"))
	if len(f) == 0 || filepath.Base(f[0]) != "kill" || !slices.Contains(f, "$MAINPID") {
		return false
	}
	for i, a := range f[1:] {
		switch a {
		case "-" + sig, "-SIG" + sig, "--signal=" + sig, "--signal=SIG" + sig:
			return true
		case "-s", "--signal":
			if i+2 < len(f) && (f[i+2] == sig || f[i+2] == "SIG"+sig) {
				return true
			}
		}
	}
	return false
}

func TestSendsSignal(t *testing.T) {
	for cmd, want := range map[string]bool{
		"/bin/kill -HUP $MAINPID":          true,
		"/bin/kill -s HUP $MAINPID":        true,
		"-/usr/bin/kill -SIGHUP $MAINPID":  true,
		"/bin/kill --signal=HUP $MAINPID":  true,
		"/bin/kill -USR1 $MAINPID":         false,
		"/bin/kill -HUP 1":                 false,
		"/usr/local/bin/nfqguard reload":   false,
		"/bin/kill -s $MAINPID":            false,
		"/bin/sh -c 'kill -HUP $MAINPID'":  false,
		"/bin/kill -s USR1 -HUP $MAINPID":  true,
		"/bin/kill --signal TERM $MAINPID": false,
	} {
		if got := sendsSignal(cmd, "HUP"); got != want {
			t.Errorf("sendsSignal(%q, HUP) = %v, want %v", cmd, got, want)
		}
	}
}

func TestParseUnit(t *testing.T) {
	u, err := parseUnit("# c\n[Service]\n; c\nA = 1\nB=x \\\n  y\nA=\nA=2 3\n\n[Install]\nC=z\n")
	if err != nil {
		t.Fatal(err)
	}
	if got := u.list("Service", "A"); !slices.Equal(got, []string{"2", "3"}) {
		t.Errorf("A = %q, want [2 3]: an empty assignment resets the list", got)
	}
	if got, _ := u.last("Service", "B"); got != "x y" {
		t.Errorf("B = %q, want %q", got, "x y")
	}
	if got, _ := u.last("Install", "C"); got != "z" {
		t.Errorf("C = %q, want z", got)
	}
	for _, bad := range []string{"A=1\n", "[S]\nnot a key\n", "[S]\nA=1 \\\n"} {
		if _, err := parseUnit(bad); err == nil {
			t.Errorf("parseUnit(%q) succeeded, want an error", bad)
		}
	}
}

// TestUnitVerify has systemd-analyze check the unit, where it is installed,
// on a copy whose commands exist on this machine; and the unit with the
// non-root drop-in applied.
func TestUnitVerify(t *testing.T) {
	t.Run("unit", func(t *testing.T) { verifyUnit(t, readFile(t, unitFile)) })
	t.Run("with "+nonRootDropIn, func(t *testing.T) {
		// A drop-in's sections are merged into the unit's as if they came
		// after them in one file, which systemd allows.
		verifyUnit(t, readFile(t, unitFile)+"\n"+readFile(t, nonRootDropIn))
	})
}

// verifyUnit runs systemd-analyze verify on text, as nfqguard.service.
func verifyUnit(t *testing.T, text string) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("systemd-analyze is not installed (make deps installs systemd)")
		}
		t.Skip("systemd-analyze is not installed")
	}
	trueBin, err := exec.LookPath("true")
	if err != nil {
		t.Skip("no true(1) to stand in for the unit's commands")
	}
	out, err := exec.Command(analyze, "--version").Output()
	if err != nil {
		t.Fatalf("systemd-analyze --version: %v", err)
	}
	version, ok := systemdVersion(string(out))
	if !ok {
		t.Fatalf("systemd-analyze --version: no version in %q", out)
	}
	if version < minSystemd {
		t.Skipf("systemd %d is older than %d, the oldest that knows every key of the unit", version, minSystemd)
	}

	dir := t.TempDir()
	path := filepath.Join(dir, unitFile)
	if err := os.WriteFile(path, []byte(standInCommands(text, trueBin)), 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{"verify", "--man=no"}
	if version >= 250 {
		args = append(args, "--recursive-errors=no") // docker.service's own warnings are not ours
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, analyze, append(args, path)...)
	cmd.Env = append(os.Environ(), "SYSTEMD_LOG_COLOR=0", "SYSTEMD_PAGER=cat")
	out, err = cmd.CombinedOutput()
	var ours []string
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		switch {
		case line == "":
		case strings.Contains(line, path) || strings.Contains(line, unitFile):
			ours = append(ours, line)
		default:
			t.Logf("systemd-analyze (not about %s): %s", unitFile, line)
		}
	}
	if len(ours) > 0 || err != nil {
		t.Errorf("systemd-analyze verify %s: %v\n%s", unitFile, err, strings.Join(ours, "\n"))
	}
}

// systemdVersion reads the major version from systemd-analyze --version
// ("systemd 252 (252.38-1~deb12u1)").
func systemdVersion(out string) (int, bool) {
	m := regexp.MustCompile(`(?m)^systemd (\d+)`).FindStringSubmatch(out)
	if m == nil {
		return 0, false
	}
	v, err := strconv.Atoi(m[1])
	return v, err == nil
}

// standInCommands points the unit's Exec commands that are nfqguard or do
// not exist here at stand-in (true(1)), keeping their prefixes and
// arguments: systemd-analyze verify checks that each command exists.
func standInCommands(text, standIn string) string {
	lines := strings.Split(text, "\n")
	for i, line := range lines {
		key, value, ok := strings.Cut(line, "=")
		if !ok || !strings.HasPrefix(strings.TrimSpace(key), "Exec") {
			continue
		}
		value = strings.TrimSpace(value)
		rest := strings.TrimLeft(value, "-+!@:|")
		prefix := value[:len(value)-len(rest)]
		command, args, _ := strings.Cut(rest, " ")
		if _, err := os.Stat(command); command == binary || err != nil {
			command = standIn
		}
		lines[i] = key + "=" + prefix + strings.TrimSpace(command+" "+args)
	}
	return strings.Join(lines, "\n")
}

func TestStandInCommands(t *testing.T) {
	in := "[Service]\nExecStartPre=+/no/such/touch /run/x\nExecStart=" + binary + " run -c " + configPath +
		"\nExecReload=/bin/sh -c 'x'\nUser=root\n"
	want := "[Service]\nExecStartPre=+/T /run/x\nExecStart=/T run -c " + configPath +
		"\nExecReload=/T -c 'x'\nUser=root\n"
	if _, err := os.Stat("/bin/sh"); err == nil {
		want = strings.Replace(want, "ExecReload=/T", "ExecReload=/bin/sh", 1)
	}
	if got := standInCommands(in, "/T"); got != want {
		t.Errorf("standInCommands:\n%s\nwant:\n%s", got, want)
	}
}

// rotation is one block of a logrotate configuration.
type rotation struct {
	patterns   []string
	directives map[string][]string // directive → its arguments
	scripts    map[string]string   // postrotate, prerotate, ... → the script
}

// parseLogrotate reads the blocks of a logrotate configuration: patterns
// followed by { directives }, scripts up to endscript, comments starting
// with #. Directives outside blocks are ignored.
func parseLogrotate(text string) ([]rotation, error) {
	var (
		blocks []rotation
		cur    *rotation
		script string // the script being read, if any
		body   strings.Builder
		prev   string // the line before, outside blocks: patterns for a "{" alone
	)
	sc := bufio.NewScanner(strings.NewReader(text))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if script != "" {
			if line == "endscript" {
				cur.scripts[script] = body.String()
				script = ""
				body.Reset()
			} else {
				body.WriteString(sc.Text() + "\n")
			}
			continue
		}
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		if cur == nil {
			if head, ok := strings.CutSuffix(line, "{"); ok {
				if strings.TrimSpace(head) == "" {
					head = prev
				}
				blocks = append(blocks, rotation{
					patterns:   strings.Fields(head),
					directives: map[string][]string{},
					scripts:    map[string]string{},
				})
				cur = &blocks[len(blocks)-1]
				if len(cur.patterns) == 0 {
					return nil, fmt.Errorf("line %d: a block without log file patterns", n)
				}
				prev = ""
			} else {
				prev = line
			}
			continue
		}
		if line == "}" {
			cur = nil
			continue
		}
		f := strings.Fields(line)
		switch f[0] {
		case "postrotate", "prerotate", "firstaction", "lastaction", "preremove":
			script = f[0]
		case "endscript":
			return nil, fmt.Errorf("line %d: endscript without a script", n)
		default:
			cur.directives[f[0]] = f[1:]
		}
	}
	if script != "" || cur != nil {
		return nil, fmt.Errorf("unterminated block or script at the end")
	}
	return blocks, sc.Err()
}

func TestLogrotate(t *testing.T) {
	blocks, err := parseLogrotate(readFile(t, logrotateFile))
	if err != nil {
		t.Fatalf("%s: %v", logrotateFile, err)
	}
	if len(blocks) != 1 {
		t.Fatalf("%s has %d blocks, want 1", logrotateFile, len(blocks))
	}
	b := blocks[0]

	// The blocked-flow log, in the unit's LogsDirectory=, and never the
	// pcap capture, which rotates itself.
	if logs, _ := loadUnit(t).last("Service", "LogsDirectory"); "/var/log/"+logs != logDir {
		t.Errorf("the unit's LogsDirectory= is %q, the logrotate file rotates logs in %s", logs, logDir)
	}
	blocked := false
	for _, p := range b.patterns {
		if filepath.Dir(p) != logDir {
			t.Errorf("pattern %q is not in %s", p, logDir)
		}
		if strings.Contains(p, "pcap") {
			t.Errorf("pattern %q names a pcap file: nfqguard rotates its capture itself", p)
		}
		for _, pcap := range []string{"blocked.pcap", "blocked.pcap.1", "blocked.pcap.12", "nfqguard.pcap"} {
			if ok, err := filepath.Match(p, filepath.Join(logDir, pcap)); err != nil {
				t.Errorf("pattern %q: %v", p, err)
			} else if ok {
				t.Errorf("pattern %q matches the pcap file %s: nfqguard rotates its capture itself", p, pcap)
			}
		}
		if ok, _ := filepath.Match(p, filepath.Join(logDir, "blocked.log")); ok {
			blocked = true
		}
	}
	if !blocked {
		t.Errorf("patterns %q do not match %s/blocked.log, the path docs/operations.md and docs/fleet.md configure", b.patterns, logDir)
	}

	for _, d := range []string{"rotate", "missingok", "notifempty", "create", "sharedscripts"} {
		if _, ok := b.directives[d]; !ok {
			t.Errorf("no %q directive", d)
		}
	}
	if _, ok := b.directives["compress"]; ok {
		if _, ok := b.directives["delaycompress"]; !ok {
			t.Errorf("compress without delaycompress: nfqguard writes to the renamed file until it has reopened")
		}
	}
	if _, ok := b.directives["copytruncate"]; ok {
		t.Errorf("copytruncate: nfqguard reopens its log on SIGUSR1; copying loses the lines written meanwhile")
	}

	// The reopen: SIGUSR1 to nfqguard, in a script sh can parse.
	post := b.scripts["postrotate"]
	if !strings.Contains(post, "USR1") || !strings.Contains(post, "nfqguard") {
		t.Errorf("postrotate script %q does not send SIGUSR1 to nfqguard", post)
	}
	if strings.Contains(post, "systemctl kill") && !strings.Contains(post, "--kill-who=main") && !strings.Contains(post, "--kill-whom=main") {
		t.Errorf("postrotate script %q: systemctl kill without --kill-who=main also signals nfqguard's iptables children, which SIGUSR1 kills", post)
	}
	if sh, err := exec.LookPath("sh"); err == nil {
		if out, err := exec.Command(sh, "-n", "-c", post).CombinedOutput(); err != nil {
			t.Errorf("postrotate script does not parse: %v\n%s", err, out)
		}
	}
}

func TestParseLogrotate(t *testing.T) {
	blocks, err := parseLogrotate("weekly\n# c\n/a/*.log /b.log {\n  rotate 3\n  # c\n  postrotate\n    kill x\n  endscript\n}\n/c\n{\n}\n")
	if err != nil {
		t.Fatal(err)
	}
	if len(blocks) != 2 {
		t.Fatalf("%d blocks, want 2", len(blocks))
	}
	if !slices.Equal(blocks[0].patterns, []string{"/a/*.log", "/b.log"}) ||
		!slices.Equal(blocks[0].directives["rotate"], []string{"3"}) ||
		blocks[0].scripts["postrotate"] != "    kill x\n" {
		t.Errorf("block 0 = %+v", blocks[0])
	}
	for _, bad := range []string{"/a {\n", "/a {\npostrotate\n}\n", "/a {\nendscript\n}\n"} {
		if _, err := parseLogrotate(bad); err == nil {
			t.Errorf("parseLogrotate(%q) succeeded, want an error", bad)
		}
	}
}

// TestLogrotateDebug has logrotate, where it is installed, read a copy of
// the file whose paths point into a temporary directory, and walk through
// a forced rotation without doing it (-d).
func TestLogrotateDebug(t *testing.T) {
	logrotate, err := exec.LookPath("logrotate")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("logrotate is not installed (make deps installs it)")
		}
		t.Skip("logrotate is not installed")
	}
	dir := t.TempDir()
	logs := filepath.Join(dir, "log")
	if err := os.Mkdir(logs, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, content := range map[string]string{
		"blocked.log":    `{"event":"blocked"}` + "\n",
		"blocked.pcap":   "pcap",
		"blocked.pcap.1": "pcap",
	} {
		if err := os.WriteFile(filepath.Join(logs, name), []byte(content), 0o640); err != nil {
			t.Fatal(err)
		}
	}
	conf := filepath.Join(dir, "nfqguard")
	if err := os.WriteFile(conf, []byte(strings.ReplaceAll(readFile(t, logrotateFile), logDir, logs)), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(conf, 0o644); err != nil { // whatever the umask: logrotate ignores writable files
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, logrotate, "-d", "-f", "-s", filepath.Join(dir, "state"), conf).CombinedOutput()
	if err != nil {
		t.Fatalf("logrotate -d: %v\n%s", err, out)
	}
	text := string(out)
	for _, line := range strings.Split(text, "\n") {
		if strings.HasPrefix(line, "error:") {
			t.Errorf("logrotate -d: %s", line)
		}
	}
	if want := "considering log " + filepath.Join(logs, "blocked.log"); !strings.Contains(text, want) {
		t.Errorf("logrotate -d does not say %q:\n%s", want, text)
	}
	if !strings.Contains(text, "postrotate") {
		t.Errorf("logrotate -d would not run the postrotate script:\n%s", text)
	}
	if strings.Contains(text, "pcap") {
		t.Errorf("logrotate -d considers a pcap file:\n%s", text)
	}
}
