package rules

import (
	"cmp"
	"fmt"
	"net/netip"
	"path"
	"slices"
	"strings"
	"time"
)

// Container is a running Docker container as Resolve needs it.
type Container struct {
	ID     string
	Name   string // Docker's name, without the leading "/"
	Image  string // the image reference it was created from, as written (docker inspect's Config.Image)
	Labels map[string]string
	Addrs  []netip.Addr // on all its networks
	Ports  []PortBinding
}

// PortBinding is one published port: ContainerPort/Proto reachable on
// HostIP:HostPort.
type PortBinding struct {
	ContainerPort uint16
	Proto         string // "tcp", "udp" or "sctp"
	HostIP        netip.Addr
	HostPort      uint16
}

// ContainerMeta describes the Docker container owning an address, for the
// flow log. Its slices are shared with the Table: do not modify them.
type ContainerMeta struct {
	ID, Name, Image string
	Ports           []PortBinding
	published       []published // Ports grouped by container port, rendered once
}

type published struct {
	port  uint16
	proto uint8
	text  string // "0.0.0.0:8080,[::]:8080"
}

// Published returns the host addresses and ports on which the container's
// port is published for IP protocol proto, as "HOSTIP:HOSTPORT" joined with
// commas in Docker's order ("0.0.0.0:8080,[::]:8080"), or "" when it is not
// published. It does not allocate: the text is built by Resolve.
func (m *ContainerMeta) Published(proto uint8, port uint16) string {
	for i := range m.published {
		if p := &m.published[i]; p.port == port && p.proto == proto {
			return p.text
		}
	}
	return ""
}

// ResolvedContainer is a Docker container that a dynamic [[container]]
// matched.
type ResolvedContainer struct {
	ID, Name string
	// Addrs are the addresses the entry got: the container's, less any
	// that a static entry or an earlier match already owns.
	Addrs []netip.Addr
}

// Resolution is the state of one dynamic [[container]] (an entry without
// ips).
type Resolution struct {
	Entry      string              // the entry's name
	Selector   string              // as WriteTo shows it: `docker name "web"`, `docker image "redis:*", label "tier=db"`
	Containers []ResolvedContainer // the containers it matches, by name; none before Resolve
}

// selector says which Docker containers a dynamic [[container]] stands for.
// With neither image nor label, the entry's name is the container's name.
// Conditions AND.
type selector struct {
	name     string // Docker container name; only when image and label are absent
	image    string // path.Match pattern on the image reference; "" = any image
	label    string // label key; "" = no label condition
	value    string // label value, when hasValue
	hasValue bool   // "key=value" rather than "key"
}

func (s *selector) String() string {
	if s.image == "" && s.label == "" {
		return fmt.Sprintf("docker name %q", s.name)
	}
	var parts []string
	if s.image != "" {
		parts = append(parts, fmt.Sprintf("image %q", s.image))
	}
	if s.label != "" {
		l := s.label
		if s.hasValue {
			l += "=" + s.value
		}
		parts = append(parts, fmt.Sprintf("label %q", l))
	}
	return "docker " + strings.Join(parts, ", ")
}

func (s *selector) matches(c *Container) bool {
	if s.image == "" && s.label == "" {
		return s.name != "" && c.Name == s.name
	}
	if s.image != "" && !imageMatches(s.image, c.Image) {
		return false
	}
	if s.label != "" {
		v, ok := c.Labels[s.label]
		if !ok || (s.hasValue && v != s.value) {
			return false
		}
	}
	return true
}

// imageMatches reports whether pattern (path.Match syntax) matches the
// image reference ref, as written or in its familiar form: Docker Hub's
// "docker.io/" and "library/" prefixes removed, with ":latest" made
// explicit when ref has neither tag nor digest, and also left implicit. So
// "redis:*" matches containers created from "redis", "redis:7",
// "docker.io/library/redis:7-alpine" and "redis:7@sha256:…", but not
// "redis@sha256:…" (pinned by digest only: write "redis@*"), nor
// "bitnami/redis:7" ('*' does not cross '/': write "*/redis:*"); "redis" and
// "redis:latest" both match "redis", "redis:latest" and
// "docker.io/library/redis". A container created from an image ID matches
// only patterns written against that ID.
func imageMatches(pattern, ref string) bool {
	fam := familiarImage(ref)
	for _, form := range []string{ref, fam, strings.TrimSuffix(fam, ":latest")} {
		if ok, _ := path.Match(pattern, form); ok {
			return true
		}
	}
	return false
}

// familiarImage shortens a Docker Hub reference the way docker ps shows it
// and makes an implicit ":latest" explicit.
func familiarImage(ref string) string {
	s := ref
	for _, p := range []string{"docker.io/", "index.docker.io/"} {
		if r, ok := strings.CutPrefix(s, p); ok {
			s = r
			break
		}
	}
	if r, ok := strings.CutPrefix(s, "library/"); ok && !strings.Contains(r, "/") {
		s = r
	}
	if strings.Contains(s, "@") {
		return s // pinned by digest: no implicit tag
	}
	if i := strings.LastIndexByte(s, ':'); i < 0 || strings.Contains(s[i:], "/") {
		s += ":latest" // the only ':' is a registry port, or there is none
	}
	return s
}

