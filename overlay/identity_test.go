package overlay

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wwboot/wwboot/nodedb"
)

// renderFiles renders node's system archive and returns path → entry.
func renderFiles(t *testing.T, r *Renderer, db *nodedb.DB, node string) map[string]entry {
	t.Helper()
	n, err := db.Node(node)
	require.NoError(t, err)
	a, err := r.Render(context.Background(), db, n, System)
	require.NoError(t, err)
	m, _ := unpack(t, a)
	return m
}

// TestMachineID: one machine-id per node, in systemd's format, the same
// from any renderer over the same key directory (reboots, rebuilds, server
// restarts), per node even when host keys are shared, and made by Build in
// its batch.
func TestMachineID(t *testing.T) {
	keyDir := t.TempDir()
	db := testDB(t, testConfig(3))
	mk := func(shared bool) *Renderer {
		return newTestRenderer(t, func(o *Options) {
			o.KeyDir, o.SharedHostKeys, o.DefaultSystem = keyDir, shared, []string{"machine-id"}
		})
	}
	m1 := renderFiles(t, mk(false), db, "n00001")
	id1 := m1["etc/machine-id"].data
	assert.Regexp(t, `^[0-9a-f]{32}\n$`, id1)
	assert.NotEqual(t, strings.Repeat("0", 32)+"\n", id1)
	assert.Equal(t, uint64(0o444), m1["etc/machine-id"].mode&0o7777)
	assert.Equal(t, uint64(sIFLNK), m1["var/lib/dbus/machine-id"].mode&0o170000, "D-Bus's copy is a link")
	assert.Equal(t, "/etc/machine-id", m1["var/lib/dbus/machine-id"].data)

	assert.Equal(t, id1, renderFiles(t, mk(false), db, "n00001")["etc/machine-id"].data, "stable across renderers over the same state")
	id2 := renderFiles(t, mk(true), db, "n00002")["etc/machine-id"].data
	assert.NotEqual(t, id1, id2, "unique per node, shared host keys or not")
	assert.Equal(t, id1, renderFiles(t, mk(true), db, "n00001")["etc/machine-id"].data)
	onDisk, err := os.ReadFile(filepath.Join(keyDir, "nodes", "n00001", "machine-id"))
	require.NoError(t, err)
	assert.Equal(t, id1, string(onDisk), "kept with the node's state")

	// Build makes the missing one (n00003) in its batch.
	r := mk(false)
	_, err = r.Build(context.Background(), db)
	require.NoError(t, err)
	onDisk, err = os.ReadFile(filepath.Join(keyDir, "nodes", "n00003", "machine-id"))
	require.NoError(t, err)
	assert.True(t, validMachineID(onDisk))
	assert.Equal(t, string(onDisk), renderFiles(t, r, db, "n00003")["etc/machine-id"].data)

	// systemd reads it as the machine's id.
	if setup, err := exec.LookPath("systemd-machine-id-setup"); err == nil {
		root := t.TempDir()
		require.NoError(t, os.MkdirAll(filepath.Join(root, "etc"), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(root, "etc", "machine-id"), []byte(id1), 0o444))
		out, err := exec.Command(setup, "--root="+root, "--print").CombinedOutput()
		require.NoError(t, err, "%s", out)
		assert.Equal(t, id1, string(out))
	}

	// A damaged file is replaced, with the directory swap (never in place).
	require.NoError(t, os.WriteFile(filepath.Join(keyDir, "nodes", "n00002", "machine-id"), []byte("garbage\n"), 0o644))
	id2b := renderFiles(t, mk(false), db, "n00002")["etc/machine-id"].data
	assert.True(t, validMachineID([]byte(id2b)))
}

// TestResolvFromInventory: name servers and the search list come from the
// primary device's tags, else the node's, else wwboot.conf; never from the
// build host, and a tag cannot inject a line.
func TestResolvFromInventory(t *testing.T) {
	cfg := &nodedb.Config{Nodes: map[string]*nodedb.Record{
		"dev": {NetDevs: map[string]*nodedb.NetDev{"default": {Ipaddr: "10.0.0.2", Tags: map[string]string{
			"DNS10": "10.0.0.60", "DNS2": "10.0.0.52", "DNS": "10.0.0.50", "DNS1": "10.0.0.51",
			"DNS3": "10.0.0.53\nnameserver 6.6.6.6", "DNSX": "10.0.0.99", "domain": "a.test",
		}}}, Tags: map[string]string{"DNS1": "192.0.2.1", "DNSSEARCH": "b.test;c.test, d.test."}},
		"node": {NetDevs: map[string]*nodedb.NetDev{"default": {Ipaddr: "10.0.0.3"}},
			Tags: map[string]string{"DNS1": "192.0.2.1", "DNS2": "2001:db8::1 192.0.2.2", "domain": "node.test", "DNSSEARCH": "x.test evil\nsearch"}},
		"conf": {NetDevs: map[string]*nodedb.NetDev{"default": {Ipaddr: "10.0.0.4"}}},
	}}
	db := testDB(t, cfg)
	r := newTestRenderer(t, func(o *Options) { o.DefaultSystem = []string{"resolv"} })
	get := func(node string) string { return renderFiles(t, r, db, node)["etc/resolv.conf"].data }
	assert.Equal(t, "# Written by wwboot for dev.\nsearch a.test b.test c.test d.test\n"+
		"nameserver 10.0.0.50\nnameserver 10.0.0.51\nnameserver 10.0.0.52\nnameserver 10.0.0.60\n", get("dev"),
		"the device's DNS tags in numeric order, the bad one ignored whole; domain first, then DNSSEARCH (the node's)")
	assert.Equal(t, "# Written by wwboot for node.\nsearch node.test\nnameserver 192.0.2.1\nnameserver 2001:db8::1\nnameserver 192.0.2.2\n", get("node"), "the node's tags; a bad DNSSEARCH ignored whole")
	assert.Equal(t, "# Written by wwboot for conf.\nsearch cluster.test\nnameserver 10.0.0.1\n", get("conf"), "wwboot.conf (testServer's Resolv)")

	none := newTestRenderer(t, func(o *Options) { o.DefaultSystem = []string{"resolv"}; o.Server.Resolv = ResolvConf{} })
	assert.NotContains(t, renderFiles(t, none, db, "conf"), "etc/resolv.conf", "nothing set anywhere: no file (never the build host's)")
}
