package image

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"strconv"
	"syscall"
	"time"

	"github.com/u-root/u-root/pkg/cpio"
	"golang.org/x/sys/unix"
)

// Options control how a tree becomes an image. The zero value builds a
// gzip image at level 6 on all cores with the default excludes.
type Options struct {
	// Compression is the output format; "" means Gzip.
	Compression Compression
	// Level is the compression level (gzip 1-9, zstd 1-22); 0 means the
	// format's default.
	Level int
	// Concurrency is the number of compression goroutines; 0 means GOMAXPROCS.
	Concurrency int
	// Excludes are extra exclude patterns (see Excluder), applied after
	// the defaults and the image's own /etc/warewulf/excludes.
	Excludes []string
	// NoDefaultExcludes drops DefaultExcludes.
	NoDefaultExcludes bool
	// NoImageExcludes ignores the tree's /etc/warewulf/excludes.
	NoImageExcludes bool
	// KeepHostFiles archives the per-host files (DefaultHostFiles) as they
	// are in the tree. Without it they are left out or emptied; a
	// "!PATTERN" in the image's excludes file or in Excludes keeps one.
	KeepHostFiles bool
	// MTimeClamp, when not zero, caps mtimes as SOURCE_DATE_EPOCH does.
	MTimeClamp time.Time
	// Progress, when not nil, is called from the building goroutine at
	// most every ProgressInterval and once at the end (Done set).
	Progress func(Progress)
	// ProgressInterval is the minimum time between Progress calls; 0
	// means 100ms.
	ProgressInterval time.Duration
	// Expect fills Progress totals (TotalFiles, TotalBytes), typically
	// from an earlier Scan. Zero values mean unknown.
	Expect Stats
	// Log receives debug messages (skipped entries); nil discards them.
	Log *slog.Logger
	// XattrRoot is the host directory fsys reads (BuildDir and the Store
	// set it). When set, the security extended attributes of the tree's
	// files and directories (file capabilities...) are recorded in the
	// archive's XattrManifest, which newc cannot carry otherwise.
	XattrRoot string
}

// Progress reports how far a build is.
type Progress struct {
	Files      int64  // entries archived so far
	Bytes      int64  // bytes of file content archived so far
	TotalFiles int64  // expected entries (0 = unknown)
	TotalBytes int64  // expected content bytes (0 = unknown)
	Path       string // the entry being archived
	Elapsed    time.Duration
	Done       bool // the last call
}

// Stats describe a tree as an image would hold it.
type Stats struct {
	Files int64 // entries (files, directories, links, nodes) included
	Bytes int64 // content bytes of regular files and symlinks included
	// Fingerprint hashes the metadata of every included entry (path,
	// type, mode, owner, size, mtime and ctime in nanoseconds, inode,
	// device, link count, symlink target) and the build options. It is
	// empty when the tree cannot be trusted to be unchanged: an entry was
	// modified less than a second before the walk began, or the file
	// system gives no change times.
	Fingerprint string
}

// Result describes a finished build.
type Result struct {
	Stats
	// UncompressedSize is the size of the cpio archive.
	UncompressedSize int64
	// UnpackedSize is the RAM (bytes) the tree takes once the kernel has
	// unpacked it into rootfs: file data in whole pages (PageSize), hard
	// links once, long symlink targets a page, plus EntryOverhead per entry.
	UnpackedSize int64
	// Size is the number of bytes written to the output.
	Size int64
	// SHA256 is the hex SHA-256 of the bytes written to the output.
	SHA256 string
	// Excludes are the patterns that were in force, in order.
	Excludes []string
	// HostFilesOut are the per-host files (and directories) left out,
	// and HostFilesEmptied those archived empty, as "/path", in walk order.
	HostFilesOut, HostFilesEmptied []string
	// Xattrs are the paths ("/usr/bin/ping") whose security extended
	// attributes were recorded in XattrManifest, in walk order.
	Xattrs []string
}

// fingerprintVersion changes whenever the archive layout produced from the
// same tree changes, invalidating earlier fingerprints.
const fingerprintVersion = "wwboot-image-3"

