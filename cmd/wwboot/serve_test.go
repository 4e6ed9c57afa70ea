package main

import (
	"context"
	"crypto/rand"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wwboot/wwboot/image"
)

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestServeNewSite is the new-site path: wwboot init, an image, wwboot node
// add with the default profile, then wwboot serve (the real binary) answers
// every URL of the node's script, wwboot status shows the node, and SIGTERM
// stops the server cleanly.
func TestServeNewSite(t *testing.T) {
	bin, err := buildBinary()
	require.NoError(t, err)
	root := t.TempDir()
	mustRun(t, root, "init")
	mustRun(t, root, "node", "add", "n1", "--image", "img", "--netdev", "default", "--hwaddr", "52:54:00:12:34:56",
		"--ipaddr", "127.0.0.1", "--netmask", "255.0.0.0")
	// wwclient: the system overlay carries the agent serve finds next to itself.
	mustRun(t, root, "node", "set", "n1", "--system-overlays", "wwinit,hostname,wwclient")
	mustRun(t, root, "node", "add", "n2", "--netdev", "default", "--hwaddr", "52:54:00:12:34:57", "--ipaddr", "127.0.0.2")

	tree := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(tree, "boot"), 0o755))
	kernel := make([]byte, 200<<10)
	_, _ = rand.Read(kernel)
	require.NoError(t, os.WriteFile(filepath.Join(tree, "boot", "vmlinuz-6.1.0-9-amd64"), kernel, 0o644))
	require.NoError(t, os.MkdirAll(filepath.Join(tree, "sbin"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(tree, "sbin", "init"), []byte("#!/bin/sh\n"), 0o755))
	st, err := image.OpenStore(filepath.Join(root, "images"))
	require.NoError(t, err)
	_, err = st.Import(context.Background(), tree, "img", image.BuildOptions{})
	require.NoError(t, err)

	port, tlsPort := freePort(t), freePort(t)
	base := "http://127.0.0.1:" + strconv.Itoa(port)
	cmd := exec.Command(bin, "--root", root, "serve", "--dhcp", "off", "--no-tftp", "--http-port", strconv.Itoa(port), "--agent-tls-port", strconv.Itoa(tlsPort))
	var logs strings.Builder
	cmd.Stdout, cmd.Stderr = &logs, &logs
	require.NoError(t, cmd.Start())
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	defer func() {
		_ = cmd.Process.Kill()
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

	out, err := exec.Command("curl", "-sSf", base+"/ipxe/52-54-00-12-34-56").CombinedOutput()
	require.NoError(t, err, "%s", out)
	script := string(out)
	assert.Contains(t, script, "quiet panic=30", "the default profile's kernel args")
	assert.NotContains(t, script, "crashkernel=no", "the kernel warns about it (crashkernel: memory value expected)")
	for _, u := range regexp.MustCompile(`http://\S+/\S+`).FindAllString(script, -1) {
		args := []string{"-sS", "-o", "/dev/null", "-w", "%{http_code}"}
		if strings.Contains(u, "/runtime/") && os.Geteuid() == 0 {
			args = append(args, "--local-port", "700-1023")
		}
		out, err := exec.Command("curl", append(args, u)...).CombinedOutput()
		require.NoError(t, err, "%s", out)
		want := "200"
		if strings.Contains(u, "/runtime/") {
			want = "403" // agent tls: true (the default): only the agent gets it, over TLS
		}
		assert.Equal(t, want, string(out), "GET %s", u)
	}

	// The node agent, as a node runs it: the wwboot-agent binary with the
	// node.conf the wwinit overlay renders, once, into a scratch root; then
	// a failure report, which wwboot status shows.
	status := mustRun(t, root, "status", "--server", base)
	assert.Regexp(t, `n1\s+booting\s+52:54:00:12:34:56\s+runtime\s+`, status)
	assert.Regexp(t, `n2\s+down\s+-\s+-\s+-\s+-\s+not seen since the server started`, status, "an inventory node that never asked")
	if os.Geteuid() == 0 {
		agent := filepath.Join(filepath.Dir(bin), agentName)
		node := t.TempDir()
		require.NoError(t, os.MkdirAll(filepath.Join(node, "etc", "wwboot"), 0o755))
		conf := filepath.Join(node, "etc", "wwboot", "node.conf")
		require.NoError(t, os.WriteFile(conf, []byte("WWBOOT_NODE='n1'\nWWBOOT_HWADDR='52:54:00:12:34:56'\nWWBOOT_URL='"+base+"'\n"+
			"WWBOOT_TLS_URL='https://127.0.0.1:"+strconv.Itoa(tlsPort)+"'\n"), 0o644))
		ca, runDir := filepath.Join(root, "tls", "ca.crt"), t.TempDir()
		// /init's early report goes over plain HTTP, before the enrollment.
		out, err := exec.Command(agent, "-conf", conf, "-ca", ca, "-run-dir", runDir, "report", "booting", "init").CombinedOutput()
		require.NoError(t, err, "%s", out)
		out, err = exec.Command(agent, "-conf", conf, "-root", node, "-ca", ca, "-run-dir", runDir, "once").CombinedOutput()
		require.NoError(t, err, "%s", out)
		assert.Contains(t, string(out), "enrolled")
		assert.FileExists(t, filepath.Join(runDir, "agent.crt"))
		key, err := os.ReadFile(filepath.Join(node, "etc", "ssh", "ssh_host_ed25519_key"))
		require.NoError(t, err, "the node's private host key arrived over TLS")
		assert.Contains(t, string(key), "OPENSSH PRIVATE KEY")
		require.NoError(t, err, "%s", out)
		hosts, err := os.ReadFile(filepath.Join(node, "etc", "hosts"))
		require.NoError(t, err, "the agent applied the runtime overlay")
		assert.Contains(t, string(hosts), "n1")

		node2 := t.TempDir()
		// The same boot's certificate (one enrollment per boot).
		mustRun(t, root, "agent", "--node-conf", conf, "--target", node2, "--once", "--ca", ca, "--run-dir", runDir)
		assert.FileExists(t, filepath.Join(node2, "etc", "hosts"), "wwboot agent does the same")

		out, err = exec.Command(agent, "-conf", conf, "-ca", ca, "-run-dir", runDir, "report", "failed", "system overlay incomplete").CombinedOutput()
		require.NoError(t, err, "%s", out)
		status = mustRun(t, root, "status", "--server", base)
		assert.Regexp(t, `n1\s+failed\s+52:54:00:12:34:56\s+init\s+(now|\S+ ago)\s+(now|\S+ ago)\s+init: system overlay incomplete`, status)
	}
	assert.Contains(t, mustRun(t, root, "status", "--server", base, "-o", "json"), `"node": "n1"`)

	require.NoError(t, cmd.Process.Signal(syscall.SIGTERM))
	select {
	case err := <-exited:
		assert.NoError(t, err, "SIGTERM stops wwboot serve cleanly")
	case <-time.After(20 * time.Second):
		t.Fatal("wwboot serve did not stop after SIGTERM")
	}
	assert.Contains(t, logs.String(), "draining")
}

func TestServeConfig(t *testing.T) {
	root := t.TempDir()
	mustRun(t, root, "init")
	cfg, err := loadServeConfig(filepath.Join(root, "wwboot.conf"))
	require.NoError(t, err)
	assert.Equal(t, defaultServeConfig(), cfg, "the file init writes holds the defaults")

	cfg, err = loadServeConfig(filepath.Join(root, "missing.conf"))
	require.NoError(t, err)
	assert.Equal(t, defaultServeConfig(), cfg)

	bad := filepath.Join(root, "bad.conf")
	require.NoError(t, os.WriteFile(bad, []byte("listen: 10.0.0.1\nhttp prot: 80\n"), 0o644))
	_, err = loadServeConfig(bad)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "bad.conf")
	assert.Contains(t, err.Error(), "line 2")

	require.NoError(t, os.WriteFile(bad, []byte("dhcp: half\n"), 0o644))
	_, err = loadServeConfig(bad)
	assert.ErrorContains(t, err, "use full, proxy or off")

	// A dynamic range for unknown machines.
	good := filepath.Join(root, "range.conf")
	require.NoError(t, os.WriteFile(good, []byte("range start: 10.0.0.100\nrange end: 10.0.0.199\n"), 0o644))
	cfg, err = loadServeConfig(good)
	require.NoError(t, err)
	start, end, ok, err := cfg.dhcpRange()
	require.NoError(t, err)
	assert.True(t, ok)
	assert.Equal(t, "10.0.0.100-10.0.0.199", start.String()+"-"+end.String())
	for conf, want := range map[string]string{
		"range start: 10.0.0.100\n":                                 "range end",
		"range start: 10.0.0.200\nrange end: 10.0.0.100\n":          "is below range start",
		"range start: nonsense\nrange end: 10.0.0.100\n":            "range start",
		"dhcp: proxy\nrange start: 10.0.0.1\nrange end: 10.0.0.9\n": "needs dhcp: full",
	} {
		require.NoError(t, os.WriteFile(bad, []byte(conf), 0o644))
		_, err = loadServeConfig(bad)
		assert.ErrorContains(t, err, want, conf)
	}

	// DHCP without an interface says what to do.
	_, err = run(t, root, "serve", "--http-port", strconv.Itoa(freePort(t)), "--no-tftp")
	assert.ErrorContains(t, err, "--interface")

	_, err = run(t, root, "status", "--server", "http://127.0.0.1:1", "--timeout", "2s")
	assert.ErrorContains(t, err, "is wwboot serve running?")
}

