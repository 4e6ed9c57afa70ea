package image

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"
)

// ErrUnsafePath is returned (wrapped, naming the entry) for an archive entry
// whose name leaves the extraction root ("../x").
var ErrUnsafePath = errors.New("archive entry path leaves the target directory")

// ExtractOptions tune ExtractTar.
type ExtractOptions struct {
	// Layer applies the stream as a container image layer on top of what
	// the directory already holds: ".wh.NAME" entries delete NAME and
	// ".wh..wh..opq" empties its directory of what lower layers put there.
	Layer bool
	// MaxBytes, when positive, caps the total bytes of file content (holes
	// of sparse files included) an extraction may produce: a guard against
	// archive bombs from untrusted sources. Exceeding it is an error.
	MaxBytes int64
	// Log receives debug messages about skipped entries; nil discards them.
	Log *slog.Logger
}

// ErrArchiveTooLarge is returned (wrapped) when an extraction exceeds
// ExtractOptions.MaxBytes.
var ErrArchiveTooLarge = errors.New("archive content exceeds the configured size limit")

// ExtractStats count what an extraction wrote.
type ExtractStats struct {
	Entries int64 // entries created (files, directories, links, nodes)
	Bytes   int64 // bytes of file content written
}

// ExtractTar unpacks a tar stream (plain, gzip or zstd, detected from its
// first bytes) into the existing directory dir, keeping modes, owners (when
// running as root), mtimes, symlinks, hard links, device nodes and fifos.
//
// Nothing is ever written outside dir: entry names are cleaned and a name
// that climbs above the root is rejected with ErrUnsafePath; parent
// directories are resolved by the kernel with openat2(RESOLVE_IN_ROOT), so a
// symlink in the tree (absolute or with "..") resolves inside dir as it would
// in a chroot; the final component is never followed (O_NOFOLLOW, *at calls
// with AT_SYMLINK_NOFOLLOW), and an existing entry is removed before a new one
// takes its name. Directory metadata is applied at the end of the extraction.
func ExtractTar(ctx context.Context, r io.Reader, dir string, opts ExtractOptions) (ExtractStats, error) {
	x, err := newExtractor(dir, opts)
	if err != nil {
		return ExtractStats{}, err
	}
	defer x.close()
	if err := x.apply(ctx, r, opts.Layer); err != nil {
		return x.stats, err
	}
	return x.stats, x.finish()
}

