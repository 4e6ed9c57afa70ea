package main

import (
	"crypto/rand"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestNodeDeleteAndRevoke runs the attack of a deleted node's certificate
// against a real `wwboot serve` with the real node agent and curl: n1
// enrolls; `node delete n1` drops its record (ROOT/tls/nodes/n1.json) and
// `node add n1` with another MAC makes a new n1; the old certificate, used
// with curl, gets 401 at the new n1's runtime overlay. Then `node revoke`
// and the API's revoke make the new n1's certificate 401 too, and its agent
// enrolls again at its next run.
func TestNodeDeleteAndRevoke(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("the node agent enrolls from a privileged source port: needs root")
	}
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("no curl")
	}
	bin, err := buildBinary()
	require.NoError(t, err)
	root := t.TempDir()
	mustRun(t, root, "init")
	const oldMAC, newMAC = "52:54:00:12:34:56", "52:54:00:aa:bb:cc"
	mustRun(t, root, "node", "add", "n1", "--netdev", "default", "--hwaddr", oldMAC, "--ipaddr", "127.0.0.1", "--netmask", "255.0.0.0")
	mustRun(t, root, "node", "add", "n2", "--netdev", "default", "--hwaddr", "52:54:00:12:34:57", "--ipaddr", "127.0.0.2")
	token, err := os.ReadFile(filepath.Join(root, apiTokenFile))
	require.NoError(t, err)

	port, tlsPort := freePort(t), freePort(t)
	base, sec := "http://127.0.0.1:"+strconv.Itoa(port), "https://127.0.0.1:"+strconv.Itoa(tlsPort)
	cmd := exec.Command(bin, "--root", root, "serve", "--dhcp", "off", "--no-tftp", "--http-port", strconv.Itoa(port), "--agent-tls-port", strconv.Itoa(tlsPort))
	var logs strings.Builder
	cmd.Stdout, cmd.Stderr = &logs, &logs
	require.NoError(t, cmd.Start())
	defer func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
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

	agent := filepath.Join(filepath.Dir(bin), agentName)
	ca := filepath.Join(root, "tls", "ca.crt")
	// enroll runs the node agent once as node n1 with mac, keeping its
	// enrollment in runDir.
	enroll := func(mac, runDir string) (string, error) {
		node := t.TempDir()
		require.NoError(t, os.MkdirAll(filepath.Join(node, "etc", "wwboot"), 0o755))
		conf := filepath.Join(node, "etc", "wwboot", "node.conf")
		require.NoError(t, os.WriteFile(conf, []byte("WWBOOT_NODE='n1'\nWWBOOT_HWADDR='"+mac+"'\nWWBOOT_URL='"+base+"'\n"+
			"WWBOOT_TLS_URL='"+sec+"'\n"), 0o644))
		out, err := exec.Command(agent, "-conf", conf, "-root", node, "-ca", ca, "-run-dir", runDir, "once").CombinedOutput()
		return string(out), err
	}
	// runtime asks for mac's runtime overlay with the certificate in runDir,
	// as an attacker with a copy of it would, and returns the status code.
	runtime := func(mac, runDir string) string {
		out, err := exec.Command("curl", "-sS", "-k", "-o", "/dev/null", "-w", "%{http_code}",
			"--cert", filepath.Join(runDir, "agent.crt"), "--key", filepath.Join(runDir, "agent.key"),
			sec+"/overlay/runtime/"+mac).CombinedOutput()
		require.NoError(t, err, "%s", out)
		return string(out)
	}
	stolen := func(runDir string) string { // a copy of the agent's key and certificate
		dst := t.TempDir()
		for _, f := range []string{"agent.crt", "agent.key"} {
			b, err := os.ReadFile(filepath.Join(runDir, f))
			require.NoError(t, err)
			require.NoError(t, os.WriteFile(filepath.Join(dst, f), b, 0o600))
		}
		return dst
	}

	run1 := t.TempDir()
	out, err := enroll(oldMAC, run1)
	require.NoError(t, err, out)
	old := stolen(run1)
	require.Equal(t, "200", runtime(oldMAC, old))
	record := filepath.Join(root, "tls", "nodes", "n1.json")
	require.FileExists(t, record)

	// node delete takes the record with it; node add makes a new n1.
	out = mustRun(t, root, "node", "delete", "n1")
	assert.Contains(t, out, "revoked the agent certificates of n1")
	assert.NoFileExists(t, record)
	mustRun(t, root, "node", "add", "n1", "--netdev", "default", "--hwaddr", newMAC, "--ipaddr", "127.0.0.1", "--netmask", "255.0.0.0")
	require.Eventually(t, func() bool { return runtime(newMAC, old) != "404" }, 10*time.Second, 50*time.Millisecond,
		"the server sees the new n1")
	assert.Equal(t, "401", runtime(newMAC, old), "the deleted n1's certificate gets nothing of the new n1")

	// The new n1 enrolls; node revoke (hostlist syntax) makes its
	// certificate 401 and lets its agent enroll again.
	run2 := t.TempDir()
	out, err = enroll(newMAC, run2)
	require.NoError(t, err, out)
	cur := stolen(run2)
	require.Equal(t, "200", runtime(newMAC, cur))
	out = mustRun(t, root, "node", "revoke", "n[1-2]")
	assert.Contains(t, out, "revoked the agent certificates of n1")
	assert.Contains(t, out, "n2 had no certificate")
	assert.Equal(t, "401", runtime(newMAC, cur), "a revoked certificate, the server's cached record notwithstanding")
	out, err = enroll(newMAC, run2)
	require.Error(t, err, "the agent's certificate is refused: it forgets it (%s)", out)
	assert.Contains(t, out, "401")
	out, err = enroll(newMAC, run2)
	require.NoError(t, err, "the agent enrolls again after a revocation, without a reboot: %s", out)
	require.Equal(t, "200", runtime(newMAC, stolen(run2)))
	_, err = run(t, root, "node", "revoke", "n7")
	assert.ErrorContains(t, err, "n7")

	// The API's revoke: admin token only.
	post := func(tok string) (int, string) {
		req, err := http.NewRequest("POST", base+"/api/v1/nodes/n1/revoke", nil)
		require.NoError(t, err)
		if tok != "" {
			req.Header.Set("Authorization", "bearer "+tok)
		}
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		var b strings.Builder
		buf := make([]byte, 4096)
		n, _ := resp.Body.Read(buf)
		b.Write(buf[:n])
		return resp.StatusCode, b.String()
	}
	code, body := post("")
	assert.Equal(t, http.StatusUnauthorized, code, "a revocation needs the token, from the server too: %s", body)
	wrong := make([]byte, 16)
	_, _ = rand.Read(wrong)
	code, _ = post(strconv.Quote(string(wrong)))
	assert.Equal(t, http.StatusForbidden, code)
	assert.Equal(t, "200", runtime(newMAC, stolen(run2)), "refused revocations changed nothing")
	code, body = post(strings.TrimSpace(string(token)))
	require.Equal(t, http.StatusOK, code, body)
	assert.Contains(t, body, `"revoked": true`)
	assert.Equal(t, "401", runtime(newMAC, stolen(run2)))
}
