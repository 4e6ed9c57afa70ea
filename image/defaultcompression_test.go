package image_test

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"testing/fstest"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wwboot/wwboot/image"
)

// TestDefaultCompression: zstd only for a tree whose kernel says it unpacks
// zstd initramfs archives; gzip otherwise (no kernel, no config, an old
// kernel without CONFIG_RD_ZSTD).
func TestDefaultCompression(t *testing.T) {
	const v = "6.1.0-1-amd64"
	for _, tc := range []struct {
		name string
		tree fstest.MapFS
		kver string
		want image.Compression
	}{
		{"config in /boot with zstd", fstest.MapFS{"boot/config-" + v: {Data: []byte("CONFIG_RD_GZIP=y\nCONFIG_RD_ZSTD=y\n")}}, v, image.Zstd},
		{"config in lib/modules", fstest.MapFS{"usr/lib/modules/" + v + "/config": {Data: []byte("CONFIG_RD_ZSTD=y\n")}}, v, image.Zstd},
		{"kernel without zstd", fstest.MapFS{"boot/config-" + v: {Data: []byte("CONFIG_RD_GZIP=y\n# CONFIG_RD_ZSTD is not set\n")}}, v, image.Gzip},
		{"another kernel's config", fstest.MapFS{"boot/config-5.4.0": {Data: []byte("CONFIG_RD_ZSTD=y\n")}}, v, image.Gzip},
		{"no config", fstest.MapFS{}, v, image.Gzip},
		{"no kernel", fstest.MapFS{"boot/config-" + v: {Data: []byte("CONFIG_RD_ZSTD=y\n")}}, "", image.Gzip},
	} {
		assert.Equal(t, tc.want, image.DefaultCompression(tc.tree, tc.kver), tc.name)
	}
}

// TestImportPicksCompressionFromTheKernel: an import without --compress
// gets zstd for a kernel that unpacks it, gzip for one that does not, and
// an explicit choice wins.
func TestImportPicksCompressionFromTheKernel(t *testing.T) {
	const v = "6.1.0-1-amd64"
	mk := func(config string) string {
		root := t.TempDir()
		for p, data := range map[string]string{
			"boot/vmlinuz-" + v: "\x7fELF fake kernel",
			"boot/config-" + v:  config,
			"sbin/init":         "#!/bin/sh\n",
		} {
			require.NoError(t, os.MkdirAll(filepath.Join(root, filepath.Dir(p)), 0o755))
			require.NoError(t, os.WriteFile(filepath.Join(root, p), []byte(data), 0o755))
		}
		return root
	}
	st, err := image.OpenStore(filepath.Join(t.TempDir(), "images"))
	require.NoError(t, err)
	ctx := context.Background()
	res, err := st.Import(ctx, mk("CONFIG_RD_ZSTD=y\n"), "new", image.BuildOptions{})
	require.NoError(t, err)
	assert.Equal(t, image.Zstd, res.Compression)
	res, err = st.Import(ctx, mk("# CONFIG_RD_ZSTD is not set\n"), "old", image.BuildOptions{})
	require.NoError(t, err)
	assert.Equal(t, image.Gzip, res.Compression)
	res, err = st.Import(ctx, mk("CONFIG_RD_ZSTD=y\n"), "asked", image.BuildOptions{Options: image.Options{Compression: image.Gzip}})
	require.NoError(t, err)
	assert.Equal(t, image.Gzip, res.Compression)
}
