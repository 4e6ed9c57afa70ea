package main

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wwboot/wwboot/provision/netlab"
)

// TestRemoteClientsSendAdminToken: the commands that read a running
// server's admin-only listings (status, node status, power --server) send
// the admin token from a machine outside the server's admin networks, and
// without a usable token the refusal says what to do. The server runs in
// one namespace, the client in another, joined by a veth pair: neither
// loopback nor the server's own address, nor an admin network. Before,
// `wwboot node status --server URL` sent no token and got a bare 403.
func TestRemoteClientsSendAdminToken(t *testing.T) {
	netlab.Require(t)
	netlab.RequireTools(t, "curl")
	bin, err := buildBinary()
	require.NoError(t, err)
	ns, peer := netlab.NewNS(t), netlab.NewNS(t)
	netlab.Veth(t, ns, "wwd0", netip.MustParsePrefix("10.79.0.1/24"), peer, "cli0", netip.MustParsePrefix("10.79.0.2/24"))
	root := t.TempDir()
	mustRun(t, root, "init")
	mustRun(t, root, "node", "add", "n1", "--hwaddr", "52:54:00:79:00:01")

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	port := strconv.Itoa(freePort(t))
	srv := ns.Command(ctx, bin, "--root", root, "serve", "--interface", "wwd0", "--dhcp", "off", "--no-tftp",
		"--ipv6-ra=false", "--http-port", port)
	var logs syncWriter
	srv.Stdout, srv.Stderr = &logs, &logs
	require.NoError(t, srv.Start())
	defer func() {
		_ = srv.Process.Kill()
		_ = srv.Wait()
		if t.Failed() {
			t.Logf("wwboot serve:\n%s", logs.String())
		}
	}()
	url := "http://10.79.0.1:" + port
	require.Eventually(t, func() bool {
		return peer.Command(ctx, "curl", "-sf", "-o", "/dev/null", url+"/healthz").Run() == nil
	}, 30*time.Second, 100*time.Millisecond, "wwboot serve answers /healthz from the peer")

	client := func(env []string, args ...string) (string, error) {
		t.Helper()
		cmd := peer.Command(ctx, bin, args...)
		cmd.Env = append(os.Environ(), env...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	// A workstation's state directory: no admin.token in it.
	elsewhere := t.TempDir()
	token := filepath.Join(root, "admin.token")

	// The refusal names the way out.
	for _, args := range [][]string{{"node", "status"}, {"status"}, {"power", "status", "n1"}} {
		out, err := client(nil, append([]string{"--root", elsewhere}, append(args, "--server", url)...)...)
		require.Error(t, err, "%v: %s", args, out)
		assert.Regexp(t, `40[13]`, out, args)
		assert.Contains(t, out, "no admin token was sent", args)
		assert.Contains(t, out, "--token-file", args)
		assert.Contains(t, out, "WWBOOT_TOKEN_FILE", args)
	}

	// --token-file, WWBOOT_TOKEN_FILE and the default ROOT/admin.token all
	// get the listing.
	out, err := client(nil, "--root", elsewhere, "node", "status", "--server", url, "--token-file", token)
	require.NoError(t, err, out)
	assert.Contains(t, out, "n1")
	out, err = client([]string{"WWBOOT_TOKEN_FILE=" + token}, "--root", elsewhere, "node", "status", "n1", "--server", url,
		"--wait=down", "--interval", "50ms", "--wait-timeout", "30s")
	require.NoError(t, err, out)
	assert.Contains(t, out, "all 1 nodes down")
	out, err = client(nil, "--root", root, "status", "--server", url)
	require.NoError(t, err, out)
	assert.Contains(t, out, "n1")

	// A token of another server: the refusal says so.
	other := filepath.Join(t.TempDir(), "other.token")
	require.NoError(t, os.WriteFile(other, []byte("0123456789abcdef0123456789abcdef\n"), 0o600))
	out, err = client(nil, "--root", elsewhere, "node", "status", "--server", url, "--token-file", other)
	require.Error(t, err, out)
	assert.Contains(t, out, "refused the token of "+other)

	// A --token-file that is not there is an error before any request.
	out, err = client(nil, "--root", elsewhere, "node", "status", "--server", url, "--token-file", other+".missing")
	require.Error(t, err, out)
	assert.Contains(t, out, "no such file")
}
