package provision_test

import (
	"bytes"
	"context"
	"net/http"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/u-root/u-root/pkg/cpio"

	"github.com/wwboot/wwboot/nodedb"
	"github.com/wwboot/wwboot/provision"
	"github.com/wwboot/wwboot/provision/netlab"
)

// TestAgentKeepsTheRuntimeOverlayCurrent runs the node agent against a real
// handler on loopback: it fetches from a privileged port, applies the
// overlay, fetches nothing new while nothing changed, and picks up a change
// to the inventory.
func TestAgentKeepsTheRuntimeOverlayCurrent(t *testing.T) {
	netlab.Require(t) // root, for the privileged source port
	ctx := context.Background()
	l := newLab(t)
	_, ts := l.serve(t)
	hw, err := nodedb.ParseHW(mac1)
	require.NoError(t, err)
	root := t.TempDir()
	agent := &provision.Agent{Server: ts.URL, HWAddr: hw, Root: root}

	changed, err := agent.Sync(ctx)
	require.NoError(t, err)
	assert.True(t, changed)
	hosts, err := os.ReadFile(filepath.Join(root, "etc", "hosts"))
	require.NoError(t, err)
	assert.Contains(t, string(hosts), "n1")
	assert.Contains(t, string(hosts), "n2")

	changed, err = agent.Sync(ctx)
	require.NoError(t, err)
	assert.False(t, changed, "nothing changed: the server answers 304 and nothing is written")

	require.NoError(t, l.store.Update(ctx, func(c *nodedb.Config) error {
		c.Nodes["n3"] = &nodedb.Record{Profiles: []string{"default"}, NetDevs: map[string]*nodedb.NetDev{
			"default": {Hwaddr: "aa:bb:cc:dd:ee:03", Ipaddr: "127.0.0.3"}}}
		return nil
	}))
	changed, err = agent.Sync(ctx)
	require.NoError(t, err)
	assert.True(t, changed)
	hosts, err = os.ReadFile(filepath.Join(root, "etc", "hosts"))
	require.NoError(t, err)
	assert.Contains(t, string(hosts), "127.0.0.3")

	// From an ordinary port the server refuses, as secure mode requires.
	plain := &provision.Agent{Server: ts.URL, HWAddr: hw, Root: t.TempDir(), Client: http.DefaultClient}
	_, err = plain.Sync(ctx)
	assert.ErrorContains(t, err, "403")
}

// TestApplyStaysInsideRoot feeds Apply archives that try to leave their
// root: nothing is written outside it.
func TestApplyStaysInsideRoot(t *testing.T) {
	base := t.TempDir()
	root := filepath.Join(base, "root")
	require.NoError(t, os.MkdirAll(root, 0o755))
	require.NoError(t, os.Symlink("..", filepath.Join(root, "up")))
	for _, name := range []string{"../evil", "up/evil", "/../evil"} {
		var buf bytes.Buffer
		w := cpio.Newc.Writer(&buf)
		require.NoError(t, w.WriteRecord(cpio.StaticFile(name, "pwned", 0o644)))
		require.NoError(t, cpio.WriteTrailer(w))
		err := provision.Apply(root, bytes.NewReader(buf.Bytes()))
		assert.Error(t, err, name)
		_, statErr := os.Stat(filepath.Join(base, "evil"))
		assert.True(t, os.IsNotExist(statErr), "%s must not write outside the root", name)
	}

	var buf bytes.Buffer
	w := cpio.Newc.Writer(&buf)
	require.NoError(t, w.WriteRecord(cpio.Directory("etc", 0o755)))
	require.NoError(t, w.WriteRecord(cpio.StaticFile("etc/motd", "hello", 0o640)))
	require.NoError(t, w.WriteRecord(cpio.Symlink("etc/issue", "motd")))
	require.NoError(t, cpio.WriteTrailer(w))
	require.NoError(t, provision.Apply(root, bytes.NewReader(buf.Bytes())))
	b, err := os.ReadFile(filepath.Join(root, "etc", "issue"))
	require.NoError(t, err)
	assert.Equal(t, "hello", string(b))
	fi, err := os.Stat(filepath.Join(root, "etc", "motd"))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o640), fi.Mode().Perm())
}
