#!/usr/bin/env bash
# The store prepares its statements (HGFLEET_DB_PREPARE, default on). The same
# sweep runs against two databases, one with the setting on and one off; the
# server's statement log and pg_stat_statements say which statements ran
# prepared and how often the server planned; a failed Prepare's error is the
# caller's. Then `serve` with prepared statements lives through a server
# restart (the statements are made again on the new session, not papered over
# by the stale-statement retry) and through a schema change under a prepared
# statement's result ("cached plan must not change result type"), which it
# answers by preparing the statement again.
#
# pg_stat_statements needs a cluster of its own (shared_preload_libraries and
# a restart); the shared fixture serves the other tests in parallel.
set -euo pipefail
# shellcheck source=tests/integration/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

tmp=$(hgf_tmpdir)
hgf_python_on_path
harness=$HGF_SOURCE_DIR/scripts/pg-harness
pgdir=$tmp/pg
hgf_on_exit "$harness" stop "$pgdir"
base=$("$harness" start "$pgdir" 2>"$tmp/harness.log")
pglog=$(<"$pgdir/datadir")/server.log
hgf_psql "$base" -c "ALTER SYSTEM SET shared_preload_libraries = 'pg_stat_statements'"
hgf_psql "$base" -c "ALTER SYSTEM SET log_line_prefix = '%m [%p] db=%d '"
"$harness" restart "$pgdir" >/dev/null 2>>"$tmp/harness.log"
hgf_psql "$base" -c "ALTER SYSTEM SET pg_stat_statements.track_planning = on"
hgf_psql "$base" -c "SELECT pg_reload_conf()" >/dev/null
hgf_psql "$base" -c 'CREATE EXTENSION pg_stat_statements'
for d in prep_on prep_off; do
  hgf_psql "$base" -c "CREATE DATABASE $d"
  # Every statement's execution is logged with the name it ran under.
  hgf_psql "$base" -c "ALTER DATABASE $d SET log_statement = 'all'"
done
q() { hgf_psql "$base" -c "$1"; }

HGFLEET_MASTER_KEY=$(openssl rand -base64 32)
export HGFLEET_MASTER_KEY HGFLEET_LOG_FORMAT=json HGFLEET_SCANNER=none
unset AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN AWS_ENDPOINT_URL \
  HGFLEET_DB_PREPARE HGFLEET_RESCAN_AFTER HGFLEET_ADMIN_TOKEN HGFLEET_ADMIN_TOKEN_FILE || true
H=$HGFLEET_BIN

akid=AKIAPREPARETEST00001
secret=$(openssl rand -hex 20)
hgf_bg "$ECRSIM_BIN" --seed 53 --accounts 2 --regions us-east-1,eu-west-1 --repos 3 --images 8 \
  --key "$akid:$secret:*" >"$tmp/ecrsim.out" 2>"$tmp/ecrsim.log"
