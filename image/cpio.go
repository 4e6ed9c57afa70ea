package image

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"path"
	"strings"
	"time"

	"github.com/u-root/u-root/pkg/cpio"
)

// MaxFileSize is the largest file a newc cpio record can hold: its size field
// is 32 bits wide. Larger files are rejected with ErrFileTooLarge.
const MaxFileSize = math.MaxUint32

// MaxNewcField is the largest value of any newc header field: each is eight
// hexadecimal digits (32 bits).
const MaxNewcField = math.MaxUint32

// MaxNameLen is the longest record name, in bytes without the terminating
// NUL, that the kernel unpacks: init/initramfs.c skips a record whose name
// (with its NUL) is longer than PATH_MAX (4096) without a word.
const MaxNameLen = 4095

// ErrFileTooLarge is returned (wrapped, naming the file) for a file of 4 GiB
// or more, which newc cpio cannot represent.
var ErrFileTooLarge = errors.New("file is 4 GiB or larger: newc cpio cannot hold it; exclude it (--exclude) or shrink it")

// ErrHeaderField is returned (wrapped, naming the entry, the field and its
// value) when a value other than a time does not fit its newc header field:
// an owner, inode, link count or device number above 2^32-1, or a name the
// kernel would skip. Times are never an error; see NewcSeconds.
var ErrHeaderField = errors.New("value does not fit its newc cpio header field")

// NewcSeconds returns the mtime field a newc header holds for sec seconds
// since 1970-01-01 UTC. The field is an unsigned 32-bit number, so the rule,
// the same in every archive wwboot writes (images and overlays), is:
//
//   - sec < 0 (a time before 1970, including Go's zero time.Time, whose Unix
//     value is -62135596800) gives 0, 1970-01-01T00:00:00Z: newc cannot
//     express those times, 0 is the conventional "no time" of reproducible
//     archives (SOURCE_DATE_EPOCH=0, u-root's MakeReproducible), and it
//     keeps the build deterministic. Truncating instead is what dated
//     built-in overlay files 2042-07-14 on the nodes.
//   - sec > 2^32-1 (after 2106-02-07T06:28:15Z) gives 2^32-1, the last
//     second the field holds; truncating would wrap it to a date near 1970.
//
// A caller that has a better time for an entry without one (such as the
// embedded built-in overlays) sets it before writing.
func NewcSeconds(sec int64) uint64 {
	switch {
	case sec < 0:
		return 0
	case sec > MaxNewcField:
		return MaxNewcField
	}
	return uint64(sec)
}

// NewcTime is NewcSeconds for a time.Time (the zero time gives 0).
func NewcTime(t time.Time) uint64 {
	if t.IsZero() {
		return 0
	}
	return NewcSeconds(t.Unix())
}

// newcMTime applies the NewcSeconds rule to an mtime already held as a
// uint64 in a cpio.Info: values of 2^63 and more are negative int64 times
// converted without care and give 0, other values above 2^32-1 give 2^32-1.
func newcMTime(v uint64) uint64 {
	if v >= 1<<63 {
		return 0
	}
	return NewcSeconds(int64(v))
}

