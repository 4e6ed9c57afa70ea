package provision_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wwboot/wwboot/nodedb"
	"github.com/wwboot/wwboot/provision"
)

var urlRe = regexp.MustCompile(`http://\S+`)

// TestScriptURLsAreServed fetches a node's script for every MAC spelling,
// then every URL in it, the way iPXE does.
func TestScriptURLsAreServed(t *testing.T) {
	l := newLab(t)
	_, ts := l.serve(t)
	for _, spelling := range []string{mac1, "aa-bb-cc-dd-ee-01", "AA-BB-CC-DD-EE-01", "AA:BB:CC:DD:EE:01"} {
		resp, body := get(t, ts.URL+"/ipxe/"+spelling)
		require.Equal(t, http.StatusOK, resp.StatusCode, spelling)
		assert.Equal(t, "text/plain; charset=utf-8", resp.Header.Get("Content-Type"))
		assert.Contains(t, string(body), "#!ipxe")
		assert.Contains(t, string(body), "quiet crashkernel=no", "the node's kernel args reach the kernel")
		assert.Contains(t, string(body), "wwid="+mac1)
	}
	_, body := get(t, ts.URL+"/ipxe/"+mac1)
	urls := urlRe.FindAllString(string(body), -1)
	want := map[string]bool{"/kernel/": false, "/image/": false, "/overlay/system/": false, "/overlay/runtime/": false}
	for _, u := range urls {
		if u == ts.URL {
			continue // "booting n1 from BASE"
		}
		require.True(t, strings.HasPrefix(u, ts.URL+"/"), "script URL %s points at this server", u)
		resp, b := get(t, u)
		for p := range want {
			if strings.Contains(u, p) {
				want[p] = true
			}
		}
		if strings.Contains(u, "/overlay/runtime/") {
			assert.Equal(t, http.StatusForbidden, resp.StatusCode, "runtime overlay to an unprivileged port: %s", b)
			continue
		}
		assert.Equal(t, http.StatusOK, resp.StatusCode, "%s: %s", u, b)
		assert.NotEmpty(t, b)
	}
	for p, seen := range want {
		assert.True(t, seen, "the script references %s", p)
	}
}

func TestKernelAndImageFiles(t *testing.T) {
	l := newLab(t)
	_, ts := l.serve(t)
	for _, c := range []struct {
		path, file, sum string
	}{
		{"/kernel/" + mac1, l.meta.KernelPath, l.meta.KernelSHA256},
		{"/image/" + mac1, l.meta.Path, l.meta.SHA256},
		{"/provision/" + mac1 + "?stage=kernel", l.meta.KernelPath, l.meta.KernelSHA256},
		{"/provision/" + mac1 + "?stage=image&compress=gz", l.meta.Path, l.meta.SHA256},
		{"/provision/" + mac1 + "?stage=container&compress=gz", l.meta.Path, l.meta.SHA256},
		{"/kernel/" + mac1 + "?assetkey=&uuid=x", l.meta.KernelPath, l.meta.KernelSHA256},
		{"/image/aa-bb-cc-dd-ee-01?compress=gz", l.meta.Path, l.meta.SHA256},
		{"/container/aa-bb-cc-dd-ee-01", l.meta.Path, l.meta.SHA256},
	} {
		want, err := os.ReadFile(c.file)
		require.NoError(t, err)
		resp, body := get(t, ts.URL+c.path)
		require.Equal(t, http.StatusOK, resp.StatusCode, "%s: %s", c.path, body)
		assert.Equal(t, want, body, c.path)
		assert.Equal(t, fmt.Sprint(len(want)), resp.Header.Get("Content-Length"))
		assert.Equal(t, `"`+c.sum+`"`, resp.Header.Get("ETag"))
		assert.Equal(t, l.meta.BuiltAt.UTC().Format(http.TimeFormat), resp.Header.Get("Last-Modified"))
		assert.Equal(t, "bytes", resp.Header.Get("Accept-Ranges"))
		s := sha256.Sum256(body)
		assert.Equal(t, c.sum, hex.EncodeToString(s[:]))
	}
}

