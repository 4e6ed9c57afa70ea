#!/usr/bin/env bash
# The real boot chain by hand, without wwboot: a namespace with a bridge and a
# tap, dnsmasq (DHCP + TFTP), python3's http.server with an iPXE script,
# kernel and initramfs, and QEMU under TCG. Shows the VM's console with times
# since power-on. This is how the chain in provision/e2e was first proven.
#   usage: bench/boot/by-hand.sh [bios|uefi] [ra|nora]
# Needs: qemu-system-x86 ipxe ipxe-qemu ovmf dnsmasq busybox-static cpio gzip python3 iproute2.
set -euo pipefail
fw=${1:-bios}; ra=${2:-ra}
here=$(cd "$(dirname "$0")" && pwd)
kdir=$("$here/fetch-kernel.sh")
ver=$(cat "$kdir/COMPLETE")
work=$(mktemp -d /tmp/wwboot-by-hand.XXXXXX)
ns=wwbh$$
cleanup() {
  set +e
  [ -n "${pids:-}" ] && kill $pids 2>/dev/null; wait 2>/dev/null
  ip netns del "$ns" 2>/dev/null; rm -rf "$work"
}
trap cleanup EXIT
pids=

# Root tree: busybox-static with a link per applet, NIC modules in load order, /init.
r=$work/root; mkdir -p $r/{bin,dev,proc,sys,etc,lib/modules}
cp /bin/busybox $r/bin/busybox
for a in $(/bin/busybox --list); do [ "$a" = busybox ] || ln -sf busybox $r/bin/$a; done
m=$kdir/lib/modules/$ver/kernel
for ko in drivers/virtio/virtio_ring drivers/virtio/virtio drivers/virtio/virtio_pci_modern_dev \
          drivers/virtio/virtio_pci_legacy_dev drivers/virtio/virtio_pci net/core/failover \
          drivers/net/net_failover drivers/net/virtio_net drivers/net/ethernet/intel/e1000/e1000; do
  cp $m/$ko.ko $r/lib/modules/; echo "${ko##*/}" >> $r/etc/modules
done
cat > $r/init <<'INIT'
#!/bin/sh
mount -t proc proc /proc; mount -t sysfs sysfs /sys; mount -t devtmpfs devtmpfs /dev
for m in $(cat /etc/modules); do insmod /lib/modules/$m.ko; done
. /etc/node.conf
hostname "$NODE_HOSTNAME"; ip link set eth0 up; ip addr add "$NODE_IP/24" dev eth0
echo "WWBOOT-NODE hostname=$(hostname) ip=$(ip -4 -o addr show eth0 | sed 's/.* inet \([0-9.]*\).*/\1/') uptime=$(cut -d' ' -f1 /proc/uptime)"
poweroff -f
INIT
chmod +x $r/init; mknod -m 600 $r/dev/console c 5 1
srv=$work/srv; mkdir -p $srv $work/ov/etc $work/tftp
(cd $r && find . | cpio --quiet -o -H newc -R 0:0 | gzip -1 > $srv/image.gz)
printf 'NODE_HOSTNAME=n1\nNODE_IP=10.99.0.11\n' > $work/ov/etc/node.conf
(cd $work/ov && find . | cpio --quiet -o -H newc -R 0:0 | gzip -1 > $srv/system.gz)
cp $kdir/boot/vmlinuz-$ver $srv/kernel
cat > $srv/boot.ipxe <<'IPXE'
#!ipxe
kernel --name kernel http://10.99.0.1:8080/kernel initrd=image initrd=system console=ttyS0,115200 quiet panic=-1
initrd --name image http://10.99.0.1:8080/image.gz
initrd --name system http://10.99.0.1:8080/system.gz
boot
IPXE
cp /usr/lib/ipxe/snponly.efi /usr/lib/ipxe/undionly.kpxe $work/tftp/

# Network: namespace, bridge 10.99.0.1/24, tap for QEMU.
ip netns add $ns
ip -n $ns link set lo up
ip -n $ns link add br0 type bridge
ip -n $ns addr add 10.99.0.1/24 dev br0
ip -n $ns addr add fe80::1/64 dev br0 nodad
ip -n $ns link set br0 up
ip -n $ns tuntap add dev tap0 mode tap
ip -n $ns link set tap0 master br0
ip -n $ns link set tap0 up

ip netns exec $ns dnsmasq --no-daemon --conf-file=/dev/null --user=root --port=0 --interface=br0 --bind-interfaces \
  --dhcp-leasefile=$work/leases --pid-file=$work/dnsmasq.pid \
  --dhcp-range=10.99.0.100,10.99.0.199,255.255.255.0 --dhcp-host=52:54:00:12:34:01,10.99.0.11,n1 \
  --enable-tftp --tftp-root=$work/tftp --dhcp-userclass=set:ipxe,iPXE \
  --dhcp-match=set:efi64,option:client-arch,7 --dhcp-boot=tag:ipxe,http://10.99.0.1:8080/boot.ipxe \
  --dhcp-boot=tag:!ipxe,tag:efi64,snponly.efi --dhcp-boot=tag:!ipxe,tag:!efi64,undionly.kpxe \
  --dhcp-option-force=tag:ipxe,60,PXEClient >$work/dnsmasq.log 2>&1 &
pids="$pids $!"
(cd $srv && exec ip netns exec $ns python3 -m http.server 8080 --bind 10.99.0.1 >$work/http.log 2>&1) &
pids="$pids $!"
if [ "$ra" = ra ]; then
  # Answer iPXE's router solicitations (package ipxe's RouterAdvertiser), via
  # a tiny Go program run inside the namespace.
  mkdir -p $work/ra
  cat > $work/ra/main.go <<'GO'
package main

import (
	"context"
	"os"

	"github.com/wwboot/wwboot/ipxe"
)

func main() {
	ra, err := ipxe.ListenRouterAdvertiser(os.Args[1], nil)
	if err != nil {
		panic(err)
	}
	_ = ra.Serve(context.Background())
}
GO
  (cd "$here/../.." && go build -o $work/ra/ra $work/ra/main.go)
  ip netns exec $ns $work/ra/ra br0 &
  pids="$pids $!"
fi
sleep 0.5

case $fw in
bios) fwargs=(-device virtio-net-pci,netdev=n0,mac=52:54:00:12:34:01) ;;
uefi) cp /usr/share/OVMF/OVMF_VARS_4M.fd $work/vars.fd
      fwargs=(-nodefaults -vga none
              -drive if=pflash,format=raw,unit=0,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.fd
              -drive if=pflash,format=raw,unit=1,file=$work/vars.fd
              -device virtio-net-pci,netdev=n0,mac=52:54:00:12:34:01,romfile=) ;;
*) echo "usage: $0 [bios|uefi] [ra|nora]" >&2; exit 2 ;;
esac
start=$(date +%s.%N)
ip netns exec $ns timeout 300 qemu-system-x86_64 -machine q35,accel=tcg -m 512 -smp 1 -nographic -serial stdio \
  -monitor none -no-reboot -boot n -netdev tap,id=n0,ifname=tap0,script=no,downscript=no "${fwargs[@]}" </dev/null 2>&1 |
  sed -u 's/\r/\n/g; s/\x1b\[[0-9;?=]*[A-Za-z]//g; s/\x1bc//g' | grep --line-buffered -v '^\s*$' |
  while IFS= read -r line; do printf '%7.2fs %s\n' "$(awk -v a="$(date +%s.%N)" -v b="$start" 'BEGIN{print a-b}')" "$line"; done
