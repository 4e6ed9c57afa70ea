package image

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestExcludesFileStaysInTheTree: an image whose etc (or etc/warewulf) is a
// link out of the tree must not make the build read the server's
// etc/warewulf/excludes (issue 11 item 3, the same kind: a read of an
// image tree that left it). os.DirFS followed such links.
func TestExcludesFileStaysInTheTree(t *testing.T) {
	host := t.TempDir() // the server's files
	require.NoError(t, os.MkdirAll(filepath.Join(host, "etc", "warewulf"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(host, "etc", "warewulf", "excludes"), []byte("/keep.txt\n"), 0o644))

	for name, mk := range map[string]func(src string){
		"etc links out (absolute)": func(src string) {
			require.NoError(t, os.Symlink(filepath.Join(host, "etc"), filepath.Join(src, "etc")))
		},
		"etc/warewulf links out (relative)": func(src string) {
			require.NoError(t, os.Mkdir(filepath.Join(src, "etc"), 0o755))
			rel, err := filepath.Rel(filepath.Join(src, "etc"), filepath.Join(host, "etc", "warewulf"))
			require.NoError(t, err)
			require.NoError(t, os.Symlink(rel, filepath.Join(src, "etc", "warewulf")))
		},
	} {
		t.Run(name, func(t *testing.T) {
			src := filepath.Join(t.TempDir(), "root")
			require.NoError(t, os.MkdirAll(src, 0o755))
			require.NoError(t, os.WriteFile(filepath.Join(src, "keep.txt"), []byte("kept"), 0o644))
			mk(src)
			var buf bytes.Buffer
			res, err := BuildDir(context.Background(), &buf, src, Options{Compression: None, NoDefaultExcludes: true})
			require.NoError(t, err)
			assert.True(t, slices.Contains(listArchive(t, buf.Bytes()), "keep.txt"), "the server's excludes file was applied")
			assert.NotContains(t, res.Excludes, "/keep.txt")
		})
	}

	// The image's own excludes file still counts, also through a link
	// that stays in the tree (absolute targets name the tree's files).
	for name, mk := range map[string]func(src string){
		"plain": func(src string) {
			require.NoError(t, os.MkdirAll(filepath.Join(src, "etc", "warewulf"), 0o755))
			require.NoError(t, os.WriteFile(filepath.Join(src, "etc", "warewulf", "excludes"), []byte("/keep.txt\n"), 0o644))
		},
		"etc links inside": func(src string) {
			require.NoError(t, os.MkdirAll(filepath.Join(src, "usr", "etc", "warewulf"), 0o755))
			require.NoError(t, os.WriteFile(filepath.Join(src, "usr", "etc", "warewulf", "excludes"), []byte("/keep.txt\n"), 0o644))
			require.NoError(t, os.Symlink("/usr/etc", filepath.Join(src, "etc")))
		},
	} {
		t.Run(name, func(t *testing.T) {
			src := filepath.Join(t.TempDir(), "root")
			require.NoError(t, os.MkdirAll(src, 0o755))
			require.NoError(t, os.WriteFile(filepath.Join(src, "keep.txt"), []byte("kept"), 0o644))
			mk(src)
			var buf bytes.Buffer
			_, err := BuildDir(context.Background(), &buf, src, Options{Compression: None, NoDefaultExcludes: true})
			require.NoError(t, err)
			assert.False(t, slices.Contains(listArchive(t, buf.Bytes()), "keep.txt"), "the image's excludes apply")
		})
	}
}
