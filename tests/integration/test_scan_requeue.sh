#!/usr/bin/env bash
# A scan job that leaves a run without the run storing its outcome leaves no
# scans row `running` (sql/015), and its scan is stored once, on one row.
# Forced, not waited for: ecrsim answers every call in 2 s, so a run is
# still waiting on the registry (at least three calls before it can store
# anything) when the test moves its job.
#  (1) lease lost: two scans (J1, and J2 with one attempt allowed) run on
#      replica A; their leases are made to expire and A's own re-queue of
#      expired leases takes them: J1's row is `queued` with the job, J2's
#      `failed` with the job's reason; A's stale runs store nothing; J1's
#      next run (A again, once a worker frees) takes up the same row and
#      stores the one ok scan;
#  (1b) lease lost and the job claimed again by the same replica while its
#      stale run still waits on the registry: the stale run's outcome is
#      refused (the run is named by its owner and its attempt, jobs.c), the
#      new run ends the job, on the same row;
#  (2) released at shutdown: replica C, stopped with no grace period while
#      J3 and J4 run, re-queues them: both rows `queued`, no attempt
#      counted; replica D runs J3 on its one row; removing the connection
#      fails J4, and its row says why.
# Without the trigger of sql/015 it fails at "J1's row is queued with its
# job"; without OPEN_SQL taking the row up again (src/sched/scan.c), at
# "J1 has one scans row"; with jobs finished by owner alone, at "J5 is still
# its second run's".
set -euo pipefail
# shellcheck source=tests/integration/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

tmp=$(hgf_tmpdir)
H=$HGFLEET_BIN
q() { hgf_psql "$HGFLEET_DATABASE_URL" -c "$1"; }

# rows JOB: the job's scans rows, oldest first, as "status|error" lines joined by ','.
rows() {
  q "select coalesce(string_agg(status || '|' || coalesce(error, ''), ',' order by id), '')
       from scans where job_id = $1"
}
no_running() {
  hgf_assert_eq 0 "$(q "select count(*) from scans where status = 'running'")" \
    "no scans row is left running $1"
}

hgf_one_registry scan_requeue 13 6 "$tmp"
sim=$HGF_SIM
latency() { curl -fsS -X POST "$sim/_sim/config" -d "{\"latency_ms\": $1}" >/dev/null; }

read -r j1 j2 j3 j4 j5 <<<"$(q "select string_agg(id::text, ' ' order by id) from
    (select id from jobs where kind = 'scan' and state = 'queued' order by id limit 5) s")"
[[ -n $j5 ]] || hgf_fail "the sync queued fewer than 5 scan jobs"
for j in "$j1" "$j2" "$j3" "$j4" "$j5"; do
  image[j]=$(q "select payload->>'image_id' from jobs where id = $j")
done
park() { q "update jobs set run_at = now() + interval '1 day' where kind = 'scan' and state = 'queued'
            and id not in ($1)" >/dev/null; }
park "$j1, $j2"
q "update jobs set max_attempts = 1 where id = $j2" >/dev/null

# --- (1) the lease lost mid-scan ----------------------------------------------
# A long lease: A's heartbeat (every lease/3) must not renew what the test
# expires; A's pool re-queues expired leases at every claim, about once a second.
latency 2000
export HGFLEET_LISTEN=127.0.0.1:0 HGFLEET_WORKERS=2 HGFLEET_SCANS_PER_REGISTRY=2 \
  HGFLEET_LEASE_SECONDS=300
hgf_bg "$H" serve >"$tmp/a.out" 2>"$tmp/a.log"
a_pid=$HGF_BG_PID
hgf_wait_sql "select count(*) from scans where job_id in ($j1, $j2) and status = 'running'" 2 30 \
  "A opening both scans"
a_row=$(q "select id from scans where job_id = $j1")
a_owner=$(q "select lease_owner from jobs where id = $j1")
hgf_assert_eq 2 "$(q "update jobs set lease_expires_at = now() - interval '1 second'
    where id in ($j1, $j2) and state = 'running' and lease_owner = '$a_owner' returning id" |
  wc -l)" "both leases expired before the registry answered"

hgf_wait_sql "select state || ' ' || attempts from jobs where id = $j1" "queued 1" 10 \
  "A's pool re-queueing J1"
hgf_assert_eq "queued|" "$(rows "$j1")" "J1's row is queued with its job"
hgf_assert_eq "failed|failed|lease of $a_owner expired on attempt 1 of 1" \
  "$(q "select state || '|' || (select string_agg(status || '|' || coalesce(error, ''), ',')
      from scans where job_id = $j2) from jobs where id = $j2")" \
  "J2, out of attempts, failed, and its row says why"
no_running "once A's leases expired"

