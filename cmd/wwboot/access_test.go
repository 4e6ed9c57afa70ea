package main

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wwboot/wwboot/image"
)

// TestDefaultProfileHostKeysOnlyToTheNode is issue 11 item 1 on a new site
// set up as the README shows: with the default profile, the system overlay
// (which anyone may fetch) carries no private key, and the node's host keys
// come in the runtime overlay, which an unprivileged port does not get and
// the node (a privileged port from its address) does. Before, the default
// profile put ssh.host_keys in the system overlay: one curl returned them.
func TestDefaultProfileHostKeysOnlyToTheNode(t *testing.T) {
	bin, err := buildBinary()
	require.NoError(t, err)
	root := t.TempDir()
	mustRun(t, root, "init")
	mustRun(t, root, "node", "add", "n1", "--image", "img", "--netdev", "default", "--hwaddr", "52:54:00:12:34:66",
		"--ipaddr", "127.0.0.1", "--netmask", "255.0.0.0")
	tree := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(tree, "boot"), 0o755))
	kernel := make([]byte, 100<<10)
	_, _ = rand.Read(kernel)
	require.NoError(t, os.WriteFile(filepath.Join(tree, "boot", "vmlinuz-6.1.0-9-amd64"), kernel, 0o644))
	st, err := image.OpenStore(filepath.Join(root, "images"))
	require.NoError(t, err)
	_, err = st.Import(context.Background(), tree, "img", image.BuildOptions{})
	require.NoError(t, err)

	port := strconv.Itoa(freePort(t))
	base := "http://127.0.0.1:" + port
	cmd := exec.Command(bin, "--root", root, "serve", "--dhcp", "off", "--no-tftp", "--http-port", port, "--agent-tls-port", strconv.Itoa(freePort(t)))
	var logs strings.Builder
	cmd.Stdout, cmd.Stderr = &logs, &logs
	require.NoError(t, cmd.Start())
	defer func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("wwboot serve:\n%s", logs.String())
		}
	}()
	require.Eventually(t, func() bool {
		resp, err := http.Get(base + "/healthz")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil
	}, 20*time.Second, 50*time.Millisecond, "wwboot serve answers /healthz")

	fetch := func(url string, curlArgs ...string) (string, []byte) {
		t.Helper()
		out := filepath.Join(t.TempDir(), "body")
		args := append([]string{"-sS", "-o", out, "-w", "%{http_code}"}, curlArgs...)
		code, err := exec.Command("curl", append(args, url)...).CombinedOutput()
		require.NoError(t, err, "%s", code)
		b, err := os.ReadFile(out)
		require.NoError(t, err)
		return string(code), b
	}
	raw := func(b []byte) string {
		zr, err := gzip.NewReader(bytes.NewReader(b))
		require.NoError(t, err)
		r, err := io.ReadAll(zr)
		require.NoError(t, err)
		return string(r)
	}

	code, body := fetch(base + "/overlay/system/52:54:00:12:34:66")
	require.Equal(t, "200", code, "%s", body)
	sys := raw(body)
	// (The marker of a PEM key: the agent binary holds "PRIVATE KEY" in
	// crypto/tls's messages.)
	assert.NotContains(t, sys, "PRIVATE KEY-----", "the system overlay goes to anyone")
	assert.Contains(t, sys, "wwboot-agent-sync.service", "the unit that fetches the keys before sshd")
	assert.Contains(t, sys, "etc/machine-id")

	code, body = fetch(base + "/overlay/runtime/52:54:00:12:34:66")
	assert.Equal(t, "403", code)
	assert.NotContains(t, string(body), "PRIVATE KEY")
	if os.Geteuid() == 0 {
		// agent tls: true (the default): not even from a privileged port of
		// the node's address over plain HTTP; the agent gets it over TLS
		// (TestServeNewSite, and package provision's tests).
		code, body = fetch(base+"/overlay/runtime/52:54:00:12:34:66", "--local-port", "700-1023")
		require.Equal(t, "403", code, "%s", body)
		assert.Contains(t, string(body), "only over TLS")
		assert.NotContains(t, string(body), "PRIVATE KEY")
	}
}

// TestStatusSendsTheAdminToken: wwboot init makes ROOT/admin.token (0600,
// once), wwboot status sends it as a bearer token, explains a 403, and a
// token file others may read is refused.
func TestStatusSendsTheAdminToken(t *testing.T) {
	root := t.TempDir()
	out := mustRun(t, root, "init")
	assert.Contains(t, out, "admin.token")
	path := filepath.Join(root, "admin.token")
	fi, err := os.Stat(path)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	tok, err := readAdminToken(path)
	require.NoError(t, err)
	assert.Len(t, tok, 64)
	mustRun(t, root, "init")
	again, err := readAdminToken(path)
	require.NoError(t, err)
	assert.Equal(t, tok, again, "init keeps the token")

	var got []string
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got = append(got, r.Header.Get("Authorization"))
		if r.Header.Get("Authorization") != "Bearer "+tok {
			http.Error(w, "no", http.StatusForbidden)
			return
		}
		_, _ = io.WriteString(w, `{"nodes":[{"node":"n7","hwaddr":"52:54:00:00:00:07","state":"up"}],"unknown":[]}`)
	}))
	defer ts.Close()
	out = mustRun(t, root, "status", "--server", ts.URL)
	assert.Contains(t, out, "n7")
	assert.Equal(t, []string{"Bearer " + tok}, got)

	other := filepath.Join(t.TempDir(), "tok")
	require.NoError(t, os.WriteFile(other, []byte("0123456789abcdef-wrong\n"), 0o600))
	out, err = run(t, root, "status", "--server", ts.URL, "--token-file", other)
	require.Error(t, err)
	assert.Contains(t, out+err.Error(), "admin networks")

	require.NoError(t, os.Chmod(other, 0o644))
	_, err = run(t, root, "status", "--server", ts.URL, "--token-file", other)
	require.ErrorContains(t, err, "chmod 600")
}

// TestAdminNetworksConfig: wwboot.conf's admin networks take networks and
// bare addresses and name a bad entry.
func TestAdminNetworksConfig(t *testing.T) {
	c := accessConfig{AdminNetworks: []string{"10.0.0.0/24", "192.168.1.7", "fd00::1/64"}}
	nets, err := c.adminNets()
	require.NoError(t, err)
	require.Len(t, nets, 3)
	assert.Equal(t, "192.168.1.7/32", nets[1].String())
	assert.Equal(t, "fd00::/64", nets[2].String())

	dir := t.TempDir()
	conf := filepath.Join(dir, "wwboot.conf")
	require.NoError(t, os.WriteFile(conf, []byte("admin networks: [10.0.0.0/24, nonsense]\n"), 0o644))
	_, err = loadServeConfig(conf)
	require.ErrorContains(t, err, `admin networks: "nonsense"`)
	require.NoError(t, os.WriteFile(conf, []byte(defaultConfigText), 0o644))
	cfg, err := loadServeConfig(conf)
	require.NoError(t, err)
	assert.Empty(t, cfg.AdminNetworks)
	assert.False(t, cfg.SystemSecrets)
}
