#!/usr/bin/env bash
# DHCP throughput: wwboot's dhcp package against dnsmasq, side by side in one
# run, on the same veth pair between two network namespaces, driven by
# perfdhcp (Debian package kea-admin) as fast as it can send (no -r).
# perfdhcp acts as a relay agent (giaddr set, replies to port 67), so this
# measures the relayed DORA path. Two scenarios:
#   hosts: every client is a known node (wwboot: inventory lookup; dnsmasq:
#          dhcp-hostsfile entries). Neither writes a lease file (dnsmasq
#          runs --leasefile-ro): the inventory is the record.
#   pool:  every client is unknown and gets a dynamic address that is saved
#          to a lease file before the ACK (both servers)
# Two measurements per scenario:
#   flood:  perfdhcp without -r (as fast as it can); completed exchanges/s,
#           median of ROUNDS runs, servers alternating.
#   ladder: perfdhcp -r R for R in LADDER; the highest R each server
#           completes at >= 98% (sustained rate without loss).
# Run as root: bench/dhcp/run.sh
#   env: DURATION=10 CLIENTS=10000 ROUNDS=3 SCENARIOS="hosts pool"
#        LADDER="250 500 1000 2000 4000 8000 16000" (empty: skip the ladder)
# Timings are noisy on a shared machine: compare the servers within one run.
set -euo pipefail

DURATION=${DURATION:-10}
CLIENTS=${CLIENTS:-10000}
ROUNDS=${ROUNDS:-3}
LADDER=${LADDER-"250 500 1000 2000 4000 8000 16000"}
SCENARIOS=${SCENARIOS:-"hosts pool"}
PERFDHCP=${PERFDHCP:-$(command -v perfdhcp || echo /usr/sbin/perfdhcp)}

[ "$(id -u)" = 0 ] || { echo "run as root (network namespaces)" >&2; exit 1; }
for t in ip dnsmasq go "$PERFDHCP"; do
	command -v "$t" >/dev/null || { echo "missing $t (apt-get install iproute2 dnsmasq kea-admin)" >&2; exit 1; }
done
(( CLIENTS <= 254 * 256 )) || { echo "CLIENTS must be <= 65024" >&2; exit 1; }

root=$(cd "$(dirname "$0")/../.." && pwd)
tmp=$(mktemp -d /tmp/wwboot-dhcp-bench.XXXXXX)
sns=wwbs-$$ cns=wwbc-$$
server_pid=

cleanup() {
	if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; wait "$server_pid" 2>/dev/null || true; fi
	ip netns del "$sns" 2>/dev/null || true
	ip netns del "$cns" 2>/dev/null || true
	[ -n "${KEEP:-}" ] || rm -rf "$tmp"
}
trap cleanup EXIT

go build -C "$root" -o "$tmp/wwboot-dhcp" ./bench/dhcp/wwboot-dhcp

ip netns add "$sns"
ip netns add "$cns"
ip link add "wwbs$$" type veth peer name "wwbc$$"
ip link set "wwbs$$" netns "$sns" name eth0
ip link set "wwbc$$" netns "$cns" name eth0
ip -n "$sns" addr add 10.78.0.1/16 dev eth0
ip -n "$cns" addr add 10.78.0.2/16 dev eth0
for ns in "$sns" "$cns"; do ip -n "$ns" link set lo up; ip -n "$ns" link set eth0 up; done

# The known nodes: MAC 00:0c:01:00:yy:zz is at 10.78.(yy+1).zz, the mapping
# wwboot-dhcp -mode hosts computes.
for ((i = 0; i < CLIENTS; i++)); do
	printf '00:0c:01:00:%02x:%02x,10.78.%d.%d\n' $((i >> 8)) $((i & 255)) $(((i >> 8) + 1)) $((i & 255))
done >"$tmp/dnsmasq.hosts"

start_wwboot() { # scenario
	rm -f "$tmp/leases"
	ip netns exec "$sns" "$tmp/wwboot-dhcp" -iface eth0 -mode "$1" -leasefile "$tmp/leases" 2>"$tmp/server.log" &
	server_pid=$!
}