// ImportArchive unpacks the archive file src into the existing directory dir.
// src is a root file system tar (plain, .gz or .zst) or a `docker save` /
// `podman save` (docker-archive) tarball, recognised by its top-level
// manifest.json, whose first image's layers are applied in order with
// whiteouts. It returns a description of the source for the image record.
func ImportArchive(ctx context.Context, src, dir string, opts ExtractOptions) (ExtractStats, string, error) {
	f, err := os.Open(src)
	if err != nil {
		return ExtractStats{}, "", fmt.Errorf("opening archive: %w", err)
	}
	defer f.Close()
	comp, err := sniff(f)
	if err != nil {
		return ExtractStats{}, "", fmt.Errorf("%s: %w", src, err)
	}
	plain := f
	if comp != "" {
		// Look for a docker-save manifest without writing anything; only a
		// compressed docker save is spooled to a temporary file to get the
		// random access its layers need.
		zr, err := decompressor(f, comp)
		if err != nil {
			return ExtractStats{}, "", fmt.Errorf("%s: %w", src, err)
		}
		isDocker, err := hasManifest(zr)
		zr.Close()
		if err != nil {
			return ExtractStats{}, "", fmt.Errorf("%s: %w", src, err)
		}
		if _, err := f.Seek(0, io.SeekStart); err != nil {
			return ExtractStats{}, "", err
		}
		if !isDocker {
			st, err := ExtractTar(ctx, f, dir, opts)
			if err != nil {
				return st, "", fmt.Errorf("%s: %w", src, err)
			}
			return st, "tar:" + src, nil
		}
		tmp, err := os.CreateTemp(filepath.Dir(filepath.Clean(dir)), ".wwboot-spool-*.tar")
		if err != nil {
			return ExtractStats{}, "", fmt.Errorf("spooling %s: %w", src, err)
		}
		defer os.Remove(tmp.Name())
		defer tmp.Close()
		zr, err = decompressor(f, comp)
		if err != nil {
			return ExtractStats{}, "", err
		}
		_, err = io.Copy(tmp, zr)
		zr.Close()
		if err != nil {
			return ExtractStats{}, "", fmt.Errorf("spooling %s: %w", src, err)
		}
		plain = tmp
	}
	idx, manifest, err := indexTar(plain)
	if err != nil {
		return ExtractStats{}, "", fmt.Errorf("%s: %w", src, err)
	}
	if manifest == nil {
		if _, err := plain.Seek(0, io.SeekStart); err != nil {
			return ExtractStats{}, "", err
		}
		st, err := ExtractTar(ctx, plain, dir, opts)
		if err != nil {
			return st, "", fmt.Errorf("%s: %w", src, err)
		}
		return st, "tar:" + src, nil
	}
	var images []struct {
		Config   string
		RepoTags []string
		Layers   []string
	}
	if err := json.Unmarshal(manifest, &images); err != nil || len(images) == 0 {
		return ExtractStats{}, "", fmt.Errorf("%s: manifest.json is not a docker-save manifest (%v): export with docker save or podman save --format docker-archive", src, err)
	}
	img := images[0]
	if len(images) > 1 && opts.Log != nil {
		opts.Log.Warn("image: archive holds several images, importing the first", "archive", src, "tags", img.RepoTags)
	}
	x, err := newExtractor(dir, opts)
	if err != nil {
		return ExtractStats{}, "", err
	}
	defer x.close()
	for i, l := range img.Layers {
		loc, ok := idx[cleanArchiveName(l)]
		if !ok {
			return x.stats, "", fmt.Errorf("%s: layer %d %q listed in manifest.json is missing from the archive", src, i+1, l)
		}
		lr := io.NewSectionReader(plain, loc[0], loc[1])
		if err := x.apply(ctx, lr, true); err != nil {
			return x.stats, "", fmt.Errorf("%s: layer %d %s: %w", src, i+1, l, err)
		}
	}
	if err := x.finish(); err != nil {
		return x.stats, "", err
	}
	desc := "docker-archive:" + src
	if len(img.RepoTags) > 0 {
		desc += " (" + img.RepoTags[0] + ")"
	}
	return x.stats, desc, nil
}

// sniff reports the compression of r from its magic ("gzip", "zstd" or "")
// and rewinds it.
func sniff(f io.ReadSeeker) (string, error) {
	var magic [4]byte
	n, err := io.ReadFull(f, magic[:])
	if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
		return "", err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return "", err
	}
	return sniffBytes(magic[:n]), nil
}

func sniffBytes(b []byte) string {
	switch {
	case len(b) >= 2 && b[0] == 0x1f && b[1] == 0x8b:
		return "gzip"
	case len(b) >= 4 && bytes.Equal(b[:4], []byte{0x28, 0xb5, 0x2f, 0xfd}):
		return "zstd"
	}
	return ""
}

func decompressor(r io.Reader, comp string) (io.ReadCloser, error) {
	switch comp {
	case "gzip":
		zr, err := gzip.NewReader(r)
		if err != nil {
			return nil, fmt.Errorf("gzip: %w", err)
		}
		return zr, nil
	case "zstd":
		zr, err := zstd.NewReader(r)
		if err != nil {
			return nil, fmt.Errorf("zstd: %w", err)
		}
		return zr.IOReadCloser(), nil
	}
	return io.NopCloser(r), nil
}

// hasManifest reports whether a tar stream has a top-level manifest.json.
func hasManifest(r io.Reader) (bool, error) {
	tr := tar.NewReader(r)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return false, nil
		}
		if err != nil {
			return false, fmt.Errorf("reading tar: %w", err)
		}
		if cleanArchiveName(h.Name) == "manifest.json" {
			return true, nil
		}
	}
}