func TestRangeAndConditional(t *testing.T) {
	l := newLab(t)
	_, ts := l.serve(t)
	img, err := os.ReadFile(l.meta.Path)
	require.NoError(t, err)
	etag := `"` + l.meta.SHA256 + `"`
	u := ts.URL + "/image/" + mac1

	resp, body := get(t, u, "Range", "bytes=100-1099")
	assert.Equal(t, http.StatusPartialContent, resp.StatusCode)
	assert.Equal(t, img[100:1100], body)
	assert.Equal(t, fmt.Sprintf("bytes 100-1099/%d", len(img)), resp.Header.Get("Content-Range"))

	resp, body = get(t, u, "Range", fmt.Sprintf("bytes=%d-", len(img)-10))
	assert.Equal(t, http.StatusPartialContent, resp.StatusCode)
	assert.Equal(t, img[len(img)-10:], body)

	resp, body = get(t, u, "If-None-Match", etag)
	assert.Equal(t, http.StatusNotModified, resp.StatusCode)
	assert.Empty(t, body)

	resp, body = get(t, u, "If-None-Match", `"something-else"`)
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Len(t, body, len(img))

	resp, body = get(t, u, "Range", "bytes=0-9", "If-Range", etag)
	assert.Equal(t, http.StatusPartialContent, resp.StatusCode, "If-Range with the current ETag gives the range")
	assert.Equal(t, img[:10], body)
	resp, body = get(t, u, "Range", "bytes=0-9", "If-Range", `"old"`)
	assert.Equal(t, http.StatusOK, resp.StatusCode, "If-Range with another ETag gives the whole file")
	assert.Len(t, body, len(img))

	resp, _ = get(t, u, "Range", fmt.Sprintf("bytes=%d-", len(img)+5))
	assert.Equal(t, http.StatusRequestedRangeNotSatisfiable, resp.StatusCode)

	resp, _ = get(t, u, "If-Modified-Since", l.meta.BuiltAt.Add(time.Hour).UTC().Format(http.TimeFormat))
	assert.Equal(t, http.StatusNotModified, resp.StatusCode)

	// Overlays: the archive's content hash is its ETag.
	resp, body = get(t, ts.URL+"/overlay/system/"+mac1)
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
	oetag := resp.Header.Get("ETag")
	require.NotEmpty(t, oetag)
	resp2, body2 := get(t, ts.URL+"/system/"+mac1+"?compress=gz")
	assert.Equal(t, oetag, resp2.Header.Get("ETag"), "Warewulf's path serves the same archive")
	assert.Equal(t, body, body2)
	resp, _ = get(t, ts.URL+"/overlay/system/"+mac1, "If-None-Match", oetag)
	assert.Equal(t, http.StatusNotModified, resp.StatusCode)
	resp, part := get(t, ts.URL+"/overlay/system/"+mac1, "Range", "bytes=10-19")
	assert.Equal(t, http.StatusPartialContent, resp.StatusCode)
	assert.Equal(t, body[10:20], part)
}

// TestSystemOverlayIsACpio unpacks the system overlay with gzip -d and GNU
// cpio and finds the node's rendered files.
func TestSystemOverlayIsACpio(t *testing.T) {
	l := newLab(t)
	_, ts := l.serve(t)
	resp, body := get(t, ts.URL+"/overlay-system/"+mac1)
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
	dir := t.TempDir()
	cmd := exec.Command("sh", "-c", "gzip -dc | cpio -idm --quiet --no-absolute-filenames")
	cmd.Dir, cmd.Stdin = dir, bytes.NewReader(body)
	out, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", out)
	host, err := os.ReadFile(dir + "/etc/hostname")
	require.NoError(t, err)
	assert.Equal(t, "n1", strings.TrimSpace(string(host)))
	conf, err := os.ReadFile(dir + "/etc/wwboot/node.conf")
	require.NoError(t, err)
	assert.Contains(t, string(conf), "127.0.0.1")
}

