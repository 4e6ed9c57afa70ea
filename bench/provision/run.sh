#!/bin/sh
# Benchmarks of the provisioning HTTP service, on demand (not a test):
#
#  1. iPXE script requests per second with NODES (10,000) nodes in the
#     inventory, every request for another node (wrk, macs.lua).
#  2. Image download throughput with CLIENTS (100) concurrent clients, against
#     nginx serving the same file (sendfile on) in the same run.
#
# Needs wrk and nginx (apt-get install wrk nginx). Both servers and wrk share
# the machine's cores: figures are relative, compare the two side by side.
# Usage: bench/provision/run.sh [DURATION]   (default 10s)
set -eu
here=$(cd "$(dirname "$0")" && pwd)
dur=${1:-10s}
NODES=${NODES:-10000}
CLIENTS=${CLIENTS:-100}
SIZE_MB=${SIZE_MB:-64}
export NODES
tmp=$(mktemp -d)
trap 'kill $srv $flr $ngx 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$tmp"' EXIT INT TERM

cd "$here/../.."
go build -o "$tmp/wwboot-provision" ./bench/provision/wwboot-provision
go build -o "$tmp/nethttp-floor" ./bench/provision/nethttp-floor
head -c $((SIZE_MB << 20)) /dev/urandom > "$tmp/image.cpio.gz"

"$tmp/wwboot-provision" -addr 127.0.0.1:19873 -nodes "$NODES" -image "$tmp/image.cpio.gz" &
srv=$!
"$tmp/nethttp-floor" -addr 127.0.0.1:19872 &
flr=$!
mkdir -p "$tmp/www" && ln "$tmp/image.cpio.gz" "$tmp/www/image"
cat > "$tmp/nginx.conf" <<NGX
user root;
worker_processes 2;
pid $tmp/nginx.pid;
error_log $tmp/nginx-error.log;
daemon off;
events { worker_connections 4096; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  keepalive_requests 1000000;
  client_body_temp_path $tmp/body; proxy_temp_path $tmp/proxy; fastcgi_temp_path $tmp/fcgi;
  uwsgi_temp_path $tmp/uwsgi; scgi_temp_path $tmp/scgi;
  server { listen 127.0.0.1:19874; root $tmp/www; location / { default_type application/octet-stream; } }
}
NGX
nginx -c "$tmp/nginx.conf" &
ngx=$!
for i in $(seq 50); do
  curl -sf -o /dev/null http://127.0.0.1:19873/healthz && curl -sf -o /dev/null -r 0-0 http://127.0.0.1:19874/image && break
  sleep 0.2
done
nproc_=$(nproc)
echo "== $(date -u +%FT%TZ) $nproc_ cores, $(go version | cut -d' ' -f3), $(wrk -v 2>&1 | head -1 | cut -d' ' -f1-2), $(nginx -v 2>&1)"

# cpu PID: user+system CPU seconds the process (and its threads) used so far.
cpu() { awk -v hz="$(getconf CLK_TCK)" '{printf "%.2f\n", ($14+$15)/hz}' "/proc/$1/stat"; }

echo "== 1. iPXE scripts: $NODES nodes, wrk -t2 -c64 -d$dur, every request another node"
curl -sf -o /dev/null http://127.0.0.1:19873/ipxe/52-54-00-00-27-10 || { echo "no script for node 10000"; exit 1; }
echo "-- cold: the first request of each node renders its script (warm-up run, 5s)"
wrk -t2 -c64 -d5s -s "$here/macs.lua" http://127.0.0.1:19873 | grep -E "Requests/sec|Non-2xx"
echo "-- warm: every script rendered once, as during a boot storm's retries"
c0=$(cpu $srv)
wrk -t2 -c64 -d"$dur" -s "$here/macs.lua" http://127.0.0.1:19873 | tee "$tmp/scripts.txt"
c1=$(cpu $srv)
echo "-- floor: bare net/http, fixed 1,200-byte body, same wrk settings"
wrk -t2 -c64 -d"$dur" http://127.0.0.1:19872/ | tee "$tmp/floor.txt" | grep Requests/sec

echo "== 2. image download, $SIZE_MB MiB file, $CLIENTS clients, wrk -t2 -c$CLIENTS -d$dur"
echo "-- wwboot /image/MAC"
curl -sf -o /dev/null http://127.0.0.1:19873/image/52-54-00-00-00-01 || { echo "wwboot does not serve the image"; exit 1; }
wrk -t2 -c"$CLIENTS" -d"$dur" --timeout 60s http://127.0.0.1:19873/image/52-54-00-00-00-01 | tee "$tmp/wwboot.txt"
echo "-- nginx (sendfile on, 2 workers)"
curl -sf -o /dev/null http://127.0.0.1:19874/image || { echo "nginx does not serve the image"; cat "$tmp/nginx-error.log"; exit 1; }
wrk -t2 -c"$CLIENTS" -d"$dur" --timeout 60s http://127.0.0.1:19874/image | tee "$tmp/nginx.txt"

tobytes() { awk '/Transfer\/sec/ {v=$2; u=substr(v, length(v)-1); n=substr(v, 1, length(v)-2);
  m=(u=="GB")?1073741824:(u=="MB")?1048576:(u=="KB")?1024:1; printf "%.0f\n", n*m}' "$1"; }
w=$(tobytes "$tmp/wwboot.txt"); g=$(tobytes "$tmp/nginx.txt")
rps=$(awk '/Requests\/sec/ {print $2}' "$tmp/scripts.txt")
reqs=$(awk '/requests in/ {print $1}' "$tmp/scripts.txt")
echo "== summary (load average: $(cut -d' ' -f1-3 /proc/loadavg))"
floor=$(awk '/Requests\/sec/ {print $2}' "$tmp/floor.txt")
echo "iPXE scripts/s ($NODES nodes): $rps over HTTP with wrk on the same cores; bare net/http floor $floor/s"
awk -v r="$reqs" -v a="$c0" -v b="$c1" 'BEGIN { printf "server CPU: %.2f s for %d requests = %.1f us/request, %.0f requests per CPU-second\n", b-a, r, (b-a)*1e6/r, r/(b-a) }'
awk -v w="$w" -v g="$g" 'BEGIN { printf "image throughput: wwboot %.0f MiB/s, nginx %.0f MiB/s, ratio %.2f\n", w/1048576, g/1048576, w/g }'
