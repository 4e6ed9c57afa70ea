package provision

import (
	"context"
	"net"
	"net/netip"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
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
