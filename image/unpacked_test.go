package image

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestStoreRecordsUnpackedSize builds a tree whose unpacked size is known
// by hand and checks the store records it (and the kernel's size).
func TestStoreRecordsUnpackedSize(t *testing.T) {
	ctx := context.Background()
	src := t.TempDir()
	write := func(p string, n int) {
		full := filepath.Join(src, p)
		require.NoError(t, os.MkdirAll(filepath.Dir(full), 0o755))
		require.NoError(t, os.WriteFile(full, []byte(strings.Repeat("x", n)), 0o644))
	}
	write("etc/one", 1)               // 1 page
	write("usr/lib/five", 5000)       // 2 pages
	write("usr/lib/empty", 0)         // no page
	write("boot/vmlinuz-6.1.0-1", 77) // 1 page (the kernel stays in the tree)
	require.NoError(t, os.Link(filepath.Join(src, "usr/lib/five"), filepath.Join(src, "usr/lib/five.link")))
	require.NoError(t, os.Symlink("one", filepath.Join(src, "etc/short")))
	require.NoError(t, os.Symlink(strings.Repeat("l", 200), filepath.Join(src, "etc/long"))) // 1 page
	// Entries: etc, etc/long, etc/one, etc/short, usr, usr/lib, usr/lib/empty,
	// usr/lib/five, usr/lib/five.link, boot, boot/vmlinuz-6.1.0-1 = 11.
	want := int64(11*EntryOverhead + (1+2+1+1)*PageSize)

	s, err := OpenStore(filepath.Join(t.TempDir(), "images"))
	require.NoError(t, err)
	res, err := s.Import(ctx, src, "small", BuildOptions{Options: Options{NoDefaultExcludes: true}})
	require.NoError(t, err)
	assert.Equal(t, int64(11), res.Files)
	assert.Equal(t, want, res.UnpackedSize)
	assert.Equal(t, int64(77), res.KernelBytes)

	m, err := s.Lookup(ctx, "small")
	require.NoError(t, err)
	assert.Equal(t, want, m.UnpackedSize, "recorded in the index")
	assert.Equal(t, want, m.MemUnpacked())
	assert.Equal(t, int64(77), m.KernelSize())

	// A record from before: estimated from the archive, read from the file.
	old := m
	old.UnpackedSize, old.KernelBytes = 0, 0
	assert.Equal(t, m.UncompressedSize+11*(EntryOverhead+PageSize/2), old.MemUnpacked())
	assert.Equal(t, int64(77), old.KernelSize())
}