line=$(hgf_wait_for_line "$tmp/ecrsim.out" 'listening on http://' 10)
sim_url=${line##* }
export AWS_ENDPOINT_URL_ECR=$sim_url AWS_EC2_METADATA_DISABLED=true
curl -fsS "$sim_url/_sim/truth" >"$tmp/truth.json"
python3 -c '
import json, sys
print("account_id,region")
for r in json.load(open(sys.argv[1]))["registries"]:
    account, _, _, region, _ = r["registry"].split(".", 4)
    print(f"{account},{region}")' "$tmp/truth.json" >"$tmp/registries.csv"
images=$(python3 -c '
import json, sys
t = json.load(open(sys.argv[1]))
print(sum(len(repo["images"]) for r in t["registries"] for repo in r["repositories"]))' \
  "$tmp/truth.json")
(( images >= 20 )) ||
  hgf_fail "ecrsim serves only $images images; the sweep must repeat its statements"

# --- a bad value is refused, naming the variable, before anything runs ---
export HGFLEET_DATABASE_URL=${base%/*}/prep_on
hgf_expect_exit 2 env HGFLEET_DB_PREPARE=sometimes "$H" migrate
hgf_assert_contains "$HGF_ERR" "HGFLEET_DB_PREPARE" "the error names the variable"
hgf_assert_eq 0 "$(q "SELECT count(*) FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid
  WHERE d.datname = 'prep_on' AND s.query LIKE '%schema_migrations%'")" \
  "nothing ran with the bad value"

# A statement whose Prepare fails (no such table yet) reports the server's
# error, not the aborted statement queued behind the Prepare.
hgf_expect_exit 1 "$H" jobs list
hgf_assert_contains "$HGF_ERR" 'relation "jobs" does not exist' \
  "a failed Prepare's error is the caller's"

# sweep DB PREPARE: migrate, import the fleet and sweep it with that setting,
# on two connections (the main one and one bulk).
sweep() {
  local db=$1 prepare=$2
  HGFLEET_DATABASE_URL=${base%/*}/$db
  export HGFLEET_DATABASE_URL HGFLEET_DB_PREPARE=$prepare HGFLEET_DB_CONNECTIONS=2
  hgf_expect_exit 0 "$H" migrate
  # The connections use the host's credentials.
  AWS_ACCESS_KEY_ID=$akid AWS_SECRET_ACCESS_KEY=$secret \
    hgf_expect_exit 0 "$H" connection import "$tmp/registries.csv" --schedule manual
  AWS_ACCESS_KEY_ID=$akid AWS_SECRET_ACCESS_KEY=$secret hgf_expect_exit 0 "$H" sweep --wait
  hgf_assert_eq "$images" "$(hgf_psql "$HGFLEET_DATABASE_URL" -c \
    "SELECT count(*) FROM jobs WHERE kind = 'scan' AND state = 'done'")" "$db: every image scanned"
}
sweep prep_on on
sweep prep_off off
unset HGFLEET_DB_PREPARE HGFLEET_DB_CONNECTIONS

# executed DB NAME-PATTERN: how many statements the server log shows DB ran as NAME.
executed() {
  grep -c -E "db=$1 LOG:  execute $2: " "$pglog" || true
}
on_named=$(executed prep_on 'hgf_[0-9]+')
on_unnamed=$(executed prep_on '<unnamed>')
off_named=$(executed prep_off 'hgf_[0-9]+')
off_unnamed=$(executed prep_off '<unnamed>')
echo "statements executed: on: $on_named prepared, $on_unnamed unnamed;" \
  "off: $off_named prepared, $off_unnamed unnamed"
hgf_assert_eq 0 "$off_named" "HGFLEET_DB_PREPARE=off prepares nothing"
(( off_unnamed >= 4 * images )) || hgf_fail "the sweep ran only $off_unnamed statements unprepared"
# Unnamed with prepare on: what is not preparable (LISTEN) and each
# deallocation; everything else runs prepared.
(( on_named * 10 >= (on_named + on_unnamed) * 9 )) ||
  hgf_fail "with prepare on, only $on_named of $(( on_named + on_unnamed )) statements ran prepared"
(( on_named + on_unnamed >= off_named + off_unnamed - off_unnamed / 5 )) ||
  hgf_fail "the two sweeps ran very different numbers of statements"

# Planning: off plans every call; on plans a statement when it is prepared and
# for its first custom plans, then mostly runs the generic plan (the server
# may keep choosing custom plans for a statement whose generic plan looks
# worse, so not every statement has to show it).
# Each connection prepares for itself (about 6 plans each), hence only two.
# repeated DB: "statements rarely-planned" among the top-level statements DB
# ran at least once per image.
repeated() {
  q "SELECT count(*) || ' ' || count(*) FILTER (WHERE s.plans * 3 <= s.calls)
     FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid
     WHERE d.datname = '$1' AND s.toplevel AND s.calls >= $images"
}
q "SELECT d.datname, s.calls, s.plans, left(regexp_replace(s.query, '\s+', ' ', 'g'), 60)
   FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid
   WHERE d.datname LIKE 'prep_%' AND s.toplevel AND s.calls >= $images ORDER BY 1, 2 DESC"
read -r on_n on_rare <<<"$(repeated prep_on)"
read -r off_n off_rare <<<"$(repeated prep_off)"
(( off_n >= 3 )) || hgf_fail "the sweep repeated only $off_n statements once per image"
hgf_assert_eq 0 "$off_rare" "unprepared, the server plans every call"
hgf_assert_eq "$off_n" "$(q "SELECT count(*) FROM pg_stat_statements s JOIN pg_database d ON
  d.oid = s.dbid WHERE d.datname = 'prep_off' AND s.toplevel AND s.calls >= $images
  AND s.plans = s.calls")" "unprepared, every repeated statement planned once per call"
(( on_rare * 2 > on_n )) ||
  hgf_fail "prepared, only $on_rare of $on_n repeated statements ran mostly without planning"
total_plans() {
  q "SELECT sum(s.plans) FROM pg_stat_statements s JOIN pg_database d ON d.oid = s.dbid
     WHERE d.datname = '$1' AND s.toplevel"
}
on_total=$(total_plans prep_on)
off_total=$(total_plans prep_off)
echo "plans over the whole run: on $on_total, off $off_total"
(( on_total * 2 <= off_total )) ||
  hgf_fail "prepared statements saved little planning: $on_total vs $off_total"

# --- serve: a restart of the server, then a schema change under a statement ---
export HGFLEET_DATABASE_URL=${base%/*}/prep_on HGFLEET_LISTEN=127.0.0.1:0 HGFLEET_WORKERS=2
token=$(openssl rand -hex 24)
export HGFLEET_ADMIN_TOKEN=$token
hgf_bg "$H" serve >"$tmp/serve.out" 2>"$tmp/serve.log"
line=$(hgf_wait_for_line "$tmp/serve.out" 'serving on http://' 10)
api=http://${line##*http://}
n_conn=$(( $(wc -l <"$tmp/registries.csv") - 1 ))
# list: GET /api/connections, which runs the same statement on the main connection each time.
list() {
  local body
  body=$(curl -sS -w '\n%{http_code}' -H "Authorization: Bearer $token" "$api/api/connections")
  hgf_assert_eq 200 "${body##*$'\n'}" "GET /api/connections ($1): ${body%$'\n'*}"
  hgf_assert_eq "$n_conn" "$(printf '%s' "${body%$'\n'*}" | jq length)" \
    "every connection listed ($1)"
}
list "first"
list "prepared"
connects=$(grep -c '"store.connected"' "$tmp/serve.log" || true)
"$harness" restart "$pgdir" >/dev/null 2>>"$tmp/harness.log"
for (( i = 0; i < 150; i++ )); do
  (( $(grep -c '"store.connected"' "$tmp/serve.log" || true) > connects )) &&
    curl -fsS "$api/readyz" >/dev/null 2>&1 && break
  sleep 0.1
done
grep -q '"store.broken"' "$tmp/serve.log" || hgf_fail "serve never saw the restart"
list "after the restart"
list "after the restart, prepared"
# Had the cache outlived the session, each statement would have failed once as
# missing (26000) and been prepared again.
if grep -q '"store.reprepare"' "$tmp/serve.log"; then
  hgf_fail "a statement prepared before the restart ran on the new session:" \
    "$(grep '"store.reprepare"' "$tmp/serve.log")"
fi

# The listing's result type changes under the prepared statement.
q_on() { hgf_psql "$HGFLEET_DATABASE_URL" -c "$1"; }
q_on "ALTER TABLE connections ALTER COLUMN name TYPE varchar(300)"
list "after the schema change"
hgf_assert_eq 1 "$(grep -c '"store.reprepare".*0A000' "$tmp/serve.log" || true)" \
  "the stale statement was prepared again, once"
list "after the schema change, prepared again"
hgf_assert_eq 1 "$(grep -c '"store.reprepare"' "$tmp/serve.log" || true)" "re-prepared only once"
echo "PASS: store prepare"
