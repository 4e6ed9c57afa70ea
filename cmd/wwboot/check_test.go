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
  default: {system overlay: [wwinit, hostname]}
nodes:
  n1:
    profiles: [default, gone]
    network devices:
      eth0: {hwaddr: "aa:bb:cc:00:00:01", primary: "true"}
  n2:
    network devices:
      eth0: {hwaddr: "aa:bb:cc:00:00:01"}
    system overlay: [wwinit]
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
  default: {system overlay: [wwinit, hostname]}
nodes:
  ok1: {profiles: [default], image name: deb12, kernel: {version: "6.1"}}
  ok2: {profiles: [default], image name: deb12, kernel: {version: 6.1.0-25-amd64}}
  ok3: {profiles: [default], image name: deb12, kernel: {version: /boot/vmlinuz-6.1.0-25-amd64}}
  bad: {profiles: [default], image name: deb12, kernel: {version: "6.2"}}
  other: {profiles: [default], image name: notimported, kernel: {version: "6.2"}}
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

// checkExit runs the real binary's node check and returns its output and
// exit status.
func checkExit(t *testing.T, root string, args ...string) (string, int) {
	t.Helper()
	bin, err := buildBinary()
	require.NoError(t, err)
	out, err := exec.Command(bin, append([]string{"--root", root, "node", "check"}, args...)...).CombinedOutput()
	if err == nil {
		return string(out), 0
	}
	var ee *exec.ExitError
	require.ErrorAs(t, err, &ee, "%s", out)
	return string(out), ee.ExitCode()
}

// TestNodeCheckSystemSecrets: node check names the nodes whose system
// overlay the server refuses because it carries private files, with the
// overlays, the files and what to do, and fails: an imported Warewulf
// nodes.conf (ssh.host_keys in the system overlays), a site overlay with a
// template naming .Ipmi.Password, one including a 0600 server file and a
// 0600 static file. It renders nothing (no host key is made), and says
// nothing once wwboot.conf accepts such overlays.
func TestNodeCheckSystemSecrets(t *testing.T) {
	root := t.TempDir()
	mustRun(t, root, "init")
	out, code := checkExit(t, root)
	require.Equal(t, 0, code, "wwboot's default profile keeps secrets in the runtime overlays:\n%s", out)
	assert.Contains(t, out, "nothing to fix")

	ww := filepath.Join(t.TempDir(), "nodes.conf")
	require.NoError(t, os.WriteFile(ww, []byte(wwNodesConf), 0o644))
	out, code = checkExit(t, root, "--file", ww)
	assert.Equal(t, 1, code, out)
	assert.Contains(t, out, "node(s) n[1-2]: system overlay ssh.host_keys carries private files")
	assert.Contains(t, out, "ssh.host_keys: /etc/ssh/ssh_host_ed25519_key (its template calls SSHHostKey")
	assert.Contains(t, out, "move it to the runtime overlays")
	assert.Contains(t, out, "'system overlay secrets: true' in "+filepath.Join(root, "wwboot.conf"))
	assert.NotContains(t, out, "wwclient:", "wwclient (the CA certificate, public) carries nothing private")
	assert.NotContains(t, out, "nothing to fix")
	assert.NoDirExists(t, filepath.Join(root, "keys", "nodes", "n1"), "node check renders nothing: no host key made")
	assert.NoDirExists(t, filepath.Join(root, "keys", "shared"))

	// A site overlay with private files of every kind the server refuses.
	munge := filepath.Join(t.TempDir(), "munge.key")
	require.NoError(t, os.WriteFile(munge, []byte("key"), 0o400))
	write := func(rel, text string, mode os.FileMode) {
		p := filepath.Join(root, "overlays", "site1", "rootfs", rel)
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, []byte(text), mode))
		require.NoError(t, os.Chmod(p, mode))
	}
	write("etc/bmc.conf.ww", "password={{ .Ipmi.Password }}\n", 0o644)
	write("etc/munge/munge.key.ww", `{{ Include "`+munge+`" }}`, 0o644)
	write("etc/static.key", "secret", 0o600)
	write("etc/motd", "hello", 0o644)
	mustRun(t, root, "node", "add", "s1", "--hwaddr", "aa:bb:cc:00:00:21", "--ipaddr", "10.0.0.21", "--system-overlays", "wwinit,site1")
	out, code = checkExit(t, root)
	assert.Equal(t, 1, code, out)
	for _, want := range []string{
		"node(s) s1: system overlay site1 carries private files",
		"site1: /etc/bmc.conf (its template names the BMC password (.Ipmi.Password))",
		"site1: /etc/munge/munge.key (its template includes " + munge,
		"site1: /etc/static.key (a static file of mode 0600",
		"1 finding(s)",
	} {
		assert.Contains(t, out, want)
	}
	assert.NotContains(t, out, "/etc/motd")

	require.NoError(t, setConfigKeys(filepath.Join(root, "wwboot.conf"), map[string]string{"system overlay secrets": "true"}))
	out, code = checkExit(t, root)
	assert.Equal(t, 0, code, out)
	assert.Contains(t, out, "nothing to fix")
}
