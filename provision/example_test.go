package provision_test

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"

	"github.com/wwboot/wwboot/dhcp"
	"github.com/wwboot/wwboot/nodedb"
	"github.com/wwboot/wwboot/provision"
)

// A handler over an inventory built in memory: the node's iPXE script names
// the server's URLs and the node's kernel arguments.
func ExampleNewHandler() {
	db, err := nodedb.New(&nodedb.Config{Nodes: map[string]*nodedb.Record{
		"n1": {ImageName: "rocky9", Kernel: &nodedb.Kernel{Args: []string{"quiet", "console=ttyS0"}},
			NetDevs: map[string]*nodedb.NetDev{"default": {Hwaddr: "52:54:00:00:00:01", Ipaddr: "10.0.0.11"}}},
	}})
	if err != nil {
		panic(err)
	}
	h, err := provision.NewHandler(provision.Options{
		Inventory: provision.DBInventory{DB: db},
		BaseURL:   "http://10.0.0.1:9873",
	})
	if err != nil {
		panic(err)
	}
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/ipxe/52-54-00-00-00-01", nil))
	fmt.Println(w.Code)
	for _, line := range strings.Split(w.Body.String(), "\n") {
		if strings.HasPrefix(line, "kernel ") || strings.HasPrefix(line, "boot ") {
			fmt.Println(line)
		}
	}
	// Output:
	// 200
	// kernel --name kernel http://10.0.0.1:9873/kernel/52:54:00:00:00:01 || goto wwboot-retry
	// boot kernel initrd=image initrd=system ${wwboot-runtime} wwid=52:54:00:00:00:01 quiet console=ttyS0 || goto wwboot-retry
}

// InventoryFunc makes any lookup an inventory: here every machine is a node
// named after its MAC that boots one image.
func ExampleInventoryFunc() {
	inv := provision.InventoryFunc(func(_ context.Context, hw net.HardwareAddr) (*nodedb.Node, error) {
		return &nodedb.Node{ID: "node-" + strings.ReplaceAll(hw.String(), ":", ""), Record: nodedb.Record{ImageName: "debian"}}, nil
	})
	hw, _ := provision.ParseMAC("52-54-00-AB-CD-EF")
	n, _ := inv.NodeByHW(context.Background(), hw)
	fmt.Println(n.ID, n.ImageName)
	// Output: node-525400abcdef debian
}

// DHCPHosts hands the inventory's addresses to package dhcp.
func ExampleDHCPHosts() {
	db, _ := nodedb.New(&nodedb.Config{Nodes: map[string]*nodedb.Record{
		"n1": {NetDevs: map[string]*nodedb.NetDev{"default": {Hwaddr: "52:54:00:00:00:01", Ipaddr: "10.0.0.11", Netmask: "255.255.255.0", Gateway: "10.0.0.1"}}},
	}})
	hosts := provision.DHCPHosts(provision.DBInventory{DB: db})
	hw, _ := provision.ParseMAC("52:54:00:00:00:01")
	h, _ := hosts.HostByHW(context.Background(), hw)
	fmt.Println(h.Hostname, h.Addr, net.IP(h.Netmask), h.Gateway)
	_, isReserver := hosts.(dhcp.Reserver)
	fmt.Println(isReserver, hosts.(dhcp.Reserver).Reserved(netip.MustParseAddr("10.0.0.11")))
	// Output:
	// n1 10.0.0.11 255.255.255.0 10.0.0.1
	// true true
}
