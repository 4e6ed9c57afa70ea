package image

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/klauspost/compress/zstd"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// tarEntry is a compact description of a tar header for tests.
type tarEntry struct {
	name     string
	typ      byte
	mode     int64
	uid, gid int
	data     string
	link     string
	major    int64
	minor    int64
}

func makeTar(t testing.TB, entries ...tarEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Typeflag: e.typ, Mode: e.mode, Uid: e.uid, Gid: e.gid,
			Linkname: e.link, Devmajor: e.major, Devminor: e.minor, ModTime: treeTime, Format: tar.FormatPAX}
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		if e.typ == tar.TypeReg {
			h.Size = int64(len(e.data))
		}
		require.NoError(t, tw.WriteHeader(h))
		if e.typ == tar.TypeReg {
			_, err := tw.Write([]byte(e.data))
			require.NoError(t, err)
		}
	}
	require.NoError(t, tw.Close())
	return buf.Bytes()
}

func gz(t testing.TB, b []byte) []byte {
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	_, err := zw.Write(b)
	require.NoError(t, err)
	require.NoError(t, zw.Close())
	return buf.Bytes()
}

func zst(t testing.TB, b []byte) []byte {
	zw, err := zstd.NewWriter(nil)
	require.NoError(t, err)
	return zw.EncodeAll(b, nil)
}

func rootfsEntries() []tarEntry {
	return []tarEntry{
		{name: "./", typ: tar.TypeDir, mode: 0o755},
		{name: "./etc/", typ: tar.TypeDir, mode: 0o755},
		{name: "./etc/hostname", typ: tar.TypeReg, data: "node\n"},
		{name: "./etc/shadow", typ: tar.TypeReg, mode: 0o640, gid: 42, data: "root:*:1::::::\n"},
		{name: "./usr/bin/su", typ: tar.TypeReg, mode: 0o4755, data: "elf"},
		{name: "./usr/bin/su2", typ: tar.TypeLink, link: "./usr/bin/su"},
		{name: "./bin", typ: tar.TypeSymlink, link: "usr/bin", mode: 0o777},
		{name: "./dev/", typ: tar.TypeDir, mode: 0o755},
		{name: "./dev/null", typ: tar.TypeChar, mode: 0o666, major: 1, minor: 3},
		{name: "./dev/loop0", typ: tar.TypeBlock, mode: 0o660, gid: 6, major: 7, minor: 0},
		{name: "./run/initctl", typ: tar.TypeFifo, mode: 0o600},
		{name: "./home/u/", typ: tar.TypeDir, mode: 0o700, uid: 1000, gid: 1000},
		{name: "./home/u/f", typ: tar.TypeReg, mode: 0o600, uid: 1000, gid: 1000, data: "mine"},
	}
}

func TestImportRootfsTarPlainGzipZstd(t *testing.T) {
	requireRoot(t)
	plain := makeTar(t, rootfsEntries()...)
	var want []string
	for name, data := range map[string][]byte{"plain.tar": plain, "rootfs.tar.gz": gz(t, plain), "rootfs.tar.zst": zst(t, plain)} {
		t.Run(name, func(t *testing.T) {
			src := filepath.Join(t.TempDir(), name)
			require.NoError(t, os.WriteFile(src, data, 0o644))
			dir := t.TempDir()
			st, desc, err := ImportArchive(context.Background(), src, dir, ExtractOptions{})
			require.NoError(t, err)
			assert.Equal(t, "tar:"+src, desc)
			assert.EqualValues(t, 12, st.Entries)
			got := describeTree(t, dir, false)
			if want == nil {
				want = got
			}
			assert.Equal(t, want, got)
			assert.Contains(t, got, "usr/bin/su mode=104755 uid=0 gid=0 size=3 sha=780d84b20d7ae7e6 mtime="+strconv.FormatInt(treeTime.Unix(), 10)+" nlink=2")
			assert.Contains(t, got, "usr/bin/su2 mode=104755 uid=0 gid=0 size=3 sha=780d84b20d7ae7e6 mtime="+strconv.FormatInt(treeTime.Unix(), 10)+" link=usr/bin/su")
			assert.Contains(t, got, "dev/loop0 mode=60660 uid=0 gid=6 rdev=7,0")
			assert.Contains(t, describeTree(t, dir, true), "home/u mode=40700 uid=1000 gid=1000 mtime="+strconv.FormatInt(treeTime.Unix(), 10))
			assert.Contains(t, got, "bin mode=120777 uid=0 gid=0 -> usr/bin")
		})
	}
}

