#!/usr/bin/env bash
# Image build benchmark, run on demand (not a CI pass/fail):
#
#   wwboot image import (gzip)   vs  find . | cpio -o -H newc | pigz -6
#   wwboot image import (zstd)   vs  find . | cpio -o -H newc | zstd -T0 -3
#
# on one generated tree of >= 1 GB and >= 50,000 files (copies of the host's
# /usr/share, /usr/bin, /usr/include, /usr/lib/python3: real text, binaries and
# already-compressed files), side by side in one run. Reports wall time, CPU
# time (user+sys), peak RSS, output size and ratios; then the unchanged-tree
# rebuild; then (BENCH_MULTI=1, default) a multi-GB tree for peak RSS.
#
# Outputs go to tmpfs (BENCH_OUT) so that neither side waits on the disk;
# the tree is read once beforehand so both read it from the page cache.
#
# Env: BENCH_WORK (tree + binary, default /var/tmp/wwboot-bench-image),
#      BENCH_OUT (outputs, default /dev/shm/wwboot-bench-image),
#      BENCH_ROUNDS (default 1; the best wall time of the rounds is kept),
#      BENCH_MULTI (1 = also build a multi-GB tree, default 1).
set -euo pipefail
cd "$(dirname "$0")/../.."
WORK=${BENCH_WORK:-/var/tmp/wwboot-bench-image}
OUT=${BENCH_OUT:-/dev/shm/wwboot-bench-image}
ROUNDS=${BENCH_ROUNDS:-1}
MULTI=${BENCH_MULTI:-1}
for tool in cpio pigz zstd gzip find /usr/bin/time; do
	command -v "$tool" >/dev/null || { echo "missing $tool (apt-get install cpio pigz zstd gzip time)"; exit 1; }
done
mkdir -p "$WORK" "$OUT"
go build -o "$WORK/wwboot" ./cmd/wwboot

TREE=$WORK/tree
if [ ! -e "$TREE/.complete" ]; then
	rm -rf "$TREE"
	mkdir -p "$TREE/usr/lib"
	cp -a /usr/share /usr/bin /usr/include "$TREE/usr/"
	cp -a /usr/lib/python3 "$TREE/usr/lib/" 2>/dev/null || true
	touch -d '2024-01-01' "$TREE/.complete"
fi
bytes=$(du -sb --exclude=.complete "$TREE" | cut -f1)
files=$(find "$TREE" | wc -l)
echo "tree: $TREE  $((bytes / 1000000)) MB, $files entries"
[ "$bytes" -ge 1000000000 ] && [ "$files" -ge 50000 ] || { echo "tree too small"; exit 1; }
# Warm the page cache (tar to /dev/null would skip reading).
tar -C "$TREE" -cf - . | cat >/dev/null

