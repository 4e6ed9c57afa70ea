#!/bin/sh
# Boot-storm benchmark (issue 11 item 12): the whole PXE -> TFTP -> iPXE ->
# HTTP -> agent chain of N simulated nodes against one real `wwboot serve`, in
# network namespaces, clean and with unknown machines plus packet loss.
#
#   bench/storm/run.sh [NODES...]          default: 1000 10000
#
# Each size runs TestStorm in ./bench/storm twice (clean; mixed: NODES/10
# unknown machines and 1 % loss) and appends one JSON line per run to
# bench/storm/results.jsonl (override with OUT=...). Figures printed: time
# until every node has everything, stage percentiles, bytes/s against a plain
# TCP transfer's rate over the same veth, server CPU and peak RSS per node,
# the machine's load before and after.
#
# Needs: root, iproute2 (ip), and for the loss either tc with the sch_netem
# qdisc (CONFIG_NET_SCH_NETEM, module sch_netem) or, where the kernel lacks
# it, nft (Debian package nftables; uses nf_tables' numgen, CONFIG_NFT_NUMGEN).
# Sizes (simulated kernel, image's other files, in KiB): KERNEL_KIB, IMAGE_KIB.
# BOOTS=3: a node whose boot fails reboots (30 s) and tries again, up to 3
# boots, as nodes set to network-boot in a loop do; the default 1 counts any
# failed boot as a failed node.
set -eu
cd "$(dirname "$0")/../.."
OUT=${OUT:-$PWD/bench/storm/results.jsonl}
sizes=${*:-1000 10000}
for n in $sizes; do
	u=$((n / 10))
	echo "== $n nodes (mixed run: $u unknown, 1% loss); load: $(cut -d' ' -f1-3 /proc/loadavg)"
	go test ./bench/storm -run 'TestStorm$' -v -count=1 -timeout 120m -args \
		-nodes "$n" -unknown "$u" -loss 1 -out "$OUT" -boots "${BOOTS:-1}" \
		-kernel-kib "${KERNEL_KIB:-256}" -image-kib "${IMAGE_KIB:-256}" |
		grep --line-buffered -aE '^\s+storm_test|^(---|===|ok|FAIL|PASS)'
done
echo "results appended to $OUT"