// BuildDir builds the tree at dir into w. See Build.
func BuildDir(ctx context.Context, w io.Writer, dir string, opts Options) (Result, error) {
	fi, err := os.Stat(dir)
	if err != nil {
		return Result{}, fmt.Errorf("image root: %w", err)
	}
	if !fi.IsDir() {
		return Result{}, fmt.Errorf("image root %s: not a directory", dir)
	}
	if opts.XattrRoot == "" {
		opts.XattrRoot = dir
	}
	return Build(ctx, w, os.DirFS(dir), opts)
}

// Build writes the tree in fsys as a compressed newc cpio archive to w, as a
// stream: entries are visited depth first in name order and file contents
// are copied straight into the compressor, so memory does not grow with the
// size of the tree. Owners, modes, device numbers and symlinks are taken from
// the entries' fs.FileInfo (Sys() of type *syscall.Stat_t, as os.DirFS gives)
// and from fs.ReadLink; file systems without them give root-owned entries.
// Hard links (st_nlink > 1, same device and inode) carry their data once.
// An entry that cannot be read fails the build with an error naming it.
func Build(ctx context.Context, w io.Writer, fsys fs.FS, opts Options) (Result, error) {
	var res Result
	comp := opts.Compression
	if comp == "" {
		comp = Gzip
	}
	ex, err := excluderFor(fsys, opts)
	if err != nil {
		return res, err
	}
	res.Excludes = ex.Patterns()

	out := &hashCounter{w: w, h: sha256.New()}
	zw, err := NewCompressor(out, comp, opts.Level, opts.Concurrency)
	if err != nil {
		return res, err
	}
	bw := bufio.NewWriterSize(zw, 256<<10)
	cw := NewWriter(bw, WriterOptions{MTimeClamp: opts.MTimeClamp})

	fp := newFingerprinter(opts, comp, res.Excludes)
	interval := opts.ProgressInterval
	if interval <= 0 {
		interval = 100 * time.Millisecond
	}
	start := time.Now()
	var last time.Time
	prog := Progress{TotalFiles: opts.Expect.Files, TotalBytes: opts.Expect.Bytes}
	var ram ramCounter

	hostOut := func(name string, emptied bool) {
		if emptied {
			res.HostFilesEmptied = append(res.HostFilesEmptied, "/"+name)
		} else {
			res.HostFilesOut = append(res.HostFilesOut, "/"+name)
		}
	}
	var xattrs []Xattr
	var xattrTime time.Time // the manifest's mtime: its newest file's, so builds stay reproducible
	err = walk(ctx, fsys, ex, hostOut, func(e *entry) error {
		if e.name == XattrManifest {
			return nil // written anew below
		}
		if err := writeEntry(fsys, cw, e, opts.Log); err != nil {
			return err
		}
		if opts.XattrRoot != "" && (e.info.Mode().IsRegular() || e.info.IsDir()) {
			xs, err := readXattrs(opts.XattrRoot, e.name)
			if err != nil {
				return err
			}
			if len(xs) > 0 {
				xattrs = append(xattrs, xs...)
				res.Xattrs = append(res.Xattrs, "/"+e.name)
				if mt := e.info.ModTime(); mt.After(xattrTime) {
					xattrTime = mt
				}
			}
		}
		fp.add(e)
		ram.add(e)
		prog.Files++
		prog.Bytes += e.contentSize()
		if opts.Progress != nil {
			if now := time.Now(); now.Sub(last) >= interval {
				last = now
				prog.Path, prog.Elapsed = e.name, now.Sub(start)
				opts.Progress(prog)
			}
		}
		return nil
	})
	if err != nil {
		return res, err
	}
	if len(xattrs) > 0 {
		var m bytes.Buffer
		if err := WriteXattrManifest(&m, xattrs); err != nil {
			return res, err
		}
		if err := cw.WriteFile(XattrManifest, 0o644, 0, 0, xattrTime, m.Bytes()); err != nil {
			return res, fmt.Errorf("writing /%s: %w", XattrManifest, err)
		}
	}
	if err := cw.Close(); err != nil {
		return res, err
	}
	if err := bw.Flush(); err != nil {
		return res, fmt.Errorf("compressing image: %w", err)
	}
	if err := zw.Close(); err != nil {
		return res, fmt.Errorf("compressing image: %w", err)
	}
	res.Stats = fp.stats()
	res.UncompressedSize = cw.Written()
	res.UnpackedSize = ram.total
	res.Size = out.n
	res.SHA256 = hex.EncodeToString(out.h.Sum(nil))
	if opts.Progress != nil {
		prog.Path, prog.Elapsed, prog.Done = "", time.Since(start), true
		opts.Progress(prog)
	}
	return res, nil
}

