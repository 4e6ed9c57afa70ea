package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"golang.org/x/sys/unix"
)

// TestMain lets the test binary stand in for wwboot when image exec re-runs
// itself (os.Executable) as `image exec-child`.
func TestMain(m *testing.M) {
	if len(os.Args) > 2 && os.Args[1] == "image" && os.Args[2] == "exec-child" {
		cmd := newRootCmd(os.Stdout, os.Stderr, os.Getenv)
		cmd.SetArgs(os.Args[1:])
		if err := cmd.ExecuteContext(context.Background()); err != nil {
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// busyboxTree makes a tiny root tree from the static busybox and packs it
// into a tar archive; it returns the archive's path.
func busyboxTree(t *testing.T) string {
	t.Helper()
	bb, err := exec.LookPath("busybox")
	if err != nil {
		t.Skip("busybox not installed (apt-get install busybox-static)")
	}
	if out, _ := exec.Command("file", "-L", bb).Output(); len(out) > 0 && !bytes.Contains(out, []byte("statically linked")) {
		t.Skipf("%s is not static: %s", bb, out)
	}
	data, err := os.ReadFile(bb)
	require.NoError(t, err)
	archive := filepath.Join(t.TempDir(), "bb.tar")
	f, err := os.Create(archive)
	require.NoError(t, err)
	tw := tar.NewWriter(f)
	for _, d := range []string{"bin/", "etc/", "proc/", "sys/", "dev/", "run/", "tmp/", "boot/"} {
		require.NoError(t, tw.WriteHeader(&tar.Header{Name: d, Typeflag: tar.TypeDir, Mode: 0o755}))
	}
	require.NoError(t, tw.WriteHeader(&tar.Header{Name: "bin/busybox", Typeflag: tar.TypeReg, Mode: 0o755, Size: int64(len(data))}))
	_, err = tw.Write(data)
	require.NoError(t, err)
	for _, l := range []string{"sh", "echo", "cat", "hostname", "mount"} {
		require.NoError(t, tw.WriteHeader(&tar.Header{Name: "bin/" + l, Typeflag: tar.TypeSymlink, Linkname: "busybox", Mode: 0o777}))
	}
	require.NoError(t, tw.WriteHeader(&tar.Header{Name: "boot/vmlinuz-6.6.1", Typeflag: tar.TypeReg, Mode: 0o644, Size: 6}))
	_, err = tw.Write([]byte("kernel"))
	require.NoError(t, err)
	require.NoError(t, tw.Close())
	require.NoError(t, f.Close())
	return archive
}

// imageShow returns `image show NAME -o json`.
func imageShow(t *testing.T, root, name string) map[string]any {
	t.Helper()
	out, err := runImage(t, root, "image", "show", name, "-o", "json")
	require.NoError(t, err)
	var m map[string]any
	require.NoError(t, json.Unmarshal([]byte(out), &m))
	return m
}

// imageArchiveFiles reads the gzip newc cpio archive at path into a map from
// entry name to content.
func imageArchiveFiles(t *testing.T, path string) map[string]string {
	t.Helper()
	f, err := os.Open(path)
	require.NoError(t, err)
	defer f.Close()
	zr, err := gzip.NewReader(f)
	require.NoError(t, err)
	data, err := io.ReadAll(zr)
	require.NoError(t, err)
	files := map[string]string{}
	pad := func(n int) int { return (n + 3) &^ 3 }
	for off := 0; off+110 <= len(data); {
		h := data[off : off+110]
		require.Equal(t, "070701", string(h[:6]), "newc magic at %d", off)
		field := func(i int) int {
			v, err := strconv.ParseUint(string(h[6+8*i:14+8*i]), 16, 32)
			require.NoError(t, err)
			return int(v)
		}
		size, namesize := field(6), field(11)
		name := string(data[off+110 : off+110+namesize-1])
		if name == "TRAILER!!!" {
			break
		}
		body := pad(off + 110 + namesize)
		files[name] = string(data[body : body+size])
		off = pad(body + size)
	}
	return files
}

// mountsUnder lists the mount points of this process at or under dir.
func mountsUnder(t *testing.T, dir string) []string {
	t.Helper()
	data, err := os.ReadFile("/proc/self/mountinfo")
	require.NoError(t, err)
	var under []string
	for _, line := range strings.Split(string(data), "\n") {
		fields := strings.Fields(line)
		if len(fields) > 4 && (fields[4] == dir || strings.HasPrefix(fields[4], dir+"/")) {
			under = append(under, fields[4])
		}
	}
	return under
}

// hostMounts is this process's mount table without the network namespace
// mounts under /run/netns, which tests of other packages running at the
// same time (go test runs packages in parallel) add and remove.
func hostMounts(t *testing.T) string {
	t.Helper()
	data, err := os.ReadFile("/proc/self/mountinfo")
	require.NoError(t, err)
	var keep []string
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) > 4 && (f[4] == "/run/netns" || strings.HasPrefix(f[4], "/run/netns/")) {
			continue
		}
		keep = append(keep, line)
	}
	return strings.Join(keep, "\n")
}

func TestImageExec(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("image exec needs root")
	}
	archive := busyboxTree(t)
	root := t.TempDir()
	_, err := runImage(t, root, "image", "import", archive, "bb", "--compress", "gzip")
	require.NoError(t, err)
	before := imageShow(t, root, "bb")
	tree := before["root"].(string)
	require.DirExists(t, tree)
	mountsBefore := hostMounts(t)

	out, err := runImage(t, root, "image", "exec", "bb", "--",
		"/bin/sh", "-c", "echo hi > /etc/motd; cat /proc/1/comm; hostname; echo resolv:; cat /etc/resolv.conf; mount")
	require.NoError(t, err, out)
	lines := strings.Split(out, "\n")
	require.GreaterOrEqual(t, len(lines), 3, out)
	assert.Equal(t, "sh", lines[0], "PID 1 of the new pid namespace is the command:\n%s", out)
	assert.Equal(t, "bb", lines[1], "own uts namespace, named after the image")
	if host, err := os.ReadFile("/etc/resolv.conf"); err == nil && len(bytes.TrimSpace(host)) > 0 {
		assert.Contains(t, out, "resolv:\n"+string(host), "the host's resolv.conf inside")
	}
	for _, fs := range []string{" on /proc type proc", " on /dev ", " on /sys ", " on /run type tmpfs", " on /tmp type tmpfs"} {
		assert.Contains(t, out, fs, "mounted inside")
	}
	assert.Contains(t, out, "bb: ", "rebuilt:\n%s", out)

	motd, err := os.ReadFile(filepath.Join(tree, "etc/motd"))
	require.NoError(t, err)
	assert.Equal(t, "hi\n", string(motd))
	after := imageShow(t, root, "bb")
	assert.NotEqual(t, before["sha256"], after["sha256"], "the image is rebuilt")
	files := imageArchiveFiles(t, after["path"].(string))
	require.Contains(t, files, "etc/motd", "/etc/motd is in the rebuilt archive")
	assert.Equal(t, "hi\n", files["etc/motd"])
	assert.Contains(t, files, "bin/busybox")
	assert.NotContains(t, files, "etc/resolv.conf", "the host's resolv.conf is not in the image")
	assert.NoFileExists(t, filepath.Join(tree, "etc/resolv.conf"), "the mount point made for resolv.conf is gone")
	assert.Empty(t, mountsUnder(t, tree), "no mount left under the tree")
	assert.Equal(t, mountsBefore, hostMounts(t), "the host's mounts are unchanged")

	// A failing command: its exit code, and no rebuild.
	_, err = runImage(t, root, "image", "exec", "bb", "--", "/bin/sh", "-c", "echo bad > /etc/motd; exit 3")
	var ec *exitCodeError
	require.True(t, errors.As(err, &ec), "%v", err)
	assert.Equal(t, 3, ec.code)
	assert.Contains(t, ec.msg, "not rebuilt")
	assert.Equal(t, after["sha256"], imageShow(t, root, "bb")["sha256"], "not rebuilt")

	// --no-build: no rebuild though the tree changed.
	_, err = runImage(t, root, "image", "exec", "--no-build", "bb", "--", "/bin/sh", "-c", "echo nb > /etc/motd")
	require.NoError(t, err)
	assert.Equal(t, after["sha256"], imageShow(t, root, "bb")["sha256"], "--no-build")

	// A command the image lacks: a setup error naming it, not an exit code.
	_, err = runImage(t, root, "image", "exec", "bb", "--", "apt-get", "update")
	require.Error(t, err)
	assert.False(t, errors.As(err, &ec))
	assert.ErrorContains(t, err, "apt-get: not found in the image")

	// The image's exit script runs after a command that succeeded; its
	// failure stops the rebuild.
	require.NoError(t, os.MkdirAll(filepath.Join(tree, "etc/warewulf"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(tree, "etc/warewulf/image_exit.sh"), []byte("echo exit script in $(hostname) >> /etc/motd\n"), 0o644))
	out, err = runImage(t, root, "image", "exec", "bb", "--", "/bin/sh", "-c", "echo cmd > /etc/motd")
	require.NoError(t, err)
	files = imageArchiveFiles(t, imageShow(t, root, "bb")["path"].(string))
	assert.Equal(t, "cmd\nexit script in bb\n", files["etc/motd"], out)
	require.NoError(t, os.WriteFile(filepath.Join(tree, "etc/warewulf/image_exit.sh"), []byte("exit 5\n"), 0o644))
	sum := imageShow(t, root, "bb")["sha256"]
	_, err = runImage(t, root, "image", "exec", "bb", "--", "/bin/sh", "-c", "echo cmd2 > /etc/motd")
	require.True(t, errors.As(err, &ec), "%v", err)
	assert.Equal(t, 5, ec.code)
	assert.Contains(t, ec.msg, "exit script /etc/warewulf/image_exit.sh exited with 5")
	assert.Equal(t, sum, imageShow(t, root, "bb")["sha256"], "not rebuilt")

	// One exec at a time in a tree.
	require.NoError(t, os.Remove(filepath.Join(tree, "etc/warewulf/image_exit.sh")))
	d, err := os.Open(tree)
	require.NoError(t, err)
	require.NoError(t, unix.Flock(int(d.Fd()), unix.LOCK_EX))
	_, err = runImage(t, root, "image", "exec", "bb", "--", "/bin/sh", "-c", "true")
	assert.ErrorContains(t, err, "another image exec or shell is running")
	require.NoError(t, d.Close())
	_, err = runImage(t, root, "image", "exec", "--no-build", "bb", "--", "/bin/sh", "-c", "true")
	require.NoError(t, err, "the lock is free again")

	_, err = runImage(t, root, "image", "exec", "nope", "--", "/bin/sh")
	assert.ErrorContains(t, err, "import it first")
	assert.Empty(t, mountsUnder(t, tree))
}

// TestImageExecShell: `image shell` runs /bin/sh of the image when $SHELL
// is not in it, reading commands from stdin.
func TestImageExecShell(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("image shell needs root")
	}
	archive := busyboxTree(t)
	root := t.TempDir()
	_, err := runImage(t, root, "image", "import", archive, "bb", "--compress", "gzip")
	require.NoError(t, err)

	// Stdin is the process's: give it a script.
	r, w, err := os.Pipe()
	require.NoError(t, err)
	_, err = w.WriteString("echo $0 in $(hostname) $HISTFILE; exit 4\n")
	require.NoError(t, err)
	require.NoError(t, w.Close())
	old := os.Stdin
	os.Stdin = r
	t.Cleanup(func() { os.Stdin = old; r.Close() })

	var out, errOut bytes.Buffer
	cmd := newRootCmd(&out, &errOut, func(k string) string {
		if k == "SHELL" {
			return "/usr/bin/zsh"
		}
		return ""
	})
	cmd.SetArgs([]string{"--root", root, "image", "shell", "bb"})
	err = cmd.ExecuteContext(context.Background())
	var ec *exitCodeError
	require.True(t, errors.As(err, &ec), "%v %s", err, errOut.String())
	assert.Equal(t, 4, ec.code)
	assert.Equal(t, "/bin/sh in bb /dev/null\n", out.String(), "no history kept in the image")
}

