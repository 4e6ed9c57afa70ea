// Package e2e holds wwboot's end-to-end boot test: real QEMU virtual
// machines (TCG, no KVM needed) boot from the real wwboot binary over a
// bridge inside a network namespace the test creates, through both firmware
// paths:
//
//   - BIOS: SeaBIOS runs QEMU's iPXE NIC option ROM (e1000), which asks DHCP
//     and fetches its script over HTTP;
//   - UEFI: OVMF's own PXE client (NIC ROM disabled, virtio-net) asks DHCP,
//     loads snponly.efi over TFTP, and that iPXE asks DHCP again and fetches
//     its script over HTTP.
//
// The test builds cmd/wwboot and runs, logging each command line:
//
//	wwboot --root R init
//	wwboot --root R image import TREE e2e      # busybox-static, a Debian kernel in /boot, its NIC modules
//	wwboot --root R node add n1 --image e2e --netdev default --hwaddr MAC --ipaddr IP \
//	    --netmask 255.255.255.0 --kernelargs console=ttyS0,panic=-1 --system-overlays e2e
//	wwboot --root R serve --interface br0 --listen 10.77.0.1 --dhcp full --tftp --http-port 9873
//	wwboot --root R status --server http://10.77.0.1:9873
//
// R/overlays/e2e is a site system overlay with one Warewulf-style template,
// etc/wwboot-node.conf.ww. Each node boots the image plus its system overlay
// (the default profile's built-in overlays and e2e); the built-in wwinit's
// /init prints "wwboot: node NAME address IP" from the node.conf it rendered
// and hands over to the image's /sbin/init, which loads the NIC module,
// reads the file the e2e overlay rendered, configures that address, pings
// the server, prints one WWBOOT-NODE line and powers off. The test fails
// unless both lines name the inventory's values, and unless `wwboot status`
// then shows both nodes with their last stage. wwboot.conf keeps its default
// secure mode, so iPXE's request for the runtime overlay (from an
// unprivileged port) is refused and the default script boots without it:
// the last stage is "runtime", code 403. A third VM with a MAC outside the
// inventory gets no DHCP answer (serve has no dynamic pool); the test checks
// the server counted it and stops that VM once it has. The server is stopped
// with SIGTERM and must drain and exit 0.
//
// The Debian kernel is downloaded by the test itself (apt-get download into
// the user cache directory, $XDG_CACHE_HOME/wwboot-test, reused afterwards).
// The test needs root; it skips without it, and fails instead when env CI is
// set. Run it with
//
//	go test ./provision/e2e -v -run TestBoot
//
// Flags after -args: -only bios|uefi (one firmware path, no unknown VM),
// -console (stream each VM's console and the server's log as they come),
// -ra=false (serve --ipv6-ra=false), -wwboot BINARY (skip the build).
// Each boot logs a BOOT-TIMING line (seconds since power-on; "init" is the
// system overlay's /init). See bench/boot/ for timing runs, and demo.sh at
// the repository root for the watchable version.
//
// TestDebianNode boots a debootstrapped Debian 12 image; TestSlurmPowerSaving
// runs Debian's Slurm 22.05 (munged, slurmctld) beside wwboot with power
// saving calling `wwboot slurm resume|suspend`, a QEMU node behind ipmi_sim,
// and an image per job (see its doc comment).
package e2e
