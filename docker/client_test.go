package docker_test

import (
	"errors"
	"io/fs"
	"net/http"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"

	"github.com/nfqguard/nfqguard/docker"
	"github.com/nfqguard/nfqguard/docker/fakedocker"
)

var (
	web = fakedocker.Container{
		ID: "aaaaaaaaaaaa1111", Name: "web", Image: "nginx:1.27",
		Labels: map[string]string{"com.example.tier": "front"},
		Networks: map[string]fakedocker.Endpoint{
			"bridge": {IPv4: "172.17.0.2"},
			"app6":   {IPv4: "172.20.0.5", IPv6: "fd00:20::5"},
		},
		Ports: map[string][]fakedocker.Binding{
			"80/tcp":  {{HostIP: "0.0.0.0", HostPort: "8080"}, {HostIP: "::", HostPort: "8080"}},
			"53/udp":  {{HostIP: "127.0.0.1", HostPort: "5353"}},
			"443/tcp": nil, // exposed, not published
			"9/tcp":   {{HostIP: "", HostPort: "9009"}},
		},
	}
	db = fakedocker.Container{
		ID: "bbbbbbbbbbbb2222", Name: "db", Image: "postgres",
		Networks: map[string]fakedocker.Endpoint{"bridge": {IPv4: "172.17.0.3"}},
	}
	hostNet = fakedocker.Container{
		ID: "cccccccccccc3333", Name: "agent", Image: "agent:2",
		Networks: map[string]fakedocker.Endpoint{"host": {}},
	}
	gone    = fakedocker.Container{ID: "dddddddddddd4444", Name: "gone", Gone: true}
	stopped = fakedocker.Container{ID: "eeeeeeeeeeee5555", Name: "stopped", Stopped: true,
		Networks: map[string]fakedocker.Endpoint{"bridge": {IPv4: "172.17.0.9"}}}
)

var (
	wantWeb = docker.Container{
		ID: "aaaaaaaaaaaa1111", Name: "web", Image: "nginx:1.27",
		Labels: map[string]string{"com.example.tier": "front"},
		Networks: []docker.Network{
			{Name: "app6", IPv4: netip.MustParseAddr("172.20.0.5"), IPv6: netip.MustParseAddr("fd00:20::5")},
			{Name: "bridge", IPv4: netip.MustParseAddr("172.17.0.2")},
		},
		Ports: []docker.PortBinding{
			{ContainerPort: 9, Proto: "tcp", HostIP: netip.MustParseAddr("0.0.0.0"), HostPort: 9009},
			{ContainerPort: 53, Proto: "udp", HostIP: netip.MustParseAddr("127.0.0.1"), HostPort: 5353},
			{ContainerPort: 80, Proto: "tcp", HostIP: netip.MustParseAddr("0.0.0.0"), HostPort: 8080},
			{ContainerPort: 80, Proto: "tcp", HostIP: netip.MustParseAddr("::"), HostPort: 8080},
		},
	}
	wantDB = docker.Container{
		ID: "bbbbbbbbbbbb2222", Name: "db", Image: "postgres",
		Networks: []docker.Network{{Name: "bridge", IPv4: netip.MustParseAddr("172.17.0.3")}},
	}
	wantHostNet = docker.Container{ID: "cccccccccccc3333", Name: "agent", Image: "agent:2"}
)

var cmpAddrs = cmp.Comparer(func(a, b netip.Addr) bool { return a == b })