func TestUnknownNode(t *testing.T) {
	l := newLab(t)
	h, ts := l.serve(t)
	resp, body := get(t, ts.URL+"/ipxe/00-11-22-33-44-55")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Contains(t, string(body), "not in the inventory")
	assert.Contains(t, string(body), "00:11:22:33:44:55")
	assert.Contains(t, string(body), "chain --replace --autofree "+ts.URL+"/ipxe/00:11:22:33:44:55", "it asks again for its own script")
	assert.Contains(t, string(body), "sleep 2")
	resp, body = get(t, ts.URL+"/provision/00:11:22:33:44:55?stage=ipxe")
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Contains(t, string(body), "not in the inventory")
	for _, p := range []string{"/kernel/", "/image/", "/overlay/system/", "/overlay/runtime/"} {
		resp, body = get(t, ts.URL+p+"00:11:22:33:44:55")
		assert.Equal(t, http.StatusNotFound, resp.StatusCode, p)
		assert.Contains(t, string(body), "wwboot node add", "the error says what to do")
	}
	st := h.Status()
	require.Len(t, st.Unknown, 1)
	assert.Equal(t, "00:11:22:33:44:55", st.Unknown[0].Hwaddr)
}

func TestBadRequests(t *testing.T) {
	l := newLab(t)
	_, ts := l.serve(t)
	for path, code := range map[string]int{
		"/ipxe/zz":                            http.StatusBadRequest,
		"/ipxe/aa:bb:cc":                      http.StatusBadRequest,
		"/ipxe/":                              http.StatusNotFound,
		"/provision/" + mac1 + "?stage=kmods": http.StatusNotFound,
		"/provision/" + mac1 + "?stage=initramfs":        http.StatusNotFound,
		"/image/" + mac1 + "?compress=xz":                http.StatusBadRequest,
		"/kernel/" + mac1 + "?compress=gz":               http.StatusNotFound,
		"/provision/" + mac1 + "?stage=system&overlay=x": http.StatusBadRequest,
		"/nothing":                http.StatusNotFound,
		"/boot/escape":            http.StatusNotFound,
		"/boot/nonexistent":       http.StatusNotFound,
		"/boot/%2e%2e/secret.txt": http.StatusNotFound,
	} {
		resp, body := get(t, ts.URL+path)
		assert.Equal(t, code, resp.StatusCode, "%s: %s", path, body)
		assert.NotContains(t, string(body), outsideSecret)
	}
	// POST is not served.
	resp, err := http.Post(ts.URL+"/ipxe/"+mac1, "text/plain", nil)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, http.StatusMethodNotAllowed, resp.StatusCode)
}

func TestBootFiles(t *testing.T) {
	l := newLab(t)
	_, ts := l.serve(t)
	want, err := os.ReadFile(l.bootDir + "/undionly.kpxe")
	require.NoError(t, err)
	resp, body := get(t, ts.URL+"/boot/undionly.kpxe")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, want, body)
	resp, body = get(t, ts.URL+"/boot/undionly.kpxe", "Range", "bytes=5-9")
	assert.Equal(t, http.StatusPartialContent, resp.StatusCode)
	assert.Equal(t, want[5:10], body)
}

func TestAssetKey(t *testing.T) {
	l := newLab(t)
	_, ts := l.serve(t)
	_, script := get(t, ts.URL+"/ipxe/"+mac2)
	assert.Contains(t, string(script), "/ipxe/"+mac2+"?assetkey=${asset}", "without a key: a script that asks again with iPXE's ${asset}")
	assert.NotContains(t, string(script), "/kernel/")
	_, script = get(t, ts.URL+"/ipxe/"+mac2+"?assetkey="+asset)
	assert.Contains(t, string(script), "/kernel/"+mac2+"?assetkey=${asset}", "the script passes iPXE's ${asset}")
	assert.Contains(t, string(script), "/image/"+mac2+"?assetkey=${asset}")
	for _, p := range []string{"/kernel/" + mac2, "/image/" + mac2, "/overlay/system/" + mac2, "/provision/" + mac2 + "?stage=kernel",
		"/kernel/" + mac2 + "?assetkey=wrong", "/kernel/" + mac2 + "?assetkey=" + asset + "x"} {
		resp, body := get(t, ts.URL+p)
		assert.Equal(t, http.StatusForbidden, resp.StatusCode, "%s: %s", p, body)
	}
	for _, p := range []string{"/kernel/" + mac2 + "?assetkey=" + asset, "/image/" + mac2 + "?assetkey=" + asset,
		"/overlay/system/" + mac2 + "?assetkey=" + asset, "/provision/" + mac2 + "?stage=system&compress=gz&assetkey=" + asset + "&uuid=u"} {
		resp, body := get(t, ts.URL+p)
		assert.Equal(t, http.StatusOK, resp.StatusCode, "%s: %s", p, body)
	}
}

