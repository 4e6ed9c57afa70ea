package image

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/u-root/u-root/pkg/cpio"
	"golang.org/x/sys/unix"
)

func TestNewcSecondsRule(t *testing.T) {
	for _, tc := range []struct {
		in   int64
		want uint64
	}{
		{time.Time{}.Unix(), 0}, // Go's zero time: wrapped, it read 2042-07-14
		{-1, 0},
		{math.MinInt64, 0},
		{0, 0},
		{1, 1},
		{1700000000, 1700000000},
		{math.MaxUint32, math.MaxUint32},
		{math.MaxUint32 + 1, math.MaxUint32},
		{math.MaxInt64, math.MaxUint32},
	} {
		assert.Equal(t, tc.want, NewcSeconds(tc.in), "NewcSeconds(%d)", tc.in)
	}
	assert.Zero(t, NewcTime(time.Time{}))
	assert.Equal(t, uint64(math.MaxUint32), NewcTime(time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC)))
}

// readNewc reads an uncompressed archive with u-root's reader: name -> info.
func readNewc(t *testing.T, raw []byte) map[string]cpio.Info {
	t.Helper()
	rr := cpio.Newc.Reader(bytes.NewReader(raw))
	out := map[string]cpio.Info{}
	for {
		rec, err := rr.ReadRecord()
		if err == io.EOF {
			return out
		}
		require.NoError(t, err)
		out[rec.Name] = rec.Info
	}
}

// gnuList runs `cpio -itv` on an uncompressed archive (UTC, C locale).
func gnuList(t *testing.T, raw []byte) map[string]string {
	t.Helper()
	requireTools(t, "cpio")
	cmd := exec.Command("cpio", "-itv", "--quiet")
	cmd.Stdin = bytes.NewReader(raw)
	cmd.Env = append(os.Environ(), "TZ=UTC", "LC_ALL=C")
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "cpio -itv: %s", out)
	lines := map[string]string{}
	for _, l := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		f := strings.Fields(l)
		require.GreaterOrEqual(t, len(f), 9, "cpio -itv line %q", l)
		name := f[len(f)-1]
		if i := strings.Index(l, " -> "); i >= 0 {
			g := strings.Fields(l[:i])
			name = g[len(g)-1]
		}
		lines[name] = l
	}
	return lines
}

// TestWriterTimesAreValidNewc writes every kind of out-of-range time and
// reads the archive back with u-root's reader and GNU cpio: nothing wraps.
func TestWriterTimesAreValidNewc(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf, WriterOptions{})
	require.NoError(t, w.WriteFile("zero", 0o644, 0, 0, time.Time{}, []byte("z")))
	require.NoError(t, w.WriteFile("before1970", 0o644, 0, 0, time.Date(1960, 1, 1, 0, 0, 0, 0, time.UTC), nil))
	require.NoError(t, w.WriteFile("after2106", 0o644, 0, 0, time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC), nil))
	require.NoError(t, w.WriteDir("d", 0o755, 0, 0, time.Time{}))
	require.NoError(t, w.WriteSymlink("l", "zero", 0, 0, time.Date(3000, 1, 1, 0, 0, 0, 0, time.UTC)))
	// A raw record whose caller converted a negative time without care.
	neg := int64(-3600)
	require.NoError(t, w.WriteRecord(cpio.Record{Info: cpio.Info{Name: "rawneg", Mode: cpio.S_IFREG | 0o644, MTime: uint64(neg)}}))
	require.NoError(t, w.WriteRecord(cpio.Record{Info: cpio.Info{Name: "rawbig", Mode: cpio.S_IFREG | 0o644, MTime: 1 << 40}}))
	require.NoError(t, w.WriteFile("normal", 0o644, 0, 0, treeTime, nil))
	require.NoError(t, w.Close())

	want := map[string]uint64{
		"zero": 0, "before1970": 0, "after2106": math.MaxUint32, "d": 0, "l": math.MaxUint32,
		"rawneg": 0, "rawbig": math.MaxUint32, "normal": uint64(treeTime.Unix()),
	}
	got := readNewc(t, buf.Bytes())
	for name, mt := range want {
		require.Contains(t, got, name)
		assert.Equal(t, mt, got[name].MTime, "u-root reader: mtime of %s", name)
	}

	list := gnuList(t, buf.Bytes())
	for name, mt := range want {
		l := list[name]
		require.NotEmpty(t, l, "cpio -itv lists %s", name)
		year := map[uint64]string{0: "1970", math.MaxUint32: "2106"}[mt]
		if year == "" {
			year = "2021"
		}
		assert.Contains(t, l, year, "cpio -itv: %s", l)
		assert.NotContains(t, l, "2042", "a wrapped time: %s", l)
	}
}

