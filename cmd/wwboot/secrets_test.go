package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wwboot/wwboot/nodedb"
)

// TestDisplaysMaskSecrets: every command that displays nodes or profiles
// (list and show, table, yaml and json) masks the BMC password and the
// asset key unless --secrets asks for them; nodes.conf keeps them, and a
// masked record imported back keeps the stored secret or is refused.
func TestDisplaysMaskSecrets(t *testing.T) {
	root := t.TempDir()
	mustRun(t, root, "init")
	mustRun(t, root, "profile", "set", "default", "--ipmiuser", "admin", "--ipmipass", "pr0file-pass")
	mustRun(t, root, "node", "add", "n1", "--ipmiaddr", "10.9.9.1", "--ipmipass", "n0de-pass", "--asset", "asset-key-1")
	mustRun(t, root, "node", "add", "n2", "--ipmiaddr", "10.9.9.2")
	secrets := []string{"pr0file-pass", "n0de-pass", "asset-key-1"}

	for _, args := range [][]string{
		{"node", "show", "n1"}, {"node", "show", "n1", "n2", "-o", "json"},
		{"node", "list"}, {"node", "list", "-o", "yaml"}, {"node", "list", "-o", "json"},
		{"profile", "show", "default"}, {"profile", "show", "default", "-o", "json"},
		{"profile", "list", "-o", "yaml"}, {"profile", "list", "-o", "json"},
	} {
		out := mustRun(t, root, args...)
		for _, s := range secrets {
			assert.NotContains(t, out, s, "%v", args)
		}
		if len(args) > 2 && args[len(args)-2] == "-o" || args[1] == "show" {
			assert.Contains(t, out, nodedb.Redacted, "%v: the field is there, masked", args)
		}
	}
	out := mustRun(t, root, "node", "show", "n1", "--secrets")
	assert.Contains(t, out, "n0de-pass")
	assert.Contains(t, out, "asset-key-1")
	out = mustRun(t, root, "node", "show", "n2", "--secrets", "-o", "json")
	assert.Contains(t, out, `"password": "pr0file-pass"`, "the effective node: the profile's password")
	out = mustRun(t, root, "node", "list", "-o", "yaml", "--secrets")
	assert.Contains(t, out, "n0de-pass")
	out = mustRun(t, root, "profile", "list", "-o", "json", "--secrets")
	assert.Contains(t, out, "pr0file-pass")

	// Displaying changed nothing stored.
	data, err := os.ReadFile(filepath.Join(root, "nodes.conf"))
	require.NoError(t, err)
	for _, s := range secrets {
		assert.Contains(t, string(data), s)
	}

	// A masked nodes.conf imported over the inventory keeps its secrets...
	masked := filepath.Join(t.TempDir(), "nodes.conf")
	require.NoError(t, os.WriteFile(masked, []byte(`nodes:
  n1:
    comment: restored
    asset key: "***"
    ipmi:
      ipaddr: 10.9.9.1
      password: "***"
`), 0o644))
	mustRun(t, root, "node", "import", masked, "--overwrite")
	out = mustRun(t, root, "node", "show", "n1", "--secrets")
	assert.Contains(t, out, "n0de-pass")
	assert.Contains(t, out, "asset-key-1")
	assert.Contains(t, out, "restored")
	// ...and a mask with nothing to keep is refused, naming node and field.
	require.NoError(t, os.WriteFile(masked, []byte("nodes:\n  n9:\n    ipmi:\n      password: \"***\"\n"), 0o644))
	out, err = run(t, root, "node", "import", masked)
	require.Error(t, err)
	assert.Contains(t, out+err.Error(), `node "n9": ipmi password reads "***"`)
	_, err = run(t, root, "node", "show", "n9")
	assert.Error(t, err, "nothing was imported")
}