// TestRuntimeOverlaySecureMode uses curl bound to chosen source ports and
// addresses: a privileged port from the node's address gets the runtime
// overlay; an unprivileged port, or another address, gets 403.
func TestRuntimeOverlaySecureMode(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("binding source ports below 1024 needs root")
		}
		t.Skip("binding source ports below 1024 needs root")
	}
	l := newLab(t)
	_, ts := l.serve(t)
	port := strings.TrimPrefix(ts.URL, "http://127.0.0.1:")
	curl := func(from, localPort, mac, extra string) (int, []byte) {
		t.Helper()
		u := "http://" + from + ":" + port + "/overlay/runtime/" + mac + extra
		if from != "127.0.0.1" {
			u = ts.URL + "/overlay/runtime/" + mac + extra
		}
		out, err := exec.Command("curl", "-s", "-o", "-", "-w", "\n%{http_code}", "--interface", from,
			"--local-port", localPort, u).Output()
		require.NoError(t, err, "curl %s", u)
		i := bytes.LastIndexByte(out, '\n')
		var code int
		fmt.Sscan(string(out[i+1:]), &code)
		return code, out[:i]
	}
	code, body := curl(ip1, "600-1023", mac1, "")
	require.Equal(t, http.StatusOK, code, "%s", body)
	assert.Equal(t, []byte{0x1f, 0x8b}, body[:2], "a gzip archive")

	code, _ = curl(ip1, "40000-40100", mac1, "")
	assert.Equal(t, http.StatusForbidden, code, "secure mode refuses an unprivileged port")

	code, _ = curl(ip2, "600-1023", mac1, "")
	assert.Equal(t, http.StatusForbidden, code, "another address is refused, even from a privileged port")

	code, _ = curl(ip2, "600-1023", mac2, "")
	assert.Equal(t, http.StatusForbidden, code, "n2 without its asset key")
	code, body = curl(ip2, "600-1023", mac2, "?assetkey="+asset)
	assert.Equal(t, http.StatusOK, code, "n2 from its address and port with its key: %s", body)

	// Warewulf's paths are secured the same way.
	code, _ = curl(ip1, "40000-40100", mac1, "")
	assert.Equal(t, http.StatusForbidden, code)
	out, err := exec.Command("curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--interface", ip1, "--local-port", "600-1023",
		ts.URL+"/provision/"+mac1+"?stage=runtime&compress=gz").Output()
	require.NoError(t, err)
	assert.Equal(t, "200", string(out))
	out, err = exec.Command("curl", "-s", "-o", "/dev/null", "-w", "%{http_code}", "--local-port", "40000-40100",
		ts.URL+"/runtime/"+mac1).Output()
	require.NoError(t, err)
	assert.Equal(t, "403", string(out))

	m := metricsText(t, ts.URL)
	assert.Regexp(t, `wwboot_http_refused_total\{reason="unprivileged_port"\} [1-9]`, m)
	assert.Regexp(t, `wwboot_http_refused_total\{reason="address"\} [1-9]`, m)
	assert.Regexp(t, `wwboot_http_refused_total\{reason="asset_key"\} [1-9]`, m)
}

func TestRuntimeOverlayInsecure(t *testing.T) {
	l := newLab(t)
	opts := l.options(t)
	opts.InsecurePorts = true
	h, err := provision.NewHandler(opts)
	require.NoError(t, err)
	ts := httptest.NewServer(h)
	defer ts.Close()
	resp, body := get(t, ts.URL+"/overlay/runtime/"+mac1)
	assert.Equal(t, http.StatusOK, resp.StatusCode, "insecure mode serves unprivileged ports from the node's address: %s", body)
}

func metricsText(t *testing.T, base string) string {
	t.Helper()
	resp, body := get(t, base+"/metrics")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	return string(body)
}