// dockerSave assembles a `docker save` archive: a manifest.json naming the
// layer tarballs in order, a config, and the layers.
func dockerSave(t testing.TB, layers ...[]byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	add := func(name string, b []byte) {
		require.NoError(t, tw.WriteHeader(&tar.Header{Name: name, Typeflag: tar.TypeReg, Mode: 0o644, Size: int64(len(b)), ModTime: treeTime}))
		_, err := tw.Write(b)
		require.NoError(t, err)
	}
	var names []string
	for i, l := range layers {
		n := fmt.Sprintf("%064x/layer.tar", i+1)
		if i == len(layers)-1 {
			n = fmt.Sprintf("blobs/sha256/%064x", i+1) // newer docker: OCI layout paths
		}
		require.NoError(t, tw.WriteHeader(&tar.Header{Name: filepath.Dir(n) + "/", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: treeTime}))
		add(n, l)
		names = append(names, n)
	}
	add("config.json", []byte(`{"architecture":"amd64","os":"linux"}`))
	m, err := json.Marshal([]map[string]any{{"Config": "config.json", "RepoTags": []string{"example/node:1"}, "Layers": names}})
	require.NoError(t, err)
	add("manifest.json", m) // docker writes it last
	require.NoError(t, tw.Close())
	return buf.Bytes()
}

func TestImportDockerSaveAppliesLayersAndWhiteouts(t *testing.T) {
	requireRoot(t)
	l1 := makeTar(t,
		tarEntry{name: "etc/", typ: tar.TypeDir, mode: 0o755},
		tarEntry{name: "etc/a", typ: tar.TypeReg, data: "a1"},
		tarEntry{name: "etc/b", typ: tar.TypeReg, data: "b1"},
		tarEntry{name: "opt/keep/k", typ: tar.TypeReg, data: "k"},
		tarEntry{name: "opt/keep/sub/deep", typ: tar.TypeReg, data: "deep"},
		tarEntry{name: "var/lib/gone/y", typ: tar.TypeReg, data: "y"},
		tarEntry{name: "usr/bin/tool", typ: tar.TypeReg, mode: 0o755, data: "v1"},
	)
	l2 := makeTar(t,
		tarEntry{name: "etc/.wh.a", typ: tar.TypeReg},
		tarEntry{name: "etc/b", typ: tar.TypeReg, data: "b2"},
		tarEntry{name: "etc/c", typ: tar.TypeReg, data: "c2"},
		tarEntry{name: "var/lib/.wh.gone", typ: tar.TypeReg},
		// Same-layer content before the opaque marker survives it.
		tarEntry{name: "opt/keep/new", typ: tar.TypeReg, data: "new"},
		tarEntry{name: "opt/keep/.wh..wh..opq", typ: tar.TypeReg},
	)
	l3 := gz(t, makeTar(t,
		tarEntry{name: "usr/bin/tool", typ: tar.TypeReg, mode: 0o755, data: "v3"},
		tarEntry{name: "bin", typ: tar.TypeSymlink, link: "usr/bin"},
		tarEntry{name: "etc/.wh.never-existed", typ: tar.TypeReg},
	))
	archive := dockerSave(t, l1, l2, l3)
	for name, data := range map[string][]byte{"image.tar": archive, "image.tar.gz": gz(t, archive)} {
		t.Run(name, func(t *testing.T) {
			src := filepath.Join(t.TempDir(), name)
			require.NoError(t, os.WriteFile(src, data, 0o644))
			dir := t.TempDir()
			_, desc, err := ImportArchive(context.Background(), src, dir, ExtractOptions{})
			require.NoError(t, err)
			assert.Equal(t, "docker-archive:"+src+" (example/node:1)", desc)
			got := map[string]string{}
			require.NoError(t, filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
				require.NoError(t, err)
				rel, _ := filepath.Rel(dir, p)
				switch {
				case fi.Mode().IsRegular():
					b, _ := os.ReadFile(p)
					got[rel] = string(b)
				case fi.Mode()&os.ModeSymlink != 0:
					l, _ := os.Readlink(p)
					got[rel] = "-> " + l
				case rel != ".":
					got[rel] = "dir"
				}
				return nil
			}))
			assert.Equal(t, map[string]string{
				"etc": "dir", "etc/b": "b2", "etc/c": "c2",
				"opt": "dir", "opt/keep": "dir", "opt/keep/new": "new",
				"var": "dir", "var/lib": "dir",
				"usr": "dir", "usr/bin": "dir", "usr/bin/tool": "v3",
				"bin": "-> usr/bin",
			}, got)
		})
	}
}

