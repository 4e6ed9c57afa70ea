#!/bin/bash
# TFTP throughput: wwboot's tftp package against dnsmasq's TFTP server,
# side by side in one run, on the same veth pair, with real clients (curl
# and atftp), at blksize 1468 and 512.
#
# Both servers run at once in one network namespace on two addresses of the
# same veth (wwboot 10.70.0.1, dnsmasq 10.70.0.3); the clients run in a
# second namespace. Runs alternate between the servers so that noise from
# other load on the machine hits both alike. Prints MB/s (1 MB = 10^6 bytes)
# per run, the median per server, and the ratio wwboot/dnsmasq.
#
# Needs root, iproute2, curl, atftp, dnsmasq, go. On demand only:
#   bench/tftp/run.sh            # SIZE_MB=100 RUNS=3 by default
#   SIZE_MB=200 RUNS=5 bench/tftp/run.sh
set -euo pipefail

SIZE_MB=${SIZE_MB:-100}
RUNS=${RUNS:-3}
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
work=$(mktemp -d /tmp/wwboot-tftp-bench.XXXXXX)
ns_s=wwbtb-s-$$
ns_c=wwbtb-c-$$
pids=()

cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	ip netns del "$ns_s" 2>/dev/null || true
	ip netns del "$ns_c" 2>/dev/null || true
	rm -rf "$work"
}
trap cleanup EXIT

for tool in ip curl atftp dnsmasq go; do
	command -v "$tool" >/dev/null || { echo "run.sh: $tool not installed" >&2; exit 1; }
done
[ "$(id -u)" = 0 ] || { echo "run.sh: needs root (network namespaces)" >&2; exit 1; }

echo "# building wwboot-tftp"
(cd "$repo" && go build -o "$work/wwboot-tftp" ./bench/tftp/wwboot-tftp)

mkdir -p "$work/root"
head -c "$((SIZE_MB * 1000000))" /dev/urandom >"$work/root/big.bin"
want=$(sha256sum <"$work/root/big.bin" | cut -d' ' -f1)
size=$(stat -c %s "$work/root/big.bin")

ip netns add "$ns_s"
ip netns add "$ns_c"
ip -n "$ns_s" link set lo up
ip -n "$ns_c" link set lo up
ip link add wwbtb-a$$ type veth peer name wwbtb-b$$
ip link set wwbtb-a$$ netns "$ns_s" name srv0
ip link set wwbtb-b$$ netns "$ns_c" name cli0
ip -n "$ns_s" addr add 10.70.0.1/24 dev srv0
ip -n "$ns_s" addr add 10.70.0.3/24 dev srv0
ip -n "$ns_c" addr add 10.70.0.2/24 dev cli0
ip -n "$ns_s" link set srv0 up
ip -n "$ns_c" link set cli0 up

ip netns exec "$ns_s" "$work/wwboot-tftp" -dir "$work/root" -addr 10.70.0.1:69 2>"$work/wwboot.log" &
pids+=($!)
declare -A pid_of=([wwboot]=$!)
ip netns exec "$ns_s" dnsmasq --keep-in-foreground --conf-file=/dev/null --port=0 \
	--enable-tftp --tftp-root="$work/root" --listen-address=10.70.0.3 --bind-interfaces \
	--user=root --group=root --pid-file="$work/dnsmasq.pid" --log-facility="$work/dnsmasq.log" &
pids+=($!)
pid_of[dnsmasq]=$!
sleep 1

declare -A ip_of=([wwboot]=10.70.0.1 [dnsmasq]=10.70.0.3)

# fetch SERVER CLIENT BLKSIZE OUT: one transfer; prints seconds taken.
fetch() {
	local srv=${ip_of[$1]} client=$2 blk=$3 out=$4 t0 t1
	t0=$(date +%s.%N)
	case $client in
	curl) ip netns exec "$ns_c" curl -sS --tftp-blksize "$blk" -o "$out" "tftp://$srv/big.bin" ;;
	atftp) ip netns exec "$ns_c" atftp --option "blksize $blk" -g -r big.bin -l "$out" "$srv" 69 >/dev/null 2>&1 ;;
	esac
	t1=$(date +%s.%N)
	echo "$t1 - $t0" | bc -l
}

# Correctness first: each server, each client, byte-identical.
for s in wwboot dnsmasq; do
	for c in curl atftp; do
		fetch "$s" "$c" 1468 "$work/check.bin" >/dev/null
		got=$(sha256sum <"$work/check.bin" | cut -d' ' -f1)
		[ "$got" = "$want" ] || { echo "run.sh: $s via $c: sha256 mismatch" >&2; exit 1; }
		rm -f "$work/check.bin"
	done
done

# cpu_ticks PID: user+sys clock ticks the process has used.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)

median() { sort -g | awk '{a[NR]=$1} END {print (NR%2) ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2}'; }

echo "# file ${SIZE_MB} MB, ${RUNS} runs per cell, veth MTU 1500; MB/s (10^6 bytes/s); $(nproc) cores shared with other work: figures are noisy"
printf "%-7s %-6s %-8s %s\n" client blksize server "per-run figures -> median"
for c in curl atftp; do
	for blk in 1468 512; do
		declare -A res=() cpu=()
		for r in $(seq "$RUNS"); do
			for s in wwboot dnsmasq; do
				c0=$(cpu_ticks "${pid_of[$s]}")
				secs=$(fetch "$s" "$c" "$blk" /dev/null)
				c1=$(cpu_ticks "${pid_of[$s]}")
				res[$s]+="$(echo "$size / $secs / 1000000" | bc -l | xargs printf '%.1f') "
				cpu[$s]+="$(echo "($c1 - $c0) / $hz" | bc -l | xargs printf '%.2f') "
			done
		done
		declare -A med=() cmed=()
		for s in wwboot dnsmasq; do
			med[$s]=$(echo "${res[$s]}" | tr ' ' '\n' | grep . | median)
			cmed[$s]=$(echo "${cpu[$s]}" | tr ' ' '\n' | grep . | median)
			printf "%-7s %-6s %-8s MB/s %s-> %s   server CPU s %s-> %s\n" "$c" "$blk" "$s" "${res[$s]}" "${med[$s]}" "${cpu[$s]}" "${cmed[$s]}"
		done
		printf "%-7s %-6s ratio wwboot/dnsmasq: MB/s %.2f, CPU per transfer %.2f\n" "$c" "$blk" \
			"$(echo "${med[wwboot]} / ${med[dnsmasq]}" | bc -l)" "$(echo "${cmed[wwboot]} / ${cmed[dnsmasq]}" | bc -l)"
		unset res med cpu cmed
	done
done
