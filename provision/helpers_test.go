package provision_test

import (
	"context"
	"crypto/rand"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/wwboot/wwboot/image"
	"github.com/wwboot/wwboot/nodedb"
	"github.com/wwboot/wwboot/overlay"
	"github.com/wwboot/wwboot/provision"
)

// Test nodes: n1 on loopback 127.0.0.1, n2 on 127.0.0.2 with an asset key.
const (
	mac1  = "aa:bb:cc:dd:ee:01"
	mac2  = "aa:bb:cc:dd:ee:02"
	ip1   = "127.0.0.1"
	ip2   = "127.0.0.2"
	asset = "asset-tag-42"
	// outsideSecret is written next to (outside) every served tree; no
	// response may ever contain it.
	outsideSecret = "OUTSIDE-THE-SERVED-TREES-7f3a"
)

// lab is a provisioning setup on disk: an inventory file, an image store
// holding image "img" with a kernel, overlays and an iPXE boot tree.
type lab struct {
	root     string
	store    *nodedb.FileStore
	images   *image.Store
	meta     image.Meta
	overlays *overlay.Renderer
	bootDir  string
	reg      *prometheus.Registry
}

func defaultProfile() *nodedb.Record {
	return &nodedb.Record{
		SystemOverlay:  []string{"wwinit", "hostname", "fstab", "resolv"},
		RuntimeOverlay: []string{"hosts", "ssh.authorized_keys", "ssh.host_keys"},
		Kernel:         &nodedb.Kernel{Args: []string{"quiet", "crashkernel=no"}},
		Init:           "/sbin/init",
		Root:           "initramfs",
	}
}

func newLab(t testing.TB) *lab {
	t.Helper()
	ctx := context.Background()
	root := t.TempDir()
	l := &lab{root: root, reg: prometheus.NewRegistry()}
	require.NoError(t, os.WriteFile(filepath.Join(root, "secret.txt"), []byte(outsideSecret), 0o644))

	// An image tree: a fake kernel and some random content.
	tree := filepath.Join(root, "tree")
	require.NoError(t, os.MkdirAll(filepath.Join(tree, "boot"), 0o755))
	require.NoError(t, os.MkdirAll(filepath.Join(tree, "bin"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(tree, "boot", "vmlinuz-6.1.0-1-amd64"), randBytes(t, 300<<10), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(tree, "bin", "payload"), randBytes(t, 1<<20), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(tree, "secret.txt"), []byte("inside the image is fine"), 0o644))
	var err error
	l.images, err = image.OpenStore(filepath.Join(root, "images"))
	require.NoError(t, err)
	res, err := l.images.Import(ctx, tree, "img", image.BuildOptions{})
	require.NoError(t, err)
	l.meta = res.Meta
	require.NotEmpty(t, l.meta.KernelPath)

	cfg := &nodedb.Config{
		NodeProfiles: map[string]*nodedb.Record{"default": defaultProfile()},
		Nodes: map[string]*nodedb.Record{
			"n1": {Profiles: []string{"default"}, ImageName: "img", NetDevs: map[string]*nodedb.NetDev{
				"default": {Hwaddr: mac1, Ipaddr: ip1, Netmask: "255.0.0.0"}}},
			"n2": {Profiles: []string{"default"}, ImageName: "img", AssetKey: asset, NetDevs: map[string]*nodedb.NetDev{
				"default": {Hwaddr: mac2, Ipaddr: ip2, Netmask: "255.0.0.0"}}},
		},
	}
	l.store, err = nodedb.Create(ctx, filepath.Join(root, "nodes.conf"), cfg, nodedb.CheckInterval(0))
	require.NoError(t, err)

	l.overlays, err = overlay.New(overlay.Options{
		KeyDir: filepath.Join(root, "keys"),
		Server: overlay.ServerInfo{Ipaddr: "127.0.0.1", Netmask: "255.0.0.0", Ssh: overlay.SSHConf{KeyTypes: []string{"ed25519"}}},
	})
	require.NoError(t, err)

	l.bootDir = filepath.Join(root, "tftp")
	require.NoError(t, os.MkdirAll(l.bootDir, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(l.bootDir, "undionly.kpxe"), randBytes(t, 70<<10), 0o644))
	require.NoError(t, os.Symlink("../secret.txt", filepath.Join(l.bootDir, "escape")))
	return l
}

func randBytes(t testing.TB, n int) []byte {
	b := make([]byte, n)
	_, err := rand.Read(b)
	require.NoError(t, err)
	return b
}

// options are the handler options of the lab.
func (l *lab) options(t testing.TB) provision.Options {
	rt, err := os.OpenRoot(l.bootDir)
	require.NoError(t, err)
	t.Cleanup(func() { rt.Close() })
	return provision.Options{
		Inventory: l.store, Images: l.images, Overlays: l.overlays, BootFS: rt.FS(),
		Registry: l.reg, RetryMax: 3, RetryDelay: 1, UnknownWait: 2e9,
	}
}

// serve runs a handler for the lab on a loopback port.
func (l *lab) serve(t testing.TB) (*provision.Handler, *httptest.Server) {
	t.Helper()
	h, err := provision.NewHandler(l.options(t))
	require.NoError(t, err)
	ts := httptest.NewServer(h)
	t.Cleanup(ts.Close)
	return h, ts
}

func get(t testing.TB, url string, hdr ...string) (*http.Response, []byte) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	require.NoError(t, err)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	var buf []byte
	buf, err = io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp, buf
}
