//go:build linux

package dhcp

import (
	"context"
	"net"
	"net/netip"
	"testing"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/iana"
)

// BenchmarkServePacket measures the per-packet work without sockets: parse,
// validate, inventory lookup, policy, reply encoding.
func BenchmarkServePacket(b *testing.B) {
	hosts := testHosts(b)
	p, err := NewPolicy(hosts, Config{TFTP: true})
	if err != nil {
		b.Fatal(err)
	}
	s, _ := NewServer(p, ServerConfig{})
	d := must(dhcpv4.NewDiscovery(knownMAC, pxe(iana.EFI_X86_64)...)).ToBytes()
	r := must(dhcpv4.New(dhcpv4.WithHwAddr(knownMAC), dhcpv4.WithMessageType(dhcpv4.MessageTypeRequest),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(srvAddr.AsSlice())), dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.ParseIP("10.0.0.11"))))).ToBytes()
	peer := netip.MustParseAddrPort("0.0.0.0:68")
	b.ReportAllocs()
	for b.Loop() {
		for _, pkt := range [][]byte{d, r} {
			reply, _ := s.serve(context.Background(), pkt, "eth0", ServerPort, srvAddr, peer)
			if reply == nil {
				b.Fatal("no reply")
			}
			_ = reply.ToBytes()
		}
	}
}