// indexTar maps the regular files of a seekable tar to (offset, size) and
// returns the content of a top-level manifest.json, if any.
func indexTar(f *os.File) (map[string][2]int64, []byte, error) {
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, nil, err
	}
	pr := &posReader{f: f}
	tr := tar.NewReader(pr)
	idx := map[string][2]int64{}
	var manifest []byte
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return idx, manifest, nil
		}
		if err != nil {
			return nil, nil, fmt.Errorf("reading tar: %w", err)
		}
		if h.Typeflag != tar.TypeReg && h.Typeflag != tar.TypeRegA {
			continue
		}
		name := cleanArchiveName(h.Name)
		idx[name] = [2]int64{pr.pos, h.Size}
		if name == "manifest.json" && h.Size < 16<<20 {
			if manifest, err = io.ReadAll(tr); err != nil {
				return nil, nil, fmt.Errorf("reading manifest.json: %w", err)
			}
		}
	}
}

// posReader tracks the offset of an *os.File so that tar entry data offsets
// are known; it seeks (tar skips unread data with Seek).
type posReader struct {
	f   *os.File
	pos int64
}

func (p *posReader) Read(b []byte) (int, error) {
	n, err := p.f.Read(b)
	p.pos += int64(n)
	return n, err
}

func (p *posReader) Seek(off int64, whence int) (int64, error) {
	n, err := p.f.Seek(off, whence)
	if err == nil {
		p.pos = n
	}
	return n, err
}

func cleanArchiveName(n string) string {
	return strings.TrimPrefix(path.Clean("/"+n), "/")
}

// extractor writes entries below one root directory file descriptor.
type extractor struct {
	dir    string
	rootfd int
	root   bool // running as root: owners and device nodes
	log    *slog.Logger
	dirs   map[string]*tar.Header // directory metadata to apply at the end
	stats  ExtractStats
	buf    []byte
	max    int64
	// mtime is the current entry's mtime, given to parent directories
	// the archive does not list, so that extraction stays reproducible.
	mtime time.Time
}

func newExtractor(dir string, opts ExtractOptions) (*extractor, error) {
	fd, err := unix.Open(dir, unix.O_PATH|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("opening extraction directory %s: %w", dir, err)
	}
	return &extractor{dir: dir, rootfd: fd, root: os.Geteuid() == 0, log: opts.Log,
		dirs: map[string]*tar.Header{}, buf: make([]byte, 256<<10), max: opts.MaxBytes}, nil
}

func (x *extractor) close() { unix.Close(x.rootfd) }

func (x *extractor) debug(msg string, args ...any) {
	if x.log != nil {
		x.log.Debug(msg, args...)
	}
}

// apply extracts one tar stream; layer enables whiteouts.
func (x *extractor) apply(ctx context.Context, r io.Reader, layer bool) error {
	br := bufio.NewReaderSize(r, 64<<10)
	magic, _ := br.Peek(4)
	zr, err := decompressor(br, sniffBytes(magic))
	if err != nil {
		return err
	}
	defer zr.Close()
	tr := tar.NewReader(zr)
	var created map[string]struct{}
	if layer {
		created = map[string]struct{}{}
	}
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		h, err := tr.Next()
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return fmt.Errorf("reading tar: %w", err)
		}
		if err := x.entry(tr, h, created); err != nil {
			return fmt.Errorf("tar entry %q: %w", h.Name, err)
		}
	}
}

// cleanEntryName makes an entry name relative to the root, rejecting one
// that climbs out of it.
func cleanEntryName(n string) (string, error) {
	n = strings.TrimLeft(n, "/")
	if n == "" {
		return ".", nil
	}
	c := path.Clean(n)
	if c == ".." || strings.HasPrefix(c, "../") {
		return "", ErrUnsafePath
	}
	return c, nil
}

