package inspect

import (
	"net/netip"
	"testing"
	"time"

	"github.com/nfqguard/nfqguard/rules"
)

// TestICMPErrorsFollowTheirFlow: an ICMP or ICMPv6 error about a live flow
// gets that flow's verdict; one about no live flow, sent to someone else
// than the quoted packet's sender, or whose quote cannot be read, is judged
// as ICMP by the rules. Each case is chosen so that the two readings give
// different verdicts, and each is counted by what its quote led to.
func TestICMPErrorsFollowTheirFlow(t *testing.T) {
	e, _ := newTestEngine(t, testConfig)
	now := time.Now()
	router4, router6 := mustAddr("198.51.100.1"), mustAddr("2001:db8::1")
	other := mustAddr("172.17.0.9")      // a container web-ping allows ICMP from
	stranger := mustAddr("198.51.100.7") // an outside host web-ping does not
	db := mustAddr("172.17.0.3")         // a container that drops everything in
	web6Peer := mustAddr("2001:db8::9")  // an IPv6 host with no flow
	set := func(i int, v byte) func([]byte) { return func(b []byte) { b[i] = v } }

	// Flows the errors quote: web allows tcp 80 (8000-8100) in and drops
	// tcp 22 (8101) and ICMP from outside 172.17.0.0/16.
	allowed4 := v4(hPeer4, hWeb4, rules.ProtoTCP, tcpSeg(40000, 80, TCPFlagSYN))
	allowed4Reply := v4(hWeb4, hPeer4, rules.ProtoTCP, tcpSeg(80, 40000, TCPFlagSYN|TCPFlagACK))
	dropped4 := v4(hPeer4, hWeb4, rules.ProtoTCP, tcpSeg(40001, 22, TCPFlagSYN))
	dropped4Reply := v4(hWeb4, hPeer4, rules.ProtoTCP, tcpSeg(22, 40001, TCPFlagRST|TCPFlagACK))
	droppedPing := v4(stranger, hWeb4, rules.ProtoICMP, icmpMsg(8, 0, 77<<16|1))
	allowed6 := v6(hPeer6, hWeb6, rules.ProtoTCP, tcpSeg(40007, 8080, TCPFlagSYN))
	dropped6 := v6(hPeer6, hWeb6, rules.ProtoTCP, tcpSeg(40008, 8101, TCPFlagSYN))
	for _, s := range []struct {
		name  string
		data  []byte
		meta  Meta
		allow bool
	}{
		{"allowed4", allowed4, toContainer, true},
		{"dropped4", dropped4, toContainer, false},
		{"dropped ping", droppedPing, toContainer, false},
		{"allowed6", allowed6, toContainer, true},
		{"dropped6", dropped6, toContainer, false},
	} {
		if v := e.Judge(s.data, s.meta, now); v.Allow != s.allow {
			t.Fatalf("flow %s: verdict %+v, want allow = %v", s.name, v, s.allow)
		}
	}

	// err4 is an ICMP error (type 3 code 3 unless quoted says otherwise)
	// from src to dst quoting the first 28 bytes of quoted, as routers do.
	err4 := func(src, dst netip.Addr, quoted []byte) []byte {
		return v4(src, dst, rules.ProtoICMP, icmpMsg(3, 3, 0, quoted[:min(len(quoted), 28)]...))
	}
	// err6 is an ICMPv6 destination unreachable quoting as much of quoted
	// as fits, as RFC 4443 asks.
	err6 := func(src, dst netip.Addr, quoted []byte) []byte {
		return v6(src, dst, rules.ProtoICMPv6, icmpMsg(1, 4, 0, quoted...))
	}
	type result int
	const (
		matched result = iota
		unmatched
		badQuote
	)
	tests := []struct {
		name   string
		data   []byte
		meta   Meta
		allow  bool
		result result
	}{
		{"port unreachable from web about an allowed flow", err4(hWeb4, hPeer4, allowed4), fromContainer, true, matched},
		{"fragmentation needed from a router about web's reply", err4(router4, hWeb4, allowed4Reply), toContainer, true, matched},
		{"error from web about a dropped flow", err4(hWeb4, hPeer4, dropped4), fromContainer, false, matched},
		{"error from a router about web's reply in a dropped flow", err4(router4, hWeb4, dropped4Reply), toContainer, false, matched},
		{"error from web about a dropped ping", err4(hWeb4, stranger, droppedPing), fromContainer, false, matched},
		{"error about an unknown flow, from a host web-ping allows", err4(other, hWeb4,
			v4(hWeb4, other, rules.ProtoUDP, udpDgram(5555, 7))), betweenC, true, unmatched},
		{"error about an unknown flow, from a router", err4(router4, hWeb4,
			v4(hWeb4, hPeer4, rules.ProtoUDP, udpDgram(5555, 7))), toContainer, false, unmatched},
		{"error about an allowed flow sent to another container", err4(router4, db, allowed4Reply), toContainer, false, unmatched},
		{"quoted ihl below 5, from a host web-ping allows", err4(other, hWeb4,
			v4(hWeb4, hPeer4, rules.ProtoTCP, tcpSeg(80, 40000, TCPFlagACK), set(0, 0x44))), betweenC, true, badQuote},
		{"quoted header cut, about an allowed flow", err4(router4, hWeb4, allowed4Reply[:18]), toContainer, false, badQuote},
		{"quoted transport cut, about an allowed flow", err4(router4, hWeb4, allowed4Reply[:22]), toContainer, false, badQuote},
		{"quoted later fragment", err4(router4, hWeb4, v4(hWeb4, hPeer4, rules.ProtoTCP, tcpSeg(80, 40000, 0), set(7, 9))),
			toContainer, false, badQuote},
		{"nothing quoted", err4(router4, hWeb4, nil), toContainer, false, badQuote},

		{"icmpv6 error from web about an allowed flow", err6(hWeb6, hPeer6, allowed6), fromContainer, true, matched},
		{"icmpv6 error from web about a dropped flow", err6(hWeb6, hPeer6, dropped6), fromContainer, false, matched},
		{"icmpv6 error quoting ext headers before tcp, dropped flow", err6(hWeb6, hPeer6,
			v6(hPeer6, hWeb6, xDestOpts, cat(ext(xDestOpts, xRouting), ext(xRouting, rules.ProtoTCP), tcpSeg(40008, 8101, TCPFlagSYN)))),
			fromContainer, false, matched},
		{"icmpv6 error quoting a first fragment, dropped flow", err6(hWeb6, hPeer6,
			v6(hPeer6, hWeb6, xFragment, fragHdr(rules.ProtoTCP, 0, true, tcpSeg(40008, 8101, TCPFlagSYN)...))),
			fromContainer, false, matched},
		{"icmpv6 error behind hop-by-hop and destination options, dropped flow",
			v6(hWeb6, hPeer6, xHopByHop, cat(ext(xHopByHop, xDestOpts), ext(xDestOpts, rules.ProtoICMPv6), icmpMsg(1, 4, 0, dropped6...))),
			fromContainer, false, matched},
		{"icmpv6 error about an unknown flow, from web", err6(hWeb6, web6Peer,
			v6(web6Peer, hWeb6, rules.ProtoUDP, udpDgram(9, 5353))), fromContainer, true, unmatched},
		{"icmpv6 error about an unknown flow, from a router", err6(router6, hWeb6,
			v6(hWeb6, web6Peer, rules.ProtoUDP, udpDgram(5353, 9))), toContainer, false, unmatched},
		{"icmpv6 quote cut in the ipv6 header, from web", err6(hWeb6, hPeer6, allowed6[:39]), fromContainer, true, badQuote},
		{"icmpv6 quote's ext chain cut, about a dropped flow", err6(hWeb6, hPeer6,
			v6(hPeer6, hWeb6, xDestOpts, cat(ext(xDestOpts, rules.ProtoTCP), tcpSeg(40008, 8101, TCPFlagSYN)))[:45]),
			fromContainer, true, badQuote},
		{"icmpv6 quote of a later fragment, about a dropped flow", err6(hWeb6, hPeer6,
			v6(hPeer6, hWeb6, xFragment, fragHdr(rules.ProtoTCP, 8, false, 1, 2, 3, 4))), fromContainer, true, badQuote},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := e.Counts()
			v := e.Judge(tt.data, tt.meta, now)
			after := e.Counts()
			if v.Allow != tt.allow || v.Bypass || v.Hold {
				t.Errorf("verdict %+v, want allow = %v, never bypassed", v, tt.allow)
			}
			got := [3]uint64{
				after.ICMPErrorsMatched - before.ICMPErrorsMatched,
				after.ICMPErrorsUnmatched - before.ICMPErrorsUnmatched,
				after.ICMPErrorsBadQuote - before.ICMPErrorsBadQuote,
			}
			var want [3]uint64
			want[tt.result] = 1
			if got != want || after.ICMPErrors-before.ICMPErrors != 1 {
				t.Errorf("counted [matched unmatched bad quote] += %v, ICMPErrors += %d; want %v, 1",
					got, after.ICMPErrors-before.ICMPErrors, want)
			}
			if after.Malformed != 0 || after.Flows != before.Flows {
				t.Errorf("an ICMP error was counted malformed (%d) or as a flow (%d → %d)", after.Malformed, before.Flows, after.Flows)
			}
		})
	}
}