// TestImageProgress: import and build draw a progress bar on stderr when
// it is a terminal, and nothing when it is not.
func TestImageProgress(t *testing.T) {
	tree := filepath.Join(t.TempDir(), "tree")
	require.NoError(t, os.MkdirAll(filepath.Join(tree, "boot"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(tree, "boot/vmlinuz-6.6.1"), []byte("kernel"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(tree, "big"), bytes.Repeat([]byte("x"), 1<<20), 0o644))

	// Not a terminal: no bar.
	root := t.TempDir()
	var out, errOut bytes.Buffer
	cmd := newRootCmd(&out, &errOut, func(string) string { return "" })
	cmd.SetArgs([]string{"--root", root, "image", "import", tree, "plain"})
	require.NoError(t, cmd.ExecuteContext(context.Background()))
	assert.NotContains(t, errOut.String()+out.String(), "\r[")

	// A terminal (a pseudo-terminal's slave side) as stderr.
	ptmx, err := os.OpenFile("/dev/ptmx", os.O_RDWR|unix.O_NOCTTY, 0)
	if err != nil {
		t.Skipf("no pseudo-terminals: %v", err)
	}
	defer ptmx.Close()
	require.NoError(t, unix.IoctlSetPointerInt(int(ptmx.Fd()), unix.TIOCSPTLCK, 0))
	n, err := unix.IoctlGetInt(int(ptmx.Fd()), unix.TIOCGPTN)
	require.NoError(t, err)
	pts, err := os.OpenFile("/dev/pts/"+strconv.Itoa(n), os.O_RDWR|unix.O_NOCTTY, 0)
	require.NoError(t, err)
	got := make(chan string)
	go func() {
		b, _ := io.ReadAll(ptmx)
		got <- string(b)
	}()
	for _, args := range [][]string{{"image", "import", tree, "tty"}, {"image", "build", "tty", "--force"}} {
		out.Reset()
		cmd = newRootCmd(&out, pts, func(string) string { return "" })
		cmd.SetArgs(append([]string{"--root", root}, args...))
		require.NoError(t, cmd.ExecuteContext(context.Background()))
		assert.NotContains(t, out.String(), "\r[", "the bar is on stderr, not stdout")
	}
	require.NoError(t, pts.Close()) // the master reads EIO then: ReadAll ends
	s := <-got
	assert.GreaterOrEqual(t, strings.Count(s, "\r["), 2, "a bar for import and build: %q", s)
	assert.Contains(t, s, "100%")
	assert.Contains(t, s, "files")
}
