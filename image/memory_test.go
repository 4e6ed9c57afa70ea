package image

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"io/fs"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// genFS is a generated tree that exists only as a function: dirs
// directories of filesPerDir files of size bytes each, whose content is
// compressible text produced on the fly. It lets a test stream any amount of
// data through Build without disk or memory holding it.
type genFS struct {
	dirs, filesPerDir int
	size              int64
	block             []byte
}

func newGenFS(dirs, filesPerDir int, size int64) *genFS {
	rnd := rand.New(rand.NewSource(7))
	words := strings.Fields("alpha beta gamma delta kernel module initramfs node cluster boot image overlay firmware driver library config")
	var b strings.Builder
	for b.Len() < 1<<20 {
		b.WriteString(words[rnd.Intn(len(words))])
		if rnd.Intn(9) == 0 {
			b.WriteString(strconv.Itoa(rnd.Int()))
		}
		b.WriteByte(" \n"[rnd.Intn(2)])
	}
	return &genFS{dirs: dirs, filesPerDir: filesPerDir, size: size, block: []byte(b.String())}
}

type genInfo struct {
	name string
	dir  bool
	size int64
}

func (i genInfo) Name() string { return i.name }
func (i genInfo) Size() int64  { return i.size }
func (i genInfo) Mode() fs.FileMode {
	if i.dir {
		return fs.ModeDir | 0o755
	}
	return 0o644
}
func (i genInfo) ModTime() time.Time         { return treeTime }
func (i genInfo) IsDir() bool                { return i.dir }
func (i genInfo) Sys() any                   { return nil }
func (i genInfo) Type() fs.FileMode          { return i.Mode().Type() }
func (i genInfo) Info() (fs.FileInfo, error) { return i, nil }

func (g *genFS) ReadDir(name string) ([]fs.DirEntry, error) {
	var out []fs.DirEntry
	switch {
	case name == ".":
		for d := 0; d < g.dirs; d++ {
			out = append(out, genInfo{name: fmt.Sprintf("d%04d", d), dir: true})
		}
	case len(name) == 5 && name[0] == 'd':
		for f := 0; f < g.filesPerDir; f++ {
			out = append(out, genInfo{name: fmt.Sprintf("f%05d", f), size: g.size})
		}
	default:
		return nil, &fs.PathError{Op: "readdir", Path: name, Err: fs.ErrNotExist}
	}
	return out, nil
}

type genFile struct {
	g    *genFS
	info genInfo
	off  int64
}

func (f *genFile) Stat() (fs.FileInfo, error) { return f.info, nil }
func (f *genFile) Close() error               { return nil }
func (f *genFile) Read(p []byte) (int, error) {
	n, err := f.ReadAt(p, f.off)
	f.off += int64(n)
	return n, err
}

func (f *genFile) ReadAt(p []byte, off int64) (int, error) {
	if off >= f.info.size {
		return 0, io.EOF
	}
	if rem := f.info.size - off; int64(len(p)) > rem {
		p = p[:rem]
	}
	n := 0
	for n < len(p) {
		o := int((off + int64(n)) % int64(len(f.g.block)))
		n += copy(p[n:], f.g.block[o:])
	}
	return n, nil
}

func (g *genFS) Open(name string) (fs.File, error) {
	var d, f int
	switch {
	case name == ".":
		return &genFile{g: g, info: genInfo{name: name, dir: true}}, nil
	case len(name) == 5 && name[0] == 'd':
		return &genFile{g: g, info: genInfo{name: name, dir: true}}, nil
	case len(name) == 12:
		if n, _ := fmt.Sscanf(name, "d%04d/f%05d", &d, &f); n == 2 && d < g.dirs && f < g.filesPerDir {
			return &genFile{g: g, info: genInfo{name: name[6:], size: g.size}}, nil
		}
	}
	return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrNotExist}
}

