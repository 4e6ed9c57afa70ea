#!/usr/bin/env bash
# On-demand fuzzing: runs EVERY Go fuzz target in the repository, one after the
# other, each for FUZZTIME, and leaves what it finds as seed files under the
# target's testdata/fuzz/FuzzXxx/ (go test writes a failing input there), to be
# committed so that every later `go test` replays it.
#
#   scripts/fuzz.sh                 # every target, 60s each
#   scripts/fuzz.sh -list           # print "package target" for every target, run nothing
#   FUZZTIME=5m scripts/fuzz.sh overlay tftp  # only the targets under these directories
#
# Settings (environment):
#   FUZZTIME          time (or Nx runs) per target; default 60s
#   FUZZMINIMIZETIME  time (or Nx runs) to minimize a failing input; default 10x.
#                     Go's default (60s) is spent on every new corpus entry too:
#                     a 90-s run once spent all of it minimizing and missed a
#                     crasher that 10x finds in 15 s (issue 11 item 8).
#   FUZZPARALLEL      fuzzing workers per target; default 1 (the machine is shared)
#
# Exit status: 0 when no target failed; 1 when one did (its input is under
# testdata/fuzz, listed at the end; fix the bug, keep the file as a seed).
set -euo pipefail
cd "$(dirname "$0")/.."
fuzztime=${FUZZTIME:-60s}
minimize=${FUZZMINIMIZETIME:-10x}
parallel=${FUZZPARALLEL:-1}

list=0
if [ "${1:-}" = "-list" ]; then
	list=1
	shift
fi
dirs=("$@")
[ ${#dirs[@]} -gt 0 ] || dirs=(.)

# Every "func FuzzXxx(f *testing.F)" in a _test.go file, found by reading the
# source (nothing is compiled or run to list them), as "./dir FuzzXxx".
targets=()
while IFS=: read -r file name; do
	targets+=("./$(dirname "$file") $name")
done < <(find "${dirs[@]}" -name '*_test.go' -not -path '*/testdata/*' -print0 |
	xargs -0 grep -HoE '^func Fuzz[A-Za-z0-9_]*\(' |
	sed -E 's/:func (Fuzz[A-Za-z0-9_]*)\($/:\1/; s|^\./||' | sort -u)

if [ ${#targets[@]} -eq 0 ]; then
	echo "fuzz.sh: no fuzz targets under ${dirs[*]}" >&2
	exit 1
fi
if [ $list = 1 ]; then
	printf '%s\n' "${targets[@]}"
	exit 0
fi

failed=()
for t in "${targets[@]}"; do
	read -r pkg name <<<"$t"
	echo "=== $pkg $name (fuzztime $fuzztime, minimize $minimize)"
	if ! go test "$pkg" -run '^$' -fuzz "^${name}\$" -fuzztime "$fuzztime" \
		-fuzzminimizetime "$minimize" -parallel "$parallel"; then
		failed+=("$pkg $name")
	fi
done

echo
echo "fuzz.sh: ${#targets[@]} targets, ${#failed[@]} failed"
if [ ${#failed[@]} -gt 0 ]; then
	printf '  failed: %s\n' "${failed[@]}"
	echo "new seeds (commit them with the fix):"
	git status --porcelain --untracked-files=all -- '*testdata/fuzz/*' | sed 's/^/  /'
	exit 1
fi
