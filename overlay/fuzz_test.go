package overlay

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"github.com/wwboot/wwboot/nodedb"
)

// FuzzRender renders every built-in overlay and a template that names
// files after node data, for a node with hostile fields (newlines, "{{",
// "/", ".." in names and values; the node is built directly, bypassing the
// inventory's validation). It must not panic, every archive path must stay
// inside the archive root, and nothing may be written outside KeyDir.
func FuzzRender(f *testing.F) {
	f.Add("n1", "eth0", "eth0", "value", "file", "c1", "/sbin/init")
	f.Add("../../etc", "../x", "eth0\nauto evil", "{{ .Id }}", "../../../etc/passwd", "..", "/sbin/init'\n")
	f.Add("a/b", "/", "{{", "}}", "/abs/path", "x/../../y", "$(reboot)")
	f.Add(".", "..", "", "\x00", "..", "../..", "")
	f.Add("node\n", "net\ndev", "dev ice", "line1\nline2", "sub/dir/file", "c\n1", "/init")
	site, err := filepath.Abs("testdata/fuzzsite")
	require.NoError(f, err)
	// Keys for new node names are fsynced; on tmpfs that costs nothing, so
	// the fuzzer explores inputs rather than waiting for the disk.
	base := f.TempDir()
	if shm, err := os.MkdirTemp("/dev/shm", "wwboot-fuzz-"); err == nil {
		f.Cleanup(func() { os.RemoveAll(shm) })
		base = shm
	}
	keyDir := filepath.Join(base, "keys")
	require.NoError(f, os.Mkdir(keyDir, 0o700))
	all := append(BuiltinNames(), "hostile")
	r, err := New(Options{SiteDir: site, KeyDir: keyDir, Server: testServer(), Now: fixedNow, DefaultSystem: all, DefaultRuntime: all, RSABits: 1024})
	require.NoError(f, err)
	f.Fuzz(func(t *testing.T, id, netName, device, value, fileName, cluster, init string) {
		n := &nodedb.Node{ID: id, Primary: netName}
		n.ClusterName, n.Init, n.ImageName = cluster, init, value
		n.Tags = map[string]string{"v": value, "f": fileName, "DNS1": value, "DNSSEARCH": value}
		n.NetDevs = map[string]*nodedb.NetDev{netName: {Device: device, Hwaddr: value, Ipaddr: value, Tags: map[string]string{"v": value, "DNS": value}}}
		n.Resources = map[string]any{"fstab": []any{map[string]any{"spec": value, "file": fileName}}}
		for _, k := range []Kind{System, Runtime} {
			a, err := r.Render(context.Background(), nil, n, k)
			if err != nil {
				var te *TemplateError
				if !errors.As(err, &te) && !strings.Contains(err.Error(), "ssh host key") && !strings.Contains(err.Error(), "machine-id") {
					t.Fatalf("unexpected error kind: %v", err)
				}
				continue
			}
			m, order := unpack(t, a)
			for _, p := range order {
				if p == "" || strings.HasPrefix(p, "/") || strings.ContainsRune(p, 0) || p != filepath.Clean(p) {
					t.Fatalf("archive path %q is not clean", p)
				}
				for _, el := range strings.Split(p, "/") {
					if el == ".." {
						t.Fatalf("archive path %q leaves the root", p)
					}
				}
			}
			_ = m
		}
		// Nothing outside KeyDir, and below it only nodes/<one element>/.
		ents, err := os.ReadDir(base)
		require.NoError(t, err)
		for _, e := range ents {
			require.Equal(t, "keys", e.Name(), "file created outside KeyDir")
		}
		err = filepath.WalkDir(keyDir, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(keyDir, p)
			parts := strings.Split(rel, string(filepath.Separator))
			if rel != "." && rel != ".lock" && parts[0] != "nodes" && parts[0] != ".tmp" && parts[0] != ".old" || len(parts) > 3 {
				t.Fatalf("key file in the wrong place: %s", rel)
			}
			return nil
		})
		require.NoError(t, err)
	})
}
