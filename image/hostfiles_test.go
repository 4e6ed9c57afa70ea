package image

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// hostTree is a tree as debootstrap or a container leaves it: per-host
// files of the machine that made it beside ordinary configuration.
func hostTree(t *testing.T) string {
	t.Helper()
	src := filepath.Join(t.TempDir(), "root")
	files := map[string]string{
		"etc/machine-id":                           "0123456789abcdef0123456789abcdef\n",
		"var/lib/dbus/machine-id":                  "0123456789abcdef0123456789abcdef\n",
		"etc/hostname":                             "buildhost\n",
		"etc/ssh/ssh_host_rsa_key":                 "PRIVATE rsa\n",
		"etc/ssh/ssh_host_rsa_key.pub":             "ssh-rsa AAAA\n",
		"etc/ssh/ssh_host_ed25519_key":             "PRIVATE ed25519\n",
		"etc/ssh/sshd_config":                      "PermitRootLogin prohibit-password\n",
		"etc/udev/rules.d/70-persistent-net.rules": "SUBSYSTEM==\"net\", ATTR{address}==\"52:54:00:00:00:99\", NAME=\"eth0\"\n",
		"var/lib/systemd/random-seed":              "seedbytes",
		"var/lib/apt/lists/deb.debian.org_debian_dists_bookworm_InRelease": "index",
		"var/lib/apt/lists/lock":            "",
		"var/lib/dhcp/dhclient.eth0.leases": "lease { fixed-address 192.168.1.5; }\n",
		"var/log/wtmp":                      "login records",
		"var/log/journal/0123456789abcdef0123456789abcdef/system.journal": "journal",
		"var/log/dpkg.log": "installed\n",
		"etc/os-release":   "ID=debian\n",
	}
	for p, data := range files {
		full := filepath.Join(src, p)
		require.NoError(t, os.MkdirAll(filepath.Dir(full), 0o755))
		require.NoError(t, os.WriteFile(full, []byte(data), 0o644))
	}
	require.NoError(t, os.Chmod(filepath.Join(src, "var/log/wtmp"), 0o664))
	require.NoError(t, os.MkdirAll(filepath.Join(src, "var/lib/apt/lists/partial"), 0o700))
	// Debian with systemd-resolved or resolvconf: a symlink into /run.
	require.NoError(t, os.Symlink("../run/systemd/resolve/stub-resolv.conf", filepath.Join(src, "etc/resolv.conf")))
	return src
}

// importHostTree imports src as name (gzip) and unpacks the image with GNU
// cpio, returning the result and the unpacked directory.
func importHostTree(t *testing.T, s *Store, src, name string, o BuildOptions) (BuildResult, string) {
	t.Helper()
	o.Compression = Gzip
	res, err := s.Import(context.Background(), src, name, o)
	require.NoError(t, err)
	require.True(t, res.Rebuilt)
	return res, gnuUnpack(t, res.Path, Gzip)
}

func TestHostFilesLeftOutByDefault(t *testing.T) {
	s, err := OpenStore(filepath.Join(t.TempDir(), "images"))
	require.NoError(t, err)
	src := hostTree(t)
	res, got := importHostTree(t, s, src, "deb", BuildOptions{})

	for _, gone := range []string{
		"var/lib/dbus/machine-id", "etc/hostname", "etc/ssh/ssh_host_rsa_key", "etc/ssh/ssh_host_rsa_key.pub",
		"etc/ssh/ssh_host_ed25519_key", "etc/udev/rules.d/70-persistent-net.rules", "var/lib/systemd/random-seed",
		"var/lib/apt/lists/deb.debian.org_debian_dists_bookworm_InRelease", "var/lib/dhcp/dhclient.eth0.leases",
		"var/log/journal/0123456789abcdef0123456789abcdef",
	} {
		assert.NoFileExists(t, filepath.Join(got, gone), "per-host %s must be left out", gone)
		assert.Contains(t, res.HostFilesOut, "/"+gone)
	}
	// Emptied, with mode kept: systemd generates the id at boot.
	for p, mode := range map[string]os.FileMode{"etc/machine-id": 0o644, "var/log/wtmp": 0o664} {
		fi, err := os.Lstat(filepath.Join(got, p))
		require.NoError(t, err, p)
		assert.True(t, fi.Mode().IsRegular(), p)
		assert.Zero(t, fi.Size(), "%s must be emptied", p)
		assert.Equal(t, mode, fi.Mode().Perm(), p)
		assert.Contains(t, res.HostFilesEmptied, "/"+p)
	}
	// Kept: ordinary configuration, the directories apt and journald need,
	// and the resolv.conf symlink (it carries nothing of the build host).
	for _, kept := range []string{"etc/ssh/sshd_config", "var/lib/apt/lists/lock", "var/lib/apt/lists/partial", "var/log/journal", "var/log/dpkg.log", "etc/os-release"} {
		_, err := os.Lstat(filepath.Join(got, kept))
		assert.NoError(t, err, "%s must stay", kept)
	}
	target, err := os.Readlink(filepath.Join(got, "etc/resolv.conf"))
	require.NoError(t, err, "the resolv.conf symlink must stay a symlink")
	assert.Equal(t, "../run/systemd/resolve/stub-resolv.conf", target)
	assert.NotContains(t, res.HostFilesOut, "/etc/resolv.conf")
}

