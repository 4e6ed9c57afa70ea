#!/usr/bin/env bash
# Installs the Debian packages listed in .ci/packages that are missing, and the Go modules.
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
want=$(grep -v '^#' .ci/packages | xargs)
missing=""
for p in $want; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing="$missing $p"
done
if [ -n "$missing" ]; then
  echo "installing:$missing"
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi
# dnsmasq and nginx are benchmark baselines only: keep their services off the ports wwboot tests use.
for s in dnsmasq nginx; do systemctl disable --now "$s" >/dev/null 2>&1 || true; done
command -v go >/dev/null || export PATH=$PATH:/usr/local/go/bin
go mod download
