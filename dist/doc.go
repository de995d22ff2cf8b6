// Package dist holds no code: this directory holds nfqguard's packaging
// files, installed on a host as docs/operations.md ("Running it as a service") and
// docs/fleet.md describe.
//
//   - nfqguard.service: the systemd unit (/etc/systemd/system/)
//   - nfqguard.logrotate: rotation of the blocked-flow log (/etc/logrotate.d/nfqguard)
//   - nfqguard-nonroot.conf: a drop-in that runs the unit as the user
//     nfqguard with ambient CAP_NET_ADMIN and CAP_NET_RAW
//     (/etc/systemd/system/nfqguard.service.d/), where Docker uses iptables-nft
//   - nfqguard.sysusers: creates that user (/usr/lib/sysusers.d/nfqguard.conf)
//
// The package's test checks them: the unit keeps nfqguard in the host's
// network namespace with CAP_NET_ADMIN and CAP_NET_RAW only, read-only file
// system but its runtime, log and lock paths, restarts on failure, and
// reloads on SIGHUP; the logrotate file makes nfqguard reopen its log with
// SIGUSR1 and leaves the self-rotating pcap capture alone; the drop-in runs
// it as a user of its own with the same two capabilities and no way to
// gain more. Where
// systemd-analyze and logrotate are installed, the test also has them
// check the files.
package dist
