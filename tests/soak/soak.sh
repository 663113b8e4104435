#!/usr/bin/env bash
# Fault soak (issue 9): an org-wide sweep runs on three `serve` replicas while
# everything that can go wrong does:
#   - ecrsim throttles 20% of AWS calls, answers 5% with 5xx, drops 2% of
#     connections, issues credentials that expire every 30 s, and runs its
#     clock 10 minutes ahead;
#   - PostgreSQL is restarted twice;
#   - one replica is killed with SIGKILL every 20 s, and started again.
# At the end the sweep's report and the stored catalog equal ecrsim's truth,
# no job is left leased by a dead replica, and no digest was scanned twice.
# It prints the faults injected and survived.
#
#   tests/soak/soak.sh [--preset ci|long] [--keep]
#
# ci: 16 accounts x 2 regions, 1 to 3 minutes. long: 40 accounts x 3 regions
# and a longer fault schedule. HGFLEET_BIN and ECRSIM_BIN default to build/.
# The soak starts its own PostgreSQL cluster (it restarts it), so it never
# disturbs a test run's shared cluster.
set -euo pipefail
shopt -s inherit_errexit

root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd -P)
preset=ci
while [[ $# -gt 0 ]]; do
  case $1 in
    --preset) preset=${2:?--preset needs ci or long}; shift 2 ;;
    --keep) export HGF_KEEP_TMP=1; shift ;;
    -h|--help) sed -n '2,18p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) printf 'soak: unknown argument %s (see --help)\n' "$1" >&2; exit 2 ;;
  esac
done
case $preset in
  ci) accounts=16 regions=us-east-1,eu-west-1 repos=5 images=20 kill_every=20 budget=300 ;;
  long) accounts=40 regions=us-east-1,eu-west-1,ap-southeast-2 repos=6 images=25 kill_every=20 budget=1200 ;;
  *) printf 'soak: --preset must be ci or long, not %s\n' "$preset" >&2; exit 2 ;;
esac
export HGFLEET_BIN=${HGFLEET_BIN:-$root/build/hgfleet} ECRSIM_BIN=${ECRSIM_BIN:-$root/build/ecrsim}
[[ -x $HGFLEET_BIN && -x $ECRSIM_BIN ]] || { echo "soak: build first (no $HGFLEET_BIN)" >&2; exit 2; }

# shellcheck source=tests/integration/lib.sh
source "$root/tests/integration/lib.sh"
tmp=$(hgf_tmpdir)
export HGF_PG_DIR=$tmp/pg
bash "$root/scripts/pg-harness" start "$HGF_PG_DIR" >/dev/null
hgf_on_exit bash "$root/scripts/pg-harness" stop "$HGF_PG_DIR"
HGFLEET_DATABASE_URL=$(hgf_new_db soak)
export HGFLEET_DATABASE_URL HGFLEET_LOG_FORMAT=json AWS_EC2_METADATA_DISABLED=true
for v in AWS_SESSION_TOKEN AWS_ROLE_ARN AWS_WEB_IDENTITY_TOKEN_FILE AWS_CONTAINER_CREDENTIALS_FULL_URI \
  AWS_ENDPOINT_URL; do unset "$v"; done
H=$HGFLEET_BIN
q() { hgf_psql "$HGFLEET_DATABASE_URL" -c "$1"; }
t0=$(date +%s)
elapsed() { echo $(( $(date +%s) - t0 )); }

# --- the organization, its role, and the faults --------------------------
seed=91
A=$(printf '%012d' $((100000000000 + seed * 1000000)))
secret=$(openssl rand -hex 20)
# One reader role per account, as an organization deploys it (a pull from
# another account's registry would need a repository policy).
python3 - "$A" "$secret" "$accounts" >"$tmp/scenario.json" <<'PY'
import json, sys
a, secret, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
user = f"arn:aws:iam::{a}:user/soak"
print(json.dumps({
    "principals": [{"arn": user, "access_key_id": "AKIASOAKTEST00000001", "secret_access_key": secret,
                    "policy": [{"actions": ["sts:AssumeRole"], "resources": ["*"]}]}],
    "roles": [{"arn": f"arn:aws:iam::{int(a) + i:012d}:role/fleet-reader", "trust": [{"principal": user}],
               "policy": [{"actions": ["ecr:*"], "resources": ["*"]}]} for i in range(n)],
    "credential_duration_seconds": 30}))
PY
hgf_bg "$ECRSIM_BIN" --seed $seed --accounts "$accounts" --regions "$regions" --repos "$repos" \
  --images "$images" --scenario "$tmp/scenario.json" --latency-ms 5 \
  >"$tmp/ecrsim.out" 2>"$tmp/ecrsim.log"
