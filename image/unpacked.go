package image

import "io/fs"

// Unpacked-size model (see Result.UnpackedSize). The kernel unpacks an
// initramfs into rootfs, a tmpfs (or ramfs): every file's data takes whole
// pages, every entry an inode and a dentry, and a symlink's target longer
// than tmpfs's inline limit takes a page of its own (mm/shmem.c,
// SHORT_SYMLINK_LEN).
const (
	// PageSize is the page size the unpacked size is counted in (x86-64, arm64 4K kernels).
	PageSize = 4096
	// EntryOverhead is what one unpacked entry costs besides its data: a
	// shmem inode (about 750 bytes with its security blob) and a dentry
	// (192 bytes), rounded up.
	EntryOverhead = 1024
	// shortSymlink is the longest symlink target tmpfs keeps in the inode.
	shortSymlink = 128
)

// ramCounter adds up the RAM a tree takes once unpacked. Hard links (same
// device and inode, st_nlink > 1) share their data, which counts once.
type ramCounter struct {
	total int64
	seen  map[[2]uint64]bool
}

func pages(n int64) int64 { return (n + PageSize - 1) / PageSize * PageSize }

// add counts one archived entry.
func (c *ramCounter) add(e *entry) {
	c.total += EntryOverhead
	switch e.info.Mode().Type() {
	case 0:
		if e.st != nil && e.st.Nlink > 1 {
			k := [2]uint64{uint64(e.st.Dev), e.st.Ino}
			if c.seen[k] {
				return
			}
			if c.seen == nil {
				c.seen = map[[2]uint64]bool{}
			}
			c.seen[k] = true
		}
		c.total += pages(e.info.Size())
	case fs.ModeSymlink:
		if len(e.target) >= shortSymlink {
			c.total += PageSize
		}
	}
}
