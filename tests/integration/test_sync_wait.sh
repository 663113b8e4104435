#!/usr/bin/env bash
# `sync --wait` claims and checks its syncs through their batch (sql/015),
# never through the list of their ids (issue #8):
#  (a) on a queue of 4,000 syncs in one batch beside 200,000 other live jobs
#      (100,000 of them push scans queued ahead of every sync in jobs_claim's
#      order), the claim its pool sends (IDS_CLAIM_SQL in jobs.c, with its
#      parameters: no ids, the batch) reads jobs_batch_live, no Seq Scan of
#      jobs, and no more buffers than for a batch of 10 plus a few; the check
#      of what is still live (BATCH_LIVE_SQL) is one index probe, both also
#      when the planner's costs favour reading the batch whole; and what
#      they answer is right (the batch's due jobs and the ids named beside
#      it, within the limit; a server's claim takes no batch, and walks
#      jobs_claim from the queue's head, whatever the planner's costs);
#  (b) real runs against ecrsim: a sync already queued (by `connection add`)
#      joins the waiter's batch and runs here; one in another waiter's batch
#      keeps it and still runs here; one running on another replica joins
#      the batch and is waited for until it ends there; a failed sync makes
#      the exit code 1; --json and the text lines; without --wait, the live
#      jobs' ids (dedup).
set -euo pipefail
# shellcheck source=tests/integration/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

tmp=$(hgf_tmpdir)
export HGFLEET_SCANNER=none AWS_EC2_METADATA_DISABLED=true
unset AWS_SESSION_TOKEN AWS_ENDPOINT_URL HGFLEET_LOG_FORMAT HGFLEET_SWEEP_SCHEDULE \
  HGFLEET_RESCAN_AFTER || true
H=$HGFLEET_BIN
HGFLEET_DATABASE_URL=$(hgf_new_db sync_wait)
HGFLEET_MASTER_KEY=$(openssl rand -base64 32)
export HGFLEET_DATABASE_URL HGFLEET_MASTER_KEY
db() { hgf_psql "$HGFLEET_DATABASE_URL" -c "$1"; }
hgf_expect_exit 0 "$H" migrate

claim_sql=$(hgf_c_sql src/store/jobs.c IDS_CLAIM_SQL)
live_sql=$(hgf_c_sql src/store/jobs.c BATCH_LIVE_SQL)

# --- (a) the statements on a big queue ----------------------------------------
# Batch 7: 4,000 queued syncs (an org's fleet); batch 8: 10; batch 6, over:
# 1,000 done. Beside them 200,000 live jobs: 100,000 push scans queued at
# priority 10, 90,000 sweep scans queued, 10,000 scans running; and
# 100,000 done.
db "INSERT INTO jobs (kind, state, priority, dedup_key, batch_id)
    SELECT 'sync', 'queued', 5, 'sync:' || g, CASE WHEN g <= 4000 THEN 7 ELSE 8 END
      FROM generate_series(1, 4010) g;
    INSERT INTO jobs (kind, state, priority, batch_id) SELECT 'sync', 'done', 5, 6
      FROM generate_series(1, 1000);
    INSERT INTO jobs (kind, state, priority, dedup_key, run_at)
    SELECT 'scan', CASE WHEN g % 20 = 0 THEN 'running' ELSE 'queued' END,
           CASE WHEN g % 20 <> 0 AND g % 2 = 1 THEN 10 ELSE 0 END, 'scan:x/' || g,
           now() - interval '1 minute'
      FROM generate_series(1, 200000) g;
    INSERT INTO jobs (kind, state) SELECT 'scan', 'done' FROM generate_series(1, 100000);" >/dev/null
db "VACUUM ANALYZE jobs" >/dev/null
hgf_assert_eq "scan|queued|0|90000 scan|queued|10|100000 scan|running|0|10000 " \
  "$(db "select kind, state, priority, count(*) from jobs where batch_id is null
         and state <> 'done' group by 1, 2, 3 order by 1, 2, 3" | tr '\n' ' ')" "the generated queue"

# The live check: the first live entry of the batch in jobs_batch_live.
# It is hgf_jobs_batch_live (sql/018), whose Function Scan counts its
# buffers, the first call's catalog reads among them: so a batch of 4,000
# costs what a batch of 10 does. Then with index scans disabled, as for the
# claim below: a plain subquery became a Bitmap Heap Scan of the batch and a
# sort, 70 buffers against 4.
live_plan() {
  PGOPTIONS=$2 hgf_explain live "bigint, bigint[]" "$live_sql" "$1, '{}'" |
    hgf_check_plans "live check, batch $1 ${2:+($2)}" 60 ""
}
for trap in "" "-c enable_indexscan=off"; do
  small=$(live_plan 8 "$trap")
  big=$(live_plan 7 "$trap")
  hgf_buffers_flat "$small" "$big" 4 "the live check of a batch of 4,000 (10 in the small case)"