// TestMemoryHelper is run as a subprocess by TestBuildMemoryIsFlat.
func TestMemoryHelper(t *testing.T) {
	spec := os.Getenv("WWBOOT_IMAGE_MEM_HELPER")
	if spec == "" {
		t.Skip("subprocess helper of TestBuildMemoryIsFlat")
	}
	var dirs, files int
	var size int64
	var comp string
	_, err := fmt.Sscanf(spec, "%d,%d,%d,%s", &dirs, &files, &size, &comp)
	require.NoError(t, err)
	level := 1
	if Compression(comp) != Gzip {
		level = 0
	}
	res, err := Build(context.Background(), io.Discard, newGenFS(dirs, files, size), Options{Compression: Compression(comp), Level: level})
	require.NoError(t, err)
	fmt.Printf("UNCOMPRESSED=%d\nHWM_KB=%d\n", res.UncompressedSize, vmHWM(t))
}

func vmHWM(t *testing.T) int64 {
	f, err := os.Open("/proc/self/status")
	require.NoError(t, err)
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			require.NoError(t, err)
			return kb
		}
	}
	t.Fatal("no VmHWM in /proc/self/status")
	return 0
}

// TestBuildMemoryIsFlat streams a small and a four times larger generated
// tree through Build in fresh processes and compares their peak RSS
// (VmHWM): memory must not grow with the tree, up to a 2.6 GB one (generated
// on the fly, so it costs no disk). bench/image/run.sh measures a real tree.
//
// Under -race the helper is a plain (non-race) build of this package's
// tests: the race detector's shadow memory grows with every byte touched and
// would measure itself, and its slowdown would blow the CI budget.
func TestBuildMemoryIsFlat(t *testing.T) {
	bin := os.Args[0]
	if raceEnabled {
		bin = filepath.Join(t.TempDir(), "image-norace.test")
		out, err := exec.Command("go", "test", "-c", "-o", bin, ".").CombinedOutput()
		require.NoError(t, err, "building the non-race helper: %s", out)
	}
	run := func(dirs, files int, size int64, comp Compression) (int64, int64) {
		cmd := exec.Command(bin, "-test.run=^TestMemoryHelper$", "-test.count=1")
		cmd.Env = append(os.Environ(), fmt.Sprintf("WWBOOT_IMAGE_MEM_HELPER=%d,%d,%d,%s", dirs, files, size, comp))
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, "%s", out)
		var unc, hwm int64
		for _, l := range strings.Split(string(out), "\n") {
			if v, ok := strings.CutPrefix(l, "UNCOMPRESSED="); ok {
				unc, _ = strconv.ParseInt(v, 10, 64)
			}
			if v, ok := strings.CutPrefix(l, "HWM_KB="); ok {
				hwm, _ = strconv.ParseInt(v, 10, 64)
			}
		}
		require.NotZero(t, hwm, "%s", out)
		return unc, hwm
	}
	for _, comp := range []Compression{Gzip, Zstd} {
		t.Run(string(comp), func(t *testing.T) {
			// Both trees have the same directory shape; the large one has
			// 4x the files and 4x the bytes. The small one is already
			// large enough to fill the compressors' pipelines (zstd
			// buffers up to a few jobs of 8 MiB).
			su, sh := run(8, 400, 16<<10, comp)  // ~52 MB, 3,200 files
			lu, lh := run(8, 1600, 16<<10, comp) // ~210 MB, 12,800 files
			bu, bh := run(2, 4, 26<<20, comp)    // ~218 MB in 8 files of 26 MB
			gu, gh := run(4, 8, 80<<20, comp)    // ~2.6 GB in 32 files of 80 MB: the multi-GB tree
			t.Logf("%s peak RSS: %d MB tree -> %d MB; %d MB tree -> %d MB; %d MB in big files -> %d MB; %d MB tree -> %d MB",
				comp, su>>20, sh>>10, lu>>20, lh>>10, bu>>20, bh>>10, gu>>20, gh>>10)
			require.Greater(t, gu, int64(2<<30), "the multi-GB tree went through")
			require.Less(t, gh-sh, int64(64<<10), "peak RSS grew with a multi-GB tree")
			require.Greater(t, lu, 3*su)
			// Flat: holding the input would cost 150+ MB more for the 4x
			// tree; allow 64 MB of jitter (Go's GC paces by heap growth,
			// per-record garbage is collected late under load, and how
			// full the compressors' job queues get varies), and 200 MB in
			// all.
			require.Less(t, lh-sh, int64(64<<10), "peak RSS grew with the tree")
			require.Less(t, bh-sh, int64(64<<10), "peak RSS grew with file size")
			require.Less(t, max(lh, bh, gh), int64(200<<10))
		})
	}
}
