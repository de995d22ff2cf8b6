package firewall

import (
	"slices"
	"testing"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// TestTableNames reads the names out of a table dump as the kernel sends
// it: an nfgenmsg header, then attributes, NFTA_TABLE_NAME among them.
func TestTableNames(t *testing.T) {
	table := func(name string) netlink.Message {
		ae := netlink.NewAttributeEncoder()
		ae.String(nftaTableName, name)
		ae.Uint32(2, 0)          // NFTA_TABLE_FLAGS
		ae.Uint32(3, 7)          // NFTA_TABLE_USE
		ae.Uint64(4, 0xfeedface) // NFTA_TABLE_HANDLE
		b, err := ae.Encode()
		if err != nil {
			t.Fatal(err)
		}
		return netlink.Message{Data: append([]byte{unix.NFPROTO_IPV4, 0, 0, 0}, b...)}
	}
	got, err := tableNames([]netlink.Message{table("filter"), table(dockerNftTable), {Data: []byte{2}}, table("mangle")})
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"filter", "docker-bridges", "mangle"}; !slices.Equal(got, want) {
		t.Errorf("tableNames = %q, want %q", got, want)
	}
	if _, err := tableNames([]netlink.Message{{Data: []byte{2, 0, 0, 0, 9, 0, 1}}}); err == nil {
		t.Error("a truncated attribute was accepted")
	}
}