// Scan walks the tree in fsys with the excludes of opts and returns what a
// build would archive, without reading file contents: one metadata walk.
// Its Fingerprint equals the one a Build of the unchanged tree with the same
// options reports.
func Scan(ctx context.Context, fsys fs.FS, opts Options) (Stats, error) {
	comp := opts.Compression
	if comp == "" {
		comp = Gzip
	}
	ex, err := excluderFor(fsys, opts)
	if err != nil {
		return Stats{}, err
	}
	fp := newFingerprinter(opts, comp, ex.Patterns())
	err = walk(ctx, fsys, ex, nil, func(e *entry) error {
		if e.info.Mode()&fs.ModeSymlink != 0 {
			t, err := fs.ReadLink(fsys, e.name)
			if err != nil {
				return fmt.Errorf("reading symlink /%s: %w", e.name, err)
			}
			e.target = t
		}
		fp.add(e)
		return nil
	})
	if err != nil {
		return Stats{}, err
	}
	return fp.stats(), nil
}

func excluderFor(fsys fs.FS, opts Options) (*Excluder, error) {
	ex := &Excluder{}
	if !opts.NoDefaultExcludes {
		if err := ex.Add("default excludes", DefaultExcludes()...); err != nil {
			return nil, err
		}
	}
	if !opts.KeepHostFiles {
		if err := ex.AddHostFiles(DefaultHostFiles()...); err != nil {
			return nil, err
		}
	}
	if !opts.NoImageExcludes {
		rel := ExcludesFile[1:]
		// Resolved inside the tree, element by element (as the kernel
		// is): an etc or etc/warewulf that links out of the tree
		// (os.DirFS would follow it) must not make the build read a
		// server file; links inside the tree still work.
		if real, fi, err := resolveInTree(fsys, rel); err == nil && fi.Mode().IsRegular() {
			rel = real
			if fi.Size() > 1<<20 {
				return nil, fmt.Errorf("%s of the image is %d bytes: an excludes file holds patterns, one a line; shrink it below 1 MiB", ExcludesFile, fi.Size())
			}
			b, err := fs.ReadFile(fsys, rel)
			if err != nil {
				return nil, fmt.Errorf("reading %s of the image: %w", ExcludesFile, err)
			}
			if err := ex.AddFile(ExcludesFile, b); err != nil {
				return nil, err
			}
		}
	}
	if err := ex.Add("--exclude", opts.Excludes...); err != nil {
		return nil, err
	}
	return ex, nil
}

// entry is one file of the tree being walked.
type entry struct {
	name   string // slash path relative to the root, no leading "/"
	info   fs.FileInfo
	st     *syscall.Stat_t // nil when the file system gives none
	target string          // symlink target, filled by writeEntry/Scan
	empty  bool            // a per-host regular file archived without content
}

func (e *entry) contentSize() int64 {
	switch e.info.Mode().Type() {
	case 0:
		if e.empty {
			return 0
		}
		return e.info.Size()
	case fs.ModeSymlink:
		return int64(len(e.target))
	}
	return 0
}

// walk calls fn for every included entry below the root, depth first, each
// directory's entries in name order (so parents precede children), and
// host (when not nil) for every per-host file left out or emptied. It holds
// only the entry lists of the directories on the current path.
func walk(ctx context.Context, fsys fs.FS, ex *Excluder, host func(name string, emptied bool), fn func(*entry) error) error {
	if host == nil {
		host = func(string, bool) {}
	}
	return walkDir(ctx, fsys, ".", ex, host, fn)
}

