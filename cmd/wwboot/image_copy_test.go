package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// TestImageCopyRename copies an image (a tree with a hard link, a symlink,
// a setuid file and an extended attribute), then renames the copy: the
// nodes that boot it follow, and the tree moves with the name.
func TestImageCopyRename(t *testing.T) {
	root := t.TempDir()
	mustRun(t, root, "init")
	tree := filepath.Join(t.TempDir(), "tree")
	for _, d := range []string{"boot", "usr/bin", "etc"} {
		require.NoError(t, os.MkdirAll(filepath.Join(tree, d), 0o755))
	}
	require.NoError(t, os.WriteFile(filepath.Join(tree, "boot/vmlinuz-6.6.1"), []byte("kernel"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(tree, "usr/bin/ping"), []byte("ping"), 0o755))
	require.NoError(t, os.Chmod(filepath.Join(tree, "usr/bin/ping"), 0o755|os.ModeSetuid))
	require.NoError(t, os.Link(filepath.Join(tree, "usr/bin/ping"), filepath.Join(tree, "usr/bin/ping6")))
	require.NoError(t, os.Symlink("../usr/bin/ping", filepath.Join(tree, "etc/ping-link")))
	xattr := unix.Lsetxattr(filepath.Join(tree, "etc"), "user.wwboot", []byte("kept"), 0) == nil

	mustRun(t, root, "image", "import", tree, "base")
	mustRun(t, root, "node", "add", "n1", "--image", "base2", "--hwaddr", "52:54:00:00:00:01")

	out := mustRun(t, root, "image", "copy", "base", "base2")
	assert.Contains(t, out, "copied base")
	copyTree := filepath.Join(root, "images", "roots", "base2")
	fi, err := os.Stat(filepath.Join(copyTree, "usr/bin/ping"))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o755)|os.ModeSetuid, fi.Mode()&(os.ModePerm|os.ModeSetuid))
	fi6, err := os.Stat(filepath.Join(copyTree, "usr/bin/ping6"))
	require.NoError(t, err)
	assert.Equal(t, fi.Sys().(*syscall.Stat_t).Ino, fi6.Sys().(*syscall.Stat_t).Ino, "hard links stay links")
	link, err := os.Readlink(filepath.Join(copyTree, "etc/ping-link"))
	require.NoError(t, err)
	assert.Equal(t, "../usr/bin/ping", link)
	if xattr {
		v := make([]byte, 16)
		n, err := unix.Lgetxattr(filepath.Join(copyTree, "etc"), "user.wwboot", v)
		require.NoError(t, err)
		assert.Equal(t, "kept", string(v[:n]))
	}
	var m map[string]any
	require.NoError(t, json.Unmarshal([]byte(mustRun(t, root, "image", "show", "base2", "-o", "json")), &m))
	assert.Equal(t, "6.6.1", m["kernel_version"])
	assert.Equal(t, copyTree, m["root"])

	_, err = run(t, root, "image", "copy", "base", "base2")
	assert.ErrorContains(t, err, "exists")

	out = mustRun(t, root, "image", "rename", "base2", "compute")
	assert.Contains(t, out, "1 nodes and profiles now name compute")
	assert.NoDirExists(t, copyTree)
	assert.DirExists(t, filepath.Join(root, "images", "roots", "compute"))
	list := mustRun(t, root, "image", "list")
	assert.Contains(t, list, "compute")
	assert.NotContains(t, list, "base2")
	assert.Contains(t, mustRun(t, root, "node", "show", "n1", "-o", "json"), `"image name": "compute"`)

	// An image imported in place keeps its tree where it is.
	mustRun(t, root, "image", "rename", "base", "base-renamed")
	assert.DirExists(t, tree)
	require.NoError(t, json.Unmarshal([]byte(mustRun(t, root, "image", "show", "base-renamed", "-o", "json")), &m))
	assert.Equal(t, tree, m["root"])
}
