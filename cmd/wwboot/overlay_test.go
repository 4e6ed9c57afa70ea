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

// TestOverlayCommands runs the overlay subcommands against a new site and
// checks the archives with GNU gzip and cpio.
func TestOverlayCommands(t *testing.T) {
	for _, tool := range []string{"gzip", "cpio"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Fatalf("%s not installed (.ci/packages lists it)", tool)
		}
	}
	root := t.TempDir()
	mustRun(t, root, "init")
	withAgent(t, root) // for the wwclient overlay of the default profile
	mustRun(t, root, "node", "add", "n1", "--hwaddr", "52:54:00:00:00:01", "--ipaddr", "10.0.0.11", "--netmask", "255.255.255.0")
	mustRun(t, root, "node", "add", "n2", "--hwaddr", "52:54:00:00:00:02", "--ipaddr", "10.0.0.12", "--netmask", "255.255.255.0")
	srv := []string{"--server-ipaddr", "10.0.0.1", "--server-netmask", "255.255.255.0"}

	out := mustRun(t, root, append([]string{"overlay", "list"}, srv...)...)
	for _, name := range []string{"wwinit", "hostname", "hosts"} {
		assert.Contains(t, out, name)
	}
	out = mustRun(t, root, append([]string{"overlay", "files", "n1"}, srv...)...)
	assert.Contains(t, out, "etc/hostname")

	sys := filepath.Join(t.TempDir(), "n1-system.cpio.gz")
	mustRun(t, root, append([]string{"overlay", "render", "n1", "--kind", "system", "-o", sys}, srv...)...)
	list, err := exec.Command("sh", "-c", "gzip -dc "+sys+" | cpio -t --quiet").CombinedOutput()
	require.NoError(t, err, string(list))
	assert.Contains(t, strings.Fields(string(list)), "etc/hostname")

	dir := t.TempDir()
	unpack := exec.Command("sh", "-c", "gzip -dc "+sys+" | cpio -idm --quiet --no-absolute-filenames")
	unpack.Dir = dir
	b, err := unpack.CombinedOutput()
	require.NoError(t, err, string(b))
	host, err := os.ReadFile(filepath.Join(dir, "etc", "hostname"))
	require.NoError(t, err)
	assert.Equal(t, "n1", strings.TrimSpace(string(host)))

	rt := filepath.Join(t.TempDir(), "n2-runtime.cpio.gz")
	mustRun(t, root, append([]string{"overlay", "render", "n2", "--kind", "runtime", "-o", rt}, srv...)...)
	hosts, err := exec.Command("sh", "-c", "gzip -dc "+rt+" | cpio -i --to-stdout --quiet etc/hosts").CombinedOutput()
	require.NoError(t, err, string(hosts))
	assert.Contains(t, string(hosts), "10.0.0.11")
	assert.Contains(t, string(hosts), "n1")

	mustRun(t, root, append([]string{"overlay", "build"}, srv...)...)
	built, _ := filepath.Glob(filepath.Join(root, "*", "n2", "*.cpio.gz"))
	assert.Len(t, built, 2, "build stores system and runtime archives for every node")

	_, err = run(t, root, append([]string{"overlay", "render", "nosuch", "-o", sys}, srv...)...)
	assert.ErrorContains(t, err, "nosuch")
}

// TestOverlayWWClientFindsTheAgent renders the wwclient overlay in process:
// without a node agent binary the error says how to build one; with
// wwboot.conf's agent: naming it, the archive carries it, executable, with
// GNU cpio reading it back byte for byte.
func TestOverlayWWClientFindsTheAgent(t *testing.T) {
	root := t.TempDir()
	mustRun(t, root, "init")
	mustRun(t, root, "node", "add", "n1", "--hwaddr", "52:54:00:00:00:01", "--ipaddr", "10.0.0.11", "--netmask", "255.255.255.0",
		"--system-overlays", "wwinit,wwclient")
	srv := []string{"--server-ipaddr", "10.0.0.1", "--server-netmask", "255.255.255.0"}
	sys := filepath.Join(t.TempDir(), "n1-system.cpio.gz")
	if _, found := agentPath(""); !found {
		_, err := run(t, root, append([]string{"overlay", "render", "n1", "--kind", "system", "-o", sys}, srv...)...)
		assert.ErrorContains(t, err, "go build -trimpath -ldflags='-s -w' -o")
		assert.ErrorContains(t, err, "./cmd/wwboot-agent")
	}
	agent := withAgent(t, root)
	mustRun(t, root, append([]string{"overlay", "render", "n1", "--kind", "system", "-o", sys}, srv...)...)
	dir := t.TempDir()
	unpack := exec.Command("sh", "-c", "gzip -dc "+sys+" | cpio -idm --quiet --no-absolute-filenames")
	unpack.Dir = dir
	b, err := unpack.CombinedOutput()
	require.NoError(t, err, string(b))
	got, err := os.ReadFile(filepath.Join(dir, "usr", "sbin", "wwboot-agent"))
	require.NoError(t, err)
	want, err := os.ReadFile(agent)
	require.NoError(t, err)
	assert.True(t, string(got) == string(want), "the agent arrives byte for byte")
	fi, err := os.Stat(filepath.Join(dir, "usr", "sbin", "wwboot-agent"))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o755), fi.Mode().Perm())
	conf, err := os.ReadFile(filepath.Join(dir, "etc", "wwboot", "node.conf"))
	require.NoError(t, err)
	assert.Contains(t, string(conf), "WWBOOT_URL='http://10.0.0.1:9873'")
	link, err := os.Readlink(filepath.Join(dir, "etc", "systemd", "system", "multi-user.target.wants", "wwboot-agent.service"))
	require.NoError(t, err)
	assert.Equal(t, "../wwboot-agent.service", link)
}
