// Package firewall is what nfqguard changes in the host's netfilter
// configuration besides its queues. It finds where container traffic can
// be hooked: with Docker's iptables firewall backend, its DOCKER-USER
// chain (IPv4, and IPv6 where Docker made one) in the iptables backend
// Docker uses, nft or legacy; with Docker 29's nftables backend, which has
// no DOCKER-USER, a chain of nfqguard's own, NFQGUARD, in the iptables-nft
// mangle table, jumped to from mangle FORWARD (priority -150, ahead of
// Docker's filter-FORWARD in its table docker-bridges, which Docker owns
// and wipes on restart). It installs there the one NFQUEUE redirect that
// sends container traffic to the queues, and the CONNMARK companion that
// moves a decided flow to the fast path; and removes both again,
// replacing what a killed run left (in either hook). The xtables NFQUEUE
// target is used in both: kernels without the nft queue expression
// (CONFIG_NFT_QUEUE) have it through nft_compat. It also edits conntrack's connection marks: it sets the
// bypass bit on connections that existed before the engine started, and
// clears it to send fast-path flows back to be judged after a reload.
//
// It does not bind queues, judge packets or answer the kernel (package
// queue does), and it holds no rule logic: every iptables argument is built
// from a RuleSpec's numbers and switches, never from the rule file. It does
// not check the process's capabilities (queue.CheckPrivileges does, before
// anything is touched). It imports no other nfqguard package.
package firewall