// sandbox returns a root directory to extract into and a canary directory
// beside it that must stay empty.
func sandbox(t testing.TB) (root, canary, parent string) {
	parent = t.TempDir()
	root = filepath.Join(parent, "root")
	canary = filepath.Join(parent, "canary")
	require.NoError(t, os.Mkdir(root, 0o755))
	require.NoError(t, os.Mkdir(canary, 0o755))
	return root, canary, parent
}

func assertContained(t testing.TB, parent, canary string) {
	t.Helper()
	ents, err := os.ReadDir(parent)
	require.NoError(t, err)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	require.ElementsMatch(t, []string{"canary", "root"}, names, "something was written beside the extraction root")
	ents, err = os.ReadDir(canary)
	require.NoError(t, err)
	require.Empty(t, ents, "something was written into the canary directory")
}

func TestExtractNeverWritesOutsideTheRoot(t *testing.T) {
	ctx := context.Background()
	cases := []struct {
		name    string
		entries []tarEntry
		wantErr bool
		inside  map[string]string // files expected inside root
	}{
		{"dotdot", []tarEntry{{name: "../canary/evil", typ: tar.TypeReg, data: "x"}}, true, nil},
		{"deep dotdot", []tarEntry{{name: "a/b/../../../canary/evil", typ: tar.TypeReg, data: "x"}}, true, nil},
		{"absolute", []tarEntry{{name: "/etc/evil", typ: tar.TypeReg, data: "x"}}, false, map[string]string{"etc/evil": "x"}},
		{"absolute symlink parent", []tarEntry{
			{name: "esc", typ: tar.TypeSymlink, link: "/"},
			{name: "esc/canary/evil", typ: tar.TypeReg, data: "x"},
		}, false, map[string]string{"canary/evil": "x"}},
		{"relative symlink parent", []tarEntry{
			{name: "canary/", typ: tar.TypeDir, mode: 0o755},
			{name: "up", typ: tar.TypeSymlink, link: "../../../../canary"},
			{name: "up/evil", typ: tar.TypeReg, data: "x"},
		}, false, map[string]string{"canary/evil": "x"}},
		{"dangling symlink parent", []tarEntry{
			{name: "up", typ: tar.TypeSymlink, link: "../../../../canary"},
			{name: "up/evil", typ: tar.TypeReg, data: "x"},
		}, true, nil},
		{"symlink chain", []tarEntry{
			{name: "a", typ: tar.TypeSymlink, link: "b/.."},
			{name: "b", typ: tar.TypeSymlink, link: "../.."},
			{name: "a/canary/evil", typ: tar.TypeReg, data: "x"},
		}, false, map[string]string{"canary/evil": "x"}},
		{"write through final symlink", []tarEntry{
			{name: "f", typ: tar.TypeSymlink, link: "../canary/evil"},
			{name: "f", typ: tar.TypeReg, data: "x"},
		}, false, map[string]string{"f": "x"}},
		{"hard link out", []tarEntry{{name: "h", typ: tar.TypeLink, link: "../canary"}}, true, nil},
		{"device through symlink dir", []tarEntry{
			{name: "d", typ: tar.TypeSymlink, link: "/../.."},
			{name: "d/canary/fifo", typ: tar.TypeFifo, mode: 0o600},
		}, false, nil},
		{"whiteout out", []tarEntry{{name: "../.wh.canary", typ: tar.TypeReg}}, true, nil},
		{"whiteout through symlink", []tarEntry{
			{name: "s", typ: tar.TypeSymlink, link: "/.."},
			{name: "s/.wh.canary", typ: tar.TypeReg},
			{name: "s/.wh..wh..opq", typ: tar.TypeReg},
		}, false, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			root, canary, parent := sandbox(t)
			require.NoError(t, os.WriteFile(filepath.Join(canary, ".keep"), []byte("k"), 0o644))
			_, err := ExtractTar(ctx, bytes.NewReader(makeTar(t, c.entries...)), root, ExtractOptions{Layer: true})
			if c.wantErr {
				assert.Error(t, err)
			} else {
				assert.NoError(t, err)
			}
			b, err := os.ReadFile(filepath.Join(canary, ".keep"))
			require.NoError(t, err, "canary file removed")
			assert.Equal(t, "k", string(b))
			require.NoError(t, os.Remove(filepath.Join(canary, ".keep")))
			assertContained(t, parent, canary)
			for p, want := range c.inside {
				b, err := os.ReadFile(filepath.Join(root, p))
				require.NoError(t, err)
				assert.Equal(t, want, string(b))
			}
		})
	}
}

