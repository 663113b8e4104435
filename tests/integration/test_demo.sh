#!/usr/bin/env bash
# `hgfleet demo` is the README's main job: it must sync a simulated
# organization on its own throwaway PostgreSQL and leave nothing behind.
set -euo pipefail
# shellcheck source=tests/integration/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

before=$(find /tmp -maxdepth 1 -name 'hgfleet-demo-??????' | wc -l)
hgf_expect_exit 0 env -u HGFLEET_DATABASE_URL ECRSIM_BIN="$ECRSIM_BIN" \
  "$HGFLEET_BIN" demo --accounts 3 --regions us-east-1,eu-west-1
echo "$HGF_OUT"
rows=$(grep -cE '^[0-9]{12}\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com +ok ' <<<"$HGF_OUT" || true)
hgf_assert_eq 7 "$rows" "one ok row per simulated registry, plus the empty-region one"
failed=$(grep -cE '^[0-9]{12}\.dkr\.ecr\.ca-central-1\.amazonaws\.com +failed ' <<<"$HGF_OUT" || true)
hgf_assert_eq 1 "$failed" "the misconfigured static keys fail"
hgf_assert_contains "$HGF_OUT" "8 registries" "totals line"
hgf_assert_contains "$HGF_OUT" "SIMULATED" "the data is labelled as simulated"
hgf_assert_contains "$HGF_OUT" "sweep 1: partial" "the sweep is partial because one connection failed"
hgf_assert_contains "$HGF_OUT" "likely cause:" "the failing connection is diagnosed"
dir=$(sed -n 's|^reports: \(.*\)/sweep.json,.*|\1|p' <<<"$HGF_OUT")
[[ -n $dir && -d $dir ]] || hgf_fail "no report directory in the output"
hgf_on_exit rm -rf "$dir"
python3 - "$dir" <<'PY'
import csv, json, sys
d = sys.argv[1]
r = json.load(open(f"{d}/sweep.json"))
assert r["status"] == "partial" and len(r["connections"]) == 8, r["status"]
assert r["totals"]["images_scanned"] == r["totals"]["images"] > 0, r["totals"]
assert list(csv.reader(open(f"{d}/sweep.csv")))
assert "<html" in open(f"{d}/sweep.html").read().lower()
PY
after=$(find /tmp -maxdepth 1 -name 'hgfleet-demo-??????' | wc -l)
hgf_assert_eq "$before" "$after" "the throwaway cluster directory is removed"
if pgrep -f 'hgfleet-demo-' >/dev/null; then hgf_fail "a demo PostgreSQL is still running"; fi
echo "PASS: demo"
