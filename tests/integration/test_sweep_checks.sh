#!/usr/bin/env bash
# A sweep's checks stay cheap however many jobs it has (issue #8):
#  (a) the statements the code runs every second (LIVE_SQL in sweep.c,
#      SCAN_PROGRESS_SQL in sweep_wait.c, read from the sources) on a sweep
#      of 200,000 finished scan jobs plus 1,000 live ones: their plans read
#      the jobs_sweep_* indexes, never a Seq Scan of jobs nor the scan_jobs
#      array, within a buffer budget a walk of the sweep's jobs exceeds a
#      hundredfold; and their answers are right (a scan parked in a long
#      backoff is not waited for; a phase waits only for its kind);
#  (a') the claim of `sweep --wait`'s pool (IDS_CLAIM_SQL in jobs.c), which names
#      only the sweep's job: on a sweep of 200,000 queued scans it reads
#      jobs_sweep_live, no Seq Scan of jobs, and no more buffers than for a
#      sweep of 10 plus a few, also when the planner's costs favour reading
#      the phase whole; it takes the sweep's job and the jobs of its
#      current phase, and no other sweep's nor the other phase's;
#  (b) a real `sweep --wait`: every job it waited for carries its sweep id,
#      a scan still live from an older sweep is taken over and waited for,
#      and the progress line counts every scan against scans_waited.
set -euo pipefail
# shellcheck source=tests/integration/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

tmp=$(hgf_tmpdir)
export HGFLEET_LOG_FORMAT=json HGFLEET_SCANNER=none
unset AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN AWS_ENDPOINT_URL_ECR \
  HGFLEET_RESCAN_AFTER HGFLEET_SWEEP_SCHEDULE || true
H=$HGFLEET_BIN
HGFLEET_DATABASE_URL=$(hgf_new_db sweep_checks)
HGFLEET_MASTER_KEY=$(openssl rand -base64 32)
export HGFLEET_DATABASE_URL HGFLEET_MASTER_KEY
db() { hgf_psql "$HGFLEET_DATABASE_URL" -c "$1"; }
hgf_expect_exit 0 "$H" migrate

live_sql=$(hgf_c_sql src/sched/sweep.c LIVE_SQL)
progress_sql=$(hgf_c_sql src/sched/sweep_wait.c SCAN_PROGRESS_SQL)
claim_sql=$(hgf_c_sql src/store/jobs.c IDS_CLAIM_SQL)

# --- (a) the statements on a big sweep --------------------------------------
# Sweep 7 is scanning: 200,000 scans finished (50 failed), 1,000 live spread
# over the table (1 in 201), one parked in a 1 h backoff; sweep 6, older,
# has 50,000 done scans; 20,000 untagged jobs, 2,000 of them queued. For the
# claim: sweep 9, scanning, with 200,000 queued scans; sweep 10, scanning,
# with 10 queued scans and 5 syncs still tagged from its syncing phase; each
# with its queued sweep job.
db "INSERT INTO sweeps (id, requested_by, status, phase) VALUES
      (6, 'test', 'failed', 'done'), (7, 'test', 'running', 'scanning'),
      (9, 'test', 'running', 'scanning'), (10, 'test', 'running', 'scanning');
    INSERT INTO jobs (kind, payload, priority)
    SELECT 'sweep', jsonb_build_object('sweep_id', s), 20 FROM unnest('{9,10}'::int[]) s;
    INSERT INTO jobs (kind, state, sweep_id, dedup_key, run_at)
    SELECT 'scan', 'queued', 9, 'scan:n/' || g, now() FROM generate_series(1, 200000) g;
    INSERT INTO jobs (kind, state, sweep_id, dedup_key, run_at)
    SELECT 'scan', 'queued', 10, 'scan:s/' || g, now() FROM generate_series(1, 10) g;
    INSERT INTO jobs (kind, state, sweep_id, dedup_key, run_at)
    SELECT 'sync', 'queued', 10, 'sync:' || g, now() FROM generate_series(1, 5) g;
    INSERT INTO jobs (kind, state, sweep_id, dedup_key, run_at)
    SELECT 'scan', CASE WHEN g % 201 = 0 THEN 'queued' WHEN g % 4020 = 1 THEN 'failed'
                        ELSE 'done' END, 7, 'scan:t/' || g, now()
      FROM generate_series(1, 201000) g;
    INSERT INTO jobs (kind, state, sweep_id, dedup_key, run_at)
         VALUES ('scan', 'queued', 7, 'scan:t/parked', now() + interval '1 hour');
    INSERT INTO jobs (kind, state, sweep_id) SELECT 'scan', 'done', 6 FROM generate_series(1, 50000);
    INSERT INTO jobs (kind, state, dedup_key)
    SELECT 'scan', CASE WHEN g % 10 = 0 THEN 'queued' ELSE 'done' END, 'scan:u/' || g
      FROM generate_series(1, 20000) g;
    UPDATE sweeps SET scan_jobs = (SELECT array_agg(id ORDER BY id) FROM jobs WHERE sweep_id = 7),
                      scans_waited = (SELECT count(*) FROM jobs WHERE sweep_id = 7) WHERE id = 7;" >/dev/null
