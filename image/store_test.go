package image

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// settle waits until the tree's change times are older than the racy
// window, so a build may record a reusable fingerprint.
func settle() { time.Sleep(racyWindow + 100*time.Millisecond) }

func TestStoreIncrementalRebuild(t *testing.T) {
	requireRoot(t)
	ctx := context.Background()
	src := filepath.Join(t.TempDir(), "root")
	makeTree(t, src)
	settle()
	s, err := OpenStore(filepath.Join(t.TempDir(), "images"))
	require.NoError(t, err)

	first, err := s.Import(ctx, src, "compute", BuildOptions{})
	require.NoError(t, err)
	assert.True(t, first.Rebuilt)
	assert.NotEmpty(t, first.Fingerprint)
	assert.Equal(t, "6.1.0-13-amd64", first.KernelVersion)
	assert.Equal(t, "/boot/vmlinuz-6.1.0-13-amd64", "/"+first.KernelSource)
	k, err := os.ReadFile(first.KernelPath)
	require.NoError(t, err)
	assert.Equal(t, "kernel 13", string(k))
	assert.Equal(t, filepath.Join(s.Dir(), "blobs", "sha256-"+first.SHA256+".cpio.gz"), first.Path)
	fi, err := os.Stat(first.Path)
	require.NoError(t, err)
	assert.Equal(t, first.Size, fi.Size())

	// Unchanged: one metadata walk, nothing written.
	again, err := s.Build(ctx, "compute", BuildOptions{})
	require.NoError(t, err)
	assert.False(t, again.Rebuilt)
	assert.Equal(t, first.SHA256, again.SHA256)
	fi2, err := os.Stat(first.Path)
	require.NoError(t, err)
	assert.Equal(t, fi.ModTime(), fi2.ModTime(), "image file rewritten")

	// Same size, mtime put back: the change time still moves.
	p := filepath.Join(src, "etc/shadow")
	require.NoError(t, os.WriteFile(p, []byte("edit\n"), 0o644))
	require.NoError(t, os.Chtimes(p, treeTime, treeTime))
	old, err := os.Open(first.Path) // a transfer under way
	require.NoError(t, err)
	defer old.Close()
	settle()
	changed, err := s.Build(ctx, "compute", BuildOptions{})
	require.NoError(t, err)
	assert.True(t, changed.Rebuilt)
	assert.NotEqual(t, first.SHA256, changed.SHA256)

	// The replaced file stays until pruned after its grace period.
	assert.FileExists(t, first.Path)
	removed, err := s.Prune(ctx, time.Hour)
	require.NoError(t, err)
	assert.Empty(t, removed)
	removed, err = s.Prune(ctx, 0)
	require.NoError(t, err)
	assert.Equal(t, []string{first.Path}, removed)
	assert.NoFileExists(t, first.Path)
	buf := make([]byte, 2)
	_, err = old.ReadAt(buf, 0)
	require.NoError(t, err, "an open transfer keeps reading after prune")
	assert.Equal(t, []byte{0x1f, 0x8b}, buf)

	// New options mean a new build.
	z, err := s.Build(ctx, "compute", BuildOptions{Options: Options{Compression: Zstd}})
	require.NoError(t, err)
	assert.True(t, z.Rebuilt)
	assert.Equal(t, Zstd, z.Compression)
	settle()
	z2, err := s.Build(ctx, "compute", BuildOptions{})
	require.NoError(t, err)
	assert.False(t, z2.Rebuilt, "options are remembered")
	assert.Equal(t, Zstd, z2.Compression)

	// --kernel picks another one.
	k9, err := s.Build(ctx, "compute", BuildOptions{Kernel: "/boot/vmlinuz-6.1.0-9-amd64"})
	require.NoError(t, err)
	assert.True(t, k9.Rebuilt)
	assert.Equal(t, "6.1.0-9-amd64", k9.KernelVersion)
}

