package overlay

import (
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// initRoot is a test root for the wwinit overlay's /init: busybox, the
// node's unpacked system overlay, a probe standing in for the image's init
// and a fake node agent that logs its arguments to /agent.log.
type initRoot struct {
	dir string
}

// needInitTools skips (or, under CI, fails) a test that needs root,
// busybox and unshare.
func needInitTools(t *testing.T) string {
	t.Helper()
	bb, err := exec.LookPath("busybox")
	if err == nil {
		_, err = exec.LookPath("unshare")
	}
	if err != nil || os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatalf("needs root, busybox and unshare: %v", err)
		}
		t.Skip("needs root, busybox and unshare")
	}
	return bb
}

// newInitRoot renders node's system overlay (wwinit and hostname) with
// the node's init replaced by /sbin/probe and root set to root, and
// unpacks it over a busybox tree. keep filters the overlay's paths.
func newInitRoot(t *testing.T, node, root string, keep func(path string) bool) *initRoot {
	t.Helper()
	bb := needInitTools(t)
	cfg := goldenConfig()
	cfg.Nodes[node].Init = "/sbin/probe"
	cfg.Nodes[node].Root = root
	db := testDB(t, cfg)
	n, err := db.Node(node)
	require.NoError(t, err)
	r := newTestRenderer(t, func(o *Options) {
		o.Server = goldenServer(t)
		o.DefaultSystem = []string{"wwinit", "hostname"}
	})
	a, err := r.Render(context.Background(), db, n, System)
	require.NoError(t, err)

	dir := t.TempDir()
	for _, d := range []string{"bin", "sbin", "usr/sbin"} {
		require.NoError(t, os.MkdirAll(filepath.Join(dir, d), 0o755))
	}
	data, err := os.ReadFile(bb)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "bin/busybox"), data, 0o755))
	out, err := exec.Command("chroot", dir, "/bin/busybox", "--install", "-s", "/bin").CombinedOutput()
	require.NoError(t, err, "%s", out)
	m, order := unpack(t, a)
	for _, p := range order {
		if keep != nil && !keep(p) {
			continue
		}
		e := m[p]
		full := filepath.Join(dir, p)
		switch e.mode & 0o170000 {
		case sIFDIR:
			require.NoError(t, os.MkdirAll(full, os.FileMode(e.mode&0o777)))
		case sIFREG:
			require.NoError(t, os.WriteFile(full, []byte(e.data), os.FileMode(e.mode&0o777)))
		}
	}
	probe := "#!/bin/sh\necho \"probe: pid $$ hostname $(hostname) etc $(cat /etc/hostname)\"\n" +
		"ip -4 -o addr show dev eth0 | grep -o 'inet [0-9./]*'\n" +
		"echo \"probe: root $(stat -f -c %T /) $(df -k / | awk 'NR==2{print $2}') KiB\"\n" +
		"echo \"probe: marker $(grep -c WWBOOT_MARK /etc/wwboot/system-overlay.done)\"\n" +
		"sleep 1; echo probe: done\n"
	require.NoError(t, os.WriteFile(filepath.Join(dir, "sbin/probe"), []byte(probe), 0o755))
	agent := "#!/bin/sh\necho \"agent: [$*]\"\n"
	require.NoError(t, os.WriteFile(filepath.Join(dir, "usr/sbin/wwboot-agent"), []byte(agent), 0o755))
	return &initRoot{dir: dir}
}

// addDash copies dash and the libraries it links into the root.
func (ir *initRoot) addDash(t *testing.T) string {
	t.Helper()
	dash, err := exec.LookPath("dash")
	if err != nil {
		t.Skip("dash not installed")
	}
	out, err := exec.Command("ldd", dash).Output()
	require.NoError(t, err)
	files := []string{dash}
	for _, f := range strings.Fields(string(out)) {
		if strings.HasPrefix(f, "/") {
			files = append(files, f)
		}
	}
	for _, f := range files {
		real, err := filepath.EvalSymlinks(f)
		require.NoError(t, err)
		data, err := os.ReadFile(real)
		require.NoError(t, err)
		dst := filepath.Join(ir.dir, f)
		require.NoError(t, os.MkdirAll(filepath.Dir(dst), 0o755))
		require.NoError(t, os.WriteFile(dst, data, 0o755))
	}
	return dash
}

