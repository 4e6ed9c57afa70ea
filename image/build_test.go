package image

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/u-root/u-root/pkg/cpio"
)

func buildFile(t *testing.T, dir string, opts Options) (string, Result) {
	t.Helper()
	out := filepath.Join(t.TempDir(), "image"+opts.Compression.Ext())
	f, err := os.Create(out)
	require.NoError(t, err)
	defer f.Close()
	res, err := BuildDir(context.Background(), f, dir, opts)
	require.NoError(t, err)
	require.NoError(t, f.Close())
	fi, err := os.Stat(out)
	require.NoError(t, err)
	require.Equal(t, fi.Size(), res.Size)
	return out, res
}

func TestGNUCpioUnpacksTheSourceTree(t *testing.T) {
	requireRoot(t)
	src := filepath.Join(t.TempDir(), "root")
	makeTree(t, src)
	// GNU cpio -idm restores the mtime of files and of empty directories;
	// a directory's own mtime changes as its children are unpacked.
	want := describeTree(t, src, false)
	for _, comp := range []Compression{Gzip, Zstd, None} {
		t.Run(string(comp), func(t *testing.T) {
			img, res := buildFile(t, src, Options{Compression: comp, NoDefaultExcludes: true, KeepHostFiles: true})
			assert.EqualValues(t, len(want), res.Files)
			got := describeTree(t, gnuUnpack(t, img, comp), false)
			assert.Equal(t, want, got)
		})
	}
}

func TestRebuildsAreByteIdentical(t *testing.T) {
	requireRoot(t)
	src := filepath.Join(t.TempDir(), "root")
	makeTree(t, src)
	for _, comp := range []Compression{Gzip, Zstd} {
		t.Run(string(comp), func(t *testing.T) {
			a, ra := buildFile(t, src, Options{Compression: comp})
			b, rb := buildFile(t, src, Options{Compression: comp, Concurrency: 1})
			ab, err := os.ReadFile(a)
			require.NoError(t, err)
			bb, err := os.ReadFile(b)
			require.NoError(t, err)
			assert.True(t, bytes.Equal(ab, bb), "two builds of the same tree differ")
			assert.Equal(t, ra.SHA256, rb.SHA256)
		})
	}
	t.Run("clamped mtimes", func(t *testing.T) {
		epoch := treeTime.Add(-time.Hour)
		a, _ := buildFile(t, src, Options{MTimeClamp: epoch})
		setTimes(t, src, time.Now())
		b, _ := buildFile(t, src, Options{MTimeClamp: epoch})
		ab, _ := os.ReadFile(a)
		bb, _ := os.ReadFile(b)
		assert.True(t, bytes.Equal(ab, bb), "touching every file changed a clamped build")
		// And the clamp is what GNU cpio restores.
		got := describeTree(t, gnuUnpack(t, b, Gzip), false)
		for _, l := range got {
			if strings.Contains(l, " mtime=") {
				assert.Contains(t, l, " mtime="+itoa(epoch.Unix()))
			}
		}
	})
}

func itoa(n int64) string { return strings.TrimSpace(strings.Replace(fmtInt(n), "+", "", 1)) }

func fmtInt(n int64) string {
	b := []byte{}
	if n == 0 {
		return "0"
	}
	for n > 0 {
		b = append([]byte{byte('0' + n%10)}, b...)
		n /= 10
	}
	return string(b)
}

// listArchive returns the names in an uncompressed cpio archive.
func listArchive(t *testing.T, b []byte) []string {
	t.Helper()
	var names []string
	rr := cpio.Newc.Reader(bytes.NewReader(b))
	require.NoError(t, cpio.ForEachRecord(cpio.EOFReader{RecordReader: rr}, func(r cpio.Record) error {
		names = append(names, r.Name)
		return nil
	}))
	return names
}

func TestExcludes(t *testing.T) {
	requireRoot(t)
	src := filepath.Join(t.TempDir(), "root")
	makeTree(t, src)
	for _, p := range []string{"proc/1", "sys/kernel", "tmp/scratch", "var/cache/apt/archives", "usr/share/doc/pkg", "usr/share/GeoIP"} {
		require.NoError(t, os.MkdirAll(filepath.Join(src, p), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(src, p, "f"), []byte("x"), 0o644))
	}
	require.NoError(t, os.WriteFile(filepath.Join(src, "dev/console"), nil, 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(src, "etc/warewulf/excludes"),
		[]byte("# Warewulf style\n/usr/share/GeoIP\n/usr/share/doc/*\n"), 0o644))

	var buf bytes.Buffer
	res, err := BuildDir(context.Background(), &buf, src, Options{Compression: None, Excludes: []string{"/home/user/", "*.bin"}})
	require.NoError(t, err)
	names := listArchive(t, buf.Bytes())
	has := func(n string) bool {
		for _, x := range names {
			if x == n {
				return true
			}
		}
		return false
	}
	for _, kept := range []string{"proc", "sys", "tmp", "dev", "dev/null", "dev/console", "var/cache/apt", "usr/share/doc", "home", "etc/shadow", "usr/lib/a"} {
		assert.True(t, has(kept), "%s should be in the image", kept)
	}
	for _, gone := range []string{"proc/1", "sys/kernel", "tmp/scratch", "dev/sda", "var/cache/apt/archives", "usr/share/doc/pkg",
		"usr/share/GeoIP", "usr/share/GeoIP/f", "home/user", "home/user/notes.txt", "usr/lib/big.bin"} {
		assert.False(t, has(gone), "%s should be excluded", gone)
	}
	assert.Contains(t, res.Excludes, "/usr/share/GeoIP")
	assert.Contains(t, res.Excludes, "/home/user")

	_, err = NewExcluder("/[")
	assert.ErrorContains(t, err, "/[")
}

