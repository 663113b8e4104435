#!/usr/bin/env bash
# A registry at its scan bound does not hold the pool: a server with 3
# workers and HGFLEET_SCANS_PER_REGISTRY=1 receives 60 push events for
# registry A (each scan makes about 4 calls at 25 ms, so A's backlog takes
# seconds to drain, one scan at a time), then one push for registry B and a
# sync of B. B's scan and B's sync must be done before a quarter of A's
# backlog has drained: A's held-back scans take no worker, and do not stop
# the pool from claiming B's sync. (A pool whose waiting scans held workers
# ran B's jobs after all of A's.) Then every scan is done once, and the scans
# of one registry never overlapped (the bound held).
set -euo pipefail
# shellcheck source=tests/integration/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

tmp=$(hgf_tmpdir)
HGFLEET_DATABASE_URL=$(hgf_new_db regbound)
token=$(openssl rand -hex 24)
export HGFLEET_DATABASE_URL HGFLEET_WEBHOOK_TOKEN=$token HGFLEET_LOG_LEVEL=${HGF_TEST_LOG_LEVEL:-warn} AWS_EC2_METADATA_DISABLED=true
export AWS_ACCESS_KEY_ID=AKIDECRSIMDEFAULT AWS_SECRET_ACCESS_KEY=ecrsim-default-secret
unset AWS_SESSION_TOKEN AWS_ENDPOINT_URL || true
H=$HGFLEET_BIN
N=60
q() { hgf_psql "$HGFLEET_DATABASE_URL" -c "$1"; }

hgf_bg "$ECRSIM_BIN" --seed 11 --accounts 2 --regions us-east-1 --repos 1 --images 1 \
  --latency-ms 25 >"$tmp/sim.out" 2>"$tmp/sim.log"
