package image

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"math/rand"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// requireRoot fails under CI (tests run as root there) and skips elsewhere.
func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("this test needs root (owners, device nodes)")
		}
		t.Skip("needs root")
	}
}

// requireTools fails under CI and skips elsewhere when a tool is missing.
func requireTools(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("%s is not installed (see .ci/packages)", tool)
			}
			t.Skipf("%s is not installed", tool)
		}
	}
}

var treeTime = time.Date(2021, 3, 4, 5, 6, 7, 0, time.UTC)

// makeTree builds a small root file system with every kind of entry the
// image format has to carry.
func makeTree(t *testing.T, dir string) {
	t.Helper()
	rnd := rand.New(rand.NewSource(1))
	random := func(n int) []byte {
		b := make([]byte, n)
		rnd.Read(b)
		return b
	}
	text := bytes.Repeat([]byte("the quick brown fox jumps over the lazy dog\n"), 50000)
	type f struct {
		path     string
		mode     os.FileMode
		uid, gid int
		data     []byte
	}
	dirs := []f{
		{"etc", 0o755, 0, 0, nil},
		{"etc/warewulf", 0o755, 0, 0, nil},
		{"usr/bin", 0o755, 0, 0, nil},
		{"usr/lib/x", 0o755, 0, 0, nil},
		{"home/user", 0o700, 1000, 1000, nil},
		{"emptydir", 0o750, 1234, 5678, nil},
		{"tmp", 0o777 | os.ModeSticky, 0, 0, nil},
		{"dev", 0o755, 0, 0, nil},
		{"var", 0o755, 0, 0, nil},
		{"boot", 0o755, 0, 0, nil},
	}
	files := []f{
		{"etc/hostname", 0o644, 0, 0, []byte("node\n")},
		{"etc/shadow", 0o640, 0, 42, []byte("root:*:19000:0:99999:7:::\n")},
		{"usr/bin/tool", 0o755 | os.ModeSetuid, 0, 0, random(200 << 10)},
		{"usr/bin/gtool", 0o755 | os.ModeSetgid, 0, 50, random(1000)},
		{"usr/lib/big.bin", 0o644, 0, 0, append(random(1<<20), text...)},
		{"usr/lib/a", 0o644, 7, 8, []byte("hard linked content\n")},
		{"home/user/notes.txt", 0o600, 1000, 1000, []byte("hello\n")},
		{"empty", 0o644, 0, 0, nil},
		{"odd name with spaces", 0o644, 0, 0, []byte("x")},
		{"boot/vmlinuz-6.1.0-13-amd64", 0o644, 0, 0, []byte("kernel 13")},
		{"boot/vmlinuz-6.1.0-9-amd64", 0o644, 0, 0, []byte("kernel 9")},
	}
	for _, d := range dirs {
		p := filepath.Join(dir, d.path)
		require.NoError(t, os.MkdirAll(p, 0o755))
		require.NoError(t, os.Chown(p, d.uid, d.gid))
		require.NoError(t, os.Chmod(p, d.mode))
	}
	for _, fl := range files {
		p := filepath.Join(dir, fl.path)
		require.NoError(t, os.WriteFile(p, fl.data, 0o600))
		require.NoError(t, os.Chown(p, fl.uid, fl.gid))
		require.NoError(t, os.Chmod(p, fl.mode))
	}
	require.NoError(t, os.Link(filepath.Join(dir, "usr/lib/a"), filepath.Join(dir, "usr/lib/b")))
	require.NoError(t, os.Link(filepath.Join(dir, "usr/lib/a"), filepath.Join(dir, "usr/lib/x/c")))
	require.NoError(t, os.Symlink("usr/bin", filepath.Join(dir, "bin")))
	require.NoError(t, os.Symlink("/usr/share/zoneinfo/UTC", filepath.Join(dir, "etc/localtime")))
	require.NoError(t, os.Symlink("vmlinuz-6.1.0-13-amd64", filepath.Join(dir, "boot/vmlinuz")))
	require.NoError(t, unix.Lchown(filepath.Join(dir, "etc/localtime"), 3, 4))
	require.NoError(t, unix.Mknod(filepath.Join(dir, "dev/null"), unix.S_IFCHR|0o666, int(unix.Mkdev(1, 3))))
	require.NoError(t, unix.Mknod(filepath.Join(dir, "dev/sda"), unix.S_IFBLK|0o660, int(unix.Mkdev(8, 0))))
	require.NoError(t, os.Chown(filepath.Join(dir, "dev/sda"), 0, 6))
	require.NoError(t, unix.Mkfifo(filepath.Join(dir, "var/fifo"), 0o620))
	setTimes(t, dir, treeTime)
}

// setTimes gives every entry of the tree (symlinks too) the time ts.
func setTimes(t *testing.T, dir string, ts time.Time) {
	t.Helper()
	spec := []unix.Timespec{unix.NsecToTimespec(ts.UnixNano()), unix.NsecToTimespec(ts.UnixNano())}
	require.NoError(t, filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if p == dir {
			return nil
		}
		return unix.UtimesNanoAt(unix.AT_FDCWD, p, spec, unix.AT_SYMLINK_NOFOLLOW)
	}))
}

// describeTree returns one line per entry below dir: path, type and
// permission bits, owner, size, content hash or link target, device
// numbers, mtime (not for symlinks or directories unless withDirTimes) and
// the hard-link group.
func describeTree(t *testing.T, dir string, withDirTimes bool) []string {
	t.Helper()
	var out []string
	first := map[uint64]string{}
	require.NoError(t, filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		if rel == "." {
			return nil
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		line := fmt.Sprintf("%s mode=%o uid=%d gid=%d", rel, st.Mode, st.Uid, st.Gid)
		switch st.Mode & unix.S_IFMT {
		case unix.S_IFREG:
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(b)
			line += fmt.Sprintf(" size=%d sha=%s mtime=%d", st.Size, hex.EncodeToString(sum[:8]), st.Mtim.Sec)
			if st.Nlink > 1 {
				if f, ok := first[st.Ino]; ok {
					line += " link=" + f
				} else {
					first[st.Ino] = rel
					line += fmt.Sprintf(" nlink=%d", st.Nlink)
				}
			}
		case unix.S_IFLNK:
			target, err := os.Readlink(p)
			if err != nil {
				return err
			}
			line += " -> " + target
		case unix.S_IFCHR, unix.S_IFBLK:
			line += fmt.Sprintf(" rdev=%d,%d", unix.Major(st.Rdev), unix.Minor(st.Rdev))
		case unix.S_IFDIR:
			if withDirTimes {
				line += fmt.Sprintf(" mtime=%d", st.Mtim.Sec)
			}
		}
		out = append(out, line)
		return nil
	}))
	sort.Strings(out)
	return out
}

// gnuUnpack decompresses an image with the system tool and unpacks it with
// GNU cpio -idm into a new directory.
func gnuUnpack(t *testing.T, img string, comp Compression) string {
	t.Helper()
	requireTools(t, "cpio", "gzip", "zstd")
	dest := filepath.Join(t.TempDir(), "unpacked")
	require.NoError(t, os.Mkdir(dest, 0o755))
	dec := map[Compression]string{Gzip: "gzip -dc", Zstd: "zstd -dcq", None: "cat"}[comp]
	cmd := exec.Command("sh", "-c", dec+` "$1" | cpio -idm --quiet --no-absolute-filenames`, "sh", img)
	cmd.Dir = dest
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "unpacking with %s | cpio: %s", dec, out)
	require.Empty(t, strings.TrimSpace(string(out)))
	return dest
}
