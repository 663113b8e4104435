#!/usr/bin/env bash
# Sweeps as durable jobs, over a simulated organization of 30 accounts x 3
# regions discovered through Organizations, three accounts misconfigured:
#  (a) `sweep --wait` with no server: every connection's repositories and
#      images equal ecrsim's truth, the misconfigured ones are failed with
#      the right diagnosis, the syncs collect posture, in well under 60 s;
#  (b) `sweep` (queued) run by two `serve` replicas, one SIGKILLed mid-sweep:
#      the sweep still completes once, with the same report;
#  (c) HGFLEET_SWEEP_SCHEDULE=every:2s on two replicas queues one sweep per
#      due time, and it is validated at start;
#  (d) an unchanged sweep queues no scans.
set -euo pipefail
# shellcheck source=tests/integration/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

tmp=$(hgf_tmpdir)
for v in AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN AWS_ROLE_ARN \
  AWS_WEB_IDENTITY_TOKEN_FILE AWS_CONTAINER_CREDENTIALS_FULL_URI AWS_CONTAINER_CREDENTIALS_RELATIVE_URI \
  AWS_ENDPOINT_URL HGFLEET_RESCAN_AFTER HGFLEET_SWEEP_SCHEDULE; do unset "$v"; done
export AWS_EC2_METADATA_DISABLED=true HGFLEET_LOG_FORMAT=json HGFLEET_SCANNER=none
H=$HGFLEET_BIN

# --- the organization: account 7 has no role, 19's role cannot describe
# images, 25's role requires an ExternalId hgfleet does not send ---
seed=23
acct() { printf '%012d' $((100000000000 + seed * 1000000 + $1)); }
regions=us-east-1,eu-west-1,ap-southeast-2
host_secret=$(openssl rand -hex 20)
python3 - "$(acct 0)" "$host_secret" >"$tmp/scenario.json" <<'PY'
import json, sys
mgmt, secret = sys.argv[1], sys.argv[2]
acct = lambda i: "%012d" % (int(mgmt) + i)
read = ["ecr:GetAuthorizationToken", "ecr:DescribeRepositories", "ecr:DescribeImages",
        "ecr:ListImages", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer",
        "ecr:BatchCheckLayerAvailability", "ecr:GetLifecyclePolicy", "ecr:GetRepositoryPolicy"]
host = f"arn:aws:iam::{mgmt}:user/fleet"
roles = []
for i in range(30):
    if i == 7:
        continue
    trust = {"principal": host}
    if i == 25:
        trust["external_id"] = "only-for-someone-else"
    acts = [a for a in read if not (i == 19 and a == "ecr:DescribeImages")]
    roles.append({"arn": f"arn:aws:iam::{acct(i)}:role/hgfleet-reader", "trust": [trust],
                  "policy": [{"actions": acts, "resources": ["*"]}]})
print(json.dumps({"principals": [{"arn": host, "access_key_id": "AKIAFLEETHOST0000023",
                                  "secret_access_key": secret,
                                  "policy": [{"actions": ["organizations:ListAccounts", "sts:AssumeRole"],
                                              "resources": ["*"]}]}],
                  "roles": roles}))
PY
hgf_bg "$ECRSIM_BIN" --seed $seed --accounts 30 --regions $regions --repos 3 --images 2 \
  --scenario "$tmp/scenario.json" >"$tmp/ecrsim.out" 2>"$tmp/ecrsim.log"
