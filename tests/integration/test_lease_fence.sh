#!/usr/bin/env bash
# The lease fence on a scan's result (docs/reliability.md, soak defect 6),
# forced rather than waited for. A replica (A) runs a scan job whose every
# registry call ecrsim slows down; while A waits on the registry the job's
# lease is taken from it, as when a database outage outlasts the lease and
# another replica re-queues the job. Then:
#  - A's result is not stored: its scans row stays unfinished, the digest
#    has no ok scan, and A's outcome leaves the job to its new holder;
#  - the replica (B) that takes the job over once that holder's lease runs
#    out stores the one ok scan, on the row A opened (the re-queue of the
#    expired lease put it back in the queue with its job, sql/015), and the
#    job ends as B wrote it.
# The lease is taken as soon as A has opened its scan row, while A's first
# registry call (of at least three, 2 s each, before it can store anything)
# is still pending: should A ever get there first, its scan is stored and
# the test fails rather than passes. Without the fence (the scans UPDATE in
# src/sched/scan.c not checking jobs.lease_owner) it fails at "A's scan row
# stored nothing".
set -euo pipefail
# shellcheck source=tests/integration/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

tmp=$(hgf_tmpdir)
H=$HGFLEET_BIN
LATENCY_MS=2000
q() { hgf_psql "$HGFLEET_DATABASE_URL" -c "$1"; }

hgf_one_registry lease_fence 12 2 "$tmp"
sim=$HGF_SIM
latency() { curl -fsS -X POST "$sim/_sim/config" -d "{\"latency_ms\": $1}" >/dev/null; }

# One scan job to race over; the sync's others are parked for the day.
job=$(q "select min(id) from jobs where kind = 'scan' and state = 'queued'")
[[ -n $job ]] || hgf_fail "the sync queued no scan job"
image=$(q "select payload->>'image_id' from jobs where id = $job")
q "update jobs set run_at = now() + interval '1 day' where kind = 'scan' and id <> $job" >/dev/null

# --- A's run loses its lease while it waits on the registry -------------------
latency $LATENCY_MS
export HGFLEET_LISTEN=127.0.0.1:0 HGFLEET_WORKERS=1
hgf_bg "$H" serve >"$tmp/a.out" 2>"$tmp/a.log"
a_pid=$HGF_BG_PID
# The scans row is opened before the first registry call.
hgf_wait_sql "select count(*) from scans where job_id = $job" 1 30 "A opening its scan"
a_scan=$(q "select id from scans where job_id = $job")
a_owner=$(q "select lease_owner from jobs where id = $job")
[[ $a_owner == *:* ]] || hgf_fail "job $job is not leased to a replica: '$a_owner'"
hgf_assert_eq "$job" "$(q "update jobs set lease_owner = 'someone-else',
    lease_expires_at = now() + interval '1 hour'
    where id = $job and state = 'running' and lease_owner = '$a_owner' returning id")" \
  "the lease taken from A before the registry answered it"

# A's run ends and its outcome finds the job no longer leased to it.
hgf_wait_for_line "$tmp/a.log" "job\.lease_lost.*job=$job " \
  $(( LATENCY_MS * 6 / 1000 + 20 )) >/dev/null
hgf_assert_eq "running||" "$(q "select status || '|' || coalesce(finished_at::text, '') || '|' ||
    coalesce(summary::text, '') from scans where id = $a_scan")" "A's scan row stored nothing"
hgf_assert_eq 0 "$(q "select count(*) from scans where image_id = $image and status = 'ok'")" \
  "no ok scan from the run that lost its lease"
hgf_assert_eq "running|someone-else|1||" "$(q "select state || '|' || lease_owner || '|' ||
    attempts || '|' || coalesce(result::text, '') || '|' || coalesce(last_error, '')
    from jobs where id = $job")" "A's outcome left the job to its holder"
hgf_assert_contains "$(<"$tmp/a.log")" "lease has passed to another run" \
  "A reports its scan result as fenced"
hgf_stop "$a_pid"

# --- the holder's lease runs out; B takes the job over ------------------------
latency 0
q "update jobs set lease_expires_at = now() - interval '1 second' where id = $job" >/dev/null
hgf_bg "$H" serve >"$tmp/b.out" 2>"$tmp/b.log"
b_pid=$HGF_BG_PID
hgf_wait_sql "select state from jobs where id = $job" "done" 30 "B finishing the job"
hgf_stop "$b_pid"
hgf_assert_eq "$a_scan ok" "$(q "select string_agg(id || ' ' || status, ',') from scans
    where job_id = $job")" "the job has one scans row, A's, and B stored the ok scan on it"
hgf_assert_eq "ok|1" "$(q "select string_agg(status, ',') || '|' || count(*) from scans
    where image_id = $image and status = 'ok'")" "the digest has exactly one ok scan"
hgf_assert_eq 0 "$(q "select count(*) from scans where status = 'running'")" \
  "no scans row is left running"
hgf_assert_eq "done|2||$a_scan|ok|" "$(q "select state || '|' || attempts || '|' ||
    coalesce(lease_owner, '') || '|' || (result->>'scan_id') || '|' || (result->>'status') ||
    '|' || coalesce(last_error, '') from jobs where id = $job")" "the job ends as B wrote it"
echo "PASS: lease_fence"
