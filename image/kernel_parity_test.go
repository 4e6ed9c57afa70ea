package image

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"testing/fstest"

	"github.com/klauspost/compress/zstd"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestKernelDefaultAsWarewulf: the cases of Warewulf's kernel tests
// (internal/pkg/kernel/kernel_test.go) with the kernel Warewulf picks.
func TestKernelDefaultAsWarewulf(t *testing.T) {
	for _, c := range []struct {
		name    string
		pattern string
		vers    []string
		want    string
	}{
		{"boot", "boot/vmlinuz-%s", []string{"5.14.0-427.18.1.el9_4.x86_64", "5.14.0-427.24.1.el9_4.x86_64", "4.14.0-427.18.1.el8_4.x86_64"}, "boot/vmlinuz-5.14.0-427.24.1.el9_4.x86_64"},
		{"boot ubuntu", "boot/vmlinuz-%s", []string{"5.15.0-119-generic", "5.14.0-427.24.1.el9_4.x86_64", "6.15.0-119-generic"}, "boot/vmlinuz-6.15.0-119-generic"},
		{"boot vanilla", "boot/vmlinuz-%s", []string{"5.15.0-0-vanilla", "5.14.0-427.24.1.el9_4.x86_64"}, "boot/vmlinuz-5.15.0-0-vanilla"},
		{"lib/modules", "lib/modules/%s/vmlinuz", []string{"5.14.0-427.18.1.el9_4.x86_64", "5.14.0-427.24.1.el9_4.x86_64"}, "lib/modules/5.14.0-427.24.1.el9_4.x86_64/vmlinuz"},
		{"boot gz", "boot/vmlinuz-%s.gz", []string{"5.14.0-427.18.1.el9_4.x86_64", "5.14.0-427.24.1.el9_4.x86_64"}, "boot/vmlinuz-5.14.0-427.24.1.el9_4.x86_64.gz"},
		{"rescue and debug", "boot/vmlinuz-%s", []string{"0-rescue-eb46964329b146e39518c625feab3ea0", "5.14.0-362.24.1.el9_3.aarch64",
			"5.14.0-427.31.1.el9_4.aarch64+debug", "5.14.0-284.30.1.el9_2.aarch64", "5.14.0-427.31.1.el9_4.aarch64"}, "boot/vmlinuz-5.14.0-427.31.1.el9_4.aarch64"},
		{"release after its build numbers", "boot/vmlinuz-%s", []string{"6.1.0-13-amd64", "6.1.0", "6.1.0-9-amd64"}, "boot/vmlinuz-6.1.0"},
	} {
		t.Run(c.name, func(t *testing.T) {
			tree := fstest.MapFS{}
			for _, v := range c.vers {
				tree[fmt.Sprintf(c.pattern, v)] = &fstest.MapFile{Data: []byte("kernel")}
			}
			k, err := DefaultKernel(tree)
			require.NoError(t, err)
			assert.Equal(t, c.want, k.Path)
		})
	}
}

// TestKernelPlaces: every place Warewulf searches (kernelSearchPaths):
// aarch64's /boot/Image-VER (chosen over the vmlinux beside it),
// /boot/vmlinuz-linux*, lib/modules/VER/vmlinuz and vmlinuz.gz; a vmlinux
// only when nothing else is there.
func TestKernelPlaces(t *testing.T) {
	k, err := DefaultKernel(fstest.MapFS{
		"boot/Image-6.4.0-150600.23.7-default":      {Data: []byte("arm64 Image")},
		"boot/vmlinux-6.4.0-150600.23.7-default.gz": {Data: []byte("elf")},
	})
	require.NoError(t, err)
	assert.Equal(t, "boot/Image-6.4.0-150600.23.7-default", k.Path)
	assert.Equal(t, "6.4.0-150600.23.7-default", k.Version)

	k, err = DefaultKernel(fstest.MapFS{"boot/vmlinuz-linux": {Data: []byte("arch")}})
	require.NoError(t, err)
	assert.Equal(t, "boot/vmlinuz-linux", k.Path)

	k, err = DefaultKernel(fstest.MapFS{"lib/modules/6.4.0-150600.23.7-default/vmlinuz.gz": {Data: []byte("gz")}})
	require.NoError(t, err)
	assert.Equal(t, "lib/modules/6.4.0-150600.23.7-default/vmlinuz.gz", k.Path)
	assert.Equal(t, "6.4.0-150600.23.7-default", k.Version)

	k, err = DefaultKernel(fstest.MapFS{"boot/vmlinux-6.6.0": {Data: []byte("elf")}})
	require.NoError(t, err)
	assert.Equal(t, "boot/vmlinux-6.6.0", k.Path, "a vmlinux when nothing else is there")

	_, err = DefaultKernel(fstest.MapFS{"boot/config-6.6.0": {Data: []byte("cfg")}})
	assert.ErrorIs(t, err, os.ErrNotExist)
}

