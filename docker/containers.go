package docker

import (
	"cmp"
	"context"
	"errors"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
)

// Container is a running container as the rules need it.
type Container struct {
	ID       string
	Name     string            // without Docker's leading "/"
	Image    string            // the image reference it was created from (Config.Image), as written
	Labels   map[string]string // nil when it has none
	Networks []Network         // sorted by name; only networks that gave it an address
	Ports    []PortBinding     // sorted by container port and protocol; bindings of one port in Docker's order
}

// Network is a container's endpoint on one Docker network.
type Network struct {
	Name string     // "bridge", a user-defined network's name, ...
	IPv4 netip.Addr // zero when the network gave it none
	IPv6 netip.Addr // zero when the network is not IPv6-enabled
}

// PortBinding is one published port: ContainerPort/Proto reachable on
// HostIP:HostPort. A port published on IPv4 and IPv6 (Docker 20.10's
// default for -p 8080:80) has two bindings, 0.0.0.0 and ::.
type PortBinding struct {
	ContainerPort uint16
	Proto         string // "tcp", "udp" or "sctp"
	HostIP        netip.Addr
	HostPort      uint16
}

// Addrs returns the container's addresses on all its networks, IPv4 first
// within each network, in network order.
func (c *Container) Addrs() []netip.Addr {
	var out []netip.Addr
	for _, n := range c.Networks {
		for _, a := range []netip.Addr{n.IPv4, n.IPv6} {
			if a.IsValid() {
				out = append(out, a)
			}
		}
	}
	return out
}

// Containers lists the running containers, sorted by name. It asks for the
// list, then inspects each container, because only the inspect answer has
// the image reference as written and the port bindings per host address. A
// container that goes away between the two requests is left out.
func (c *Client) Containers(ctx context.Context) ([]Container, error) {
	var list []struct {
		ID string `json:"Id"`
	}
	if err := c.getVersionedJSON(ctx, "/containers/json", &list); err != nil {
		return nil, &OpError{Op: "list containers", Err: err}
	}
	out := make([]Container, 0, len(list))
	for _, l := range list {
		var in inspectJSON
		err := c.getVersionedJSON(ctx, "/containers/"+url.PathEscape(l.ID)+"/json", &in)
		if ae, ok := errors.AsType[*APIError](err); ok && ae.Status == http.StatusNotFound {
			continue // removed since the list
		}
		if err != nil {
			return nil, &OpError{Op: "inspect container " + shortID(l.ID), Err: err}
		}
		if !in.State.Running {
			continue // stopped since the list: it has no addresses any more
		}
		out = append(out, in.container())
	}
	slices.SortFunc(out, func(a, b Container) int { return cmp.Or(cmp.Compare(a.Name, b.Name), cmp.Compare(a.ID, b.ID)) })
	return out, nil
}

// inspectJSON is the part of GET /containers/{id}/json this package reads.
type inspectJSON struct {
	ID     string `json:"Id"`
	Name   string
	Config struct {
		Image  string
		Labels map[string]string
	}
	State struct {
		Running bool
	}
	NetworkSettings struct {
		// "80/tcp": [{"HostIp": "0.0.0.0", "HostPort": "8080"}, ...];
		// null for a port that is exposed but not published.
		Ports map[string][]struct {
			HostIP   string `json:"HostIp"`
			HostPort string
		}
		Networks map[string]struct {
			IPAddress         string
			GlobalIPv6Address string
		}
	}
}

// container converts an inspect answer. Values that do not parse (an
// address or port Docker would never send) are left out rather than failing
// the whole list.
func (in *inspectJSON) container() Container {
	c := Container{
		ID:     in.ID,
		Name:   strings.TrimPrefix(in.Name, "/"),
		Image:  in.Config.Image,
		Labels: in.Config.Labels,
	}
	for name, n := range in.NetworkSettings.Networks {
		nw := Network{Name: name, IPv4: parseAddr(n.IPAddress), IPv6: parseAddr(n.GlobalIPv6Address)}
		if nw.IPv4.IsValid() || nw.IPv6.IsValid() { // host and none networks give no address
			c.Networks = append(c.Networks, nw)
		}
	}
	slices.SortFunc(c.Networks, func(a, b Network) int { return cmp.Compare(a.Name, b.Name) })
	type key struct {
		port  uint16
		proto string
		raw   string // the map key, "80/tcp"
	}
	var keys []key
	for k := range in.NetworkSettings.Ports {
		ps, proto, ok := strings.Cut(k, "/")
		port, err := strconv.ParseUint(ps, 10, 16)
		if !ok || err != nil || port == 0 {
			continue
		}
		keys = append(keys, key{uint16(port), proto, k})
	}
	slices.SortFunc(keys, func(a, b key) int { return cmp.Or(cmp.Compare(a.port, b.port), cmp.Compare(a.proto, b.proto)) })
	for _, k := range keys {
		for _, b := range in.NetworkSettings.Ports[k.raw] {
			hp, err := strconv.ParseUint(b.HostPort, 10, 16)
			if err != nil || hp == 0 {
				continue
			}
			// An empty HostIp means all IPv4 addresses, as in docker run -p.
			ip := netip.IPv4Unspecified()
			if b.HostIP != "" {
				if ip = parseAddr(b.HostIP); !ip.IsValid() {
					continue
				}
			}
			c.Ports = append(c.Ports, PortBinding{ContainerPort: k.port, Proto: k.proto, HostIP: ip, HostPort: uint16(hp)})
		}
	}
	return c
}

// parseAddr parses an address Docker reports, "" and garbage giving the
// zero Addr. IPv4-mapped forms are unmapped, as the rules compare them.
func parseAddr(s string) netip.Addr {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}
	}
	return a.Unmap()
}

// shortID abbreviates a container ID the way docker ps does.
func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}
