// Package daemon is "nfqguard run" without its command line: it loads and
// checks the rule file, opens what can fail on bad settings (the
// blocked-flow log, the pcap file, the metrics listener, the status
// socket) before the firewall is touched, asks Docker which containers
// run, and then runs the queues (package queue) until its context ends,
// removing everything it installed on the way out. While it runs it
// reloads the rule file on request, reopens its log and capture after
// rotation, and answers the status socket and the metrics endpoint. A
// status socket that cannot be opened is logged and the engine runs
// without it: it is monitoring, not the firewall.
//
// It also holds what "nfqguard check" shares with run: the rule-file
// ownership policy (LoadRuleFile) and the table as Docker would resolve it
// now (Check).
//
// It does not parse command lines or catch signals (cmd/nfqguard does,
// and calls Reload and Reopen), judge packets (package inspect), or talk
// to the kernel itself (packages queue and firewall).
package daemon