func TestWriterClampZeroIsAClamp(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf, WriterOptions{MTimeClamp: time.Unix(0, 0)}) // SOURCE_DATE_EPOCH=0
	require.NoError(t, w.WriteFile("a/f", 0o644, 0, 0, treeTime, []byte("x")))
	require.NoError(t, w.Close())
	for name, info := range readNewc(t, buf.Bytes()) {
		assert.Zero(t, info.MTime, "%s", name)
	}
}

// TestHeaderFieldsThatDoNotFitAreErrors: u-root's encoder keeps the low 32
// bits; EncodeRecord refuses, names the entry and the field, and writes
// nothing.
func TestHeaderFieldsThatDoNotFitAreErrors(t *testing.T) {
	big := uint64(1) << 32
	for _, tc := range []struct {
		field string
		info  cpio.Info
		want  error
	}{
		{"uid", cpio.Info{UID: big}, ErrHeaderField},
		{"gid", cpio.Info{GID: big + 5}, ErrHeaderField},
		{"inode", cpio.Info{Ino: big}, ErrHeaderField},
		{"link count", cpio.Info{NLink: big}, ErrHeaderField},
		{"device node major", cpio.Info{Mode: cpio.S_IFCHR, Rmajor: big}, ErrHeaderField},
		{"device node minor", cpio.Info{Mode: cpio.S_IFBLK, Rminor: big}, ErrHeaderField},
		{"bytes", cpio.Info{FileSize: big}, ErrFileTooLarge},
	} {
		t.Run(tc.field, func(t *testing.T) {
			tc.info.Name = "etc/thing"
			if tc.info.Mode == 0 {
				tc.info.Mode = cpio.S_IFREG | 0o644
			}
			var buf bytes.Buffer
			rec := cpio.Record{Info: tc.info}
			if tc.info.FileSize > 0 {
				rec.ReaderAt = bytes.NewReader(nil)
			}
			err := EncodeRecord(&buf, rec)
			require.ErrorIs(t, err, tc.want)
			assert.Contains(t, err.Error(), "/etc/thing")
			assert.Contains(t, err.Error(), tc.field)
			assert.Zero(t, buf.Len(), "a rejected record must write nothing")

			// Through the Writer too (it renumbers inodes and links, so
			// those two cannot overflow there).
			if tc.field == "inode" || tc.field == "link count" {
				return
			}
			w := NewWriter(io.Discard, WriterOptions{})
			require.ErrorIs(t, w.WriteRecord(rec), tc.want)
		})
	}
	t.Run("name longer than PATH_MAX", func(t *testing.T) {
		name := strings.Repeat("d/", 2100)
		err := EncodeRecord(io.Discard, cpio.Record{Info: cpio.Info{Name: name, Mode: cpio.S_IFDIR | 0o755}})
		require.ErrorIs(t, err, ErrHeaderField)
		assert.Contains(t, err.Error(), "name of 4200 bytes")
	})
	t.Run("in range", func(t *testing.T) {
		max := uint64(math.MaxUint32)
		var buf bytes.Buffer
		info := cpio.Info{Name: "dev/x", Mode: cpio.S_IFCHR | 0o600, UID: max, GID: max, Rmajor: max, Rminor: max, MTime: max}
		require.NoError(t, EncodeRecord(&buf, cpio.Record{Info: info}))
		got := readNewc(t, append(buf.Bytes(), trailerBytes(t)...))
		assert.Equal(t, max, got["dev/x"].UID)
		assert.Equal(t, max, got["dev/x"].Rminor)
		assert.Equal(t, max, got["dev/x"].MTime)
	})
}

func trailerBytes(t *testing.T) []byte {
	var b bytes.Buffer
	require.NoError(t, EncodeRecord(&b, cpio.TrailerRecord))
	return b.Bytes()
}