done
run() { db "PREPARE q($1) AS $2; EXECUTE q($3);"; }
hgf_assert_eq "t f" "$(run "bigint, bigint[]" "$live_sql" "7, '{}'") $(run "bigint, bigint[]" \
  "$live_sql" "6, '{}'")" "a batch with queued jobs is live, a batch all done is not"
running_scan=$(db "select min(id) from jobs where kind = 'scan' and state = 'running'")
hgf_assert_eq t "$(run "bigint, bigint[]" "$live_sql" "6, '{$running_scan}'")" \
  "a live job named beside the batch keeps the wait going"

claim_types="text, int, text[], bigint[], int, bigint"
# claim_args IDS LIMIT BATCH: the parameters a pool sends; `sync --wait`'s
# names no id but those held in another batch, and its batch.
claim_args() { printf "'test', 60, '{sync,scan,sweep}', %s, %s, %s" "$1" "$2" "$3"; }

# claim_plan BATCH [SETTINGS]: the plan of a claim of 4, rolled back. Only
# the custom plan: PostgreSQL plans the claim with its values on every call
# (src/store/jobs.c).
claim_plan() {
  db "BEGIN; SET LOCAL plan_cache_mode = force_custom_plan; ${2:-}
      PREPARE c($claim_types) AS $claim_sql;
      EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) EXECUTE c($(claim_args "'{}'" 4 "$1"));
      ROLLBACK;" | tr -d '\n'
}
# Walking the 100,000 push scans ahead of the syncs in jobs_claim, or the
# batch's 4,000 entries, would take hundreds to thousands of buffers; the
# claim reads a few pages of jobs_batch_live (in hgf_jobs_batch_due, sql/018,
# whose buffers its Function Scan counts) and the 4 rows it takes.
# Then the same with index scans disabled in the session: the planner's
# choice when it expects a handful of rows in a batch the statistics have
# not seen (an org-1k sync logged a Bitmap Heap Scan and a sort of up to
# 3,117 rows per claim). The batch's walk must not depend on that choice.
for trap in "" "SET LOCAL enable_indexscan = off;"; do
  small=$(claim_plan 8 "$trap" | hgf_check_plans "claim, batch of 10 syncs ${trap:+($trap)}" 200 jobs_pkey)
  big=$(claim_plan 7 "$trap" | hgf_check_plans "claim, batch of 4,000 syncs ${trap:+($trap)}" 200 jobs_pkey)
  hgf_buffers_flat "$small" "$big" 20 "a claim from a batch of 4,000 (10 in the small case)"
done

