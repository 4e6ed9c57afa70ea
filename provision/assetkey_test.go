package provision_test

import (
	"context"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wwboot/wwboot/agent"
	"github.com/wwboot/wwboot/nodedb"
	"github.com/wwboot/wwboot/provision"
	"github.com/wwboot/wwboot/provision/netlab"
)

// TestBootChainWithoutAssetKey: for n2, which has an asset key, a boot-chain
// request without the right key is not the node's. A GET /ipxe/{mac}
// without ?assetkey= gets a script that asks again with the machine's asset
// tag (and names nothing of the node); a wrong key, at the iPXE script or
// the kernel, gets 403. Neither changes n2's status, sends an event or
// reopens n2's enrollment: a second enrollment stays refused (409). With
// the right key, the script marks n2 booting and reopens its enrollment.
func TestBootChainWithoutAssetKey(t *testing.T) {
	netlab.Require(t) // root, for the privileged source port of the enrollment
	ctx := context.Background()
	l := newLab(t)
	s := startServer(t, l, filepath.Join(t.TempDir(), "tls"), "", "")
	n2Agent := func() *agent.Agent {
		a := s.nodeAgent(t, filepath.Join(t.TempDir(), "run"))
		var err error
		a.HWAddr, err = nodedb.ParseHW(mac2)
		require.NoError(t, err)
		a.AssetKey = asset
		a.Dial = privilegedFrom(ip2)
		return a
	}
	_, err := n2Agent().Sync(ctx, 0)
	require.NoError(t, err, "n2 enrolls")
	_, err = n2Agent().Sync(ctx, 0)
	require.ErrorContains(t, err, "409", "a second enrollment in the same boot is refused")

	status := func() provision.NodeStatus { return nodeStatus(t, s.srv.Handler(), "n2") }
	before := status()
	nEvents := func() int {
		s.events.mu.Lock()
		defer s.events.mu.Unlock()
		n := 0
		for _, e := range s.events.evs {
			if e.Node == "n2" {
				n++
			}
		}
		return n
	}
	eventsBefore := nEvents()

	resp, body := get(t, s.plain+"/ipxe/"+mac2)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	script := string(body)
	assert.True(t, strings.HasPrefix(script, "#!ipxe\n"), script)
	assert.Contains(t, script, "chain --replace --autofree "+s.plain+"/ipxe/"+mac2+"?assetkey=${asset} ||")
	for _, leak := range []string{"n2", ip2, "/kernel/", "/image/", "img"} {
		assert.NotContains(t, script, leak, "the keyless script names nothing of the node")
	}
	for _, p := range []string{"/ipxe/" + mac2 + "?assetkey=wrong", "/ipxe/" + mac2 + "?assetkey=", "/provision/" + mac2 + "?stage=ipxe&assetkey=x",
		"/kernel/" + mac2, "/image/" + mac2 + "?assetkey=wrong"} {
		resp, body := get(t, s.plain+p)
		assert.Equal(t, http.StatusForbidden, resp.StatusCode, "%s: %s", p, body)
	}
	after := status()
	assert.Equal(t, before.Requests, after.Requests, "requests without the key are not n2's")
	assert.Equal(t, before.Stage, after.Stage)
	assert.Equal(t, before.State, after.State)
	assert.Equal(t, before.BootStarted, after.BootStarted)
	assert.Equal(t, eventsBefore, nEvents(), "no event for n2")
	_, err = n2Agent().Sync(ctx, 0)
	require.ErrorContains(t, err, "409", "the enrollment stays closed")

	// The script iPXE asks for next, with the asset tag: the node's own.
	resp, body = get(t, s.plain+"/ipxe/"+mac2+"?assetkey="+asset)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Contains(t, string(body), "/kernel/"+mac2+"?assetkey=${asset}")
	assert.Equal(t, provision.StateBooting, status().State)
	assert.Greater(t, nEvents(), eventsBefore, "the node's boot is published")
	_, err = n2Agent().Sync(ctx, 0)
	require.NoError(t, err, "a boot with the key reopens the enrollment")
}
