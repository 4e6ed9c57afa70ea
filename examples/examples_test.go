// Package examples holds the tests that build and run the example programs.
package examples

import (
	"bufio"
	"context"
	"crypto/rand"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wwboot/wwboot/image"
)

// build compiles an example program.
func build(t *testing.T, name string) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), name)
	out, err := exec.Command("go", "build", "-o", bin, "./"+name).CombinedOutput()
	require.NoError(t, err, "go build ./%s: %s", name, out)
	return bin
}

// imageStore makes an image store holding image name (a fake kernel and a file).
func imageStore(t *testing.T, name string) (string, image.Meta) {
	t.Helper()
	tree := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(tree, "boot"), 0o755))
	k := make([]byte, 100<<10)
	_, _ = rand.Read(k)
	require.NoError(t, os.WriteFile(filepath.Join(tree, "boot", "vmlinuz-6.1.0-9-amd64"), k, 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(tree, "hello"), []byte("hello\n"), 0o644))
	dir := filepath.Join(t.TempDir(), "images")
	st, err := image.OpenStore(dir)
	require.NoError(t, err)
	res, err := st.Import(context.Background(), tree, name, image.BuildOptions{})
	require.NoError(t, err)
	return dir, res.Meta
}

var addrRe = regexp.MustCompile(`msg=listening addr=(\S+)`)

// start runs an example and returns its base URL once it listens.
func start(t *testing.T, bin string, args ...string) string {
	t.Helper()
	cmd := exec.Command(bin, args...)
	stderr, err := cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	var logs strings.Builder
	found := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			logs.WriteString(sc.Text() + "\n")
			if m := addrRe.FindStringSubmatch(sc.Text()); m != nil {
				found <- m[1]
			}
		}
	}()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			assert.NoError(t, err, "%s stops cleanly on SIGINT", filepath.Base(bin))
		case <-time.After(10 * time.Second):
			_ = cmd.Process.Kill()
			t.Errorf("%s did not stop", bin)
		}
		if t.Failed() {
			t.Logf("%s:\n%s", filepath.Base(bin), logs.String())
		}
	})
	select {
	case a := <-found:
		return "http://" + a
	case <-time.After(20 * time.Second):
		t.Fatalf("%s did not start", bin)
		return ""
	}
}

func get(t *testing.T, url string) (int, []byte) {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, b
}

func TestMinimal(t *testing.T) {
	bin := build(t, "minimal")
	store, meta := imageStore(t, "debian")
	base := start(t, bin, "-addr", "127.0.0.1:0", "-images", store, "-image", "debian")
	for _, mac := range []string{"52-54-00-00-00-01", "52:54:00:ab:cd:ef"} {
		code, script := get(t, base+"/ipxe/"+mac)
		require.Equal(t, http.StatusOK, code, "%s", script)
		assert.Contains(t, string(script), "image debian", "every machine boots the one image")
		code, img := get(t, base+"/image/"+mac)
		require.Equal(t, http.StatusOK, code)
		want, _ := os.ReadFile(meta.Path)
		assert.Equal(t, want, img)
		code, _ = get(t, base+"/kernel/"+mac)
		assert.Equal(t, http.StatusOK, code)
		code, body := get(t, base+"/overlay/system/"+mac)
		assert.Equal(t, http.StatusOK, code, "%s", body)
	}
}

func TestCSVInventory(t *testing.T) {
	bin := build(t, "csvinventory")
	store, meta := imageStore(t, "rocky9")
	csvFile := filepath.Join(t.TempDir(), "nodes.csv")
	require.NoError(t, os.WriteFile(csvFile, []byte("name,hwaddr,ipaddr,netmask,image,kernelargs\n"+
		"n1,52:54:00:00:00:01,10.0.0.11,255.255.255.0,rocky9,quiet console=ttyS0\n"+
		"n2,52:54:00:00:00:02,10.0.0.12,255.255.255.0,rocky9,quiet\n"), 0o644))
	base := start(t, bin, "-csv", csvFile, "-addr", "127.0.0.1:0", "-images", store)

	code, script := get(t, base+"/ipxe/52-54-00-00-00-01")
	require.Equal(t, http.StatusOK, code)
	assert.Contains(t, string(script), "booting n1")
	assert.Contains(t, string(script), "quiet console=ttyS0", "the node's kernel args from the CSV file")
	code, img := get(t, base+"/image/52:54:00:00:00:02")
	require.Equal(t, http.StatusOK, code)
	want, _ := os.ReadFile(meta.Path)
	assert.Equal(t, want, img)
	code, body := get(t, base+"/overlay/system/52:54:00:00:00:02")
	assert.Equal(t, http.StatusOK, code, "%s", body)

	code, script = get(t, base+"/ipxe/52-54-00-00-00-03")
	assert.Equal(t, http.StatusOK, code)
	assert.Contains(t, string(script), "not in the inventory")

	// A node added to the list is served without a restart.
	f, err := os.OpenFile(csvFile, os.O_APPEND|os.O_WRONLY, 0)
	require.NoError(t, err)
	_, err = f.WriteString("n3,52:54:00:00:00:03,10.0.0.13,255.255.255.0,rocky9,quiet\n")
	require.NoError(t, err)
	require.NoError(t, f.Close())
	future := time.Now().Add(2 * time.Second)
	require.NoError(t, os.Chtimes(csvFile, future, future))
	require.Eventually(t, func() bool {
		_, script := get(t, base+"/ipxe/52-54-00-00-00-03")
		return strings.Contains(string(script), "booting n3")
	}, 10*time.Second, 100*time.Millisecond)
}