// CheckNewc reports, as an error wrapping ErrHeaderField or ErrFileTooLarge
// and naming the entry and field, the first field of info that a newc header
// cannot hold: file size, inode, uid, gid, link count, device numbers (Major,
// Minor, Rmajor, Rminor) or mtime above 2^32-1, or a name longer than
// MaxNameLen. u-root's encoder would silently keep the low 32 bits.
func CheckNewc(info cpio.Info) error {
	if info.FileSize|info.UID|info.GID|info.Ino|info.NLink|info.Major|info.Minor|info.Rmajor|info.Rminor|info.MTime|info.Mode <= MaxNewcField &&
		len(info.Name) <= MaxNameLen {
		return nil // the common case, without allocating
	}
	name := "/" + strings.TrimLeft(info.Name, "/")
	if info.FileSize > MaxFileSize {
		return fmt.Errorf("%s: %d bytes: %w", name, info.FileSize, ErrFileTooLarge)
	}
	for _, f := range []struct {
		field string
		v     uint64
		hint  string
	}{
		{"uid", info.UID, "give it an owner below 4294967296 (chown)"},
		{"gid", info.GID, "give it a group below 4294967296 (chgrp)"},
		{"inode", info.Ino, "the archive holds too many entries"},
		{"link count", info.NLink, "the file has too many hard links"},
		{"device major", info.Major, "report this as a bug"},
		{"device minor", info.Minor, "report this as a bug"},
		{"device node major", info.Rmajor, "remove or exclude the device node"},
		{"device node minor", info.Rminor, "remove or exclude the device node"},
		{"mtime", info.MTime, "set a time before 2106 (touch)"},
		{"mode", info.Mode, "report this as a bug"},
	} {
		if f.v > MaxNewcField {
			return fmt.Errorf("%s: %s %d: %w (at most %d); %s", name, f.field, f.v, ErrHeaderField, uint64(MaxNewcField), f.hint)
		}
	}
	if len(info.Name) > MaxNameLen {
		return fmt.Errorf("%s: name of %d bytes: %w (the kernel skips names longer than %d bytes); exclude it or shorten the path", name[:64]+"...", len(info.Name), ErrHeaderField, MaxNameLen)
	}
	return nil
}

// EncodeRecord writes rec as one newc record to w, which must be at a 4-byte
// aligned offset of the archive (the record ends 4-byte aligned too). With
// AppendRecord it is the one newc encoder of wwboot: Writer and the overlay
// packer both use it, and the bytes are those of u-root's and GNU cpio's
// newc writers (upper-case hex, zero check field). The mtime follows the
// NewcSeconds rule (a uint64 of 2^63 or more counts as a negative time);
// every other field is checked with CheckNewc, and nothing is written when
// one does not fit. It adds nothing (no parents, inode numbering or link
// handling: see Writer for those). rec.ReaderAt supplies exactly
// rec.FileSize bytes; without a ReaderAt the size is written as 0.
func EncodeRecord(w io.Writer, rec cpio.Record) error {
	return encodeRecord(w, rec, nil)
}

// encodeRecord is EncodeRecord copying file data through buf (allocated
// when nil).
func encodeRecord(w io.Writer, rec cpio.Record, buf []byte) error {
	rec.MTime = newcMTime(rec.MTime)
	if rec.ReaderAt == nil {
		rec.FileSize = 0
	}
	if err := CheckNewc(rec.Info); err != nil {
		return err
	}
	hdr := appendHeader(make([]byte, 0, newcHeaderLen+len(rec.Name)+4), rec.Info)
	if _, err := w.Write(hdr); err != nil {
		return fmt.Errorf("/%s: writing cpio record: %w", strings.TrimLeft(rec.Name, "/"), err)
	}
	if rec.FileSize == 0 {
		return nil
	}
	if buf == nil {
		buf = make([]byte, 32<<10)
	}
	n, err := io.CopyBuffer(w, io.NewSectionReader(rec.ReaderAt, 0, int64(rec.FileSize)), buf)
	if err != nil {
		return fmt.Errorf("/%s: writing cpio record: %w", strings.TrimLeft(rec.Name, "/"), err)
	}
	if n != int64(rec.FileSize) {
		return fmt.Errorf("/%s: %d of %d bytes read (did the file shrink while it was archived?); the archive is incomplete", strings.TrimLeft(rec.Name, "/"), n, rec.FileSize)
	}
	if pad := (4 - n%4) % 4; pad > 0 {
		if _, err := w.Write(make([]byte, pad)); err != nil {
			return fmt.Errorf("/%s: writing cpio record: %w", strings.TrimLeft(rec.Name, "/"), err)
		}
	}
	return nil
}