// FuzzExtractTar feeds arbitrary tar streams (seeds in
// testdata/fuzz/FuzzExtractTar) to the extractor: it must not panic and
// must never create, change or remove anything outside its root.
func FuzzExtractTar(f *testing.F) {
	for _, s := range fuzzSeeds(f) {
		f.Add(s, true)
		f.Add(s, false)
	}
	f.Fuzz(func(t *testing.T, data []byte, layer bool) {
		root, canary, parent := sandbox(t)
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, _ = ExtractTar(ctx, bytes.NewReader(data), root, ExtractOptions{Layer: layer, MaxBytes: 64 << 20})
		assertContained(t, parent, canary)
	})
}

func fuzzSeeds(t testing.TB) [][]byte {
	return [][]byte{
		makeTar(t, rootfsEntries()...),
		makeTar(t, tarEntry{name: "../x", typ: tar.TypeReg, data: "x"}),
		makeTar(t, tarEntry{name: "/abs/x", typ: tar.TypeReg, data: "x"}),
		makeTar(t, tarEntry{name: "l", typ: tar.TypeSymlink, link: "/"}, tarEntry{name: "l/canary/x", typ: tar.TypeReg, data: "x"}),
		makeTar(t, tarEntry{name: "l", typ: tar.TypeSymlink, link: "../../canary"}, tarEntry{name: "l/x", typ: tar.TypeReg, data: "x"}),
		makeTar(t, tarEntry{name: "h", typ: tar.TypeLink, link: "../../etc/passwd"}),
		makeTar(t, tarEntry{name: "d/.wh..wh..opq", typ: tar.TypeReg}, tarEntry{name: ".wh.d", typ: tar.TypeReg}),
	}
}

// TestWriteFuzzSeeds regenerates the committed seed corpus when
// WWBOOT_WRITE_FUZZ_SEEDS=1; otherwise it checks the corpus is there.
func TestWriteFuzzSeeds(t *testing.T) {
	dir := filepath.Join("testdata", "fuzz", "FuzzExtractTar")
	if os.Getenv("WWBOOT_WRITE_FUZZ_SEEDS") == "1" {
		require.NoError(t, os.MkdirAll(dir, 0o755))
		for i, s := range fuzzSeeds(t) {
			body := fmt.Sprintf("go test fuzz v1\n[]byte(%s)\nbool(%v)\n", strconv.Quote(string(s)), i%2 == 0)
			require.NoError(t, os.WriteFile(filepath.Join(dir, fmt.Sprintf("seed-%02d", i)), []byte(body), 0o644))
		}
	}
	ents, err := os.ReadDir(dir)
	require.NoError(t, err)
	assert.GreaterOrEqual(t, len(ents), len(fuzzSeeds(t)))
}

func TestExtractSizeCapAndSparseOutput(t *testing.T) {
	zeros := string(make([]byte, 3<<20))
	data := makeTar(t, tarEntry{name: "holes.img", typ: tar.TypeReg, data: "head" + zeros + "tail"})
	_, err := ExtractTar(context.Background(), bytes.NewReader(data), t.TempDir(), ExtractOptions{MaxBytes: 1 << 20})
	assert.ErrorIs(t, err, ErrArchiveTooLarge)

	dir := t.TempDir()
	st, err := ExtractTar(context.Background(), bytes.NewReader(data), dir, ExtractOptions{})
	require.NoError(t, err)
	assert.EqualValues(t, 8+3<<20, st.Bytes)
	b, err := os.ReadFile(filepath.Join(dir, "holes.img"))
	require.NoError(t, err)
	assert.Equal(t, "head"+zeros+"tail", string(b))
}