// HasDynamic reports whether the table has entries without ips, which only
// Resolve gives addresses.
func (t *Table) HasDynamic() bool {
	for i := range t.source {
		if t.source[i].dynamic {
			return true
		}
	}
	return false
}

// Resolved reports whether t was made by Resolve.
func (t *Table) Resolved() bool { return t.resolved }

// Resolve returns a new table in which the dynamic [[container]] entries
// (those without ips) have the addresses of the running containers they
// select, and Meta describes every container in cs. t is not modified:
// engines reading it go on undisturbed until the caller swaps the new table
// in. Resolve always starts from the file's static part, so resolving a
// resolved table forgets the earlier containers.
//
// Conflicts are settled, and reported in warnings, this way: an address
// listed in a static entry's ips stays with it; a container that several
// dynamic entries select belongs to the first in file order; an address
// two containers share goes to the first entry, then the first container
// by name. Containers are considered in name order, so the result does not
// depend on the order of cs.
func (t *Table) Resolve(cs []Container) (*Table, []string) {
	b := t
	if t.base != nil {
		b = t.base
	}
	nt := *b // shares the compiled rules, which are never written
	nt.base, nt.resolved = b, true
	nt.unreachableSince, nt.unreachableDrop = time.Time{}, false // Docker answered

	order := make([]int, len(cs))
	for i := range order {
		order[i] = i
	}
	slices.SortStableFunc(order, func(i, j int) int {
		return cmp.Or(cmp.Compare(cs[i].Name, cs[j].Name), cmp.Compare(cs[i].ID, cs[j].ID))
	})

	var warns []string
	claimedBy := make([]int, len(cs))                // entry index + 1 that took each container
	taken := map[netip.Addr]struct{ entry, c int }{} // dynamic address → its owner
	nt.matches = make([][]ResolvedContainer, len(b.source))
	for i := range b.source {
		s := &b.source[i]
		if !s.dynamic {
			continue
		}
		for _, ci := range order {
			c := &cs[ci]
			if !s.sel.matches(c) {
				continue
			}
			if e := claimedBy[ci]; e != 0 {
				warns = append(warns, fmt.Sprintf("container %s is selected by %q and %q: %q, first in the file, applies",
					c.Name, b.source[e-1].name, s.name, b.source[e-1].name))
				continue
			}
			claimedBy[ci] = i + 1
			rc := ResolvedContainer{ID: c.ID, Name: c.Name}
			for _, a := range c.Addrs {
				a = a.Unmap().WithZone("")
				if !a.IsValid() || a.IsUnspecified() || a.IsMulticast() || slices.Contains(rc.Addrs, a) {
					continue
				}
				if st := b.byAddr.get(a); st != nil {
					warns = append(warns, fmt.Sprintf("address %s of container %s (selected by %q) is listed in the ips of %q, which keeps it",
						a, c.Name, s.name, st.name))
					continue
				}
				if o, ok := taken[a]; ok {
					warns = append(warns, fmt.Sprintf("address %s of container %s (selected by %q) is also container %s's (selected by %q), which keeps it",
						a, c.Name, s.name, cs[o.c].Name, b.source[o.entry].name))
					continue
				}
				taken[a] = struct{ entry, c int }{i, ci}
				rc.Addrs = append(rc.Addrs, a)
			}
			nt.matches[i] = append(nt.matches[i], rc)
		}
	}

	n := len(taken)
	for i := range b.source {
		n += len(b.source[i].addrs)
	}
	nt.byAddr = newAddrIndex(n)
	for i := range b.source {
		for _, a := range b.source[i].addrs {
			nt.byAddr.insert(a, b.hot[i])
		}
		for _, rc := range nt.matches[i] {
			for _, a := range rc.Addrs {
				nt.byAddr.insert(a, b.hot[i])
			}
		}
	}

	nt.metas = make([]ContainerMeta, 0, len(cs))
	nt.metaIdx = make(map[netip.Addr]int32)
	for _, ci := range order {
		c := &cs[ci]
		idx := int32(len(nt.metas))
		nt.metas = append(nt.metas, newMeta(c))
		for _, a := range c.Addrs {
			a = a.Unmap().WithZone("")
			if _, dup := nt.metaIdx[a]; !dup && a.IsValid() {
				nt.metaIdx[a] = idx
			}
		}
	}
	return &nt, warns
}

