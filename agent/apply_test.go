package agent

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/u-root/u-root/pkg/cpio"
)

// newc writes records with u-root's writer (an independent implementation
// of the format).
func newc(t testing.TB, recs ...cpio.Record) []byte {
	t.Helper()
	var buf bytes.Buffer
	w := cpio.Newc.Writer(&buf)
	for _, r := range recs {
		require.NoError(t, w.WriteRecord(r))
	}
	require.NoError(t, cpio.WriteTrailer(w))
	return buf.Bytes()
}

func owned(r cpio.Record, uid, gid uint64) cpio.Record {
	r.UID, r.GID = uid, gid
	return r
}

func TestApplyWritesFilesLinksDirs(t *testing.T) {
	root := t.TempDir()
	arch := newc(t,
		cpio.Directory("etc", 0o755),
		cpio.Directory("root/.ssh", 0o700),
		cpio.StaticFile("etc/motd", "hello\n", 0o640),
		owned(cpio.StaticFile("root/.ssh/authorized_keys", "ssh-ed25519 AAAA k\n", 0o600), 0, 0),
		owned(cpio.StaticFile("srv/owned", "x", 0o644), 1234, 5678),
		cpio.Symlink("etc/issue", "motd"),
		cpio.CharDev("dev/null", 0o666, 1, 3), // ignored
	)
	files, err := Apply(root, arch, nil)
	require.NoError(t, err)
	assert.Equal(t, []string{"etc/issue", "etc/motd", "root/.ssh/authorized_keys", "srv/owned"}, files)
	b, err := os.ReadFile(filepath.Join(root, "etc/issue"))
	require.NoError(t, err)
	assert.Equal(t, "hello\n", string(b))
	fi, err := os.Stat(filepath.Join(root, "etc/motd"))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o640), fi.Mode().Perm())
	fi, err = os.Stat(filepath.Join(root, "root/.ssh"))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o700), fi.Mode().Perm())
	_, err = os.Lstat(filepath.Join(root, "dev/null"))
	assert.True(t, os.IsNotExist(err), "devices are not created")
	if os.Geteuid() == 0 {
		fi, err = os.Stat(filepath.Join(root, "srv/owned"))
		require.NoError(t, err)
		st := fi.Sys().(*syscall.Stat_t)
		assert.Equal(t, [2]uint32{1234, 5678}, [2]uint32{st.Uid, st.Gid}, "owner from the archive")
	}
	assertNoTemps(t, root)
}

// TestApplyIsOneUnit: an archive that fails anywhere changes nothing, and
// one that drops a file removes it (only files the agent wrote itself).
func TestApplyIsOneUnit(t *testing.T) {
	root := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(root, "etc"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(root, "etc/hosts"), []byte("old hosts"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(root, "etc/mine"), []byte("the image's own"), 0o644))
	require.NoError(t, os.MkdirAll(filepath.Join(root, "var/taken"), 0o755))

	v1 := newc(t, cpio.StaticFile("etc/hosts", "v1 hosts", 0o644), cpio.StaticFile("etc/sudoers.d/ops", "ops ALL", 0o440))
	files, err := Apply(root, v1, nil)
	require.NoError(t, err)
	assert.Equal(t, []string{"etc/hosts", "etc/sudoers.d/ops"}, files)

	// A bad archive: good files first, then a path out of the root, or a
	// file where the node has a directory. Nothing changes.
	for _, bad := range [][]byte{
		newc(t, cpio.StaticFile("etc/hosts", "v2 hosts", 0o644), cpio.StaticFile("../escape", "x", 0o644)),
		newc(t, cpio.StaticFile("etc/hosts", "v2 hosts", 0o644), cpio.StaticFile("var/taken", "x", 0o644)),
		newc(t, cpio.StaticFile("etc/hosts", "v2 hosts", 0o644))[:150], // truncated
	} {
		_, err := Apply(root, bad, files)
		require.Error(t, err)
		b, _ := os.ReadFile(filepath.Join(root, "etc/hosts"))
		assert.Equal(t, "v1 hosts", string(b), "a failed apply changes nothing")
		assertNoTemps(t, root)
	}
	_, err = os.Stat(filepath.Join(filepath.Dir(root), "escape"))
	assert.True(t, os.IsNotExist(err))

	// v2 drops the sudoers file: it goes; the image's own file stays.
	v2 := newc(t, cpio.StaticFile("etc/hosts", "v2 hosts", 0o644))
	files, err = Apply(root, v2, files)
	require.NoError(t, err)
	assert.Equal(t, []string{"etc/hosts"}, files)
	_, err = os.Stat(filepath.Join(root, "etc/sudoers.d/ops"))
	assert.True(t, os.IsNotExist(err), "a file the overlay no longer carries is removed")
	b, err := os.ReadFile(filepath.Join(root, "etc/mine"))
	require.NoError(t, err)
	assert.Equal(t, "the image's own", string(b))
	assertNoTemps(t, root)
}

