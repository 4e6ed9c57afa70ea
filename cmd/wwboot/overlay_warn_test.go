package main

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
)

// Right after `wwboot init` wwboot.conf names no address; a preview then
// differs from what `wwboot serve` sends, and says so.
func TestOverlayPreviewWarnsWithoutServerAddress(t *testing.T) {
	root := t.TempDir()
	mustRun(t, root, "init")
	mustRun(t, root, "node", "add", "n1", "--hwaddr", "52:54:00:00:00:01", "--ipaddr", "10.0.0.11", "--netmask", "255.255.255.0")

	out := mustRun(t, root, "overlay", "render", "n1", "--kind", "runtime", "-o", filepath.Join(t.TempDir(), "rt"))
	assert.Contains(t, out, "warning: the server's address is unknown")
	out = mustRun(t, root, "overlay", "files", "n1", "--kind", "runtime")
	assert.Contains(t, out, "warning: the server's address is unknown")

	out = mustRun(t, root, "overlay", "files", "n1", "--kind", "runtime", "--server-ipaddr", "10.0.0.1")
	assert.NotContains(t, out, "warning")
	// Printing one file (show --render) stays clean for pipes and diffs;
	// listing an overlay renders nothing.
	out = mustRun(t, root, "overlay", "show", "wwinit", "/etc/wwboot/node.conf.ww", "--render", "n1")
	assert.NotContains(t, out, "warning")
	assert.Contains(t, out, "WWBOOT_SERVER=''")
	assert.NotContains(t, mustRun(t, root, "overlay", "show", "wwinit"), "warning")
}