func TestStoreLookupSeesAnotherWriter(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "images")
	server, err := OpenStore(dir)
	require.NoError(t, err)
	_, err = server.Lookup(ctx, "n1")
	require.ErrorIs(t, err, ErrNotFound)

	src := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(src, "hello"), []byte("hi"), 0o644))
	cli, err := OpenStore(dir) // stands in for another process
	require.NoError(t, err)
	built, err := cli.Import(ctx, src, "n1", BuildOptions{})
	require.NoError(t, err)

	deadline := time.Now().Add(3 * time.Second)
	var m Meta
	for {
		m, err = server.Lookup(ctx, "n1")
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	require.NoError(t, err)
	assert.Equal(t, built.Meta, m)
	assert.Empty(t, m.KernelPath)

	require.NoError(t, cli.Delete(ctx, "n1"))
	assert.True(t, errors.Is(cli.Delete(ctx, "n1"), ErrNotFound))
	_, err = cli.Lookup(ctx, "n1")
	assert.ErrorIs(t, err, ErrNotFound)
	assert.FileExists(t, m.Path, "deleted image's file waits for prune")
	assert.Error(t, ValidName("../x"))
	_, err = cli.Import(ctx, src, "../x", BuildOptions{})
	assert.Error(t, err)
}

func TestStoreImportDockerSave(t *testing.T) {
	requireRoot(t)
	ctx := context.Background()
	s, err := OpenStore(filepath.Join(t.TempDir(), "images"))
	require.NoError(t, err)
	archive := dockerSave(t,
		makeTar(t, rootfsEntries()...),
		makeTar(t, tarEntry{name: "boot/vmlinuz-5.14.0-362.el9.x86_64", typ: "0"[0], data: "kernel"}, tarEntry{name: "etc/.wh.shadow", typ: "0"[0]}),
	)
	src := filepath.Join(t.TempDir(), "node.tar")
	require.NoError(t, os.WriteFile(src, archive, 0o644))
	res, err := s.Import(ctx, src, "rocky", BuildOptions{Options: Options{Compression: Zstd, NoDefaultExcludes: true, KeepHostFiles: true}})
	require.NoError(t, err)
	assert.Equal(t, "5.14.0-362.el9.x86_64", res.KernelVersion)
	assert.Equal(t, filepath.Join(s.Dir(), "roots", "rocky"), res.Root)
	assert.Contains(t, res.Source, "docker-archive:")
	assert.NoFileExists(t, filepath.Join(res.Root, "etc/shadow"))

	// The image unpacks with GNU cpio into the imported tree.
	got := describeTree(t, gnuUnpack(t, res.Path, Zstd), false)
	assert.Equal(t, describeTree(t, res.Root, false), got)

	// Re-import replaces the tree.
	res2, err := s.Import(ctx, src, "rocky", BuildOptions{})
	require.NoError(t, err)
	assert.Equal(t, res.SHA256, res2.SHA256, "same archive, same image")
	require.NoError(t, s.Delete(ctx, "rocky"))
	assert.NoDirExists(t, res.Root)
}

func TestStoreLookupConcurrentWithPublish(t *testing.T) {
	ctx := context.Background()
	dir := filepath.Join(t.TempDir(), "images")
	server, err := OpenStore(dir)
	require.NoError(t, err)
	src := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(src, "f"), []byte("1"), 0o644))
	writer, err := OpenStore(dir)
	require.NoError(t, err)
	_, err = writer.Import(ctx, src, "img", BuildOptions{})
	require.NoError(t, err)

	done := make(chan struct{})
	errs := make(chan error, 4)
	for i := 0; i < 4; i++ {
		go func() {
			for {
				select {
				case <-done:
					errs <- nil
					return
				default:
				}
				m, err := server.Lookup(ctx, "img")
				if err != nil && !errors.Is(err, ErrNotFound) {
					errs <- err
					return
				}
				if err == nil {
					// Whatever record is seen, its file is complete.
					fi, err := os.Stat(m.Path)
					if err != nil || fi.Size() != m.Size {
						errs <- errors.New("published record points at a missing or partial file")
						return
					}
				}
			}
		}()
	}
	for i := 0; i < 5; i++ {
		require.NoError(t, os.WriteFile(filepath.Join(src, "f"), []byte(strconv.Itoa(i)), 0o644))
		_, err := writer.Build(ctx, "img", BuildOptions{Force: true})
		require.NoError(t, err)
	}
	close(done)
	for i := 0; i < 4; i++ {
		require.NoError(t, <-errs)
	}
}
