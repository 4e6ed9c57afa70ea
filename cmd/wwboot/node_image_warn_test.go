package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// An --image that is not imported is accepted (as wwctl does) with a
// warning naming the import command; an imported one, or an edit that does
// not touch the image, says nothing.
func TestNodeImageNotImportedWarns(t *testing.T) {
	root := t.TempDir()
	mustRun(t, root, "init")
	out := mustRun(t, root, "node", "add", "n1", "--image", "rocky9")
	assert.Contains(t, out, `warning: image "rocky9" is not imported: nodes that boot it get no image until 'wwboot image import SRC rocky9'`)
	assert.Contains(t, mustRun(t, root, "node", "list"), "rocky9", "the edit stands")
	assert.Contains(t, mustRun(t, root, "profile", "set", "default", "--image", "rocky9"), "warning")

	tree := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(tree, "boot"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(tree, "boot", "vmlinuz-6.1.0-1-amd64"), make([]byte, 4096), 0o644))
	mustRun(t, root, "image", "import", tree, "rocky9")
	assert.NotContains(t, mustRun(t, root, "node", "set", "n1", "--image", "rocky9"), "warning")
	assert.NotContains(t, mustRun(t, root, "node", "set", "n1", "--comment", "x"), "warning")
}

// Deleting an image that nodes boot works, and names those nodes.
func TestImageDeleteNamesTheNodesThatBootIt(t *testing.T) {
	root := t.TempDir()
	mustRun(t, root, "init")
	tree := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(tree, "boot"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(tree, "boot", "vmlinuz-6.1.0-1-amd64"), make([]byte, 4096), 0o644))
	mustRun(t, root, "image", "import", tree, "a")
	mustRun(t, root, "image", "import", tree, "b")
	mustRun(t, root, "profile", "set", "default", "--image", "a")
	mustRun(t, root, "node", "add", "n1", "n2", "n3")
	mustRun(t, root, "node", "set", "n3", "--image", "b")

	out := mustRun(t, root, "image", "delete", "a")
	assert.Contains(t, out, "deleted a")
	assert.Contains(t, out, "warning: 2 node(s) (n[1-2]) boot image a: they get no image until")
	out = mustRun(t, root, "image", "delete", "b")
	assert.Contains(t, out, "1 node(s) (n3) boot image b")
	mustRun(t, root, "image", "import", tree, "c")
	assert.NotContains(t, mustRun(t, root, "image", "delete", "c"), "warning")
}
