package provision_test

import (
	"context"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wwboot/wwboot/provision"
	"github.com/wwboot/wwboot/provision/netlab"
)

// TestServerLoopback runs HTTP and TFTP on loopback: curl fetches a script
// and atftp an iPXE binary; then the context ends while a download is under
// way, and Serve returns only once it has finished.
func TestServerLoopback(t *testing.T) {
	netlab.RequireTools(t, "curl", "atftp")
	l := newLab(t)
	started := make(chan struct{}, 1)
	srv, err := provision.NewServer(provision.ServerConfig{
		Options:  l.options(t),
		HTTPAddr: "127.0.0.1:0",
		TFTP:     true,
		TFTPAddr: "127.0.0.1:0",
		Middleware: func(next http.Handler) http.Handler {
			return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Query().Has("slow") {
					started <- struct{}{}
					time.Sleep(500 * time.Millisecond)
				}
				next.ServeHTTP(w, r)
			})
		},
		DrainTimeout: 10 * time.Second,
	})
	require.NoError(t, err)
	require.NoError(t, srv.Listen())
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	base := "http://" + srv.HTTPAddr().String()

	out, err := exec.Command("curl", "-sSf", base+"/ipxe/"+strings.ReplaceAll(mac1, ":", "-")).CombinedOutput()
	require.NoError(t, err, "%s", out)
	assert.Contains(t, string(out), "kernel --name kernel "+base+"/kernel/"+mac1)

	_, port, _ := net.SplitHostPort(srv.TFTPAddr().String())
	dst := filepath.Join(t.TempDir(), "undionly.kpxe")
	out, err = exec.Command("atftp", "--get", "-r", "undionly.kpxe", "-l", dst, "127.0.0.1", port).CombinedOutput()
	require.NoError(t, err, "%s", out)
	got, err := os.ReadFile(dst)
	require.NoError(t, err)
	want, err := os.ReadFile(filepath.Join(l.bootDir, "undionly.kpxe"))
	require.NoError(t, err)
	assert.Equal(t, want, got, "atftp gets the iPXE binary")

	// Drain: stop while a download is under way.
	img, err := os.ReadFile(l.meta.Path)
	require.NoError(t, err)
	type result struct {
		body []byte
		err  error
	}
	res := make(chan result, 1)
	go func() {
		resp, err := http.Get(base + "/image/" + mac1 + "?slow=1")
		if err != nil {
			res <- result{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		res <- result{b, err}
	}()
	<-started
	cancel()
	select {
	case err := <-done:
		t.Fatalf("Serve returned (%v) before the transfer under way finished", err)
	case <-time.After(100 * time.Millisecond):
	}
	r := <-res
	require.NoError(t, r.err)
	assert.Equal(t, img, r.body, "the transfer under way finished intact")
	select {
	case err := <-done:
		assert.NoError(t, err)
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return after draining")
	}
	_, err = http.Get(base + "/healthz")
	assert.Error(t, err, "nothing listens after Serve returned")
}

func TestServerShutdown(t *testing.T) {
	l := newLab(t)
	srv, err := provision.NewServer(provision.ServerConfig{Options: l.options(t), HTTPAddr: "127.0.0.1:0"})
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() { done <- srv.Serve(context.Background()) }()
	require.Eventually(t, func() bool { return srv.HTTPAddr() != nil }, 5*time.Second, 10*time.Millisecond)
	require.Eventually(t, func() bool {
		resp, err := http.Get("http://" + srv.HTTPAddr().String() + "/healthz")
		if err == nil {
			resp.Body.Close()
		}
		return err == nil
	}, 5*time.Second, 10*time.Millisecond)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	require.NoError(t, srv.Shutdown(ctx))
	assert.NoError(t, <-done)
	assert.NoError(t, srv.Shutdown(ctx), "a second Shutdown is harmless")
}

func TestServerConfigErrors(t *testing.T) {
	l := newLab(t)
	_, err := provision.NewServer(provision.ServerConfig{Options: l.options(t), DHCP: provision.DHCPFull})
	assert.ErrorContains(t, err, "interface")
	_, err = provision.NewServer(provision.ServerConfig{Options: l.options(t), DHCP: "half"})
	assert.ErrorContains(t, err, "full, proxy or off")
	_, err = provision.NewServer(provision.ServerConfig{Options: provision.Options{Images: l.images}})
	assert.ErrorContains(t, err, "Inventory")
}
