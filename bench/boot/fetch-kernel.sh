#!/usr/bin/env bash
# Download Debian's current amd64 kernel (linux-image-amd64 and the versioned
# package it depends on) with apt-get download and extract the kernel and the
# network/virtio modules into a cache directory; print that directory.
# The e2e test (provision/e2e) does the same by itself; this is for by-hand runs.
#   usage: bench/boot/fetch-kernel.sh [CACHE_DIR]   (default: ${XDG_CACHE_HOME:-$HOME/.cache}/wwboot-test/kernel)
set -euo pipefail
dir=${1:-${XDG_CACHE_HOME:-$HOME/.cache}/wwboot-test/kernel}
if [ -f "$dir/COMPLETE" ]; then echo "$dir"; exit 0; fi
deb=$(mktemp -d); trap 'rm -rf "$deb"' EXIT
cd "$deb"
apt-get download -q linux-image-amd64 >/dev/null 2>&1 || { apt-get update -qq; apt-get download -q linux-image-amd64 >/dev/null; }
pkg=$(dpkg-deb -f linux-image-amd64_*.deb Depends | cut -d, -f1 | awk '{print $1}')
apt-get download -q "$pkg" >/dev/null
rm -rf "$dir.tmp"; mkdir -p "$dir.tmp"
dpkg-deb --fsys-tarfile "$pkg"_*.deb | tar -x -C "$dir.tmp" --wildcards --no-anchored \
  'boot/vmlinuz-*' '*/kernel/drivers/net/*' '*/kernel/drivers/virtio/*' '*/kernel/net/core/*'
rm -rf "$dir"; mv "$dir.tmp" "$dir"
basename "$dir"/boot/vmlinuz-* | sed 's/^vmlinuz-//' > "$dir/COMPLETE"
echo "$dir"
