#!/usr/bin/env bash
# Image compression benchmark, run on demand (not a CI pass/fail): the evidence
# for choosing an image's compression (`wwboot image import|build --compress
# gzip|zstd --level N`).
#
# For one large tree, and each compression:level in BENCH_COMPS, in one run:
#   build   wall and CPU seconds of `wwboot image import` (all cores)
#   size    bytes of the compressed image, and its transfer time at 1 Gbit/s
#   unpack  wall seconds of a single-threaded decompression of the whole image
#           (gzip -dc / zstd -dc to /dev/null), the proxy for what the kernel
#           does before /init runs: it inflates the initrd on one CPU while
#           booting (populate_rootfs; zstd needs CONFIG_RD_ZSTD, which Debian's
#           and RHEL's kernels have). The kernel's own decompressors are
#           slower than the userland tools, so take ratios, not absolutes; the
#           boot time under QEMU is measured by the e2e test.
# and the ratio of each figure to the first compression of BENCH_COMPS.
#
# The tree: BENCH_TREE if set; else the Debian 12 tree the e2e test caches
# (/var/cache/wwboot-test/*/root), if any; else the generated >= 1 GB tree of
# bench/image/run.sh (copies of the host's /usr/share, /usr/bin, /usr/include,
# /usr/lib/python3), made here when missing.
#
# Env: BENCH_TREE, BENCH_WORK (default /var/tmp/wwboot-bench-image, shared with
#      bench/image), BENCH_OUT (default /dev/shm/wwboot-bench-compress),
#      BENCH_COMPS (default "gzip:6 zstd:3 zstd:9 zstd:19"),
#      BENCH_ROUNDS (decompression rounds, best kept; default 3).
set -euo pipefail
cd "$(dirname "$0")/../.."
WORK=${BENCH_WORK:-/var/tmp/wwboot-bench-image}
OUT=${BENCH_OUT:-/dev/shm/wwboot-bench-compress}
COMPS=${BENCH_COMPS:-gzip:6 zstd:3 zstd:9 zstd:19}
ROUNDS=${BENCH_ROUNDS:-3}
for tool in gzip zstd /usr/bin/time; do
	command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install gzip zstd time)"; exit 1; }
done
mkdir -p "$WORK" "$OUT"
go build -o "$WORK/wwboot" ./cmd/wwboot

TREE=${BENCH_TREE:-}
if [ -z "$TREE" ]; then
	TREE=$(ls -d /var/cache/wwboot-test/*/root 2>/dev/null | head -1 || true)
fi
if [ -z "$TREE" ]; then
	TREE=$WORK/tree
	if [ ! -e "$TREE/.complete" ]; then
		rm -rf "$TREE"
		mkdir -p "$TREE/usr/lib"
		cp -a /usr/share /usr/bin /usr/include "$TREE/usr/"
		cp -a /usr/lib/python3 "$TREE/usr/lib/" 2>/dev/null || true
		touch -d '2024-01-01' "$TREE/.complete"
	fi
fi
bytes=$(du -sb "$TREE" | cut -f1)
files=$(find "$TREE" | wc -l)
echo "tree: $TREE  $((bytes / 1000000)) MB, $files entries; $(nproc) CPUs"
tar -C "$TREE" -cf - . | cat >/dev/null # page cache

# seconds CMD: prints "WALL CPU" of one run of CMD.
seconds() {
	/usr/bin/time -f "%e %U %S" -o "$OUT/time.txt" bash -c "$1" >/dev/null
	awk '{printf "%s %.2f\n", $1, $2 + $3}' "$OUT/time.txt"
}

declare -A BWALL BCPU SIZE DWALL DCPU
for c in $COMPS; do
	comp=${c%%:*} level=${c##*:}
	rm -rf "$OUT/store"
	read -r BWALL[$c] BCPU[$c] < <(seconds "$WORK/wwboot --root $OUT/store image import $TREE bench --compress $comp --level $level")
	img=$(ls "$OUT"/store/images/blobs/sha256-*.cpio.* | head -1)
	SIZE[$c]=$(stat -c %s "$img")
	dec="gzip -dc"
	[ "$comp" = zstd ] && dec="zstd -dcq"
	# Best of ROUNDS, by CPU time: on a shared machine the CPU seconds of
	# a single-threaded run are steadier than its wall time.
	best=""
	for ((i = 0; i < ROUNDS; i++)); do
		read -r w cpu < <(seconds "$dec $img >/dev/null")
		if [ -z "$best" ] || awk -v a="$cpu" -v b="$best" 'BEGIN{exit !(a<b)}'; then best=$cpu DWALL[$c]=$w; fi
	done
	DCPU[$c]=$best
	echo "  $c: built in ${BWALL[$c]} s (${BCPU[$c]} CPU-s), $((SIZE[$c] / 1048576)) MiB, unpacks in ${DCPU[$c]} CPU-s (${DWALL[$c]} s wall)"
done
rm -rf "$OUT/store"

first=${COMPS%% *}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (b > 0) printf "%.2f", a / b; else print "-" }'; }
echo
printf "%-9s %8s %8s %9s %8s %10s %11s %10s %11s\n" "" "build s" "CPU-s" "size MiB" "1Gb/s s" "unpack CPU" "size ratio" "build CPU" "unpack CPU"
for c in $COMPS; do
	xfer=$(awk -v s="${SIZE[$c]}" 'BEGIN{printf "%.1f", s / 125e6}')
	printf "%-9s %8s %8s %9s %8s %10s %11s %10s %11s\n" "$c" "${BWALL[$c]}" "${BCPU[$c]}" "$((SIZE[$c] / 1048576))" "$xfer" "${DCPU[$c]}" \
		"$(ratio "${SIZE[$c]}" "${SIZE[$first]}")" "$(ratio "${BCPU[$c]}" "${BCPU[$first]}")" "$(ratio "${DCPU[$c]}" "${DCPU[$first]}")"
done
echo "(ratios: this row / $first; unpack CPU = CPU seconds of a single-threaded decompression of the whole"
echo " image, best of $ROUNDS: the proxy for the kernel's share of the boot)"