// addGNU makes the root look like a merged-/usr Debian for what /init runs
// when it moves / into a tmpfs: dash as /bin/sh and GNU find, cp, rm, stat,
// chown, chmod, touch, mkdir, util-linux mount and switch_root in /usr
// (instead of busybox's), their libraries under /usr/lib with /lib and
// /lib64 symlinks (the dynamic loader is found through /lib64).
func (ir *initRoot) addGNU(t *testing.T) {
	t.Helper()
	var bins []string
	for _, b := range []string{"dash", "find", "cp", "rm", "stat", "chown", "chmod", "touch", "mkdir", "mount", "switch_root"} {
		p, err := exec.LookPath(b)
		if err != nil {
			t.Skipf("%s not installed", b)
		}
		bins = append(bins, p)
	}
	out, err := exec.Command("ldd", bins...).Output()
	require.NoError(t, err)
	copyTo := func(src, dst string) {
		real, err := filepath.EvalSymlinks(src)
		require.NoError(t, err)
		data, err := os.ReadFile(real)
		require.NoError(t, err)
		full := filepath.Join(ir.dir, dst)
		require.NoError(t, os.MkdirAll(filepath.Dir(full), 0o755))
		require.NoError(t, os.WriteFile(full, data, 0o755))
	}
	for _, b := range bins {
		// No busybox fallback for these: a shell that cannot exec the
		// GNU one (e.g. its loader gone) must not find busybox's.
		if err := os.Remove(filepath.Join(ir.dir, "bin", filepath.Base(b))); !os.IsNotExist(err) {
			require.NoError(t, err)
		}
		dir := "usr/bin"
		if filepath.Base(b) == "switch_root" {
			dir = "usr/sbin"
		}
		copyTo(b, filepath.Join(dir, filepath.Base(b)))
	}
	for _, f := range strings.Fields(string(out)) {
		if !strings.HasPrefix(f, "/") || strings.HasSuffix(f, ":") {
			continue
		}
		rel := strings.TrimPrefix(f, "/")
		if !strings.HasPrefix(rel, "usr/") {
			rel = "usr/" + rel
		}
		copyTo(f, rel)
	}
	require.NoError(t, os.Symlink("usr/lib", filepath.Join(ir.dir, "lib")))
	require.NoError(t, os.Symlink("usr/lib64", filepath.Join(ir.dir, "lib64")))
	require.NoError(t, os.Remove(filepath.Join(ir.dir, "bin/sh")))
	require.NoError(t, os.Symlink("/usr/bin/dash", filepath.Join(ir.dir, "bin/sh")))
}

// run starts /init (with shell, or its #! line when shell is "") as PID 1
// of fresh mount, UTS, network and PID namespaces, chrooted into the root
// (itself a tmpfs, as the kernel's rootfs is), with an eth0 of MAC mac
// (none when mac is "").
// It returns when the output contains until (or the process ends), and
// whether the process was still running then; the process is killed.
func (ir *initRoot) run(t *testing.T, shell, mac, cmdline, until string) (string, bool) {
	t.Helper()
	script := `set -e
mount -t tmpfs -o size=256m rootfs "$1"
cp -a "$1.src/." "$1/"
if [ -n "$2" ]; then
	ip link add eth0 type veth peer name peer0
	ip link set eth0 address "$2"
fi
shift 2
exec chroot "$ROOT" "$@"`
	src := ir.dir + ".src"
	require.NoError(t, os.Rename(ir.dir, src))
	require.NoError(t, os.Mkdir(ir.dir, 0o755))
	t.Cleanup(func() { os.RemoveAll(src) })
	args := []string{"--mount", "--uts", "--net", "--pid", "--kill-child", "--mount-proc=/proc", "sh", "-c", script, "sh", ir.dir, mac}
	if shell != "" {
		args = append(args, shell)
	}
	args = append(args, "/init")
	cmd := exec.Command("unshare", args...)
	cmd.Env = append(os.Environ(), "ROOT="+ir.dir, "WWBOOT_NO_KMSG=1", "WWBOOT_CMDLINE="+cmdline)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	var buf syncBuffer
	cmd.Stdout, cmd.Stderr = &buf, &buf
	require.NoError(t, cmd.Start())
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	deadline := time.After(60 * time.Second)
	running := true
wait:
	for !strings.Contains(buf.String(), until) {
		select {
		case <-done:
			running = false
			break wait
		case <-deadline:
			break wait
		case <-time.After(50 * time.Millisecond):
		}
	}
	if running {
		// Still running 1.5 s later (a stop, not a slow exit)?
		select {
		case <-done:
			running = false
		case <-time.After(1500 * time.Millisecond):
		}
	}
	_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	<-done
	return buf.String(), running
}

