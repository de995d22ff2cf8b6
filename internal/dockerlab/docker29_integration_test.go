package dockerlab_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/nfqguard/nfqguard/internal/dockerlab"
	"github.com/nfqguard/nfqguard/internal/dockerlab/dockerlabtest"
	"github.com/nfqguard/nfqguard/internal/netns"
	"github.com/nfqguard/nfqguard/internal/traffic"
)

// TestDocker29 starts the Docker 29 engine that "make deps" builds, once
// per firewall backend: its version, the API versions it refuses, a
// container of the test image with a published port reached from outside,
// Docker 29's own firewall layout, and a Close that leaves nothing behind.
// Under CI=true a missing engine fails the test (dockerlabtest.RequireDocker29).
func TestDocker29(t *testing.T) {
	t.Parallel()
	dockerlabtest.RequireDocker29(t)
	for _, backend := range []string{dockerlab.IPTables, dockerlab.NFTables} {
		t.Run(backend, func(t *testing.T) {
			t.Parallel()
			d := dockerlabtest.Start(t, dockerlab.Options{Engine: dockerlab.Docker29, FirewallBackend: backend})
			dir, prefix := d.Dir(), d.Prefix()
			if !strings.HasPrefix(d.Version(), "29.") {
				t.Errorf("Version() = %q, want 29.*", d.Version())
			}
			if d.Engine() != dockerlab.Docker29 || d.FirewallBackend() != backend {
				t.Errorf("Engine(), FirewallBackend() = %v, %q; want docker29, %q", d.Engine(), d.FirewallBackend(), backend)
			}
			checkMinAPI(t, d.Socket())

			web := dockerlabtest.RunServer(t, d, "web", "-p", "8080:80")
			if err := traffic.TCPExchange(d.OutPath(), 0, netip.AddrPortFrom(dockerlab.HostOutside, 8080), payload, allowTimeout); err != nil {
				t.Errorf("outside -> published 8080: %v", err)
			}
			ip, err := web.IPv4("bridge")
			if err != nil {
				t.Fatal(err)
			}
			// Docker 28 and later drop direct routing to a container's
			// unpublished ports with either backend.
			err = traffic.TCPExchange(d.OutPath(), 0, netip.AddrPortFrom(ip, 81), payload, blockTimeout)
			if !isTimeout(err) {
				t.Errorf("outside -> %s:81 routed directly (not published): want a timeout, got %v", ip, err)
			}

			switch backend {
			case dockerlab.IPTables:
				checkIPTables29(t, d)
			case dockerlab.NFTables:
				checkNFTables29(t, d)
			}

			if err := d.Close(); err != nil {
				t.Fatalf("Close: %v", err)
			}
			checkGone(t, prefix, dir, d.NS(), d.Out())
		})
	}
}

// checkIPTables29 checks Docker 28's iptables layout, which Docker 29
// keeps: FORWARD drops by default and jumps to DOCKER-USER first, then to
// DOCKER-FORWARD, which holds the per-bridge rules Docker 20.10 put in
// FORWARD itself.
func checkIPTables29(t *testing.T, d *dockerlab.Docker) {
	t.Helper()
	fwd, err := d.IPTables(t.Context(), "-S", "FORWARD")
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(fwd), "\n")
	if len(lines) < 3 || lines[0] != "-P FORWARD DROP" || lines[1] != "-A FORWARD -j DOCKER-USER" ||
		!slices.Contains(lines, "-A FORWARD -j DOCKER-FORWARD") {
		t.Errorf("FORWARD: want policy DROP, the DOCKER-USER jump first and a DOCKER-FORWARD jump, got:\n%s", fwd)
	}
	if _, err := d.IPTables(t.Context(), "-S", "DOCKER-FORWARD"); err != nil {
		t.Errorf("chain DOCKER-FORWARD: %v", err)
	}
}

// checkNFTables29 checks Docker 29's nftables layout: its own table
// "ip docker-bridges", forwarding turned on before dockerd started (the
// backend does not do it), and no iptables chains of Docker's.
func checkNFTables29(t *testing.T, d *dockerlab.Docker) {
	t.Helper()
	tables, err := netns.Run(t.Context(), d.NSPath(), "nft", "list", "tables")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(strings.Split(strings.TrimSpace(tables), "\n"), "table ip docker-bridges") {
		t.Errorf("nft list tables: want table ip docker-bridges, got:\n%s", tables)
	}
	if v, err := netns.ReadSysctl(d.NSPath(), "net.ipv4.ip_forward"); err != nil || v != "1" {
		t.Errorf("ip_forward in the Docker namespace = %q (%v), want 1", v, err)
	}
	if out, err := d.IPTables(t.Context(), "-S", "DOCKER-USER"); err == nil {
		t.Errorf("iptables -S DOCKER-USER with the nftables backend: want no such chain, got:\n%s", out)
	}
}

// checkMinAPI asks the engine's API for its version at API 1.41, Debian's
// 20.10 client's, and at 1.44: the engine runs with
// DOCKER_MIN_API_VERSION=1.44, so it must refuse the first.
func checkMinAPI(t *testing.T, socket string) {
	t.Helper()
	client := &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var dialer net.Dialer
			return dialer.DialContext(ctx, "unix", socket)
		},
	}}
	defer client.CloseIdleConnections()
	for _, tc := range []struct {
		version string
		status  int
	}{{"1.41", http.StatusBadRequest}, {"1.44", http.StatusOK}} {
		req, err := http.NewRequestWithContext(t.Context(), http.MethodGet, "http://docker/v"+tc.version+"/version", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatalf("GET /v%s/version: %v", tc.version, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.status {
			t.Errorf("GET /v%s/version: status %d, want %d: %s", tc.version, resp.StatusCode, tc.status, body)
		}
	}
}
