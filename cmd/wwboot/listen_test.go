package main

import (
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// startServe runs the real `wwboot serve ARGS...` (DHCP and TFTP off) on
// free ports and waits until health answers at base. It returns the ports
// and the server's log so far (a function: the log grows).
func startServe(t *testing.T, root, health string, args ...string) (httpPort, tlsPort string, logs func() string) {
	t.Helper()
	bin, err := buildBinary()
	require.NoError(t, err)
	httpPort, tlsPort = strconv.Itoa(freePort(t)), strconv.Itoa(freePort(t))
	args = append([]string{"--root", root, "serve", "--dhcp", "off", "--no-tftp", "--http-port", httpPort, "--agent-tls-port", tlsPort}, args...)
	cmd := exec.Command(bin, args...)
	var out syncWriter
	cmd.Stdout, cmd.Stderr = &out, &out
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
		if t.Failed() {
			t.Logf("wwboot serve:\n%s", out.String())
		}
	})
	require.Eventually(t, func() bool {
		resp, err := http.Get("http://" + net.JoinHostPort(health, httpPort) + "/healthz")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil
	}, 20*time.Second, 50*time.Millisecond, "wwboot serve answers /healthz at %s", health)
	return httpPort, tlsPort, out.String
}

// dialRefused asserts that a TCP connection to addr is refused.
func dialRefused(t *testing.T, addr string) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 2*time.Second)
	if err == nil {
		c.Close()
	}
	assert.ErrorIs(t, err, syscall.ECONNREFUSED, "nothing listens at %s", addr)
}

// TestServeListen: `wwboot serve --listen 127.0.0.5` (a loopback address
// standing in for the cluster interface's) binds HTTP and the agents' TLS
// port on that address and 127.0.0.1 only: another address of the same host
// (127.0.0.6) is refused; the listen address serves the iPXE script (naming
// that address) and TLS /healthz with a certificate valid for it; 127.0.0.1
// serves wwboot status; the log names what is bound. With --listen 0.0.0.0
// every address answers, as without listen:.
func TestServeListen(t *testing.T) {
	root := t.TempDir()
	mustRun(t, root, "init")
	mustRun(t, root, "node", "add", "n1", "--netdev", "default", "--hwaddr", "52:54:00:12:34:56",
		"--ipaddr", "127.0.0.7", "--netmask", "255.0.0.0")

	hp, tp, logs := startServe(t, root, "127.0.0.5", "--listen", "127.0.0.5")
	dialRefused(t, "127.0.0.6:"+hp)
	dialRefused(t, "127.0.0.6:"+tp)

	base := "http://127.0.0.5:" + hp
	resp, err := http.Get(base + "/ipxe/52-54-00-12-34-56")
	require.NoError(t, err)
	script, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", script)
	assert.Contains(t, string(script), base+"/", "the script's URLs name the listen address")

	pem, err := os.ReadFile(filepath.Join(root, "tls", "ca.crt"))
	require.NoError(t, err)
	pool := x509.NewCertPool()
	require.True(t, pool.AppendCertsFromPEM(pem))
	hc := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	for _, host := range []string{"127.0.0.5", "127.0.0.1"} {
		resp, err := hc.Get("https://" + host + ":" + tp + "/healthz")
		require.NoError(t, err, "the agents' TLS port at %s, verified against ROOT/tls/ca.crt", host)
		resp.Body.Close()
		assert.Equal(t, http.StatusOK, resp.StatusCode)
	}

	// The local admin commands reach the server through 127.0.0.1.
	status := mustRun(t, root, "status", "--server", "http://127.0.0.1:"+hp)
	assert.Regexp(t, `n1\s+booting\s+52:54:00:12:34:56`, status, "the script request above made n1 booting")
	assert.Contains(t, logs(), `bound="[127.0.0.5 127.0.0.1]"`)

	// 0.0.0.0: every address, as an empty listen: does.
	root2 := t.TempDir()
	mustRun(t, root2, "init")
	hp2, tp2, logs2 := startServe(t, root2, "127.0.0.6", "--listen", "0.0.0.0")
	for _, host := range []string{"127.0.0.1", "127.0.0.5", "127.0.0.6"} {
		for _, p := range []string{hp2, tp2} {
			c, err := net.DialTimeout("tcp", host+":"+p, 2*time.Second)
			require.NoError(t, err, "without a listen address %s:%s answers", host, p)
			c.Close()
		}
	}
	assert.Contains(t, logs2(), `bound="every address (listen: is empty)"`)
}

// TestListenConfig: listen: is one IPv4 address or empty/0.0.0.0/:: (every
// address); anything else, a list included, is refused naming the file. The
// bind list is the address and loopback (when up), TFTP the address's port
// 69; none and ":69" without an address.
func TestListenConfig(t *testing.T) {
	dir := t.TempDir()
	conf := filepath.Join(dir, "wwboot.conf")
	for text, want := range map[string]string{
		"listen: 10.0.0.1\n": "10.0.0.1",
		"listen: 0.0.0.0\n":  "",
		"listen: '::'\n":     "",
		"listen: ''\n":       "",
	} {
		require.NoError(t, os.WriteFile(conf, []byte(text), 0o644))
		cfg, err := loadServeConfig(conf)
		require.NoError(t, err, text)
		a, specific, err := parseListen(cfg.Listen)
		require.NoError(t, err)
		assert.Equal(t, want != "", specific, text)
		if want != "" {
			assert.Equal(t, want, a.String())
		}
	}
	for text, want := range map[string]string{
		"listen: fd00::1\n":                "give one IPv4 address",
		"listen: server.example\n":         "give one IPv4 address",
		"listen: [10.0.0.1, 10.1.0.1]\n":   "line 1",
		"listen: 10.0.0.1 10.1.0.1\n":      "give one IPv4 address",
		"listen:\n  - 10.0.0.1\n  - x\n\n": "cannot unmarshal",
	} {
		require.NoError(t, os.WriteFile(conf, []byte(text), 0o644))
		_, err := loadServeConfig(conf)
		require.Error(t, err, text)
		assert.ErrorContains(t, err, want, text)
		assert.ErrorContains(t, err, conf, text)
	}
	_, err := run(t, t.TempDir(), "serve", "--listen", "10.0.0.300", "--dhcp", "off")
	assert.ErrorContains(t, err, `listen: "10.0.0.300": give one IPv4 address`)

	binds, tftp := bindAddrs(netip.MustParseAddr("10.88.0.1"), true)
	assert.Equal(t, []netip.Addr{netip.MustParseAddr("10.88.0.1"), netip.MustParseAddr("127.0.0.1")}, binds)
	assert.Equal(t, "10.88.0.1:69", tftp)
	binds, _ = bindAddrs(netip.MustParseAddr("10.88.0.1"), false)
	assert.Equal(t, []netip.Addr{netip.MustParseAddr("10.88.0.1")}, binds, "loopback down: not bound")
	binds, _ = bindAddrs(netip.MustParseAddr("127.0.0.1"), true)
	assert.Len(t, binds, 1)
	binds, tftp = bindAddrs(netip.Addr{}, true)
	assert.Nil(t, binds)
	assert.Equal(t, ":69", tftp)
	assert.True(t, loopbackUp(), "this test host's loopback is up")
}
