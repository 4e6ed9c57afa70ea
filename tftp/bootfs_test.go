package tftp

import (
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestBootFS(t *testing.T) {
	root := t.TempDir()
	tree := filepath.Join(root, "tftp")
	require.NoError(t, os.MkdirAll(filepath.Join(tree, "ipxe"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(tree, "ipxe", "boot.ipxe"), []byte("#!ipxe\n"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(tree, "snponly.efi"), []byte("tree snponly"), 0o644))
	require.NoError(t, os.Symlink("/etc/passwd", filepath.Join(tree, "escape")))

	bins := t.TempDir()
	for name, data := range map[string]string{"undionly.kpxe": "bios", "snponly.efi": "efi", "ipxe.efi": "full"} {
		require.NoError(t, os.WriteFile(filepath.Join(bins, name), []byte(data), 0o644))
	}
	found := FindIPXEBinaries(bins)
	assert.Equal(t, map[string]string{
		"undionly.kpxe": filepath.Join(bins, "undionly.kpxe"),
		"snponly.efi":   filepath.Join(bins, "snponly.efi"),
		"ipxe.efi":      filepath.Join(bins, "ipxe.efi"),
	}, found)

	b, err := OpenBootFS(root, found)
	require.NoError(t, err)
	t.Cleanup(func() { b.Close() })
	read := func(name string) (string, error) {
		f, err := b.Open(name)
		if err != nil {
			return "", err
		}
		defer f.Close()
		data, err := io.ReadAll(f)
		return string(data), err
	}
	for name, want := range map[string]string{
		"undionly.kpxe":  "bios",
		"ipxe.efi":       "full",
		"snponly.efi":    "tree snponly", // the tree wins
		"ipxe/boot.ipxe": "#!ipxe\n",
	} {
		got, err := read(name)
		if assert.NoError(t, err, name) {
			assert.Equal(t, want, got, name)
		}
	}
	_, err = read("escape")
	assert.Error(t, err, "a symlink out of the tree must not open")
	_, err = read("missing")
	assert.ErrorIs(t, err, fs.ErrNotExist)
	_, err = read("../tftp/ipxe/boot.ipxe")
	assert.ErrorIs(t, err, fs.ErrInvalid)
	assert.Equal(t, []string{"ipxe.efi", "snponly.efi", "undionly.kpxe"}, b.Names())

	// Without a tree, and with a broken configuration.
	b2, err := OpenBootFS("", map[string]string{"custom.kpxe": filepath.Join(bins, "undionly.kpxe")})
	require.NoError(t, err)
	got, err := func() (string, error) {
		f, err := b2.Open("custom.kpxe")
		require.NoError(t, err)
		defer f.Close()
		d, err := io.ReadAll(f)
		return string(d), err
	}()
	require.NoError(t, err)
	assert.Equal(t, "bios", got)
	_, err = OpenBootFS("", map[string]string{"x.efi": filepath.Join(bins, "nope.efi")})
	assert.ErrorContains(t, err, `"x.efi"`)
	_, err = OpenBootFS("", map[string]string{"../x.efi": filepath.Join(bins, "ipxe.efi")})
	assert.ErrorContains(t, err, "not a relative")
	_, err = OpenBootFS("", map[string]string{"dir": bins})
	assert.ErrorContains(t, err, "not a regular file")
	b3, err := OpenBootFS(t.TempDir(), nil) // no ROOT/tftp: fine, empty
	require.NoError(t, err)
	_, err = b3.Open("undionly.kpxe")
	assert.ErrorIs(t, err, fs.ErrNotExist)
}

// TestDebianIPXE: on a machine with Debian's ipxe package, the default tree
// has the three binaries.
func TestDebianIPXE(t *testing.T) {
	if _, err := os.Stat(DebianIPXEDir); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("%s missing: .ci/packages installs ipxe", DebianIPXEDir)
		}
		t.Skip("Debian's ipxe package is not installed")
	}
	found := FindIPXEBinaries(DebianIPXEDir)
	assert.Contains(t, found, "undionly.kpxe")
	assert.Contains(t, found, "snponly.efi")
	assert.Contains(t, found, "ipxe.efi")
	b, err := OpenBootFS("", found)
	require.NoError(t, err)
	defer b.Close()
	f, err := b.Open("undionly.kpxe")
	require.NoError(t, err)
	defer f.Close()
	st, err := f.Stat()
	require.NoError(t, err)
	assert.Greater(t, st.Size(), int64(10_000))
}