func (x *extractor) entry(tr *tar.Reader, h *tar.Header, created map[string]struct{}) error {
	rel, err := cleanEntryName(h.Name)
	if err != nil {
		return err
	}
	if strings.ContainsRune(rel, 0) {
		return fmt.Errorf("NUL byte in name: %w", ErrUnsafePath)
	}
	if rel == "." {
		if h.Typeflag == tar.TypeDir {
			x.dirs["."] = h
		}
		return nil
	}
	x.mtime = h.ModTime
	base := path.Base(rel)
	if created != nil && strings.HasPrefix(base, ".wh.") {
		return x.whiteout(rel, base, created)
	}
	pfd, err := x.parent(rel, true)
	if err != nil {
		return err
	}
	defer unix.Close(pfd)
	if created != nil {
		created[rel] = struct{}{}
	}
	mode := uint32(h.Mode & 0o7777)
	switch h.Typeflag {
	case tar.TypeDir:
		var st unix.Stat_t
		err := unix.Fstatat(pfd, base, &st, unix.AT_SYMLINK_NOFOLLOW)
		if err == nil && st.Mode&unix.S_IFMT != unix.S_IFDIR {
			if err := removeAt(pfd, base); err != nil {
				return err
			}
			err = unix.ENOENT
		}
		if errors.Is(err, unix.ENOENT) {
			if err := unix.Mkdirat(pfd, base, 0o700); err != nil {
				return fmt.Errorf("mkdir: %w", err)
			}
		} else if err != nil {
			return fmt.Errorf("stat: %w", err)
		}
		x.dirs[rel] = h
		x.stats.Entries++
		return nil
	case tar.TypeReg, tar.TypeRegA:
		if err := removeAt(pfd, base); err != nil {
			return err
		}
		fd, err := unix.Openat(pfd, base, unix.O_WRONLY|unix.O_CREAT|unix.O_EXCL|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0o600)
		if err != nil {
			return fmt.Errorf("create: %w", err)
		}
		f := os.NewFile(uintptr(fd), rel)
		err = x.copySparse(f, tr)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return fmt.Errorf("writing: %w", err)
		}
	case tar.TypeSymlink:
		if err := removeAt(pfd, base); err != nil {
			return err
		}
		if err := unix.Symlinkat(h.Linkname, pfd, base); err != nil {
			return fmt.Errorf("symlink: %w", err)
		}
	case tar.TypeLink:
		target, err := cleanEntryName(h.Linkname)
		if err != nil || target == "." {
			return fmt.Errorf("hard link to %q: %w", h.Linkname, ErrUnsafePath)
		}
		if target == rel {
			return nil
		}
		ofd, err := x.parent(target, false)
		if err != nil {
			return fmt.Errorf("hard link target %q: %w", h.Linkname, err)
		}
		defer unix.Close(ofd)
		if err := removeAt(pfd, base); err != nil {
			return err
		}
		if err := unix.Linkat(ofd, path.Base(target), pfd, base, 0); err != nil {
			return fmt.Errorf("hard link to %q: %w", h.Linkname, err)
		}
		x.stats.Entries++
		return nil
	case tar.TypeChar, tar.TypeBlock, tar.TypeFifo:
		typ := map[byte]uint32{tar.TypeChar: unix.S_IFCHR, tar.TypeBlock: unix.S_IFBLK, tar.TypeFifo: unix.S_IFIFO}[h.Typeflag]
		if err := removeAt(pfd, base); err != nil {
			return err
		}
		dev := int(unix.Mkdev(uint32(h.Devmajor), uint32(h.Devminor)))
		if err := unix.Mknodat(pfd, base, typ|mode, dev); err != nil {
			if !x.root && errors.Is(err, unix.EPERM) {
				x.debug("image: not root, skipping device node", "path", "/"+rel)
				return nil
			}
			return fmt.Errorf("mknod: %w", err)
		}
	default:
		x.debug("image: skipping tar entry of unsupported type", "path", "/"+rel, "type", string(h.Typeflag))
		return nil
	}
	x.stats.Entries++
	return x.meta(pfd, base, h, h.Typeflag == tar.TypeSymlink)
}

// copySparse copies a file's content, leaving holes where whole blocks are
// zero (sparse archive members stay sparse on disk), and enforces MaxBytes.
func (x *extractor) copySparse(f *os.File, r io.Reader) error {
	var size int64
	hole := false
	for {
		n, err := io.ReadFull(r, x.buf)
		if n > 0 {
			size += int64(n)
			x.stats.Bytes += int64(n)
			if x.max > 0 && x.stats.Bytes > x.max {
				return fmt.Errorf("%w (%d bytes)", ErrArchiveTooLarge, x.max)
			}
			if allZero(x.buf[:n]) {
				if _, err := f.Seek(int64(n), io.SeekCurrent); err != nil {
					return err
				}
				hole = true
			} else {
				if _, err := f.Write(x.buf[:n]); err != nil {
					return err
				}
				hole = false
			}
		}
		if err == io.EOF || errors.Is(err, io.ErrUnexpectedEOF) {
			break
		}
		if err != nil {
			return err
		}
	}
	if hole {
		return f.Truncate(size)
	}
	return nil
}

