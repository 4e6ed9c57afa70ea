package agent

import (
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path"
	"slices"
	"strings"
	"syscall"
)

// Apply writes the newc archive held in archive under root as one unit, and
// returns the paths (relative to root, slash-separated) of the regular files
// and symbolic links it holds, sorted.
//
// Nothing outside root is ever written: every path goes through an os.Root,
// so "..", absolute paths and symbolic links leading out of root are refused.
// The archive is parsed and checked whole before anything is touched: a
// malformed archive, a path leaving root, or an entry whose place on the node
// is taken by a directory changes nothing. Then every file and link is
// staged beside its destination (a temporary name in the same directory,
// written, given its mode and owner, synced), and only once all are staged
// are they renamed into place, each rename atomic; readers never see a
// half-written file, and a failed staging removes what it staged. Directories
// are created with their modes and owners; an existing path that is a
// symbolic link to a directory (a merged /usr) is left as it is.
//
// prev lists what the previous Apply returned: the files and links of prev
// that the new archive no longer carries are removed, so an overlay that
// drops a file drops it from the node. Anything else on the node is left
// alone. Devices and FIFOs in the archive are ignored.
func Apply(root string, archive []byte, prev []string) ([]string, error) {
	ents, err := parseNewc(archive)
	if err != nil {
		return nil, fmt.Errorf("apply overlay: %w", err)
	}
	r, err := os.OpenRoot(root)
	if err != nil {
		return nil, fmt.Errorf("apply overlay: %w", err)
	}
	defer r.Close()

	// Check every entry, and keep the last one of each path.
	last := map[string]int{}
	names := make([]string, len(ents))
	for i, e := range ents {
		name, err := cleanName(e.name)
		if err != nil {
			return nil, fmt.Errorf("apply overlay: %q: %w", e.name, err)
		}
		names[i] = name
		if name == "" {
			continue
		}
		switch e.mode & modeType {
		case modeDir, modeReg, modeLink:
		default:
			continue
		}
		if e.mode&modeType != modeDir {
			if fi, err := r.Lstat(name); err == nil && fi.IsDir() {
				return nil, fmt.Errorf("apply overlay: %s: is a directory on the node, the overlay has a file there", name)
			}
		}
		last[name] = i
	}

	// Stage: directories now (files need their parents), files and links
	// under temporary names.
	type staged struct{ tmp, name string }
	var stage []staged
	cleanup := func() {
		for _, s := range stage {
			_ = r.Remove(s.tmp)
		}
	}
	var files []string
	dirs := map[string]bool{}
	for i, e := range ents {
		name := names[i]
		if name == "" || last[name] != i {
			continue
		}
		switch e.mode & modeType {
		case modeDir:
			if err := applyDir(r, name, e); err != nil {
				cleanup()
				return nil, fmt.Errorf("apply overlay: %s: %w", name, err)
			}
		case modeReg, modeLink:
			if dir := path.Dir(name); dir != "." {
				if err := r.MkdirAll(dir, 0o755); err != nil {
					cleanup()
					return nil, fmt.Errorf("apply overlay: %s: %w", name, err)
				}
				dirs[dir] = true
			}
			tmp := path.Join(path.Dir(name), fmt.Sprintf(".%s.wwboot-%016x", path.Base(name), rand.Uint64()))
			if err := stageEntry(r, tmp, e); err != nil {
				_ = r.Remove(tmp)
				cleanup()
				return nil, fmt.Errorf("apply overlay: %s: %w", name, err)
			}
			stage = append(stage, staged{tmp, name})
			files = append(files, name)
		}
	}

	// Commit: one rename per file, nothing left to fail but the renames.
	for i, s := range stage {
		if err := r.Rename(s.tmp, s.name); err != nil {
			for _, rest := range stage[i:] {
				_ = r.Remove(rest.tmp)
			}
			return nil, fmt.Errorf("apply overlay: %s: %w (the files before it are applied)", s.name, err)
		}
	}
	slices.Sort(files)
	for _, old := range prev {
		if _, keep := slices.BinarySearch(files, old); keep {
			continue
		}
		name, err := cleanName(old)
		if err != nil || name == "" {
			continue
		}
		if fi, err := r.Lstat(name); err == nil && !fi.IsDir() {
			if err := r.Remove(name); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return files, fmt.Errorf("apply overlay: removing %s, which the overlay no longer carries: %w", name, err)
			}
			dirs[path.Dir(name)] = true
		}
	}
	for dir := range dirs {
		syncDir(r, dir)
	}
	syncDir(r, ".")
	return files, nil
}

// cleanName makes an archive path relative to the root; "" means the root
// itself.
func cleanName(n string) (string, error) {
	if strings.ContainsAny(n, "\x00\n") {
		return "", errors.New("path holds a NUL or newline byte")
	}
	if n == "" {
		return "", errors.New("empty path")
	}
	name := path.Clean(strings.TrimLeft(n, "/"))
	if name == "." {
		return "", nil
	}
	if name == ".." || strings.HasPrefix(name, "../") {
		return "", errors.New("path leaves the overlay's root")
	}
	return name, nil
}

// applyDir creates directory name (and its parents) and gives it e's mode
// and owner, unless name is a symbolic link (to a directory) already.
func applyDir(r *os.Root, name string, e entry) error {
	perm := fs.FileMode(e.mode & 0o7777)
	fi, err := r.Lstat(name)
	switch {
	case err == nil && fi.Mode()&fs.ModeSymlink != 0:
		return nil
	case err == nil && !fi.IsDir():
		return errors.New("is a file on the node, the overlay has a directory there")
	case err != nil:
		if err := r.MkdirAll(name, perm); err != nil {
			return err
		}
	}
	if err := r.Chmod(name, perm|modeBits(e.mode)); err != nil {
		return err
	}
	return r.Lchown(name, e.uid, e.gid)
}

// modeBits turns setuid, setgid and sticky bits of a Unix mode into
// fs.FileMode's.
func modeBits(m uint32) fs.FileMode {
	var fm fs.FileMode
	if m&syscall.S_ISUID != 0 {
		fm |= fs.ModeSetuid
	}
	if m&syscall.S_ISGID != 0 {
		fm |= fs.ModeSetgid
	}
	if m&syscall.S_ISVTX != 0 {
		fm |= fs.ModeSticky
	}
	return fm
}

// stageEntry writes e (a file or a symlink) at tmp.
func stageEntry(r *os.Root, tmp string, e entry) error {
	if e.mode&modeType == modeLink {
		if err := r.Symlink(string(e.data), tmp); err != nil {
			return err
		}
		return r.Lchown(tmp, e.uid, e.gid)
	}
	f, err := r.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(e.data)
	if err == nil {
		// Owner first: chown clears setuid and setgid bits.
		err = f.Chown(e.uid, e.gid)
	}
	if err == nil {
		err = f.Chmod(fs.FileMode(e.mode&0o777) | modeBits(e.mode))
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// syncDir flushes a directory's entries (renames, removals) to disk; errors
// are ignored (a node's root is usually in memory anyway).
func syncDir(r *os.Root, dir string) {
	if d, err := r.Open(dir); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
}