// syncBuffer is a bytes.Buffer safe for a writer and a reader goroutine.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestInitRunsWithBusybox runs the wwinit overlay's /init as the boot would
// (minus the kernel), under busybox sh and under dash: it checks the console
// line, /etc/hostname, the host name, the address, that the image's init is
// exec'd as PID 1 and that the node agent was started (the probe is not
// systemd).
func TestInitRunsWithBusybox(t *testing.T) {
	for _, shell := range []string{"busybox", "dash"} {
		t.Run(shell, func(t *testing.T) {
			ir := newInitRoot(t, "n00002", "initramfs", nil)
			sh := ""
			if shell == "dash" {
				sh = ir.addDash(t)
			}
			out, _ := ir.run(t, sh, "52:54:00:00:00:02", "quiet wwid=52:54:00:00:00:02", "probe: done")
			assert.Contains(t, out, "wwboot: node n00002 address 10.0.0.3\n")
			assert.Contains(t, out, "probe: pid 1 hostname n00002 etc n00002\n", "init is exec'd as PID 1")
			assert.Contains(t, out, "inet 10.0.0.3/16")
			assert.Contains(t, out, "wwboot: starting the node agent\n")
			assert.Contains(t, out, "agent: []\n", "the agent ran with no arguments (= run)")
			assert.NotContains(t, out, "BOOT STOPPED")
			assert.NotContains(t, out, "not found")
		})
	}
}

// TestInitStopsOnMissingMarker: an overlay without its end marker (unpacked
// in part) stops the boot with a message, a report, and no hand-over.
func TestInitStopsOnMissingMarker(t *testing.T) {
	for _, shell := range []string{"busybox", "dash"} {
		t.Run(shell, func(t *testing.T) {
			ir := newInitRoot(t, "n00002", "initramfs", func(p string) bool { return p != MarkerPath })
			sh := ""
			if shell == "dash" {
				sh = ir.addDash(t)
			}
			out, running := ir.run(t, sh, "52:54:00:00:00:02", "wwid=52:54:00:00:00:02", "reported the failure")
			assert.True(t, running, "/init must stay (PID 1 exiting panics the kernel):\n%s", out)
			assert.Contains(t, out, "wwboot: ==================== BOOT STOPPED")
			assert.Contains(t, out, "wwboot: node n00002: the system overlay arrived incomplete: /etc/wwboot/system-overlay.done is missing\n")
			assert.Contains(t, out, "wwboot: what to do: give the machine more memory")
			assert.Contains(t, out, "wwboot: reported the failure to the server\n")
			assert.NotContains(t, out, "probe:", "the image's init must not start")
			assert.NotContains(t, out, "wwboot: node n00002 address", "the boot must not go on")
			assert.Contains(t, out, "agent: [report failed the system overlay arrived incomplete: /etc/wwboot/system-overlay.done is missing]\n")
		})
	}
}