# claimed IDS LIMIT BATCH [SETUP]: what that claim takes, after SETUP in the
# same (rolled back) transaction, as "kind|batch|priority|count" lines.
claimed() {
  local ids
  ids=$(db "BEGIN; ${4:-} PREPARE c($claim_types) AS $claim_sql;
            EXECUTE c($(claim_args "$1" "$2" "$3")); ROLLBACK;" | cut -d'|' -f1 | paste -sd, -)
  db "SELECT kind, coalesce(batch_id::text, '-'), priority, count(*) FROM jobs
       WHERE id IN (${ids:-0}) GROUP BY 1, 2, 3 ORDER BY 1, 2, 3" | tr '\n' ' '
}
other=$(db "select min(id) from jobs where batch_id = 8")
hgf_assert_eq "sync|7|5|4 " "$(claimed "'{}'" 4 7)" "a claim of 4 takes 4 of the batch's syncs"
hgf_assert_eq "sync|7|5|3 sync|8|5|1 " "$(claimed "'{$other}'" 4 7)" \
  "a job named by id comes first, and the batch fills the claim"
hgf_assert_eq "sync|8|5|1 " "$(claimed "'{$other}'" 4 7 "UPDATE jobs SET run_at = now() +
    interval '1 hour' WHERE batch_id = 7;")" "a batch's job in a retry backoff is not claimed"
hgf_assert_eq "" "$(claimed "'{}'" 4 7 "UPDATE jobs SET state = 'running' WHERE batch_id = 7;")" \
  "a batch's running jobs are not claimed again"
# A server's pool names no ids and claims ANY_CLAIM_SQL: 4, and none ahead.
any_sql=$(hgf_c_sql src/store/jobs.c ANY_CLAIM_SQL)
ids=$(db "BEGIN; PREPARE a(text, int, text[], int, int, int) AS $any_sql;
          EXECUTE a('test', 60, '{sync,scan,sweep}', 4, 0, 10); ROLLBACK;" | cut -d'|' -f1 |
      paste -sd, -)
hgf_assert_eq "scan|-|10|4 " "$(db "SELECT kind, coalesce(batch_id::text, '-'), priority, count(*)
    FROM jobs WHERE id IN (${ids:-0}) GROUP BY 1, 2, 3 ORDER BY 1, 2, 3" | tr '\n' ' ')" \
  "a server's claim takes the queue's first jobs, none for a batch"
# Its plan: hgf_jobs_queue_due (sql/018) walks jobs_claim from the queue's
# head, for the first jobs and for those ahead, so it reads a few pages of
# a queue of 190,000 (about 200 buffers in all when it takes 8 jobs, most
# of them the UPDATE's). Also with index scans disabled in the session: the
# plain subqueries then read the whole queue (a Seq Scan of jobs), as they
# read it through jobs_dedup_live and sorted it on disk when the statistics
# had been taken while the queue was empty. (The function is compiled and
# planned first: that happens once per connection, and reads the catalogs.)
for trap in "" "SET LOCAL enable_indexscan = off;"; do
  for ahead in 0 4; do
    db "BEGIN; SET LOCAL plan_cache_mode = force_custom_plan; $trap
        DO \$\$ BEGIN PERFORM count(*) FROM hgf_jobs_queue_due('{none}', 0, 1); END \$\$;
        PREPARE a(text, int, text[], int, int, int) AS $any_sql;
        EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) EXECUTE a('test', 60, '{sync,scan,sweep}', 4,
          $ahead, 10); ROLLBACK;" | tr -d '\n' |
      hgf_check_plans "server claim, 4 and $ahead ahead ${trap:+($trap)}" 300 jobs_pkey
  done
done

# --- (b) real runs ------------------------------------------------------------
HGFLEET_DATABASE_URL=$(hgf_new_db sync_wait_b)
export HGFLEET_DATABASE_URL
hgf_expect_exit 0 "$H" migrate
export AWS_ACCESS_KEY_ID=AKIDECRSIMDEFAULT AWS_SECRET_ACCESS_KEY=ecrsim-default-secret
hgf_bg "$ECRSIM_BIN" --seed 23 --accounts 4 --regions us-east-1 --repos 2 --images 3 \
  >"$tmp/ecrsim.out" 2>"$tmp/ecrsim.log"