// TestApplyStaysInsideRoot: no archive writes outside its root, whether by
// "..", an absolute path or a symlink the node has.
func TestApplyStaysInsideRoot(t *testing.T) {
	base := t.TempDir()
	root := filepath.Join(base, "root")
	require.NoError(t, os.MkdirAll(root, 0o755))
	require.NoError(t, os.Symlink("..", filepath.Join(root, "up")))
	require.NoError(t, os.Symlink(base, filepath.Join(root, "abs")))
	for _, name := range []string{"../evil", "up/evil", "/../evil", "abs/evil", "up/../../evil"} {
		_, err := Apply(root, newc(t, cpio.StaticFile(name, "pwned", 0o644)), nil)
		assert.Error(t, err, name)
		_, statErr := os.Stat(filepath.Join(base, "evil"))
		assert.True(t, os.IsNotExist(statErr), "%s must not write outside the root", name)
	}
	// Removing is confined too: a forged previous list cannot delete
	// outside the root.
	outside := filepath.Join(base, "keep")
	require.NoError(t, os.WriteFile(outside, []byte("x"), 0o644))
	_, err := Apply(root, newc(t), []string{"../keep", "up/keep", "/../keep"})
	require.NoError(t, err)
	_, err = os.Stat(outside)
	assert.NoError(t, err)
}

// TestParseNewcConcatenated reads archives one after another, with the
// NUL padding the kernel allows between them, as overlay archives are
// built.
func TestParseNewcConcatenated(t *testing.T) {
	a := newc(t, cpio.StaticFile("a", "1", 0o644))
	b := newc(t, cpio.StaticFile("b", "22", 0o600), cpio.Symlink("c", "b"))
	all := append(append(append([]byte{}, a...), make([]byte, 512)...), b...)
	ents, err := parseNewc(all)
	require.NoError(t, err)
	var got []string
	for _, e := range ents {
		got = append(got, fmt.Sprintf("%s %o %s", e.name, e.mode, e.data))
	}
	assert.Equal(t, []string{"a 100644 1", "b 100600 22", "c 120777 b"}, got)
	for _, bad := range []string{"070701zz", "not an archive at all, long enough to hold a header ................................................................"} {
		_, err := parseNewc([]byte(bad))
		assert.Error(t, err)
	}
}

func assertNoTemps(t *testing.T, root string) {
	t.Helper()
	_ = filepath.Walk(root, func(p string, fi os.FileInfo, err error) error {
		if err == nil {
			assert.NotContains(t, filepath.Base(p), ".wwboot-", "temporary file left: %s", p)
		}
		return nil
	})
}

// FuzzParseNewc: the archive comes from the network; no input may panic or
// hand out data beyond the input.
func FuzzParseNewc(f *testing.F) {
	f.Add(newc(f, cpio.StaticFile("etc/hosts", "127.0.0.1 localhost\n", 0o644), cpio.Symlink("l", "etc/hosts")))
	f.Add([]byte("070701"))
	f.Fuzz(func(t *testing.T, b []byte) {
		ents, err := parseNewc(b)
		if err != nil {
			return
		}
		total := 0
		for _, e := range ents {
			total += len(e.data) + len(e.name)
		}
		if total > len(b) {
			t.Fatalf("records hold %d bytes of a %d-byte input", total, len(b))
		}
	})
}
