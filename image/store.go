package image

import (
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/klauspost/compress/zstd"
	"golang.org/x/sys/unix"

	"github.com/wwboot/wwboot/names"
)

// ErrNotFound is returned (possibly wrapped) for an image name the store
// does not hold.
var ErrNotFound = errors.New("image not found")

// ErrExists is the error (wrapped) of Store.Import with
// BuildOptions.NoReplace for a name the store already has.
var ErrExists = errors.New("image already exists")

// Meta is the record of a published image. Path and KernelPath are absolute
// paths of content-addressed files that never change once published.
type Meta struct {
	Name             string      `json:"name"`
	SHA256           string      `json:"sha256"`            // of the compressed image file
	Size             int64       `json:"size"`              // bytes of the compressed image file
	Path             string      `json:"path"`              // absolute path of the compressed image file
	Compression      Compression `json:"compression"`       // gzip, zstd or none
	Level            int         `json:"level"`             // compression level used
	UncompressedSize int64       `json:"uncompressed_size"` // bytes of the cpio archive
	// UnpackedSize is the RAM in bytes the image's tree takes once unpacked
	// on a node (see Result.UnpackedSize); 0 for an image built before
	// wwboot recorded it (MemUnpacked then estimates).
	UnpackedSize  int64     `json:"unpacked_size,omitempty"`
	KernelPath    string    `json:"kernel_path"`           // absolute path of the kernel copy in the store ("" if none)
	KernelSHA256  string    `json:"kernel_sha256"`         // of the kernel file
	KernelBytes   int64     `json:"kernel_size,omitempty"` // bytes of the kernel file
	KernelVersion string    `json:"kernel_version"`        // e.g. 6.1.0-13-amd64
	KernelSource  string    `json:"kernel_source"`         // where the kernel came from (path in the tree, or host path)
	Source        string    `json:"source"`                // what was imported: dir:PATH, tar:PATH, docker-archive:PATH
	Root          string    `json:"root"`                  // the tree the image is built from
	Files         int64     `json:"files"`                 // entries in the archive
	BuiltAt       time.Time `json:"built_at"`              // when the archive was written
	Excludes      []string  `json:"excludes,omitempty"`
	NoDefaultExcl bool      `json:"no_default_excludes,omitempty"`
	KeepHostFiles bool      `json:"keep_host_files,omitempty"` // built with Options.KeepHostFiles
	KernelOption  string    `json:"kernel_option,omitempty"`   // --kernel as given
	// Fingerprint identifies the tree metadata and options the image was
	// built from; empty when the tree was being modified during the build.
	Fingerprint string `json:"fingerprint,omitempty"`
}

// MemUnpacked returns the RAM in bytes m's tree takes once unpacked:
// UnpackedSize, or for an older record the archive size plus EntryOverhead
// and half a page per entry (the average page rounding).
func (m Meta) MemUnpacked() int64 {
	if m.UnpackedSize > 0 {
		return m.UnpackedSize
	}
	return m.UncompressedSize + m.Files*(EntryOverhead+PageSize/2)
}

