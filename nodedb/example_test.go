package nodedb_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/wwboot/wwboot/nodedb"
)

// Profiles merge as Warewulf 4.7 merges: lists append, ~x removes x
// wherever it stands, the node's own values come last. The node's Profiles
// stay its own list; Chain is the expansion.
func ExampleNew() {
	db, err := nodedb.New(&nodedb.Config{
		NodeProfiles: map[string]*nodedb.Record{
			"default": {SystemOverlay: []string{"wwinit", "hostname"}, Kernel: &nodedb.Kernel{Args: []string{"quiet"}}, Init: "/sbin/init"},
			"gpu":     {Profiles: []string{"default"}, SystemOverlay: []string{"nvidia"}},
		},
		Nodes: map[string]*nodedb.Record{
			"n1": {Profiles: []string{"gpu"}, Kernel: &nodedb.Kernel{Args: []string{"~quiet", "console=ttyS0"}},
				NetDevs: map[string]*nodedb.NetDev{"default": {Hwaddr: "AA-BB-CC-00-00-01", Ipaddr: "10.0.0.1"}}},
		},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	n, _ := db.Node("n1")
	fmt.Println(n.Profiles, n.Chain, n.SystemOverlay, n.Kernel.Args, n.Init)
	fmt.Println(n.Primary, n.PrimaryNetDevice().Hwaddr)
	// Output:
	// [gpu] [default gpu] [wwinit hostname nvidia] [console=ttyS0] /sbin/init
	// default aa:bb:cc:00:00:01
}

// A FileStore changes nodes.conf atomically under a lock; other readers of
// the file see the change without a restart.
func ExampleFileStore_Update() {
	ctx := context.Background()
	dir, _ := os.MkdirTemp("", "nodedb-example")
	defer os.RemoveAll(dir)
	path := filepath.Join(dir, "nodes.conf")

	store, err := nodedb.Create(ctx, path, &nodedb.Config{NodeProfiles: map[string]*nodedb.Record{"default": {Init: "/sbin/init"}}})
	if err != nil {
		fmt.Println(err)
		return
	}
	err = store.Update(ctx, func(c *nodedb.Config) error {
		c.Nodes["n1"] = &nodedb.Record{Profiles: []string{"default"},
			NetDevs: map[string]*nodedb.NetDev{"default": {Hwaddr: "52:54:00:00:00:01", Ipaddr: "10.0.0.11"}}}
		return nil
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	hw, _ := nodedb.ParseHW("52-54-00-00-00-01")
	n, _ := store.NodeByHW(ctx, hw)
	fmt.Println(n.ID, n.Init)

	// A change that would make the inventory inconsistent is refused, and
	// nothing is written.
	err = store.Update(ctx, func(c *nodedb.Config) error {
		c.Nodes["n2"] = &nodedb.Record{NetDevs: map[string]*nodedb.NetDev{"default": {Hwaddr: "52:54:00:00:00:01"}}}
		return nil
	})
	fmt.Println(err)
	// Output:
	// n1 /sbin/init
	// the change makes the inventory inconsistent (nothing was written): node "n2": network devices.default.hwaddr: 52:54:00:00:00:01 is also the address of node "n1": neither boots by this MAC until each MAC belongs to one node
}
