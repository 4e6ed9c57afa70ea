package main

import (
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// writeSiteOverlayFiles writes ROOT/overlays/NAME/rootfs/PATH files.
func writeSiteOverlayFiles(t *testing.T, root, name string, files map[string]string) {
	t.Helper()
	for p, text := range files {
		full := filepath.Join(root, "overlays", name, "rootfs", p)
		require.NoError(t, os.MkdirAll(filepath.Dir(full), 0o755))
		require.NoError(t, os.WriteFile(full, []byte(text), 0o644))
	}
}

// setConf replaces `key: ""` lines of ROOT/wwboot.conf.
func setConf(t *testing.T, root string, kv map[string]string) {
	t.Helper()
	p := filepath.Join(root, "wwboot.conf")
	data, err := os.ReadFile(p)
	require.NoError(t, err)
	s := string(data)
	for k, v := range kv {
		require.Contains(t, s, "\n"+k+": \"\"\n")
		s = strings.Replace(s, "\n"+k+": \"\"\n", "\n"+k+": \""+v+"\"\n", 1)
	}
	require.NoError(t, os.WriteFile(p, []byte(s), 0o644))
}

// TestOverlayShowRenderUnknownNodeIsTheServer: wwctl overlay show --render
// with a name not in nodes.conf renders for a node named after the server
// (Id and ClusterName the host name), with .BuildSource the template file.
func TestOverlayShowRenderUnknownNodeIsTheServer(t *testing.T) {
	root := t.TempDir()
	mustRun(t, root, "init")
	writeSiteOverlayFiles(t, root, "host", map[string]string{"etc/who.ww": "{{ .Id }} {{ .ClusterName }} {{ .BuildSource }}\n"})
	host, err := os.Hostname()
	require.NoError(t, err)
	out := mustRun(t, root, "overlay", "show", "host", "etc/who.ww", "--render", "not-a-node")
	assert.Equal(t, host+" "+host+" "+filepath.Join(root, "overlays", "host", "rootfs", "etc", "who.ww")+"\n", out)
}

// TestOverlayCommandsSeeImagesSysconfAndConf: IncludeFrom reads the
// image store in overlay show/render/files/build as in serve; Include
// reads below wwboot.conf's sysconfdir/warewulf; wwboot.conf's DHCP range
// reaches .Dhcp.
func TestOverlayCommandsSeeImagesSysconfAndConf(t *testing.T) {
	root := t.TempDir()
	mustRun(t, root, "init")
	withAgent(t, root)
	sys := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(sys, "warewulf"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(sys, "warewulf", "motd"), []byte("hello from sysconf\n"), 0o644))
	setConf(t, root, map[string]string{"sysconfdir": sys, "range start": "10.9.0.100", "range end": "10.9.0.199"})

	tree := filepath.Join(t.TempDir(), "tree")
	require.NoError(t, os.MkdirAll(filepath.Join(tree, "etc"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(tree, "etc", "os-release"), []byte("ID=rocky\nVERSION_ID=8.10\n"), 0o644))
	mustRun(t, root, "image", "import", tree, "rocky8:8.x")
	writeSiteOverlayFiles(t, root, "probe", map[string]string{"etc/probe.ww": `from=[{{ IncludeFrom .ImageName "/etc/os-release" }}]
inc=[{{ Include "motd" }}]
dhcp={{ .Dhcp.RangeStart }}-{{ .Dhcp.RangeEnd }} {{ .Dhcp.Template }} interval={{ .Warewulf.UpdateInterval }}
`})
	mustRun(t, root, "node", "add", "n1", "--image", "rocky8:8.x", "--system-overlays", "probe", "--runtime-overlays", "probe")
	want := "from=[ID=rocky\nVERSION_ID=8.10]\ninc=[hello from sysconf]\ndhcp=10.9.0.100-10.9.0.199 default interval=60\n"
	assert.Equal(t, want, mustRun(t, root, "overlay", "show", "probe", "etc/probe.ww", "--render", "n1"))

	out := filepath.Join(t.TempDir(), "sys.cpio.gz")
	mustRun(t, root, "overlay", "render", "n1", "--kind", "system", "-o", out)
	fi, err := os.Stat(out)
	require.NoError(t, err)
	assert.Positive(t, fi.Size())
	files := mustRun(t, root, "overlay", "files", "n1", "--kind", "system")
	found := false
	for _, line := range strings.Split(files, "\n") {
		if f := strings.Fields(line); len(f) == 4 && f[3] == "/etc/probe" {
			found = true
			assert.Equal(t, strconv.Itoa(len(want)), f[2], "the archive holds the file as show renders it")
		}
	}
	assert.True(t, found, files)
	mustRun(t, root, "overlay", "build", "n1")
}
