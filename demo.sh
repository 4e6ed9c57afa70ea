#!/usr/bin/env bash
# wwboot demo: boots a virtual machine over the network from wwboot and shows
# what the node printed on its serial console.
#
#   ./demo.sh              # BIOS: SeaBIOS + iPXE NIC ROM -> DHCP -> HTTP, busybox image
#   ./demo.sh uefi         # UEFI: OVMF PXE -> TFTP snponly.efi -> iPXE -> HTTP, busybox image
#   ./demo.sh debian       # a real Debian 12 node (systemd, sshd, ifupdown), BIOS
#   ./demo.sh debian-uefi  # the same through UEFI
#
# The busybox image boots in 12-20 s. The Debian image is debootstrapped on
# first use (1-2 min, cached in /var/cache/wwboot-test) and boots to ssh in
# about 1-2 min under TCG; the demo logs in over ssh and checks the node.
#
# It installs what it needs (Debian packages from .ci/packages, Go modules),
# then runs the end-to-end boot test (provision/e2e) for one firmware path
# with its console streaming on. You see each wwboot command as it runs
# (init, image import, node add, serve), the server's log and the VM's
# console as they come, and wwboot status at the end. Everything on the
# network stays inside a network namespace the test creates and deletes.
# QEMU runs under TCG (no KVM needed); a boot takes 20-60 s.
set -euo pipefail
cd "$(dirname "$0")"
fw=${1:-bios}
test=TestBoot
case "$fw" in
bios | uefi) ;;
debian) fw=bios test=TestDebianNode ;;
debian-uefi) fw=uefi test=TestDebianNode ;;
*) echo "usage: ./demo.sh [bios|uefi|debian|debian-uefi]" >&2; exit 2 ;;
esac
if [ "$(id -u)" != 0 ]; then
  echo "demo.sh needs root (network namespaces, tap devices, DHCP and TFTP ports): run it from a root shell (su -), or with sudo where it is installed" >&2
  exit 1
fi

say() { printf '\n\033[1m== %s\033[0m\n' "$*"; }

say "installing what the demo needs (.ci/packages, Go modules)"
./scripts/install-deps.sh
command -v go >/dev/null || export PATH=$PATH:/usr/local/go/bin

log=$(mktemp /tmp/wwboot-demo.XXXXXX)
say "booting a $fw VM from wwboot (full log: $log)"
# go test -v streams each t.Logf as it happens; drop the file:line prefixes
# and OVMF's per-percent download progress so the console reads plainly.
set +e
go test ./provision/e2e -run "^$test\$" -count=1 -v -timeout 40m -args -only "$fw" -console 2>&1 |
  tee "$log" |
  grep --line-buffered -v -E 'Downloading\.\.\.[0-9]+%$|^=== (NAME|PAUSE|CONT)' |
  sed -u -E 's/^ {4}[a-z0-9_]+\.go:[0-9]+: //'
rc=${PIPESTATUS[0]}
set -e

say "summary"
grep -ho -E 'wwboot: node [^ ]+ address [^ ]+' "$log" | head -1 | sed 's/^/  system overlay \/init printed:  /' || true
grep -ho -E 'WWBOOT-NODE .*' "$log" | head -1 | sed 's/^/  image init printed:           /' || true
grep -ho -E 'WWBOOT-AGENT .*' "$log" | head -1 | sed 's/^/  node agent (busybox init):     /' || true
grep -ho -E 'msg="node enrolled" node=[^ ]+ client=[^ ]+' "$log" | head -1 |
  sed -E 's/msg="node enrolled" /  agent enrolled (TLS, :9874):  /' || true
grep -ho -E 'DEBIAN-TIMING .*' "$log" | sed 's/^/  /' || true
timing=$(grep -ho -E 'BOOT-TIMING .*' "$log" | head -1 || true)
if [ -n "$timing" ]; then
  t() { echo "$timing" | grep -o -E " $1=[0-9.-]+" | cut -d= -f2; }
  echo "  seconds since power-on:       iPXE script $(t script), kernel start $(t kernel), init $(t init), node line $(t node), agent $(t agent), power off $(t poweroff)"
fi
echo "  wwboot status afterwards:"
awk '/wwboot --root .* status --server/{on=1; next} on && /^        /{print "  " substr($0, 9); next} on{exit}' "$log"
if [ "$rc" = 0 ]; then
  echo "  result: PASS - the node booted from wwboot with its inventory name and address"
else
  echo "  result: FAIL (exit $rc) - see $log"
fi
echo "  load average $(cut -d' ' -f1-3 /proc/loadavg) on $(nproc) cores (QEMU under TCG is CPU-bound: a busy machine boots slower)"
exit "$rc"
