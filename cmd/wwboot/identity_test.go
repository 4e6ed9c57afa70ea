package main

import (
	"bytes"
	"compress/gzip"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/u-root/u-root/pkg/cpio"
)

// archiveFiles renders node's archive of kind with the CLI and returns its
// regular files (path → content).
func archiveFiles(t *testing.T, root, node, kind string) map[string]string {
	t.Helper()
	out := filepath.Join(t.TempDir(), node+"-"+kind+".cpio.gz")
	mustRun(t, root, "overlay", "render", node, "--kind", kind, "-o", out, "--server-ipaddr", "10.0.0.1", "--server-netmask", "255.255.255.0")
	f, err := os.Open(out)
	require.NoError(t, err)
	defer f.Close()
	zr, err := gzip.NewReader(f)
	require.NoError(t, err)
	raw, err := io.ReadAll(zr)
	require.NoError(t, err)
	files := map[string]string{}
	rr := cpio.Newc.Reader(bytes.NewReader(raw))
	for {
		rec, err := rr.ReadRecord()
		if err == io.EOF {
			break
		}
		require.NoError(t, err)
		if rec.Mode&0o170000 == 0o100000 {
			b, err := io.ReadAll(io.NewSectionReader(rec.ReaderAt, 0, int64(rec.FileSize)))
			require.NoError(t, err)
			files[rec.Name] = string(b)
		}
	}
	// An archive written with a node's private key in it is its owner's
	// alone (a new user read host keys from one as nobody).
	for name, data := range files {
		if strings.Contains(data, "PRIVATE KEY-----") {
			fi, err := os.Stat(out)
			require.NoError(t, err)
			assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm(), "%s holds %s, a private key", out, name)
			break
		}
	}
	return files
}

// TestIdentitySettings: wwboot.conf's identity settings reach the nodes'
// overlays: root's authorized_keys from the configured file (a key made by
// ssh-keygen here, as a test that logs in over ssh would), resolv.conf
// defaults, and a Warewulf key set imported and shared.
func TestIdentitySettings(t *testing.T) {
	keygen, err := exec.LookPath("ssh-keygen")
	if err != nil {
		t.Fatal("ssh-keygen not installed (.ci/packages: openssh-client)")
	}
	root := t.TempDir()
	mustRun(t, root, "init")
	withAgent(t, root)
	mustRun(t, root, "node", "add", "n1", "--hwaddr", "52:54:00:00:00:01", "--ipaddr", "10.0.0.11", "--netmask", "255.255.255.0")
	mustRun(t, root, "node", "add", "n2", "--hwaddr", "52:54:00:00:00:02", "--ipaddr", "10.0.0.12", "--netmask", "255.255.255.0")

	keys := t.TempDir()
	out, err := exec.Command(keygen, "-q", "-t", "ed25519", "-N", "", "-C", "test@wwboot", "-f", filepath.Join(keys, "id")).CombinedOutput()
	require.NoError(t, err, "%s", out)
	pub, err := os.ReadFile(filepath.Join(keys, "id.pub"))
	require.NoError(t, err)

	conf, err := os.ReadFile(filepath.Join(root, "wwboot.conf"))
	require.NoError(t, err)
	assert.Contains(t, string(conf), "# authorized keys: /root/.ssh/authorized_keys", "init documents the setting")
	appendConf := func(text string) {
		f, err := os.OpenFile(filepath.Join(root, "wwboot.conf"), os.O_APPEND|os.O_WRONLY, 0)
		require.NoError(t, err)
		_, err = f.WriteString(text)
		require.NoError(t, err)
		require.NoError(t, f.Close())
	}
	appendConf("authorized keys: " + filepath.Join(keys, "id.pub") + "\ndns servers: [10.0.0.53, 10.0.0.54]\ndns search: [lab.test]\n")

	run1 := archiveFiles(t, root, "n1", "runtime")
	assert.Equal(t, string(pub), run1["root/.ssh/authorized_keys"], "root's keys from the configured file")
	sys1 := archiveFiles(t, root, "n1", "system")
	assert.Equal(t, "# Written by wwboot for n1.\nsearch lab.test\nnameserver 10.0.0.53\nnameserver 10.0.0.54\n", sys1["etc/resolv.conf"])
	// Host keys come in the runtime overlay, which only the node gets.
	for _, typ := range []string{"ed25519", "ecdsa", "rsa"} {
		assert.Contains(t, run1, "etc/ssh/ssh_host_"+typ+"_key", "every type by default")
		assert.NotContains(t, sys1, "etc/ssh/ssh_host_"+typ+"_key", "not in the system overlay")
	}
	run2 := archiveFiles(t, root, "n2", "runtime")
	assert.NotEqual(t, run1["etc/ssh/ssh_host_rsa_key"], run2["etc/ssh/ssh_host_rsa_key"], "per node by default")

	// A Warewulf server's keys, imported and shared.
	ww := t.TempDir()
	for _, typ := range []string{"ed25519", "rsa"} {
		out, err := exec.Command(keygen, "-q", "-t", typ, "-N", "", "-C", "root@warewulf", "-f", filepath.Join(ww, "ssh_host_"+typ+"_key")).CombinedOutput()
		require.NoError(t, err, "%s", out)
	}
	out2 := mustRun(t, root, "keys", "import", ww)
	assert.Contains(t, out2, "imported ed25519, rsa host keys")
	assert.Contains(t, out2, "shared host keys: true")
	appendConf("shared host keys: true\nssh key types: [ed25519, rsa]\n")
	run1, run2 = archiveFiles(t, root, "n1", "runtime"), archiveFiles(t, root, "n2", "runtime")
	want, err := os.ReadFile(filepath.Join(ww, "ssh_host_rsa_key.pub"))
	require.NoError(t, err)
	assert.Equal(t, string(want), run1["etc/ssh/ssh_host_rsa_key.pub"])
	assert.Equal(t, run1["etc/ssh/ssh_host_rsa_key"], run2["etc/ssh/ssh_host_rsa_key"], "one set for all")
	assert.NotContains(t, run1, "etc/ssh/ssh_host_ecdsa_key", "only the configured types")

	// Bad settings name the key and what to do.
	for text, msg := range map[string]string{
		"authorized keys: keys.pub\n": `authorized keys: "keys.pub": give an absolute path`,
		"ssh key types: [dsa]\n":      `ssh key types: "dsa": use ed25519, ecdsa or rsa`,
		"dns servers: [dns.test]\n":   `dns servers: "dns.test" is not an IP address`,
	} {
		bad := t.TempDir()
		require.NoError(t, os.WriteFile(filepath.Join(bad, "wwboot.conf"), []byte(text), 0o644))
		_, err := loadServeConfig(filepath.Join(bad, "wwboot.conf"))
		assert.ErrorContains(t, err, msg)
	}
}