func walkDir(ctx context.Context, fsys fs.FS, dir string, ex *Excluder, host func(string, bool), fn func(*entry) error) error {
	ents, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return fmt.Errorf("reading directory /%s: %w", displayDir(dir), err)
	}
	for _, de := range ents {
		if err := ctx.Err(); err != nil {
			return err
		}
		name := de.Name()
		if dir != "." {
			name = dir + "/" + name
		}
		decision := ex.Decide(name, de.Type())
		switch decision {
		case Exclude:
			continue
		case HostOut:
			host(name, false)
			continue
		case HostZero:
			host(name, true)
		}
		info, err := de.Info()
		if err != nil {
			return fmt.Errorf("stat /%s: %w", name, err)
		}
		e := &entry{name: name, info: info, empty: decision == HostZero && info.Mode().IsRegular()}
		if st, ok := info.Sys().(*syscall.Stat_t); ok {
			e.st = st
		}
		if err := fn(e); err != nil {
			return err
		}
		if info.IsDir() {
			if err := walkDir(ctx, fsys, name, ex, host, fn); err != nil {
				return err
			}
		}
	}
	return nil
}

func displayDir(dir string) string {
	if dir == "." {
		return ""
	}
	return dir
}

// recordInfo turns an entry's metadata into a cpio header.
func recordInfo(e *entry) (cpio.Info, bool) {
	m := e.info.Mode()
	typ := unixType(m)
	if typ == 0 && m.Type() == fs.ModeSocket {
		typ = cpio.S_IFSOCK
	}
	if typ == 0 {
		return cpio.Info{}, false
	}
	info := cpio.Info{
		Name:  e.name,
		Mode:  typ | UnixMode(m),
		NLink: 1,
		MTime: NewcTime(e.info.ModTime()),
	}
	if st := e.st; st != nil {
		info.UID, info.GID = uint64(st.Uid), uint64(st.Gid)
		info.Mode = uint64(st.Mode) // exact bits, including ones fs.FileMode folds
		info.Ino, info.Dev, info.NLink = st.Ino, uint64(st.Dev), uint64(st.Nlink)
		if typ == cpio.S_IFBLK || typ == cpio.S_IFCHR {
			info.Rmajor = uint64(unix.Major(uint64(st.Rdev)))
			info.Rminor = uint64(unix.Minor(uint64(st.Rdev)))
		}
	}
	if typ != cpio.S_IFREG {
		info.NLink = 1
	}
	return info, true
}

func writeEntry(fsys fs.FS, cw *Writer, e *entry, log *slog.Logger) error {
	info, ok := recordInfo(e)
	if !ok {
		if log != nil {
			log.Debug("image: skipping irregular file", "path", "/"+e.name, "mode", e.info.Mode().String())
		}
		return nil
	}
	switch info.Mode & cpio.S_IFMT {
	case cpio.S_IFLNK:
		t, err := fs.ReadLink(fsys, e.name)
		if err != nil {
			return fmt.Errorf("reading symlink /%s: %w", e.name, err)
		}
		e.target = t
		info.FileSize = uint64(len(t))
		return cw.WriteRecord(cpio.Record{ReaderAt: stringReaderAt(t), Info: info})
	case cpio.S_IFREG:
		if e.empty {
			// A per-host file kept as an empty file, apart from any
			// hard links it has.
			info.FileSize, info.NLink = 0, 1
			return cw.WriteRecord(cpio.Record{Info: info})
		}
		size := e.info.Size()
		if size > MaxFileSize {
			return fmt.Errorf("/%s: %d bytes: %w", e.name, size, ErrFileTooLarge)
		}
		info.FileSize = uint64(size)
		if size == 0 {
			return cw.WriteRecord(cpio.Record{Info: info})
		}
		f, err := fsys.Open(e.name)
		if err != nil {
			return fmt.Errorf("opening /%s: %w", e.name, err)
		}
		defer f.Close()
		var ra io.ReaderAt
		if r, ok := f.(io.ReaderAt); ok {
			ra = io.NewSectionReader(r, 0, size)
		} else {
			ra = &seqReaderAt{r: io.LimitReader(f, size)}
		}
		if err := cw.WriteRecord(cpio.Record{ReaderAt: ra, Info: info}); err != nil {
			return err // names the file
		}
		return f.Close()
	default:
		return cw.WriteRecord(cpio.Record{Info: info})
	}
}