// TestStatusHealthMetrics checks /status after a boot's worth of requests,
// /healthz and /metrics.
func TestStatusHealthMetrics(t *testing.T) {
	l := newLab(t)
	h, ts := l.serve(t)
	get(t, ts.URL+"/ipxe/"+mac1)
	get(t, ts.URL+"/kernel/"+mac1)
	_, img := get(t, ts.URL+"/image/"+mac1)

	resp, body := get(t, ts.URL+"/status")
	require.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "application/json", resp.Header.Get("Content-Type"))
	var st provision.Status
	require.NoError(t, json.Unmarshal(body, &st))
	require.Len(t, st.Nodes, 1)
	n := st.Nodes[0]
	assert.Equal(t, "n1", n.Node)
	assert.Equal(t, mac1, n.Hwaddr)
	assert.Equal(t, provision.StageImage, n.Stage)
	assert.Equal(t, http.StatusOK, n.Code)
	assert.Equal(t, int64(len(img)), n.Bytes)
	assert.Equal(t, int64(3), n.Requests)
	assert.Contains(t, n.Client, "127.0.0.1:")
	assert.WithinDuration(t, time.Now(), n.Time, time.Minute)
	require.Len(t, h.Status().Nodes, 1)
	assert.Equal(t, n.Bytes, h.Status().Nodes[0].Bytes)

	resp, body = get(t, ts.URL+"/healthz")
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.Equal(t, "ok\n", string(body))

	m := metricsText(t, ts.URL)
	assert.Contains(t, m, `wwboot_http_requests_total{code="200",stage="ipxe"} 1`)
	assert.Contains(t, m, `wwboot_http_requests_total{code="200",stage="image"} 1`)
	assert.Contains(t, m, `wwboot_http_sent_bytes_total{stage="image"} `+strconv.FormatFloat(float64(len(img)), 'g', -1, 64))
	assert.Contains(t, m, "wwboot_http_active_requests 0")
}

// TestInventoryChangeDuringTransfer changes the node while its image is
// half downloaded: the download completes intact, and the next script
// request sees the change, with no restart.
func TestInventoryChangeDuringTransfer(t *testing.T) {
	l := newLab(t)
	h, err := provision.NewHandler(l.options(t))
	require.NoError(t, err)
	ts := httptest.NewUnstartedServer(h)
	ts.Listener = smallSendBuffer{ts.Listener}
	ts.Start()
	defer ts.Close()
	img, err := os.ReadFile(l.meta.Path)
	require.NoError(t, err)

	// Small socket buffers on both sides and a client with a tiny receive buffer, so the server is still sending
	// while the inventory changes.
	slow := &http.Client{Transport: &http.Transport{DialContext: (&net.Dialer{
		Control: func(_, _ string, c syscall.RawConn) error {
			return c.Control(func(fd uintptr) {
				_ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096)
			})
		},
	}).DialContext}}
	resp, err := slow.Get(ts.URL + "/image/" + mac1)
	require.NoError(t, err)
	defer resp.Body.Close()
	first := make([]byte, 4096)
	_, err = io.ReadFull(resp.Body, first)
	require.NoError(t, err)
	time.Sleep(100 * time.Millisecond)
	assert.Contains(t, metricsText(t, ts.URL), "wwboot_http_active_requests 1", "the image transfer is under way")

	ctx := context.Background()
	require.NoError(t, l.store.Update(ctx, func(c *nodedb.Config) error {
		c.Nodes["n1"].Kernel = &nodedb.Kernel{Args: []string{"console=ttyS0"}}
		return nil
	}))
	// Another process editing nodes.conf behind the store's back.
	other, err := nodedb.Open(ctx, l.store.Path())
	require.NoError(t, err)
	require.NoError(t, other.Update(ctx, func(c *nodedb.Config) error {
		c.Nodes["n1"].Tags = map[string]string{"rack": "7"}
		return nil
	}))
	require.Eventually(t, func() bool {
		_, body := get(t, ts.URL+"/ipxe/"+mac1)
		return strings.Contains(string(body), "console=ttyS0")
	}, 5*time.Second, 50*time.Millisecond, "the new kernel args are served without a restart")

	rest, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	assert.Equal(t, img, append(first, rest...), "the transfer under way finished intact")
}

// smallSendBuffer gives accepted connections a small send buffer, so a
// transfer to a slow reader stays under way.
type smallSendBuffer struct{ net.Listener }

func (l smallSendBuffer) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetWriteBuffer(8192)
	}
	return c, err
}
