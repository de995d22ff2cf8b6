package rules

import "strconv"

// Action is a verdict.
type Action uint8

// Verdicts. The zero value is deliberately invalid so that a forgotten
// assignment cannot silently mean "allow".
const (
	Allow Action = iota + 1
	Drop
)

// String returns "allow" or "drop", the spelling used in the rule file.
func (a Action) String() string {
	switch a {
	case Allow:
		return "allow"
	case Drop:
		return "drop"
	}
	return "Action(" + strconv.Itoa(int(a)) + ")"
}

// MarshalText makes an Action appear as "allow"/"drop" in JSON logs rather
// than as a number.
func (a Action) MarshalText() ([]byte, error) { return []byte(a.String()), nil }

// Direction is which way a flow was initiated relative to a container.
type Direction uint8

// Directions. Like Action, the zero value is invalid.
const (
	Ingress Direction = iota + 1 // initiated towards the container
	Egress                       // initiated by the container
)

// String returns "ingress" or "egress", the spelling used in the rule file.
func (d Direction) String() string {
	switch d {
	case Ingress:
		return "ingress"
	case Egress:
		return "egress"
	}
	return "Direction(" + strconv.Itoa(int(d)) + ")"
}

// MarshalText makes a Direction appear as "ingress"/"egress" in JSON logs.
func (d Direction) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// IP protocol numbers the table understands.
const (
	ProtoICMP   uint8 = 1
	ProtoTCP    uint8 = 6
	ProtoUDP    uint8 = 17
	ProtoICMPv6 uint8 = 58
	ProtoSCTP   uint8 = 132 // only as a published port's protocol: rules cannot name it
)

// protoSet is a bit set of protocol classes; a rule stores the classes it
// matches so the hot path tests one AND instead of comparing strings.
type protoSet uint8

const (
	classTCP protoSet = 1 << iota
	classUDP
	classICMP  // ICMP and ICMPv6: a rule says "icmp" and means both families
	classOther // anything else (SCTP, GRE, ...): only "any" without ports
)

const classAll = classTCP | classUDP | classICMP | classOther

// protoClass maps an IP protocol number to its class.
func protoClass(proto uint8) protoSet {
	switch proto {
	case ProtoTCP:
		return classTCP
	case ProtoUDP:
		return classUDP
	case ProtoICMP, ProtoICMPv6:
		return classICMP
	}
	return classOther
}