line=$(hgf_wait_for_line "$tmp/ecrsim.out" 'listening on http://' 10)
export AWS_ENDPOINT_URL_ECR=${line##* }
mapfile -t accts < <(curl -fsS "$AWS_ENDPOINT_URL_ECR/_sim/truth" |
  python3 -c 'import json,sys; [print(r["account_id"]) for r in json.load(sys.stdin)["registries"]]')
(( ${#accts[@]} == 4 )) || hgf_fail "ecrsim has ${#accts[@]} registries, not 4"
for i in 0 1 2; do
  hgf_expect_exit 0 "$H" connection add "${accts[i]}.dkr.ecr.us-east-1.amazonaws.com" --schedule manual
done
# The fourth registry's keys are wrong: its sync fails for good.
printf 'not-the-secret\n' >"$tmp/bad"
hgf_expect_exit 0 "$H" connection add "${accts[3]}.dkr.ecr.us-east-1.amazonaws.com" \
  --schedule manual --access-key-id AKIDNOTKNOWNTOECRSIM --secret-access-key-file "$tmp/bad"
# job N: the live sync job of the Nth connection added.
job() { db "select j.id from jobs j join connections c on j.dedup_key = 'sync:' || c.id
            where c.registry like '${accts[$1]}.%' and j.state in ('queued', 'running')"; }
j1=$(job 0) j2=$(job 1) j3=$(job 2) j4=$(job 3)
[[ -n $j1 && -n $j2 && -n $j3 && -n $j4 ]] || hgf_fail "connection add queued no first sync"
# j2 waits in another `sync --wait`'s batch; j3 runs on another replica.
other_batch=$(db "update jobs set batch_id = nextval('jobs_batch_seq') where id = $j2
                  returning batch_id")
db "update jobs set state = 'running', attempts = 1, lease_owner = 'another-replica',
      lease_expires_at = now() + interval '1 hour' where id = $j3" >/dev/null

hgf_bg "$H" sync --all --wait --json >"$tmp/wait.out" 2>"$tmp/wait.err"
wait_pid=$HGF_BG_PID
for (( i = 0; i < 600; i++ )); do
  [[ $(db "select count(*) from jobs where id in ($j1, $j2, $j4) and state in ('queued', 'running')") == 0 ]] &&
    break
  kill -0 "$wait_pid" 2>/dev/null || hgf_fail "sync --wait ended before its syncs: $(<"$tmp/wait.err")"
  sleep 0.1
done
(( i < 600 )) || hgf_fail "the syncs sync --wait runs itself did not end in 60 s"
batch=$(db "select batch_id from jobs where id = $j1")
[[ -n $batch && $batch != "$other_batch" ]] || hgf_fail "the queued sync did not join a new batch"
hgf_assert_eq "$batch $other_batch $batch $batch" "$(db "select string_agg(batch_id::text, ' '
    order by array_position(array[$j1, $j2, $j3, $j4]::bigint[], id)) from jobs
    where id in ($j1, $j2, $j3, $j4)")" \
  "the queued and the running syncs joined the batch; the other batch's sync kept it"
sleep 1.5 # six checks of what is live
kill -0 "$wait_pid" 2>/dev/null ||
  hgf_fail "sync --wait ended while another replica still runs one of its syncs"
db "update jobs set state = 'done', finished_at = now(), lease_owner = null,
      lease_expires_at = null where id = $j3" >/dev/null
rc=0
wait "$wait_pid" || rc=$?
hgf_assert_eq 1 "$rc" "sync --wait exits 1: a sync failed"
hgf_assert_eq 4 "$(db "select count(*) from jobs where kind = 'sync'")" \
  "no sync was queued twice: the live ones were waited for"
python3 - "$tmp/wait.out" "$j1" "$j2" "$j4" "${accts[3]}" <<'PY'
import json, sys
lines = [json.loads(l) for l in open(sys.argv[1]) if l.strip()]
got = {o["job_id"]: o for o in lines}
want = {int(sys.argv[2]): "ok", int(sys.argv[3]): "ok", int(sys.argv[4]): "failed"}
assert {k: got[k]["status"] for k in got} == want, "--json lines: %r, wanted %r" % (lines, want)
bad = got[int(sys.argv[4])]
assert bad["registry"].startswith(sys.argv[5]) and bad.get("error"), "the failed line: %r" % bad
assert all(o["result"]["repositories"] == 2 for o in lines if o["status"] == "ok"), lines
PY
hgf_assert_contains "$(<"$tmp/wait.err")" "syncing 4 connections..." "the first progress line"
hgf_assert_contains "$(<"$tmp/wait.err")" "3 syncs ran here, 1 failed" \
  "the last line counts the syncs run here, not the one run elsewhere"

# Text lines, and a clean exit.
hgf_expect_exit 0 "$H" sync "${accts[0]}.dkr.ecr.us-east-1.amazonaws.com" \
  "${accts[1]}.dkr.ecr.us-east-1.amazonaws.com" --wait
hgf_assert_eq 2 "$(grep -c "^sync [0-9]*\.dkr\.ecr\.us-east-1\.amazonaws\.com: ok, 2 repositories" \
  <<<"$HGF_OUT")" "one ok line per sync: $HGF_OUT"
hgf_assert_contains "$HGF_ERR" "2 syncs ran here, 0 failed" "the last line of a clean run"
hgf_assert_eq 0 "$(db "select count(*) from jobs where kind = 'sync' and state in ('queued', 'running')")" \
  "nothing left live"

# Without --wait: queued, and queued once.
hgf_expect_exit 0 "$H" sync --all
first=$(grep -o 'queued as job [0-9]*' <<<"$HGF_OUT" | sort)
hgf_assert_eq 4 "$(wc -l <<<"$first")" "one job per connection: $HGF_OUT"
hgf_expect_exit 0 "$H" sync --all
hgf_assert_eq "$first" "$(grep -o 'queued as job [0-9]*' <<<"$HGF_OUT" | sort)" \
  "a second sync --all finds the same live jobs"
hgf_assert_eq 0 "$(db "select count(*) from jobs where kind = 'sync' and batch_id is not null
    and state = 'queued'")" "syncs queued without --wait are in no batch"
echo "PASS: sync_wait"
