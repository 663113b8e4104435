#!/usr/bin/env bash
# `hgfleet demo` is the README's main job: it must discover a simulated
# organization through AWS Organizations, sweep it on its own throwaway
# PostgreSQL, diagnose the misconfigured accounts and leave nothing behind.
set -euo pipefail
# shellcheck source=tests/integration/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

tmp=$(hgf_tmpdir)
# The demo's cluster lives in /tmp/hgfleet-demo-XXXXXX, and other demos may
# run meanwhile (the sanitized suite runs beside the normal one), so the
# checks below look at this demo's directory only. It is the directory of the
# scenario the demo hands ecrsim, which this wrapper records.
cat >"$tmp/ecrsim" <<EOF
#!/usr/bin/env bash
printf '%s\\n' "\$*" >>"$tmp/ecrsim.args"
exec "$ECRSIM_BIN" "\$@"
EOF
chmod +x "$tmp/ecrsim"
# 6 accounts: the third's role does not trust the demo's user, the sixth's
# lacks ecr:DescribeImages; a seventh account is suspended.
hgf_expect_exit 0 env -u HGFLEET_DATABASE_URL ECRSIM_BIN="$tmp/ecrsim" \
  "$HGFLEET_BIN" demo --accounts 6 --regions us-east-1,eu-west-1
echo "$HGF_OUT"
hgf_assert_contains "$HGF_OUT" "discovered through AWS Organizations (SIMULATED): 7 accounts, 12 connections created, 1 skipped" \
  "the organization is discovered, the suspended account skipped"
hgf_assert_contains "$HGF_OUT" "skipped: account 100026000006: account status is SUSPENDED" "the skip is explained"
rows=$(grep -cE '^[0-9]{12}\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com +ok ' <<<"$HGF_OUT" || true)
hgf_assert_eq 8 "$rows" "one ok row per registry of a well-configured account"
failed=$(grep -cE '^(100026000002|100026000005)\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com +failed ' <<<"$HGF_OUT" || true)
hgf_assert_eq 4 "$failed" "the misconfigured accounts fail in every region"
hgf_assert_contains "$HGF_OUT" "12 registries" "totals line"
hgf_assert_contains "$HGF_OUT" "SIMULATED" "the data is labelled as simulated"
hgf_assert_contains "$HGF_OUT" "sweep 1: partial" "the sweep is partial because connections failed"
hgf_assert_contains "$HGF_OUT" "AssumeRole is denied" "the untrusting role is diagnosed"
hgf_assert_contains "$HGF_OUT" "lacks ecr:DescribeImages" "the missing permission is named"
hgf_assert_contains "$HGF_OUT" "likely cause:" "the failing connections are diagnosed"
hgf_assert_contains "$HGF_ERR" "sweep: connections 12/12 (4 failed)" "progress on stderr"
dir=$(sed -n 's|^reports: \(.*\)/sweep.json,.*|\1|p' <<<"$HGF_OUT")
[[ -n $dir && -d $dir ]] || hgf_fail "no report directory in the output"
hgf_on_exit rm -rf "$dir"
python3 - "$dir" <<'PY'
import csv, json, sys
d = sys.argv[1]
r = json.load(open(f"{d}/sweep.json"))
assert r["status"] == "partial" and len(r["connections"]) == 12, r["status"]
bad = {c["registry"].split(".")[0] for c in r["connections"] if c["status"] == "failed"}
assert bad == {"100026000002", "100026000005"}, bad
codes = {c["diagnosis"]["code"] for c in r["connections"] if c["status"] == "failed"}
assert codes == {"assume_role_denied", "access_denied"}, codes
assert r["totals"]["images_scanned"] == r["totals"]["images"] > 0, r["totals"]
assert list(csv.reader(open(f"{d}/sweep.csv")))
assert "<html" in open(f"{d}/sweep.html").read().lower()
PY
cluster=$(sed -n 's|.*--scenario \(/tmp/hgfleet-demo-[A-Za-z0-9]\{6\}\)/iam\.json.*|\1|p' "$tmp/ecrsim.args")
[[ -n $cluster ]] || hgf_fail "the demo ran ecrsim without a scenario in its directory: $(cat "$tmp/ecrsim.args")"
[[ ! -e $cluster ]] || hgf_fail "the throwaway cluster directory $cluster is left behind"
if pgrep -f "$cluster" >/dev/null; then hgf_fail "the demo's PostgreSQL ($cluster) is still running"; fi
echo "PASS: demo"
