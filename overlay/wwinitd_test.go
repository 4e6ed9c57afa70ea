package overlay

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestInitRunsWarewulfHooks: /init runs every file of /warewulf/wwinit.d
// (where the sfdisk, mkfs, mkswap and ignition overlays put their scripts)
// with sh, in order, as Warewulf's run-wwinit.d does, files without the
// executable bit included; a failing one is reported and the boot goes on.
func TestInitRunsWarewulfHooks(t *testing.T) {
	ir := newInitRoot(t, "n00002", "initramfs", nil)
	hooks := filepath.Join(ir.dir, "warewulf", "wwinit.d")
	require.NoError(t, os.MkdirAll(hooks, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(hooks, "10-first.sh"), []byte("echo \"hook: first prefix=[$PREFIX]\"\n"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(hooks, "20-fails.sh"), []byte("echo hook: second\nexit 3\n"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(hooks, "30-third.sh"), []byte("echo hook: third\n"), 0o644))
	out, _ := ir.run(t, "", "52:54:00:00:00:02", "quiet wwid=52:54:00:00:00:02", "probe: done")
	assert.Contains(t, out, "wwboot: running /warewulf/wwinit.d/10-first.sh\nhook: first prefix=[]\nwwboot: running /warewulf/wwinit.d/20-fails.sh\nhook: second\n")
	assert.Contains(t, out, "wwboot: hook /warewulf/wwinit.d/20-fails.sh failed (3), continuing\n")
	assert.Contains(t, out, "hook: third\n")
	assert.Contains(t, out, "probe: pid 1 hostname n00002", "the boot went on")
}
