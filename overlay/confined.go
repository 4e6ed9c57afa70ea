package overlay

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"

	"golang.org/x/sys/unix"
)

// maxIncludeBytes bounds one file a template reads from a tree: a template
// including more than this is a mistake (or a hostile image's /dev/zero).
const maxIncludeBytes = 64 << 20

// errNotRegular is returned for a template read of anything but a regular
// file (a directory, a FIFO that would block the render, a device).
var errNotRegular = errors.New("not a regular file")

// readInTree reads the regular file p of the tree at root, resolving p and
// every symbolic link on the way inside root, as a process chrooted to root
// would: an absolute link (etc/passwd -> /etc/shadow) names root's
// etc/shadow, and ".." stops at root, so nothing outside the tree is ever
// read. p may be absolute or relative; either way it is taken below root.
// This is the kernel's openat2(RESOLVE_IN_ROOT), the same resolution image
// import uses. On kernels without openat2 (before 5.6) it falls back to
// os.Root, which refuses links that leave the tree instead of resolving
// them inside it.
//
// It returns the data, the canonical host path of the file it read (for
// the render cache's staleness check) and whether the file denies others
// read on the server (a munge key, /etc/shadow: a secret wherever it goes),
// or an error wrapping
// os.ErrNotExist, errNotRegular or an escape refusal. Files larger than
// maxIncludeBytes are refused.
func readInTree(root, p string) ([]byte, string, bool, error) {
	rel := filepath.Clean("/" + p)[1:]
	if rel == "" {
		rel = "."
	}
	f, err := openInTree(root, rel)
	if err != nil {
		return nil, "", false, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, "", false, err
	}
	if !fi.Mode().IsRegular() {
		return nil, "", false, fmt.Errorf("%s in %s: %w", p, root, errNotRegular)
	}
	if fi.Size() > maxIncludeBytes {
		return nil, "", false, fmt.Errorf("%s in %s: %d bytes, more than the %d a template may include", p, root, fi.Size(), maxIncludeBytes)
	}
	data, err := io.ReadAll(io.LimitReader(f, maxIncludeBytes+1))
	if err != nil {
		return nil, "", false, err
	}
	if len(data) > maxIncludeBytes {
		return nil, "", false, fmt.Errorf("%s in %s: more than the %d bytes a template may include", p, root, maxIncludeBytes)
	}
	real, err := os.Readlink("/proc/self/fd/" + strconv.Itoa(int(f.Fd())))
	if err != nil {
		real = filepath.Join(root, rel)
	}
	return data, real, fi.Mode().Perm()&0o004 == 0 || hiddenIn(root, real), nil
}

// hiddenIn says whether the file real is in a directory others may not
// enter (no o+x), which makes it its owner's alone whatever its own mode:
// for a server file named by an absolute path (root "/"), any directory
// above it (/root, /var/lib/private, a 0700 directory); in a tree (an
// image, Warewulf's configuration directory), any directory between root
// and the file (the image's /root, /etc/ssl/private), not root itself nor
// what lies above it (the image store's own directories).
func hiddenIn(root, real string) bool {
	root = filepath.Clean(root)
	for d := filepath.Dir(real); d != root && d != "/" && d != "."; d = filepath.Dir(d) {
		if fi, err := os.Stat(d); err == nil && fi.Mode().Perm()&0o001 == 0 {
			return true
		}
	}
	return false
}

// openInTree opens the regular file rel (cleaned, relative) inside root;
// see readInTree. The path is resolved with O_PATH first, so nothing that
// is not a regular file is ever opened for reading: a FIFO would block the
// render, a device could have side effects or never end.
func openInTree(root, rel string) (*os.File, error) {
	dfd, err := unix.Open(root, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, &os.PathError{Op: "open", Path: root, Err: err}
	}
	defer unix.Close(dfd)
	full := filepath.Join(root, rel)
	for {
		fd, err := unix.Openat2(dfd, rel, &unix.OpenHow{
			Flags:   unix.O_PATH | unix.O_CLOEXEC,
			Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
		})
		switch {
		case errors.Is(err, unix.EINTR), errors.Is(err, unix.EAGAIN):
			continue
		case errors.Is(err, unix.ENOSYS):
			return openInRootFallback(root, rel)
		case err != nil:
			return nil, &os.PathError{Op: "open", Path: full, Err: err}
		}
		defer unix.Close(fd)
		var st unix.Stat_t
		if err := unix.Fstat(fd, &st); err != nil {
			return nil, &os.PathError{Op: "stat", Path: full, Err: err}
		}
		if st.Mode&unix.S_IFMT != unix.S_IFREG {
			return nil, fmt.Errorf("%s: %w", full, errNotRegular)
		}
		// Reopen the very inode for reading (the O_PATH descriptor cannot read).
		return os.OpenFile("/proc/self/fd/"+strconv.Itoa(fd), os.O_RDONLY|unix.O_NOCTTY, 0)
	}
}

// openInRootFallback is openInTree without openat2: os.Root keeps links
// inside the tree by refusing those that leave it.
func openInRootFallback(root, rel string) (*os.File, error) {
	r, err := os.OpenRoot(root)
	if err != nil {
		return nil, err
	}
	defer r.Close()
	fi, err := r.Stat(rel)
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: %w", filepath.Join(root, rel), errNotRegular)
	}
	return r.OpenFile(rel, os.O_RDONLY|unix.O_NONBLOCK|unix.O_NOCTTY, 0)
}
