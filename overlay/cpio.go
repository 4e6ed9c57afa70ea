package overlay

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"io/fs"
	"math"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/u-root/u-root/pkg/cpio"

	"github.com/wwboot/wwboot/image"
)

// Unix file type bits of a cpio mode.
const (
	sIFDIR = 0o040000
	sIFREG = 0o100000
	sIFLNK = 0o120000
)

// record is one cpio entry.
type record struct {
	path  string // relative, cleaned, no leading "/"
	mode  uint32 // st_mode (type and permission bits)
	uid   int
	gid   int
	mtime int64
	data  []byte // file contents or symlink target
	// private: the file is a secret of the node (see Archive.Private).
	private bool
}

// unixPerm converts permission and special bits of an fs.FileMode.
func unixPerm(m fs.FileMode) uint32 {
	u := uint32(m.Perm())
	if m&fs.ModeSetuid != 0 {
		u |= 0o4000
	}
	if m&fs.ModeSetgid != 0 {
		u |= 0o2000
	}
	if m&fs.ModeSticky != 0 {
		u |= 0o1000
	}
	return u
}

// appendNewc appends rec in newc format, encoded by image.AppendRecord (the
// one newc encoder: field checks, and the image.NewcSeconds rule for times, so
// a file without a time is dated 1970 rather than a wrapped 2042). Inode
// numbers are a hash of the path (links are 1, so GNU cpio and the kernel
// never pair records by inode); every record starts and ends 4-byte aligned,
// so records from different gzip members concatenate into one valid archive.
// An error names the file and the field that does not fit (a uid or gid
// outside 0..2^32-1, a name the kernel would skip).
func appendNewc(b []byte, rec *record) ([]byte, error) {
	h := fnv.New32a()
	h.Write([]byte(rec.path))
	nlink := uint64(1)
	if rec.mode&0o170000 == sIFDIR {
		nlink = 2
	}
	info := cpio.Info{
		Name: rec.path, Ino: uint64(h.Sum32()), Mode: uint64(rec.mode),
		UID: newcID(rec.uid), GID: newcID(rec.gid), NLink: nlink,
		MTime: image.NewcSeconds(rec.mtime),
	}
	out, err := image.AppendRecord(b, info, rec.data)
	if err != nil {
		return b, fmt.Errorf("overlay file %w", err)
	}
	return out, nil
}

// newcID converts an owner id; a negative one becomes a value CheckNewc
// rejects rather than wrapping to 4294967295.
func newcID(id int) uint64 {
	if id < 0 {
		return math.MaxUint64
	}
	return uint64(id)
}