// TestBuildTreeTimesOutOfRange: files of a tree dated before 1970 or after
// 2106 come out of Build at the nearest newc time, as GNU cpio and u-root
// read them.
func TestBuildTreeTimesOutOfRange(t *testing.T) {
	src := t.TempDir()
	times := map[string]time.Time{
		"old":    time.Date(1960, 1, 1, 0, 0, 0, 0, time.UTC),
		"future": time.Date(2200, 1, 1, 0, 0, 0, 0, time.UTC),
		"now":    treeTime,
	}
	for name, ts := range times {
		p := filepath.Join(src, name)
		require.NoError(t, os.WriteFile(p, []byte(name), 0o644))
		spec := []unix.Timespec{unix.NsecToTimespec(ts.UnixNano()), unix.NsecToTimespec(ts.UnixNano())}
		require.NoError(t, unix.UtimesNanoAt(unix.AT_FDCWD, p, spec, 0))
		fi, err := os.Stat(p)
		require.NoError(t, err)
		if fi.ModTime().Unix() != ts.Unix() {
			t.Skipf("the file system of %s does not keep %s", src, ts)
		}
	}
	var buf bytes.Buffer
	_, err := Build(context.Background(), &buf, os.DirFS(src), Options{Compression: None})
	require.NoError(t, err)
	got := readNewc(t, buf.Bytes())
	assert.Zero(t, got["old"].MTime)
	assert.Equal(t, uint64(math.MaxUint32), got["future"].MTime)
	assert.Equal(t, uint64(treeTime.Unix()), got["now"].MTime)
	list := gnuList(t, buf.Bytes())
	assert.Contains(t, list["old"], "1970")
	assert.Contains(t, list["future"], "2106")
}

// TestWriterErrorNamesTheFile: the error names the file whose header cannot
// be written (a tar or a non-Linux tree can carry such owners).
func TestWriterErrorNamesTheFile(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf, WriterOptions{})
	err := w.WriteRecord(cpio.Record{Info: cpio.Info{Name: "srv/data", Mode: cpio.S_IFREG | 0o644, UID: 1 << 33}})
	require.Error(t, err)
	assert.True(t, errors.Is(err, ErrHeaderField))
	assert.Contains(t, err.Error(), "/srv/data: uid 8589934592")
}

// TestEncoderMatchesURoot: EncodeRecord and AppendRecord write the bytes
// u-root's newc writer writes for the same in-range record.
func TestEncoderMatchesURoot(t *testing.T) {
	recs := []cpio.Record{
		{Info: cpio.Info{Name: "etc", Ino: 1, Mode: cpio.S_IFDIR | 0o755, NLink: 2, MTime: 1700000000}},
		{Info: cpio.Info{Name: "etc/a", Ino: 0xABCDEF12, Mode: cpio.S_IFREG | 0o4755, UID: 1000, GID: 100, NLink: 1, MTime: math.MaxUint32, FileSize: 5}, ReaderAt: strings.NewReader("hello")},
		{Info: cpio.Info{Name: "etc/bb", Ino: 3, Mode: cpio.S_IFREG | 0o644, NLink: 1, FileSize: 8}, ReaderAt: strings.NewReader("12345678")},
		{Info: cpio.Info{Name: "l", Ino: 4, Mode: cpio.S_IFLNK | 0o777, NLink: 1, FileSize: 3}, ReaderAt: strings.NewReader("etc")},
		{Info: cpio.Info{Name: "dev/sda", Ino: 5, Mode: cpio.S_IFBLK | 0o660, GID: 6, NLink: 1, Rmajor: 8, Rminor: 0xfffff}},
		cpio.TrailerRecord,
	}
	var want, got bytes.Buffer
	var appended []byte
	for _, r := range recs {
		require.NoError(t, cpio.Newc.Writer(&want).WriteRecord(r))
		require.NoError(t, EncodeRecord(&got, r))
		var data []byte
		if r.ReaderAt != nil {
			var err error
			data, err = io.ReadAll(io.NewSectionReader(r.ReaderAt, 0, int64(r.FileSize)))
			require.NoError(t, err)
		}
		var err error
		appended, err = AppendRecord(appended, r.Info, data)
		require.NoError(t, err)
	}
	assert.Equal(t, want.String(), got.String())
	assert.Equal(t, want.String(), string(appended))
}

// TestEncodeRecordShortData: a file that yields fewer bytes than its size
// is an error naming it, not a corrupt archive.
func TestEncodeRecordShortData(t *testing.T) {
	err := EncodeRecord(io.Discard, cpio.Record{Info: cpio.Info{Name: "var/log/x", Mode: cpio.S_IFREG | 0o644, FileSize: 10}, ReaderAt: strings.NewReader("short")})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "/var/log/x: 5 of 10 bytes")
}
