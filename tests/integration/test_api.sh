#!/usr/bin/env bash
# The read-only JSON API of `hgfleet serve`: every GET /api/... route is
# refused (403) while HGFLEET_ADMIN_TOKEN is unset and needs the bearer token
# (401) once it is set; each one's JSON equals what the CLI's --json prints
# for the same data (connections, images with their filters, jobs, sweeps), a
# sweep report comes back byte for byte as `sweep show` renders it in JSON,
# CSV and HTML; bad ids and parameters get 400 naming the field, unknown ids
# 404, a running sweep's report 409; and no response holds a secret.
set -euo pipefail
# shellcheck source=tests/integration/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

tmp=$(hgf_tmpdir)
HGFLEET_DATABASE_URL=$(hgf_new_db api)
HGFLEET_MASTER_KEY=$(openssl rand -base64 32)
export HGFLEET_DATABASE_URL HGFLEET_MASTER_KEY HGFLEET_LOG_FORMAT=json HGFLEET_SCANNER=none
export HGFLEET_LISTEN=127.0.0.1:0 HGFLEET_WORKERS=2 AWS_EC2_METADATA_DISABLED=true
unset AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN AWS_ENDPOINT_URL \
  HGFLEET_ADMIN_TOKEN HGFLEET_ADMIN_TOKEN_FILE HGFLEET_RESCAN_AFTER || true
H=$HGFLEET_BIN
db() { hgf_psql "$HGFLEET_DATABASE_URL" -c "$1"; }

# --- a fleet: two good static-key connections and one whose key is wrong ---
acct=$(printf "%012d" $((100000000000 + 21 * 1000000)))  # ecrsim's first account for seed 21
secret=$(openssl rand -hex 20)
printf '%s\n' "$secret" >"$tmp/secret"
printf 'wrong-%s\n' "$(openssl rand -hex 12)" >"$tmp/wrong"
hgf_bg "$ECRSIM_BIN" --seed 21 --accounts 1 --regions us-east-1,eu-west-1 --repos 3 --images 4 \
  --key "AKIAAPITESTACCOUNT01:$secret:$acct" >"$tmp/ecrsim.out" 2>"$tmp/ecrsim.log"
