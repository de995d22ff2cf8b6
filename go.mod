module github.com/nfqguard/nfqguard

go 1.26.8

require (
	github.com/BurntSushi/toml v1.5.0
	github.com/coreos/go-iptables v0.8.0
	github.com/florianl/go-nfqueue/v2 v2.1.0
	github.com/google/go-cmp v0.7.0
	github.com/google/gopacket v1.1.19
	github.com/mdlayher/netlink v1.9.0
	golang.org/x/net v0.50.0
	golang.org/x/sys v0.41.0
)

require (
	github.com/mdlayher/socket v0.5.1 // indirect
	golang.org/x/sync v0.19.0 // indirect
)
