package agent

import (
	"errors"
	"fmt"
	"strconv"
)

// File types of a newc mode (the S_IFMT bits).
const (
	modeType = 0o170000
	modeDir  = 0o040000
	modeReg  = 0o100000
	modeLink = 0o120000
)

// entry is one record of a newc archive.
type entry struct {
	name     string // as written in the archive
	mode     uint32 // type and permission bits
	uid, gid int
	data     []byte // file contents, or a symlink's target
}

// newcHeaderLen is the size of a newc header: the 6-byte magic and 13
// eight-digit hexadecimal fields.
const newcHeaderLen = 110

// maxEntries bounds the records one archive may hold.
const maxEntries = 1 << 20

// parseNewc reads every record of a newc ("070701") or newc-with-checksum
// ("070702") archive held in b. Trailers (TRAILER!!!) end one archive; NUL
// padding after them is skipped and a following archive is read too, as the
// kernel does with concatenated initramfs parts. Records are returned in
// archive order; a path given twice keeps both (the last wins on apply).
func parseNewc(b []byte) ([]entry, error) {
	var out []entry
	off := 0
	for {
		for off < len(b) && b[off] == 0 {
			off++
		}
		if off == len(b) {
			return out, nil
		}
		if len(b)-off < newcHeaderLen {
			return nil, fmt.Errorf("cpio: truncated header at byte %d", off)
		}
		h := b[off : off+newcHeaderLen]
		if string(h[:6]) != "070701" && string(h[:6]) != "070702" {
			return nil, fmt.Errorf("cpio: byte %d: not a newc header (magic %q)", off, h[:6])
		}
		var f [13]uint64
		for i := range f {
			v, err := strconv.ParseUint(string(h[6+8*i:14+8*i]), 16, 32)
			if err != nil {
				return nil, fmt.Errorf("cpio: byte %d: header field %d: %w", off, i, err)
			}
			f[i] = v
		}
		mode, uid, gid, size, namesize := f[1], f[2], f[3], f[6], f[11]
		off += newcHeaderLen
		if namesize == 0 || uint64(len(b)-off) < namesize {
			return nil, fmt.Errorf("cpio: byte %d: bad name size %d", off, namesize)
		}
		name := string(b[off : off+int(namesize)-1]) // without the NUL
		off = align4(off + int(namesize))
		if off > len(b) || uint64(len(b)-off) < size {
			return nil, fmt.Errorf("cpio: %s: truncated data", name)
		}
		data := b[off : off+int(size)]
		off += int(size)
		if name == "TRAILER!!!" {
			off = min(align4(off), len(b))
			continue
		}
		if len(out) >= maxEntries {
			return nil, errors.New("cpio: too many records")
		}
		out = append(out, entry{name: name, mode: uint32(mode), uid: int(uid), gid: int(gid), data: data})
		off = min(align4(off), len(b))
	}
}

func align4(n int) int { return (n + 3) &^ 3 }
