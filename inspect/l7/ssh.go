package l7

// ParseSSHBanner reports whether a client's stream starts with an SSH
// identification string (RFC 4253 §4.2: "SSH-protoversion-softwareversion"):
// Done once "SSH-" is there, NeedMore while the prefix is shorter and
// could still be one, NotMatch otherwise. The rest of the line is not
// read: the protocol is what a rule asks about.
func ParseSSHBanner(b []byte) Status {
	const magic = "SSH-"
	n := min(len(b), len(magic))
	if string(b[:n]) != magic[:n] {
		return NotMatch
	}
	if n < len(magic) {
		return NeedMore
	}
	return Done
}
