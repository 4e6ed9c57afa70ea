#!/usr/bin/env bash
# Every test wwboot has: formatting, a tidy go.mod, vet, and the race-enabled test suite, including
# the network tests in namespaces and the QEMU boot. Installs what the tests need.
set -euo pipefail
cd "$(dirname "$0")"
./scripts/install-deps.sh
unformatted=$(gofmt -l $(git ls-files '*.go' 2>/dev/null || find . -name '*.go'))
if [ -n "$unformatted" ]; then echo "gofmt needed:"; echo "$unformatted"; exit 1; fi
# go.mod and go.sum must be exactly what `go mod tidy` writes (direct requirements listed
# as direct, nothing unused); -diff prints the change and exits non-zero without writing.
if ! go mod tidy -diff; then echo "go.mod/go.sum are not tidy: run 'go mod tidy' and commit both"; exit 1; fi
go vet ./...
# Tests mount, chroot and unshare as root: a test that leaks a mount or
# deletes through one breaks the machine for every later test. Check the
# device nodes they could hit, before and after.
devnodes() { for d in /dev/null /dev/zero /dev/urandom /dev/tty; do [ -c "$d" ] || echo "$d"; done; }
bad=$(devnodes); if [ -n "$bad" ]; then echo "not character devices before the tests: $bad"; exit 1; fi
rc=0
go test -race -timeout 80m ./... || rc=$?
bad=$(devnodes); if [ -n "$bad" ]; then echo "a test replaced or removed: $bad"; exit 1; fi
exit $rc
