package dockerlab

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"time"
)

// Container is what Inspect learned about a container.
type Container struct {
	// Name is the container's name, without Docker's leading "/".
	Name string
	// ID is the full container ID.
	ID string
	// PID is the host PID of the container's first process; 0 when the
	// container is not running.
	PID int
	// Networks maps each network the container is attached to (by name:
	// "bridge" for the default network) to its addresses there.
	Networks map[string]Endpoint
	// Ports maps "80/tcp" to the host ports it is published on ("8080").
	Ports map[string][]string
}

// Endpoint is a container's attachment to one network.
type Endpoint struct {
	// IPv4 and IPv6 are the container's addresses on the network; IPv6
	// is the zero Addr unless the network has IPv6.
	IPv4, IPv6 netip.Addr
	// Gateway and Gateway6 are the network's gateways (the bridge's
	// addresses in the Docker namespace).
	Gateway, Gateway6 netip.Addr
}

// NSPath returns the path of the container's network namespace,
// /proc/PID/ns/net, for netns.Do and package traffic. It is valid while
// the container runs; Inspect again after a restart.
func (c *Container) NSPath() string {
	return "/proc/" + strconv.Itoa(c.PID) + "/ns/net"
}

// IPv4 returns the container's IPv4 address on network.
func (c *Container) IPv4(network string) (netip.Addr, error) {
	ep, ok := c.Networks[network]
	if !ok || !ep.IPv4.IsValid() {
		return netip.Addr{}, fmt.Errorf("dockerlab: container %s has no IPv4 address on network %q (networks: %v)", c.Name, network, c.networkNames())
	}
	return ep.IPv4, nil
}

// IPv6 returns the container's IPv6 address on network.
func (c *Container) IPv6(network string) (netip.Addr, error) {
	ep, ok := c.Networks[network]
	if !ok || !ep.IPv6.IsValid() {
		return netip.Addr{}, fmt.Errorf("dockerlab: container %s has no IPv6 address on network %q (networks: %v)", c.Name, network, c.networkNames())
	}
	return ep.IPv6, nil
}

func (c *Container) networkNames() []string {
	var out []string
	for n := range c.Networks {
		out = append(out, n)
	}
	return out
}