line=$(hgf_wait_for_line "$tmp/ecrsim.out" 'listening on http://' 10)
sim=${line##* }
export AWS_ENDPOINT_URL_ECR=$sim AWS_ENDPOINT_URL_STS=$sim AWS_ENDPOINT_URL_ORGANIZATIONS=$sim
export AWS_ACCESS_KEY_ID=AKIAFLEETHOST0000023 AWS_SECRET_ACCESS_KEY=$host_secret
curl -fsS "$sim/_sim/truth" >"$tmp/truth.json"

# fresh_db NAME: a migrated database with the organization discovered into it.
fresh_db() {
  HGFLEET_DATABASE_URL=$(hgf_new_db "$1")
  export HGFLEET_DATABASE_URL
  hgf_expect_exit 0 "$H" migrate
  hgf_expect_exit 0 "$H" discover --org-role-name hgfleet-reader --regions $regions --schedule manual --json
  hgf_assert_eq 90 "$(python3 -c 'import json,sys; print(len(json.load(sys.stdin)["created"]))' <<<"$HGF_OUT")" \
    "30 accounts x 3 regions discovered"
}
q() { hgf_psql "$HGFLEET_DATABASE_URL" -c "$1"; }
# wait_for SECONDS CONDITION: waits up to SECONDS for the SQL boolean
# CONDITION, checked every 0.1 s by one statement on the server, then prints
# it (t or f). A psql process and a backend per check cost about 0.1 s of
# CPU, which a busy 2-core machine takes from the replicas being waited for.
wait_for() {
  q "do \$\$ begin for i in 1..$(( $1 * 10 )) loop exit when ($2); perform pg_sleep(0.1);
     end loop; end \$\$"
  q "select ($2)"
}

# check_report FILE: the report against ecrsim's truth and the three diagnoses.
check_report() {
  python3 - "$tmp/truth.json" "$1" "$(acct 7)" "$(acct 19)" "$(acct 25)" <<'PY'
import json, sys
truth, rep = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
want_diag = {sys.argv[3]: ("assume_role_denied", "trust policy"),
             sys.argv[4]: ("access_denied", "ecr:DescribeImages"),
             sys.argv[5]: ("assume_role_denied", "ExternalId")}
assert rep["status"] == "partial", rep["status"]
conns = {c["registry"]: c for c in rep["connections"]}
assert len(conns) == 90, len(conns)
failed = posture_checked = 0
for reg in truth["registries"]:
    c = conns[reg["registry"]]
    if reg["account_id"] in want_diag:
        code, words = want_diag[reg["account_id"]]
        d = c.get("diagnosis") or {}
        assert c["status"] == "failed", (reg["registry"], c["status"])
        assert d.get("code") == code, (reg["registry"], d)
        text = " ".join(str(d.get(k, "")) for k in ("symptom", "cause", "fix"))
        assert words in text, (reg["registry"], words, text)
        failed += 1
        continue
    assert c["status"] == "ok", (reg["registry"], c)
    repos = reg["repositories"]
    n_images = sum(len(r["images"]) for r in repos)
    assert (c["repositories"], c["images"]) == (len(repos), n_images), \
        (reg["registry"], c["repositories"], c["images"], len(repos), n_images)
    assert c["images_scanned"] == n_images, (reg["registry"], c["images_scanned"], n_images)
    # Posture, per registry, from ecrsim's per-repository facts (the race
    # check depends on schedules: test_posture covers it).
    want = {"no_lifecycle_policy": sum(not r["lifecycle_policy"] for r in repos),
            "repository_policy_allows_everyone":
                sum(bool(r["repository_policy_allows_everyone"]) for r in repos),
            "image_runs_as_root": sum(im["runs_as_root"] for r in repos for im in r["images"]),
            "scan_on_push_disabled": sum(not r["scan_on_push"] for r in repos),
            "tag_mutability_mutable": sum(r["tag_mutability"] == "MUTABLE" for r in repos)}
    for k, v in want.items():
        assert c["posture"][k] == v, (reg["registry"], k, c["posture"][k], v)
    posture_checked += 1
assert failed == 9, failed
assert rep["totals"]["connections_failed"] == 9, rep["totals"]
assert posture_checked == 81, posture_checked
print(f"report equals truth: {rep['totals']['images']} images in 81 registries, 9 failed as diagnosed, "
      f"posture of 5 checks equal in all 81")
PY
}

# --- (a) sweep --wait with no server --------------------------------------
fresh_db sweep_async_a
start=$(date +%s)
hgf_expect_exit 1 "$H" sweep --wait --report "$tmp/a.json"
took=$(( $(date +%s) - start ))
echo "sweep --wait of 90 registries took ${took}s"
(( took < 60 )) || hgf_fail "the sweep took ${took}s, over 60 s"
hgf_assert_contains "$HGF_ERR" "sweep: connections 90/90 (9 failed)" "progress on stderr counts every connection"
hgf_assert_contains "$HGF_OUT" "partial" "the summary says partial"
check_report "$tmp/a.json"
hgf_assert_eq 0 "$(q "select count(*) from jobs where kind = 'sync' and payload->'posture' is distinct from 'true'::jsonb")" \
  "every sync the sweep ran collected posture (discover's first syncs were upgraded, not doubled)"
hgf_assert_eq 90 "$(q "select count(*) from jobs where kind = 'sync'")" "one sync per connection"
hgf_assert_eq "done 1" "$(q "select state || ' ' || count(*) from jobs where kind = 'sweep' group by state")" \
  "the sweep ran as one job"

# --- (d) an unchanged second sweep queues no scans -------------------------
scans=$(q "select count(*) from jobs where kind = 'scan'")
hgf_expect_exit 1 "$H" sweep --wait --json
hgf_assert_eq 0 "$(python3 -c 'import json,sys; print(json.load(sys.stdin)["scans_queued"])' <<<"$HGF_OUT")" \
  "the unchanged sweep queued no scans"
hgf_assert_eq "$scans" "$(q "select count(*) from jobs where kind = 'scan'")" "no scan job was added"

# --- (b) a queued sweep, two replicas, one SIGKILLed mid-sweep --------------
fresh_db sweep_async_b
curl -fsS -X POST "$sim/_sim/config" -d '{"latency_ms": 40}' >/dev/null
export HGFLEET_WORKERS=4 HGFLEET_LEASE_SECONDS=3 HGFLEET_LISTEN=127.0.0.1:0
pids=()
for r in a b; do
  hgf_bg "$H" serve >"$tmp/serve-$r.out" 2>"$tmp/serve-$r.log"
  pids+=("$HGF_BG_PID")
  hgf_wait_for_line "$tmp/serve-$r.out" 'serving on http://' 10 >/dev/null
done
hgf_expect_exit 0 "$H" sweep --json
sweep=$(python3 -c 'import json,sys; d=json.load(sys.stdin); assert d["created"]; print(d["sweep_id"])' <<<"$HGF_OUT")
hgf_expect_exit 0 "$H" sweep
hgf_assert_contains "$HGF_OUT" "sweep $sweep is already queued or running" "one sweep at a time"

victim=${pids[0]}
killed=0
for (( i = 0; i < 600; i++ )); do
  read -r phase running <<<"$(q "select s.phase || ' ' || count(j.id) from sweeps s left join jobs j
      on j.state = 'running' and j.lease_owner like '%:$victim:%' where s.id = $sweep group by s.phase")"
  if [[ $phase == syncing || $phase == scanning ]] && (( running > 0 )); then
    kill -KILL "$victim"
    # Read after the kill: what the dead replica still held, not what it
    # held a moment before (a job may end in between).
    q "select id from jobs where state = 'running' and lease_owner like '%:$victim:%'" >"$tmp/victim-jobs"
    killed=$(grep -c . "$tmp/victim-jobs" || true)
    break
  fi
  [[ $phase != done ]] || break
  sleep 0.05
done
(( killed > 0 )) || hgf_fail "replica a never held a running job mid-sweep (phase $phase)"
echo "killed replica a (pid $victim) in phase $phase holding $killed running job(s)"
# The latency only had to make the sweep long enough to be caught mid-way.
curl -fsS -X POST "$sim/_sim/config" -d '{"latency_ms": 0}' >/dev/null

wait_for 90 "(select status from sweeps where id = $sweep) <> 'running'" >/dev/null
hgf_assert_eq partial "$(q "select status from sweeps where id = $sweep")" \
  "the sweep completed despite the killed replica"
hgf_expect_exit 0 "$H" sweep show "$sweep"
printf '%s\n' "$HGF_OUT" >"$tmp/b.json"
check_report "$tmp/b.json"
ids=$(paste -sd, "$tmp/victim-jobs")
hgf_assert_eq 0 "$(q "select count(*) from jobs where id in ($ids) and state not in ('done', 'failed')")" \
  "the jobs running on the killed replica all ended"
taken=$(q "select count(*) from jobs where id in ($ids) and attempts >= 2 and lease_owner is null")
(( taken >= 1 )) || hgf_fail "no job of the killed replica was taken over (jobs $ids)"
hgf_assert_eq 1 "$(q "select count(*) from sweeps")" "no second sweep appeared"
hgf_assert_eq 0 "$(q "select count(*) from jobs where state in ('queued', 'running') and kind <> 'scan'")" \
  "nothing left live but scans parked in backoff, if any"
kill -TERM "${pids[1]}"
wait "${pids[1]}" 2>/dev/null || true

# --- (c) HGFLEET_SWEEP_SCHEDULE on two replicas -----------------------------
hgf_expect_exit 2 env HGFLEET_SWEEP_SCHEDULE='every:5x' "$H" serve
hgf_assert_contains "$HGF_ERR" "HGFLEET_SWEEP_SCHEDULE" "a bad schedule names the variable"
hgf_expect_exit 2 env HGFLEET_SWEEP_SCHEDULE='on_push' "$H" serve
hgf_assert_contains "$HGF_ERR" "HGFLEET_SWEEP_SCHEDULE" "on_push names the variable"
hgf_expect_exit 2 env HGFLEET_RESCAN_AFTER='7 days' "$H" serve
hgf_assert_contains "$HGF_ERR" "HGFLEET_RESCAN_AFTER" "a bad rescan window names the variable"

scans=$(q "select count(*) from jobs where kind = 'scan'")
export HGFLEET_SWEEP_SCHEDULE=every:2s HGFLEET_SHUTDOWN_GRACE=2
t0=$(date +%s)
sched_pids=()
for r in c d; do
  hgf_bg "$H" serve >"$tmp/serve-$r.out" 2>"$tmp/serve-$r.log"
  sched_pids+=("$HGF_BG_PID")
  hgf_wait_for_line "$tmp/serve-$r.out" 'serving on http://' 10 >/dev/null
done
# A second scheduled sweep is queued only once the first has ended (one at a
# time), so wait for it, not for it to end: `sweep --wait` beside the servers
# joins it (or starts its own if it already ended) and ends with the report
# either way, so the two waits overlap instead of adding a third sweep.
[[ $(wait_for 30 "(select count(*) from sweeps where requested_by = 'schedule') >= 2") == t ]] ||
  hgf_fail "no second scheduled sweep in 30 s"
hgf_expect_exit 1 "$H" sweep --wait --json
python3 -c '
import json, sys
r = json.load(sys.stdin)
assert r["status"] == "partial" and r["scans_queued"] == 0, (r["status"], r["scans_queued"])
assert r["totals"]["connections"] == 90, r["totals"]' <<<"$HGF_OUT"
[[ $(wait_for 30 "(select count(*) from sweeps where requested_by = 'schedule'
      and status <> 'running') >= 2") == t ]] || hgf_fail "two scheduled sweeps did not finish in 30 s"
elapsed=$(( $(date +%s) - t0 + 1 ))
kill -TERM "${sched_pids[@]}"
for pid in "${sched_pids[@]}"; do wait "$pid" 2>/dev/null || true; done
n=$(q "select count(*) from sweeps where requested_by = 'schedule'")
(( n <= elapsed / 2 + 1 )) || hgf_fail "$n scheduled sweeps in ${elapsed}s: more than one per due time"
queued=$(grep -h '"scheduler.sweep_queued"' "$tmp/serve-c.log" "$tmp/serve-d.log" | wc -l)
hgf_assert_eq "$n" "$queued" "each scheduled sweep was queued by exactly one replica"
hgf_assert_eq "partial" "$(q "select string_agg(distinct status, ',') from sweeps where requested_by = 'schedule' and status <> 'running'")" \
  "scheduled sweeps end like any other"
hgf_assert_eq 0 "$(q "select coalesce(sum((report->>'scans_queued')::int), 0) from sweeps where requested_by = 'schedule' and status <> 'running'")" \
  "(d) unchanged scheduled sweeps queued no scans"
hgf_assert_eq "$scans" "$(q "select count(*) from jobs where kind = 'scan'")" "no scan job was added"
echo "scheduled: $n sweeps in ${elapsed}s on two replicas"
echo "PASS: sweep_async"
