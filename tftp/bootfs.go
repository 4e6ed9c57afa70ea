package tftp

import (
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"os"
	"path/filepath"
	"slices"
)

// DebianIPXEDir is where Debian's ipxe package installs its binaries.
const DebianIPXEDir = "/usr/lib/ipxe"

// IPXEBinaryNames returns the file names of the iPXE binaries a PXE boot
// asks for: undionly.kpxe (BIOS), ipxe.efi and snponly.efi (x86-64 UEFI).
func IPXEBinaryNames() []string {
	return []string{"undionly.kpxe", "ipxe.efi", "snponly.efi"}
}

// FindIPXEBinaries returns, for each name of IPXEBinaryNames present in dir
// as a regular file (symbolic links followed), the served name mapped to its
// path. Names that are missing are left out; an empty map means none.
func FindIPXEBinaries(dir string) map[string]string {
	found := make(map[string]string)
	for _, name := range IPXEBinaryNames() {
		p := filepath.Join(dir, name)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
			found[name] = p
		}
	}
	return found
}

// BootFS is the default TFTP tree: the files under a directory, jailed with
// os.Root so symbolic links cannot leave it, plus named files from elsewhere
// (the iPXE binaries) served under names of their own. Create it with
// OpenBootFS and Close it when done.
type BootFS struct {
	root  *os.Root          // nil when there is no tree
	files map[string]string // served name → path on disk
}

// OpenBootFS builds the default TFTP tree from everything under
// filepath.Join(root, "tftp") (absent is fine; root "" means no tree) and
// the files named in binaries (served name → path), such as
// FindIPXEBinaries(DebianIPXEDir) merged with the configuration's own
// choices. A name present in the tree is served from the tree. Each named
// file must exist as a regular file now; it is opened afresh per request,
// so replacing it on disk takes effect at once.
func OpenBootFS(root string, binaries map[string]string) (*BootFS, error) {
	b := &BootFS{files: make(map[string]string, len(binaries))}
	for _, name := range slices.Sorted(maps.Keys(binaries)) {
		p := binaries[name]
		if !fs.ValidPath(name) || name == "." {
			return nil, fmt.Errorf("tftp: served name %q for %s is not a relative slash-separated file name: fix the TFTP file list in the configuration", name, p)
		}
		st, err := os.Stat(p)
		if err != nil {
			return nil, fmt.Errorf("tftp: file for %q: %w (install the ipxe package or fix the path in the configuration)", name, err)
		}
		if !st.Mode().IsRegular() {
			return nil, fmt.Errorf("tftp: file for %q: %s is not a regular file: name the binary itself in the configuration", name, p)
		}
		b.files[name] = p
	}
	if root != "" {
		dir := filepath.Join(root, "tftp")
		r, err := os.OpenRoot(dir)
		switch {
		case err == nil:
			b.root = r
		case errors.Is(err, fs.ErrNotExist):
		default:
			return nil, fmt.Errorf("tftp: open TFTP tree %s: %w", dir, err)
		}
	}
	return b, nil
}

// Open opens name from the tree, else from the named files. It implements
// fs.FS.
func (b *BootFS) Open(name string) (fs.File, error) {
	if !fs.ValidPath(name) {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrInvalid}
	}
	if b.root != nil {
		f, err := b.root.Open(name)
		if err == nil {
			return f, nil
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
	}
	if p, ok := b.files[name]; ok {
		return os.Open(p)
	}
	return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
}

// Names returns the named (non-tree) files served, sorted.
func (b *BootFS) Names() []string {
	return slices.Sorted(maps.Keys(b.files))
}

// Close releases the tree's directory handle.
func (b *BootFS) Close() error {
	if b.root == nil {
		return nil
	}
	return b.root.Close()
}