func TestParentDirectoriesAndOwnersInRecords(t *testing.T) {
	var buf bytes.Buffer
	w := NewWriter(&buf, WriterOptions{MTimeClamp: time.Unix(100, 0)})
	require.NoError(t, w.WriteFile("/a/b/c/file", 0o640, 11, 22, time.Unix(500, 0), []byte("data")))
	require.NoError(t, w.WriteDir("a/b/d", 0o700, 33, 44, time.Unix(50, 0)))
	require.NoError(t, w.WriteSymlink("a/link", "b/c/file", 1, 2, time.Unix(1, 0)))
	require.NoError(t, w.Close())
	assert.Zero(t, buf.Len()%4)
	recs, err := cpio.ReadAllRecords(cpio.EOFReader{RecordReader: cpio.Newc.Reader(bytes.NewReader(buf.Bytes()))})
	require.NoError(t, err)
	var got []string
	for _, r := range recs {
		got = append(got, r.Name+" "+r.Info.String()[len(r.Name):])
	}
	require.Len(t, recs, 6)
	assert.Equal(t, []string{"a", "a/b", "a/b/c", "a/b/c/file", "a/b/d", "a/link"},
		[]string{recs[0].Name, recs[1].Name, recs[2].Name, recs[3].Name, recs[4].Name, recs[5].Name}, "%v", got)
	assert.EqualValues(t, cpio.S_IFDIR|0o755, recs[0].Mode)
	f := recs[3]
	assert.EqualValues(t, 11, f.UID)
	assert.EqualValues(t, 22, f.GID)
	assert.EqualValues(t, 100, f.MTime, "mtime clamped")
	assert.EqualValues(t, cpio.S_IFREG|0o640, f.Mode)
	assert.EqualValues(t, 50, recs[4].MTime, "older mtime kept")
	assert.EqualValues(t, 33, recs[4].UID)
}

func TestFileOf4GiBIsRejected(t *testing.T) {
	src := t.TempDir()
	p := filepath.Join(src, "huge.img")
	f, err := os.Create(p)
	require.NoError(t, err)
	require.NoError(t, f.Truncate(4<<30)) // sparse
	require.NoError(t, f.Close())
	_, err = BuildDir(context.Background(), io.Discard, src, Options{Compression: None})
	require.ErrorIs(t, err, ErrFileTooLarge)
	assert.ErrorContains(t, err, "/huge.img")
}

// brokenFS fails to open one file.
type brokenFS struct {
	fstest.MapFS
	bad string
}

func (b brokenFS) Open(name string) (fs.File, error) {
	if name == b.bad {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrPermission}
	}
	return b.MapFS.Open(name)
}

func TestUnreadableFileIsAnErrorNamingIt(t *testing.T) {
	fsys := brokenFS{MapFS: fstest.MapFS{
		"etc/ok":     {Data: []byte("fine")},
		"etc/secret": {Data: []byte("nope")},
	}, bad: "etc/secret"}
	_, err := Build(context.Background(), io.Discard, fsys, Options{})
	require.Error(t, err)
	assert.True(t, errors.Is(err, fs.ErrPermission))
	assert.ErrorContains(t, err, "/etc/secret")
}

func TestBuildFromFSWithProgress(t *testing.T) {
	fsys := fstest.MapFS{
		"etc/motd": {Data: []byte("n1\n"), Mode: 0o644},
		"bin/sh":   {Data: bytes.Repeat([]byte{1}, 1000), Mode: 0o755},
		"lib":      {Mode: fs.ModeDir | 0o755},
	}
	var last Progress
	calls := 0
	var buf bytes.Buffer
	res, err := Build(context.Background(), &buf, fsys, Options{
		Progress: func(p Progress) { last = p; calls++ },
	})
	require.NoError(t, err)
	assert.True(t, last.Done)
	assert.EqualValues(t, 5, last.Files) // bin, bin/sh, etc, etc/motd, lib
	assert.EqualValues(t, 1003, last.Bytes)
	assert.Equal(t, int64(buf.Len()), res.Size)
	assert.Empty(t, res.Fingerprint, "MapFS has no change times: never trusted for reuse")
	assert.GreaterOrEqual(t, calls, 1)
}

func TestCanceledBuildStops(t *testing.T) {
	fsys := fstest.MapFS{"a": {Data: []byte("x")}}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := Build(ctx, io.Discard, fsys, Options{})
	assert.ErrorIs(t, err, context.Canceled)
}
