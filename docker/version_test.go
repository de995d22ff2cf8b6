package docker_test

import (
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/nfqguard/nfqguard/docker"
	"github.com/nfqguard/nfqguard/docker/fakedocker"
)

// Every daemon from Docker 20.10 to 29 with DOCKER_MIN_API_VERSION raised
// is spoken to in the newest version both sides know; a daemon outside
// this package's range is refused before any versioned request.
func TestNegotiate(t *testing.T) {
	for _, tt := range []struct {
		name    string
		daemon  map[string]string
		want    string // "" when refused
		errWant string
	}{
		{"Docker 20.10", fakedocker.Version, "1.41", ""},
		{"Docker 29, minimum raised to 1.44", fakedocker.Docker29, "1.52", ""},
		{"Docker 25", map[string]string{"Version": "25.0.5", "ApiVersion": "1.44", "MinAPIVersion": "1.24"}, "1.44", ""},
		{"newer than this package", map[string]string{"Version": "31.0.0", "ApiVersion": "1.60", "MinAPIVersion": "1.44"}, docker.MaxAPIVersion, ""},
		{"no minimum reported", map[string]string{"Version": "20.10.0", "ApiVersion": "1.41"}, "1.41", ""},
		{"older than Docker 20.10", map[string]string{"Version": "19.03.15", "ApiVersion": "1.40", "MinAPIVersion": "1.12"}, "",
			"Docker 19.03.15 serves API versions up to 1.40; nfqguard needs 1.41 or newer (Docker 20.10)"},
		{"minimum above this package's newest", map[string]string{"Version": "40.0.0", "ApiVersion": "1.70", "MinAPIVersion": "1.60"}, "",
			"Docker 40.0.0 serves API versions 1.60 and newer (its DOCKER_MIN_API_VERSION); nfqguard speaks 1.41 to " + docker.MaxAPIVersion},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := fakedocker.New(t, db)
			srv.SetVersion(tt.daemon)
			c := docker.NewClient(srv.Path)
			cs, err := c.Containers(t.Context())
			if tt.want == "" {
				ve, ok := errors.AsType[*docker.VersionError](err)
				if !ok || !strings.HasSuffix(err.Error(), tt.errWant) || ve.Daemon.Version != tt.daemon["Version"] {
					t.Fatalf("Containers: err = %v, want a *VersionError ending %q", err, tt.errWant)
				}
				if v := srv.APIVersions(); len(v) != 0 {
					t.Errorf("versioned requests %v sent to a daemon whose range does not fit", v)
				}
				return
			}
			if err != nil || len(cs) != 1 {
				t.Fatalf("Containers = %v, %v; want db", cs, err)
			}
			if got := c.APIVersion(); got != tt.want {
				t.Errorf("APIVersion() = %q, want %q", got, tt.want)
			}
			for _, v := range srv.APIVersions() {
				if v != tt.want {
					t.Errorf("requests in versions %v, want all in %s", srv.APIVersions(), tt.want)
					break
				}
			}
		})
	}
}

// Version, the call nfqguard makes first, negotiates on the way: the
// listing after it needs no second /version.
func TestVersionNegotiates(t *testing.T) {
	srv := fakedocker.New(t, db)
	srv.SetVersion(fakedocker.Docker29)
	c := docker.NewClient(srv.Path)
	if c.APIVersion() != "" {
		t.Fatalf("APIVersion() = %q before any request", c.APIVersion())
	}
	if _, err := c.Version(t.Context()); err != nil {
		t.Fatal(err)
	}
	if c.APIVersion() != "1.52" {
		t.Errorf("APIVersion() after Version = %q, want 1.52", c.APIVersion())
	}
	if _, err := c.Containers(t.Context()); err != nil {
		t.Fatal(err)
	}
	if v := srv.APIVersions(); !slices.Equal(v, []string{"1.52", "1.52"}) { // list, inspect db
		t.Errorf("versioned requests %v, want the list and the inspect in 1.52", v)
	}
}