line=$(hgf_wait_for_line "$tmp/ecrsim.out" 'listening on http://' 20)
sim=${line##* }
curl -fsS "$sim/_sim/truth" >"$tmp/truth.json"
export AWS_ENDPOINT_URL_ECR=$sim AWS_ENDPOINT_URL_STS=$sim
export AWS_ACCESS_KEY_ID=AKIASOAKTEST00000001 AWS_SECRET_ACCESS_KEY=$secret
# Enough attempts that a call survives a 27% fault rate; the job queue's own
# retries cover the rest.
export AWS_MAX_ATTEMPTS=8 AWS_RETRY_MODE=standard

"$H" migrate >>"$tmp/cli.log" 2>&1
python3 -c '
import json, sys
for r in json.load(open(sys.argv[1]))["registries"]:
    print(r["registry"])' "$tmp/truth.json" >"$tmp/registries"
n_regs=$(wc -l <"$tmp/registries")
while read -r reg; do
  "$H" connection add "$reg" --schedule manual --role-arn "arn:aws:iam::${reg%%.*}:role/fleet-reader" \
    >>"$tmp/cli.log" 2>&1 || hgf_fail "connection add $reg failed: $(tail -3 "$tmp/cli.log")"
done <"$tmp/registries"
# The first syncs that `connection add` queued are not part of the sweep.
q "delete from jobs" >/dev/null

curl -fsS -X POST "$sim/_sim/config" -d \
  '{"throttle_rate":0.2,"error_rate":0.05,"drop_rate":0.02,"clock_offset":600}' >/dev/null
curl -fsS -X DELETE "$sim/_sim/stats" >/dev/null

# --- three replicas --------------------------------------------------------
export HGFLEET_WORKERS=4 HGFLEET_LEASE_SECONDS=3 HGFLEET_LISTEN=127.0.0.1:0
declare -A pid
start_replica() {
  hgf_bg "$H" serve >"$tmp/serve-$1.out" 2>>"$tmp/serve-$1.log"
  pid[$1]=$HGF_BG_PID
}
for r in a b c; do start_replica "$r"; done
for r in a b c; do hgf_wait_for_line "$tmp/serve-$r.out" 'serving on http://' 20 >/dev/null; done

"$H" sweep --json >"$tmp/sweep.json" 2>>"$tmp/cli.log" || hgf_fail "could not queue the sweep"
sweep_id=$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))["sweep_id"])' "$tmp/sweep.json")
echo "soak ($preset): sweep $sweep_id over $n_regs registries on 3 replicas"

