package provision

import (
	"context"
	"net"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/wwboot/wwboot/dhcp"
	"github.com/wwboot/wwboot/nodedb"
)

func TestDHCPHostsTakesNameServersAndDomainFromTags(t *testing.T) {
	db, err := nodedb.New(&nodedb.Config{Nodes: map[string]*nodedb.Record{
		"n1": {
			Tags: map[string]string{"DNS2": "10.0.0.3", "domain": "cluster.example"},
			NetDevs: map[string]*nodedb.NetDev{"default": {Hwaddr: "52:54:00:00:00:01", Ipaddr: "10.0.0.11", MTU: "9000",
				Tags: map[string]string{"DNS1": "10.0.0.2", "DNS2": "not-an-address"}}},
		},
	}})
	require.NoError(t, err)
	h, err := DHCPHosts(DBInventory{DB: db}).HostByHW(context.Background(), net.HardwareAddr{0x52, 0x54, 0, 0, 0, 1})
	require.NoError(t, err)
	assert.Equal(t, []netip.Addr{netip.MustParseAddr("10.0.0.2"), netip.MustParseAddr("10.0.0.3")}, h.DNS)
	assert.Equal(t, "cluster.example", h.Domain)
	assert.Equal(t, uint16(9000), h.MTU)
}

// TestDHCPHostsFindsIPoIBNodesByGUID: an IPoIB client is looked up by its
// port GUID (dhcp.ClientHW, RFC 4390), whichever form the site recorded as
// hwaddr: the 20-byte address ip link shows, the 8-byte GUID, or the 20-byte
// client identifier of dhclient.conf. iPXE's ${mac} is the 20-byte address
// with this boot's queue pair number, which differs from the recorded one.
func TestDHCPHostsFindsIPoIBNodesByGUID(t *testing.T) {
	db, err := nodedb.New(&nodedb.Config{Nodes: map[string]*nodedb.Record{
		"ib1": {NetDevs: map[string]*nodedb.NetDev{"ib0": {Type: "infiniband", Hwaddr: "80:00:02:08:fe:80:00:00:00:00:00:00:00:02:c9:03:00:00:00:01", Ipaddr: "10.0.1.1"}}},
		"ib2": {NetDevs: map[string]*nodedb.NetDev{"ib0": {Type: "infiniband", Hwaddr: "00:02:c9:03:00:00:00:02", Ipaddr: "10.0.1.2"}}},
		"ib3": {NetDevs: map[string]*nodedb.NetDev{"ib0": {Type: "infiniband", Hwaddr: "ff:00:00:00:00:00:02:00:00:02:c9:00:00:02:c9:03:00:00:00:03", Ipaddr: "10.0.1.3"}}},
	}})
	require.NoError(t, err)
	hosts := DHCPHosts(DBInventory{DB: db})
	ctx := context.Background()
	for i, want := range []string{"ib1", "ib2", "ib3"} {
		guid := net.HardwareAddr{0, 2, 0xc9, 3, 0, 0, 0, byte(i + 1)}
		h, err := hosts.HostByHW(ctx, guid)
		require.NoError(t, err, want)
		assert.Equal(t, want, h.Hostname)
		assert.Equal(t, netip.AddrFrom4([4]byte{10, 0, 1, byte(i + 1)}), h.Addr)

		ipxeMAC := append(net.HardwareAddr{0x80, 0x00, 0x04, 0x4a, 0xfe, 0x80, 0, 0, 0, 0, 0, 0}, guid...)
		n, err := db.NodeByHW(ctx, ipxeMAC)
		require.NoError(t, err, want)
		assert.Equal(t, want, n.ID)
	}
	_, err = hosts.HostByHW(ctx, net.HardwareAddr{0, 2, 0xc9, 3, 0, 0, 0, 9})
	assert.ErrorIs(t, err, dhcp.ErrUnknownHost)
}
