//go:build linux

package dhcp_test

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/wwboot/wwboot/dhcp"
)

// The policy is a plain handler: a request in, a reply out, no sockets.
func ExamplePolicy() {
	hosts, _ := dhcp.NewStaticHosts(map[string]dhcp.Host{
		"52:54:00:00:00:01": {Hostname: "n1", Addr: netip.MustParseAddr("10.0.0.11"), Netmask: net.CIDRMask(24, 32)},
	})
	policy, _ := dhcp.NewPolicy(hosts, dhcp.Config{TFTP: true})

	mac, _ := net.ParseMAC("52:54:00:00:00:01")
	for _, userClass := range []string{"", "iPXE"} {
		discover, _ := dhcpv4.NewDiscovery(mac,
			dhcpv4.WithOption(dhcpv4.OptClassIdentifier("PXEClient:Arch:00007:UNDI:003016")),
			dhcpv4.WithGeneric(dhcpv4.OptionClientSystemArchitectureType, []byte{0, 7}), // x86-64 UEFI
			dhcpv4.WithGeneric(dhcpv4.OptionUserClassInformation, []byte(userClass)))
		offer, _ := policy.ServeDHCP(context.Background(), &dhcp.Request{
			Msg: discover, Interface: "eth0", Local: netip.MustParseAddr("10.0.0.1"), Port: dhcp.ServerPort,
		})
		fmt.Println(offer.MessageType(), offer.YourIPAddr, offer.HostName(), offer.BootFileName)
	}
	// Output:
	// OFFER 10.0.0.11 n1 snponly.efi
	// OFFER 10.0.0.11 n1 http://10.0.0.1:9873/ipxe/${mac:hexhyp}
}

// A full-mode server: addresses from the inventory, a dynamic pool with a
// lease file for unknown MACs, on two interfaces.
func ExampleServer_full() {
	var hosts interface {
		dhcp.Hosts
		dhcp.Reserver
	} // the provisioning server's inventory adapter
	hosts, _ = dhcp.NewStaticHosts(nil)

	reg := prometheus.NewRegistry()
	metrics, _ := dhcp.NewMetrics(reg)
	logger := slog.New(slog.NewTextHandler(os.Stderr, nil))
	pool, err := dhcp.NewPool(dhcp.PoolConfig{
		Start: netip.MustParseAddr("10.0.0.200"), End: netip.MustParseAddr("10.0.0.250"),
		Netmask: net.CIDRMask(24, 32), LeaseTime: time.Hour,
		LeaseFile: "/var/lib/wwboot/dhcp.leases", Reserver: hosts, Logger: logger,
	})
	if err != nil {
		logger.Error("pool", "err", err)
		return
	}
	policy, _ := dhcp.NewPolicy(hosts, dhcp.Config{
		Mode: dhcp.Full, ServerAddr: netip.MustParseAddr("10.0.0.1"), HTTPPort: 9873, TFTP: true,
		Pools: []*dhcp.Pool{pool}, Logger: logger, Metrics: metrics,
	})
	srv, _ := dhcp.NewServer(policy, dhcp.ServerConfig{Interfaces: []string{"eth1", "eth2"}, Logger: logger, Metrics: metrics})
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	go func() {
		if err := srv.ListenAndServe(ctx); err != nil {
			logger.Error("dhcp", "err", err)
		}
	}()
	// ... later: srv.Shutdown(ctx) or stop().
}

// A proxy-mode server beside the site's DHCP server: PXE boot information
// only, on ports 67 and 4011.
func ExampleServer_proxy() {
	hosts, _ := dhcp.NewStaticHosts(nil)
	policy, _ := dhcp.NewPolicy(hosts, dhcp.Config{Mode: dhcp.Proxy, TFTP: true})
	// A proxy-mode policy makes the server listen on 4011 as well as 67.
	srv, _ := dhcp.NewServer(policy, dhcp.ServerConfig{Interfaces: []string{"eth0"}})
	_ = srv.ListenAndServe // run it as in the full-mode example
}
