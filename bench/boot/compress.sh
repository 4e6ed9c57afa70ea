#!/usr/bin/env bash
# Power-on to ssh of the Debian 12 node image built with gzip against zstd, in
# one run, alternating (two rounds each, BIOS, QEMU under TCG): the figures
# behind wwboot's default image compression. Needs root (network namespace,
# tap, DHCP/TFTP ports); installs nothing itself: run ./test.sh or
# ./scripts/install-deps.sh first. Prints COMPRESS-TIMING lines per boot and
# one COMPRESS-RESULT line with the zstd/gzip ratios.
set -euo pipefail
cd "$(dirname "$0")/../.."
go test ./provision/e2e -run '^TestDebianCompression$' -count=1 -v -timeout 90m -args -compare-compress |
  grep -E 'COMPRESS-(TIMING|RESULT)|^(--- |ok|FAIL)'