// KernelSize returns the size in bytes of m's kernel file: KernelBytes, or
// for an older record the file's size in the store (0 when there is none).
func (m Meta) KernelSize() int64 {
	if m.KernelBytes > 0 || m.KernelPath == "" {
		return m.KernelBytes
	}
	fi, err := os.Stat(m.KernelPath)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// Store is a directory of named images: content-addressed files under
// blobs/ (sha256-HEX.cpio.gz, sha256-HEX.vmlinuz), trees of imported archives
// under roots/NAME, and index.json, the metadata of every image, replaced
// atomically (temporary file, fsync, rename) under an flock, so concurrent
// writers in several processes are safe and a reader sees either the old or
// the new record, never a half-written image.
//
// A replaced or deleted image's files stay in place (listed as retired in the
// index) so that transfers under way and readers holding an older record can
// finish; Prune removes retired files after a grace period.
//
// Lookup is served from memory and is safe for concurrent use; it notices
// another process's publish by checking the index file's identity at most
// once a second.
type Store struct {
	dir string

	mu      sync.Mutex
	idx     index
	stamp   fileStamp
	checked time.Time
}

type index struct {
	Version int             `json:"version"`
	Images  map[string]Meta `json:"images"`
	Retired []retired       `json:"retired,omitempty"`
}

type retired struct {
	File string    `json:"file"` // name under blobs/
	At   time.Time `json:"at"`
}

type fileStamp struct {
	ino, size int64
	mtime     int64
}

const (
	indexName   = "index.json"
	lockName    = ".lock"
	blobsDir    = "blobs"
	rootsDir    = "roots"
	tmpDir      = "tmp"
	checkPeriod = time.Second
)

// ValidName reports whether name can name an image: the one naming rule of
// package names (Warewulf's image.ValidName, internal/pkg/image/util.go:
// letters, digits, '_', '-', '.', ':'), so "rocky8:8.x" is an image name
// here as it is in nodes.conf.
func ValidName(name string) error { return names.Check("image", name) }

// OpenStore opens (creating if needed) the image store in dir.
func OpenStore(dir string) (*Store, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("image store %s: %w", dir, err)
	}
	for _, d := range []string{abs, filepath.Join(abs, blobsDir), filepath.Join(abs, rootsDir), filepath.Join(abs, tmpDir)} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return nil, fmt.Errorf("image store: %w", err)
		}
	}
	s := &Store{dir: abs}
	s.mu.Lock()
	err = s.reloadLocked(true)
	s.mu.Unlock()
	if err != nil {
		return nil, err
	}
	_, _, _ = s.Sweep(context.Background()) // what killed writers left; see Sweep
	return s, nil
}

// Dir returns the store's absolute directory.
func (s *Store) Dir() string { return s.dir }

// Lookup returns the record of the named image from memory, or ErrNotFound.
func (s *Store) Lookup(ctx context.Context, name string) (Meta, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if time.Since(s.checked) >= checkPeriod {
		if err := s.reloadLocked(false); err != nil {
			// Keep serving the last good index.
			_ = err
		}
	}
	m, ok := s.idx.Images[name]
	if !ok {
		return Meta{}, fmt.Errorf("image %q: %w", name, ErrNotFound)
	}
	return s.abs(m), nil
}

// List returns all image records sorted by name, re-reading the index.
func (s *Store) List(ctx context.Context) ([]Meta, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if err := s.reloadLocked(false); err != nil {
		return nil, err
	}
	out := make([]Meta, 0, len(s.idx.Images))
	for _, m := range s.idx.Images {
		out = append(out, s.abs(m))
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out, nil
}

// reloadLocked re-reads the index when its identity changed (or always).
func (s *Store) reloadLocked(force bool) error {
	s.checked = time.Now()
	p := filepath.Join(s.dir, indexName)
	var st syscall.Stat_t
	if err := syscall.Stat(p, &st); err != nil {
		if errors.Is(err, syscall.ENOENT) {
			s.idx = index{Version: 1, Images: map[string]Meta{}}
			s.stamp = fileStamp{}
			return nil
		}
		return fmt.Errorf("image store index %s: %w", p, err)
	}
	stamp := fileStamp{ino: int64(st.Ino), size: st.Size, mtime: st.Mtim.Nano()}
	if !force && stamp == s.stamp {
		return nil
	}
	idx, err := readIndex(p)
	if err != nil {
		return err
	}
	s.idx, s.stamp = idx, stamp
	return nil
}

func readIndex(p string) (index, error) {
	b, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return index{Version: 1, Images: map[string]Meta{}}, nil
	}
	if err != nil {
		return index{}, fmt.Errorf("image store index: %w", err)
	}
	var idx index
	if err := json.Unmarshal(b, &idx); err != nil {
		return index{}, fmt.Errorf("image store index %s: %w: restore it from a backup or delete it and re-import the images", p, err)
	}
	if idx.Images == nil {
		idx.Images = map[string]Meta{}
	}
	return idx, nil
}

// abs turns the store-relative file names of a stored record into absolute
// paths.
func (s *Store) abs(m Meta) Meta {
	if m.Path != "" && !filepath.IsAbs(m.Path) {
		m.Path = filepath.Join(s.dir, m.Path)
	}
	if m.KernelPath != "" && !filepath.IsAbs(m.KernelPath) {
		m.KernelPath = filepath.Join(s.dir, m.KernelPath)
	}
	if m.Root != "" && !filepath.IsAbs(m.Root) {
		m.Root = filepath.Join(s.dir, m.Root)
	}
	m.Excludes = append([]string(nil), m.Excludes...)
	return m
}

