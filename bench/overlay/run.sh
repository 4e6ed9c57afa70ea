#!/usr/bin/env bash
# Overlay build benchmark: `wwboot overlay build` for N nodes with the built-in
# overlays (system + runtime archives), cold (host keys generated) and warm (keys
# kept), side by side with what a Warewulf-style build does for the same files:
# one temporary tree per node packed by GNU cpio and gzip (the packing alone,
# on every core with xargs -P; Warewulf also renders each node sequentially).
# Then the Go benchmarks (render only, 100 requests after a change, cache hit).
#
# Usage: bench/overlay/run.sh [NODES...]   (default: 1000 10000; SKIP_GO_BENCH=1 skips the Go benchmarks)
# Timings on a shared 2-core machine are noisy: run it twice.
set -euo pipefail
cd "$(dirname "$0")/../.."
nodes=("$@")
[ ${#nodes[@]} -gt 0 ] || nodes=(1000 10000)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
go build -o "$work/wwboot" ./cmd/wwboot

gen() { # gen N FILE: a nodes.conf with N nodes in profile default
	awk -v n="$1" 'BEGIN {
		print "nodeprofiles:\n  default:\n    cluster name: c1\n    image name: rocky9\n    kernel:\n      args: [quiet]\n    resources:\n      fstab:\n        - {spec: \"10.0.0.1:/home\", file: /home, vfstype: nfs}\nnodes:"
		for (i = 1; i <= n; i++) {
			printf "  n%05d:\n    profiles: [default]\n    network devices:\n      default:\n        device: eth0\n        hwaddr: 52:54:00:%02x:%02x:%02x\n        ipaddr: 10.%d.%d.%d\n        netmask: 255.0.0.0\n        gateway: 10.0.0.1\n", i, int(i/65536)%256, int(i/256)%256, i%256, 1+int(i/62500), int(i/250)%250, i%250+1
		}
	}' >"$2"
}

secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", (b - a) / 1e9 }'; }

for n in "${nodes[@]}"; do
	root="$work/root-$n"
	mkdir -p "$root"
	gen "$n" "$root/nodes.conf"
	t0=$(date +%s%N)
	"$work/wwboot" --root "$root" overlay build --server-ipaddr 10.0.0.1 --server-netmask 255.0.0.0 >/dev/null
	t1=$(date +%s%N)
	"$work/wwboot" --root "$root" overlay build --server-ipaddr 10.0.0.1 --server-netmask 255.0.0.0 >/dev/null
	t2=$(date +%s%N)
	size=$(du -sb "$root/overlays-built" | cut -f1)

	# Warewulf-style packing of the same files: unpack every node's archives
	# into its own tree (setup, not timed), then time cpio | gzip per tree.
	trees="$work/trees-$n"
	mkdir -p "$trees"
	for d in "$root"/overlays-built/*/; do
		node=$(basename "$d")
		for k in system runtime; do
			mkdir -p "$trees/$node-$k"
			(cd "$trees/$node-$k" && gzip -dc "$d/$k.cpio.gz" | cpio -idm --quiet)
		done
	done
	t3=$(date +%s%N)
	ls "$trees" | xargs -P "$(nproc)" -I{} sh -c 'cd "$1/$2" && find . | cpio -o -H newc --quiet | gzip -6 >"$1/$2.img"' sh "$trees" {}
	t4=$(date +%s%N)
	cold=$(secs "$t0" "$t1"); warm=$(secs "$t1" "$t2"); pack=$(secs "$t3" "$t4")
	echo "nodes=$n  wwboot overlay build: cold keys ${cold}s, warm ${warm}s ($size bytes stored)  |  per-node tree + GNU cpio + gzip, packing only: ${pack}s  |  packing/warm = $(awk -v a="$pack" -v b="$warm" 'BEGIN { printf "%.1f", a / b }')x"
	rm -rf "$trees" "$root"
done

[ -n "${SKIP_GO_BENCH:-}" ] || go test ./overlay -run XXX -bench 'Build$|AfterChange|RenderHit' -benchtime 3x
