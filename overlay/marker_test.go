package overlay

import (
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wwboot/wwboot/nodedb"
)

// markerSite writes site overlays: "plain" (a static file), "pernode" (a
// per-node template at the same path, which forces the slow path) and
// "fake" (a static file at the marker's path, which must be dropped).
// pernode's template writes etc/motd through Warewulf's file function, so
// the layout cannot see the conflict: the renderer takes the slow path.
func markerSite(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	files := map[string]string{
		"plain/rootfs/etc/motd":                            "static\n",
		"pernode/rootfs/etc/issue.ww":                      "{{ file \"motd\" }}node {{ .Id }}\n",
		"fake/rootfs/etc/wwboot/system-overlay.done":       "WWBOOT_MARK_NODE=forged\n",
		"fake/rootfs/usr/share/doc/fake/README":            "fake\n",
		"pernode/rootfs/etc/wwboot/system-overlay.done.ww": "WWBOOT_MARK_NODE={{ .Id }}-forged\n",
	}
	for p, data := range files {
		full := filepath.Join(dir, p)
		require.NoError(t, os.MkdirAll(filepath.Dir(full), 0o755))
		require.NoError(t, os.WriteFile(full, []byte(data), 0o644))
	}
	return dir
}

// TestSystemOverlayEndsWithMarker checks, with u-root's reader and with GNU
// cpio, that the end marker is the last record of every system overlay
// (fast path, slow path, site files at the marker's path) and that its
// record count and MACs are right; runtime overlays carry none.
func TestSystemOverlayEndsWithMarker(t *testing.T) {
	db := testDB(t, goldenConfig())
	n, err := db.Node("n00002")
	require.NoError(t, err)
	cases := map[string][]string{
		"builtin fast path":       {"wwinit", "hostname", "fstab"},
		"slow path (conflict)":    {"wwinit", "plain", "pernode"},
		"site file at the marker": {"wwinit", "fake", "hostname"},
		"only the marker":         {"plain"},
	}
	for name, list := range cases {
		t.Run(name, func(t *testing.T) {
			r := newTestRenderer(t, func(o *Options) {
				o.SiteDir = markerSite(t)
				o.DefaultSystem = list
			})
			a, err := r.Render(context.Background(), db, n, System)
			require.NoError(t, err)
			m, order := unpack(t, a)
			require.NotEmpty(t, order)
			assert.Equal(t, MarkerPath, order[len(order)-1], "marker is the last record")
			e := m[MarkerPath]
			assert.Equal(t, uint64(sIFREG|0o644), e.mode)
			assert.Contains(t, e.data, "WWBOOT_MARK_NODE='n00002'\n")
			// n00002 has two netdevs; the infiniband one has no hwaddr.
			assert.Contains(t, e.data, "WWBOOT_MARK_HWADDRS='52:54:00:00:00:02'\n")
			assert.Contains(t, e.data, "WWBOOT_MARK_FILES="+strconv.Itoa(len(order)-1)+"\n")
			assert.NotContains(t, e.data, "forged")
			if strings.Contains(name, "slow") || strings.Contains(name, "site file") {
				assert.Positive(t, r.Stats().Fallbacks, "the case meant to take the slow path did not")
			} else {
				assert.Zero(t, r.Stats().Fallbacks)
			}

			// GNU cpio reads the same order (it lists the whole stream; the
			// archive is one gzip stream of several members).
			if _, err := exec.LookPath("cpio"); err != nil {
				t.Skip("GNU cpio not installed")
			}
			zr, err := gzip.NewReader(a.NewReader())
			require.NoError(t, err)
			raw, err := io.ReadAll(zr)
			require.NoError(t, err)
			cmd := exec.Command("cpio", "-it", "--quiet")
			cmd.Stdin = bytes.NewReader(raw)
			out, err := cmd.Output()
			require.NoError(t, err)
			names := strings.Split(strings.TrimSpace(string(out)), "\n")
			assert.Equal(t, order, names)
			assert.Equal(t, MarkerPath, names[len(names)-1])
		})
	}
	t.Run("runtime has none", func(t *testing.T) {
		r := newTestRenderer(t, nil)
		a, err := r.Render(context.Background(), db, n, Runtime)
		require.NoError(t, err)
		m, _ := unpack(t, a)
		assert.NotContains(t, m, MarkerPath)
	})
}

// TestMarkerHwaddrs checks the marker lists every netdev's MAC, lower
// case, sorted and once, and quotes what it writes (it is sourced by /init).
func TestMarkerHwaddrs(t *testing.T) {
	n := &nodedb.Node{ID: "n1", Record: nodedb.Record{NetDevs: map[string]*nodedb.NetDev{
		"a": {Hwaddr: "52:54:00:00:00:0B"},
		"b": {Hwaddr: "52:54:00:00:00:0a"},
		"c": {Hwaddr: "52:54:00:00:00:0b"},
		"d": {},
		"e": nil,
	}}}
	got := string(markerData(n, 7))
	assert.Contains(t, got, "WWBOOT_MARK_HWADDRS='52:54:00:00:00:0a 52:54:00:00:00:0b'\n")
	assert.Contains(t, got, "WWBOOT_MARK_FILES=7\n")

	n = &nodedb.Node{ID: "x'$(reboot)\nWWBOOT_MARK_NODE=y", Record: nodedb.Record{NetDevs: map[string]*nodedb.NetDev{"a": {Hwaddr: "';reboot;'"}}}}
	out, err := exec.Command("sh", "-c", string(markerData(n, 1))+`
printf '%s|%s|%s' "$WWBOOT_MARK_NODE" "$WWBOOT_MARK_HWADDRS" "$WWBOOT_MARK_FILES"`).CombinedOutput()
	require.NoError(t, err, "%s", out)
	assert.Equal(t, n.ID+"|';reboot;'|1", string(out))
}