// AppendRecord appends one newc record (header, name, data, padding) for
// info and the file data to b, whose length must be a multiple of 4 (a whole
// number of records); the data's length is the record's size (a symlink's
// data is its target). Times and fields are treated as by EncodeRecord; on
// an error b is returned unchanged.
func AppendRecord(b []byte, info cpio.Info, data []byte) ([]byte, error) {
	info.MTime = newcMTime(info.MTime)
	info.FileSize = uint64(len(data))
	if err := CheckNewc(info); err != nil {
		return b, err
	}
	b = appendHeader(b, info)
	b = append(b, data...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b, nil
}

// newcHeaderLen is the length of a newc header: the magic and 13 fields of
// eight hexadecimal digits.
const newcHeaderLen = 6 + 13*8

// appendHeader appends the header and the NUL-terminated name of info,
// padded to 4 bytes, to b (whose length is a multiple of 4). The fields must
// have passed CheckNewc.
func appendHeader(b []byte, info cpio.Info) []byte {
	b = append(b, "070701"...)
	for _, v := range [13]uint64{
		info.Ino, info.Mode, info.UID, info.GID, info.NLink, info.MTime, info.FileSize,
		info.Major, info.Minor, info.Rmajor, info.Rminor, uint64(len(info.Name) + 1), 0, // check
	} {
		const digits = "0123456789ABCDEF"
		for shift := 28; shift >= 0; shift -= 4 {
			b = append(b, digits[v>>uint(shift)&0xf])
		}
	}
	b = append(b, info.Name...)
	b = append(b, 0)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

// WriterOptions tune a Writer. The zero value is usable.
type WriterOptions struct {
	// MTimeClamp, when not zero, caps every record's mtime the way
	// SOURCE_DATE_EPOCH does: newer times are replaced by MTimeClamp.
	MTimeClamp time.Time
	// ParentMode is the permission of parent directories the Writer adds
	// on its own (owned by root:root). Zero means 0755.
	ParentMode fs.FileMode
	// TrailerAlign pads the archive after the trailer record to a multiple
	// of this many bytes (4 when zero; GNU cpio uses 512). Padding is zero
	// bytes, which the kernel skips between concatenated archives.
	TrailerAlign int
}

// Writer writes a newc cpio archive record by record, as a stream. It
// implements u-root's cpio.RecordWriter and encodes every record with
// EncodeRecord (u-root's newc encoder behind field checks), adding what an
// initramfs needs and u-root leaves out:
//
//   - Parent directories: before a record, every missing ancestor directory
//     is emitted (mode WriterOptions.ParentMode, root:root), so the kernel,
//     which does not create parents, never drops an entry. A parent written
//     explicitly before its children keeps its own mode and owner.
//   - Owners are kept (cpio.MakeReproducible would zero them); mtimes follow
//     the NewcSeconds rule (before 1970 -> 0, after 2106 -> 2^32-1) and are
//     then capped at WriterOptions.MTimeClamp; device numbers of the source file
//     system are dropped and inode numbers are assigned sequentially, so the
//     same records produce the same bytes.
//   - Hard links: regular-file records with NLink > 1 that share (Dev, Ino)
//     get the same archive inode; the first one carries the data, later ones
//     are written empty, which both the kernel and GNU cpio turn into links.
//   - Sizes of 4 GiB or more are rejected with ErrFileTooLarge, and owners,
//     device node numbers or names a newc header cannot hold with
//     ErrHeaderField (see CheckNewc), instead of being silently truncated.
//   - Close writes the trailer and pads the archive to
//     WriterOptions.TrailerAlign, so the output can be concatenated with
//     other archives (compressed or not) into one initramfs.
//
// Names are normalised (leading "/" and "./" dropped, cleaned). Writer does
// not deduplicate names; callers write each path once (u-root's DedupWriter
// remembers every name, which would make memory grow with the tree).
// A Writer is not safe for concurrent use.
type Writer struct {
	cw      countWriter
	opts    WriterOptions
	clamp   uint64 // newc mtime cap, when clampOn
	clampOn bool
	buf     []byte // copies file data
	dirs    map[string]struct{}
	links   map[linkKey]uint64
	nextIno uint64
	closed  bool
}

type linkKey struct{ dev, major, minor, ino uint64 }

// NewWriter returns a Writer that writes a newc archive to w.
func NewWriter(w io.Writer, opts WriterOptions) *Writer {
	if opts.ParentMode == 0 {
		opts.ParentMode = 0o755
	}
	if opts.TrailerAlign <= 0 {
		opts.TrailerAlign = 4
	}
	cw := &Writer{cw: countWriter{w: w}, opts: opts, dirs: map[string]struct{}{}, links: map[linkKey]uint64{}}
	if !opts.MTimeClamp.IsZero() {
		// SOURCE_DATE_EPOCH=0 is a valid clamp: every time becomes 0.
		cw.clamp, cw.clampOn = NewcTime(opts.MTimeClamp), true
	}
	return cw
}

// Written reports how many bytes of archive the Writer has written.
func (w *Writer) Written() int64 { return w.cw.n }

// WriteRecord writes rec (its ReaderAt supplies exactly rec.FileSize bytes;
// it may be nil for records without data), preceded by any parent directory
// not yet in the archive. See Writer for what is normalised.
func (w *Writer) WriteRecord(rec cpio.Record) error {
	if w.closed {
		return errors.New("cpio writer: WriteRecord after Close")
	}
	name := normalizeName(rec.Name)
	if name == "." || name == "" {
		// The root itself: the kernel's rootfs already exists.
		return nil
	}
	if name == ".." || strings.HasPrefix(name, "../") {
		return fmt.Errorf("cpio record %q: name leaves the archive root", rec.Name)
	}
	if rec.FileSize > MaxFileSize {
		return fmt.Errorf("/%s: %d bytes: %w", name, rec.FileSize, ErrFileTooLarge)
	}
	if err := w.parents(name); err != nil {
		return err
	}
	rec.Name = name
	isDir := rec.Mode&cpio.S_IFMT == cpio.S_IFDIR
	if isDir {
		w.dirs[name] = struct{}{}
	}
	rec.MTime = newcMTime(rec.MTime)
	if w.clampOn && rec.MTime > w.clamp {
		rec.MTime = w.clamp
	}
	key := linkKey{rec.Dev, rec.Major, rec.Minor, rec.Ino}
	rec.Dev, rec.Major, rec.Minor = 0, 0, 0
	switch {
	case rec.Mode&cpio.S_IFMT == cpio.S_IFREG && rec.NLink > 1:
		if ino, ok := w.links[key]; ok {
			rec.Ino = ino
			rec.FileSize = 0
			rec.ReaderAt = nil
		} else {
			w.nextIno++
			rec.Ino = w.nextIno
			w.links[key] = rec.Ino
		}
	default:
		w.nextIno++
		rec.Ino = w.nextIno
		switch {
		case isDir:
			rec.NLink = 2
		default:
			rec.NLink = 1
		}
	}
	if rec.FileSize == 0 {
		rec.ReaderAt = nil
	} else if rec.ReaderAt == nil {
		return fmt.Errorf("%s: record has FileSize %d but no data", name, rec.FileSize)
	}
	return w.encode(rec)
}

// encode writes one record with EncodeRecord.
func (w *Writer) encode(rec cpio.Record) error {
	if w.buf == nil {
		w.buf = make([]byte, 64<<10)
	}
	return encodeRecord(&w.cw, rec, w.buf)
}

// parents emits the missing ancestors of name, outermost first.
func (w *Writer) parents(name string) error {
	dir := path.Dir(name)
	if dir == "." {
		return nil
	}
	if _, ok := w.dirs[dir]; ok {
		return nil
	}
	if err := w.parents(dir); err != nil {
		return err
	}
	w.dirs[dir] = struct{}{}
	w.nextIno++
	return w.encode(cpio.Record{Info: cpio.Info{
		Name:  dir,
		Ino:   w.nextIno,
		Mode:  cpio.S_IFDIR | uint64(w.opts.ParentMode.Perm()),
		NLink: 2,
		MTime: w.clamp,
	}})
}

// WriteDir writes a directory record.
func (w *Writer) WriteDir(name string, perm fs.FileMode, uid, gid int, mtime time.Time) error {
	return w.WriteRecord(cpio.Record{Info: cpio.Info{
		Name: name, Mode: cpio.S_IFDIR | UnixMode(perm), UID: uint64(uid), GID: uint64(gid), MTime: NewcTime(mtime),
	}})
}

// WriteFile writes a regular file record holding data.
func (w *Writer) WriteFile(name string, perm fs.FileMode, uid, gid int, mtime time.Time, data []byte) error {
	return w.WriteRecord(cpio.Record{ReaderAt: bytes.NewReader(data), Info: cpio.Info{
		Name: name, Mode: cpio.S_IFREG | UnixMode(perm), UID: uint64(uid), GID: uint64(gid),
		MTime: NewcTime(mtime), FileSize: uint64(len(data)),
	}})
}

// WriteSymlink writes a symbolic link record pointing at target.
func (w *Writer) WriteSymlink(name, target string, uid, gid int, mtime time.Time) error {
	return w.WriteRecord(cpio.Record{ReaderAt: strings.NewReader(target), Info: cpio.Info{
		Name: name, Mode: cpio.S_IFLNK | 0o777, UID: uint64(uid), GID: uint64(gid),
		MTime: NewcTime(mtime), FileSize: uint64(len(target)),
	}})
}

// Close writes the trailer record and the alignment padding. It does not
// close the underlying writer.
func (w *Writer) Close() error {
	if w.closed {
		return nil
	}
	w.closed = true
	if err := EncodeRecord(&w.cw, cpio.TrailerRecord); err != nil {
		return fmt.Errorf("writing cpio trailer: %w", err)
	}
	return PadTo(&w.cw, w.cw.n, w.opts.TrailerAlign)
}

// PadTo writes the zero bytes that bring a stream of n bytes to a multiple
// of align. Use it after a compressed archive (with the count from a
// CountingWriter) when several archives are concatenated into one initrd
// file: the kernel skips zero bytes between archives and wants an
// uncompressed cpio that follows to start 4-byte aligned. Do not pad a file
// that userland tools must read: gzip -d warns about the trailing zeros and
// zstd -d rejects them. (iPXE aligns each initrd it loads on its own.)
func PadTo(w io.Writer, n int64, align int) error {
	if align <= 1 {
		return nil
	}
	pad := (int64(align) - n%int64(align)) % int64(align)
	if pad == 0 {
		return nil
	}
	if _, err := w.Write(make([]byte, pad)); err != nil {
		return fmt.Errorf("writing %d bytes of archive padding: %w", pad, err)
	}
	return nil
}

// CountingWriter counts the bytes written through it to W.
type CountingWriter struct {
	W io.Writer // destination
	N int64     // bytes written so far
}

// Write implements io.Writer.
func (c *CountingWriter) Write(p []byte) (int, error) {
	n, err := c.W.Write(p)
	c.N += int64(n)
	return n, err
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// UnixMode converts the permission and special bits of an fs.FileMode to the
// Unix st_mode bits used in cpio headers (file type bits excluded).
func UnixMode(m fs.FileMode) uint64 {
	u := uint64(m.Perm())
	if m&fs.ModeSetuid != 0 {
		u |= cpio.S_ISUID
	}
	if m&fs.ModeSetgid != 0 {
		u |= cpio.S_ISGID
	}
	if m&fs.ModeSticky != 0 {
		u |= cpio.S_ISVTX
	}
	return u
}

// unixType returns the S_IFMT bits for m, or 0 for sockets and irregular files.
func unixType(m fs.FileMode) uint64 {
	switch m.Type() {
	case 0:
		return cpio.S_IFREG
	case fs.ModeDir:
		return cpio.S_IFDIR
	case fs.ModeSymlink:
		return cpio.S_IFLNK
	case fs.ModeNamedPipe:
		return cpio.S_IFIFO
	case fs.ModeDevice:
		return cpio.S_IFBLK
	case fs.ModeDevice | fs.ModeCharDevice:
		return cpio.S_IFCHR
	}
	return 0
}

func normalizeName(name string) string {
	name = strings.TrimLeft(name, "/")
	for strings.HasPrefix(name, "./") {
		name = strings.TrimLeft(name[2:], "/")
	}
	if name == "" {
		return "."
	}
	return path.Clean(name)
}
