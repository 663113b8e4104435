#!/usr/bin/env bash
# The benchmark harness keeps working: bench/run --preset ci against this
# build prints its table with a number in every hgfleet figure and in the
# bound. Times are never judged here (benchmarks print, they do not pass or
# fail on speed); only that each figure was measured.
set -euo pipefail
# shellcheck source=tests/integration/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

tmp=$(hgf_tmpdir)
[[ -n ${HGF_BUILD_DIR:-} ]] || hgf_fail "HGF_BUILD_DIR is not set (run through ctest)"
for t in bench-lowerbound bench-rusage; do
  [[ -x $HGF_BUILD_DIR/$t ]] || hgf_fail "$HGF_BUILD_DIR/$t is missing: build the whole tree first"
done

# bench/run makes its own PostgreSQL and ecrsim, and cleans them up. Its
# scripts call python3 a dozen times: through a version manager's shim, that
# alone took seconds. The ci preset's fleet is cut further: only that every
# figure is measured counts here, and no figure needs more than a few images,
# push events or idle connections to be measured.
hgf_python_on_path
TMPDIR=$tmp "$HGF_SOURCE_DIR/bench/run" --preset ci --repos 2 --images 3 --push-events 20 \
  --idle-connections 200 --idle-seconds 1 --no-build --build-dir "$HGF_BUILD_DIR" \
  --results "$tmp/results" >"$tmp/table.txt" 2>"$tmp/run.err" ||
  hgf_fail "bench/run failed: $(tail -n 20 "$tmp/run.err")"
cat "$tmp/table.txt"

table=$(<"$tmp/table.txt")
hgf_assert_contains "$table" "figure" "the table has its header"
hgf_assert_contains "$table" "preset ci:" "the fleet is described"

# figure_cell ROW COLUMN: the cell of the first row starting with ROW.
figure_cell() {
  awk -F'|' -v row="$1" -v col="$2" 'index($1, row) == 1 { gsub(/^ +| +$/, "", $col); print $col; exit }' \
    "$tmp/table.txt"
}
number='^>?[0-9][0-9,]*(\.[0-9]+)?'
for row in "full sync: wall s" "full sync: CPU s" "full sync: peak RSS MiB" \
  "full sync: rows written (all)" "unchanged re-sync: wall s" \
  "unchanged re-sync: rows written (all)" "full sweep: wall s" "push->claim p50 ms" \
  "push->claim p99 ms" "idle serve CPU % core"; do
  cell=$(figure_cell "$row" 2)
  [[ $cell =~ $number ]] || hgf_fail "no number for '$row' (got '$cell')"
done
bound=$(figure_cell "full sync: wall s" 3)
[[ $bound =~ ^bound\ [0-9.]+\ \(fetch\ [0-9.]+\ \+\ COPY\ [0-9.]+\)$ ]] ||
  hgf_fail "the bound is not fetch + COPY: '$bound'"
# The baseline needs the npm registry (scripts/fetch-awscli); without it the
# harness says n/a rather than failing, and so does this test.
boto=$(figure_cell "full sync vs boto: wall s" 3)
[[ $boto =~ ^boto\ [0-9.]+$ || $boto == n/a ]] || hgf_fail "bad baseline cell: '$boto'"

# The sync's WAL is counted (pg_stat_wal), so a row count can be told from
# the bytes it cost: the note follows the sync's CPU line.
wal=$(grep -A1 -- '- during sync (' "$tmp/table.txt" | sed -n 2p)
[[ $wal =~ WAL:\ [1-9][0-9,]*\ records,\ [0-9,]+\ full-page\ images,\ [0-9.,]+\ MiB\;\ [0-9,]+\ checkpoints ]] ||
  hgf_fail "no WAL figures for the sync: '$wal'"

# Every process the harness started is gone with it.
if pgrep -f "$tmp/" >/dev/null; then hgf_fail "bench/run left processes behind"; fi
echo "PASS: bench"