type stringReaderAt string

func (s stringReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if off >= int64(len(s)) {
		return 0, io.EOF
	}
	n := copy(p, s[off:])
	if n < len(p) {
		return n, io.EOF
	}
	return n, nil
}

// seqReaderAt serves the strictly sequential ReadAt calls of the cpio
// writer from a plain reader (fs.File without ReadAt).
type seqReaderAt struct {
	r   io.Reader
	off int64
}

func (s *seqReaderAt) ReadAt(p []byte, off int64) (int, error) {
	if off != s.off {
		return 0, fmt.Errorf("non-sequential read at %d, expected %d", off, s.off)
	}
	n, err := io.ReadFull(s.r, p)
	s.off += int64(n)
	if errors.Is(err, io.ErrUnexpectedEOF) {
		err = io.EOF
	}
	return n, err
}

// fingerprinter hashes entry metadata for change detection.
type fingerprinter struct {
	h     hash.Hash
	start time.Time
	racy  bool
	st    Stats
	b     []byte
}

func newFingerprinter(opts Options, comp Compression, excludes []string) *fingerprinter {
	f := &fingerprinter{h: sha256.New(), start: time.Now()}
	level := opts.Level
	if level == 0 {
		level = comp.DefaultLevel()
	}
	fmt.Fprintf(f.h, "%s\x00%s\x00%d\x00%t\x00%d\x00%q\n", fingerprintVersion, comp, level, opts.MTimeClamp.IsZero(), NewcTime(opts.MTimeClamp), excludes)
	return f
}

// racyWindow: an entry changed this close to the walk may change again within
// the same timestamp tick without its times moving, so it is not trusted.
const racyWindow = time.Second

func (f *fingerprinter) add(e *entry) {
	f.st.Files++
	f.st.Bytes += e.contentSize()
	b := f.b[:0]
	b = append(b, e.name...)
	b = append(b, 0)
	b = strconv.AppendUint(b, uint64(e.info.Mode()), 16)
	b = append(b, 0)
	b = strconv.AppendInt(b, e.info.Size(), 10)
	b = append(b, 0)
	mt := e.info.ModTime()
	b = strconv.AppendInt(b, mt.UnixNano(), 10)
	if st := e.st; st != nil {
		ct := time.Unix(st.Ctim.Sec, st.Ctim.Nsec)
		for _, v := range []uint64{uint64(st.Mode), uint64(st.Uid), uint64(st.Gid), uint64(ct.UnixNano()), st.Ino, uint64(st.Dev), uint64(st.Nlink), uint64(st.Rdev)} {
			b = append(b, 0)
			b = strconv.AppendUint(b, v, 10)
		}
		if !ct.Before(f.start.Add(-racyWindow)) {
			f.racy = true
		}
	} else {
		// Without a change time an edit that restores the mtime would go
		// unseen: never reuse such a build.
		f.racy = true
	}
	if !mt.Before(f.start.Add(-racyWindow)) {
		f.racy = true
	}
	b = append(b, 0)
	b = append(b, e.target...)
	b = append(b, '\n')
	f.h.Write(b)
	f.b = b
}

func (f *fingerprinter) stats() Stats {
	s := f.st
	if !f.racy {
		s.Fingerprint = hex.EncodeToString(f.h.Sum(nil))
	}
	return s
}

type hashCounter struct {
	w io.Writer
	h hash.Hash
	n int64
}

func (c *hashCounter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.h.Write(p[:n])
	c.n += int64(n)
	return n, err
}
