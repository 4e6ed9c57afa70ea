#!/usr/bin/env bash
# Power-on-to-init timings of the real boot (provision/e2e: QEMU booting from
# wwboot serve), with and without serve's IPv6 router-advertisement responder
# (--ipv6-ra), side by side in one run.
# Each line is one boot; times are seconds since QEMU started; "init" is the
# system overlay's /init, "node" the image's init line. ipxe-configure is
# iPXE's "Configuring (net0 ...)" step: NIC open -> DHCP and IPv6 done.
# The machine's other load shows up in every figure: compare within a run.
#   usage: bench/boot/timings.sh [ROUNDS]   (default 1; needs root)
set -euo pipefail
cd "$(dirname "$0")/../.."
rounds=${1:-1}
go test -c -o /tmp/wwboot-e2e.test ./provision/e2e
go build -o /tmp/wwboot-e2e-bin ./cmd/wwboot
for r in $(seq "$rounds"); do
  for fw in bios uefi; do
    for cfg in "-ra=true" "-ra=false"; do
      /tmp/wwboot-e2e.test -test.run TestBoot -test.v -only "$fw" -wwboot /tmp/wwboot-e2e-bin $cfg 2>&1 |
        grep -o 'BOOT-TIMING.*' || echo "BOOT-TIMING firmware=$fw $cfg FAILED"
    done
  done
done
echo "load: $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores"