db "VACUUM ANALYZE jobs" >/dev/null
db "ANALYZE sweeps" >/dev/null
hgf_assert_eq "1001|50" "$(db "select count(*) filter (where state = 'queued'),
    count(*) filter (where state = 'failed') from jobs where sweep_id = 7")" "the generated sweep"

# A walk of the sweep's 201,001 jobs reads one index page and one heap page
# a job at least: 400,000 buffers. The live check is an index probe; the
# progress counts read the 1,001 live and 50 failed entries of the indexes
# (index-only once vacuumed, at most one heap page each otherwise).
hgf_explain live "bigint, text" "$live_sql" "7, 'scan'" | hgf_check_plans "live check" 20 jobs_sweep_live
hgf_explain progress bigint "$progress_sql" 7 | hgf_check_plans "scan progress" 1500 jobs_sweep_live,jobs_sweep_failed

# The answers.
run() { db "PREPARE q($1) AS $2; EXECUTE q($3);"; }
live() { [[ -n $(run "bigint, text" "$live_sql" "$1, '$2'") ]] && echo t || echo f; }
hgf_assert_eq t "$(live 7 scan)" "live scans are waited for"
hgf_assert_eq "201001|200000|50" "$(run bigint "$progress_sql" 7 | tr -d '\n')" \
  "progress: every scan counted, the 1,001 live ones (one parked) not finished"
hgf_assert_eq f "$(live 7 sync)" "the syncing phase waits for no scan"
db "UPDATE jobs SET state = 'done' WHERE sweep_id = 7 AND state = 'queued' AND run_at <= now()" >/dev/null
hgf_assert_eq f "$(live 7 scan)" "a scan parked in a 1 h backoff is not waited for"
db "UPDATE jobs SET run_at = now() + interval '20 seconds' WHERE dedup_key = 'scan:t/parked'" >/dev/null
hgf_assert_eq t "$(live 7 scan)" "a scan due within 30 s is waited for"
db "INSERT INTO jobs (kind, state, sweep_id) VALUES ('sync', 'queued', 8)" >/dev/null
db "UPDATE jobs SET run_at = now() + interval '1 hour' WHERE sweep_id = 8" >/dev/null
hgf_assert_eq "t f" "$(live 8 sync) $(live 8 scan)" \
  "a live sync is waited for in the syncing phase only, even in a long backoff"

# --- (a') the claim of `sweep --wait`'s pool ----------------------------------
job9=$(db "select id from jobs where kind = 'sweep' and payload->>'sweep_id' = '9'")
job10=$(db "select id from jobs where kind = 'sweep' and payload->>'sweep_id' = '10'")
claim_types="text, int, text[], bigint[], int, bigint"
# claim_args JOB LIMIT: the parameters the pool of `sweep --wait` on JOB sends.
claim_args() { printf "'test', 60, '{sync,scan,sweep}', '{%s}', %s, NULL" "$1" "$2"; }

# claim_plan JOB [SETTINGS]: the plan of a claim of 4, rolled back. Only the
# custom plan: PostgreSQL plans the claim with its values on every call
# (src/store/jobs.c).
claim_plan() {
  db "BEGIN; SET LOCAL plan_cache_mode = force_custom_plan; ${2:-}
      PREPARE c($claim_types) AS $claim_sql;
      EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) EXECUTE c($(claim_args "$1" 4));
      ROLLBACK;" | tr -d '\n'
}
# Reading the jobs of sweep 9 at all (one index entry and one heap tuple of
# each) would take thousands of buffers; a claim reads a few pages of each
# index it probes and the rows it takes (jobs_sweep_live in
# hgf_jobs_phase_due, sql/018, whose buffers its Function Scan counts). Then
# the same with index scans disabled in the session, the planner's choice
# when it expects few rows in a phase: a plain subquery read 3,349 buffers.
for trap in "" "SET LOCAL enable_indexscan = off;"; do
  small=$(claim_plan "$job10" "$trap" |
          hgf_check_plans "claim, sweep of 10 scans ${trap:+($trap)}" 200 jobs_pkey)
  big=$(claim_plan "$job9" "$trap" |
        hgf_check_plans "claim, sweep of 200,000 scans ${trap:+($trap)}" 200 jobs_pkey)
  hgf_buffers_flat "$small" "$big" 20 "a claim on a sweep of 200,000 scans (10 in the small case)"
done

