package overlay

import (
	"bytes"
	"compress/gzip"
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"github.com/u-root/u-root/pkg/cpio"

	"github.com/wwboot/wwboot/nodedb"
)

// fixedNow pins BuildTime for golden files.
func fixedNow() time.Time { return time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC) }

// testServer is the server the tests render for.
func testServer() ServerInfo {
	return ServerInfo{Ipaddr: "10.0.0.1", Netmask: "255.255.0.0", BuildHost: "head", Resolv: ResolvConf{Nameservers: []string{"10.0.0.1"}, Search: []string{"cluster.test"}}}
}

// testConfig is a small inventory: n nodes in profile default.
func testConfig(n int) *nodedb.Config {
	cfg := &nodedb.Config{
		NodeProfiles: map[string]*nodedb.Record{"default": {
			ClusterName: "c1", ImageName: "rocky9", Init: "/sbin/init", Root: "initramfs",
			Kernel: &nodedb.Kernel{Args: []string{"quiet", "crashkernel=no"}},
			Tags:   map[string]string{"DNSSEARCH": "cluster.test"},
		}},
		Nodes: map[string]*nodedb.Record{},
	}
	for i := 1; i <= n; i++ {
		cfg.Nodes[fmt.Sprintf("n%05d", i)] = &nodedb.Record{
			Profiles: []string{"default"},
			NetDevs: map[string]*nodedb.NetDev{"default": {
				Device: "eth0", Hwaddr: fmt.Sprintf("52:54:00:%02x:%02x:%02x", i>>16&0xff, i>>8&0xff, i&0xff),
				Ipaddr: fmt.Sprintf("10.0.%d.%d", i/250, i%250+1), Netmask: "255.255.0.0", Gateway: "10.0.0.1",
			}},
			Resources: map[string]any{"fstab": []any{
				map[string]any{"spec": "10.0.0.1:/home", "file": "/home", "vfstype": "nfs", "mntops": "defaults,nofail"},
			}},
		}
	}
	return cfg
}

func testDB(t testing.TB, cfg *nodedb.Config) *nodedb.DB {
	t.Helper()
	st, err := nodedb.NewMemoryStore(cfg)
	require.NoError(t, err)
	db, err := st.Snapshot(context.Background())
	require.NoError(t, err)
	return db
}

func newTestRenderer(t testing.TB, mod func(*Options)) *Renderer {
	t.Helper()
	o := Options{Server: testServer(), KeyDir: t.TempDir(), Now: fixedNow, RSABits: 1024}
	if mod != nil {
		mod(&o)
	}
	r, err := New(o)
	require.NoError(t, err)
	return r
}

// unpack reads an archive with Go's gzip (multi-member) and u-root's cpio
// reader and returns path → record.
type entry struct {
	mode     uint64
	uid, gid uint64
	data     string
}

func unpack(t testing.TB, a *Archive) (map[string]entry, []string) {
	t.Helper()
	require.Zero(t, a.Size()%4, "archive not padded to 4 bytes")
	zr, err := gzip.NewReader(a.NewReader())
	require.NoError(t, err)
	raw, err := io.ReadAll(zr)
	require.NoError(t, err)
	rr := cpio.Newc.Reader(bytes.NewReader(raw))
	out := map[string]entry{}
	var order []string
	for {
		rec, err := rr.ReadRecord()
		if err == io.EOF {
			break
		}
		require.NoError(t, err)
		var data []byte
		if rec.ReaderAt != nil {
			data, err = io.ReadAll(io.NewSectionReader(rec.ReaderAt, 0, int64(rec.FileSize)))
			require.NoError(t, err)
		}
		_, dup := out[rec.Name]
		require.False(t, dup, "duplicate path %s", rec.Name)
		out[rec.Name] = entry{mode: rec.Mode, uid: rec.UID, gid: rec.GID, data: string(data)}
		order = append(order, rec.Name)
	}
	return out, order
}

// openTempDir is t.TempDir opened to others (its parent is 0700),
// for files a template includes that must not count as hidden (hiddenIn).
func openTempDir(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	require.NoError(t, os.Chmod(filepath.Dir(dir), 0o755))
	require.NoError(t, os.Chmod(dir, 0o755))
	return dir
}