// WaitListening waits until the container has a socket listening on each
// of ports (proto "tcp") or bound to it (proto "udp"), IPv4 or IPv6. It
// reads /proc/PID/net, so it sends no packet through the firewall.
func (c *Container) WaitListening(ctx context.Context, proto string, ports ...uint16) error {
	if c.PID == 0 {
		return fmt.Errorf("dockerlab: container %s is not running", c.Name)
	}
	for {
		missing, err := c.missingPorts(proto, ports)
		if err != nil {
			return fmt.Errorf("dockerlab: container %s: %w", c.Name, err)
		}
		if len(missing) == 0 {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("dockerlab: container %s: nothing listening on %s ports %v: %w", c.Name, proto, missing, ctx.Err())
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func (c *Container) missingPorts(proto string, ports []uint16) ([]uint16, error) {
	// /proc/net/tcp state column: 0A is LISTEN; UDP sockets bound to a
	// port show 07 (CLOSE).
	state := "0A"
	if proto == "udp" {
		state = "07"
	} else if proto != "tcp" {
		return nil, fmt.Errorf("protocol %q (want tcp or udp)", proto)
	}
	have := map[uint16]bool{}
	for _, file := range []string{proto, proto + "6"} {
		f, err := os.Open(fmt.Sprintf("/proc/%d/net/%s", c.PID, file))
		if err != nil {
			if os.IsNotExist(err) && file == proto+"6" {
				continue // IPv6 disabled in the container
			}
			return nil, err
		}
		sc := bufio.NewScanner(f)
		for sc.Scan() {
			// sl local_address rem_address st ...
			fields := strings.Fields(sc.Text())
			if len(fields) < 4 || fields[3] != state {
				continue
			}
			_, portHex, ok := strings.Cut(fields[1], ":")
			if !ok {
				continue
			}
			if p, err := strconv.ParseUint(portHex, 16, 16); err == nil {
				have[uint16(p)] = true
			}
		}
		f.Close()
		if err := sc.Err(); err != nil {
			return nil, err
		}
	}
	var missing []uint16
	for _, p := range ports {
		if !have[p] {
			missing = append(missing, p)
		}
	}
	return missing, nil
}

// Run starts a container, "docker run -d --name name args...", where args
// are run options followed by the image and its arguments, and returns it
// inspected.
func (d *Docker) Run(ctx context.Context, name string, args ...string) (*Container, error) {
	if _, err := d.CLI(ctx, append([]string{"run", "-d", "--name", name}, args...)...); err != nil {
		return nil, err
	}
	return d.Inspect(ctx, name)
}

// WaitRunning waits until the container name runs with a first process
// other than oldPID (0: any) and returns it inspected. After a restart of
// the container, or of dockerd (see Restart), pass the PID it had before,
// so that the new incarnation is returned, with its new network
// namespace, rather than the one being stopped. Inspect errors (dockerd
// not answering yet) are retried until ctx is done.
func (d *Docker) WaitRunning(ctx context.Context, name string, oldPID int) (*Container, error) {
	for {
		c, err := d.Inspect(ctx, name)
		if err == nil && c.PID != 0 && c.PID != oldPID {
			return c, nil
		}
		if err == nil {
			err = fmt.Errorf("not running with a process other than %d (PID %d)", oldPID, c.PID)
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("dockerlab: container %s: %w (%w)", name, ctx.Err(), err)
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// Remove force-removes containers (and their anonymous volumes).
func (d *Docker) Remove(ctx context.Context, names ...string) error {
	_, err := d.CLI(ctx, append([]string{"rm", "-f", "-v"}, names...)...)
	return err
}

// Exec runs "docker exec container args..." and returns its output.
func (d *Docker) Exec(ctx context.Context, container string, args ...string) (string, error) {
	return d.CLI(ctx, append([]string{"exec", container}, args...)...)
}

// inspectJSON is the part of "docker inspect" that Inspect reads.
type inspectJSON struct {
	ID    string `json:"Id"`
	Name  string
	State struct {
		Pid     int
		Running bool
	}
	NetworkSettings struct {
		Networks map[string]struct {
			IPAddress         string
			GlobalIPv6Address string
			Gateway           string
			IPv6Gateway       string
		}
		Ports map[string][]struct {
			HostIP   string `json:"HostIp"`
			HostPort string
		}
	}
}

// Inspect returns what "docker inspect" says about a container.
func (d *Docker) Inspect(ctx context.Context, name string) (*Container, error) {
	out, err := d.CLI(ctx, "inspect", "--type", "container", name)
	if err != nil {
		return nil, err
	}
	var res []inspectJSON
	if err := json.Unmarshal([]byte(out), &res); err != nil || len(res) != 1 {
		return nil, fmt.Errorf("dockerlab: inspect %s: unexpected output (%v): %.200s", name, err, out)
	}
	r := res[0]
	c := &Container{
		Name:     strings.TrimPrefix(r.Name, "/"),
		ID:       r.ID,
		Networks: map[string]Endpoint{},
		Ports:    map[string][]string{},
	}
	if r.State.Running {
		c.PID = r.State.Pid
	}
	for net, n := range r.NetworkSettings.Networks {
		c.Networks[net] = Endpoint{
			IPv4: parseAddr(n.IPAddress), IPv6: parseAddr(n.GlobalIPv6Address),
			Gateway: parseAddr(n.Gateway), Gateway6: parseAddr(n.IPv6Gateway),
		}
	}
	for port, bindings := range r.NetworkSettings.Ports {
		for _, b := range bindings {
			c.Ports[port] = append(c.Ports[port], b.HostPort)
		}
	}
	return c, nil
}

func parseAddr(s string) netip.Addr {
	a, err := netip.ParseAddr(s)
	if err != nil {
		return netip.Addr{}
	}
	return a
}

// Network is a Docker network as NetworkCreate or InspectNetwork saw it.
type Network struct {
	// Name and ID are Docker's.
	Name, ID string
	// Bridge is the Linux bridge in the Docker namespace: docker0 for the
	// default network, br-<first 12 characters of ID> for user-defined
	// bridge networks.
	Bridge string
	// Subnets are the network's IPv4 and IPv6 subnets.
	Subnets []netip.Prefix
}

// NetworkCreate runs "docker network create args... name" and returns the
// network inspected.
func (d *Docker) NetworkCreate(ctx context.Context, name string, args ...string) (*Network, error) {
	if _, err := d.CLI(ctx, append(append([]string{"network", "create"}, args...), name)...); err != nil {
		return nil, err
	}
	return d.InspectNetwork(ctx, name)
}

// NetworkRemove runs "docker network rm name".
func (d *Docker) NetworkRemove(ctx context.Context, name string) error {
	_, err := d.CLI(ctx, "network", "rm", name)
	return err
}

// InspectNetwork returns what "docker network inspect" says about a
// network.
func (d *Docker) InspectNetwork(ctx context.Context, name string) (*Network, error) {
	out, err := d.CLI(ctx, "network", "inspect", name)
	if err != nil {
		return nil, err
	}
	var res []struct {
		Name string
		ID   string `json:"Id"`
		IPAM struct {
			Config []struct{ Subnet string }
		}
		Options map[string]string
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil || len(res) != 1 {
		return nil, fmt.Errorf("dockerlab: inspect network %s: unexpected output (%v): %.200s", name, err, out)
	}
	r := res[0]
	n := &Network{Name: r.Name, ID: r.ID, Bridge: r.Options["com.docker.network.bridge.name"]}
	if n.Bridge == "" && len(r.ID) >= 12 {
		n.Bridge = "br-" + r.ID[:12]
	}
	for _, c := range r.IPAM.Config {
		if p, err := netip.ParsePrefix(c.Subnet); err == nil {
			n.Subnets = append(n.Subnets, p)
		}
	}
	return n, nil
}
