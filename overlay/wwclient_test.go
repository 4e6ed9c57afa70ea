package overlay

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/u-root/u-root/pkg/cpio"
)

// TestWWClientDeliversTheAgent renders the built-in wwclient overlay: the
// agent binary arrives byte for byte (no newline trimmed, NULs kept) with
// mode 0755, the systemd unit runs it after the network and restarts it,
// and it is enabled by the multi-user.target.wants link. A rebuilt binary
// reaches the next render; a missing one is an error that says how to
// build it.
func TestWWClientDeliversTheAgent(t *testing.T) {
	ctx := context.Background()
	bin := filepath.Join(t.TempDir(), "wwboot-agent")
	payload := "\x7fELF\x00\x01binary\n{{ not a template }}\n\n"
	require.NoError(t, os.WriteFile(bin, []byte(payload), 0o755))
	db := testDB(t, testConfig(2))
	n, err := db.Node("n00001")
	require.NoError(t, err)
	r := newTestRenderer(t, func(o *Options) {
		o.DefaultSystem = []string{"wwinit", "wwclient"}
		o.Server.Paths.Agent = bin
		o.CheckInterval = -1
	})
	a, err := r.Render(ctx, db, n, System)
	require.NoError(t, err)
	m, _ := unpack(t, a)
	agent := m["usr/sbin/wwboot-agent"]
	assert.Equal(t, payload, agent.data)
	assert.Equal(t, uint64(cpio.S_IFREG|0o755), agent.mode)
	unit := m["etc/systemd/system/wwboot-agent.service"].data
	assert.Contains(t, unit, "ExecStart=/usr/sbin/wwboot-agent run")
	assert.Contains(t, unit, "After=network-online.target")
	assert.Contains(t, unit, "Restart=on-failure")
	assert.Contains(t, unit, "WantedBy=multi-user.target")
	link := m["etc/systemd/system/multi-user.target.wants/wwboot-agent.service"]
	assert.Equal(t, uint64(cpio.S_IFLNK), link.mode&cpio.S_IFMT)
	assert.Equal(t, "../wwboot-agent.service", link.data)
	// The first sync, before sshd: the node's host keys come only in the
	// runtime overlay (issue 11 item 1).
	sync := m["etc/systemd/system/wwboot-agent-sync.service"].data
	assert.Contains(t, sync, "Type=oneshot")
	assert.Contains(t, sync, "ExecStart=/usr/sbin/wwboot-agent once -retry-for 2m")
	assert.Regexp(t, `(?m)^Before=.*\bssh\.service\b.*\bsshd\.service\b.*\bwwboot-agent\.service\b`, sync)
	assert.Contains(t, sync, "After=network-online.target")
	link = m["etc/systemd/system/multi-user.target.wants/wwboot-agent-sync.service"]
	assert.Equal(t, uint64(cpio.S_IFLNK), link.mode&cpio.S_IFMT)
	assert.Equal(t, "../wwboot-agent-sync.service", link.data)
	if sa, err := exec.LookPath("systemd-analyze"); err == nil {
		dir := t.TempDir()
		for name, text := range map[string]string{"wwboot-agent.service": unit, "wwboot-agent-sync.service": sync} {
			require.NoError(t, os.WriteFile(filepath.Join(dir, name), []byte(text), 0o644))
			out, err := exec.Command(sa, "verify", "--man=no", filepath.Join(dir, name)).CombinedOutput()
			assert.NotContains(t, string(out), "Unknown key", "%s %v", out, err)
			assert.NotContains(t, string(out), "Unknown section", "%s %v", out, err)
		}
	}

	// node.conf names the server's URL and every MAC of the node.
	conf := m["etc/wwboot/node.conf"].data
	assert.Contains(t, conf, "WWBOOT_URL='http://10.0.0.1:9873'")
	assert.Contains(t, conf, "WWBOOT_HWADDRS='52:54:00:00:00:01'")

	// A rebuilt binary is what the next render delivers.
	require.NoError(t, os.WriteFile(bin, []byte("rebuilt"), 0o755))
	a2, err := r.Render(ctx, db, n, System)
	require.NoError(t, err)
	m, _ = unpack(t, a2)
	assert.Equal(t, "rebuilt", m["usr/sbin/wwboot-agent"].data)

	// Missing: the error names the file and the build command.
	require.NoError(t, os.Remove(bin))
	_, err = r.Render(ctx, db, n, System)
	require.Error(t, err)
	assert.Contains(t, err.Error(), bin)
	assert.Contains(t, err.Error(), "go build")
	assert.Contains(t, err.Error(), "./cmd/wwboot-agent")

	// Not configured at all: the same advice.
	r2 := newTestRenderer(t, func(o *Options) { o.DefaultSystem = []string{"wwclient"} })
	_, err = r2.Render(ctx, db, n, System)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "./cmd/wwboot-agent")
}

// TestWWClientCarriesTheClusterCA: with the agent's TLS channel on
// (Warewulf.TLSEnabled, Paths.CACert), the system overlay carries the
// cluster CA's certificate as /etc/wwboot/ca.crt (public, not a secret)
// and node.conf names the TLS URL; with it off, neither is there.
func TestWWClientCarriesTheClusterCA(t *testing.T) {
	ctx := context.Background()
	dir := openTempDir(t)
	bin := filepath.Join(dir, "wwboot-agent")
	require.NoError(t, os.WriteFile(bin, []byte("agent"), 0o755))
	ca := filepath.Join(dir, "ca.crt")
	pemText := "-----BEGIN CERTIFICATE-----\nMIIBfake\n-----END CERTIFICATE-----\n"
	require.NoError(t, os.WriteFile(ca, []byte(pemText), 0o644))
	db := testDB(t, testConfig(1))
	n, err := db.Node("n00001")
	require.NoError(t, err)
	for _, on := range []bool{true, false} {
		r := newTestRenderer(t, func(o *Options) {
			o.DefaultSystem = []string{"wwinit", "wwclient"}
			o.Server.Paths.Agent = bin
			o.Server.Paths.CACert = ca
			o.Server.Warewulf.TLSEnabled = on
			o.Server.Warewulf.TLSPort = 9999
			o.CheckInterval = -1
		})
		a, err := r.Render(ctx, db, n, System)
		require.NoError(t, err)
		assert.Empty(t, a.Private(), "the CA certificate is public")
		m, _ := unpack(t, a)
		conf := m["etc/wwboot/node.conf"].data
		if on {
			assert.Equal(t, pemText, m["etc/wwboot/ca.crt"].data)
			assert.Equal(t, uint64(cpio.S_IFREG|0o644), m["etc/wwboot/ca.crt"].mode)
			assert.Contains(t, conf, "WWBOOT_TLS_URL='https://10.0.0.1:9999'")
		} else {
			assert.NotContains(t, m, "etc/wwboot/ca.crt")
			assert.NotContains(t, conf, "WWBOOT_TLS_URL")
		}
	}
}