func (s *Store) rel(m Meta) Meta {
	for _, p := range []*string{&m.Path, &m.KernelPath, &m.Root} {
		if r, err := filepath.Rel(s.dir, *p); err == nil && *p != "" && !strings.HasPrefix(r, "..") {
			*p = r
		}
	}
	return m
}

// update runs fn on a fresh copy of the index under the store's exclusive
// lock and publishes the result atomically.
func (s *Store) update(fn func(*index) error) error {
	lf, err := os.OpenFile(filepath.Join(s.dir, lockName), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return fmt.Errorf("image store lock: %w", err)
	}
	defer lf.Close()
	if err := unix.Flock(int(lf.Fd()), unix.LOCK_EX); err != nil {
		return fmt.Errorf("image store lock: %w", err)
	}
	defer unix.Flock(int(lf.Fd()), unix.LOCK_UN)
	p := filepath.Join(s.dir, indexName)
	idx, err := readIndex(p)
	if err != nil {
		return err
	}
	idx.Version = 1
	if err := fn(&idx); err != nil {
		return err
	}
	b, err := json.MarshalIndent(idx, "", "  ")
	if err != nil {
		return err
	}
	if err := writeFileAtomic(p, append(b, '\n')); err != nil {
		return fmt.Errorf("image store index: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.reloadLocked(true)
}

func writeFileAtomic(p string, b []byte) error {
	f, err := os.CreateTemp(filepath.Dir(p), "."+filepath.Base(p)+".tmp-*")
	if err != nil {
		return err
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(b); err != nil {
		f.Close()
		return err
	}
	if err := f.Chmod(0o644); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(f.Name(), p); err != nil {
		return err
	}
	return syncDir(filepath.Dir(p))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	return d.Sync()
}

// BuildOptions control Store.Import and Store.Build.
type BuildOptions struct {
	// Options are the tree-to-archive options. For Store.Build, zero
	// fields (Compression "", Level 0, Excludes nil) keep what the image
	// was last built with.
	Options
	// Kernel names the kernel: a path inside the tree (e.g.
	// /boot/vmlinuz-6.1.0-13-amd64) or, if no such file is in the tree, a
	// file on the host. Empty means the image's previous choice, or
	// DefaultKernel.
	Kernel string
	// Force rebuilds even when the tree is unchanged.
	Force bool
	// NoReplace makes Store.Import refuse a name the store already has
	// (ErrExists, wrapped with the existing image's source), before it
	// touches anything: no archive is unpacked, no tree or record
	// replaced. Store.Build ignores it.
	NoReplace bool
	// DropHostFiles undoes an earlier build's KeepHostFiles: Store.Build
	// keeps per-host files when the image was last built keeping them,
	// unless this is set.
	DropHostFiles bool
}

// BuildResult says what Store.Build did.
type BuildResult struct {
	Meta
	// Rebuilt is false when the tree and options were unchanged and the
	// published image was kept (one metadata walk, no compression).
	Rebuilt bool
	// HostFilesOut and HostFilesEmptied list the per-host files the build
	// left out or archived empty (see DefaultHostFiles); empty when not
	// Rebuilt.
	HostFilesOut, HostFilesEmptied []string
	// Xattrs are the files whose security extended attributes (file
	// capabilities) the build recorded in XattrManifest, to be restored
	// on the node at boot; empty when not Rebuilt.
	Xattrs []string
}

// Import makes the image name from src: a directory (the image is built from
// it in place; it is not copied) or an archive file (see ImportArchive),
// which is unpacked into the store's roots/NAME, replacing an earlier import.
// The image is then built and published.
func (s *Store) Import(ctx context.Context, src, name string, opts BuildOptions) (BuildResult, error) {
	if err := ValidName(name); err != nil {
		return BuildResult{}, err
	}
	abs, err := filepath.Abs(src)
	if err != nil {
		return BuildResult{}, err
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return BuildResult{}, fmt.Errorf("import source: %w", err)
	}
	release, err := s.begin(ctx)
	if err != nil {
		return BuildResult{}, err
	}
	defer release()
	if opts.NoReplace {
		if m, err := s.Lookup(ctx, name); err == nil {
			return BuildResult{}, fmt.Errorf("image %s: %w (imported from %s, built %s)", name, ErrExists, m.Source, m.BuiltAt.Format(time.DateTime))
		}
	}
	root, source := abs, "dir:"+abs
	if !fi.IsDir() {
		final := filepath.Join(s.dir, rootsDir, name)
		tmp, err := os.MkdirTemp(filepath.Join(s.dir, rootsDir), "."+name+".new-")
		if err != nil {
			return BuildResult{}, fmt.Errorf("import: %w", err)
		}
		_, desc, err := ImportArchive(ctx, abs, tmp, ExtractOptions{Log: opts.Log})
		if err != nil {
			_ = removeTree(tmp)
			return BuildResult{}, fmt.Errorf("importing %s: %w", src, err)
		}
		if _, err := os.Lstat(final); err == nil {
			old := filepath.Join(s.dir, rootsDir, fmt.Sprintf(".%s.old-%d", name, time.Now().UnixNano()))
			if err := os.Rename(final, old); err != nil {
				_ = removeTree(tmp)
				return BuildResult{}, fmt.Errorf("import: replacing %s: %w", final, err)
			}
			defer removeTree(old)
		}
		if err := os.Rename(tmp, final); err != nil {
			_ = removeTree(tmp)
			return BuildResult{}, fmt.Errorf("import: %w", err)
		}
		root, source = final, desc
	}
	var prev *Meta
	if m, err := s.Lookup(ctx, name); err == nil {
		prev = &m
	}
	res, err := s.build(ctx, name, root, source, prev, opts)
	if err == nil && prev != nil && prev.Root != root && prev.Root == filepath.Join(s.dir, rootsDir, name) {
		// A directory replaced an earlier archive import: drop its tree.
		_ = removeTree(prev.Root)
	}
	return res, err
}

// Build rebuilds the image name from its tree. When the tree's metadata
// and the options match those recorded at the last build (see
// Stats.Fingerprint) and the files are in place, nothing is compressed and
// the record is returned with Rebuilt false.
func (s *Store) Build(ctx context.Context, name string, opts BuildOptions) (BuildResult, error) {
	release, err := s.begin(ctx)
	if err != nil {
		return BuildResult{}, err
	}
	defer release()
	prev, err := s.Lookup(ctx, name)
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return BuildResult{}, fmt.Errorf("image %q: %w: import it first (wwboot image import SRC %s)", name, ErrNotFound, name)
		}
		return BuildResult{}, err
	}
	return s.build(ctx, name, prev.Root, prev.Source, &prev, opts)
}

func (s *Store) build(ctx context.Context, name, root, source string, prev *Meta, bo BuildOptions) (BuildResult, error) {
	o := bo.Options
	if prev != nil {
		if o.Compression == "" {
			o.Compression = prev.Compression
			if o.Level == 0 {
				o.Level = prev.Level
			}
		}
		if o.Excludes == nil {
			o.Excludes = prev.Excludes
			o.NoDefaultExcludes = o.NoDefaultExcludes || prev.NoDefaultExcl
		}
		if bo.Kernel == "" {
			bo.Kernel = prev.KernelOption
		}
		o.KeepHostFiles = o.KeepHostFiles || (prev.KeepHostFiles && !bo.DropHostFiles)
	}
	fsys := os.DirFS(root)
	o.XattrRoot = root
	kern, kernFile, err := s.kernelFor(fsys, root, bo.Kernel)
	if err != nil {
		return BuildResult{}, err
	}
	if o.Compression == "" {
		o.Compression = DefaultCompression(fsys, kern.Version)
	}
	if o.Level == 0 {
		o.Level = o.Compression.DefaultLevel()
	}
	kid, err := fileIdentity(kernFile)
	if err != nil {
		return BuildResult{}, err
	}
	if prev != nil && !bo.Force && prev.Fingerprint != "" && prev.Root == root {
		st, err := Scan(ctx, fsys, o)
		if err != nil {
			return BuildResult{}, err
		}
		if st.Fingerprint != "" && combine(st.Fingerprint, kid) == prev.Fingerprint && exists(prev.Path) && (prev.KernelPath == "" || exists(prev.KernelPath)) {
			return BuildResult{Meta: *prev}, nil
		}
		o.Expect = st
	} else if o.Progress != nil {
		st, err := Scan(ctx, fsys, o)
		if err != nil {
			return BuildResult{}, err
		}
		o.Expect = st
	}

	tmp, err := os.CreateTemp(filepath.Join(s.dir, tmpDir), name+".*"+o.Compression.Ext())
	if err != nil {
		return BuildResult{}, fmt.Errorf("image %s: %w", name, err)
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	builtAt := time.Now().UTC().Truncate(time.Second)
	res, err := Build(ctx, tmp, fsys, o)
	if err != nil {
		return BuildResult{}, fmt.Errorf("building image %s from %s: %w", name, root, err)
	}
	imgName := "sha256-" + res.SHA256 + o.Compression.Ext()
	if err := s.commitBlob(tmp, imgName); err != nil {
		return BuildResult{}, err
	}
	m := Meta{
		Name: name, SHA256: res.SHA256, Size: res.Size, Path: filepath.Join(s.dir, blobsDir, imgName),
		Compression: o.Compression, Level: o.Level, UncompressedSize: res.UncompressedSize, UnpackedSize: res.UnpackedSize,
		Source: source, Root: root, Files: res.Files, BuiltAt: builtAt,
		Excludes: o.Excludes, NoDefaultExcl: o.NoDefaultExcludes, KernelOption: bo.Kernel,
		KeepHostFiles: o.KeepHostFiles,
	}
	if res.Fingerprint != "" {
		m.Fingerprint = combine(res.Fingerprint, kid)
	}
	if kernFile != "" {
		sum, blob, err := s.storeKernel(kernFile)
		if err != nil {
			return BuildResult{}, err
		}
		m.KernelPath, m.KernelSHA256, m.KernelVersion, m.KernelSource = blob, sum, kern.Version, kern.Path
		if fi, err := os.Stat(blob); err == nil {
			m.KernelBytes = fi.Size()
		}
	} else if o.Log != nil {
		o.Log.Warn("image: no kernel found; nodes need one to boot", "image", name, "root", root)
	}
	err = s.update(func(idx *index) error {
		if old, ok := idx.Images[name]; ok {
			idx.Images[name] = s.rel(m)
			s.retire(idx, old)
		} else {
			idx.Images[name] = s.rel(m)
		}
		return nil
	})
	if err != nil {
		return BuildResult{}, err
	}
	return BuildResult{Meta: m, Rebuilt: true, HostFilesOut: res.HostFilesOut, HostFilesEmptied: res.HostFilesEmptied, Xattrs: res.Xattrs}, nil
}

func combine(treeFP, kernelID string) string {
	h := sha256.Sum256([]byte(treeFP + "\x00" + kernelID))
	return hex.EncodeToString(h[:])
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// fileIdentity describes a file's metadata for change detection.
func fileIdentity(p string) (string, error) {
	if p == "" {
		return "", nil
	}
	var st unix.Stat_t
	if err := unix.Stat(p, &st); err != nil {
		return "", fmt.Errorf("kernel %s: %w", p, err)
	}
	return fmt.Sprintf("%s\x00%d\x00%d\x00%d\x00%d\x00%d", p, st.Size, st.Mtim.Nano(), st.Ctim.Nano(), st.Ino, st.Dev), nil
}

// kernelFor resolves the kernel option to a Kernel (path as described) and a
// host file path; an empty host path means no kernel.
func (s *Store) kernelFor(fsys fs.FS, root, opt string) (Kernel, string, error) {
	if opt == "" {
		k, err := DefaultKernel(fsys)
		if err != nil {
			return Kernel{}, "", nil
		}
		return k, filepath.Join(root, filepath.FromSlash(k.Path)), nil
	}
	if real, fi, err := resolveInTree(fsys, strings.TrimPrefix(filepath.ToSlash(opt), "/")); err == nil && fi.Mode().IsRegular() {
		host := filepath.Join(root, filepath.FromSlash(real))
		return Kernel{Path: "/" + real, Version: kernelVersion(host, real), Size: fi.Size()}, host, nil
	}
	fi, err := os.Stat(opt)
	if err != nil || !fi.Mode().IsRegular() {
		// A version, as a node's kernel version names one in Warewulf
		// (collection.Version: the first kernel whose version starts so).
		if ks, err := FindKernels(fsys); err == nil {
			if k, ok := KernelByVersion(ks, opt); ok {
				return k, filepath.Join(root, filepath.FromSlash(k.Path)), nil
			}
		}
		return Kernel{}, "", fmt.Errorf("--kernel %s: not a file in the image, a file on this host, nor the version of a kernel in the image (see wwboot image kernels)", opt)
	}
	abs, _ := filepath.Abs(opt)
	return Kernel{Path: abs, Version: kernelVersion(abs, abs), Size: fi.Size()}, abs, nil
}

// kernelVersion takes the version from a vmlinuz-VERSION name or from the
// bzImage header (the kernel_version string the setup header points to).
func kernelVersion(file, name string) string {
	if v := versionFromPath(filepath.ToSlash(name)); v != "" {
		return v
	}
	if filepath.Base(name) == "vmlinuz" {
		if d := filepath.Base(filepath.Dir(name)); d != "." && d != "/" && filepath.Base(filepath.Dir(filepath.Dir(name))) == "modules" {
			return d
		}
	}
	f, err := os.Open(file)
	if err != nil {
		return ""
	}
	defer f.Close()
	var hdr [0x210]byte
	if _, err := f.ReadAt(hdr[:], 0); err != nil || string(hdr[0x202:0x206]) != "HdrS" {
		return ""
	}
	off := int64(binary.LittleEndian.Uint16(hdr[0x20e:])) + 0x200
	var v [128]byte
	n, _ := f.ReadAt(v[:], off)
	str := string(v[:n])
	if i := strings.IndexAny(str, " \x00"); i >= 0 {
		str = str[:i]
	}
	return str
}

// commitBlob fsyncs tmp and renames it to blobs/name (content addressed: if
// the name exists, the content is the same and tmp is dropped).
func (s *Store) commitBlob(tmp *os.File, name string) error {
	if err := tmp.Chmod(0o644); err != nil {
		return err
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("image store: %w", err)
	}
	dst := filepath.Join(s.dir, blobsDir, name)
	if exists(dst) {
		// Refresh its mtime: Prune measures unreferenced time from it.
		now := time.Now()
		_ = os.Chtimes(dst, now, now)
		return nil
	}
	if err := os.Rename(tmp.Name(), dst); err != nil {
		return fmt.Errorf("image store: %w", err)
	}
	return syncDir(filepath.Join(s.dir, blobsDir))
}

func (s *Store) storeKernel(src string) (sum, path string, err error) {
	in, err := os.Open(src)
	if err != nil {
		return "", "", fmt.Errorf("kernel: %w", err)
	}
	defer in.Close()
	r, err := decompressKernel(in)
	if err != nil {
		return "", "", fmt.Errorf("kernel %s: %w", src, err)
	}
	tmp, err := os.CreateTemp(filepath.Join(s.dir, tmpDir), "kernel.*")
	if err != nil {
		return "", "", err
	}
	defer os.Remove(tmp.Name())
	defer tmp.Close()
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(tmp, h), io.LimitReader(r, maxKernelSize+1))
	if err != nil {
		return "", "", fmt.Errorf("copying kernel %s: %w", src, err)
	}
	if n > maxKernelSize {
		return "", "", fmt.Errorf("kernel %s: more than %d MiB uncompressed: not a kernel", src, maxKernelSize>>20)
	}
	sum = hex.EncodeToString(h.Sum(nil))
	name := "sha256-" + sum + ".vmlinuz"
	if err := s.commitBlob(tmp, name); err != nil {
		return "", "", err
	}
	return sum, filepath.Join(s.dir, blobsDir, name), nil
}

// maxKernelSize bounds an uncompressed kernel (a decompression bomb in an
// image must not fill the disk).
const maxKernelSize = 512 << 20

// decompressKernel returns r's content, decompressed when the whole file
// is gzip- or zstd-compressed (vmlinuz.gz under lib/modules on SUSE's
// aarch64 images, vmlinuz-VER.zst): firmware and iPXE boot the
// uncompressed kernel; a bzImage or arm64 Image is passed on as it is.
func decompressKernel(f *os.File) (io.Reader, error) {
	var magic [4]byte
	n, _ := f.ReadAt(magic[:], 0)
	switch {
	case n >= 2 && magic[0] == 0x1f && magic[1] == 0x8b:
		return gzip.NewReader(f)
	case n == 4 && magic == [4]byte{0x28, 0xb5, 0x2f, 0xfd}:
		d, err := zstd.NewReader(f, zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, err
		}
		return d.IOReadCloser(), nil
	}
	return f, nil
}

// retire marks the files of an old record that no image references any more.
func (s *Store) retire(idx *index, old Meta) {
	refs := map[string]bool{}
	for _, m := range idx.Images {
		refs[filepath.Base(m.Path)] = true
		refs[filepath.Base(m.KernelPath)] = true
	}
	now := time.Now().UTC()
	for _, p := range []string{old.Path, old.KernelPath} {
		if p == "" || refs[filepath.Base(p)] {
			continue
		}
		idx.Retired = append(idx.Retired, retired{File: filepath.Base(p), At: now})
	}
}

// Delete removes the image's record; its files are retired (see Prune) and
// the tree unpacked by Import from an archive is removed. A directory that
// was imported in place is left alone.
func (s *Store) Delete(ctx context.Context, name string) error {
	release, err := s.begin(ctx)
	if err != nil {
		return err
	}
	defer release()
	var root string
	err = s.update(func(idx *index) error {
		m, ok := idx.Images[name]
		if !ok {
			return fmt.Errorf("image %q: %w", name, ErrNotFound)
		}
		delete(idx.Images, name)
		s.retire(idx, m)
		root = s.abs(m).Root
		return nil
	})
	if err != nil {
		return err
	}
	if filepath.Dir(root) == filepath.Join(s.dir, rootsDir) && filepath.Base(root) == name {
		if err := removeTree(root); err != nil {
			return fmt.Errorf("removing the imported tree of %s: %w", name, err)
		}
	}
	return nil
}

// Prune sweeps the leftovers of killed imports and builds (see Sweep), then
// removes image and kernel files no image references once they have
// been unreferenced for at least grace (a file never recorded, e.g. left by
// a crashed build, counts from its mtime), and temporary files older than
// grace. It returns the paths removed. Readers that opened a file before it
// was removed keep reading it.
func (s *Store) Prune(ctx context.Context, grace time.Duration) ([]string, error) {
	removed, _, err := s.Sweep(ctx)
	if err != nil {
		return removed, err
	}
	err = s.update(func(idx *index) error {
		refs := map[string]bool{}
		for _, m := range idx.Images {
			refs[filepath.Base(m.Path)] = true
			refs[filepath.Base(m.KernelPath)] = true
		}
		since := map[string]time.Time{}
		for _, r := range idx.Retired {
			since[r.File] = r.At
		}
		ents, err := os.ReadDir(filepath.Join(s.dir, blobsDir))
		if err != nil {
			return err
		}
		now := time.Now()
		keep := idx.Retired[:0]
		present := map[string]bool{}
		for _, e := range ents {
			n := e.Name()
			present[n] = true
			if refs[n] {
				continue
			}
			t, ok := since[n]
			if !ok {
				fi, err := e.Info()
				if err != nil {
					continue
				}
				t = fi.ModTime()
			}
			if now.Sub(t) < grace {
				continue
			}
			p := filepath.Join(s.dir, blobsDir, n)
			if err := os.Remove(p); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return err
			}
			removed = append(removed, p)
			present[n] = false
		}
		for _, r := range idx.Retired {
			if present[r.File] && !refs[r.File] {
				keep = append(keep, r)
			}
		}
		idx.Retired = keep
		tents, _ := os.ReadDir(filepath.Join(s.dir, tmpDir))
		for _, e := range tents {
			if fi, err := e.Info(); err == nil && now.Sub(fi.ModTime()) >= grace && grace > 0 {
				p := filepath.Join(s.dir, tmpDir, e.Name())
				if os.Remove(p) == nil {
					removed = append(removed, p)
				}
			}
		}
		return nil
	})
	return removed, err
}

// removeTree removes a tree, making read-only directories writable first.
func removeTree(p string) error {
	err := os.RemoveAll(p)
	if err == nil {
		return nil
	}
	_ = filepath.WalkDir(p, func(q string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			_ = os.Chmod(q, 0o700)
		}
		return nil
	})
	return os.RemoveAll(p)
}
