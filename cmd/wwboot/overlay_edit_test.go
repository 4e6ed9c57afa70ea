package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// runEnv runs wwboot with environment env.
func runEnv(t *testing.T, env map[string]string, root string, args ...string) (string, error) {
	t.Helper()
	var out, errb bytes.Buffer
	cmd := newRootCmd(&out, &errb, func(k string) string { return env[k] })
	cmd.SetArgs(append([]string{"--root", root}, args...))
	err := cmd.ExecuteContext(context.Background())
	return out.String() + errb.String(), err
}

// TestOverlayEditCommands drives create, mkdir, import, chmod, chown, info,
// edit and delete on real directories, and checks that no FILE argument
// leaves the overlay.
func TestOverlayEditCommands(t *testing.T) {
	root := t.TempDir()
	mustRun(t, root, "init")
	ov := filepath.Join(root, "overlays", "site", "rootfs")

	mustRun(t, root, "overlay", "create", "site")
	assert.DirExists(t, ov)
	_, err := run(t, root, "overlay", "create", "site")
	assert.ErrorContains(t, err, "exists")
	_, err = run(t, root, "overlay", "create", "../x")
	assert.ErrorContains(t, err, "overlay name")

	mustRun(t, root, "overlay", "mkdir", "site", "/etc/app.d", "--mode", "0750")
	fi, err := os.Stat(filepath.Join(ov, "etc", "app.d"))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o750), fi.Mode().Perm())

	src := filepath.Join(t.TempDir(), "motd")
	require.NoError(t, os.WriteFile(src, []byte("hello {{ .Id }}\n"), 0o640))
	_, err = run(t, root, "overlay", "import", "site", src, "/etc/deep/motd.ww")
	assert.ErrorContains(t, err, "--parents")
	mustRun(t, root, "overlay", "import", "site", src, "/etc/deep/motd.ww", "-p")
	b, err := os.ReadFile(filepath.Join(ov, "etc/deep/motd.ww"))
	require.NoError(t, err)
	assert.Equal(t, "hello {{ .Id }}\n", string(b))
	_, err = run(t, root, "overlay", "import", "site", src, "/etc/deep/motd.ww")
	assert.ErrorContains(t, err, "--overwrite")

	mustRun(t, root, "overlay", "chmod", "site", "etc/deep/motd.ww", "0600")
	fi, err = os.Stat(filepath.Join(ov, "etc/deep/motd.ww"))
	require.NoError(t, err)
	assert.Equal(t, os.FileMode(0o600), fi.Mode().Perm())
	mustRun(t, root, "overlay", "chown", "site", "etc/deep/motd.ww", strconv.Itoa(os.Getuid()), strconv.Itoa(os.Getgid()))

	info := mustRun(t, root, "overlay", "info", "site")
	assert.Contains(t, info, "overlay site: site")
	assert.Contains(t, info, "/etc/deep/motd.ww")
	assert.Contains(t, info, "template -> /etc/deep/motd")
	info = mustRun(t, root, "overlay", "info", "hostname")
	assert.Contains(t, info, "overlay hostname: builtin")

	// Nothing leaves the overlay: neither .. nor a symlink inside it.
	for _, args := range [][]string{
		{"overlay", "mkdir", "site", "../../escape"},
		{"overlay", "chmod", "site", "../../wwboot.conf", "0600"},
		{"overlay", "delete", "site", "../../nodes.conf"},
	} {
		_, err := run(t, root, args...)
		assert.Error(t, err, "%v", args)
	}
	require.NoError(t, os.Symlink("../../..", filepath.Join(ov, "up")))
	_, err = run(t, root, "overlay", "import", "site", src, "up/nodes.conf", "--overwrite")
	assert.Error(t, err, "a symlink in the overlay does not lead out")
	assert.FileExists(t, filepath.Join(root, "nodes.conf"))
	assert.NotContains(t, string(mustRead(t, filepath.Join(root, "nodes.conf"))), "hello")
	mustRun(t, root, "overlay", "delete", "site", "up")

	// edit: $EDITOR runs on the file; a template that does not parse is
	// reported.
	editor := filepath.Join(t.TempDir(), "ed.sh")
	require.NoError(t, os.WriteFile(editor, []byte("#!/bin/sh\nprintf '{{ .Id }}\\n' >\"$1\"\n"), 0o755))
	env := map[string]string{"EDITOR": editor}
	_, err = runEnv(t, env, root, "overlay", "edit", "site", "etc/new.ww")
	require.NoError(t, err)
	assert.Equal(t, "{{ .Id }}\n", string(mustRead(t, filepath.Join(ov, "etc/new.ww"))))
	bad := filepath.Join(t.TempDir(), "bad.sh")
	require.NoError(t, os.WriteFile(bad, []byte("#!/bin/sh\nprintf '{{ if }}\\n' >\"$1\"\n"), 0o755))
	_, err = runEnv(t, map[string]string{"EDITOR": bad}, root, "overlay", "edit", "site", "etc/bad.ww")
	assert.ErrorContains(t, err, "does not parse")

	// Editing a built-in overlay makes a site copy first.
	out, err := runEnv(t, env, root, "overlay", "edit", "hostname", "etc/extra.ww")
	require.NoError(t, err)
	assert.Contains(t, out, "copied the built-in hostname")
	assert.FileExists(t, filepath.Join(root, "overlays", "hostname", "rootfs", "etc", "hostname.ww"))
	assert.Contains(t, mustRun(t, root, "overlay", "info", "hostname"), "overlay hostname: site")

	// delete: files with --parents, the overlay only when empty or forced.
	mustRun(t, root, "overlay", "delete", "site", "etc/deep/motd.ww", "--parents")
	assert.NoDirExists(t, filepath.Join(ov, "etc", "deep"))
	_, err = run(t, root, "overlay", "delete", "site")
	assert.ErrorContains(t, err, "--force")
	mustRun(t, root, "overlay", "delete", "site", "--force")
	assert.NoDirExists(t, filepath.Join(root, "overlays", "site"))
	_, err = run(t, root, "overlay", "delete", "wwinit")
	assert.ErrorContains(t, err, "is built in")
}

// FuzzOverlayFile: a FILE argument that overlayFile accepts is a clean,
// relative path with no ".." element, so it names a file inside the overlay.
func FuzzOverlayFile(f *testing.F) {
	for _, s := range []string{"etc/motd", "/etc/motd", "../x", "a/../../b", "//", ".", "a/./b//c", "\x00", "..", "a/..b"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := overlayFile(s)
		if err != nil {
			return
		}
		require.NotEmpty(t, c)
		require.False(t, filepath.IsAbs(c), "%q -> %q", s, c)
		require.Equal(t, filepath.Clean(c), c)
		for _, el := range strings.Split(c, "/") {
			require.NotEqual(t, "..", el, "%q -> %q", s, c)
		}
	})
}
