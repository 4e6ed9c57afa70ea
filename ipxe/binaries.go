package ipxe

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Firmware is a client firmware architecture that needs its own iPXE binary.
type Firmware string

// Firmware architectures wwboot serves iPXE to.
const (
	// BIOS is x86 legacy BIOS PXE (DHCP option 93 value 0); iPXE undionly.kpxe.
	BIOS Firmware = "bios"
	// EFIX8664 is x86-64 UEFI (option 93 values 7 and 9); iPXE snponly.efi.
	EFIX8664 Firmware = "efi-x86_64"
	// EFIARM64 is 64-bit ARM UEFI (option 93 value 11); iPXE snponly.efi for arm64.
	EFIARM64 Firmware = "efi-arm64"
	// EFIIA32 is 32-bit x86 UEFI (option 93 value 6); iPXE snponly.efi for i386.
	EFIIA32 Firmware = "efi-ia32"
)

// Firmwares lists every Firmware this package knows, in a stable order.
func Firmwares() []Firmware { return []Firmware{BIOS, EFIX8664, EFIARM64, EFIIA32} }

// FirmwareForArch maps a DHCP client system architecture (option 93, RFC 4578
// and the IANA registry) to a Firmware. ok is false for an architecture
// wwboot has no iPXE binary for.
func FirmwareForArch(arch uint16) (fw Firmware, ok bool) {
	switch arch {
	case 0:
		return BIOS, true
	case 6:
		return EFIIA32, true
	case 7, 9:
		return EFIX8664, true
	case 11:
		return EFIARM64, true
	}
	return "", false
}

// DefaultDirs are the directories [Locate] searches when given none:
// Debian/Ubuntu's ipxe package, then Fedora/RHEL/SUSE's ipxe-bootimgs.
func DefaultDirs() []string { return []string{"/usr/lib/ipxe", "/usr/share/ipxe"} }

// candidates are the file names distributions give each binary, best first.
// snponly.efi drives the NIC through the firmware's own SNP driver, which is
// what PXE-booted UEFI machines want; ipxe.efi (native drivers) is a fallback.
func candidates(fw Firmware) []string {
	switch fw {
	case BIOS:
		return []string{"undionly.kpxe", "undionly.kkpxe", "ipxe.pxe"}
	case EFIX8664:
		return []string{"snponly.efi", "ipxe-snponly-x86_64.efi", "x86_64-efi/snponly.efi", "ipxe.efi", "ipxe-x86_64.efi"}
	case EFIARM64:
		return []string{"arm64-efi/snponly.efi", "ipxe-snponly-arm64.efi", "snponly-arm64.efi", "arm64-efi/ipxe.efi", "ipxe-arm64.efi"}
	case EFIIA32:
		return []string{"i386-efi/snponly.efi", "ipxe-snponly-i386.efi", "ipxe-i386.efi"}
	}
	return nil
}

// TFTPName is the name wwboot serves the binary for fw under over TFTP and
// puts in the DHCP boot file name, e.g. "snponly.efi" or "arm64/snponly.efi".
func TFTPName(fw Firmware) string {
	switch fw {
	case BIOS:
		return "undionly.kpxe"
	case EFIX8664:
		return "snponly.efi"
	case EFIARM64:
		return "arm64/snponly.efi"
	case EFIIA32:
		return "i386/snponly.efi"
	}
	return ""
}

// ErrNoBinary is returned (wrapped) when no iPXE binary for a firmware is installed.
var ErrNoBinary = errors.New("ipxe: no iPXE binary")

// Locate returns the path of the iPXE binary for fw, searching dirs
// (DefaultDirs when none are given) for the names distributions use. The
// error names the directories and files tried and the package to install.
func Locate(fw Firmware, dirs ...string) (string, error) {
	names := candidates(fw)
	if names == nil {
		return "", fmt.Errorf("%w: unknown firmware %q (want one of %v)", ErrNoBinary, fw, Firmwares())
	}
	if len(dirs) == 0 {
		dirs = DefaultDirs()
	}
	for _, dir := range dirs {
		for _, n := range names {
			p := filepath.Join(dir, n)
			if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
				return p, nil
			}
		}
	}
	return "", fmt.Errorf("%w for %s: none of %s in %s; install iPXE (Debian: apt-get install ipxe; RHEL: dnf install ipxe-bootimgs-x86 ipxe-bootimgs-aarch64)",
		ErrNoBinary, fw, strings.Join(names, ", "), strings.Join(dirs, ", "))
}

// LocateAll returns the binaries found for every known firmware, keyed by
// firmware; firmwares with none installed are absent.
func LocateAll(dirs ...string) map[Firmware]string {
	found := map[Firmware]string{}
	for _, fw := range Firmwares() {
		if p, err := Locate(fw, dirs...); err == nil {
			found[fw] = p
		}
	}
	return found
}

// QEMUROM returns the path of QEMU's iPXE option ROM for a NIC model
// ("e1000", "virtio", "e1000e", "rtl8139", "vmxnet3", ...), as the
// ipxe-qemu package installs them: efi-MODEL.rom (BIOS and UEFI images in one)
// or, failing that, pxe-MODEL.rom (BIOS only). dirs default to
// /usr/lib/ipxe/qemu and /usr/share/ipxe/qemu.
func QEMUROM(model string, dirs ...string) (string, error) {
	if model == "" || strings.ContainsAny(model, "/\\") {
		return "", fmt.Errorf("%w: bad NIC model %q", ErrNoBinary, model)
	}
	if len(dirs) == 0 {
		dirs = []string{"/usr/lib/ipxe/qemu", "/usr/share/ipxe/qemu", "/usr/share/qemu"}
	}
	for _, dir := range dirs {
		for _, n := range []string{"efi-" + model + ".rom", "pxe-" + model + ".rom"} {
			p := filepath.Join(dir, n)
			if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
				return p, nil
			}
		}
	}
	return "", fmt.Errorf("%w: no QEMU option ROM for NIC model %q in %s; install ipxe-qemu",
		ErrNoBinary, model, strings.Join(dirs, ", "))
}
