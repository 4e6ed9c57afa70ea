package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestNodeCheck: check lists every finding with file:line, node and field
// and exits non-zero (the real binary's exit status); a clean file passes.
// The server side still loads the same file.
func TestNodeCheck(t *testing.T) {
	root := t.TempDir()
	mustRun(t, root, "init")
	out := mustRun(t, root, "node", "check")
	assert.Contains(t, out, "nothing to fix")

	conf := filepath.Join(t.TempDir(), "site.conf")
	require.NoError(t, os.WriteFile(conf, []byte(`nodeprofiles:
  default: {}
nodes:
  n1:
    profiles: [default, gone]
    network devices:
      eth0: {hwaddr: "aa:bb:cc:00:00:01", primary: "true"}
  n2:
    network devices:
      eth0: {hwaddr: "aa:bb:cc:00:00:01"}
`), 0o644))
	bin, err := buildBinary()
	require.NoError(t, err)
	cmd := exec.Command(bin, "--root", root, "node", "check", "--file", conf)
	outb, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	require.ErrorAs(t, err, &ee, "check must fail on findings:\n%s", outb)
	assert.Equal(t, 1, ee.ExitCode())
	text := string(outb)
	for _, want := range []string{
		conf + `:7: node "n1": network devices.eth0.primary: unknown key "primary"`,
		conf + `:5: node "n1": profiles: unknown profile "gone"`,
		conf + `:10: node "n2": network devices.eth0.hwaddr: aa:bb:cc:00:00:01 is also the address of node "n1"`,
		"3 finding(s)",
	} {
		assert.Contains(t, text, want)
	}
	lines := 0
	for _, l := range strings.Split(text, "\n") {
		if strings.HasPrefix(l, conf+":") {
			lines++
		}
	}
	assert.Equal(t, 3, lines, "one line per finding:\n%s", text)

	// The same file in ROOT loads for the other commands.
	data, _ := os.ReadFile(conf)
	require.NoError(t, os.WriteFile(filepath.Join(root, "nodes.conf"), data, 0o640))
	out = mustRun(t, root, "node", "list")
	assert.Contains(t, out, "n1")
	assert.Contains(t, out, "n2")
}

// A --file that does not exist is named as such, not as an inventory to
// create with init under --root.
func TestNodeCheckMissingFile(t *testing.T) {
	root := t.TempDir()
	missing := filepath.Join(t.TempDir(), "nodes.conf")
	_, err := run(t, root, "node", "check", "--file", missing)
	require.Error(t, err)
	assert.Equal(t, "node check --file: stat "+missing+": no such file or directory", err.Error())
}

// TestNodeCheckKernelVersion: node check names a node whose kernel version
// selects no kernel of its image, by Warewulf's prefix rule ("6.1" selects
// 6.1.0-25-amd64, "6.2" does not).
func TestNodeCheckKernelVersion(t *testing.T) {
	root := t.TempDir()
	mustRun(t, root, "init")
	tree := filepath.Join(t.TempDir(), "tree")
	require.NoError(t, os.MkdirAll(filepath.Join(tree, "boot"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(tree, "boot", "vmlinuz-6.1.0-25-amd64"), []byte("kernel"), 0o644))
	mustRun(t, root, "image", "import", tree, "deb12")
	conf := `nodeprofiles:
  default: {}
nodes:
  ok1: {image name: deb12, kernel: {version: "6.1"}}
  ok2: {image name: deb12, kernel: {version: 6.1.0-25-amd64}}
  ok3: {image name: deb12, kernel: {version: /boot/vmlinuz-6.1.0-25-amd64}}
  bad: {image name: deb12, kernel: {version: "6.2"}}
  other: {image name: notimported, kernel: {version: "6.2"}}
`
	require.NoError(t, os.WriteFile(filepath.Join(root, "nodes.conf"), []byte(conf), 0o644))
	out, err := run(t, root, "node", "check")
	require.Error(t, err)
	assert.Contains(t, out, `node bad: kernel version "6.2" selects no kernel of image deb12, which has 6.1.0-25-amd64`)
	for _, n := range []string{"ok1", "ok2", "ok3", "other"} {
		assert.NotContains(t, out, "node "+n+":")
	}
	assert.ErrorContains(t, err, "1 finding(s)")

	// A CI checking a file against no ROOT compares nothing and creates
	// nothing there.
	noRoot := filepath.Join(t.TempDir(), "absent")
	_, err = run(t, noRoot, "node", "check", "--file", filepath.Join(root, "nodes.conf"))
	require.NoError(t, err)
	assert.NoDirExists(t, noRoot)
}