// Docker upgraded (or downgraded) under a running client: the first
// request refused as too old (too new) makes it ask again and retry once,
// and every call goes on working, the event stream included.
func TestRenegotiateAfterUpgrade(t *testing.T) {
	for _, tt := range []struct {
		name                 string
		before, after        map[string]string
		wantBefore, wantThen string
	}{
		{"upgrade to Docker 29", fakedocker.Version, fakedocker.Docker29, "1.41", "1.52"},
		{"downgrade to Docker 20.10", fakedocker.Docker29, fakedocker.Version, "1.52", "1.41"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			srv := fakedocker.New(t, db)
			srv.SetVersion(tt.before)
			c := docker.NewClient(srv.Path)
			if _, err := c.Containers(t.Context()); err != nil {
				t.Fatal(err)
			}
			if c.APIVersion() != tt.wantBefore {
				t.Fatalf("APIVersion() = %q, want %q", c.APIVersion(), tt.wantBefore)
			}
			// The daemon changes in place, the socket staying open: only
			// its refusal tells.
			srv.SetVersion(tt.after)
			n := len(srv.APIVersions())
			if _, err := c.Containers(t.Context()); err != nil {
				t.Fatalf("Containers after the daemon changed: %v", err)
			}
			// One refused request, then the list and the inspect.
			if got, want := srv.APIVersions()[n:], []string{tt.wantBefore, tt.wantThen, tt.wantThen}; !slices.Equal(got, want) {
				t.Errorf("versioned requests after the change %v, want %v", got, want)
			}
			if c.APIVersion() != tt.wantThen {
				t.Errorf("APIVersion() = %q, want %q", c.APIVersion(), tt.wantThen)
			}
			s, err := c.Events(t.Context())
			if err != nil {
				t.Fatalf("Events after the change: %v", err)
			}
			s.Close()
		})
	}
}

// A daemon that refuses a version it just offered is not asked forever:
// one renegotiation, one retry, then its refusal is the error.
func TestRenegotiateOnce(t *testing.T) {
	srv := fakedocker.New(t, db)
	// A daemon whose /version claims 1.41 but whose API wants 1.44 or
	// newer: every versioned request is refused.
	srv.SetVersion(map[string]string{"Version": "broken", "ApiVersion": "1.41", "MinAPIVersion": "1.12"})
	c := docker.NewClient(srv.Path)
	if _, err := c.Version(t.Context()); err != nil {
		t.Fatal(err)
	}
	srv.SetVersion(map[string]string{"Version": "broken", "ApiVersion": "1.41", "MinAPIVersion": "1.44"})
	_, err := c.Containers(t.Context())
	if err == nil {
		t.Fatal("Containers succeeded against a daemon refusing every version")
	}
	if _, ok := errors.AsType[*docker.VersionError](err); !ok {
		t.Errorf("err = %v, want the *VersionError of the renegotiation", err)
	}
	if v := srv.APIVersions(); len(v) != 1 {
		t.Errorf("versioned requests %v, want the one refused", v)
	}
}

// A daemon that went away may come back as another version: the client
// forgets the version it spoke and negotiates again.
func TestRenegotiateAfterRestart(t *testing.T) {
	srv := fakedocker.New(t, db)
	c := docker.NewClient(srv.Path)
	if _, err := c.Containers(t.Context()); err != nil {
		t.Fatal(err)
	}
	srv.Stop()
	if _, err := c.Containers(t.Context()); err == nil {
		t.Fatal("Containers succeeded with the daemon stopped")
	}
	if c.APIVersion() != "" {
		t.Errorf("APIVersion() = %q with the daemon gone, want none", c.APIVersion())
	}
	srv.SetVersion(fakedocker.Docker29)
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	n := len(srv.APIVersions())
	if _, err := c.Containers(t.Context()); err != nil {
		t.Fatal(err)
	}
	if got := srv.APIVersions()[n:]; !slices.Equal(got, []string{"1.52", "1.52"}) {
		t.Errorf("versioned requests after the restart %v, want 1.52 from the first (no refused request)", got)
	}
}