# measure NAME OUTPUT CMD: runs CMD ROUNDS times, keeps the best wall time.
declare -A WALL CPU RSS SIZE
measure() {
	local name=$1 output=$2 cmd=$3 best="" i
	for ((i = 0; i < ROUNDS; i++)); do
		rm -rf "$OUT/store" "$output"
		/usr/bin/time -f "%e %U %S %M" -o "$OUT/time.txt" bash -c "$cmd" >/dev/null
		read -r wall user sys rss <"$OUT/time.txt"
		if [ -z "$best" ] || awk -v a="$wall" -v b="$best" 'BEGIN{exit !(a<b)}'; then
			best=$wall
			WALL[$name]=$wall
			CPU[$name]=$(awk -v u="$user" -v s="$sys" 'BEGIN{printf "%.2f", u+s}')
			RSS[$name]=$((rss / 1024))
			local f=$output
			[ -e "$f" ] || f=$(ls "$OUT"/store/images/blobs/*.cpio.* 2>/dev/null | head -1)
			SIZE[$name]=$(stat -c %s "$f")
			cp --reflink=auto "$f" "$OUT/last-$name" 2>/dev/null || true
		fi
	done
}

WW="$WORK/wwboot --root $OUT/store image import $TREE bench --no-default-excludes"
measure wwboot-gzip "$OUT/none" "$WW --compress gzip --level 6"
measure pigz-pipeline "$OUT/pigz.cpio.gz" "cd $TREE && find . | cpio -o -H newc --quiet | pigz -6 > $OUT/pigz.cpio.gz"
measure wwboot-zstd "$OUT/none" "$WW --compress zstd --level 3"
measure zstd-pipeline "$OUT/zstd.cpio.zst" "cd $TREE && find . | cpio -o -H newc --quiet | zstd -T0 -3 -q > $OUT/zstd.cpio.zst"

# The outputs are valid for the system tools.
gzip -t "$OUT/last-wwboot-gzip"
zstd -tq "$OUT/last-wwboot-zstd"

# Unchanged tree: one metadata walk.
rm -rf "$OUT/store"
$WW --compress gzip >/dev/null
/usr/bin/time -f "%e %U %S %M" -o "$OUT/time.txt" "$WORK/wwboot" --root "$OUT/store" image build bench >"$OUT/rebuild.txt"
read -r rwall ruser rsys rrss <"$OUT/time.txt"

echo
echo "machine: $(nproc) cores, load average $(cut -d' ' -f1-3 /proc/loadavg) (shared: timings are noisy)"
echo "input: $((bytes / 1000000)) MB in $files entries"
printf '%-15s %8s %8s %9s %10s %7s %9s\n' tool wall_s cpu_s rss_MB output_MB ratio speedup
row() {
	local name=$1 base=$2
	printf '%-15s %8s %8s %9s %10.1f %7.2f %9s\n' "$name" "${WALL[$name]}" "${CPU[$name]}" "${RSS[$name]}" \
		"$(awk -v s="${SIZE[$name]}" 'BEGIN{print s/1000000}')" \
		"$(awk -v b="$bytes" -v s="${SIZE[$name]}" 'BEGIN{print b/s}')" \
		"$(awk -v a="${WALL[$base]}" -v b="${WALL[$name]}" 'BEGIN{printf "%.2fx", a/b}')"
}
row pigz-pipeline pigz-pipeline
row wwboot-gzip pigz-pipeline
row zstd-pipeline zstd-pipeline
row wwboot-zstd zstd-pipeline
echo "unchanged rebuild: ${rwall}s wall, $(awk -v u="$ruser" -v s="$rsys" 'BEGIN{printf "%.2f", u+s}')s CPU: $(cat "$OUT/rebuild.txt")"

if [ "$MULTI" = 1 ]; then
	BIG=$WORK/bigtree
	if [ ! -e "$BIG/.complete" ]; then
		rm -rf "$BIG"
		mkdir -p "$BIG/usr/lib" "$BIG/copy"
		cp -a /usr/share /usr/bin /usr/include /usr/local/go "$BIG/usr/"
		cp -a /usr/lib/x86_64-linux-gnu /usr/lib/gcc "$BIG/usr/lib/"
		cp -a /usr/share "$BIG/copy/"
		touch -d '2024-01-01' "$BIG/.complete"
	fi
	bbytes=$(du -sb "$BIG" | cut -f1)
	bfiles=$(find "$BIG" | wc -l)
	rm -rf "$OUT/store"
	/usr/bin/time -f "%e %U %S %M" -o "$OUT/time.txt" "$WORK/wwboot" --root "$OUT/store" image import "$BIG" big --no-default-excludes >/dev/null
	read -r bwall buser bsys brss <"$OUT/time.txt"
	bsize=$(stat -c %s "$OUT"/store/images/blobs/*.cpio.gz)
	echo "multi-GB tree: $((bbytes / 1000000)) MB in $bfiles entries -> $((bsize / 1000000)) MB gzip in ${bwall}s wall," \
		"$(awk -v u="$buser" -v s="$bsys" 'BEGIN{printf "%.1f", u+s}')s CPU, peak RSS $((brss / 1024)) MB" \
		"(1 GB tree: ${RSS[wwboot-gzip]} MB)"
	rm -rf "$OUT/store"
fi
rm -rf "$OUT"
