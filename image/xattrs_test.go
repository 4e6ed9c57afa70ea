package image

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/binary"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// restoreScript is the wwinit overlay's restore step, run on the node by
// /init before the image's init.
const restoreScript = "../overlay/builtin/wwinit/rootfs/etc/wwboot/restore-xattrs"

// getcap returns getcap's view of file ("" without capabilities).
func getcap(t *testing.T, file string) string {
	t.Helper()
	out, err := exec.Command("getcap", file).CombinedOutput()
	require.NoError(t, err, "%s", out)
	return strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(string(out)), file))
}

// pathWith makes a directory of symlinks to the named host tools, for a
// PATH holding only them (the image's tools on a node).
func pathWith(t *testing.T, tools ...string) string {
	t.Helper()
	dir := t.TempDir()
	for _, tool := range tools {
		p, err := exec.LookPath(tool)
		if _, serr := os.Stat("/usr/bin/" + tool); serr == nil {
			p, err = "/usr/bin/"+tool, nil // the system's, not a version manager's shim
		}
		require.NoError(t, err, tool)
		require.NoError(t, os.Symlink(p, filepath.Join(dir, tool)))
	}
	return dir
}

// TestFileCapabilitiesSurvive: a tree with `setcap cap_net_raw+ep` on a
// file builds into an archive whose /etc/wwboot/xattrs records it (newc
// carries no xattrs: unpacked, the file has none); the restore step of the
// wwinit overlay, run on the unpacked tree, puts the capability back, with
// setcap alone as with python3 alone; import says so in Result.Xattrs.
func TestFileCapabilitiesSurvive(t *testing.T) {
	requireRoot(t)
	requireTools(t, "setcap", "getcap", "cpio", "gzip", "dash", "tr")
	src := t.TempDir()
	require.NoError(t, os.MkdirAll(filepath.Join(src, "usr/bin"), 0o755))
	require.NoError(t, os.MkdirAll(filepath.Join(src, "etc"), 0o755))
	ping := filepath.Join(src, "usr/bin/ping")
	require.NoError(t, os.WriteFile(ping, []byte("#!/bin/sh\n"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(src, "usr/bin/plain"), []byte("x"), 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(src, "usr/bin/odd name"), []byte("x"), 0o755))
	out, err := exec.Command("setcap", "cap_net_raw+ep", ping).CombinedOutput()
	require.NoError(t, err, "%s", out)
	out, err = exec.Command("setcap", "cap_net_admin,cap_net_bind_service+eip cap_sys_nice+ep", filepath.Join(src, "usr/bin/odd name")).CombinedOutput()
	require.NoError(t, err, "%s", out)
	require.Equal(t, "cap_net_raw=ep", getcap(t, ping))

	img := filepath.Join(t.TempDir(), "img.cpio.gz")
	f, err := os.Create(img)
	require.NoError(t, err)
	res, err := BuildDir(context.Background(), f, src, Options{})
	require.NoError(t, err)
	require.NoError(t, f.Close())
	assert.Equal(t, []string{"/usr/bin/odd name", "/usr/bin/ping"}, res.Xattrs)

	for name, tools := range map[string][]string{"setcap": {"setcap", "tr"}, "python3": {"python3"}} {
		t.Run(name, func(t *testing.T) {
			if name == "python3" {
				requireTools(t, "python3")
			}
			root := gnuUnpack(t, img, Gzip)
			manifest, err := os.ReadFile(filepath.Join(root, XattrManifest))
			require.NoError(t, err)
			assert.Contains(t, string(manifest), "security.capability 0x")
			assert.Contains(t, string(manifest), " cap_net_raw=ep /usr/bin/ping\n")
			assert.Equal(t, "", getcap(t, filepath.Join(root, "usr/bin/ping")), "newc carried no capability")

			cmd := exec.Command("dash", restoreScript, root)
			cmd.Env = []string{"PATH=" + pathWith(t, tools...)}
			out, err := cmd.CombinedOutput()
			require.NoError(t, err, "%s", out)
			assert.Equal(t, "wwboot: restored 2 security attributes (file capabilities) from /etc/wwboot/xattrs\n", string(out))
			assert.Equal(t, "cap_net_raw=ep", getcap(t, filepath.Join(root, "usr/bin/ping")))
			assert.Equal(t, getcap(t, filepath.Join(src, "usr/bin/odd name")), getcap(t, filepath.Join(root, "usr/bin/odd name")))
			assert.Equal(t, "", getcap(t, filepath.Join(root, "usr/bin/plain")))
		})
	}

	// No tool in the image: one line that says what to install, exit 1.
	root := gnuUnpack(t, img, Gzip)
	cmd := exec.Command("dash", restoreScript, root)
	cmd.Env = []string{"PATH=" + pathWith(t, "tr")}
	out, err = cmd.CombinedOutput()
	require.Error(t, err)
	assert.Contains(t, string(out), "0 security attributes")
	assert.Contains(t, string(out), "install attr (setfattr), python3 or libcap (setcap)")

	// The Go restore gives the same as the script.
	m, err := os.Open(filepath.Join(root, XattrManifest))
	require.NoError(t, err)
	defer m.Close()
	xs, err := ParseXattrManifest(m)
	require.NoError(t, err)
	n, err := RestoreXattrs(root, xs)
	require.NoError(t, err)
	assert.Equal(t, 2, n)
	assert.Equal(t, "cap_net_raw=ep", getcap(t, filepath.Join(root, "usr/bin/ping")))

	// Rebuilding the unchanged tree gives the same bytes (the manifest's
	// mtime is its newest file's, not the build time).
	var a, b bytes.Buffer
	_, err = BuildDir(context.Background(), &a, src, Options{})
	require.NoError(t, err)
	_, err = BuildDir(context.Background(), &b, src, Options{})
	require.NoError(t, err)
	assert.Equal(t, a.Bytes(), b.Bytes())
}

// TestCapabilityText: setcap's text for the revisions of vfs_cap_data.
func TestCapabilityText(t *testing.T) {
	v2 := func(magic uint32, perm, inh uint64) []byte {
		b := make([]byte, 20)
		binary.LittleEndian.PutUint32(b, magic)
		binary.LittleEndian.PutUint32(b[4:], uint32(perm))
		binary.LittleEndian.PutUint32(b[8:], uint32(inh))
		binary.LittleEndian.PutUint32(b[12:], uint32(perm>>32))
		binary.LittleEndian.PutUint32(b[16:], uint32(inh>>32))
		return b
	}
	for _, c := range []struct {
		v    []byte
		want string
		ok   bool
	}{
		{v2(0x02000001, 1<<13, 0), "cap_net_raw=ep", true},
		{v2(0x02000000, 1<<13|1<<10, 0), "cap_net_bind_service,cap_net_raw=p", true},
		{v2(0x02000001, 1<<12, 1<<12|1<<23), "cap_net_admin=eip cap_sys_nice=ei", true},
		{v2(0x02000001, 1<<38, 0), "cap_perfmon=ep", true},
		{append(v2(0x03000001, 1<<13, 0), 0, 0, 0, 0), "cap_net_raw=ep", true},
		{append(v2(0x03000001, 1<<13, 0), 0xe8, 3, 0, 0), "", false}, // namespaced (root uid 1000)
		{v2(0x02000001, 1<<60, 0), "", false},
		{[]byte{1, 2}, "", false},
	} {
		got, ok := CapabilityText(c.v)
		assert.Equal(t, c.ok, ok, "%x", c.v)
		assert.Equal(t, c.want, got, "%x", c.v)
	}
}

// TestXattrManifestRoundTrip: what WriteXattrManifest writes,
// ParseXattrManifest reads back; a path with a newline is not recorded.
func TestXattrManifestRoundTrip(t *testing.T) {
	xs := []Xattr{
		{Path: "/usr/bin/ping", Name: "security.capability", Value: []byte{1, 0, 0, 2, 0, 32, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}},
		{Path: "/usr/bin/with space", Name: "security.ima", Value: []byte{3, 2, 1}},
		{Path: "/bad\nname", Name: "security.ima", Value: []byte{1}},
	}
	var b bytes.Buffer
	require.NoError(t, WriteXattrManifest(&b, xs))
	got, err := ParseXattrManifest(&b)
	require.NoError(t, err)
	assert.Equal(t, xs[:2], got)
	_, err = ParseXattrManifest(strings.NewReader("security.capability zz - /x\n"))
	assert.ErrorContains(t, err, "line 1")
	assert.True(t, keepXattr("security.capability"))
	assert.False(t, keepXattr("security.selinux"))
	assert.False(t, keepXattr("user.comment"))
}

// FuzzParseXattrManifest: a manifest comes with an image tree; whatever it
// holds, parsing returns an error or attributes that write back the same.
func FuzzParseXattrManifest(f *testing.F) {
	f.Add("security.capability 0x0100000200200000000000000000000000000000 cap_net_raw=ep /usr/bin/ping\n")
	f.Add("# comment\n\nsecurity.ima 0x0302 - /a b\n")
	f.Add("security.capability zz - /x\n")
	f.Fuzz(func(t *testing.T, s string) {
		xs, err := ParseXattrManifest(strings.NewReader(s))
		if err != nil {
			return
		}
		var b bytes.Buffer
		require.NoError(t, WriteXattrManifest(&b, xs))
		again, err := ParseXattrManifest(&b)
		require.NoError(t, err)
		for _, x := range again {
			assert.True(t, strings.HasPrefix(x.Path, "/"))
		}
	})
}

// FuzzKernelVersionOf: any path gives a version that is a substring of it
// (or ""), and never panics.
func FuzzKernelVersionOf(f *testing.F) {
	f.Add("/lib/modules/5.14.0-427.37.1.el9_4.aarch64/vmlinuz")
	f.Add("/boot/vmlinuz-6.12.0-211.16.1.el10_2.0.1.x86_64")
	f.Add("/boot/vmlinuz-1.2.3-..4")
	f.Fuzz(func(t *testing.T, p string) {
		v := KernelVersionOf(p)
		assert.True(t, v == "" || strings.Contains(p, v))
		_, _ = CapabilityText([]byte(p))
	})
}

// TestTarXattrsAreRecorded: a rootfs tarball (or container layer) carries
// a file capability as a PAX record SCHILY.xattr.security.capability
// (GNU tar --xattrs, container layers); Store.Import keeps it on the
// unpacked tree, records it in the image's XattrManifest and says so.
func TestTarXattrsAreRecorded(t *testing.T) {
	requireRoot(t)
	requireTools(t, "getcap")
	capv := []byte{0x01, 0, 0, 0x02, 0, 0x20, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0} // cap_net_raw=ep
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, h := range []*tar.Header{
		{Name: "usr/", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: treeTime},
		{Name: "usr/bin/", Typeflag: tar.TypeDir, Mode: 0o755, ModTime: treeTime},
		{Name: "usr/bin/ping", Typeflag: tar.TypeReg, Mode: 0o755, Size: 3, ModTime: treeTime, Format: tar.FormatPAX,
			PAXRecords: map[string]string{"SCHILY.xattr.security.capability": string(capv), "SCHILY.xattr.user.note": "x"}},
	} {
		require.NoError(t, tw.WriteHeader(h))
		if h.Size > 0 {
			_, err := tw.Write([]byte("elf"))
			require.NoError(t, err)
		}
	}
	require.NoError(t, tw.Close())
	src := filepath.Join(t.TempDir(), "rootfs.tar")
	require.NoError(t, os.WriteFile(src, buf.Bytes(), 0o644))
	s, err := OpenStore(filepath.Join(t.TempDir(), "images"))
	require.NoError(t, err)
	res, err := s.Import(context.Background(), src, "caps", BuildOptions{})
	require.NoError(t, err)
	assert.Equal(t, []string{"/usr/bin/ping"}, res.Xattrs)
	assert.Equal(t, "cap_net_raw=ep", getcap(t, filepath.Join(res.Root, "usr/bin/ping")))
	root := gnuUnpack(t, res.Path, Gzip)
	manifest, err := os.ReadFile(filepath.Join(root, XattrManifest))
	require.NoError(t, err)
	assert.Contains(t, string(manifest), "security.capability 0x0100000200200000000000000000000000000000 cap_net_raw=ep /usr/bin/ping\n")
	assert.NotContains(t, string(manifest), "user.note", "only security attributes")
}
