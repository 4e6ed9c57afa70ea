package main

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestImageImportRefusesAnExistingName: importing under a name the store
// has is refused before anything changes (archive or directory); with
// --overwrite (or wwctl's -f) it replaces the image and says what it was.
func TestImageImportRefusesAnExistingName(t *testing.T) {
	root := t.TempDir()
	mustRun(t, root, "init")
	mkTree := func(kernel string) string {
		tree := filepath.Join(t.TempDir(), "tree")
		require.NoError(t, os.MkdirAll(filepath.Join(tree, "boot"), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(tree, "boot", "vmlinuz-"+kernel), []byte("kernel "+kernel), 0o644))
		return tree
	}
	first := mkTree("6.1.0-9-amd64")
	archive := filepath.Join(t.TempDir(), "second.tar")
	tarOut, err := exec.Command("tar", "-C", mkTree("6.1.0-25-amd64"), "-cf", archive, ".").CombinedOutput()
	require.NoError(t, err, "%s", tarOut)

	mustRun(t, root, "image", "import", first, "rocky9")
	show := func() map[string]any {
		var m map[string]any
		require.NoError(t, json.Unmarshal([]byte(mustRun(t, root, "image", "show", "rocky9", "-o", "json")), &m))
		return m
	}
	before := show()

	for _, src := range []string{archive, first} {
		_, err := run(t, root, "image", "import", src, "rocky9")
		require.Error(t, err, src)
		out := err.Error()
		assert.Contains(t, out, "image rocky9: image already exists (imported from dir:"+first)
		assert.Contains(t, out, "pass --overwrite to replace it")
		assert.Equal(t, before, show(), "nothing changed")
		assert.NoDirExists(t, filepath.Join(root, "images", "roots", "rocky9"), "the archive was not unpacked")
	}

	out := mustRun(t, root, "image", "import", archive, "rocky9", "--overwrite")
	assert.Contains(t, out, "replaced image rocky9: it was dir:"+first)
	assert.Contains(t, out, "kernel 6.1.0-9-amd64")
	assert.Equal(t, "6.1.0-25-amd64", show()["kernel_version"])
	out = mustRun(t, root, "image", "import", first, "rocky9", "-f")
	assert.Contains(t, out, "replaced image rocky9: it was tar:"+archive)
	assert.Equal(t, "6.1.0-9-amd64", show()["kernel_version"])
}

// TestKeysAndWarewulfImportDoNotReplaceSilently: the cluster-wide host key
// set and images are replaced by `keys import` and `import warewulf` only
// with --overwrite; the same set or the same tree again is no change.
func TestKeysAndWarewulfImportDoNotReplaceSilently(t *testing.T) {
	src1, key1 := warewulfTree(t, wwNodesConf)
	// Another site's: other nodes, so that only the image and the keys clash.
	src2, key2 := warewulfTree(t, "nodes:\n  n9:\n    image name: rockylinux-9\n")
	keys1, keys2 := filepath.Join(src1, "etc/warewulf/keys"), filepath.Join(src2, "etc/warewulf/keys")
	shared := func(root string) []byte {
		return mustRead(t, filepath.Join(root, "keys", "shared", "ssh_host_ed25519_key"))
	}

	root := t.TempDir()
	mustRun(t, root, "init")
	mustRun(t, root, "keys", "import", keys1)
	mustRun(t, root, "keys", "import", keys1)
	_, err := run(t, root, "keys", "import", keys2)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "ssh_host_ed25519_key differ from "+keys2)
	assert.Contains(t, err.Error(), "pass --overwrite")
	assert.Equal(t, key1, shared(root))
	out := mustRun(t, root, "keys", "import", keys2, "--overwrite")
	assert.Contains(t, out, "replacing the cluster-wide key set")
	assert.Equal(t, key2, shared(root))

	root = filepath.Join(t.TempDir(), "wwboot")
	mustRun(t, root, "import", "warewulf", src1)
	out = mustRun(t, root, "import", "warewulf", src1, "--overwrite")
	assert.NotContains(t, out, "replaced the one the store had", "the same tree is rebuilt, not replaced")
	out, err = run(t, root, "import", "warewulf", src2)
	require.Error(t, err)
	assert.Contains(t, out, "image rockylinux-9: the store has an image of that name (from dir:"+src1)
	assert.Contains(t, out, "another cluster-wide key set")
	assert.Equal(t, key1, shared(root))
	var m map[string]any
	require.NoError(t, json.Unmarshal([]byte(mustRun(t, root, "image", "show", "rockylinux-9", "-o", "json")), &m))
	assert.Contains(t, m["source"], src1)

	out = mustRun(t, root, "import", "warewulf", src2, "--overwrite")
	assert.Contains(t, out, "image rockylinux-9: replaced the one the store had (from dir:"+src1)
	assert.Contains(t, out, "host keys: replaced the cluster-wide key set")
	assert.Equal(t, key2, shared(root))
}