start_dnsmasq() { # scenario
	rm -f "$tmp/dnsmasq.leases"
	local range=(--dhcp-range=10.78.0.0,static,255.255.0.0,1h --dhcp-hostsfile="$tmp/dnsmasq.hosts" --leasefile-ro)
	[ "$1" = pool ] && range=(--dhcp-range=10.78.1.0,10.78.255.254,255.255.0.0,1h --dhcp-leasefile="$tmp/dnsmasq.leases")
	ip netns exec "$sns" dnsmasq --no-daemon --conf-file=/dev/null --port=0 --interface=eth0 --bind-interfaces \
		--pid-file= --dhcp-authoritative --no-ping --quiet-dhcp --log-facility=- --dhcp-lease-max=70000 \
		--dhcp-boot=undionly.kpxe,,10.78.0.1 "${range[@]}" 2>"$tmp/server.log" &
	server_pid=$!
}

stop_server() {
	kill "$server_pid"
	wait "$server_pid" 2>/dev/null || true
	server_pid=
}

# perf [rate] prints completed 4-way exchanges per second and the drop ratios.
perf() {
	ip netns exec "$cns" "$PERFDHCP" -4 -l eth0 ${1:+-r "$1"} -R "$CLIENTS" -b mac=00:0c:01:00:00:00 -p "$DURATION" -d 1 10.78.0.1 >"$tmp/perf.out" 2>&1 || true
	local rate drops
	rate=$(awk '/^Rate:/ {print $2; exit}' "$tmp/perf.out")
	drops=$(awk '/drops ratio:/ {printf "%s%s ", $3, $4}' "$tmp/perf.out")
	if [ -z "$rate" ]; then
		echo "perfdhcp failed:" >&2; cat "$tmp/perf.out" >&2; cat "$tmp/server.log" >&2; exit 1
	fi
	echo "$rate $drops"
}

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }

echo "perfdhcp $("$PERFDHCP" -v 2>&1 | head -1), dnsmasq $(dnsmasq --version | head -1 | awk '{print $3}'), $(go version | awk '{print $3}')"
echo "clients=$CLIENTS duration=${DURATION}s rounds=$ROUNDS cpus=$(nproc) lease dir fs=$(stat -f -c %T "$tmp")"
for sc in $SCENARIOS; do
	: >"$tmp/ww.rates"; : >"$tmp/dm.rates"
	for ((r = 1; r <= ROUNDS; r++)); do
		for srv in wwboot dnsmasq; do
			"start_$srv" "$sc"
			sleep 0.5
			read -r rate drops < <(perf)
			stop_server
			printf '%-6s round %d %-8s %10.1f exchanges/s   drops (DO, RA): %s\n' "$sc" "$r" "$srv" "$rate" "$drops"
			[ "$srv" = wwboot ] && echo "$rate" >>"$tmp/ww.rates" || echo "$rate" >>"$tmp/dm.rates"
		done
	done
	ww=$(median <"$tmp/ww.rates") dm=$(median <"$tmp/dm.rates")
	printf '%-6s flood median: wwboot %.1f/s, dnsmasq %.1f/s, ratio wwboot/dnsmasq %.2f\n' "$sc" "$ww" "$dm" "$(echo "$ww / $dm" | bc -l)"
	[ -n "$LADDER" ] || continue
	declare -A best=([wwboot]=0 [dnsmasq]=0)
	for srv in wwboot dnsmasq; do
		for R in $LADDER; do
			"start_$srv" "$sc"
			sleep 0.5
			read -r rate drops < <(perf "$R")
			stop_server
			ok=$(echo "$rate >= 0.98 * $R" | bc -l)
			printf '%-6s ladder %-8s offered %6d/s completed %10.1f/s   drops (DO, RA): %s\n' "$sc" "$srv" "$R" "$rate" "$drops"
			[ "$ok" = 1 ] || break
			best[$srv]=$R
		done
	done
	printf '%-6s ladder: highest rate completed >= 98%%: wwboot %d/s, dnsmasq %d/s\n' "$sc" "${best[wwboot]}" "${best[dnsmasq]}"
	unset best
done
