#!/usr/bin/env bash
# `hgfleet serve` on its own: it starts before its database exists and says
# it is not ready, becomes ready once the database appears and is migrated,
# serves /healthz, /readyz and /metrics (valid Prometheus text with the job
# gauges), answers 404/405 in JSON, retries a failing job with backoff and
# fails bad jobs at once, and on SIGTERM exits 0, re-queueing only the jobs
# still running when the grace period ends, which are cancelled (nothing
# leaks, nothing more is written), or at once the jobs that only sleep in a
# retry backoff. Also `jobs list` and the usage errors of both commands.
set -euo pipefail
# shellcheck source=tests/integration/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

tmp=$(hgf_tmpdir)
H=$HGFLEET_BIN
base=$(hgf_pg_url)
db_name="hgf_serve_late_$$_$(( SRANDOM % 1000000 ))"
db=${base%/*}/$db_name
hgf_on_exit hgf_psql "$base" -c "DROP DATABASE IF EXISTS \"$db_name\" WITH (FORCE)"
export HGFLEET_DATABASE_URL=$db HGFLEET_LISTEN=127.0.0.1:0 HGFLEET_LOG_FORMAT=json
HGFLEET_MASTER_KEY=$(openssl rand -base64 32)
export HGFLEET_MASTER_KEY
unset AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN AWS_ENDPOINT_URL || true
q() { hgf_psql "$db" -c "$1"; }

# --- usage errors: exit 2, naming the culprit, before any database ---
hgf_expect_exit 2 "$H" serve extra
hgf_expect_exit 2 env HGFLEET_SHUTDOWN_GRACE=soon "$H" serve
hgf_assert_contains "$HGF_ERR" "HGFLEET_SHUTDOWN_GRACE" "a bad grace period is named"
hgf_expect_exit 2 env HGFLEET_LISTEN=127.0.0.1:99999 "$H" serve
hgf_assert_contains "$HGF_ERR" "HGFLEET_LISTEN" "a bad listen address is named"
hgf_expect_exit 2 env HGFLEET_LISTEN=::1:80 "$H" serve
hgf_assert_contains "$HGF_ERR" "brackets" "a bare IPv6 address is explained"
hgf_expect_exit 0 "$H" serve --help
hgf_assert_contains "$HGF_OUT" "HGFLEET_SHUTDOWN_GRACE" "serve --help documents its variables"
hgf_expect_exit 2 "$H" jobs list --state bogus
hgf_assert_contains "$HGF_ERR" "bogus" "a bad --state is named"
hgf_expect_exit 2 "$H" jobs list --kind nope
hgf_assert_contains "$HGF_ERR" "nope" "a bad --kind is named"
hgf_expect_exit 2 "$H" jobs list --limit 0
hgf_expect_exit 2 "$H" jobs frobnicate
hgf_expect_exit 0 "$H" jobs list --help
hgf_assert_contains "$HGF_OUT" "--state" "jobs --help documents its flags"

# A port that refuses connections (AWS calls fail fast: retryable) and one
# that accepts them and never answers (a job that hangs).
hgf_bg python3 -c '
import socket
free = socket.socket(); free.bind(("127.0.0.1", 0)); port = free.getsockname()[1]; free.close()
s = socket.socket(); s.bind(("127.0.0.1", 0)); s.listen(16)
print(port, s.getsockname()[1], flush=True)
held = []
while True:
    held.append(s.accept()[0])' >"$tmp/ports"
read -r free_port blackhole <<<"$(hgf_wait_for_line "$tmp/ports" '^[0-9]+ [0-9]+$' 10)"

wait_for() { # wait_for SECONDS DESCRIPTION CMD...: until CMD succeeds
  local limit=$(( $1 * 10 )) what=$2 i
  shift 2
  for (( i = 0; i < limit; i++ )); do
    "$@" && return 0
    sleep 0.1
  done
  hgf_fail "timed out after $(( limit / 10 )) s waiting for: $what"
}
url_of() { sed -n 's|.*serving on http://||p' "$1"; }
get() { curl -sS -o "$tmp/body" -w '%{http_code}' "http://$addr$1"; }

# --- a database that does not exist yet: up, but not ready ---
AWS_ENDPOINT_URL_ECR=http://127.0.0.1:$free_port HGFLEET_SHUTDOWN_GRACE=2 \
  hgf_bg "$H" serve >"$tmp/serve1.out" 2>"$tmp/serve1.log"
pid1=$HGF_BG_PID
hgf_wait_for_line "$tmp/serve1.out" '^hgfleet serving on http://127\.0\.0\.1:[0-9]+$' 10 >/dev/null
addr=$(url_of "$tmp/serve1.out")
hgf_assert_eq 200 "$(get /healthz)" "healthz answers without a database"
hgf_assert_eq '{"status":"ok"}' "$(<"$tmp/body")" "healthz body"
hgf_assert_eq 503 "$(get /readyz)" "readyz without a database"
hgf_assert_contains "$(<"$tmp/body")" "database unreachable" "readyz says why"
hgf_assert_contains "$(<"$tmp/body")" "$db_name" "readyz names the database tried"
hgf_assert_contains "$(<"$tmp/serve1.log")" "serve.webhook_disabled" \
  "serve says at once that, without HGFLEET_WEBHOOK_TOKEN, every event gets 401"
# Authentication comes before the database: without credentials, 401 (the
# webhook) and 403 (the API, disabled here) rather than 503.
code=$(curl -sS -o /dev/null -w '%{http_code}' -X POST -H 'Content-Type: application/json' \
  --data '{}' "http://$addr/api/webhooks/ecr")
hgf_assert_eq 401 "$code" "an unauthenticated webhook before the database"
hgf_assert_eq 403 "$(get /api/connections)" "the disabled API before the database"
hgf_assert_eq 200 "$(get /metrics)" "metrics without a database"
hgf_assert_contains "$(<"$tmp/body")" "hgfleet_database_up 0" "metrics shows the database down"

hgf_psql "$base" -c "CREATE DATABASE \"$db_name\""
readyz_says() { [[ $(get /readyz) == "$1" ]] && grep -q -- "$2" "$tmp/body"; }
wait_for 15 "readyz asks for migrations" readyz_says 503 'hgfleet migrate'
hgf_expect_exit 0 "$H" migrate
wait_for 5 "readyz ready" readyz_says 200 '"status":"ready"'
hgf_assert_contains "$(<"$tmp/body")" '"schema_version":' "readyz reports the schema"
hgf_assert_eq 404 "$(get /nowhere)" "an unknown path"
hgf_assert_contains "$(<"$tmp/body")" '"error"' "404 is JSON"
code=$(curl -sS -o "$tmp/body" -w '%{http_code}' -X POST "http://$addr/healthz")
hgf_assert_eq 405 "$code" "a known path with the wrong method"

# --- jobs: a retryable failure backs off, bad jobs fail at once ---
reg=123456789012.dkr.ecr.us-east-1.amazonaws.com
printf 'not-a-real-secret\n' >"$tmp/secret"
hgf_expect_exit 0 "$H" connection add "$reg" --schedule manual --access-key-id AKIASERVETEST0000001 \
  --secret-access-key-file "$tmp/secret"
conn=$(q "select id from connections where registry = '$reg'")
job=$(q "select id from jobs where dedup_key = 'sync:$conn'")
retried() { [[ $(q "select state || ' ' || attempts || ' ' || (last_error is not null) from jobs where id = $job") == "queued 1 true" ]]; }
wait_for 10 "the failing sync to be re-queued" retried
delay=$(q "select round(extract(epoch from run_at - now())) from jobs where id = $job")
(( delay >= 5 && delay <= 10 )) || hgf_fail "first retry should come 10 s after the failure, not in $delay s"
# Park it so that the counts below stay put; serve 2 takes it up again.
q "update jobs set run_at = now() + interval '1 hour' where id = $job" >/dev/null
q "insert into jobs (kind, payload) values ('sync', '{\"x\": 1}'), ('sync', '{\"connection_id\": 999999}')" >/dev/null
failed_at_once() { [[ $(q "select count(*) from jobs where state = 'failed' and attempts = 1") == 2 ]]; }
wait_for 10 "the two bad jobs to fail" failed_at_once
hgf_assert_contains "$(q "select last_error from jobs where payload = '{\"x\": 1}'")" "connection_id" \
  "an unparseable payload fails at once, saying why"
hgf_assert_contains "$(q "select last_error from jobs where payload = '{\"connection_id\": 999999}'")" \
  "999999" "a job for a missing connection fails at once, saying why"

# --- metrics: valid Prometheus text with the job counters and gauges ---
has_gauges() {
  [[ $(get /metrics) == 200 ]] && grep -q '^hgfleet_jobs{kind="sync",state="failed"} 2$' "$tmp/body"
}
wait_for 15 "the job gauges" has_gauges
python3 - "$tmp/body" "$reg" <<'PY'
import re, sys
text = open(sys.argv[1]).read()
assert text.endswith("\n"), "ends with a newline"
name = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
sample = re.compile(rf'^({name})(\{{{name}="(?:[^"\\]|\\.)*"(?:,{name}="(?:[^"\\]|\\.)*")*\}})? (\S+)$')
typed, values, helped = {}, {}, set()
for line in text.splitlines():
    if line.startswith("# HELP "):
        m = re.match(rf"^# HELP ({name}) .+$", line)
        assert m, line
        helped.add(m.group(1))
    elif line.startswith("# TYPE "):
        m = re.match(rf"^# TYPE ({name}) (counter|gauge|histogram|summary|untyped)$", line)
        assert m and m.group(1) not in typed, line
        typed[m.group(1)] = m.group(2)
    else:
        m = sample.match(line)
        assert m, f"not a sample line: {line!r}"
        fam = re.sub(r"_(bucket|sum|count)$", "", m.group(1))
        assert m.group(1) in typed or fam in typed, f"sample before its TYPE: {line}"
        float(m.group(3))
        values[m.group(1) + (m.group(2) or "")] = float(m.group(3))
def want(key, v):
    assert values.get(key) == v, f"{key} = {values.get(key)}, want {v}"
want("hgfleet_up", 1)
want("hgfleet_database_up", 1)
want('hgfleet_jobs_run_total{kind="sync",outcome="retry"}', 1)
want('hgfleet_jobs_run_total{kind="sync",outcome="failed"}', 2)
want('hgfleet_jobs{kind="sync",state="failed"}', 2)
want('hgfleet_jobs{kind="sync",state="queued"}', 1)
want('hgfleet_jobs{kind="scan",state="running"}', 0)
assert typed["hgfleet_jobs"] == "gauge" and typed["hgfleet_jobs_run_total"] == "counter"
assert not set(typed) - helped, f"families without HELP: {sorted(set(typed) - helped)}"
# The webhook's families are there before the first event.
assert typed.get("hgfleet_webhook_requests_total") == "counter", typed
assert typed.get("hgfleet_webhook_seconds") == "histogram", typed
lag = values[f'hgfleet_sync_lag_seconds{{registry="{sys.argv[2]}"}}']
assert 0 <= lag < 120, lag
print(f"metrics: {len(values)} valid series")
PY

# --- jobs list ---
hgf_expect_exit 0 "$H" jobs list --json
printf '%s' "$HGF_OUT" >"$tmp/all.json"
hgf_expect_exit 0 "$H" jobs list --state failed --json
printf '%s' "$HGF_OUT" >"$tmp/failed.json"
hgf_expect_exit 0 "$H" jobs list --kind sync --limit 1 --json
printf '%s' "$HGF_OUT" >"$tmp/limit1.json"
python3 - "$tmp" "$job" <<'PY'
import json, sys
d = sys.argv[1]
jobs = json.load(open(d + "/all.json"))
keys = {"id", "kind", "state", "priority", "attempts", "max_attempts", "run_at", "lease_owner",
        "lease_expires_at", "dedup_key", "last_error", "created_at", "finished_at", "payload"}
assert isinstance(jobs, list) and len(jobs) == 3, jobs
for j in jobs:
    assert set(j) == keys, sorted(set(j) ^ keys)
assert [j["id"] for j in jobs] == sorted((j["id"] for j in jobs), reverse=True), "newest first"
mine = [j for j in jobs if j["id"] == int(sys.argv[2])][0]
assert mine["state"] == "queued" and mine["attempts"] == 1 and mine["priority"] == 5, mine
assert mine["payload"]["connection_id"] > 0 and mine["dedup_key"].startswith("sync:"), mine
assert mine["run_at"].endswith("Z") and mine["finished_at"] is None, mine
failed = [j for j in jobs if j["state"] == "failed"]
assert all(j["finished_at"] and j["last_error"] for j in failed), failed
by_state = json.load(open(d + "/failed.json"))
assert sorted(j["id"] for j in by_state) == sorted(j["id"] for j in failed), "--state filters"
limited = json.load(open(d + "/limit1.json"))
assert [j["id"] for j in limited] == [jobs[0]["id"]], "--limit keeps the newest"
PY
hgf_expect_exit 0 "$H" jobs list
hgf_assert_contains "$HGF_OUT" "sync:$conn" "the text listing shows dedup keys"

# --- SIGTERM with nothing running: exit 0 at once, the queue untouched ---
before=$(q "select string_agg(id || ':' || state || ':' || attempts, ',' order by id) from jobs")
t0=$(date +%s%N)
kill -TERM "$pid1"
rc=0
wait "$pid1" || rc=$?
hgf_assert_eq 0 "$rc" "serve exits 0 on SIGTERM"
(( ($(date +%s%N) - t0) / 1000000 < 2000 )) || hgf_fail "an idle serve took over 2 s to stop"
hgf_assert_eq "$before" "$(q "select string_agg(id || ':' || state || ':' || attempts, ',' order by id) from jobs")" \
  "an idle shutdown re-queues nothing"
grep -q '"serve.stopped"' "$tmp/serve1.log" || hgf_fail "no serve.stopped log line"

# --- SIGTERM while jobs hang: after the grace period they are re-queued ---
# A sync stuck in DescribeRepositories and a scan stuck fetching its ECR
# token, both on the black hole. Released, they are cancelled: their HTTP
# requests end, their memory is freed (a sanitized build's LeakSanitizer
# checks it) and nothing more is written for them.
q "update jobs set run_at = now() where id = $job" >/dev/null
digest=sha256:$(printf 'hung image' | sha256sum | cut -d' ' -f1)
repo=$(q "insert into repositories (connection_id, name) values ($conn, 'hung/app') returning id")
image=$(q "insert into images (repository_id, digest) values ($repo, '$digest') returning id")
scan_job=$(q "insert into jobs (kind, payload, priority) values ('scan', '{\"connection_id\": $conn,
  \"image_id\": $image, \"repository\": \"hung/app\", \"digest\": \"$digest\"}', 10) returning id")
AWS_ENDPOINT_URL_ECR=http://127.0.0.1:$blackhole HGFLEET_SHUTDOWN_GRACE=1 \
  hgf_bg "$H" serve >"$tmp/serve2.out" 2>"$tmp/serve2.log"
pid2=$HGF_BG_PID
running_here() { # running_here PID: both jobs run in that serve
  [[ $(q "select string_agg(state || ' ' || (lease_owner like '%:$1:%'), ',' order by id)
          from jobs where id in ($job, $scan_job)") == "running true,running true" ]]
}
wait_for 10 "serve 2 to run both jobs" running_here "$pid2"
hgf_assert_eq 2 "$(q "select attempts from jobs where id = $job")" "the claim counted an attempt"
scan_row() { q "select status || ' ' || (finished_at is null) from scans where job_id = $scan_job"; }
scan_opened() { [[ -n $(scan_row) ]]; }
wait_for 10 "the scan to open its row" scan_opened
synced_at() { q "select coalesce(last_sync_at::text, '') || ' ' || coalesce(last_sync_status, '') from connections where id = $conn"; }
sync_before=$(synced_at)
t0=$(date +%s%N)
kill -TERM "$pid2"
rc=0
wait "$pid2" || rc=$?
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
hgf_assert_eq 0 "$rc" "serve exits 0 after the grace period"
(( ms >= 900 && ms < 4000 )) || hgf_fail "shutdown took $ms ms with a 1 s grace period"
hgf_assert_eq "queued 1 " "$(q "select state || ' ' || attempts || ' ' || coalesce(lease_owner, '') from jobs where id = $job")" \
  "the hung sync is back in the queue, lease cleared, the interrupted attempt not counted"
hgf_assert_eq "queued 0 " "$(q "select state || ' ' || attempts || ' ' || coalesce(lease_owner, '') from jobs where id = $scan_job")" \
  "the hung scan is back in the queue too"
# No outcome: its row waits, unfinished, with its job (sql/015).
hgf_assert_eq "queued true" "$(scan_row)" "the cancelled scan wrote no outcome"
hgf_assert_eq "$sync_before" "$(synced_at)" "the cancelled sync wrote no outcome"
hgf_assert_eq 2 "$(q "select count(*) from jobs where state = 'failed'")" "failed jobs stay failed"
hgf_assert_eq 0 "$(q "select count(*) from jobs where state = 'running'")" "nothing is left running"
grep -q '"serve.grace_over"' "$tmp/serve2.log" || hgf_fail "no serve.grace_over log line"
if grep -E '"job\.(done|retry|failed|done_twice)"|"sync\.failed"' "$tmp/serve2.log"; then
  hgf_fail "a cancelled job reported an outcome"
fi

# --- SIGTERM while jobs sleep in a retry backoff: re-queued at once ---
# The same two jobs against the port that refuses connections: each attempt
# fails at once, and AWS_MAX_ATTEMPTS=10 keeps them in backoff for about a
# minute. They make no progress, so serve re-queues them without waiting out
# the grace period (the default 25 s here).
AWS_ENDPOINT_URL_ECR=http://127.0.0.1:$free_port AWS_MAX_ATTEMPTS=10 HGFLEET_LOG_LEVEL=debug \
  hgf_bg "$H" serve >"$tmp/serve3.out" 2>"$tmp/serve3.log"
pid3=$HGF_BG_PID
wait_for 10 "serve 3 to run both jobs" running_here "$pid3"
in_backoff() {
  grep -q '"aws\.retry".*GetAuthorizationToken.*reason=transient' "$tmp/serve3.log" &&
    grep -q '"aws\.retry".*DescribeRepositories.*reason=transient' "$tmp/serve3.log"
}
wait_for 10 "the scan and the sync to back off" in_backoff
t0=$(date +%s%N)
kill -TERM "$pid3"
rc=0
wait "$pid3" || rc=$?
ms=$(( ($(date +%s%N) - t0) / 1000000 ))
echo "serve stopped $ms ms after SIGTERM with a scan and a sync in a retry backoff"
hgf_assert_eq 0 "$rc" "serve exits 0 with jobs in a retry backoff"
(( ms < 3000 )) || hgf_fail "shutdown took $ms ms: it waited for jobs asleep in a retry backoff"
hgf_assert_eq "queued 1 " "$(q "select state || ' ' || attempts || ' ' || coalesce(lease_owner, '') from jobs where id = $job")" \
  "the sync in backoff is back in the queue, its attempt not counted"
hgf_assert_eq "queued 0 " "$(q "select state || ' ' || attempts || ' ' || coalesce(lease_owner, '') from jobs where id = $scan_job")" \
  "the scan in backoff is back in the queue, its attempt not counted"
hgf_assert_eq "queued true" "$(scan_row)" "the scan re-queued from its backoff wrote no outcome"
hgf_assert_eq "$sync_before" "$(synced_at)" "the sync re-queued from its backoff wrote no outcome"
grep -q '"serve.jobs_asleep"' "$tmp/serve3.log" || hgf_fail "no serve.jobs_asleep log line"
if grep -E '"serve\.grace_over"|"job\.(done|retry|failed|done_twice)"|"sync\.failed"' "$tmp/serve3.log"; then
  hgf_fail "jobs in a retry backoff were not re-queued at once, or reported an outcome"
fi
echo "PASS: serve"
