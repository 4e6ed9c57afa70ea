package overlay

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestInitRunsWithBusybox runs the wwinit overlay's /init as the boot would
// (minus the kernel): in a busybox-only root, in fresh mount, UTS, network
// and PID namespaces, with the node's init replaced by a probe. It checks
// the console line, /etc/hostname, the host name and the address.
func TestInitRunsWithBusybox(t *testing.T) {
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
	cfg := goldenConfig()
	cfg.Nodes["n00002"].Init = "/sbin/probe"
	db := testDB(t, cfg)
	n, _ := db.Node("n00002")
	r := newTestRenderer(t, func(o *Options) {
		o.Server = goldenServer(t)
		o.DefaultSystem = []string{"wwinit", "hostname"}
	})
	a, err := r.Render(context.Background(), db, n, System)
	require.NoError(t, err)

	root := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(root, "bin"), 0o755))
	require.NoError(t, os.MkdirAll(filepath.Join(root, "sbin"), 0o755))
	data, err := os.ReadFile(bb)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(root, "bin/busybox"), data, 0o755))
	out, err := exec.Command("chroot", root, "/bin/busybox", "--install", "-s", "/bin").CombinedOutput()
	require.NoError(t, err, "%s", out)
	m, order := unpack(t, a)
	for _, p := range order {
		e := m[p]
		full := filepath.Join(root, p)
		switch e.mode & 0o170000 {
		case sIFDIR:
			require.NoError(t, os.MkdirAll(full, os.FileMode(e.mode&0o777)))
		case sIFREG:
			require.NoError(t, os.WriteFile(full, []byte(e.data), os.FileMode(e.mode&0o777)))
		}
	}
	probe := "#!/bin/sh\necho \"probe: pid $$ hostname $(hostname) etc $(cat /etc/hostname)\"\nip -4 -o addr show dev eth0 | grep -o 'inet [0-9./]*'\n"
	require.NoError(t, os.WriteFile(filepath.Join(root, "sbin/probe"), []byte(probe), 0o755))

	// An eth0 with the node's MAC inside the new network namespace.
	script := `ip link add eth0 type veth peer name peer0 && ip link set eth0 address 52:54:00:00:00:02 && exec chroot "$1" /init`
	cmd := exec.Command("unshare", "--mount", "--uts", "--net", "--pid", "--fork", "sh", "-c", script, "sh", root)
	out, err = cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	s := string(out)
	assert.Contains(t, s, "wwboot: node n00002 address 10.0.0.3\n")
	assert.Contains(t, s, "probe: pid 1 hostname n00002 etc n00002\n", "init is exec'd as PID 1")
	assert.Contains(t, s, "inet 10.0.0.3/16")
	assert.NotContains(t, s, "not found")
}
