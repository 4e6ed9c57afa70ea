package ipxe

import (
	"fmt"
	"strings"
)

// Memory is what a node loads and unpacks at boot, in bytes; [MemNeed]
// turns it into the RAM the node needs.
type Memory struct {
	// Kernel is the kernel file (bzImage) size.
	Kernel int64
	// Image is the compressed image file size.
	Image int64
	// Unpacked is the RAM the image's tree takes once unpacked
	// (image.Meta.MemUnpacked).
	Unpacked int64
	// Overlays is the overlays' compressed plus unpacked size; 0 means
	// OverlayAllowance.
	Overlays int64
	// KernelArgs is the node's kernel command line (root= and rootfstype=
	// decide whether rootfs is a capped tmpfs).
	KernelArgs string
}

// Parts of the memory model (see MemNeed).
const (
	// OverlayAllowance is what the system and runtime overlays are assumed
	// to take when their size is not known (bytes).
	OverlayAllowance = 8 << 20
	// KernelReserve is the RAM the running kernel needs besides its
	// decompressed image: page tables, struct pages, slabs, per-CPU areas,
	// the first processes (bytes).
	KernelReserve = 96 << 20
	// KernelExpansion is how much larger the kernel is in RAM (text, data,
	// bss) than its compressed bzImage file.
	KernelExpansion = 3
)

// MemNeed returns the RAM in MiB a node needs to boot m, and a line that
// says where the number comes from. The rules (Linux init/initramfs.c,
// init/do_mounts.c, mm/shmem.c):
//   - the boot loader puts the kernel and every initrd (the compressed image
//     and overlays) in RAM, and they stay there until the kernel has unpacked
//     them all into rootfs: the peak is the kernel in RAM, the compressed
//     archives, the unpacked tree and the kernel's own needs together;
//   - rootfs is a tmpfs capped at half the RAM when the command line has
//     neither root= nor rootfstype= (or rootfstype= names tmpfs); otherwise
//     it is a ramfs without a cap. A capped rootfs must hold the unpacked
//     tree in half the RAM, or unpacking fails with "write error".
//
// It returns 0 when m says nothing (no image size known).
func MemNeed(m Memory) (mib int, detail string) {
	if m.Unpacked <= 0 {
		return 0, ""
	}
	ov := m.Overlays
	if ov <= 0 {
		ov = OverlayAllowance
	}
	kernel := m.Kernel * KernelExpansion
	peak := kernel + KernelReserve + m.Image + ov + m.Unpacked
	need := peak
	capped := rootfsCapped(m.KernelArgs)
	if capped && 2*(m.Unpacked+ov) > need {
		need = 2 * (m.Unpacked + ov)
	}
	mb := func(b int64) int64 { return (b + 1<<20 - 1) >> 20 }
	detail = fmt.Sprintf("kernel %d MiB + kernel reserve %d MiB + compressed image %d MiB + overlays %d MiB + unpacked image %d MiB",
		mb(kernel), mb(KernelReserve), mb(m.Image), mb(ov), mb(m.Unpacked))
	if capped && need > peak {
		detail = fmt.Sprintf("twice the unpacked image and overlays (%d MiB): rootfs is a tmpfs capped at half the RAM without root= or rootfstype=ramfs", mb(m.Unpacked+ov))
	}
	return int(mb(need)), detail
}

// rootfsCapped tells whether rootfs is a tmpfs (capped at half the RAM)
// for the kernel command line args (init/do_mounts.c, init_rootfs: tmpfs
// when there is no root= and no rootfstype=, or rootfstype= contains
// "tmpfs").
func rootfsCapped(args string) bool {
	root, fstype := false, ""
	for _, a := range strings.Fields(args) {
		switch {
		case strings.HasPrefix(a, "root="):
			root = true
		case strings.HasPrefix(a, "rootfstype="):
			fstype = strings.TrimPrefix(a, "rootfstype=")
		}
	}
	if fstype != "" {
		return strings.Contains(fstype, "tmpfs")
	}
	return !root
}
