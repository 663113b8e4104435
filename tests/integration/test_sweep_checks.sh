#!/usr/bin/env bash
# A sweep's checks stay cheap however many jobs it has (issue #8):
#  (a) the statements the code runs every second (LIVE_SQL in sweep.c,
#      SCAN_PROGRESS_SQL and IDS_SQL in sweep_wait.c, read from the sources)
#      on a sweep of 200,000 finished scan jobs plus 1,000 live ones: their
#      plans read the jobs_sweep_* indexes, never a Seq Scan of jobs nor the
#      scan_jobs array, within a buffer budget a walk of the sweep's jobs
#      exceeds a hundredfold; and their answers are right (a scan parked in
#      a long backoff is not waited for; a phase waits only for its kind);
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

# sql FILE NAME: the C string constant NAME of FILE as one SQL text.
sql() {
  python3 - "$HGF_SOURCE_DIR/$1" "$2" <<'PY'
import re, sys
src, name = open(sys.argv[1]).read(), sys.argv[2]
m = re.search(r'\b%s\[\]\s*=\s*((?:\s*"(?:[^"\\]|\\.)*")+)\s*;' % re.escape(name), src)
assert m, "%s not found in %s" % (name, sys.argv[1])
print("".join(p.encode().decode("unicode_escape")
              for p in re.findall(r'"((?:[^"\\]|\\.)*)"', m.group(1))))
PY
}
live_sql=$(sql src/sched/sweep.c LIVE_SQL)
progress_sql=$(sql src/sched/sweep_wait.c SCAN_PROGRESS_SQL)
ids_sql=$(sql src/sched/sweep_wait.c IDS_SQL)

# --- (a) the statements on a big sweep --------------------------------------
# Sweep 7 is scanning: 200,000 scans finished (50 failed), 1,000 live spread
# over the table (1 in 201), one parked in a 1 h backoff; sweep 6, older,
# has 50,000 done scans; 20,000 untagged jobs, 2,000 of them queued.
db "INSERT INTO sweeps (id, requested_by, status, phase) VALUES
      (6, 'test', 'failed', 'done'), (7, 'test', 'running', 'scanning');
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

# explain NAME TYPES SQL ARGS: the plan of SQL run with ARGS, as JSON, for
# the custom plan libpq gets and the generic one, one per line.
explain() {
  local mode out=
  for mode in force_custom_plan force_generic_plan; do
    out+=$(db "SET plan_cache_mode = $mode; PREPARE $1($2) AS $3;
               EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) EXECUTE $1($4);" | tr -d '\n')$'\n'
  done
  printf '%s' "$out"
}

# check WHAT BUDGET INDEXES: the plans on stdin read each of the comma-separated
# INDEXES, no Seq Scan of jobs
# and no more than BUDGET shared buffers.
check() {
  python3 -c '
import json, sys
what, budget, indexes = sys.argv[1], int(sys.argv[2]), sys.argv[3].split(",")
def nodes(n):
    yield n
    for c in n.get("Plans", []):
        yield from nodes(c)
for mode, line in zip(("custom", "generic"), sys.stdin.read().splitlines()):
    plan = json.loads(line)[0]["Plan"]
    all_ = list(nodes(plan))
    seq = [n for n in all_ if n["Node Type"] == "Seq Scan" and n["Relation Name"] == "jobs"]
    assert not seq, "%s (%s plan): Seq Scan on jobs" % (what, mode)
    used = {n.get("Index Name") for n in all_}
    for index in indexes:
        assert index in used, "%s (%s plan): %s not used, only %s" % (what, mode, index, used)
    bufs = plan["Shared Hit Blocks"] + plan["Shared Read Blocks"]
    assert bufs <= budget, "%s (%s plan): %d buffers, over %d" % (what, mode, bufs, budget)
    print("%s (%s plan): %d buffers, %.3f ms" % (what, mode, bufs, plan["Actual Total Time"]))
' "$@"
}

# A walk of the sweep's 201,001 jobs reads one index page and one heap page
# a job at least: 400,000 buffers. The live check is an index probe; the
# progress counts read the 1,001 live and 50 failed entries of the indexes
# (index-only once vacuumed, at most one heap page each otherwise).
explain live "bigint, text" "$live_sql" "7, 'scan'" | check "live check" 20 jobs_sweep_live
explain progress bigint "$progress_sql" 7 | check "scan progress" 1500 jobs_sweep_live,jobs_sweep_failed
explain ids "bigint, text" "$ids_sql" "7, 'scan'" | check "phase ids" 1500 jobs_sweep_live

# The answers.
run() { db "PREPARE q($1) AS $2; EXECUTE q($3);"; }
live() { [[ -n $(run "bigint, text" "$live_sql" "$1, '$2'") ]] && echo t || echo f; }
hgf_assert_eq t "$(live 7 scan)" "live scans are waited for"
hgf_assert_eq "201001|200000|50" "$(run bigint "$progress_sql" 7 | tr -d '\n')" \
  "progress: every scan counted, the 1,001 live ones (one parked) not finished"
hgf_assert_eq 1001 "$(run "bigint, text" "$ids_sql" "7, 'scan'" | wc -l)" "the pool's ids are the live scans"
hgf_assert_eq f "$(live 7 sync)" "the syncing phase waits for no scan"
db "UPDATE jobs SET state = 'done' WHERE sweep_id = 7 AND state = 'queued' AND run_at <= now()" >/dev/null
hgf_assert_eq f "$(live 7 scan)" "a scan parked in a 1 h backoff is not waited for"
db "UPDATE jobs SET run_at = now() + interval '20 seconds' WHERE dedup_key = 'scan:t/parked'" >/dev/null
hgf_assert_eq t "$(live 7 scan)" "a scan due within 30 s is waited for"
db "INSERT INTO jobs (kind, state, sweep_id) VALUES ('sync', 'queued', 8)" >/dev/null
db "UPDATE jobs SET run_at = now() + interval '1 hour' WHERE sweep_id = 8" >/dev/null
hgf_assert_eq "t f" "$(live 8 sync) $(live 8 scan)" \
  "a live sync is waited for in the syncing phase only, even in a long backoff"

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