// TestKernelVersionOf: Warewulf's util.ParseVersion cases (version_test.go).
func TestKernelVersionOf(t *testing.T) {
	for p, want := range map[string]string{
		"/lib/modules/5.14.0-427.37.1.el9_4.aarch64/vmlinuz":     "5.14.0-427.37.1",
		"/boot/vmlinuz-4.18.0-372.13.1.el8_6.x86_64":             "4.18.0-372.13.1",
		"/lib/modules/6.12.0-211.16.1.el10_2.0.1.x86_64/vmlinuz": "6.12.0-211.16.1",
		"/lib/modules/5.14.0-687.10.1.el9_8.0.1.x86_64/vmlinuz":  "5.14.0-687.10.1",
		"/lib/modules/5.14.0-687.10.1.el9_8.x86_64/vmlinuz":      "5.14.0-687.10.1",
		"/boot/vmlinuz-5.14.0-427.24.1.el9_4.x86_64.gz":          "5.14.0-427.24.1",
		"/boot/vmlinuz-linux":                                    "",
	} {
		assert.Equal(t, want, KernelVersionOf(p), p)
	}
}

// TestKernelByVersion: a node's kernel version selects the first kernel
// in search order whose version starts with it, never a debug build
// (Warewulf's collection.Version).
func TestKernelByVersion(t *testing.T) {
	ks, err := FindKernels(fstest.MapFS{
		"boot/vmlinuz-5.14.0-427.31.1.el9_4.x86_64+debug":  {Data: []byte("k")},
		"boot/vmlinuz-5.14.0-427.18.1.el9_4.x86_64":        {Data: []byte("k")},
		"lib/modules/5.14.0-427.31.1.el9_4.x86_64/vmlinuz": {Data: []byte("k")},
		"boot/vmlinuz-5.14.0-362.24.1.el9_3.x86_64":        {Data: []byte("k")},
	})
	require.NoError(t, err)
	k, ok := KernelByVersion(ks, "5.14.0-427.31")
	require.True(t, ok)
	assert.Equal(t, "lib/modules/5.14.0-427.31.1.el9_4.x86_64/vmlinuz", k.Path)
	k, ok = KernelByVersion(ks, "5.14.0-362")
	require.True(t, ok)
	assert.Equal(t, "boot/vmlinuz-5.14.0-362.24.1.el9_3.x86_64", k.Path)
	_, ok = KernelByVersion(ks, "6.")
	assert.False(t, ok)
}

// TestCompressedKernelsAreStoredUncompressed: a gzip- or zstd-compressed
// kernel file is stored as the kernel it holds (firmware and iPXE boot
// that), and --kernel VERSION selects by version.
func TestCompressedKernelsAreStoredUncompressed(t *testing.T) {
	kernel := bytes.Repeat([]byte("MZ arm64 Image "), 1000)
	var gz, zs bytes.Buffer
	zw := gzip.NewWriter(&gz)
	_, _ = zw.Write(kernel)
	require.NoError(t, zw.Close())
	enc, err := zstd.NewWriter(&zs)
	require.NoError(t, err)
	_, _ = enc.Write(kernel)
	require.NoError(t, enc.Close())

	ctx := context.Background()
	s, err := OpenStore(filepath.Join(t.TempDir(), "images"))
	require.NoError(t, err)
	for name, file := range map[string]struct {
		path string
		data []byte
	}{
		"gz":  {"lib/modules/6.4.0-150600.23.7-default/vmlinuz.gz", gz.Bytes()},
		"zst": {"boot/vmlinuz-6.8.0-1.zst", zs.Bytes()},
	} {
		src := t.TempDir()
		require.NoError(t, os.MkdirAll(filepath.Join(src, filepath.Dir(file.path)), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(src, file.path), file.data, 0o644))
		res, err := s.Import(ctx, src, name, BuildOptions{})
		require.NoError(t, err, name)
		got, err := os.ReadFile(res.KernelPath)
		require.NoError(t, err)
		assert.Equal(t, kernel, got, name)
	}

	src := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(src, "boot"), 0o755))
	for _, v := range []string{"5.14.0-427.18.1.el9_4.x86_64", "5.14.0-503.1.1.el9_5.x86_64"} {
		require.NoError(t, os.WriteFile(filepath.Join(src, "boot", "vmlinuz-"+v), []byte(v), 0o644))
	}
	res, err := s.Import(ctx, src, "el9", BuildOptions{Kernel: "5.14.0-427"})
	require.NoError(t, err)
	assert.Equal(t, "5.14.0-427.18.1.el9_4.x86_64", res.KernelVersion)
	res, err = s.Import(ctx, src, "el9b", BuildOptions{})
	require.NoError(t, err)
	assert.Equal(t, "5.14.0-503.1.1.el9_5.x86_64", res.KernelVersion)
}
