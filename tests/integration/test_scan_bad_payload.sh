#!/usr/bin/env bash
# A scan job whose payload is bad fails at once, permanently, with an error
# that names the field, and opens no scans row; a good job beside it still
# ends done. Only hgfleet's own SQL writes these payloads, so a bad one means
# a bug or a hand edit, and a retry would only repeat it.
set -euo pipefail
# shellcheck source=tests/integration/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

tmp=$(hgf_tmpdir)
H=$HGFLEET_BIN
q() { hgf_psql "$HGFLEET_DATABASE_URL" -c "$1"; }

hgf_one_registry scan_bad_payload 17 3 "$tmp"

good=$(q "select min(id) from jobs where kind = 'scan' and state = 'queued'")
[[ -n $good ]] || hgf_fail "the sync queued no scan job"
q "update jobs set run_at = now() + interval '1 day' where kind = 'scan' and id <> $good" >/dev/null

# Each bad job is the good one's payload with one field spoiled; the dedup
# keys only need to differ.
add_bad() { # NAME JSONB-EXPRESSION
  q "insert into jobs (kind, payload, priority, dedup_key)
     select 'scan', $2, 0, 'scan:bad-$1' from jobs where id = $good returning id"
}
unparsable=$(add_bad unparsable "payload || '{\"fresh_after\": \"last tuesday\"}'")
number=$(add_bad number "payload || '{\"fresh_after\": 42}'")
nodigest=$(add_bad nodigest "payload - 'digest'")
# The good job carries a valid fresh_after, as a sweep's does.
q "update jobs set payload = payload || jsonb_build_object('fresh_after', now() - interval '7 days')
   where id = $good" >/dev/null

export HGFLEET_LISTEN=127.0.0.1:0 HGFLEET_WORKERS=4
hgf_bg "$H" serve >"$tmp/serve.out" 2>"$tmp/serve.log"
bad="$unparsable, $number, $nodigest"
hgf_wait_sql "select count(*) from jobs where id in ($bad) and state = 'failed'" 3 30 \
  "the three bad jobs failing"
hgf_wait_sql "select state from jobs where id = $good" "done" 30 "the good job ending"

hgf_assert_eq "1 1 1" "$(q "select string_agg(attempts::text, ' ' order by id) from jobs
    where id in ($bad)")" "each bad job failed on its first attempt, without retries"
for id in $unparsable $number; do
  hgf_assert_contains "$(q "select last_error from jobs where id = $id")" \
    "fresh_after must be an ISO 8601 timestamp" "job $id's error names fresh_after"
done
hgf_assert_contains "$(q "select last_error from jobs where id = $nodigest")" "digest" \
  "the job without a digest says so"
hgf_assert_eq 0 "$(q "select count(*) from scans where job_id in ($bad)")" \
  "no bad job opened a scans row"
hgf_assert_eq ok "$(q "select status from scans where job_id = $good")" \
  "the good job stored its scan"
echo "ok: bad scan payloads fail once, naming the field"
