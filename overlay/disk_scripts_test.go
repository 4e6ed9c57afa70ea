package overlay

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestDiskScriptsRun runs the mkfs and mkswap overlays' scripts with sh on
// disk image files: they create the file system and the swap area, leave
// them alone the second time, and format again only with wipe_filesystem.
func TestDiskScriptsRun(t *testing.T) {
	for _, tool := range []string{"mkfs", "mkfs.ext4", "mkswap", "wipefs", "blkid"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s is not installed", tool)
		}
	}
	dir := t.TempDir()
	disk, swap := filepath.Join(dir, "scratch.img"), filepath.Join(dir, "swap.img")
	for _, p := range []string{disk, swap} {
		require.NoError(t, os.WriteFile(p, nil, 0o600))
		require.NoError(t, os.Truncate(p, 8<<20))
	}
	conf := func(wipe bool) string {
		return fmt.Sprintf(`nodes:
  n1:
    filesystems:
      %s:
        format: ext4
        path: /scratch
        label: scratch
        wipe_filesystem: %t
      %s:
        format: swap
        path: swap
`, disk, wipe, swap)
	}
	run := func(overlayName, file, conf string) string {
		t.Helper()
		m := renderWW(t, conf, overlayName, nil)
		script := filepath.Join(dir, overlayName+".sh")
		require.NoError(t, os.WriteFile(script, []byte(m[file].data), 0o755))
		out, err := exec.Command("sh", script).CombinedOutput()
		require.NoError(t, err, string(out))
		return string(out)
	}
	blkid := func(p, tag string) string {
		out, err := exec.Command("blkid", "-p", "-o", "value", "-s", tag, p).Output()
		require.NoError(t, err, p)
		return strings.TrimSpace(string(out))
	}

	out := run("mkfs", "warewulf/wwinit.d/20-mkfs.sh", conf(false))
	assert.Contains(t, out, "creating ext4 on "+disk)
	assert.Equal(t, "ext4", blkid(disk, "TYPE"))
	assert.Equal(t, "scratch", blkid(disk, "LABEL"))
	uuid := blkid(disk, "UUID")
	out = run("mkswap", "warewulf/wwinit.d/20-mkswap.sh", conf(false))
	assert.Contains(t, out, "making swap on "+swap)
	assert.Equal(t, "swap", blkid(swap, "TYPE"))

	// Formatted already: left alone, the data kept.
	out = run("mkfs", "warewulf/wwinit.d/20-mkfs.sh", conf(false))
	assert.Contains(t, out, disk+" is formatted already, left alone")
	assert.Equal(t, uuid, blkid(disk, "UUID"))
	out = run("mkswap", "warewulf/wwinit.d/20-mkswap.sh", conf(false))
	assert.Contains(t, out, "formatted already")

	// wipe_filesystem: true formats every boot.
	run("mkfs", "warewulf/wwinit.d/20-mkfs.sh", conf(true))
	assert.NotEqual(t, uuid, blkid(disk, "UUID"))
}
