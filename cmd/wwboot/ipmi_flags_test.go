package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wwboot/wwboot/nodedb"
)

// The power commands read the ipmi: block; node|profile add|set write it with
// wwctl's --ipmi* flags, so a BMC needs no hand edit of nodes.conf.
func TestIPMIFlagsSetTheIPMIBlock(t *testing.T) {
	root := t.TempDir()
	mustRun(t, root, "init")
	mustRun(t, root, "profile", "set", "default", "--ipmiuser", "admin", "--ipmiinterface", "lanplus")
	mustRun(t, root, "node", "add", "n1", "--ipmiaddr", "10.9.9.1", "--ipmipass", "s3cret", "--ipmiport", "6230")
	mustRun(t, root, "node", "add", "n2")
	mustRun(t, root, "node", "set", "n1", "--ipmiescapechar", "&", "--ipmitemplate", "ipmitool.tmpl",
		"--ipminetmask", "255.255.0.0", "--ipmigateway", "10.9.0.1", "--ipmiwrite", "false")

	data, err := os.ReadFile(filepath.Join(root, "nodes.conf"))
	require.NoError(t, err)
	c, err := nodedb.Parse("nodes.conf", data)
	require.NoError(t, err)
	assert.Equal(t, &nodedb.IPMI{UserName: "admin", Interface: "lanplus"}, c.NodeProfiles["default"].Ipmi)
	assert.Equal(t, &nodedb.IPMI{Ipaddr: "10.9.9.1", Password: "s3cret", Port: "6230", EscapeChar: "&",
		Template: "ipmitool.tmpl", Netmask: "255.255.0.0", Gateway: "10.9.0.1", Write: "false"}, c.Nodes["n1"].Ipmi)
	assert.Nil(t, c.Nodes["n2"].Ipmi, "no --ipmi* flag, no ipmi: block")

	db, err := nodedb.New(c)
	require.NoError(t, err)
	n1, err := db.Node("n1")
	require.NoError(t, err)
	require.NotNil(t, n1.Ipmi)
	assert.Equal(t, "admin", n1.Ipmi.UserName, "the profile's user is inherited")
	assert.Equal(t, "10.9.9.1", n1.Ipmi.Ipaddr)

	// A node without a BMC address is told which flags give it one; no BMC
	// is contacted.
	out, err := run(t, root, "power", "status", "n2")
	require.Error(t, err)
	assert.Contains(t, out, "no BMC configured")
	assert.Contains(t, out, "wwboot node set n2 --ipmiaddr ADDR")
}
