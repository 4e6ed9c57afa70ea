package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// runImage runs `wwboot --root root args...` and returns stdout.
func runImage(t *testing.T, root string, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	cmd := newRootCmd(&out, &errOut, func(string) string { return "" })
	cmd.SetArgs(append([]string{"--root", root}, args...))
	err := cmd.ExecuteContext(context.Background())
	return out.String(), err
}

func TestImageCommands(t *testing.T) {
	root := t.TempDir()
	tree := filepath.Join(t.TempDir(), "tree")
	require.NoError(t, os.MkdirAll(filepath.Join(tree, "boot"), 0o755))
	require.NoError(t, os.MkdirAll(filepath.Join(tree, "etc"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(tree, "boot/vmlinuz-6.6.1"), []byte("kernel"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(tree, "etc/hostname"), []byte("n\n"), 0o644))

	out, err := runImage(t, root, "image", "import", tree, "base", "--compress", "zstd", "--level", "5")
	require.NoError(t, err)
	assert.Contains(t, out, "base: ")
	assert.Contains(t, out, "kernel 6.6.1")

	out, err = runImage(t, root, "image", "show", "base", "-o", "json")
	require.NoError(t, err)
	var m map[string]any
	require.NoError(t, json.Unmarshal([]byte(out), &m))
	for _, k := range []string{"name", "sha256", "size", "path", "compression", "kernel_version", "kernel_path", "uncompressed_size", "source", "files", "built_at"} {
		assert.Contains(t, m, k)
	}
	assert.Equal(t, "zstd", m["compression"])
	assert.Equal(t, "6.6.1", m["kernel_version"])
	assert.FileExists(t, m["path"].(string))

	out, err = runImage(t, root, "image", "list")
	require.NoError(t, err)
	assert.Contains(t, out, "base")

	out, err = runImage(t, root, "image", "kernels", "base")
	require.NoError(t, err)
	assert.Contains(t, out, "/boot/vmlinuz-6.6.1")
	assert.Contains(t, out, "default")

	out, err = runImage(t, root, "image", "build", "base", "--force")
	require.NoError(t, err)
	assert.Contains(t, out, "zstd", "options are remembered")

	_, err = runImage(t, root, "image", "build", "nope")
	assert.ErrorContains(t, err, "import it first")

	out, err = runImage(t, root, "image", "delete", "base", "--grace", "0s")
	require.NoError(t, err)
	assert.Contains(t, out, "deleted base")
	assert.True(t, strings.Count(out, "removed ") >= 2, out)
	_, err = runImage(t, root, "image", "show", "base")
	assert.ErrorContains(t, err, "not found")
}

// TestImageImportSaysWhatPerHostFilesItLeftOut: one summary line at import,
// and --keep-host-files keeps them (remembered by build until =false).
func TestImageImportSaysWhatPerHostFilesItLeftOut(t *testing.T) {
	root := t.TempDir()
	tree := filepath.Join(t.TempDir(), "tree")
	require.NoError(t, os.MkdirAll(filepath.Join(tree, "etc/ssh"), 0o755))
	for p, data := range map[string]string{
		"etc/hostname": "buildhost\n", "etc/machine-id": "0123456789abcdef0123456789abcdef\n",
		"etc/ssh/ssh_host_ed25519_key": "k", "etc/os-release": "ID=debian\n",
	} {
		require.NoError(t, os.WriteFile(filepath.Join(tree, p), []byte(data), 0o644))
	}
	out, err := runImage(t, root, "image", "import", tree, "deb")
	require.NoError(t, err)
	lines := strings.Split(strings.TrimSpace(out), "\n")
	require.Len(t, lines, 2, out)
	assert.Equal(t, "deb: per-host files: left out 2 (/etc/hostname /etc/ssh/ssh_host_ed25519_key), emptied 1 (/etc/machine-id); "+
		"keep them with --keep-host-files, or one with !PATTERN in the image's /etc/warewulf/excludes", lines[1])

	out, err = runImage(t, root, "image", "build", "deb", "--keep-host-files")
	require.NoError(t, err)
	assert.NotContains(t, out, "per-host files")
	out, err = runImage(t, root, "image", "show", "deb", "-o", "json")
	require.NoError(t, err)
	assert.Contains(t, out, `"keep_host_files": true`)

	out, err = runImage(t, root, "image", "build", "deb", "--force")
	require.NoError(t, err)
	assert.NotContains(t, out, "per-host files", "kept as last built")
	out, err = runImage(t, root, "image", "build", "deb", "--keep-host-files=false")
	require.NoError(t, err)
	assert.Contains(t, out, "per-host files: left out 2")
}