// TestInitStopsOnWrongMachine: a machine with none of the node's MACs stops
// with a message naming the node, its MACs and the machine's.
func TestInitStopsOnWrongMachine(t *testing.T) {
	for _, shell := range []string{"busybox", "dash"} {
		t.Run(shell, func(t *testing.T) {
			ir := newInitRoot(t, "n00002", "initramfs", nil)
			sh := ""
			if shell == "dash" {
				sh = ir.addDash(t)
			}
			out, running := ir.run(t, sh, "52:54:00:00:00:99", "wwid=52:54:00:00:00:99 wwboot.nicwait=1", "reported the failure")
			assert.True(t, running, "/init must stay:\n%s", out)
			assert.Contains(t, out, "wwboot: node n00002: this machine is not the node the system overlay was rendered for: "+
				"no interface has 52:54:00:00:00:02 (this machine: eth0=52:54:00:00:00:99 ")
			assert.Contains(t, out, "; booted as 52:54:00:00:00:99)\n")
			assert.Contains(t, out, "wwboot: what to do: fix the node's hwaddr")
			assert.NotContains(t, out, "probe:")
			assert.NotContains(t, out, "inet 10.0.0.3", "the other node's address must not be configured")
			assert.Contains(t, out, "agent: [report failed this machine is not the node")
		})
	}
	t.Run("no interface at all: a warning, and on", func(t *testing.T) {
		ir := newInitRoot(t, "n00002", "initramfs", nil)
		out, _ := ir.run(t, "", "", "wwboot.nicwait=30", "probe: done")
		assert.Contains(t, out, "wwboot: warning: cannot check that this machine is node n00002: no network interface yet; going on\n")
		assert.Contains(t, out, "probe: pid 1 hostname n00002")
		assert.NotContains(t, out, "BOOT STOPPED")
	})
	t.Run("wwboot.maccheck=0 skips it", func(t *testing.T) {
		ir := newInitRoot(t, "n00002", "initramfs", nil)
		out, _ := ir.run(t, "", "52:54:00:00:00:99", "wwboot.maccheck=0", "probe: done")
		assert.Contains(t, out, "probe: pid 1 hostname n00002")
		assert.NotContains(t, out, "BOOT STOPPED")
	})
}

// TestInitTmpfsRoot: root=tmpfs moves the tree into a tmpfs of the size
// given by wwinit.tmpfs.size, switches root, and hands over (agent started
// on the new root), with busybox's tools and with dash and GNU's on a
// merged-/usr layout.
func TestInitTmpfsRoot(t *testing.T) {
	for _, tools := range []string{"busybox", "gnu"} {
		t.Run(tools, func(t *testing.T) { testInitTmpfsRoot(t, tools) })
	}
}

func testInitTmpfsRoot(t *testing.T, tools string) {
	ir := newInitRoot(t, "n00002", "tmpfs", nil)
	if tools == "gnu" {
		ir.addGNU(t)
	}
	require.NoError(t, os.MkdirAll(filepath.Join(ir.dir, "usr/share/data/deep"), 0o750))
	require.NoError(t, os.WriteFile(filepath.Join(ir.dir, "usr/share/data/deep/big"), bytes.Repeat([]byte("x"), 1<<20), 0o600))
	require.NoError(t, os.WriteFile(filepath.Join(ir.dir, "usr/share/data/.hidden"), []byte("h"), 0o640))
	require.NoError(t, os.Symlink("deep/big", filepath.Join(ir.dir, "usr/share/data/link")))
	require.NoError(t, os.WriteFile(filepath.Join(ir.dir, "sbin/probe2"), []byte("#!/bin/sh\n"+
		"echo \"probe2: $(stat -c %a /usr/share/data/deep) $(stat -c '%a %s' /usr/share/data/deep/big) $(stat -c %a /usr/share/data/.hidden) $(readlink /usr/share/data/link)\"\n"+
		"exec /sbin/probe\n"), 0o755))
	conf := filepath.Join(ir.dir, "etc/wwboot/node.conf")
	b, err := os.ReadFile(conf)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(conf, bytes.Replace(b, []byte("/sbin/probe"), []byte("/sbin/probe2"), 1), 0o644))

	out, _ := ir.run(t, "", "52:54:00:00:00:02", "wwinit.tmpfs.size=64m", "probe: done")
	assert.Contains(t, out, "wwboot: moving / into a tmpfs (size 64m)\n")
	assert.Contains(t, out, "probe2: 750 600 1048576 640 deep/big\n", "modes, sizes and links survive the move")
	assert.Contains(t, out, "probe: root tmpfs 65536 KiB\n")
	assert.Contains(t, out, "probe: pid 1 hostname n00002")
	assert.Contains(t, out, "probe: marker 3\n")
	assert.Contains(t, out, "agent: []\n", "the agent runs on the new root")
	assert.NotContains(t, out, "BOOT STOPPED")
}
