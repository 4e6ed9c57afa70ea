package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestOneNamingRuleAcrossCommands: a name Warewulf accepts for an image
// (image.ValidName, ^[\w\-\.\:]+$) is accepted by image import as by node
// add --image, and a name outside the rule is refused by every command
// that creates one, naming the kind and the rule.
func TestOneNamingRuleAcrossCommands(t *testing.T) {
	root := t.TempDir()
	mustRun(t, root, "init")
	tree := filepath.Join(t.TempDir(), "tree")
	require.NoError(t, os.MkdirAll(filepath.Join(tree, "etc"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(tree, "etc/os-release"), []byte("ID=rocky\n"), 0o644))

	out := mustRun(t, root, "image", "import", tree, "rocky8:8.x")
	assert.Contains(t, out, "rocky8:8.x: ")
	mustRun(t, root, "node", "add", "n1:a", "--image", "rocky8:8.x")
	mustRun(t, root, "profile", "add", "gpu_a100.v2")
	assert.Contains(t, mustRun(t, root, "image", "list"), "rocky8:8.x")

	before, err := os.ReadFile(filepath.Join(root, "nodes.conf"))
	require.NoError(t, err)
	for _, c := range []struct {
		args []string
		kind string
	}{
		{[]string{"image", "import", tree, "rocky+8"}, "image"},
		{[]string{"image", "import", tree, ".hidden"}, "image"},
		{[]string{"node", "add", "n@2"}, "node"},
		{[]string{"profile", "add", "p#1"}, "profile"},
	} {
		_, err := run(t, root, c.args...)
		require.Error(t, err, c.args)
		assert.Contains(t, err.Error(), c.kind+" name", c.args)
		assert.Contains(t, err.Error(), "'_', '-', '.' and ':'", c.args)
	}
	after, err := os.ReadFile(filepath.Join(root, "nodes.conf"))
	require.NoError(t, err)
	assert.Equal(t, string(before), string(after), "refused names change nothing")

	// A nodes.conf written elsewhere with such a name still loads (Warewulf
	// loads it); wwboot node check lists it.
	conf := string(after) + "  weird@node: {}\n"
	require.NoError(t, os.WriteFile(filepath.Join(root, "nodes.conf"), []byte(conf), 0o644))
	assert.Contains(t, mustRun(t, root, "node", "list"), "weird@node")
	out, err = run(t, root, "node", "check")
	require.Error(t, err)
	assert.Contains(t, out+err.Error(), `node name "weird@node"`)
}
