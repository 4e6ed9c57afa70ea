package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestImageImportSaysFileCapabilitiesAreKept: one line at import names the
// files whose capabilities were recorded for the node to restore.
func TestImageImportSaysFileCapabilitiesAreKept(t *testing.T) {
	if _, err := exec.LookPath("setcap"); err != nil || os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("needs root and setcap (libcap2-bin, see .ci/packages)")
		}
		t.Skip("needs root and setcap")
	}
	root := t.TempDir()
	tree := filepath.Join(t.TempDir(), "tree")
	require.NoError(t, os.MkdirAll(filepath.Join(tree, "usr/bin"), 0o755))
	ping := filepath.Join(tree, "usr/bin/ping")
	require.NoError(t, os.WriteFile(ping, []byte("#!/bin/sh\n"), 0o755))
	out, err := exec.Command("setcap", "cap_net_raw+ep", ping).CombinedOutput()
	require.NoError(t, err, "%s", out)
	got, err := runImage(t, root, "image", "import", tree, "caps")
	require.NoError(t, err)
	assert.Contains(t, got, "caps: file capabilities of 1 files (/usr/bin/ping) recorded in /etc/wwboot/xattrs; the wwinit overlay restores them at boot")
}
