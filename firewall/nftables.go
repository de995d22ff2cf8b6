package firewall

import (
	"fmt"
	"slices"

	"github.com/coreos/go-iptables/iptables"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Docker's nftables backend (Docker 29, --firewall-backend=nftables) keeps
// its rules in a table of this name in the ip and ip6 families.
const dockerNftTable = "docker-bridges"

// nf_tables netlink numbers (linux/netfilter/nfnetlink.h, nf_tables.h).
const (
	nfnlSubsysNftables = 10 // NFNL_SUBSYS_NFTABLES
	nftMsgGetTable     = 1  // NFT_MSG_GETTABLE
	nftaTableName      = 1  // NFTA_TABLE_NAME
)

// nftTables lists the names of the nf_tables tables of proto's family (ip
// or ip6) in the calling thread's network namespace, over netlink: no nft
// binary is needed. iptables-nft's own tables (filter, mangle, …) are
// among them.
func nftTables(proto iptables.Protocol) ([]string, error) {
	family := uint8(unix.NFPROTO_IPV4)
	if proto == iptables.ProtocolIPv6 {
		family = unix.NFPROTO_IPV6
	}
	c, err := netlink.Dial(unix.NETLINK_NETFILTER, nil)
	if err != nil {
		return nil, fmt.Errorf("list nf_tables tables: %w", err)
	}
	defer c.Close()
	msgs, err := c.Execute(netlink.Message{
		Header: netlink.Header{
			Type:  netlink.HeaderType(nfnlSubsysNftables<<8 | nftMsgGetTable),
			Flags: netlink.Request | netlink.Dump,
		},
		// struct nfgenmsg: family, version (NFNETLINK_V0), resource id.
		Data: []byte{family, unix.NFNETLINK_V0, 0, 0},
	})
	if err != nil {
		return nil, fmt.Errorf("list nf_tables tables: %w", err)
	}
	return tableNames(msgs)
}

// tableNames reads the NFTA_TABLE_NAME of each NFT_MSG_NEWTABLE message of
// a table dump.
func tableNames(msgs []netlink.Message) ([]string, error) {
	var names []string
	for _, m := range msgs {
		if len(m.Data) < 4 {
			continue
		}
		ad, err := netlink.NewAttributeDecoder(m.Data[4:])
		if err != nil {
			return nil, fmt.Errorf("list nf_tables tables: %w", err)
		}
		for ad.Next() {
			if ad.Type() == nftaTableName {
				names = append(names, ad.String())
			}
		}
		if err := ad.Err(); err != nil {
			return nil, fmt.Errorf("list nf_tables tables: %w", err)
		}
	}
	return names, nil
}

// dockerNftables reports whether Docker's nftables backend has set up its
// table in proto's family. A host without nf_tables has none.
func dockerNftables(proto iptables.Protocol) bool {
	names, err := nftTables(proto)
	return err == nil && slices.Contains(names, dockerNftTable)
}
