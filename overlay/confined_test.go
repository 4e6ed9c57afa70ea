package overlay

import (
	"context"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wwboot/wwboot/nodedb"
)

// TestTemplateReadsStayInTheirTree is issue 11 item 3: IncludeFrom followed
// a symbolic link inside an image (etc/passwd -> /etc/shadow, absolute or
// ../) and put the server's file into an overlay. Links are now resolved
// inside the tree as chroot would: an absolute link names the image's own
// file, ".." stops at the image root; links that stay inside still work.
// Include and IncludeBlock of a relative path are confined to Sysconfdir
// the same way.
func TestTemplateReadsStayInTheirTree(t *testing.T) {
	host := t.TempDir() // the server's files, outside every tree
	secret := filepath.Join(host, "shadow")
	require.NoError(t, os.WriteFile(secret, []byte("SERVER SECRET"), 0o600))
	require.NoError(t, os.Mkdir(filepath.Join(host, "dir"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(host, "dir", "f"), []byte("SERVER SECRET"), 0o600))

	img := t.TempDir()
	write := func(root, p, s string) {
		full := filepath.Join(root, p)
		require.NoError(t, os.MkdirAll(filepath.Dir(full), 0o755))
		require.NoError(t, os.WriteFile(full, []byte(s), 0o644))
	}
	link := func(root, p, target string) {
		full := filepath.Join(root, p)
		require.NoError(t, os.MkdirAll(filepath.Dir(full), 0o755))
		require.NoError(t, os.Symlink(target, full))
	}
	up := func(depth int) string { // enough ../ to climb out of any temp dir
		s := ""
		for range depth {
			s += "../"
		}
		return s
	}
	write(img, "usr/share/x", "inside x")
	write(img, "etc/shadow", "image shadow")
	link(img, "etc/abs-escape", secret)                                       // absolute, out
	link(img, "etc/rel-escape", up(20)+secret[1:])                            // ../, out
	link(img, "etc/dir-escape", filepath.Join(host, "dir"))                   // a directory, out
	link(img, "etc/passwd", "/etc/shadow")                                    // absolute: the image's etc/shadow
	link(img, "etc/rel-inside", "../usr/share/x")                             // relative, stays inside
	link(img, "etc/abs-inside", "/usr/share/x")                               // absolute, stays inside
	link(img, "etc/chain", "rel-inside")                                      // a link to a link
	link(img, "etc/loop", "loop")                                             // never resolves
	require.NoError(t, syscall.Mkfifo(filepath.Join(img, "etc/fifo"), 0o644)) // would block a plain read

	// Relative Include paths are read below Sysconfdir/warewulf, as
	// Warewulf's templateFileInclude does.
	sysconf := t.TempDir()
	write(sysconf, "warewulf/motd", "site motd")
	link(sysconf, "warewulf/escape", secret)
	link(sysconf, "warewulf/inside", "motd")

	cases := []struct{ expr, want string }{
		{`IncludeFrom "img" "/etc/abs-escape"`, ""},
		{`IncludeFrom "img" "etc/rel-escape"`, ""},
		{`IncludeFrom "img" "etc/dir-escape/f"`, ""},
		{`IncludeFrom "img" "` + "../../../../../../.." + secret + `"`, ""},
		{`IncludeFrom "img" "etc/passwd"`, "image shadow"},
		{`IncludeFrom "img" "/etc/rel-inside"`, "inside x"},
		{`IncludeFrom "img" "etc/abs-inside"`, "inside x"},
		{`IncludeFrom "img" "etc/chain"`, "inside x"},
		{`IncludeFrom "img" "etc/loop"`, ""},
		{`IncludeFrom "img" "etc/fifo"`, ""},
		{`IncludeFrom "img" "etc"`, ""},
		{`Include "motd"`, "site motd"},
		{`Include "inside"`, "site motd"},
		{`Include "escape"`, ""},
		{`Include "` + up(20) + secret[1:] + `"`, ""},
		{`IncludeBlock "escape" "END"`, "END"}, // Warewulf: any read error gives the stop string alone
		{`IncludeBlock "inside" "END"`, "site motd\nEND"},
	}
	site := t.TempDir()
	write(site, "reads/rootfs/etc/reads.ww", "")
	r := newTestRenderer(t, func(o *Options) {
		o.SiteDir = site
		o.Server.Paths.Sysconfdir = sysconf
		o.DefaultSystem = []string{"reads"}
		o.CheckInterval = -1 // re-read the template every render
		o.ImageRoot = func(name string) string {
			if name == "img" {
				return img
			}
			return ""
		}
	})
	n := &nodedb.Node{ID: "n1"}
	for i, c := range cases {
		require.NoError(t, os.WriteFile(filepath.Join(site, "reads/rootfs/etc/reads.ww"), []byte("{{ "+c.expr+" }}\n"), 0o644))
		done := make(chan struct{})
		var a *Archive
		var err error
		go func() { defer close(done); a, err = r.Render(context.Background(), nil, n, System) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: render blocked", c.expr)
		}
		if c.want == "error" {
			require.Error(t, err, c.expr)
			assert.NotContains(t, err.Error(), "SERVER SECRET")
			continue
		}
		require.NoError(t, err, c.expr)
		m, _ := unpack(t, a)
		assert.Equal(t, c.want+"\n", m["etc/reads"].data, "case %d: %s", i, c.expr)
		for p, e := range m {
			assert.NotContains(t, e.data, "SERVER SECRET", "%s: %s", c.expr, p)
		}
	}
}
