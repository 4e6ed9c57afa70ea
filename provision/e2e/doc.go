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
// To swap in wwboot (keep fetchKernel, buildRootTree, boot and the checks):
//
//  1. buildRootTree: also copy k.Vmlinuz to ROOT/boot/ (and the modules to
//     ROOT/lib/modules/VERSION/) if `wwboot image` takes the kernel from the tree.
//  2. buildImageStandIn -> `wwboot init` + `wwboot image` on that tree.
//  3. defineNodesStandIn -> `wwboot node add NAME --image IMG --netdev default
//     --hwaddr MAC --ipaddr IP --netmask 255.255.255.0` per node, kernel args
//     kernelArgs, and a site system overlay holding systemOverlayTemplate as
//     etc/wwboot-node.conf.ww.
//  4. serveStandIn and startDnsmasqStandIn -> `wwboot serve --interface br0
//     --listen 10.77.0.1 --dhcp full --tftp --http-port 9873` via
//     lab.Command, waiting for /healthz, SIGTERM in t.Cleanup. Serve must
//     answer router solicitations (ipxe.RouterAdvertiser) and send DHCP option
//     60 PXEClient to iPXE, as the stand-ins do, or each boot takes 16-25 s
//     longer. The deliberate failures (n1's first kernel, n2's runtime
//     overlay) and standInServer.checkStages go; `wwboot status` replaces the
//     stage checks. In secure mode every iPXE runtime-overlay fetch is
//     refused (iPXE uses unprivileged ports), so expect runtime=absent.
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
