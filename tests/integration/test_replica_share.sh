#!/usr/bin/env bash
# Replicas share a burst: replica A (2 workers) takes a burst of 120 push
# events and claims every scan ahead of its workers; replica B (2 workers)
# starts only then, idle with an empty queue. B asks for work and A hands
# back part of what it has not started, so each replica runs at least a
# quarter of the burst (a replica that kept all it claimed would run all of
# it while B idled). A second burst arrives with both up, delivered to B
# this time: again each runs at least a quarter. Every scan runs once, on
# its first attempt, and no lease is lost.
set -euo pipefail
# shellcheck source=tests/integration/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

tmp=$(hgf_tmpdir)
HGFLEET_DATABASE_URL=$(hgf_new_db replicashare)
token=$(openssl rand -hex 24)
export HGFLEET_DATABASE_URL HGFLEET_WEBHOOK_TOKEN=$token AWS_EC2_METADATA_DISABLED=true
export HGFLEET_LOG_LEVEL=${HGF_TEST_LOG_LEVEL:-info} HGFLEET_LOG_FORMAT=json
export AWS_ACCESS_KEY_ID=AKIDECRSIMDEFAULT AWS_SECRET_ACCESS_KEY=ecrsim-default-secret
unset AWS_SESSION_TOKEN AWS_ENDPOINT_URL || true
H=$HGFLEET_BIN
N=120
q() { hgf_psql "$HGFLEET_DATABASE_URL" -c "$1"; }

hgf_bg "$ECRSIM_BIN" --seed 13 --accounts 1 --regions us-east-1 --repos 1 --images 1 \
  --latency-ms 40 >"$tmp/sim.out" 2>"$tmp/sim.log"
line=$(hgf_wait_for_line "$tmp/sim.out" 'listening on http://' 10)
sim=${line##* }
export AWS_ENDPOINT_URL_ECR=$sim
acct=$(curl -fsS "$sim/_sim/truth" | python3 -c 'import json,sys; print(json.load(sys.stdin)["registries"][0]["account_id"])')
hgf_expect_exit 0 "$H" migrate
hgf_expect_exit 0 "$H" connection add "$acct.dkr.ecr.us-east-1.amazonaws.com" --schedule on_push
hgf_expect_exit 0 "$H" sync --all --wait

export HGFLEET_LISTEN=127.0.0.1:0 HGFLEET_WORKERS=2 HGFLEET_LEASE_SECONDS=5
start_replica() { # start_replica NAME: prints its base URL
  hgf_bg "$H" serve >"$tmp/serve-$1.out" 2>"$tmp/serve-$1.log"
  local l
  l=$(hgf_wait_for_line "$tmp/serve-$1.out" 'serving on http://' 10)
  l=${l##* }
  for (( i = 0; i < 50; i++ )); do curl -fsS "$l/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
  printf '%s\n' "$l"
}
scans_run() { # scans_run BASE: push and sync scans this replica ran to the end
  curl -fsS "$1/metrics" | awk '/^hgfleet_jobs_run_total\{kind="scan",outcome="done"\} / {n = $2} END {print n + 0}'
}
idle() { [[ $(q "select count(*) from jobs where state in ('queued', 'running')") == 0 ]]; }
wait_idle() {
  for (( i = 0; i < 1200; i++ )); do idle && return 0; sleep 0.1; done
  hgf_fail "the queue did not drain: $(q "select kind, state, count(*) from jobs group by 1, 2")"
}
burst() { # burst WEBHOOK_BASE REPOSITORY
  curl -fsS -X POST "$sim/_sim/webhook" \
    -d "{\"url\":\"$1/api/webhooks/ecr\",\"auth\":{\"type\":\"API_KEY\",\"header\":\"X-Api-Key\",\"value\":\"$token\"}}" >/dev/null
  curl -fsS -X POST "$sim/_sim/push" \
    -d "{\"account\":\"$acct\",\"region\":\"us-east-1\",\"repository\":\"$2\",\"tag\":\"t\",\"count\":$N,\"rate\":400}" >/dev/null
}
pushed() { echo "from jobs j where kind = 'scan' and priority = 10 and payload->>'repository' = '$1'"; }
check_shares() { # check_shares WHAT A_RAN B_RAN
  echo "$1: replica A ran $2, replica B ran $3 of $N"
  (( $2 + $3 >= N )) || hgf_fail "$1: the replicas ran $(( $2 + $3 )) scans, fewer than the $N pushed"
  (( $2 * 4 >= N && $3 * 4 >= N )) || hgf_fail "$1: a replica ran less than a quarter (A $2, B $3)"
}

a=$(start_replica a)
wait_idle
a0=$(scans_run "$a")
burst "$a" burst/one
for (( i = 0; i < 300; i++ )); do
  [[ $(q "select count(claimed_at) $(pushed burst/one)") -ge $N ]] && break
  sleep 0.1
done
read -r claimed held_a < <(q "select count(claimed_at) || ' ' || count(*) filter (where state = 'running')
  $(pushed burst/one)")
hgf_assert_eq "$N" "$claimed" "replica A claimed the whole burst"
echo "replica A holds $held_a of the burst when replica B starts"
(( held_a * 2 >= N )) || hgf_fail "replica A ran through half the burst before B could start: the test proves nothing"
b=$(start_replica b)
wait_idle
# B is new: everything it ran is from the burst.
check_shares "burst to A, B started late" $(( $(scans_run "$a") - a0 )) "$(scans_run "$b")"
grep -q '"worker.handed_back"' "$tmp/serve-a.log" || hgf_fail "replica A never handed jobs back"

a0=$(scans_run "$a")
b0=$(scans_run "$b")
burst "$b" burst/two
wait_idle
check_shares "burst to B, both up" $(( $(scans_run "$a") - a0 )) $(( $(scans_run "$b") - b0 ))

for r in one two; do
  hgf_assert_eq "$N 1" "$(q "select count(*) || ' ' || max(attempts) $(pushed burst/$r) and state = 'done'")" \
    "every scan of burst $r done, each on its first attempt"
done
hgf_assert_eq 0 "$(q "select count(*) from (select image_id from scans group by image_id having count(*) > 1) d")" \
  "no digest scanned twice"
if grep -h '"job.lease_lost"' "$tmp"/serve-*.log; then
  hgf_fail "a lease was lost"
fi
echo "PASS: replicas share a burst of push scans"
