// Package rules loads nfqguard's TOML rule file, validates it strictly and
// compiles it into an immutable lookup table for the packet hot path.
//
// What it does:
//
//   - Parse/Load read the file and report every problem at once, each as a
//     *ConfigError carrying file, line, column and the key path, so that
//     `nfqguard check` can point a user at the exact spot.
//   - The resulting *Table answers Judge and Listed without locks or
//     allocations; it is never modified after Parse returns, so any number of
//     goroutines may query it while a reload builds a replacement.
//   - A [[container]] without ips is dynamic: its addresses are those of
//     the running Docker containers it selects, by name, image pattern or
//     label. Table.Resolve takes the containers (as package docker lists
//     them, converted to rules.Container) and returns a new Table with
//     those addresses, plus container metadata (Table.Meta) for the flow
//     log; the parsed Table stays as it was, so the caller swaps tables
//     atomically as the containers change.
//   - Rules may also name what a flow says: the TLS server name, the
//     HTTP/1.x host, path and method, the DNS question name (L7 fields).
//     Judge cannot know these; it reports in Match.Need that the verdict
//     waits for them, and JudgeFacts gives it once the engine has parsed
//     them (Facts). [inspect] (Table.Inspect) bounds that wait.
//
// Errors render as FILE:LINE:COL: KEY: MSG, for example
//
//	rules.toml:12:10: container[0].rule[1].ports[0]: "90-80": start 90 is greater than end 80
//
// Because the TOML library does not expose key positions, position.go
// re-scans the raw text to find them; this happens only when a file has
// errors.
//
// What it does not do: it does not open the blocked-flow log, talk to
// Docker (it is handed the containers), install iptables rules, track flows,
// decode packets or parse TLS, HTTP or DNS. Reloading means parsing a new Table and swapping a pointer; that
// is the caller's business.
//
// Address families never mix: an IPv4 peer is only matched by IPv4 prefixes,
// so "::/0" does not match IPv4 peers and "0.0.0.0/0" does not match IPv6
// peers. IPv4-mapped IPv6 addresses (::ffff:a.b.c.d) are treated as the IPv4
// address they carry, both in the file and in queries.
package rules
