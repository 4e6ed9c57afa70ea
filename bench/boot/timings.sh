#!/usr/bin/env bash
# Power-on-to-init timings of the real boot (provision/e2e), with and without
# wwboot's two iPXE speed-ups, side by side in one run:
#   ra        - ipxe.RouterAdvertiser answers iPXE's IPv6 router solicitations
#   pxeclient - DHCP offers to iPXE carry option 60 "PXEClient"
# Each line is one boot; times are seconds since QEMU started. ipxe-configure
# is iPXE's "Configuring (net0 ...)" step: NIC open -> DHCP and IPv6 done.
# The machine's other load shows up in every figure: compare within a run.
#   usage: bench/boot/timings.sh [ROUNDS]   (default 1; needs root)
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${1:-1}
go test -c -o /tmp/wwboot-e2e.test ./provision/e2e
for r in $(seq "$rounds"); do
  for fw in bios uefi; do
    for cfg in "-ra=true -pxeclient=true" "-ra=false -pxeclient=true" "-ra=true -pxeclient=false" "-ra=false -pxeclient=false"; do
      /tmp/wwboot-e2e.test -test.run TestBoot -test.v -only "$fw" $cfg 2>&1 | grep -o 'BOOT-TIMING.*' || echo "BOOT-TIMING firmware=$fw $cfg FAILED"
    done
  done
done
echo "load: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores"