line=$(hgf_wait_for_line "$tmp/ecrsim.out" 'listening on http://' 10)
export AWS_ENDPOINT_URL_ECR=${line##* }

hgf_expect_exit 0 "$H" migrate
add() { # add REGION SECRET_FILE: prints the new connection's id
  hgf_expect_exit 0 "$H" connection add "$acct.dkr.ecr.$1.amazonaws.com" --schedule manual \
    --access-key-id AKIAAPITESTACCOUNT01 --secret-access-key-file "$2" --json
  jq -r .id <<<"$HGF_OUT"
}
east=$(add us-east-1 "$tmp/secret")
west=$(add eu-west-1 "$tmp/secret")
bad=$(add ap-south-1 "$tmp/wrong")
reg_east=$acct.dkr.ecr.us-east-1.amazonaws.com
# Partial (exit 1): the wrong key fails its sync, which leaves a failed job.
hgf_expect_exit 1 "$H" sweep --wait
sweep=$(db 'select max(id) from sweeps')
hgf_assert_eq 0 "$(db "select count(*) from jobs where state in ('queued','running')")" \
  "the sweep left nothing to run, so the data holds still"
hgf_assert_eq 1 "$(db "select count(*) from jobs where state = 'failed' and kind = 'sync'")" \
  "the wrong key's sync failed"
repo=$(db "select r.name from repositories r join images i on i.repository_id = r.id
           group by r.name order by count(*) desc, r.name limit 1")
# One deleted image per registry, so state= has both kinds to tell apart.
db "update images set deleted_at = now() where id in (select min(i.id) from images i
    join repositories r on r.id = i.repository_id group by r.connection_id)" >/dev/null

serve() { # serve NAME: starts a server, leaves its base URL in $base
  hgf_bg "$H" serve >"$tmp/$1.out" 2>"$tmp/$1.log"
  local l i
  l=$(hgf_wait_for_line "$tmp/$1.out" 'serving on http://' 10)
  base=${l##* }
  for (( i = 0; i < 100; i++ )); do
    curl -fsS "$base/readyz" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  hgf_fail "serve $1 never became ready"
}
# Requests are queued by get and sent by sent, many in one curl (starting a
# process per request was most of this test's time).
n=0 queue=() batch_want=() batch_path=() batch_files=()
get() { # get EXPECTED_CODE PATH [curl args...]: queues a GET; its body lands in $tmp/r<n>, named by $resp
  local want=$1 path=$2
  shift 2
  n=$(( n + 1 ))
  resp=$tmp/r$n
  (( ${#batch_want[@]} == 0 )) || queue+=(--next)
  queue+=(-sS -o "$resp" -w '%{http_code}\n' "$@" "$base$path")
  batch_want+=("$want") batch_path+=("$path") batch_files+=("$resp")
}
sent() { # sent: sends the queued GETs; each must get its EXPECTED_CODE. Leaves
  # their paths and bodies' files in sent_path and sent_files.
  local codes i
  mapfile -t codes < <(curl "${queue[@]}")
  for i in "${!batch_want[@]}"; do
    [[ ${codes[i]:-none} == "${batch_want[i]}" ]] ||
      hgf_fail "GET ${batch_path[i]}: expected HTTP ${batch_want[i]}, got ${codes[i]:-none}: $(head -c 600 "${batch_files[i]}")"
  done
  sent_path=("${batch_path[@]}") sent_files=("${batch_files[@]}")
  queue=() batch_want=() batch_path=() batch_files=()
}
# sent_fields: the field and error members of each sent response, in
# sent_field and sent_error
sent_fields() {
  local lines i
  mapfile -t lines < <(jq -r '[.field // "", .error // "" | tostring] | @tsv' "${sent_files[@]}")
  (( ${#lines[@]} == ${#sent_files[@]} )) || hgf_fail "a response is not one JSON object"
  sent_field=() sent_error=()
  for i in "${!lines[@]}"; do
    sent_field+=("${lines[i]%%$'\t'*}") sent_error+=("${lines[i]#*$'\t'}")
  done
}
field() { # field FILE KEY: a top-level string of a JSON object
  jq -r --arg k "$2" '.[$k] // ""' "$1"
}
count() { jq length "$1"; }

# --- without HGFLEET_ADMIN_TOKEN every API route is refused ---
serve off
routes=(/api/connections "/api/connections/$east" /api/images /api/jobs /api/sweeps
  "/api/sweeps/$sweep" "/api/sweeps/$sweep/report")
for p in "${routes[@]}"; do
  get 403 "$p" -H "Authorization: Bearer anything-anything-anything"
done
sent
sent_fields
for i in "${!sent_error[@]}"; do
  hgf_assert_contains "${sent_error[i]}" "disabled" "403 says the API is disabled (${sent_path[i]})"
done
kill -TERM "$HGF_BG_PID"

token=$(openssl rand -hex 24)
export HGFLEET_ADMIN_TOKEN=$token
serve on
A=(-H "Authorization: Bearer $token")

# --- authentication ---
for p in "${routes[@]}"; do
  get 401 "$p"
  get 401 "$p" -H "Authorization: Bearer ${token}x"
done
get 401 /api/jobs -H "Authorization: Bearer ${token:0:20}"
get 401 /api/jobs -H "Authorization: Basic $(printf 'admin:%s' "$token" | base64 -w0)"
get 401 /api/jobs -H "X-Api-Key: $token"
get 401 /api/jobs -H "Authorization: $token"
says=$resp
get 200 /api/jobs -H "authorization: bearer $token"
get 405 /api/connections -X POST "${A[@]}"
sent
hgf_assert_contains "$(field "$says" error)" "Bearer" "401 says what to send"

# --- every endpoint's JSON is the CLI's --json for the same data ---
same() { # same API_PATH CLI_ARGS...: the API's JSON equals the CLI's
  local path=$1
  shift
  get 200 "$path" "${A[@]}"
  sent
  hgf_expect_exit 0 "$H" "$@"
  printf '%s' "$HGF_OUT" >"$tmp/cli.json"
  local equal nonempty
  read -r equal nonempty < <(jq -r -n --slurpfile a "$resp" --slurpfile b "$tmp/cli.json" \
    '"\($a == $b) \($a[0] | length > 0)"')
  [[ $equal == true ]] || hgf_fail "GET $path: the API and the CLI differ:
$(head -c 800 "$resp")
$(head -c 800 "$tmp/cli.json")"
  [[ $nonempty == true ]] || hgf_fail "GET $path: an empty result proves nothing"
  printf '%s\n' "$resp" >>"$tmp/compared"
}
same /api/connections connection list --json
for id in "$east" "$west" "$bad"; do
  same "/api/connections/$id" connection show "$id" --json
done
same '/api/images?limit=1000' images list --json
same "/api/images?registry=$reg_east&state=present&limit=1000" \
  images list --registry "$reg_east" --state present --json
same "/api/images?registry=https://$reg_east/&state=deleted" \
  images list --registry "$reg_east" --state deleted --json
same "/api/images?repository=$repo&limit=1000" images list --repository "$repo" --json
same /api/jobs jobs list --json
same '/api/jobs?state=failed&kind=sync' jobs list --state failed --kind sync --json
same '/api/jobs?kind=scan&limit=3' jobs list --kind scan --limit 3 --json
same /api/sweeps sweep list --json
python3 - "$tmp/compared" <<'PY'
import json, sys
files = open(sys.argv[1]).read().split()
conns = json.load(open(files[0]))
assert {c["auth_mode"] for c in conns} == {"static"} and len(conns) == 3, conns
images = json.load(open(files[4]))
assert len(images) > 8 and {i["state"] for i in images} == {"present", "deleted"}, len(images)
jobs = json.load(open(files[8]))
assert {j["kind"] for j in jobs} >= {"sync", "scan"}, {j["kind"] for j in jobs}
PY

# The default limit is 100 rows, and limit= takes the first rows of the same order.
get 200 '/api/images?limit=1000' "${A[@]}"
all=$resp
get 200 '/api/images?limit=3' "${A[@]}"
sent
jq -e -n --slurpfile a "$all" --slurpfile b "$resp" '$a[0][:3] == $b[0] and ($b[0] | length) == 3' \
  >/dev/null || hgf_fail "limit=3 is not the first 3 rows"
# after= (the last image of a page, as registry/repository@digest) pages on:
# the pages put back together are the whole listing.
after=$(jq -r '.[-1] | "\(.registry)/\(.repository)@\(.digest)"' "$resp")
get 200 "/api/images?limit=3&after=$(jq -rn --arg a "$after" '$a | @uri')" "${A[@]}"
sent
jq -e -n --slurpfile a "$all" --slurpfile b "$resp" '$a[0][3:6] == $b[0] and ($b[0] | length) == 3' \
  >/dev/null || hgf_fail "after= does not continue where the page before ended"
db "insert into jobs (kind, payload, state, finished_at)
    select 'scan', '{}'::jsonb, 'done', now() from generate_series(1, 150)" >/dev/null
get 200 /api/jobs "${A[@]}"
default=$resp
get 200 '/api/jobs?limit=1000' "${A[@]}"
sent
hgf_assert_eq 100 "$(count "$default")" "jobs: 100 rows by default"
(( $(count "$resp") > 150 )) || hgf_fail "limit=1000 returns every job"

# --- sweeps: one sweep is the list's element; its report is `sweep show`'s bytes ---
get 200 "/api/sweeps/$sweep" "${A[@]}"
one=$resp
get 200 /api/sweeps "${A[@]}"
sent
python3 - "$one" "$resp" "$sweep" <<'PY'
import json, sys
one, lst, sid = json.load(open(sys.argv[1])), json.load(open(sys.argv[2])), int(sys.argv[3])
assert one == next(s for s in lst if s["id"] == sid), one
assert one["status"] == "partial" and one["totals"]["connections"] == 3, one
PY
declare -A report
for f in json csv html; do
  hgf_expect_exit 0 "$H" sweep show "$sweep" --format "$f"
  printf '%s\n' "$HGF_OUT" >"$tmp/show.$f" # $(...) dropped the trailing newline
  get 200 "/api/sweeps/$sweep/report?format=$f" "${A[@]}" -D "$tmp/headers.$f"
  report[$f]=$resp
done
get 200 "/api/sweeps/$sweep/report" "${A[@]}"
sent
for f in json csv html; do
  cmp "$tmp/show.$f" "${report[$f]}" || hgf_fail "the $f report differs from sweep show's"
  printf '%s\n' "${report[$f]}" >>"$tmp/compared"
done
cmp "$tmp/show.json" "$resp" || hgf_fail "the report is JSON by default"
hgf_assert_contains "$(<"$tmp/headers.csv")" "text/csv" "CSV content type"
hgf_assert_contains "$(<"$tmp/headers.html")" "text/html" "HTML content type"
hgf_assert_contains "$(<"$tmp/headers.json")" "application/json" "JSON content type"
python3 - "$tmp/show.json" "$sweep" "$reg_east" <<'PY'
import json, sys
r = json.load(open(sys.argv[1]))
assert r["sweep_id"] == int(sys.argv[2]) and r["status"] == "partial", r["status"]
assert sys.argv[3] in {c["registry"] for c in r["connections"]}
PY
# A sweep still running has no report yet: 409, while the sweep itself is listed.
running=$(db "insert into sweeps (requested_by) values ('test') returning id" | head -1)
get 409 "/api/sweeps/$running/report" "${A[@]}"
get 200 "/api/sweeps/$running" "${A[@]}"
sent
hgf_assert_contains "$(field "${sent_files[0]}" error)" "no report" "409 says why"
hgf_assert_eq running "$(field "$resp" status)" "a running sweep"

# --- bad ids and parameters: 400 naming the field, unknown ids 404 ---
want_fields=() # the FIELD of each queued bad_field
bad_field() { # bad_field FIELD PATH: 400 with that field named (checked after sent)
  get 400 "$2" "${A[@]}"
  want_fields+=("$1")
}
for p in /api/connections/abc /api/connections/0 /api/connections/-1 /api/connections/1x \
         /api/connections/ /api/connections/99999999999999999999 /api/sweeps/abc \
         /api/sweeps/abc/report /api/sweeps/%20 /api/sweeps/+1; do
  bad_field id "$p"
done
bad_field state '/api/jobs?state=bogus'
bad_field kind '/api/jobs?kind=nope'
bad_field state '/api/jobs?state='
bad_field state '/api/images?state=sideways'
bad_field state '/api/images?state=%FF%FE'
bad_field registry '/api/images?registry=nope'
bad_field registry '/api/images?registry=public.ecr.aws'
bad_field after '/api/images?after=nope'
bad_field after '/api/images?after=host/repo@sha256:abc'
bad_field repository "/api/images?repository=$(printf 'r%.0s' {1..300})"
for l in 0 1001 -5 abc 10x ''; do
  bad_field limit "/api/images?limit=$l"
  bad_field limit "/api/jobs?limit=$l"
  bad_field limit "/api/sweeps?limit=$l"
done
bad_field format "/api/sweeps/$sweep/report?format=pdf"
bad_field foo '/api/jobs?foo=1'
bad_field state '/api/jobs?state=failed&state=done'
bad_field limit '/api/connections?limit=5'
sent
sent_fields
for i in "${!want_fields[@]}"; do
  hgf_assert_eq "${want_fields[i]}" "${sent_field[i]}" "GET ${sent_path[i]} names the field"
  hgf_assert_contains "${sent_error[i]}" "${want_fields[i]}" "GET ${sent_path[i]} says what is wrong"
done
get 404 /api/connections/99999 "${A[@]}"
get 404 /api/sweeps/99999 "${A[@]}"
get 404 /api/sweeps/99999/report "${A[@]}"
get 404 "/api/sweeps/$sweep/other" "${A[@]}"
get 404 "/api/connections/$east/report" "${A[@]}"
get 404 /api/nothing "${A[@]}"
sent
hgf_assert_contains "$(field "${sent_files[0]}" error)" "99999" "404 names the id"
# A removed connection is gone from the API as from the CLI.
hgf_expect_exit 0 "$H" connection remove "$bad"
get 404 "/api/connections/$bad" "${A[@]}"
sent
same /api/connections connection list --json

# --- no secret in any response ---
sealed=$(db 'select string_agg(secret_sealed, E'"'"'\n'"'"') from connections')
[[ -n $sealed ]] || hgf_fail "no sealed secrets to look for"
python3 - "$tmp" "$secret" "$(<"$tmp/wrong")" "$HGFLEET_MASTER_KEY" "$sealed" "$n" <<'PY'
import glob, sys
root, needles = sys.argv[1], [s for s in sys.argv[2:5]] + sys.argv[5].split("\n")
needles += [s.split(":")[-1][:24] for s in sys.argv[5].split("\n")]  # the ciphertext itself
files = sorted(glob.glob(root + "/r[0-9]*"))
assert len(files) == int(sys.argv[6]), (len(files), sys.argv[6])
for f in files:
    body = open(f, "rb").read().decode("utf-8", "replace")
    for s in needles:
        assert s and s not in body, f"{f} holds a secret"
PY
echo "test_api: ok ($n requests)"