func allZero(b []byte) bool {
	for len(b) >= 8 {
		if b[0]|b[1]|b[2]|b[3]|b[4]|b[5]|b[6]|b[7] != 0 {
			return false
		}
		b = b[8:]
	}
	for _, c := range b {
		if c != 0 {
			return false
		}
	}
	return true
}

// meta applies owner, mode and times to base in pfd, never following a
// symlink.
func (x *extractor) meta(pfd int, base string, h *tar.Header, symlink bool) error {
	if x.root {
		if err := unix.Fchownat(pfd, base, h.Uid, h.Gid, unix.AT_SYMLINK_NOFOLLOW); err != nil {
			return fmt.Errorf("chown: %w", err)
		}
	}
	if !symlink {
		// The entry was just created by us as a non-symlink, so following is
		// moot; chmod after chown, which clears set-id bits.
		if err := unix.Fchmodat(pfd, base, uint32(h.Mode&0o7777), 0); err != nil {
			return fmt.Errorf("chmod: %w", err)
		}
		if x.root {
			// After chown, which drops a file capability.
			if err := setPAXXattrs(pfd, base, h); err != nil {
				return err
			}
		}
	}
	mt := h.ModTime
	at := h.AccessTime
	if at.IsZero() {
		at = mt
	}
	ts := []unix.Timespec{unix.NsecToTimespec(at.UnixNano()), unix.NsecToTimespec(mt.UnixNano())}
	if mt.IsZero() {
		ts = []unix.Timespec{unix.NsecToTimespec(0), unix.NsecToTimespec(0)}
	}
	if err := unix.UtimesNanoAt(pfd, base, ts, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		return fmt.Errorf("set times: %w", err)
	}
	return nil
}

// setPAXXattrs sets the security extended attributes a tar entry carries
// (PAX records SCHILY.xattr.NAME, as GNU tar --xattrs and container image
// layers write them) on base in pfd, a regular file or directory, so that
// the build records them (XattrManifest) like those of a directory tree.
func setPAXXattrs(pfd int, base string, h *tar.Header) error {
	var fd = -1
	defer func() {
		if fd >= 0 {
			unix.Close(fd)
		}
	}()
	for _, k := range sortedPAXKeys(h.PAXRecords) {
		name, ok := strings.CutPrefix(k, "SCHILY.xattr.")
		if !ok || !keepXattr(name) {
			continue
		}
		if fd < 0 {
			var err error
			if fd, err = unix.Openat(pfd, base, unix.O_RDONLY|unix.O_NOFOLLOW|unix.O_CLOEXEC|unix.O_NONBLOCK, 0); err != nil {
				return fmt.Errorf("setting %s: %w", name, err)
			}
		}
		if err := unix.Fsetxattr(fd, name, []byte(h.PAXRecords[k]), 0); err != nil {
			return fmt.Errorf("setting %s: %w", name, err)
		}
	}
	return nil
}

func sortedPAXKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// whiteout handles ".wh." entries of a layer.
func (x *extractor) whiteout(rel, base string, created map[string]struct{}) error {
	dir := path.Dir(rel)
	if base == ".wh..wh..opq" {
		fd, err := x.open(dir, unix.O_RDONLY|unix.O_DIRECTORY)
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		if err != nil {
			return fmt.Errorf("opaque whiteout: %w", err)
		}
		d := os.NewFile(uintptr(fd), dir)
		names, err := d.Readdirnames(-1)
		if err != nil {
			d.Close()
			return fmt.Errorf("opaque whiteout: %w", err)
		}
		for _, n := range names {
			child := n
			if dir != "." {
				child = dir + "/" + n
			}
			if _, ok := created[child]; ok {
				continue
			}
			if err := removeAt(fd, n); err != nil {
				d.Close()
				return err
			}
		}
		return d.Close()
	}
	victim := strings.TrimPrefix(base, ".wh.")
	if victim == "" || victim == "." || victim == ".." {
		return fmt.Errorf("bad whiteout name: %w", ErrUnsafePath)
	}
	fd, err := x.open(dir, unix.O_PATH|unix.O_DIRECTORY)
	if errors.Is(err, unix.ENOENT) || errors.Is(err, unix.ENOTDIR) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("whiteout: %w", err)
	}
	defer unix.Close(fd)
	return removeAt(fd, victim)
}

