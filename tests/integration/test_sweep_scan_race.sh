#!/usr/bin/env bash
# A digest whose scan ends while a sweep picks what to scan is scanned once.
# This is the race behind the fault soak's rare "a digest was scanned twice":
#  - the sweep's ENQUEUE_SCANS_SQL (src/sched/sweep.c) chooses the images with
#    no ok scan, in its statement's snapshot;
#  - a sync-queued scan of such an image stores its ok scan and ends its job
#    after that snapshot, before the statement's insert checks the job's
#    dedup key;
#  - the check reads the latest committed state, finds no live job, and the
#    sweep queues a second scan of the digest.
# Forced, not waited for: a session stores the ok scan and marks the job done
# in one transaction it keeps open. The sweep's insert waits on that
# transaction at the dedup check; the session then commits. Then:
#  - the sweep did queue a second job for the digest (the race happened);
#  - that job ends ok on the first scan, already stored, and opens no row
#    (OPEN_SQL's freshness check, src/sched/scan.c);
#  - the digest has exactly one ok scan.
# Without the freshness check it fails at "the digest has exactly one ok scan".
set -euo pipefail
# shellcheck source=tests/integration/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

tmp=$(hgf_tmpdir)
H=$HGFLEET_BIN
q() { hgf_psql "$HGFLEET_DATABASE_URL" -c "$1"; }

hgf_one_registry sweep_scan_race 13 4 "$tmp"

# The sync's scan jobs; the first is the one to race over, held by a replica
# that is not there (its lease runs for an hour, so nothing takes it over).
job=$(q "select min(id) from jobs where kind = 'scan' and state = 'queued'")
[[ -n $job ]] || hgf_fail "the sync queued no scan job"
image=$(q "select payload->>'image_id' from jobs where id = $job")
q "update jobs set state = 'running', attempts = 1, lease_owner = 'elsewhere:1:1',
     lease_expires_at = now() + interval '1 hour', claimed_at = now() where id = $job" >/dev/null

# The session that ends the scan: its statements are fed through a FIFO, so
# its transaction stays open until the test sends COMMIT.
# Held open read-write here: psql's open of the FIFO then does not wait for a
# writer, and psql never reads an end of file (the test's cleanup ends it).
mkfifo "$tmp/ender.in"
exec 3<>"$tmp/ender.in"
hgf_bg "$HGF_PG_BIN/psql" -X -q -v ON_ERROR_STOP=1 -d "$HGFLEET_DATABASE_URL" \
  -f "$tmp/ender.in" >"$tmp/ender.out" 2>&1
echo "SET application_name = 'hgf_race_ender'; BEGIN;
  INSERT INTO scans (image_id, scanner, status, started_at, finished_at, job_id)
       VALUES ($image, 'none', 'ok', now(), now(), $job);
  UPDATE jobs SET state = 'done', finished_at = now(), updated_at = now(),
       lease_owner = NULL, lease_expires_at = NULL WHERE id = $job;" >&3
hgf_wait_sql "select state from pg_stat_activity where application_name = 'hgf_race_ender'" \
  "idle in transaction" 10 "the ender's transaction ($(cat "$tmp/ender.out"))"

# --- the sweep: its scan insert waits on the ender at the dedup check -----------
hgf_bg "$H" sweep --wait --json >"$tmp/sweep.out" 2>"$tmp/sweep.log"
sweep_pid=$HGF_BG_PID
hgf_wait_sql "select count(*) from pg_stat_activity where datname = current_database()
    and wait_event_type = 'Lock' and query like 'WITH cand AS%'" 1 60 \
  "the sweep's scan insert waiting on the ender"
echo "COMMIT;" >&3
exec 3>&-

for (( i = 0; i < 600; i++ )); do kill -0 "$sweep_pid" 2>/dev/null || break; sleep 0.1; done
kill -0 "$sweep_pid" 2>/dev/null && hgf_fail "the sweep did not end in 60 s: $(tail -5 "$tmp/sweep.log")"
rc=0
wait "$sweep_pid" || rc=$?
hgf_assert_eq 0 "$rc" "the sweep's exit status ($(tail -3 "$tmp/sweep.log"))"
second=$(q "select id from jobs where kind = 'scan' and id <> $job
    and (payload->>'image_id')::bigint = $image and payload->>'reason' = 'sweep'")
[[ -n $second ]] || hgf_fail "the sweep queued no second job for the digest: the race did not happen"
first_scan=$(q "select id from scans where job_id = $job")
hgf_assert_eq 1 "$(q "select count(*) from scans where image_id = $image and status = 'ok'")" \
  "the digest has exactly one ok scan"
hgf_assert_eq 0 "$(q "select count(*) from scans where job_id = $second")" \
  "the sweep's job opened no scans row"
hgf_assert_eq "done|ok|true|$first_scan" "$(q "select concat_ws('|', state, result->>'status',
    result->>'already_stored', result->>'scan_id') from jobs where id = $second")" \
  "the sweep's job ended ok on the scan already stored"
hgf_assert_eq "$(q "select count(*) from images")" \
  "$(q "select count(distinct image_id) from scans where status = 'ok'")" "every digest was scanned"
echo "PASS: sweep_scan_race"