func pad4(b []byte) []byte {
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

// padMember lengthens the gzip member gz by k bytes (1-3) by giving it an
// FNAME header field: k-1 characters "w" and the terminating NUL. gz must
// come from our writer (plain 10-byte header, no optional fields).
func padMember(gz []byte, k int) []byte {
	out := make([]byte, 0, len(gz)+k)
	out = append(out, gz[:10]...)
	out[3] |= 0x08 // FNAME
	for i := 0; i < k-1; i++ {
		out = append(out, 'w')
	}
	out = append(out, 0)
	return append(out, gz[10:]...)
}

// appendTrailer appends the newc end-of-archive record.
func appendTrailer(b []byte) []byte {
	b, _ = image.AppendRecord(b, cpio.TrailerRecord.Info, nil) // fixed, valid fields: no error
	return b
}

// segment is one gzip member of an archive, shared between archives.
type segment struct {
	gz   []byte          // the compressed member
	sum  [32]byte        // sha256 of gz
	raw  int64           // uncompressed size
	recs []*record       // what it holds, for listings and the slow path
	dirs map[string]bool // directories it holds
}

// gzipPool reuses gzip writers of one level (a deflate writer costs more
// to set up than to compress a node's few kilobytes).
type gzipPool struct {
	level int
	pool  sync.Pool
}

// compress gzips raw as one member.
func (p *gzipPool) compress(raw []byte) ([]byte, error) {
	var buf bytes.Buffer
	buf.Grow(len(raw)/3 + 64)
	zw, _ := p.pool.Get().(*gzip.Writer)
	if zw == nil {
		var err error
		if zw, err = gzip.NewWriterLevel(&buf, p.level); err != nil {
			return nil, err
		}
	} else {
		zw.Reset(&buf)
	}
	if _, err := zw.Write(raw); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	p.pool.Put(zw)
	return buf.Bytes(), nil
}

// newSegment encodes and compresses recs (plus the trailer when last).
func (p *gzipPool) newSegment(recs []*record, last bool) (*segment, error) {
	var raw []byte
	s := &segment{recs: recs, dirs: map[string]bool{}}
	for _, r := range recs {
		var err error
		if raw, err = appendNewc(raw, r); err != nil {
			return nil, err
		}
		if r.mode&0o170000 == sIFDIR {
			s.dirs[r.path] = true
		}
	}
	if last {
		raw = appendTrailer(raw)
	}
	gz, err := p.compress(raw)
	if err != nil {
		return nil, fmt.Errorf("compressing overlay archive: %w", err)
	}
	s.gz, s.raw, s.sum = gz, int64(len(raw)), sha256.Sum256(gz)
	return s, nil
}

// Archive is one node's compressed overlay archive: a gzip stream (one or
// more members) of a newc cpio archive whose length is a multiple of 4
// bytes, so another initrd can follow it (the kernel drops what follows a
// misaligned one). The padding is not trailing zeros, which make gzip -d
// warn and Go's gzip reader fail, but a file name of 0-2 characters in the
// last member's header (FNAME, the one optional gzip header field the
// kernel's decompressor skips). It is immutable and safe for concurrent use; its parts may be
// shared with other nodes' archives.
type Archive struct {
	Node    string    // node name
	Kind    Kind      // system or runtime
	ModTime time.Time // when it was rendered

	parts []*segment
	segs  [][]byte
	size  int64
	etag  string
}

func newArchive(node string, kind Kind, segs []*segment, now time.Time) *Archive {
	a := &Archive{Node: node, Kind: kind, ModTime: now}
	var total int
	for _, s := range segs {
		total += len(s.gz)
	}
	if k := (4 - total%4) % 4; k > 0 && len(segs) > 0 {
		last := *segs[len(segs)-1]
		last.gz = padMember(last.gz, k)
		last.sum = sha256.Sum256(last.gz)
		segs = append(segs[:len(segs)-1:len(segs)-1], &last)
	}
	h := sha256.New()
	for _, s := range segs {
		a.parts = append(a.parts, s)
		a.segs = append(a.segs, s.gz)
		a.size += int64(len(s.gz))
		h.Write(s.sum[:])
	}
	a.etag = `"` + hex.EncodeToString(h.Sum(nil)[:16]) + `"`
	return a
}

// Size is the archive's length in bytes.
func (a *Archive) Size() int64 { return a.size }

// ETag is a strong HTTP entity tag (quoted) derived from the content: equal
// bytes give equal tags, different bytes different tags.
func (a *Archive) ETag() string { return a.etag }

// NewReader returns a reader over the archive, for http.ServeContent.
func (a *Archive) NewReader() *Reader { return &Reader{a: a} }

// WriteTo writes the whole archive to w.
func (a *Archive) WriteTo(w io.Writer) (int64, error) {
	var n int64
	for _, s := range a.segs {
		m, err := w.Write(s)
		n += int64(m)
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

// Bytes returns the archive as one new slice.
func (a *Archive) Bytes() []byte {
	out := make([]byte, 0, a.size)
	for _, s := range a.segs {
		out = append(out, s...)
	}
	return out
}

// Reader reads an Archive; it implements io.ReadSeeker and io.ReaderAt.
type Reader struct {
	a   *Archive
	off int64
}

// ReadAt implements io.ReaderAt.
func (r *Reader) ReadAt(p []byte, off int64) (int, error) {
	if off < 0 {
		return 0, errors.New("overlay archive: negative offset")
	}
	n := 0
	for _, s := range r.a.segs {
		if off >= int64(len(s)) {
			off -= int64(len(s))
			continue
		}
		c := copy(p[n:], s[off:])
		n += c
		off = 0
		if n == len(p) {
			return n, nil
		}
	}
	return n, io.EOF
}

// Read implements io.Reader.
func (r *Reader) Read(p []byte) (int, error) {
	if r.off >= r.a.size {
		return 0, io.EOF
	}
	if len(p) == 0 {
		return 0, nil
	}
	n, err := r.ReadAt(p, r.off)
	r.off += int64(n)
	if err == io.EOF && n > 0 {
		err = nil
	}
	return n, err
}

// Seek implements io.Seeker.
func (r *Reader) Seek(offset int64, whence int) (int64, error) {
	switch whence {
	case io.SeekStart:
	case io.SeekCurrent:
		offset += r.off
	case io.SeekEnd:
		offset += r.a.size
	default:
		return 0, errors.New("overlay archive: bad whence")
	}
	if offset < 0 {
		return 0, errors.New("overlay archive: negative position")
	}
	r.off = offset
	return offset, nil
}

// fileStamp identifies a version of a server file a render read.
// fileStamp is what a render read from one server file, to tell when the
// render is stale: size, mtime, and the inode's change time, which a chmod
// moves too (whether the file counts as a secret follows its mode).
type fileStamp struct {
	path  string
	size  int64
	mtime int64
	ctime int64
	ok    bool
}

func stampOf(p string) fileStamp {
	fi, err := os.Stat(p)
	if err != nil {
		return fileStamp{path: p}
	}
	st := fileStamp{path: p, size: fi.Size(), mtime: fi.ModTime().UnixNano(), ok: true}
	if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
		st.ctime = sys.Ctim.Nano()
	}
	return st
}

func stampsValid(st []fileStamp) bool {
	for _, s := range st {
		if stampOf(s.path) != s {
			return false
		}
	}
	return true
}
