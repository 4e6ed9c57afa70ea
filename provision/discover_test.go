package provision

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/wwboot/wwboot/dhcp"
	"github.com/wwboot/wwboot/nodedb"
)

func TestDiscoveryAssignsEachMACOneNodeAndSaves(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "nodes.conf")
	require.NoError(t, os.WriteFile(path, []byte(`nodeprofiles: {}
nodes:
  n1:
    discoverable: "true"
    network devices:
      default:
        ipaddr: 10.0.0.1
        netmask: 255.255.255.0
  n2:
    discoverable: "true"
    network devices:
      default:
        ipaddr: 10.0.0.2
  n3:
    network devices:
      default:
        ipaddr: 10.0.0.3
`), 0o644))
	store, err := nodedb.Open(ctx, path)
	require.NoError(t, err)
	d := &Discovery{Store: store}

	macs := []net.HardwareAddr{{2, 0, 0, 0, 0, 1}, {2, 0, 0, 0, 0, 2}, {2, 0, 0, 0, 0, 3}}
	hosts := make([]dhcp.Host, len(macs))
	errs := make([]error, len(macs))
	var wg sync.WaitGroup
	for i, mac := range macs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// A second store, as a second process would have.
			s, err := nodedb.Open(ctx, path)
			if err != nil {
				errs[i] = err
				return
			}
			hosts[i], errs[i] = (&Discovery{Store: s}).Discover(ctx, mac)
		}()
	}
	wg.Wait()
	var got []string
	unknown := 0
	for i := range macs {
		if errs[i] != nil {
			assert.ErrorIs(t, errs[i], dhcp.ErrUnknownHost)
			unknown++
			continue
		}
		got = append(got, hosts[i].Hostname)
	}
	assert.ElementsMatch(t, []string{"n1", "n2"}, got, "two discoverable nodes, two MACs take them")
	assert.Equal(t, 1, unknown, "the third MAC finds none left")

	// The same MAC asking again gets the same node; the file holds the assignment.
	for i := range macs {
		if errs[i] == nil {
			h, err := d.Discover(ctx, macs[i])
			require.NoError(t, err)
			assert.Equal(t, hosts[i].Hostname, h.Hostname)
		}
	}
	fresh, err := nodedb.Open(ctx, path)
	require.NoError(t, err)
	for i := range macs {
		if errs[i] == nil {
			n, err := fresh.NodeByHW(ctx, macs[i])
			require.NoError(t, err)
			assert.Equal(t, hosts[i].Hostname, n.ID)
			assert.Equal(t, "false", n.Discoverable, fmt.Sprint(n.ID, " is no longer discoverable"))
		}
	}
}
