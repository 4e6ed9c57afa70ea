package provision_test

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wwboot/wwboot/nodedb"
	"github.com/wwboot/wwboot/provision"
	"github.com/wwboot/wwboot/provision/netlab"
)

// TestServerInNamespace runs the whole Server (full DHCP, TFTP, HTTP, router
// advertisements) in a network namespace, and a client in another boots
// the way a PXE ROM would: busybox udhcpc gets the inventory address and
// the TFTP boot file, atftp fetches it, udhcpc as iPXE gets the script URL,
// curl fetches the script and, from a privileged port, the runtime overlay;
// then a machine the inventory does not know takes a discoverable node.
func TestServerInNamespace(t *testing.T) {
	netlab.Require(t)
	netlab.RequireTools(t, "busybox", "atftp", "curl")
	const (
		nodeMAC = "52:54:00:99:00:01"
		nodeIP  = "10.99.0.11"
	)
	srvNS, cli := netlab.NewNS(t), netlab.NewNS(t)
	netlab.Veth(t, srvNS, "wwb0", netip.MustParsePrefix("10.99.0.1/24"), cli, "eth0", netip.Prefix{})
	cli.IP("link", "set", "eth0", "down")
	cli.IP("link", "set", "eth0", "address", nodeMAC)
	cli.IP("link", "set", "eth0", "up")

	l := newLab(t)
	require.NoError(t, l.store.Update(context.Background(), func(c *nodedb.Config) error {
		c.Nodes["n10"] = &nodedb.Record{Profiles: []string{"default"}, ImageName: "img", Discoverable: "true",
			NetDevs: map[string]*nodedb.NetDev{"default": {Ipaddr: "10.99.0.20", Netmask: "255.255.255.0"}}}
		c.Nodes["n9"] = &nodedb.Record{Profiles: []string{"default"}, ImageName: "img", NetDevs: map[string]*nodedb.NetDev{
			"default": {Hwaddr: nodeMAC, Ipaddr: nodeIP, Netmask: "255.255.255.0"}}}
		return nil
	}))
	srv, err := provision.NewServer(provision.ServerConfig{
		Options:              l.options(t),
		Addr:                 netip.MustParseAddr("10.99.0.1"),
		HTTPAddr:             ":9873",
		Interfaces:           []string{"wwb0"},
		DHCP:                 provision.DHCPFull,
		Discoverer:           &provision.Discovery{Store: l.store},
		TFTP:                 true,
		RouterAdvertisements: true,
		DrainTimeout:         5 * time.Second,
	})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	require.NoError(t, srvNS.Do(srv.Listen))
	go func() { done <- srvNS.Do(func() error { return srv.Serve(ctx) }) }()
	t.Cleanup(func() {
		cancel()
		assert.NoError(t, <-done)
	})

	dir := t.TempDir()
	script := filepath.Join(dir, "udhcpc.sh")
	require.NoError(t, os.WriteFile(script, []byte(`#!/bin/sh
case "$1" in
bound|renew)
	ip addr add "$ip/$mask" dev "$interface" 2>/dev/null
	env > "`+dir+`/env.$$"
	mv "`+dir+`/env.$$" "`+dir+`/env"
	;;
esac
`), 0o755))
	udhcpc := func(extra ...string) string {
		t.Helper()
		cctx, ccancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer ccancel()
		args := append([]string{"udhcpc", "-i", "eth0", "-f", "-q", "-n", "-t", "5", "-T", "1", "-s", script}, extra...)
		out, err := cli.Command(cctx, "busybox", args...).CombinedOutput()
		require.NoError(t, err, "udhcpc: %s", out)
		env, err := os.ReadFile(filepath.Join(dir, "env"))
		require.NoError(t, err)
		return string(env)
	}
	env := udhcpc()
	assert.Contains(t, env, "ip="+nodeIP, "the inventory's address")
	assert.Contains(t, env, "boot_file=undionly.kpxe", "a PXE client is sent to TFTP")
	assert.Contains(t, env, "siaddr=10.99.0.1")

	tftpDst := filepath.Join(dir, "undionly.kpxe")
	out, err := cli.Command(context.Background(), "atftp", "--get", "-r", "undionly.kpxe", "-l", tftpDst, "10.99.0.1").CombinedOutput()
	require.NoError(t, err, "atftp: %s", out)
	want, _ := os.ReadFile(filepath.Join(l.bootDir, "undionly.kpxe"))
	got, _ := os.ReadFile(tftpDst)
	assert.Equal(t, want, got)

	// iPXE says so in its user class (option 77): it gets the script URL.
	env = udhcpc("-x", "0x4d:69505845")
	assert.Contains(t, env, "boot_file=http://10.99.0.1:9873/ipxe/", "iPXE is sent to its HTTP script")

	out, err = cli.Command(context.Background(), "curl", "-sSf", "http://10.99.0.1:9873/ipxe/"+strings.ReplaceAll(nodeMAC, ":", "-")).CombinedOutput()
	require.NoError(t, err, "%s", out)
	assert.Contains(t, string(out), "initrd --name runtime http://10.99.0.1:9873/overlay/runtime/"+nodeMAC)

	out, err = cli.Command(context.Background(), "curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--local-port", "700-1023",
		"http://10.99.0.1:9873/overlay/runtime/"+nodeMAC).CombinedOutput()
	require.NoError(t, err, "%s", out)
	assert.Equal(t, "200", string(out), "the node, from its address and a privileged port, gets its runtime overlay")

	// An unknown machine takes the discoverable node n10, which is saved.
	cli.IP("link", "set", "eth0", "down")
	cli.IP("link", "set", "eth0", "address", "52:54:00:99:00:02")
	cli.IP("addr", "flush", "dev", "eth0")
	cli.IP("link", "set", "eth0", "up")
	env = udhcpc()
	assert.Contains(t, env, "ip=10.99.0.20", "the discoverable node's address")
	other, err := nodedb.Open(context.Background(), l.store.Path())
	require.NoError(t, err)
	n10, err := other.NodeByName(context.Background(), "n10")
	require.NoError(t, err)
	assert.Equal(t, "52:54:00:99:00:02", n10.NetDevs["default"].Hwaddr, "the assignment is saved in nodes.conf")

	st := srv.Handler().Status()
	require.NotEmpty(t, st.Nodes)
	var n9 provision.NodeStatus
	for _, n := range st.Nodes {
		if n.Node == "n9" {
			n9 = n
		}
	}
	assert.Equal(t, provision.StageRuntime, n9.Stage)
	assert.True(t, strings.HasPrefix(n9.Client, nodeIP+":"), n9.Client)
}
