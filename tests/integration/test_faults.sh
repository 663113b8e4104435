#!/usr/bin/env bash
# Survival under AWS's bad days, with two serve replicas: ecrsim throttles 30%
# of calls, then its clock runs 20 minutes ahead. Every sync completes, the
# stored catalog equals the truth, and /metrics shows the throttles, the
# retries and the clock offset hgfleet learned from AWS's Date header.
set -euo pipefail
# shellcheck source=tests/integration/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

tmp=$(hgf_tmpdir)
HGFLEET_DATABASE_URL=$(hgf_new_db faults)
HGFLEET_MASTER_KEY=$(openssl rand -base64 32)
export HGFLEET_DATABASE_URL HGFLEET_MASTER_KEY HGFLEET_LOG_FORMAT=json AWS_EC2_METADATA_DISABLED=true
unset AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN AWS_ENDPOINT_URL || true
H=$HGFLEET_BIN
q() { hgf_psql "$HGFLEET_DATABASE_URL" -c "$1"; }

akid=AKIAFAULTSTEST000001
openssl rand -hex 20 >"$tmp/secret"
hgf_bg "$ECRSIM_BIN" --seed 11 --accounts 5 --regions us-east-1,eu-west-1 --repos 4 --images 6 \
  --throttle-rate 0.3 --key "$akid:$(<"$tmp/secret"):*" >"$tmp/ecrsim.out" 2>"$tmp/ecrsim.log"
line=$(hgf_wait_for_line "$tmp/ecrsim.out" 'listening on http://' 10)
sim=${line##* }
export AWS_ENDPOINT_URL_ECR=$sim
curl -fsS "$sim/_sim/truth" >"$tmp/truth.json"
mapfile -t regs < <(jq -r '.registries[].registry' "$tmp/truth.json")

hgf_expect_exit 0 "$H" migrate
for r in "${regs[@]}"; do
  hgf_expect_exit 0 "$H" connection add "$r" --schedule manual --access-key-id "$akid" \
    --secret-access-key-file "$tmp/secret"
done

export HGFLEET_WORKERS=4 HGFLEET_LISTEN=127.0.0.1:0 AWS_MAX_ATTEMPTS=5
ports=()
for r in a b; do
  hgf_bg "$H" serve >"$tmp/serve-$r.out" 2>"$tmp/serve-$r.log"
  l=$(hgf_wait_for_line "$tmp/serve-$r.out" 'serving on http://' 10)
  ports+=("${l##* }")
done

wait_syncs() { # wait_syncs N: until N sync jobs are done and none is pending
  local i finished pending
  for (( i = 0; i < 600; i++ )); do
    IFS='|' read -r finished pending < <(q "select count(*) filter (where state = 'done'),
      count(*) filter (where state in ('queued', 'running')) from jobs where kind = 'sync'")
    [[ $finished -ge $1 && $pending -eq 0 ]] && return 0
    sleep 0.2
  done
  hgf_fail "syncs did not finish: $(q "select state, count(*) from jobs where kind='sync' group by 1")"
}

compare_truth() {
  "$H" images list --json --state present >"$tmp/images.json"
  python3 - "$tmp/truth.json" "$tmp/images.json" <<'PY'
import json, sys
t = json.load(open(sys.argv[1])); m = json.load(open(sys.argv[2]))
want = {(g["registry"], r["name"], i["digest"], tuple(sorted(i["tags"]))) for g in t["registries"]
        for r in g["repositories"] for i in r["images"]}
got = {(i["registry"], i["repository"], i["digest"], tuple(i["tags"])) for i in m}
assert want == got, (len(want), len(got), sorted(want - got)[:3], sorted(got - want)[:3])
print(f"catalog equals truth: {len(got)} images")
PY
}

scrape() { # scrape: each replica's /metrics into $tmp/metrics.<i>
  local i
  for i in "${!ports[@]}"; do curl -fsS "${ports[i]}/metrics" -o "$tmp/metrics.$i"; done
}
metric() { # metric NAME_REGEX FILE...: sum of the matching series in these scrapes
  awk -v pat="$1" '!/^#/ && $0 ~ pat { sum += $NF } END { print sum + 0 }' "${@:2}"
}

# 1. 30% of calls throttled.
wait_syncs "${#regs[@]}"
compare_truth
failed=$(q "select count(*) from jobs where kind = 'sync' and state = 'failed'")
hgf_assert_eq 0 "$failed" "no sync failed for good under throttling"
stats=$(curl -fsS "$sim/_sim/stats")
throttled=$(jq '[.calls[].throttled // 0] | add // 0' <<<"$stats")
[[ $throttled -gt 10 ]] || hgf_fail "ecrsim throttled only $throttled calls"
scrape
t_metric=$(metric '^hgfleet_aws_throttles_total' "$tmp"/metrics.*)
r_metric=$(metric '^hgfleet_aws_retries_total' "$tmp"/metrics.*)
echo "ecrsim throttled $throttled calls; replicas counted $t_metric throttles, $r_metric retries"
awk -v t="$t_metric" -v r="$r_metric" 'BEGIN { exit !(t > 0 && r > 0) }' ||
  hgf_fail "the replicas counted $t_metric throttles and $r_metric retries"

# 2. The simulator's clock runs 20 minutes ahead: signatures are "expired"
# until hgfleet learns the offset from the Date header.
# A replica learns the offset only from a call it makes itself, and nothing
# makes the two share a round of syncs, so rounds go on until each has run one.
curl -fsS -X POST "$sim/_sim/config" -d '{"throttle_rate": 0, "clock_offset": 1200}' >/dev/null
scrape
syncs_before=()
for i in "${!ports[@]}"; do
  syncs_before+=("$(metric '^hgfleet_jobs_run_total[{]kind="sync"' "$tmp/metrics.$i")")
done
rounds=0
while :; do
  hgf_expect_exit 0 "$H" sync --all
  rounds=$(( rounds + 1 ))
  wait_syncs $(( (rounds + 1) * ${#regs[@]} ))
  scrape
  idle=0
  for i in "${!ports[@]}"; do
    now=$(metric '^hgfleet_jobs_run_total[{]kind="sync"' "$tmp/metrics.$i")
    [[ $now -gt ${syncs_before[i]} ]] || idle=$(( idle + 1 ))
  done
  [[ $idle -eq 0 ]] && break
  [[ $rounds -lt 5 ]] || hgf_fail "after $rounds rounds of syncs, $idle replica(s) had run none"
done
compare_truth
for i in "${!ports[@]}"; do
  off=$(metric '^hgfleet_clock_offset_seconds' "$tmp/metrics.$i")
  awk -v o="$off" 'BEGIN { exit !(1190 <= o && o <= 1210) }' ||
    hgf_fail "replica ${ports[i]} reports clock offset $off"
done
echo "both replicas learned the 1200 s offset ($rounds round(s) of syncs)"
echo "PASS: faults"
