package rules

import (
	"bytes"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

var cmpAddr = cmp.Comparer(func(a, b netip.Addr) bool { return a == b })

func addrs(ss ...string) []netip.Addr {
	out := make([]netip.Addr, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParseAddr(s)
	}
	return out
}

// dockerHost is what a Docker host running docker.toml's containers
// reports, in no particular order.
func dockerHost() []Container {
	return []Container{
		{ID: "3333333333333333", Name: "redis-2", Image: "docker.io/library/redis:7-alpine",
			Labels: map[string]string{"com.example.tier": "db"}, Addrs: addrs("172.18.0.4")},
		{ID: "1111111111111111", Name: "web", Image: "nginx:1.27", Addrs: addrs("172.18.0.2", "fd00:18::2"),
			Ports: []PortBinding{
				{ContainerPort: 80, Proto: "tcp", HostIP: netip.MustParseAddr("0.0.0.0"), HostPort: 8080},
				{ContainerPort: 80, Proto: "tcp", HostIP: netip.MustParseAddr("::"), HostPort: 8080},
				{ContainerPort: 53, Proto: "udp", HostIP: netip.MustParseAddr("127.0.0.1"), HostPort: 5353},
			}},
		{ID: "2222222222222222", Name: "redis-1", Image: "redis:7",
			Labels: map[string]string{"com.example.tier": "db"}, Addrs: addrs("172.18.0.3", "172.19.0.3")},
		{ID: "4444444444444444", Name: "redis-other", Image: "redis:7",
			Labels: map[string]string{"com.example.tier": "cache"}, Addrs: addrs("172.18.0.5")},
		{ID: "5555555555555555", Name: "agent", Image: "agent:2",
			Labels: map[string]string{"com.example.monitor": ""}}, // host network: no address
		{ID: "6666666666666666", Name: "postgres", Image: "postgres:16", Addrs: addrs("172.18.0.6")},
	}
}

func TestResolveSelectors(t *testing.T) {
	base := mustLoad(t, filepath.Join("testdata", "docker.toml"))
	if !base.HasDynamic() || base.Resolved() {
		t.Fatalf("HasDynamic = %v, Resolved = %v; want true, false", base.HasDynamic(), base.Resolved())
	}
	if got, want := base.Docker.Socket, "/run/docker-test.sock"; got != want {
		t.Errorf("Docker.Socket = %q, want %q (unix:// removed)", got, want)
	}
	if diff := cmp.Diff([]string{"web", "caches", "monitored", "api"}, base.Unresolved()); diff != "" {
		t.Errorf("Unresolved before Resolve (-want +got):\n%s", diff)
	}

	rt, warns := base.Resolve(dockerHost())
	if len(warns) != 0 {
		t.Errorf("warnings: %q", warns)
	}
	want := []Resolution{
		{Entry: "web", Selector: `docker name "web"`, Containers: []ResolvedContainer{
			{ID: "1111111111111111", Name: "web", Addrs: addrs("172.18.0.2", "fd00:18::2")}}},
		{Entry: "caches", Selector: `docker image "redis:*", label "com.example.tier=db"`, Containers: []ResolvedContainer{
			{ID: "2222222222222222", Name: "redis-1", Addrs: addrs("172.18.0.3", "172.19.0.3")},
			{ID: "3333333333333333", Name: "redis-2", Addrs: addrs("172.18.0.4")}}},
		{Entry: "monitored", Selector: `docker label "com.example.monitor"`, Containers: []ResolvedContainer{
			{ID: "5555555555555555", Name: "agent"}}},
		{Entry: "api", Selector: `docker name "api"`},
	}
	if diff := cmp.Diff(want, rt.Resolution(), cmpAddr, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("Resolution mismatch (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff([]string{"monitored", "api"}, rt.Unresolved()); diff != "" {
		t.Errorf("Unresolved after Resolve (-want +got):\n%s", diff)
	}

	peer := netip.MustParseAddr("172.18.0.2")
	for _, tt := range []struct {
		ip   string
		dir  Direction
		port uint16
		want Match
	}{
		{"172.18.0.2", Egress, 25, Match{Action: Drop, RuleID: "web-no-smtp", Container: "web"}},
		{"fd00:18::2", Ingress, 22, Match{Action: Allow, RuleID: RuleIDDefault, Container: "web"}},
		{"172.18.0.3", Ingress, 6379, Match{Action: Allow, RuleID: "caches-from-web", Container: "caches"}},
		{"172.19.0.3", Ingress, 22, Match{Action: Drop, RuleID: RuleIDDefault, Container: "caches"}},
		{"::ffff:172.18.0.4", Ingress, 6379, Match{Action: Allow, RuleID: "caches-from-web", Container: "caches"}},
		{"172.18.0.5", Ingress, 6379, Match{Action: Drop, RuleID: RuleIDDefault}},                    // tier=cache: not selected
		{"172.18.0.9", Ingress, 22, Match{Action: Drop, RuleID: RuleIDDefault, Container: "legacy"}}, // static
	} {
		if got := rt.Judge(netip.MustParseAddr(tt.ip), tt.dir, ProtoTCP, tt.port, peer); got != tt.want {
			t.Errorf("resolved Judge(%s, %v, %d) = %+v, want %+v", tt.ip, tt.dir, tt.port, got, tt.want)
		}
	}
}

func TestResolveImmutable(t *testing.T) {
	base := mustLoad(t, filepath.Join("testdata", "docker.toml"))
	var before bytes.Buffer
	if _, err := base.WriteTo(&before); err != nil {
		t.Fatal(err)
	}
	web, peer := netip.MustParseAddr("172.18.0.2"), netip.MustParseAddr("203.0.113.1")
	host := dockerHost()
	rt, _ := base.Resolve(host)

	// The parsed table is untouched.
	if base.Listed(web) || base.Resolved() {
		t.Errorf("Resolve changed the table it was called on")
	}
	if got := base.Judge(web, Egress, ProtoTCP, 25, peer); got.Container != "" {
		t.Errorf("base Judge after Resolve = %+v, want web unknown", got)
	}
	if _, ok := base.Meta(web); ok {
		t.Errorf("base Meta after Resolve found web")
	}
	var after bytes.Buffer
	if _, err := base.WriteTo(&after); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(before.String(), after.String()); diff != "" {
		t.Errorf("base WriteTo changed by Resolve (-before +after):\n%s", diff)
	}
	if !rt.Listed(web) || !rt.Resolved() {
		t.Errorf("resolved table: Listed(web) = %v, Resolved = %v", rt.Listed(web), rt.Resolved())
	}

	// Changing the caller's slices afterwards changes nothing in rt.
	host[1].Addrs[0] = netip.MustParseAddr("10.9.9.9")
	host[1].Ports[0].HostPort = 1
	if !rt.Listed(web) {
		t.Errorf("resolved table follows the caller's slices")
	}
	if m, _ := rt.Meta(web); m.Published(ProtoTCP, 80) != "0.0.0.0:8080,[::]:8080" || m.Ports[0].HostPort != 8080 {
		t.Errorf("resolved meta follows the caller's slices: %+v", m)
	}

	// Resolving again starts from the file: web's old address is gone.
	rt2, _ := rt.Resolve([]Container{{ID: "7", Name: "web", Addrs: addrs("172.18.0.20")}})
	if rt2.Listed(web) || !rt2.Listed(netip.MustParseAddr("172.18.0.20")) || !rt.Listed(web) {
		t.Errorf("re-resolving: old address listed = %v, new = %v, first resolved table still has it = %v",
			rt2.Listed(web), rt2.Listed(netip.MustParseAddr("172.18.0.20")), rt.Listed(web))
	}

	// The order of the containers does not matter.
	rev := dockerHost()
	slices.Reverse(rev)
	rt3, _ := base.Resolve(rev)
	rt1, _ := base.Resolve(dockerHost())
	if diff := cmp.Diff(rt1.Resolution(), rt3.Resolution(), cmpAddr); diff != "" {
		t.Errorf("Resolve depends on the order of its input (-sorted +reversed):\n%s", diff)
	}
}

func TestResolveConflicts(t *testing.T) {
	base := mustParse(t, "conflicts.toml", []byte(src(
		`[[container]]`,
		`name = "legacy"`,
		`ips = ["172.18.0.9"]`,
		`[[container]]`,
		`name = "dbs"`,
		`label = "tier=db"`,
		`[[container]]`,
		`name = "redis"`,
		`image = "redis:*"`,
		`[[container]]`,
		`name = "clash"`,
		`image = "clash:*"`,
	)))
	rt, warns := base.Resolve([]Container{
		{ID: "1", Name: "redis-db", Image: "redis:7", Labels: map[string]string{"tier": "db"}, Addrs: addrs("172.18.0.3")},
		{ID: "2", Name: "redis-plain", Image: "redis:7", Addrs: addrs("172.18.0.4", "172.18.0.9")},
		{ID: "3", Name: "clash-a", Image: "clash:1", Addrs: addrs("10.1.0.1", "10.1.0.2")},
		{ID: "4", Name: "clash-b", Image: "clash:1", Addrs: addrs("10.1.0.2")},
	})
	wantWarns := []string{
		`container redis-db is selected by "dbs" and "redis": "dbs", first in the file, applies`,
		`address 172.18.0.9 of container redis-plain (selected by "redis") is listed in the ips of "legacy", which keeps it`,
		`address 10.1.0.2 of container clash-b (selected by "clash") is also container clash-a's (selected by "clash"), which keeps it`,
	}
	if diff := cmp.Diff(wantWarns, warns); diff != "" {
		t.Errorf("warnings (-want +got):\n%s", diff)
	}
	peer := netip.MustParseAddr("192.0.2.1")
	for ip, want := range map[string]string{
		"172.18.0.3": "dbs", "172.18.0.4": "redis", "172.18.0.9": "legacy", "10.1.0.1": "clash", "10.1.0.2": "clash",
	} {
		if got := rt.Judge(netip.MustParseAddr(ip), Ingress, ProtoTCP, 80, peer).Container; got != want {
			t.Errorf("%s belongs to %q, want %q", ip, got, want)
		}
	}
	if m, _ := rt.Meta(netip.MustParseAddr("10.1.0.2")); m.Name != "clash-a" {
		t.Errorf("Meta of a shared address = %q, want the first container by name", m.Name)
	}
}

func TestMeta(t *testing.T) {
	base := mustLoad(t, filepath.Join("testdata", "docker.toml"))
	rt, _ := base.Resolve(dockerHost())
	m, ok := rt.Meta(netip.MustParseAddr("fd00:18::2"))
	if !ok || m.Name != "web" || m.Image != "nginx:1.27" || m.ID != "1111111111111111" || len(m.Ports) != 3 {
		t.Fatalf("Meta(web) = %+v, %v", m, ok)
	}
	for _, tt := range []struct {
		proto uint8
		port  uint16
		want  string
	}{
		{ProtoTCP, 80, "0.0.0.0:8080,[::]:8080"},
		{ProtoUDP, 53, "127.0.0.1:5353"},
		{ProtoUDP, 80, ""},
		{ProtoTCP, 53, ""},
		{ProtoTCP, 443, ""},
	} {
		if got := m.Published(tt.proto, tt.port); got != tt.want {
			t.Errorf("Published(%d, %d) = %q, want %q", tt.proto, tt.port, got, tt.want)
		}
	}
	// Containers no entry selects are described too, for the log of
	// flows that [defaults] judged.
	if m, ok := rt.Meta(netip.MustParseAddr("::ffff:172.18.0.6")); !ok || m.Name != "postgres" || m.Image != "postgres:16" {
		t.Errorf("Meta(postgres, v4-mapped) = %+v, %v", m, ok)
	}
	if _, ok := rt.Meta(netip.MustParseAddr("172.18.0.99")); ok {
		t.Errorf("Meta of an unknown address found something")
	}
	ip := netip.MustParseAddr("172.18.0.2")
	var s string
	if n := testing.AllocsPerRun(1000, func() {
		m, _ := rt.Meta(ip)
		s = m.Published(ProtoTCP, 80)
	}); n != 0 {
		t.Errorf("Meta and Published allocate %v times per run, want 0", n)
	}
	_ = s
}

func TestResolvedJudgeAllocs(t *testing.T) {
	base := mustLoad(t, filepath.Join("testdata", "docker.toml"))
	rt, _ := base.Resolve(dockerHost())
	web, redis, peer := netip.MustParseAddr("fd00:18::2"), netip.MustParseAddr("172.18.0.3"), netip.MustParseAddr("172.18.0.2")
	var m Match
	if n := testing.AllocsPerRun(1000, func() {
		m = rt.Judge(web, Egress, ProtoTCP, 25, peer)
		m = rt.Judge(redis, Ingress, ProtoTCP, 6379, peer)
		_ = rt.Listed(peer)
	}); n != 0 {
		t.Errorf("Judge on a resolved table allocates %v times per run, want 0", n)
	}
	_ = m
}

// TestResolvedWriteTo compares WriteTo of docker.toml resolved against
// dockerHost with testdata/docker.resolved.golden.
func TestResolvedWriteTo(t *testing.T) {
	base := mustLoad(t, filepath.Join("testdata", "docker.toml"))
	rt, _ := base.Resolve(dockerHost())
	var buf bytes.Buffer
	if _, err := rt.WriteTo(&buf); err != nil {
		t.Fatal(err)
	}
	golden := filepath.Join("testdata", "docker.resolved.golden")
	if *update {
		if err := os.WriteFile(golden, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(golden)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), buf.String()); diff != "" {
		t.Errorf("WriteTo mismatch (-want +got):\n%s", diff)
	}
}

func TestImageMatches(t *testing.T) {
	for _, tt := range []struct {
		pattern, ref string
		want         bool
	}{
		{"redis:*", "redis:7", true},
		{"redis:*", "redis", true}, // implicit :latest
		{"redis:latest", "redis", true},
		{"redis", "redis", true},
		{"redis", "redis:7", false},
		{"redis", "redis:latest", true},
		{"redis", "docker.io/library/redis:latest", true},
		{"redis:latest", "docker.io/library/redis", true},
		{"redis:lat*", "redis", true},
		{"redis:*", "docker.io/library/redis:7-alpine", true},
		{"redis:*", "library/redis:7", true},
		{"docker.io/library/redis:*", "docker.io/library/redis:7", true}, // as written
		{"redis:*", "redis:7@sha256:0123abcd", true},
		{"redis:*", "redis@sha256:0123abcd", false}, // digest only: no tag
		{"redis@sha256:*", "redis@sha256:0123abcd", true},
		{"redis:*", "bitnami/redis:7", false}, // * does not cross /
		{"*/redis:*", "bitnami/redis:7", true},
		{"*/redis:*", "docker.io/bitnami/redis", true},
		{"redis:*", "redisinsight:2", false},
		{"redis*", "redisinsight:2", true},
		{"redis:7.?", "redis:7.2", true},
		{"redis:[67]", "redis:6", true},
		{"localhost:5000/app:*", "localhost:5000/app", true}, // registry port is not a tag
		{"localhost:5000/app", "localhost:5000/app", true},
		{"ghcr.io/org/app:v*", "ghcr.io/org/app:v1.2", true},
		{"app:*", "ghcr.io/org/app:v1.2", false},
		{"sha256:0123*", "sha256:0123abcd", true},
	} {
		if got := imageMatches(tt.pattern, tt.ref); got != tt.want {
			t.Errorf("imageMatches(%q, %q) = %v, want %v", tt.pattern, tt.ref, got, tt.want)
		}
	}
}

func TestLabelSelector(t *testing.T) {
	for _, tt := range []struct {
		label  string
		labels map[string]string
		want   bool
	}{
		{"tier=db", map[string]string{"tier": "db"}, true},
		{"tier=db", map[string]string{"tier": "web"}, false},
		{"tier=db", nil, false},
		{"tier", map[string]string{"tier": ""}, true},
		{"tier", map[string]string{"tier": "db"}, true},
		{"tier=", map[string]string{"tier": ""}, true},
		{"tier=", map[string]string{"tier": "db"}, false},
		{"com.example.note=a=b c", map[string]string{"com.example.note": "a=b c"}, true},
	} {
		tbl := mustParse(t, "label.toml", []byte(src(`[[container]]`, `name = "g"`, `label = "`+tt.label+`"`)))
		rt, _ := tbl.Resolve([]Container{{ID: "1", Name: "c", Labels: tt.labels, Addrs: addrs("10.0.0.1")}})
		if got := rt.Listed(netip.MustParseAddr("10.0.0.1")); got != tt.want {
			t.Errorf("label %q on %v: selected = %v, want %v", tt.label, tt.labels, got, tt.want)
		}
	}
}

func TestDockerParseErrors(t *testing.T) {
	long := "/" + strings.Repeat("s", 107)
	tests := []struct {
		name string
		src  string
		pos  string
		msg  string
	}{
		{"ips and image", src(`[[container]]`, `name = "a"`, `ips = ["172.17.0.2"]`, `image = "redis:*"`), "4:1",
			`container[0].image: image cannot be used with ips: use ips for a container with fixed addresses, or image and label (without ips) to select containers through Docker`},
		{"ips and label", src(`[[container]]`, `name = "a"`, `label = "tier=db"`, `ips = ["172.17.0.2"]`), "3:1",
			`container[0].label: label cannot be used with ips`},
		{"empty ips", src(`[[container]]`, `name = "web"`, `ips = []`), "3:1",
			`container[0].ips: is empty: list the container's addresses, or leave ips out to resolve the container through Docker by its name`},
		{"label without key", src(`[[container]]`, `name = "a"`, `label = "=db"`), "3:1",
			`container[0].label: "=db" has no key before "="; write "key" (label present) or "key=value"`},
		{"empty label", src(`[[container]]`, `name = "a"`, `label = ""`), "3:1", `container[0].label: must not be empty`},
		{"label key with space", src(`[[container]]`, `name = "a"`, `label = "my tier=db"`), "3:1",
			`container[0].label: "my tier=db": the label key must not contain spaces or control characters`},
		{"label value with control", src(`[[container]]`, `name = "a"`, `label = "tier=d\tb"`), "3:1",
			`the label value must not contain control characters`},
		{"label not a string", src(`[[container]]`, `name = "a"`, `label = ["a", "b"]`), "3:1",
			`container[0].label: must be a string, got an array`},
		{"bad glob", src(`[[container]]`, `name = "a"`, `image = "redis:[7"`), "3:1",
			`container[0].image: "redis:[7" is not a valid pattern (*, ?, [a-z] and \ as in path.Match): syntax error in pattern`},
		{"bad glob after a mismatch", src(`[[container]]`, `name = "a"`, `image = "x*\\"`), "3:1",
			`is not a valid pattern`},
		{"empty image", src(`[[container]]`, `name = "a"`, `image = ""`), "3:1", `container[0].image: must not be empty`},
		{"image with space", src(`[[container]]`, `name = "a"`, `image = "redis 7"`), "3:1",
			`container[0].image: "redis 7" must not contain spaces`},
		{"not a docker name", src(`[[container]]`, `name = "web/1"`), "2:1",
			`container[0].name: "web/1" can never be a Docker container name`},
		{"docker name starting with a dash", src(`[[container]]`, `name = "-web"`), "2:1",
			`container[0].name: "-web" can never be a Docker container name`},
		{"socket relative", src(`[docker]`, `socket = "docker.sock"`), "2:1", `docker.socket: "docker.sock" is not an absolute path`},
		{"socket tcp", src(`[docker]`, `socket = "tcp://10.0.0.1:2375"`), "2:1",
			`docker.socket: "tcp://10.0.0.1:2375": only a local unix socket is supported`},
		{"socket empty", src(`[docker]`, `socket = ""`), "2:1", `docker.socket: must not be empty`},
		{"socket too long", src(`[docker]`, `socket = "`+long+`"`), "2:1", `is 108 bytes long; a unix socket path holds at most 107`},
		{"socket not a string", src(`[docker]`, `socket = 1`), "2:1", `docker.socket: must be a string, got an integer (1)`},
		{"unknown docker key", src(`[docker]`, `sock = "/x"`), "2:1",
			`docker.sock: unknown key "sock" in [docker] (did you mean "socket"?)`},
		{"docker not a table", src(`docker = "/x"`), "1:1", `docker: must be a table ([docker])`},
		{"unknown container key", src(`[[container]]`, `name = "a"`, `images = "x"`), "3:1",
			`container[0].images: unknown key "images" in [[container]] (did you mean "image"?)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) { wantOneError(t, tt.src, tt.pos, tt.msg) })
	}
}

func TestDockerSocketAccepted(t *testing.T) {
	for in, want := range map[string]string{
		"/var/run/docker.sock":         "/var/run/docker.sock",
		"unix:///run/user/1/d.sock":    "/run/user/1/d.sock",
		"/" + strings.Repeat("s", 106): "/" + strings.Repeat("s", 106),
	} {
		tbl := mustParse(t, "ok.toml", []byte(src(`[docker]`, `socket = "`+in+`"`)))
		if tbl.Docker.Socket != want {
			t.Errorf("socket = %q: Docker.Socket = %q, want %q", in, tbl.Docker.Socket, want)
		}
	}
	if tbl := mustParse(t, "none.toml", nil); tbl.Docker.Socket != "" || tbl.HasDynamic() {
		t.Errorf("empty file: Docker = %+v, HasDynamic = %v", tbl.Docker, tbl.HasDynamic())
	}
}
