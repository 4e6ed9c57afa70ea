package ipxe_test

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/wwboot/wwboot/ipxe"
)

func TestFirmwareForArch(t *testing.T) {
	for arch, want := range map[uint16]ipxe.Firmware{0: ipxe.BIOS, 6: ipxe.EFIIA32, 7: ipxe.EFIX8664, 9: ipxe.EFIX8664, 11: ipxe.EFIARM64} {
		got, ok := ipxe.FirmwareForArch(arch)
		assert.True(t, ok, arch)
		assert.Equal(t, want, got, arch)
		assert.NotEmpty(t, ipxe.TFTPName(got))
	}
	_, ok := ipxe.FirmwareForArch(16) // x86-64 UEFI HTTP boot: no TFTP binary
	assert.False(t, ok)
}

func TestLocateInTempDirs(t *testing.T) {
	deb, rhel := t.TempDir(), t.TempDir()
	touch := func(p string) {
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, []byte("x"), 0o644))
	}
	touch(filepath.Join(deb, "undionly.kpxe"))
	touch(filepath.Join(deb, "ipxe.efi")) // fallback only
	touch(filepath.Join(rhel, "ipxe-snponly-x86_64.efi"))
	touch(filepath.Join(rhel, "arm64-efi", "snponly.efi"))

	p, err := ipxe.Locate(ipxe.BIOS, deb, rhel)
	require.NoError(t, err)
	assert.Equal(t, filepath.Join(deb, "undionly.kpxe"), p)
	// The first directory wins, even with a less preferred name.
	p, err = ipxe.Locate(ipxe.EFIX8664, deb, rhel)
	require.NoError(t, err)
	assert.Equal(t, filepath.Join(deb, "ipxe.efi"), p)
	p, err = ipxe.Locate(ipxe.EFIX8664, rhel)
	require.NoError(t, err)
	assert.Equal(t, filepath.Join(rhel, "ipxe-snponly-x86_64.efi"), p)

	all := ipxe.LocateAll(rhel)
	assert.Equal(t, map[ipxe.Firmware]string{
		ipxe.EFIX8664: filepath.Join(rhel, "ipxe-snponly-x86_64.efi"),
		ipxe.EFIARM64: filepath.Join(rhel, "arm64-efi", "snponly.efi"),
	}, all)

	_, err = ipxe.Locate(ipxe.EFIIA32, deb, rhel)
	require.ErrorIs(t, err, ipxe.ErrNoBinary)
	assert.Contains(t, err.Error(), "apt-get install ipxe")
	_, err = ipxe.Locate("mips", deb)
	require.ErrorIs(t, err, ipxe.ErrNoBinary)
}

// TestLocateDebian checks the real Debian packages the boot test uses
// (ipxe and ipxe-qemu, listed in .ci/packages).
func TestLocateDebian(t *testing.T) {
	if _, err := os.Stat("/usr/lib/ipxe/undionly.kpxe"); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatal("Debian package ipxe not installed: .ci/run installs it from .ci/packages")
		}
		t.Skip("Debian package ipxe not installed")
	}
	p, err := ipxe.Locate(ipxe.BIOS)
	require.NoError(t, err)
	assert.Equal(t, "/usr/lib/ipxe/undionly.kpxe", p)
	p, err = ipxe.Locate(ipxe.EFIX8664)
	require.NoError(t, err)
	assert.Equal(t, "/usr/lib/ipxe/snponly.efi", p)
	for _, model := range []string{"e1000", "virtio"} {
		p, err := ipxe.QEMUROM(model)
		require.NoError(t, err)
		assert.Equal(t, "/usr/lib/ipxe/qemu/efi-"+model+".rom", p)
	}
	_, err = ipxe.QEMUROM("../../etc/passwd")
	require.ErrorIs(t, err, ipxe.ErrNoBinary)
	_, err = ipxe.QEMUROM("nosuchnic")
	require.ErrorIs(t, err, ipxe.ErrNoBinary)
}