// TestInitMakesTheClusterCA: wwboot init creates the cluster CA in
// ROOT/tls (key 0600) and leaves it alone when run again; with agent tls:
// false in wwboot.conf it makes none. The wwboot.conf keys parse and are
// checked.
func TestInitMakesTheClusterCA(t *testing.T) {
	root := t.TempDir()
	out := mustRun(t, root, "init")
	assert.Contains(t, out, "cluster CA")
	key := filepath.Join(root, "tls", "ca.key")
	fi, err := os.Stat(key)
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	crt1, err := os.ReadFile(filepath.Join(root, "tls", "ca.crt"))
	require.NoError(t, err)
	mustRun(t, root, "init")
	crt2, err := os.ReadFile(filepath.Join(root, "tls", "ca.crt"))
	require.NoError(t, err)
	assert.Equal(t, crt1, crt2, "init again keeps the CA")

	cfg, err := loadServeConfig(filepath.Join(root, "wwboot.conf"))
	require.NoError(t, err)
	assert.True(t, cfg.AgentTLS)
	assert.Equal(t, 9874, cfg.AgentTLSPort)

	off := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(off, "wwboot.conf"), []byte("agent tls: false\n"), 0o644))
	mustRun(t, off, "init")
	assert.NoDirExists(t, filepath.Join(off, "tls"))

	bad := filepath.Join(t.TempDir(), "wwboot.conf")
	require.NoError(t, os.WriteFile(bad, []byte("agent tls port: 9873\n"), 0o644))
	_, err = loadServeConfig(bad)
	assert.ErrorContains(t, err, "agent tls port: 9873 is the http port too")
}
