package image

import (
	"archive/tar"
	"context"
	"crypto/rand"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestSweepHelperProcess is not a test: it is the child process the sweep
// tests start and kill -9. It imports WWBOOT_SWEEP_SRC as WWBOOT_SWEEP_NAME
// into the store WWBOOT_SWEEP_STORE.
func TestSweepHelperProcess(t *testing.T) {
	if os.Getenv("WWBOOT_SWEEP_STORE") == "" {
		t.Skip("helper process only")
	}
	s, err := OpenStore(os.Getenv("WWBOOT_SWEEP_STORE"))
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	if _, err := s.Import(context.Background(), os.Getenv("WWBOOT_SWEEP_SRC"), os.Getenv("WWBOOT_SWEEP_NAME"), BuildOptions{}); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	os.Exit(0)
}

// startImport starts a real process importing src as name into the store.
func startImport(t *testing.T, store, src, name string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestSweepHelperProcess$")
	cmd.Env = append(os.Environ(), "WWBOOT_SWEEP_STORE="+store, "WWBOOT_SWEEP_SRC="+src, "WWBOOT_SWEEP_NAME="+name)
	cmd.Stderr = os.Stderr
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	return cmd
}

// bigArchive writes a tar of a kernel and files MiB of random files.
func bigArchive(t *testing.T, mib int) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "root.tar")
	f, err := os.Create(p)
	require.NoError(t, err)
	defer f.Close()
	tw := tar.NewWriter(f)
	add := func(name string, size int) {
		b := make([]byte, size)
		_, _ = rand.Read(b)
		require.NoError(t, tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(size), Typeflag: tar.TypeReg, ModTime: time.Unix(1e9, 0)}))
		_, err := tw.Write(b)
		require.NoError(t, err)
	}
	require.NoError(t, tw.WriteHeader(&tar.Header{Name: "boot/", Mode: 0o755, Typeflag: tar.TypeDir, ModTime: time.Unix(1e9, 0)}))
	add("boot/vmlinuz-6.1.0-1-amd64", 64<<10)
	require.NoError(t, tw.WriteHeader(&tar.Header{Name: "data/", Mode: 0o755, Typeflag: tar.TypeDir, ModTime: time.Unix(1e9, 0)}))
	for i := range mib * 4 {
		add(fmt.Sprintf("data/f%05d", i), 256<<10)
	}
	require.NoError(t, tw.Close())
	return p
}

// waitFor polls until glob matches something in dir, or the process ends.
func waitFor(t *testing.T, cmd *exec.Cmd, pattern string) string {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		m, _ := filepath.Glob(pattern)
		for _, p := range m {
			if fi, err := os.Stat(p); err == nil && (!fi.IsDir() || nonEmpty(p)) {
				return p
			}
		}
		time.Sleep(2 * time.Millisecond)
	}
	t.Fatalf("%s never appeared", pattern)
	return ""
}

func nonEmpty(dir string) bool {
	ents, _ := os.ReadDir(dir)
	return len(ents) > 0
}

func kill9(t *testing.T, cmd *exec.Cmd) {
	t.Helper()
	require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
	err := cmd.Wait()
	require.Error(t, err)
	assert.Contains(t, err.Error(), "killed", "the import died of the kill, not on its own")
}

// TestSweepAfterKilledImports kills real import processes with SIGKILL at
// two points (issue 11 item 7): while unpacking an archive (a half-unpacked
// roots/.NAME.new-* tree) and while compressing the image after a re-import
// replaced the tree (a roots/.NAME.old-* tree and a tmp/ file). While the
// import runs, a sweep from another process's store must not touch its
// files; once it is dead, Sweep (and OpenStore, and Prune) removes them, and
// the published image stays intact.
func TestSweepAfterKilledImports(t *testing.T) {
	if testing.Short() {
		t.Skip("kills real processes")
	}
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "images")
	archive := bigArchive(t, 48)

	s, err := OpenStore(dir)
	require.NoError(t, err)
	_, err = s.Import(ctx, archive, "img", BuildOptions{})
	require.NoError(t, err)
	pub, err := s.Lookup(ctx, "img")
	require.NoError(t, err)

	// 1. Killed while unpacking a new image; a sweep while it runs leaves
	// its tree alone.
	cmd := startImport(t, dir, archive, "other")
	half := waitFor(t, cmd, filepath.Join(dir, "roots", ".other.new-*"))
	removed, ran, err := s.Sweep(ctx)
	require.NoError(t, err)
	assert.False(t, ran, "a live import holds the store busy: no sweep")
	assert.Empty(t, removed)
	assert.DirExists(t, half, "the live import's tree is untouched")
	kill9(t, cmd)
	assert.DirExists(t, half, "the kill left a half-unpacked tree")

	// 2. Killed while compressing a re-import of img: the replaced tree
	// and the temporary image are left.
	cmd = startImport(t, dir, archive, "img")
	tmpImg := waitFor(t, cmd, filepath.Join(dir, "tmp", "img.*"))
	oldTree := waitFor(t, cmd, filepath.Join(dir, "roots", ".img.old-*"))
	kill9(t, cmd)
	assert.FileExists(t, tmpImg)
	assert.DirExists(t, oldTree)

	// A fresh store (as `wwboot serve` or any command opens it) sweeps.
	s2, err := OpenStore(dir)
	require.NoError(t, err)
	assert.NoDirExists(t, half)
	assert.NoFileExists(t, tmpImg)
	assert.NoDirExists(t, oldTree)
	ents, err := os.ReadDir(filepath.Join(dir, "roots"))
	require.NoError(t, err)
	var names []string
	for _, e := range ents {
		names = append(names, e.Name())
	}
	assert.Equal(t, []string{"img"}, names, "only the published tree is left")
	tmps, _ := os.ReadDir(filepath.Join(dir, "tmp"))
	assert.Empty(t, tmps)

	m, err := s2.Lookup(ctx, "img")
	require.NoError(t, err)
	assert.Equal(t, pub.SHA256, m.SHA256, "the published image is intact")
	assert.FileExists(t, m.Path)
	assert.FileExists(t, filepath.Join(m.Root, "boot", "vmlinuz-6.1.0-1-amd64"))

	// 3. Prune sees leftovers too: kill another unpack, then prune.
	cmd = startImport(t, dir, archive, "third")
	half = waitFor(t, cmd, filepath.Join(dir, "roots", ".third.new-*"))
	kill9(t, cmd)
	pruned, err := s2.Prune(ctx, time.Hour)
	require.NoError(t, err)
	assert.Contains(t, strings.Join(pruned, "\n"), half)
	assert.NoDirExists(t, half)
}