// open opens rel (a cleaned relative path) resolved inside the root.
func (x *extractor) open(rel string, flags uint64) (int, error) {
	for {
		fd, err := unix.Openat2(x.rootfd, rel, &unix.OpenHow{
			Flags:   flags | unix.O_CLOEXEC,
			Resolve: unix.RESOLVE_IN_ROOT | unix.RESOLVE_NO_MAGICLINKS,
		})
		if errors.Is(err, unix.EINTR) || errors.Is(err, unix.EAGAIN) {
			continue
		}
		return fd, err
	}
}

// parent opens the parent directory of rel inside the root (O_PATH),
// creating missing directories when create is set.
func (x *extractor) parent(rel string, create bool) (int, error) {
	dir := path.Dir(rel)
	fd, err := x.open(dir, unix.O_PATH|unix.O_DIRECTORY)
	if err == nil || !create || !errors.Is(err, unix.ENOENT) {
		if err != nil {
			return -1, fmt.Errorf("parent directory /%s: %w", dir, err)
		}
		return fd, nil
	}
	pfd, err := x.parent(dir, true)
	if err != nil {
		return -1, err
	}
	err = unix.Mkdirat(pfd, path.Base(dir), 0o755)
	unix.Close(pfd)
	if err != nil && !errors.Is(err, unix.EEXIST) {
		return -1, fmt.Errorf("mkdir /%s: %w", dir, err)
	}
	if err == nil {
		if _, ok := x.dirs[dir]; !ok {
			x.dirs[dir] = &tar.Header{Typeflag: tar.TypeDir, Mode: 0o755, ModTime: x.mtime}
		}
	}
	fd, err = x.open(dir, unix.O_PATH|unix.O_DIRECTORY)
	if err != nil {
		return -1, fmt.Errorf("parent directory /%s: %w", dir, err)
	}
	return fd, nil
}

// removeAt removes base in dirfd (recursively for a directory); a missing
// entry is fine. It never follows symlinks.
func removeAt(dirfd int, base string) error {
	var st unix.Stat_t
	if err := unix.Fstatat(dirfd, base, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil {
		if errors.Is(err, unix.ENOENT) {
			return nil
		}
		return fmt.Errorf("stat %s: %w", base, err)
	}
	if st.Mode&unix.S_IFMT != unix.S_IFDIR {
		if err := unix.Unlinkat(dirfd, base, 0); err != nil && !errors.Is(err, unix.ENOENT) {
			return fmt.Errorf("remove %s: %w", base, err)
		}
		return nil
	}
	fd, err := unix.Openat(dirfd, base, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open %s: %w", base, err)
	}
	d := os.NewFile(uintptr(fd), base)
	names, err := d.Readdirnames(-1)
	if err != nil {
		d.Close()
		return fmt.Errorf("read %s: %w", base, err)
	}
	for _, n := range names {
		if err := removeAt(fd, n); err != nil {
			d.Close()
			return err
		}
	}
	d.Close()
	if err := unix.Unlinkat(dirfd, base, unix.AT_REMOVEDIR); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("remove %s: %w", base, err)
	}
	return nil
}

// finish applies the metadata of directories, after their contents are in.
func (x *extractor) finish() error {
	for rel, h := range x.dirs {
		if err := x.dirMeta(rel, h); err != nil {
			return fmt.Errorf("directory /%s: %w", rel, err)
		}
	}
	return nil
}

func (x *extractor) dirMeta(rel string, h *tar.Header) error {
	pfd, base := x.rootfd, "."
	if rel != "." {
		fd, err := x.parent(rel, false)
		if err != nil {
			return nil // removed by a later layer
		}
		defer unix.Close(fd)
		pfd, base = fd, path.Base(rel)
	}
	var st unix.Stat_t
	if err := unix.Fstatat(pfd, base, &st, unix.AT_SYMLINK_NOFOLLOW); err != nil || st.Mode&unix.S_IFMT != unix.S_IFDIR {
		return nil
	}
	return x.meta(pfd, base, h, false)
}
