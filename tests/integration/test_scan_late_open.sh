#!/usr/bin/env bash
# A scan run whose open reaches the database only after its job has passed to
# another run opens no scans row (OPEN_SQL's lease check, src/sched/scan.c).
# This is the race the fault soak found: a replica's lease expired while
# PostgreSQL restarted, the same replica claimed the job again, and the stale
# run's open arrived after the new run's. Each run had a row of its own, and
# each stored a scan of the digest.
# Forced, not waited for: a session holds `scans` in SHARE mode, so replica A's
# open of attempt 1 waits on the lock. The job is then re-queued as A's own
# re-queue of an expired lease would do it, A claims it again (attempt 2), and
# that run's open waits too. When the lock goes, both opens run. Then:
#  - the job has one scans row, the new run's, and it is the digest's one ok
#    scan;
#  - A logs that the stale run's scan was not opened;
#  - the job ends done on attempt 2.
# Without the lease check in OPEN_SQL it fails at "the job has one scans row"
# (the stale run's row is there too, failed by sql/015 or by its own fenced
# result).
set -euo pipefail
# shellcheck source=tests/integration/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

tmp=$(hgf_tmpdir)
H=$HGFLEET_BIN
q() { hgf_psql "$HGFLEET_DATABASE_URL" -c "$1"; }

hgf_one_registry scan_late_open 13 4 "$tmp"

# One scan job to race over, and one to warm A up with; the sync's others are
# parked for the day, and so is the first until A is warm.
job=$(q "select min(id) from jobs where kind = 'scan' and state = 'queued'")
[[ -n $job ]] || hgf_fail "the sync queued no scan job"
warm=$(q "select min(id) from jobs where kind = 'scan' and state = 'queued' and id > $job")
[[ -n $warm ]] || hgf_fail "the sync queued one scan job only"
image=$(q "select payload->>'image_id' from jobs where id = $job")
q "update jobs set run_at = now() + interval '1 day' where kind = 'scan' and id <> $warm" >/dev/null

# A replica sends its first bulk statement on its main connection while its
# bulk connections connect (src/store/store.c). A's warm-up scan is that
# statement, so the opens held below wait on bulk connections and hold up no
# claim.
export HGFLEET_LISTEN=127.0.0.1:0 HGFLEET_WORKERS=2
hgf_bg "$H" serve >"$tmp/a.out" 2>"$tmp/a.log"
hgf_wait_sql "select state from jobs where id = $warm" "done" 30 "A's warm-up scan"

# The lock holder ends when its sleep is cancelled.
PGAPPNAME=hgf_late_open hgf_bg "$HGF_PG_BIN/psql" -X -q -d "$HGFLEET_DATABASE_URL" \
  -c "BEGIN; LOCK TABLE scans IN SHARE MODE; SELECT pg_sleep(600); COMMIT;" \
  >"$tmp/holder.out" 2>&1
hgf_wait_sql "select count(*) from pg_locks l join pg_class c on c.oid = l.relation
    where c.relname = 'scans' and l.mode = 'ShareLock' and l.granted" 1 10 "the lock on scans"

# A scan's open, waiting on the lock (pg_stat_activity shows only the start of
# its text, the connection's columns).
BLOCKED="select count(*) from pg_stat_activity where datname = current_database()
    and wait_event_type = 'Lock' and query like 'WITH c AS (SELECT id, name, %'"

# --- attempt 1: A claims the job; its open waits ------------------------------
q "update jobs set run_at = now() where id = $job" >/dev/null
hgf_wait_sql "select state || ' ' || attempts from jobs where id = $job" "running 1" 30 \
  "A claiming the job"
hgf_wait_sql "$BLOCKED" 1 30 "A's first open waiting on the lock"
owner=$(q "select lease_owner from jobs where id = $job")

# --- the lease is lost; A claims the job again --------------------------------
# As hgf_jobs_requeue_expired does it. The trigger of sql/015 is skipped: it
# would wait on the same lock, and it has no scans row of the job to move.
q "set session_replication_role = replica;
   update jobs set state = 'queued', lease_owner = null, lease_expires_at = null,
     updated_at = now() where id = $job and state = 'running'" >/dev/null
hgf_wait_sql "select state || ' ' || attempts || ' ' || lease_owner from jobs where id = $job" \
  "running 2 $owner" 30 "A claiming the job again"
hgf_wait_sql "$BLOCKED" 2 30 "A's second open waiting on the lock"
hgf_assert_eq 0 "$(q "select count(*) from scans where job_id = $job")" \
  "no scans row is open while the lock holds"

# --- the lock goes; both opens run ---------------------------------------------
hgf_assert_eq t "$(q "select bool_and(pg_cancel_backend(pid)) from pg_stat_activity
    where application_name = 'hgf_late_open'")" "the lock holder cancelled"
hgf_wait_sql "select state from jobs where id = $job" "done" 30 "the job ending"
hgf_assert_eq "1|ok" "$(q "select count(*) || '|' || string_agg(status, ',')
    from scans where job_id = $job")" "the job has one scans row, and it is ok"
hgf_wait_for_line "$tmp/a.log" "scan not opened: this job's lease has passed to another run" \
  10 >/dev/null
hgf_assert_eq 1 "$(q "select count(*) from scans where image_id = $image and status = 'ok'")" \
  "the digest has exactly one ok scan"
hgf_assert_eq "done|2|$(q "select id from scans where job_id = $job")" \
  "$(q "select state || '|' || attempts || '|' || (result->>'scan_id') from jobs
    where id = $job")" "the job ends on attempt 2 with the new run's scan"
echo "PASS: scan_late_open"