line=$(hgf_wait_for_line "$tmp/sim.out" 'listening on http://' 10)
sim=${line##* }
export AWS_ENDPOINT_URL_ECR=$sim
read -r acct_a acct_b < <(curl -fsS "$sim/_sim/truth" |
  python3 -c 'import json,sys; print(*[r["account_id"] for r in json.load(sys.stdin)["registries"]])')
[[ -n $acct_a && -n $acct_b && $acct_a != "$acct_b" ]] || hgf_fail "ecrsim did not serve two registries"
hgf_expect_exit 0 "$H" migrate
hgf_expect_exit 0 "$H" connection add "$acct_a.dkr.ecr.us-east-1.amazonaws.com" --schedule on_push
hgf_expect_exit 0 "$H" connection add "$acct_b.dkr.ecr.us-east-1.amazonaws.com" --schedule on_push
conn_a=$(q "select id from connections where account_id = '$acct_a'")
conn_b=$(q "select id from connections where account_id = '$acct_b'")
hgf_expect_exit 0 "$H" sync --all --wait

export HGFLEET_LISTEN=127.0.0.1:0 HGFLEET_WORKERS=3 HGFLEET_SCANS_PER_REGISTRY=1
hgf_bg "$H" serve >"$tmp/serve.out" 2>"$tmp/serve.log"
l=$(hgf_wait_for_line "$tmp/serve.out" 'serving on http://' 10)
base=${l##* }
for (( i = 0; i < 50; i++ )); do curl -fsS "$base/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
idle() { [[ $(q "select count(*) from jobs where state in ('queued', 'running')") == 0 ]]; }
for (( i = 0; i < 300; i++ )); do idle && break; sleep 0.1; done
idle || hgf_fail "the first syncs' scans did not end: $(q "select kind, state, count(*) from jobs group by 1, 2")"
curl -fsS -X POST "$sim/_sim/webhook" \
  -d "{\"url\":\"$base/api/webhooks/ecr\",\"auth\":{\"type\":\"API_KEY\",\"header\":\"X-Api-Key\",\"value\":\"$token\"}}" >/dev/null

push_of() { # push_of CONNECTION: SQL for the push scans of a connection's registry
  echo "from jobs where kind = 'scan' and priority = 10 and (payload->>'connection_id')::bigint = $1"
}
curl -fsS -X POST "$sim/_sim/push" \
  -d "{\"account\":\"$acct_a\",\"region\":\"us-east-1\",\"repository\":\"burst/a\",\"tag\":\"a\",\"count\":$N,\"rate\":300}" >/dev/null
for (( i = 0; i < 300; i++ )); do
  [[ $(q "select count(*) $(push_of "$conn_a")") -ge $N ]] && break
  sleep 0.1
done
hgf_assert_eq "$N" "$(q "select count(*) $(push_of "$conn_a")")" "A's push scans are queued"
curl -fsS -X POST "$sim/_sim/push" \
  -d "{\"account\":\"$acct_b\",\"region\":\"us-east-1\",\"repository\":\"burst/b\",\"tag\":\"b\"}" >/dev/null
hgf_expect_exit 0 "$H" sync "$conn_b"
sync_b=$(q "select max(id) from jobs where kind = 'sync' and dedup_key = 'sync:$conn_b'")

b_done() {
  [[ $(q "select count(*) filter (where state = 'done') $(push_of "$conn_b")") == 1 &&
     $(q "select state from jobs where id = $sync_b") == done ]]
}
for (( i = 0; i < 600; i++ )); do b_done && break; sleep 0.05; done
b_done || hgf_fail "B's scan and sync never finished: $(q "select kind, state, count(*) from jobs group by 1, 2")"
# From the jobs' own times: the most of A's scans that ended while one of
# B's jobs was queued or running, against A's backlog when B's first job
# was queued.
b_jobs="jobs b where b.id = $sync_b or (b.kind = 'scan' and b.priority = 10
  and (b.payload->>'connection_id')::bigint = $conn_b)"
a_jobs="jobs a where a.kind = 'scan' and a.priority = 10 and (a.payload->>'connection_id')::bigint = $conn_a"
a_left=$(q "select count(*) from $a_jobs and (a.finished_at is null or
  a.finished_at > (select min(b.created_at) from $b_jobs))")
a_during=$(q "select max((select count(*) from $a_jobs and a.finished_at > b.created_at
  and a.finished_at <= b.finished_at)) from $b_jobs")
echo "while one of B's jobs was queued or running, at most $a_during of A's $a_left waiting scans ended"
(( a_left >= N / 4 )) || hgf_fail "A's backlog was gone before B arrived ($a_left left): the test proves nothing"
(( a_during * 4 <= a_left )) ||
  hgf_fail "B waited for A's backlog: $a_during of A's $a_left waiting scans ended before B's jobs did"

for (( i = 0; i < 1200; i++ )); do idle && break; sleep 0.1; done
idle || hgf_fail "the backlog did not drain: $(q "select kind, state, count(*) from jobs group by 1, 2")"
hgf_assert_eq "$N 1" "$(q "select count(*) || ' ' || max(attempts) $(push_of "$conn_a") and state = 'done'")" \
  "every A scan done, each on its first attempt"
hgf_assert_eq 0 "$(q "select count(*) from (select image_id from scans group by image_id having count(*) > 1) d")" \
  "no digest scanned twice"
# At most one scan of a registry at once: no scan starts while another of
# the same registry is open (both times from the database's clock).
overlap=$(q "select coalesce(max(c), 0) from (
  select (select count(*) from scans s2 join images i2 on i2.id = s2.image_id
          join repositories r2 on r2.id = i2.repository_id
          where r2.connection_id = r.connection_id and s2.started_at <= s.started_at
            and s2.finished_at > s.started_at) c
  from scans s join images i on i.id = s.image_id join repositories r on r.id = i.repository_id) x")
hgf_assert_eq 1 "$overlap" "scans of one registry never ran two at a time"
echo "PASS: a registry at its scan bound holds no worker"