# claimed JOB LIMIT [SETUP]: what that claim takes, after SETUP in the same
# (rolled back) transaction, as "kind|sweep_id|count" lines, sweep_id - for
# the sweep job.
claimed() {
  local ids
  ids=$(db "BEGIN; ${3:-} PREPARE c($claim_types) AS $claim_sql;
            EXECUTE c($(claim_args "$1" "$2")); ROLLBACK;" | cut -d'|' -f1 | paste -sd, -)
  db "SELECT kind, coalesce(sweep_id::text, '-'), count(*) FROM jobs
       WHERE id IN (${ids:-0}) GROUP BY 1, 2 ORDER BY 1, 2" | tr '\n' ' '
}
hgf_assert_eq "scan|9|3 sweep|-|1 " "$(claimed "$job9" 4)" \
  "a claim of 4 takes the sweep's job and 3 of its scans"
hgf_assert_eq "scan|9|4 " "$(claimed "$job9" 4 "UPDATE jobs SET run_at = now() + interval '1 minute'
    WHERE id = $job9;")" "between the sweep's steps, its scans fill the claim"
hgf_assert_eq "scan|10|10 sweep|-|1 " "$(claimed "$job10" 20)" \
  "the scanning phase's jobs are its scans, not the syncs still tagged"
hgf_assert_eq "sweep|-|1 sync|10|5 " "$(claimed "$job10" 20 "UPDATE sweeps SET phase = 'syncing'
    WHERE id = 10;")" "the syncing phase's jobs are its syncs"
hgf_assert_eq "sweep|-|1 " "$(claimed "$job10" 20 "UPDATE sweeps SET status = 'failed',
    phase = 'done' WHERE id = 10;")" "a sweep that ended brings in no job"

# --- (b) a real sweep ---------------------------------------------------------
HGFLEET_DATABASE_URL=$(hgf_new_db sweep_checks_b)
export HGFLEET_DATABASE_URL
hgf_expect_exit 0 "$H" migrate
seed=31
keyflags=()
for i in 0 1; do
  acct[i]=$(printf '%012d' $((100000000000 + seed * 1000000 + i)))
  secret[i]=$(openssl rand -hex 20)
  keyflags+=(--key "AKIACHECKACCOUNT0${i}:${secret[i]}:${acct[i]}")
  printf '%s\n' "${secret[i]}" >"$tmp/secret$i"
done
hgf_bg "$ECRSIM_BIN" --seed $seed --accounts 2 --regions us-east-1 --repos 3 --images 4 \
  "${keyflags[@]}" >"$tmp/ecrsim.out" 2>"$tmp/ecrsim.log"
line=$(hgf_wait_for_line "$tmp/ecrsim.out" 'listening on http://' 10)
export AWS_ENDPOINT_URL_ECR=${line##* }
for i in 0 1; do
  hgf_expect_exit 0 "$H" connection add "${acct[i]}.dkr.ecr.us-east-1.amazonaws.com" \
    --schedule manual --access-key-id "AKIACHECKACCOUNT0$i" --secret-access-key-file "$tmp/secret$i"
done
# The catalog, and its scans left queued, one of them held by an older
# sweep that failed: the new sweep takes it over.
hgf_expect_exit 0 "$H" sync --all --wait
live_scans=$(db "select count(*) from jobs where kind = 'scan' and state = 'queued'")
(( live_scans > 1 )) || hgf_fail "the sync left $live_scans scans queued"
old_job=$(db "WITH s AS (INSERT INTO sweeps (requested_by, status, phase)
                         VALUES ('test', 'failed', 'done') RETURNING id)
              UPDATE jobs SET sweep_id = (SELECT id FROM s) WHERE id = (SELECT min(id) FROM jobs
                WHERE kind = 'scan' AND state = 'queued') RETURNING id")

hgf_expect_exit 0 "$H" sweep --wait --json
sweep=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["sweep_id"])' <<<"$HGF_OUT")
read -r waited n_array <<<"$(db "select scans_waited || ' ' || cardinality(scan_jobs) from sweeps where id = $sweep")"
(( waited >= live_scans )) || hgf_fail "the sweep waited for $waited scans, fewer than the $live_scans live"
hgf_assert_eq "$waited" "$n_array" "scans_waited is the number of scans the sweep waited for"
hgf_assert_eq "done $sweep" "$(db "select state || ' ' || sweep_id from jobs where id = $old_job")" \
  "the older sweep's live scan was taken over and run"
hgf_assert_eq 0 "$(db "select count(*) from sweeps s, unnest(s.sync_jobs || s.scan_jobs) u(id)
    join jobs j on j.id = u.id where s.id = $sweep and j.sweep_id is distinct from s.id")" \
  "every job the sweep waited for carries its id"
hgf_assert_eq 2 "$(db "select count(*) from jobs where sweep_id = $sweep and kind = 'sync'")" \
  "the syncs, one per connection, are the sweep's"
hgf_assert_contains "$HGF_ERR" "scans $waited/$waited (0 failed)" "the last progress line counts every scan"
echo "PASS: sweep_checks"