# --- the fault schedule, until the sweep ends --------------------------------
kills=0 pg_restarts=0 victims=() next_kill=$kill_every status=
pg_at=(10 30)
while :; do
  status=$(q "select status from sweeps where id = $sweep_id" 2>/dev/null || echo unreachable)
  [[ $status == complete || $status == partial || $status == failed ]] && break
  now=$(elapsed)
  (( now < budget )) || hgf_fail "the sweep did not end within ${budget}s (status $status)"
  if (( pg_restarts < ${#pg_at[@]} && now >= pg_at[pg_restarts] )); then
    bash "$root/scripts/pg-harness" restart "$HGF_PG_DIR" >/dev/null 2>&1 ||
      hgf_fail "PostgreSQL did not restart"
    pg_restarts=$((pg_restarts + 1))
    echo "  ${now}s: PostgreSQL restarted ($pg_restarts)"
  fi
  if (( now >= next_kill )); then
    r=$(printf 'abc' | cut -c$(( kills % 3 + 1 )))
    victims+=("${pid[$r]}")
    kill -KILL "${pid[$r]}" 2>/dev/null || true
    wait "${pid[$r]}" 2>/dev/null || true   # reaped here, so bash does not report it
    kills=$((kills + 1))
    echo "  ${now}s: replica $r (pid ${pid[$r]}) killed with SIGKILL ($kills), started again"
    start_replica "$r"
    next_kill=$((now + kill_every))
  fi
  sleep 1
done
echo "sweep $sweep_id ended $status after $(elapsed)s"
(( pg_restarts == ${#pg_at[@]} )) || hgf_fail "the sweep ended before both PostgreSQL restarts ($pg_restarts)"
(( kills >= 1 )) || hgf_fail "the sweep ended before any replica was killed"
hgf_assert_eq complete "$status" "the sweep completed despite the faults"

# --- the queue settles: nothing leased by the dead ---------------------------
for (( i = 0; i < 300; i++ )); do
  left=$(q "select count(*) from jobs where state in ('queued', 'running') and run_at <= now()")
  [[ $left == 0 ]] && break
  sleep 0.2
done
hgf_assert_eq 0 "$left" "the queue drained"
for v in "${victims[@]}"; do
  hgf_assert_eq 0 "$(q "select count(*) from jobs where state = 'running' and lease_owner like '%:$v:%'")" \
    "no job is leased by killed replica $v"
done
twice=$(q "select count(*) from (select image_id from scans where status = 'ok' group by image_id having count(*) > 1) d")
if [[ $twice != 0 ]]; then
  # What a failure here needs: each such digest's scans and scan jobs.
  echo "digests scanned ok more than once (image|scan id/job/status/started/finished ...|job id/state/attempts/reason/sweep/created/finished ...):"
  q "select s.image_id,
            string_agg(s.id || '/' || coalesce(s.job_id::text, '-') || '/' || s.status || '/' ||
                       coalesce(s.started_at::text, '-') || '/' || coalesce(s.finished_at::text, '-'), ' ' order by s.id),
            (select string_agg(j.id || '/' || j.state || '/' || j.attempts || '/' || coalesce(j.payload->>'reason', '-') ||
                               '/' || coalesce(j.sweep_id::text, '-') || '/' || j.created_at || '/' ||
                               coalesce(j.finished_at::text, '-'), ' ' order by j.id)
               from jobs j where j.kind = 'scan' and (j.payload->>'image_id')::bigint = s.image_id)
       from scans s
      where s.image_id in (select image_id from scans where status = 'ok' group by image_id having count(*) > 1)
      group by s.image_id" | head -10
fi
hgf_assert_eq 0 "$twice" "no digest was scanned twice"

# What a failure below needs: every present digest without an ok scan, with
# its scan rows and jobs.
q "select i.digest, coalesce((select string_agg(s.status, ',') from scans s where s.image_id = i.id), '-'),
          coalesce((select string_agg(j.state || '/' || j.attempts || '/' || coalesce(j.last_error, ''), ',')
                    from jobs j where j.kind = 'scan' and (j.payload->>'image_id')::bigint = i.id), '-')
     from images i where i.deleted_at is null
      and not exists (select 1 from scans s where s.image_id = i.id and s.status = 'ok')" >"$tmp/unscanned.txt"
[[ ! -s $tmp/unscanned.txt ]] || { echo "present digests without an ok scan (digest|scans|jobs):"; head -20 "$tmp/unscanned.txt"; }

# --- the report and the catalog equal the truth ------------------------------
"$H" sweep show "$sweep_id" >"$tmp/report.json" 2>>"$tmp/cli.log" || hgf_fail "sweep show failed"
"$H" images list --json >"$tmp/images.json" 2>>"$tmp/cli.log"
curl -fsS "$sim/_sim/stats" >"$tmp/stats.json"
recovered=$(q "select count(*) from jobs where attempts > 1")
python3 - "$tmp/truth.json" "$tmp/report.json" "$tmp/images.json" "$tmp/stats.json" \
  "$kills" "$pg_restarts" "$recovered" <<'PY'
import json, sys
truth, report, images, stats = (json.load(open(p)) for p in sys.argv[1:5])
kills, pg_restarts, recovered = sys.argv[5:8]
want = {(g["registry"], r["name"], i["digest"], tuple(sorted(i["tags"])))
        for g in truth["registries"] for r in g["repositories"] for i in r["images"]}
got = {(i["registry"], i["repository"], i["digest"], tuple(sorted(i["tags"])))
       for i in images if i["state"] == "present"}
assert got == want, f"catalog differs: {len(want - got)} missing, {len(got - want)} extra"
per = {g["registry"]: (len(g["repositories"]), sum(len(r["images"]) for r in g["repositories"]))
       for g in truth["registries"]}
rep = {c["registry"]: (c["repositories"], c["images"]) for c in report["connections"]}
assert rep == per, "the sweep report's counts differ from the truth"
assert all(c["status"] == "ok" for c in report["connections"]), "a connection failed"
unscanned = [i for i in images if i["state"] == "present" and i["scan_status"] != "ok"]
assert not unscanned, f"{len(unscanned)} present digests were not scanned ok"
injected = {}
for op, outcomes in stats.get("calls", {}).items():
    for outcome, n in outcomes.items():
        # Policies that do not exist are answers, not faults.
        if outcome not in ("calls", "ok", "throttled") and not outcome.endswith("NotFoundException"):
            injected[outcome] = injected.get(outcome, 0) + n
print("faults injected and survived:")
for k in sorted(injected):
    print(f"  {k:34} {injected[k]:7}")
print(f"  {'AssumeRole (30 s credentials)':34} {stats.get('sts', {}).get('AssumeRole', 0):7}")
print(f"  {'PostgreSQL restarts':34} {pg_restarts:>7}")
print(f"  {'replicas killed (SIGKILL)':34} {kills:>7}")
print(f"  {'jobs recovered (attempts > 1)':34} {recovered:>7}")
print(f"digests verified: {len(want)} in {len(per)} registries; report and catalog equal the truth")
PY
echo "PASS: soak ($preset) in $(elapsed)s"
