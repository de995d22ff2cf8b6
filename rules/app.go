package rules

import "strings"

// AppProto is a set of application protocols, as app_proto names them and
// deep inspection identifies them from a flow's first bytes.
type AppProto uint8

// Application protocols. AppUnknown is a flow whose first bytes are none
// of the others.
const (
	AppTLS     AppProto = 1 << iota // a TLS ClientHello over TCP
	AppHTTP                         // an HTTP/1.x request
	AppSSH                          // the SSH- identification string (RFC 4253 §4.2)
	AppDNS                          // a DNS query, over UDP or TCP
	AppQUIC                         // a QUIC v1 or v2 Initial (UDP)
	AppUnknown                      // none of them
)

// appsOver is the application protocols that run over class c.
func appsOver(c protoSet) AppProto {
	if c == classUDP {
		return AppDNS | AppQUIC | AppUnknown
	}
	return AppTLS | AppHTTP | AppSSH | AppDNS | AppUnknown
}

// appNames are app_proto's values, in AppProto's bit order.
var appNames = [...]string{"tls", "http", "ssh", "dns", "quic", "unknown"}

// String returns the protocols' app_proto names joined with "|", "none"
// for the empty set.
func (a AppProto) String() string {
	for i, n := range appNames { // one protocol, the common case, without allocating
		if a == 1<<i {
			return n
		}
	}
	if a == 0 {
		return "none"
	}
	var parts []string
	for i, n := range appNames {
		if a&(1<<i) != 0 {
			parts = append(parts, n)
		}
	}
	return strings.Join(parts, "|")
}

// appProtoValue validates one app_proto value.
func (p *parser) appProtoValue(key, s string) (AppProto, bool) {
	for i, n := range appNames {
		if s == n {
			return 1 << i, true
		}
	}
	p.errorf(key, `%q is not an application protocol: use "tls", "http", "ssh", "dns", "quic" or "unknown"`, s)
	return 0, false
}
