//go:build linux

package dhcp

import (
	"net"
	"net/netip"
	"testing"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/stretchr/testify/assert"
	"golang.org/x/sys/unix"
)

func TestDestinationFollowsRFC2131(t *testing.T) {
	mac := net.HardwareAddr{0x52, 0x54, 0, 0, 0, 1}
	req := func(mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
		return must(dhcpv4.New(append([]dhcpv4.Modifier{dhcpv4.WithHwAddr(mac)}, mods...)...))
	}
	rep := func(mt dhcpv4.MessageType, yi string) *dhcpv4.DHCPv4 {
		return must(dhcpv4.New(dhcpv4.WithMessageType(mt), dhcpv4.WithYourIP(net.ParseIP(yi))))
	}
	noPeer := netip.MustParseAddrPort("0.0.0.0:68")
	for _, tc := range []struct {
		name string
		req  *dhcpv4.DHCPv4
		rep  *dhcpv4.DHCPv4
		port int
		peer netip.AddrPort
		dst  string
		arp  bool
	}{
		{"relayed goes to giaddr:67", req(dhcpv4.WithGatewayIP(net.ParseIP("10.9.0.1"))), rep(dhcpv4.MessageTypeOffer, "10.9.0.5"), 67, netip.MustParseAddrPort("10.9.0.1:67"), "10.9.0.1:67", false},
		{"relayed NAK goes to giaddr:67", req(dhcpv4.WithGatewayIP(net.ParseIP("10.9.0.1"))), rep(dhcpv4.MessageTypeNak, "0.0.0.0"), 67, noPeer, "10.9.0.1:67", false},
		{"PXE 4011 goes back to the sender", req(dhcpv4.WithClientIP(net.ParseIP("10.0.0.5"))), rep(dhcpv4.MessageTypeAck, "0.0.0.0"), 4011, netip.MustParseAddrPort("10.0.0.5:4011"), "10.0.0.5:4011", false},
		{"NAK is broadcast", req(dhcpv4.WithClientIP(net.ParseIP("10.0.0.5"))), rep(dhcpv4.MessageTypeNak, "0.0.0.0"), 67, noPeer, "255.255.255.255:68", false},
		{"renewing goes to ciaddr", req(dhcpv4.WithClientIP(net.ParseIP("10.0.0.5"))), rep(dhcpv4.MessageTypeAck, "10.0.0.5"), 67, netip.MustParseAddrPort("10.0.0.5:68"), "10.0.0.5:68", false},
		{"broadcast bit is honoured", req(dhcpv4.WithBroadcast(true)), rep(dhcpv4.MessageTypeOffer, "10.0.0.5"), 67, noPeer, "255.255.255.255:68", false},
		{"unconfigured client gets unicast to yiaddr via ARP", req(), rep(dhcpv4.MessageTypeOffer, "10.0.0.5"), 67, noPeer, "10.0.0.5:68", true},
		{"proxy offer without yiaddr is broadcast", req(), rep(dhcpv4.MessageTypeOffer, "0.0.0.0"), 67, noPeer, "255.255.255.255:68", false},
	} {
		dst, arp := destination(tc.req, tc.rep, tc.port, tc.peer)
		assert.Equal(t, tc.dst, dst.String(), tc.name)
		assert.Equal(t, tc.arp, arp, tc.name)
	}
}

func TestLocalAddrFromPktinfo(t *testing.T) {
	c := &Conn{prefixes: []netip.Prefix{netip.MustParsePrefix("10.0.0.1/24"), netip.MustParsePrefix("10.0.1.1/24")}}
	oob := func(dst, spec string) []byte {
		return unix.PktInfo4(&unix.Inet4Pktinfo{Ifindex: 2, Addr: netip.MustParseAddr(dst).As4(), Spec_dst: netip.MustParseAddr(spec).As4()})
	}
	assert.Equal(t, "10.0.1.1", c.localAddr(oob("10.0.1.1", "10.0.1.1")).String(), "unicast to our second address (a relay)")
	assert.Equal(t, "10.0.0.1", c.localAddr(oob("255.255.255.255", "10.0.0.1")).String(), "broadcast: the kernel's choice")
	assert.Equal(t, "10.0.0.1", c.localAddr(nil).String(), "no control message: the first address")
	assert.Equal(t, "10.0.0.1", c.localAddr([]byte{1, 2, 3}).String(), "garbage control data")
	huge := oob("10.0.1.1", "10.0.1.1")
	huge[0] = 0xff // length beyond the buffer
	assert.Equal(t, "10.0.0.1", c.localAddr(huge).String())
}