func newMeta(c *Container) ContainerMeta {
	m := ContainerMeta{ID: c.ID, Name: c.Name, Image: c.Image, Ports: slices.Clone(c.Ports)}
	for _, p := range c.Ports {
		proto, ok := protoNumber(p.Proto)
		if !ok {
			continue
		}
		hostIP := p.HostIP
		if !hostIP.IsValid() {
			hostIP = netip.IPv4Unspecified()
		}
		text := netip.AddrPortFrom(hostIP, p.HostPort).String()
		i := slices.IndexFunc(m.published, func(q published) bool { return q.port == p.ContainerPort && q.proto == proto })
		if i < 0 {
			m.published = append(m.published, published{port: p.ContainerPort, proto: proto, text: text})
		} else if !slices.Contains(strings.Split(m.published[i].text, ","), text) {
			m.published[i].text += "," + text
		}
	}
	return m
}

// protoNumber maps Docker's port protocol names to IP protocol numbers.
func protoNumber(s string) (uint8, bool) {
	switch s {
	case "tcp":
		return ProtoTCP, true
	case "udp":
		return ProtoUDP, true
	case "sctp":
		return ProtoSCTP, true
	}
	return 0, false
}

// Meta describes the Docker container that owns ip, if t was resolved with
// a container having that address (listed or not in the file).
// IPv4-mapped addresses are treated as IPv4. It does not allocate, but it
// is not meant for every packet: the engine calls it when it logs a flow.
func (t *Table) Meta(ip netip.Addr) (ContainerMeta, bool) {
	i, ok := t.metaIdx[ip.Unmap().WithZone("")]
	if !ok {
		return ContainerMeta{}, false
	}
	return t.metas[i], true
}

// Resolution lists the dynamic entries in file order with the containers
// each matches. The slices are fresh copies on each call.
func (t *Table) Resolution() []Resolution {
	var out []Resolution
	for i := range t.source {
		s := &t.source[i]
		if !s.dynamic {
			continue
		}
		r := Resolution{Entry: s.name, Selector: s.sel.String()}
		if t.matches != nil {
			for _, rc := range t.matches[i] {
				rc.Addrs = slices.Clone(rc.Addrs)
				r.Containers = append(r.Containers, rc)
			}
		}
		out = append(out, r)
	}
	return out
}

// Unreachable returns a copy of t for the time Docker cannot be asked,
// since since: the addresses t lists keep their rules (the containers last
// resolved, whose addresses Docker cannot change while it is down), and,
// when docker.unreachable is "drop" and the file has entries resolved
// through Docker, an address t does not list is judged Drop with RuleID
// RuleIDDockerUnreachable instead of by [defaults]: it may be a container
// one of those entries would select. t is not modified. Resolve's result
// is a table of a reachable Docker again.
func (t *Table) Unreachable(since time.Time) *Table {
	nt := *t
	nt.unreachableSince = since
	nt.unreachableDrop = t.Docker.DropUnreachable && t.HasDynamic()
	return &nt
}

// DockerUnreachable reports, for a table made by Unreachable, since when
// Docker could not be asked (zero for any other table) and whether
// addresses the table does not list are dropped meanwhile.
func (t *Table) DockerUnreachable() (since time.Time, dropUnlisted bool) {
	return t.unreachableSince, t.unreachableDrop
}

// DockerStatus is what a table knows of Docker, for status and metrics.
type DockerStatus struct {
	Dynamic  bool // the file has entries resolved through Docker
	Resolved bool // the table was resolved against a listing of Docker's containers
	// UnreachableSince and DropUnlisted are Table.DockerUnreachable's.
	UnreachableSince time.Time
	DropUnlisted     bool
	Unresolved       []string // Table.Unresolved
}

// DockerStatus reports what t knows of Docker. It allocates: call it off
// the packet path.
func (t *Table) DockerStatus() DockerStatus {
	return DockerStatus{Dynamic: t.HasDynamic(), Resolved: t.resolved,
		UnreachableSince: t.unreachableSince, DropUnlisted: t.unreachableDrop, Unresolved: t.Unresolved()}
}

// Unresolved lists, in file order, the dynamic entries that have no
// address, so whose rules match nothing: all of them before Resolve; after
// it, those matching no running container, or only containers without an
// address of their own (host network) or whose addresses other entries
// keep. The slice is a fresh copy on each call.
func (t *Table) Unresolved() []string {
	var names []string
	for i := range t.source {
		if t.source[i].dynamic && t.addrCount(i) == 0 {
			names = append(names, t.source[i].name)
		}
	}
	return names
}

// addrCount is the number of addresses entry i has in t.
func (t *Table) addrCount(i int) int {
	n := len(t.source[i].addrs)
	if t.matches != nil {
		for _, rc := range t.matches[i] {
			n += len(rc.Addrs)
		}
	}
	return n
}

// shortID abbreviates a container ID the way docker ps does.
func shortID(id string) string {
	if len(id) > 12 {
		return id[:12]
	}
	return id
}

// formatAddrs joins addresses with ", ".
func formatAddrs(as []netip.Addr) string {
	parts := make([]string, len(as))
	for i, a := range as {
		parts[i] = a.String()
	}
	return strings.Join(parts, ", ")
}
