package rules

import (
	"bytes"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
)

// WriteTo prints the compiled table for `nfqguard check`: engine,
// inspection, log, metrics, status and Docker settings, defaults, then per
// container its addresses, defaults and rules in file order, one aligned
// line per rule, L7 fields last. It shows values after defaults were
// applied, so the user sees what the engine will actually do. A dynamic
// entry shows its Docker selector and, in a resolved table, the containers
// it matches with the addresses it got from each.
func (t *Table) WriteTo(w io.Writer) (int64, error) {
	cw := &countingWriter{w: w}
	tw := tabwriter.NewWriter(cw, 0, 0, 2, ' ', 0)
	for _, k := range fileKeys.keys {
		k.sub.writeSettings(tw, t)
	}
	if err := tw.Flush(); err != nil {
		return cw.n, err
	}
	for i := range t.source {
		if err := t.writeEntry(cw, i); err != nil {
			return cw.n, err
		}
	}
	return cw.n, cw.err
}

// writeSettings writes the lines check shows for kt: the table's name,
// then the texts of its keys.
func (kt *keyTable) writeSettings(w io.Writer, t *Table) {
	for i, line := range kt.check {
		texts := make([]string, 0, len(line))
		for _, name := range line {
			if s := kt.lookup(name).text(t); s != "" {
				texts = append(texts, s)
			}
		}
		label := kt.path
		if i > 0 {
			label = ""
		}
		fmt.Fprintf(w, "%s\t%s\n", label, strings.Join(texts, ", "))
	}
}

func (t *Table) writeEntry(w io.Writer, i int) error {
	c := &t.source[i]
	var list string
	var matched []ResolvedContainer
	switch {
	case !c.dynamic:
		list = formatAddrs(c.addrs)
	case !t.resolved:
		list = c.sel.String() + ": not resolved"
	default:
		list = c.sel.String()
		if matched = t.matches[i]; len(matched) == 0 {
			list += ": no running container"
		}
	}
	defaults := make([]string, 0, 2)
	for _, d := range []Direction{Ingress, Egress} {
		s := fmt.Sprintf("%s default %s", d, c.def[d])
		if !c.own[d] {
			s += " (global)"
		}
		defaults = append(defaults, s)
	}
	fmt.Fprintf(w, "\n%s (%s)  %s\n", c.name, list, strings.Join(defaults, ", "))
	for _, rc := range matched {
		addrs := formatAddrs(rc.Addrs)
		if addrs == "" {
			addrs = "no address: its traffic matches nothing"
		}
		fmt.Fprintf(w, "  container %s (%s): %s\n", rc.Name, shortID(rc.ID), addrs)
	}
	if len(c.rules) == 0 {
		_, err := fmt.Fprintf(w, "  no rules\n")
		return err
	}
	// Rules without L7 fields end in an empty cell in a container whose
	// other rules have some; the padding it gets is trimmed off.
	var buf bytes.Buffer
	tw := tabwriter.NewWriter(&buf, 0, 0, 2, ' ', 0)
	// Rule numbers are right-aligned by hand: tabwriter's AlignRight would
	// apply to every column.
	width := len(strconv.Itoa(len(c.rules)))
	// The L7 fields come last, after a log column that containers having
	// some always get, so that the fields line up.
	l7 := slices.ContainsFunc(c.rules, func(r ruleSpec) bool { return r.l7 != 0 })
	for i := range c.rules {
		r := &c.rules[i]
		peerKey := "from"
		switch {
		case r.names != nil:
			peerKey = "to_names"
		case r.dir == Egress:
			peerKey = "to"
		}
		line := fmt.Sprintf("  %*d %s\t%s\t%s\tports %s\t%s %s\t%s", width, i+1, r.id, r.dir, r.proto,
			formatPorts(r.ports), peerKey, formatPeers(r), r.action)
		switch {
		case l7 && r.log:
			line += "\tlog\t" + formatL7(r)
		case l7:
			line += "\t\t" + formatL7(r)
		case r.log:
			line += "\tlog"
		}
		fmt.Fprintln(tw, line)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	out := make([]byte, 0, buf.Len())
	for line := range bytes.Lines(buf.Bytes()) {
		out = append(append(out, bytes.TrimRight(line, " \n")...), '\n')
	}
	_, err := w.Write(out)
	return err
}

func formatPorts(ports []portRange) string {
	if len(ports) == 0 {
		return "any"
	}
	parts := make([]string, len(ports))
	for i, p := range ports {
		if p.lo == p.hi {
			parts[i] = strconv.Itoa(int(p.lo))
		} else {
			parts[i] = fmt.Sprintf("%d-%d", p.lo, p.hi)
		}
	}
	return strings.Join(parts, ",")
}

func formatPeers(r *ruleSpec) string {
	if r.names != nil {
		parts := make([]string, len(r.names))
		for i := range r.names {
			parts[i] = r.names[i].String()
		}
		return strings.Join(parts, ",")
	}
	if len(r.peers) == 0 {
		return "any"
	}
	parts := make([]string, len(r.peers))
	for i, p := range r.peers {
		parts[i] = p.String()
	}
	return strings.Join(parts, ",")
}

// formatL7 shows a rule's L7 fields as the file names them, in the order of
// ruleKeys: "tls_sni example.com,*.example.net http_method POST".
func formatL7(r *ruleSpec) string {
	var parts []string
	add := func(key string, values []string) {
		if len(values) > 0 {
			parts = append(parts, key+" "+strings.Join(values, ","))
		}
	}
	names := func(ps []namePattern) []string {
		out := make([]string, len(ps))
		for i := range ps {
			out[i] = ps[i].String()
		}
		return out
	}
	paths := r.path
	if slices.ContainsFunc(paths, func(p string) bool { return strings.ContainsAny(p, `,"`) }) {
		paths = make([]string, len(r.path)) // a comma is valid in a path: quote them all
		for i, p := range r.path {
			paths[i] = strconv.Quote(p)
		}
	}
	if r.app != 0 {
		add("app_proto", strings.Split(r.app.String(), "|"))
	}
	add("tls_sni", names(r.sni))
	if len(r.ja4) > 0 {
		ja4 := make([]string, len(r.ja4))
		for i := range r.ja4 {
			ja4[i] = r.ja4[i].String()
		}
		add("tls_ja4", ja4)
	}
	add("http_host", names(r.host))
	add("http_path", paths)
	add("http_method", r.method)
	add("dns_qname", names(r.qname))
	return strings.Join(parts, " ")
}

// countingWriter tracks bytes written for WriteTo's return value and keeps
// the first error so later writes become no-ops.
type countingWriter struct {
	w   io.Writer
	n   int64
	err error
}

func (c *countingWriter) Write(p []byte) (int, error) {
	if c.err != nil {
		return 0, c.err
	}
	n, err := c.w.Write(p)
	c.n += int64(n)
	c.err = err
	return n, err
}
