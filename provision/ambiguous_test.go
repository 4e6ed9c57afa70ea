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

// TestAmbiguousAddresses: a MAC two nodes share answers neither node to
// DHCP (and is not "unknown", so no pool or discovery takes it), and an IP
// two nodes claim stays out of the dynamic pool.
func TestAmbiguousAddresses(t *testing.T) {
	cfg, err := nodedb.Parse("nodes.conf", []byte(`nodes:
  a:
    network devices:
      e: {hwaddr: "02:00:00:00:00:01", ipaddr: 10.0.0.7}
  b:
    network devices:
      e: {hwaddr: "02:00:00:00:00:01", ipaddr: 10.0.0.7}
`))
	require.NoError(t, err)
	st, err := nodedb.NewMemoryStore(cfg)
	require.NoError(t, err)
	hosts := DHCPHosts(st)
	mac, _ := net.ParseMAC("02:00:00:00:00:01")
	_, err = hosts.HostByHW(context.Background(), mac)
	require.Error(t, err)
	assert.ErrorIs(t, err, nodedb.ErrAmbiguous)
	assert.NotErrorIs(t, err, dhcp.ErrUnknownHost)
	assert.True(t, hosts.(dhcp.Reserver).Reserved(netip.MustParseAddr("10.0.0.7")))
}