# A's stale runs find their jobs gone; then A's freed worker runs J1 again.
hgf_wait_for_line "$tmp/a.log" "lease has passed to another run" 30 >/dev/null
latency 0
hgf_wait_sql "select state from jobs where id = $j1" "done" 30 "A's second run of J1"
hgf_assert_eq "ok|" "$(rows "$j1")" "J1 has one scans row, and it is ok"
hgf_assert_eq "done|2|$a_row|ok" "$(q "select state || '|' || attempts || '|' ||
    (result->>'scan_id') || '|' || (result->>'status') from jobs where id = $j1")" \
  "J1's second run stored its scan on the row the first opened"
hgf_assert_eq 1 "$(q "select count(*) from scans where image_id = ${image[j1]} and status = 'ok'")" \
  "J1's digest was scanned once"
hgf_assert_eq "failed|lease of $a_owner expired on attempt 1 of 1" "$(rows "$j2")" \
  "J2's stale run stored nothing over its failed row"
no_running "after A's stale runs ended"

# --- (1b) the same replica claims the job again while its stale run goes on ---
latency 2000
q "update jobs set run_at = now() where id = $j5" >/dev/null
hgf_wait_sql "select status from scans where job_id = $j5" running 30 "A opening J5's scan"
a5_row=$(q "select id from scans where job_id = $j5")
q "update jobs set lease_expires_at = now() - interval '1 second' where id = $j5" >/dev/null
# A's free worker takes J5 again at once: its re-queue and its claim are one round.
hgf_wait_sql "select state || ' ' || attempts from jobs where id = $j5" "running 2" 10 \
  "A claiming J5 again"
hgf_wait_for_line "$tmp/a.log" "job\.lease_lost.*job=$j5 " 30 >/dev/null
hgf_assert_eq "running 2" "$(q "select state || ' ' || attempts from jobs where id = $j5")" \
  "J5 is still its second run's once the stale run's outcome was refused"
latency 0
hgf_wait_sql "select state from jobs where id = $j5" "done" 30 "A's second run of J5"
hgf_stop "$a_pid"
hgf_assert_eq "ok|" "$(rows "$j5")" "J5 has one scans row, and it is ok"
hgf_assert_eq "done|2|$a5_row|ok" "$(q "select state || '|' || attempts || '|' ||
    (result->>'scan_id') || '|' || (result->>'status') from jobs where id = $j5")" \
  "J5's second run ended the job, on the row the first opened"
hgf_assert_eq 1 "$(q "select count(*) from scans where image_id = ${image[j5]} and status = 'ok'")" \
  "J5's digest has one ok scan"
no_running "after J5"

# --- (2) released at shutdown -------------------------------------------------
q "update jobs set run_at = now() where id in ($j3, $j4)" >/dev/null
latency 2000
export HGFLEET_SHUTDOWN_GRACE=0
hgf_bg "$H" serve >"$tmp/c.out" 2>"$tmp/c.log"
c_pid=$HGF_BG_PID
hgf_wait_sql "select count(*) from scans where job_id in ($j3, $j4) and status = 'running'" 2 30 \
  "C opening both scans"
hgf_stop "$c_pid"
hgf_assert_contains "$(<"$tmp/c.log")" "worker.released" "C re-queued its running jobs"
hgf_assert_eq "queued 0 queued|,queued 0 queued|" "$(q "select string_agg(j.state || ' ' ||
    j.attempts || ' ' || (select string_agg(status || '|' || coalesce(error, ''), ',')
    from scans where job_id = j.id), ',' order by j.id) from jobs j where j.id in ($j3, $j4)")" \
  "C's jobs are queued again, no attempt counted, and so are their rows"
no_running "once C stopped"

park "$j3"
latency 0
export HGFLEET_SHUTDOWN_GRACE=30
hgf_bg "$H" serve >"$tmp/d.out" 2>"$tmp/d.log"
d_pid=$HGF_BG_PID
hgf_wait_sql "select state from jobs where id = $j3" "done" 30 "D running J3"
hgf_stop "$d_pid"
hgf_assert_eq "ok|" "$(rows "$j3")" "J3 has one scans row, and it is ok"
hgf_assert_eq 1 "$(q "select count(*) from scans where image_id = ${image[j3]} and status = 'ok'")" \
  "J3's digest was scanned once"

hgf_expect_exit 0 "$H" connection remove "$HGF_ACCOUNT.dkr.ecr.us-east-1.amazonaws.com"
hgf_assert_eq "failed|failed|connection removed" "$(q "select state || '|' ||
    (select string_agg(status || '|' || coalesce(error, ''), ',') from scans where job_id = $j4)
    from jobs where id = $j4")" "J4 failed with its connection, and its row says why"
hgf_assert_eq 0 "$(q "select count(*) from scans where status in ('queued', 'running')")" \
  "no scans row is left open"
echo "PASS: scan_requeue"
