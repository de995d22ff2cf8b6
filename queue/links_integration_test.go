package queue_test

import (
	"net"
	"testing"

	"github.com/nfqguard/nfqguard/internal/netlab"
	"github.com/nfqguard/nfqguard/internal/netlab/netlabtest"
	"github.com/nfqguard/nfqguard/queue"
)

func TestBridges(t *testing.T) {
	l := netlabtest.New(t, netlab.Options{})
	var b queue.Bridges
	var docker0, ext0 *net.Interface
	if err := l.Do(l.Host, func() (err error) {
		if err = b.Refresh(); err != nil {
			return err
		}
		if docker0, err = net.InterfaceByName("docker0"); err != nil {
			return err
		}
		ext0, err = net.InterfaceByName("ext0")
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if !b.IsBridge(uint32(docker0.Index)) {
		t.Errorf("docker0 (index %d) not recognised as a bridge", docker0.Index)
	}
	if b.IsBridge(uint32(ext0.Index)) || b.IsBridge(0) {
		t.Error("ext0 or index 0 recognised as a bridge")
	}
}
