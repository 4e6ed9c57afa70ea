// Package e2e holds wwboot's end-to-end boot test: real QEMU virtual
// machines (TCG, no KVM needed) boot over a bridge inside a network namespace
// the test creates, through both firmware paths:
//
//   - BIOS: SeaBIOS runs QEMU's iPXE NIC option ROM (e1000), which asks DHCP
//     and fetches its script over HTTP;
//   - UEFI: OVMF's own PXE client (NIC ROM disabled, virtio-net) asks DHCP,
//     loads snponly.efi over TFTP, and that iPXE asks DHCP again and fetches
//     its script over HTTP.
//
// Each node boots a Debian kernel with an image built from busybox-static and
// the kernel's NIC modules, plus a system and a runtime overlay; its /init
// prints the node's hostname and address (from the file its system overlay
// rendered) on the serial console and powers off. The test fails unless those
// lines name the inventory's values.
//
// The server side is still a set of stand-ins (dnsmasq for DHCP and TFTP, an
// in-test HTTP server using package ipxe's real default script, a cpio|gzip
// image, text/template overlays), each in one function marked STAND-IN; they
// are to be replaced by wwboot serve, wwboot image and wwboot node.
//
// The Debian kernel is downloaded by the test itself (apt-get download into
// the user cache directory, $XDG_CACHE_HOME/wwboot-test, reused afterwards).
// The test needs root; it skips without it, and fails instead when env CI is
// set. Run it with
//
//	go test ./provision/e2e -v -run TestBoot
//
// and see bench/boot/ for timing runs (IPv6 router-advertisement wait on/off).
package e2e