func TestHostFileRegularResolvConfIsLeftOut(t *testing.T) {
	s, err := OpenStore(filepath.Join(t.TempDir(), "images"))
	require.NoError(t, err)
	src := hostTree(t)
	require.NoError(t, os.Remove(filepath.Join(src, "etc/resolv.conf")))
	require.NoError(t, os.WriteFile(filepath.Join(src, "etc/resolv.conf"), []byte("nameserver 192.168.1.1\n"), 0o644))
	// A symlink at another per-host path is kept too.
	require.NoError(t, os.Remove(filepath.Join(src, "var/lib/dbus/machine-id")))
	require.NoError(t, os.Symlink("/etc/machine-id", filepath.Join(src, "var/lib/dbus/machine-id")))
	res, got := importHostTree(t, s, src, "deb", BuildOptions{})
	assert.NoFileExists(t, filepath.Join(got, "etc/resolv.conf"))
	assert.Contains(t, res.HostFilesOut, "/etc/resolv.conf")
	target, err := os.Readlink(filepath.Join(got, "var/lib/dbus/machine-id"))
	require.NoError(t, err)
	assert.Equal(t, "/etc/machine-id", target)
}

func TestHostFilesKept(t *testing.T) {
	s, err := OpenStore(filepath.Join(t.TempDir(), "images"))
	require.NoError(t, err)
	src := hostTree(t)
	want := describeTree(t, src, false)

	t.Run("KeepHostFiles", func(t *testing.T) {
		res, got := importHostTree(t, s, src, "keep", BuildOptions{Options: Options{KeepHostFiles: true}})
		assert.Equal(t, want, describeTree(t, got, false))
		assert.Empty(t, res.HostFilesOut)
		assert.Empty(t, res.HostFilesEmptied)
		assert.True(t, res.KeepHostFiles)

		// A rebuild keeps them as the image was last built...
		again, err := s.Build(context.Background(), "keep", BuildOptions{Force: true})
		require.NoError(t, err)
		assert.Equal(t, want, describeTree(t, gnuUnpack(t, again.Path, Gzip), false))
		// ...until told otherwise.
		dropped, err := s.Build(context.Background(), "keep", BuildOptions{DropHostFiles: true})
		require.NoError(t, err)
		assert.True(t, dropped.Rebuilt, "the options changed")
		assert.False(t, dropped.KeepHostFiles)
		assert.NoFileExists(t, filepath.Join(gnuUnpack(t, dropped.Path, Gzip), "etc/hostname"))
	})

	t.Run("negation in the image's excludes file and --exclude", func(t *testing.T) {
		require.NoError(t, os.MkdirAll(filepath.Join(src, "etc/warewulf"), 0o755))
		require.NoError(t, os.WriteFile(filepath.Join(src, ExcludesFile), []byte("# keep the cluster-wide host keys\n!/etc/ssh/ssh_host_*\n"), 0o644))
		defer os.RemoveAll(filepath.Join(src, "etc/warewulf"))
		res, got := importHostTree(t, s, src, "neg", BuildOptions{Options: Options{Excludes: []string{"!/etc/machine-id"}}})
		b, err := os.ReadFile(filepath.Join(got, "etc/ssh/ssh_host_rsa_key"))
		require.NoError(t, err)
		assert.Equal(t, "PRIVATE rsa\n", string(b))
		b, err = os.ReadFile(filepath.Join(got, "etc/machine-id"))
		require.NoError(t, err)
		assert.Equal(t, "0123456789abcdef0123456789abcdef\n", string(b), "re-included, so not emptied")
		assert.NoFileExists(t, filepath.Join(got, "etc/hostname"), "the other rules still apply")
		assert.NotContains(t, res.HostFilesOut, "/etc/ssh/ssh_host_rsa_key")
		assert.Contains(t, res.HostFilesOut, "/etc/hostname")
	})
}

func TestHostFileRulesSkipSymlinksOnly(t *testing.T) {
	ex := &Excluder{}
	require.NoError(t, ex.AddHostFiles(DefaultHostFiles()...))
	assert.Equal(t, HostZero, ex.Decide("etc/machine-id", 0))
	assert.Equal(t, Include, ex.Decide("etc/machine-id", os.ModeSymlink))
	assert.Equal(t, HostOut, ex.Decide("/etc/hostname", 0))
	assert.Equal(t, HostOut, ex.Decide("/var/log/journal/abc", os.ModeDir))
	assert.Equal(t, Include, ex.Decide("/var/log/journal", os.ModeDir))
	assert.Equal(t, Include, ex.Decide("/etc/ssh/sshd_config", 0))
	require.NoError(t, ex.Add("x", "!/etc/hostname"))
	assert.Equal(t, Include, ex.Decide("/etc/hostname", 0))
}