func TestContainers(t *testing.T) {
	srv := fakedocker.New(t)
	srv.SetContainers(web, gone, db, stopped, hostNet)
	got, err := docker.NewClient(srv.Path).Containers(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	// Sorted by name; the removed and the stopped container are left out.
	want := []docker.Container{wantHostNet, wantDB, wantWeb}
	if diff := cmp.Diff(want, got, cmpAddrs, cmpopts.EquateEmpty()); diff != "" {
		t.Errorf("Containers mismatch (-want +got):\n%s", diff)
	}
	addrs := got[2].Addrs()
	wantAddrs := []netip.Addr{netip.MustParseAddr("172.20.0.5"), netip.MustParseAddr("fd00:20::5"), netip.MustParseAddr("172.17.0.2")}
	if diff := cmp.Diff(wantAddrs, addrs, cmpAddrs); diff != "" {
		t.Errorf("Addrs mismatch (-want +got):\n%s", diff)
	}
}

func TestContainersEmpty(t *testing.T) {
	srv := fakedocker.New(t)
	got, err := docker.NewClient(srv.Path).Containers(t.Context())
	if err != nil || len(got) != 0 {
		t.Errorf("Containers of an empty daemon = %v, %v; want none, nil", got, err)
	}
}

func TestVersion(t *testing.T) {
	srv := fakedocker.New(t)
	got, err := docker.NewClient(srv.Path).Version(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	want := docker.Version{Version: "20.10.24+fake", APIVersion: "1.41", MinAPIVersion: "1.12"}
	if got != want {
		t.Errorf("Version = %+v, want %+v", got, want)
	}
}

func TestInfoFirewallBackend(t *testing.T) {
	srv := fakedocker.New(t)
	c := docker.NewClient(srv.Path)
	for _, driver := range []string{"", "iptables", "nftables"} {
		srv.SetFirewallBackend(driver)
		info, err := c.Info(t.Context())
		if err != nil {
			t.Fatal(err)
		}
		if info.FirewallBackend.Driver != driver {
			t.Errorf("FirewallBackend.Driver = %q, want %q", info.FirewallBackend.Driver, driver)
		}
	}
}

func TestAPIError(t *testing.T) {
	srv := fakedocker.New(t)
	srv.FailList(http.StatusInternalServerError)
	_, err := docker.NewClient(srv.Path).Containers(t.Context())
	ae, ok := errors.AsType[*docker.APIError](err)
	if !ok || ae.Status != http.StatusInternalServerError || ae.Message != "list refused by the test" {
		t.Fatalf("err = %v, want an *APIError 500 with the daemon's message", err)
	}
	if want := "docker: list containers: 500 list refused by the test"; err.Error() != want {
		t.Errorf("err = %q, want %q", err, want)
	}
}

func TestUnreachable(t *testing.T) {
	path := filepath.Join(t.TempDir(), "no.sock")
	c := docker.NewClient(path)
	_, err := c.Version(t.Context())
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Version on a missing socket: err = %v, want ENOENT", err)
	}
	if err == nil || !strings.HasPrefix(err.Error(), "docker: get version: dial unix "+path) {
		t.Errorf("err = %q, want it to say what failed and name the socket", err)
	}
	if _, err := c.Containers(t.Context()); err == nil || !strings.Contains(err.Error(), "list containers") {
		t.Errorf("Containers on a missing socket: err = %v", err)
	}
	if _, err := c.Events(t.Context()); err == nil || !strings.Contains(err.Error(), "follow events") {
		t.Errorf("Events on a missing socket: err = %v", err)
	}
}

func TestDefaultSocket(t *testing.T) {
	for _, tt := range []struct{ env, want string }{
		{"", "/var/run/docker.sock"},
		{"unix:///run/user/1000/docker.sock", "/run/user/1000/docker.sock"},
		{"tcp://10.0.0.1:2375", "/var/run/docker.sock"},
		{"unix://", "/var/run/docker.sock"},
	} {
		t.Setenv("DOCKER_HOST", tt.env)
		if got := docker.DefaultSocket(); got != tt.want {
			t.Errorf("DOCKER_HOST=%q: DefaultSocket() = %q, want %q", tt.env, got, tt.want)
		}
	}
}

func TestEventChanges(t *testing.T) {
	for _, tt := range []struct {
		typ, action string
		want        bool
	}{
		{"container", "start", true},
		{"container", "die", true},
		{"container", "stop", true},
		{"container", "kill", true},
		{"container", "destroy", true},
		{"container", "rename", true},
		{"container", "restart", true},
		{"network", "connect", true},
		{"network", "disconnect", true},
		{"container", "create", false},
		{"container", "exec_start: sh -c true", false},
		{"container", "health_status: healthy", false},
		{"container", "pause", false},
		{"network", "create", false},
		{"image", "pull", false},
	} {
		e := docker.Event{Type: tt.typ, Action: tt.action}
		if got := e.Changes(); got != tt.want {
			t.Errorf("%s %s: Changes() = %v, want %v", tt.typ, tt.action, got, tt.want)
		}
	}
}

func TestEventsStream(t *testing.T) {
	srv := fakedocker.New(t)
	s, err := docker.NewClient(srv.Path).Events(t.Context())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if f := srv.Filters(); f != `{"type":["container","network"]}` {
		t.Errorf("events filters = %s, want container and network events only", f)
	}
	srv.Emit("network", "connect", "net1", map[string]string{"container": "aaaa", "name": "app6"})
	ev, err := s.Next()
	if err != nil {
		t.Fatal(err)
	}
	want := docker.Event{Type: "network", Action: "connect",
		Actor: docker.Actor{ID: "net1", Attributes: map[string]string{"container": "aaaa", "name": "app6"}}}
	if diff := cmp.Diff(want, ev); diff != "" {
		t.Errorf("event mismatch (-want +got):\n%s", diff)
	}
	srv.CutStreams()
	if _, err := s.Next(); err == nil || !strings.Contains(err.Error(), "unexpected EOF") {
		t.Errorf("Next after the daemon ended the stream: err = %v, want unexpected EOF", err)
	}
}
