package rules

import (
	"net/netip"
	"path"
	"strings"
	"unicode"
	"unicode/utf8"
)

func (p *parser) containers(doc map[string]any, defaults [3]Action) []containerSpec {
	tables, ok := p.tables(doc, "", "container")
	if !ok {
		return nil
	}
	var specs []containerSpec
	names := map[string]string{} // name → key path of its first use
	ids := map[string]string{}   // rule id → key path of its first use
	type owned struct{ label, key string }
	owner := map[netip.Addr]owned{} // address → first container and ips key
	for i, m := range tables {
		at := indexPath("container", i)
		if m == nil {
			continue
		}
		p.checkKeys(m, at, &containerKeys)
		c := containerSpec{def: defaults}
		label := at // how messages refer to this container
		if name, ok := p.requiredStr(m, at, "name"); ok {
			nameKey := joinPath(at, "name")
			switch {
			case name == "":
				p.errorf(nameKey, "must not be empty")
			case !cleanName(name):
				p.errorf(nameKey, "%q must not contain spaces or control characters", name)
			case names[name] != "":
				p.errorf(nameKey, "duplicate container name %q (first defined at line %d)", name, p.lineOf(names[name]))
			default:
				names[name] = nameKey
				c.name, label = name, name
			}
		}
		p.eachString(m, at, "ips", func(key, s string) {
			a, ok := p.hostAddr(key, s)
			if !ok {
				return
			}
			if prev, dup := owner[a]; dup {
				if strings.HasPrefix(prev.key, at+".") {
					p.errorf(key, "address %s is listed twice in container %q (first at line %d)", a, label, p.lineOf(prev.key))
				} else {
					p.errorf(key, "address %s is listed under both container %q (line %d) and container %q",
						a, prev.label, p.lineOf(prev.key), label)
				}
				return
			}
			owner[a] = owned{label, key}
			c.addrs = append(c.addrs, a)
		})
		c.dynamic, c.sel = p.selector(m, at, c.name)
		for _, d := range []Direction{Ingress, Egress} {
			if a, ok := p.action(m, at, d.String()); ok {
				c.def[d], c.own[d] = a, true
			}
		}
		rules, _ := p.tables(m, at, "rule")
		for j, rm := range rules {
			if rm == nil {
				continue
			}
			if r, ok := p.rule(rm, indexPath(joinPath(at, "rule"), j), ids); ok {
				c.rules = append(c.rules, r)
			}
		}
		specs = append(specs, c)
	}
	return specs
}

// selector validates how a [[container]] finds its addresses: ips (static),
// or through Docker by image and/or label, or else by its name. dynamic
// reports whether the entry is resolved through Docker; name is the
// validated name ("" if it was invalid).
func (p *parser) selector(m map[string]any, at, name string) (dynamic bool, sel selector) {
	hasImage, hasLabel := has(m, "image"), has(m, "label")
	if s, ok := p.str(m, at, "image"); ok {
		key := joinPath(at, "image")
		switch {
		case s == "":
			p.errorf(key, `must not be empty; write a reference such as "redis:7" or a pattern such as "redis:*"`)
		case !cleanName(s):
			p.errorf(key, "%q must not contain spaces or control characters", s)
		default:
			if _, err := path.Match(s, ""); err != nil {
				p.errorf(key, `%q is not a valid pattern (*, ?, [a-z] and \ as in path.Match): %v`, s, err)
			} else {
				sel.image = s
			}
		}
	}
	if s, ok := p.str(m, at, "label"); ok {
		key := joinPath(at, "label")
		k, v, hasValue := strings.Cut(s, "=")
		switch {
		case s == "":
			p.errorf(key, `must not be empty; write "key" (label present) or "key=value"`)
		case k == "":
			p.errorf(key, `%q has no key before "="; write "key" (label present) or "key=value"`, s)
		case !cleanName(k):
			p.errorf(key, "%q: the label key must not contain spaces or control characters", s)
		case !utf8.ValidString(v) || strings.ContainsFunc(v, unicode.IsControl):
			p.errorf(key, "%q: the label value must not contain control characters", s)
		default:
			sel.label, sel.value, sel.hasValue = k, v, hasValue
		}
	}
	if has(m, "ips") {
		for _, k := range []string{"image", "label"} {
			if has(m, k) {
				p.errorf(joinPath(at, k), "%s cannot be used with ips: use ips for a container with fixed addresses, "+
					"or image and label (without ips) to select containers through Docker", k)
			}
		}
		if arr, ok := m["ips"].([]any); ok && len(arr) == 0 {
			p.errorf(joinPath(at, "ips"), "is empty: list the container's addresses, "+
				"or leave ips out to resolve the container through Docker by its name")
		}
		return false, selector{}
	}
	if !hasImage && !hasLabel && name != "" {
		if !dockerName(name) {
			p.errorf(joinPath(at, "name"), "%q can never be a Docker container name (letters, digits, \"_\", \".\" and \"-\", "+
				"starting with a letter or digit): give the container ips, or select it with image or label", name)
		}
		sel.name = name
	}
	return true, sel
}

// dockerName reports whether s can be a Docker container name; Docker
// allows [a-zA-Z0-9][a-zA-Z0-9_.-]+.
func dockerName(s string) bool {
	for i, r := range s {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9':
		case i > 0 && (r == '_' || r == '.' || r == '-'):
		default:
			return false
		}
	}
	return s != ""
}

// hostAddr parses one entry of ips.
func (p *parser) hostAddr(key, s string) (netip.Addr, bool) {
	a, err := netip.ParseAddr(s)
	if err != nil {
		if _, perr := netip.ParsePrefix(s); perr == nil {
			p.errorf(key, "%q is a CIDR prefix; ips takes single addresses", s)
		} else {
			p.errorf(key, "%q is not an IP address", s)
		}
		return netip.Addr{}, false
	}
	if a.Zone() != "" {
		p.errorf(key, "%q: zones are not allowed in container addresses", s)
		return netip.Addr{}, false
	}
	a = a.Unmap()
	if a.IsUnspecified() || a.IsMulticast() {
		p.errorf(key, "%q is not a host address", s)
		return netip.Addr{}, false
	}
	return a, true
}
