#!/usr/bin/env bash
# Push scans are claimed as they arrive, not as workers free: a server with 2
# workers and a registry at 25 ms per call (a scan makes about 4 calls, so 2
# workers finish about 20 scans/s) receives a burst of 100 push events at
# 200/s. Every push scan must be leased to the server while most of them are
# still waiting to run; a pool that claims only for free workers never holds
# more than 2 jobs that are not done. The leases of the jobs held ahead are
# renewed (a 3 s lease over a run of about 5 s), so each job runs once and
# every digest is scanned once. Concurrent events moving one tag keep its
# true history. No timing is asserted: the two rates differ
# by an order of magnitude, and load slows the scans more than the claims.
set -euo pipefail
# shellcheck source=tests/integration/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

tmp=$(hgf_tmpdir)
HGFLEET_DATABASE_URL=$(hgf_new_db pushclaim)
token=$(openssl rand -hex 24)
export HGFLEET_DATABASE_URL HGFLEET_WEBHOOK_TOKEN=$token HGFLEET_LOG_LEVEL=warn AWS_EC2_METADATA_DISABLED=true
export AWS_ACCESS_KEY_ID=AKIDECRSIMDEFAULT AWS_SECRET_ACCESS_KEY=ecrsim-default-secret
unset AWS_SESSION_TOKEN AWS_ENDPOINT_URL || true
H=$HGFLEET_BIN
N=100
q() { hgf_psql "$HGFLEET_DATABASE_URL" -c "$1"; }

hgf_bg "$ECRSIM_BIN" --seed 9 --accounts 1 --regions us-east-1 --repos 1 --images 1 \
  --latency-ms 25 >"$tmp/sim.out" 2>"$tmp/sim.log"
line=$(hgf_wait_for_line "$tmp/sim.out" 'listening on http://' 10)
sim=${line##* }
export AWS_ENDPOINT_URL_ECR=$sim
acct=$(curl -fsS "$sim/_sim/truth" | jq -r '.registries[0].account_id')
hgf_expect_exit 0 "$H" migrate
hgf_expect_exit 0 "$H" connection add "$acct.dkr.ecr.us-east-1.amazonaws.com" --schedule on_push
hgf_expect_exit 0 "$H" sync --all --wait

# No grace at exit: lib.sh stops ecrsim first, and scans still running then
# would keep the server waiting out their retries.
export HGFLEET_LISTEN=127.0.0.1:0 HGFLEET_WORKERS=2 HGFLEET_LEASE_SECONDS=3 HGFLEET_SHUTDOWN_GRACE=0
hgf_bg "$H" serve >"$tmp/serve.out" 2>"$tmp/serve.log"
l=$(hgf_wait_for_line "$tmp/serve.out" 'serving on http://' 10)
base=${l##* }
for (( i = 0; i < 50; i++ )); do curl -fsS "$base/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
curl -fsS -X POST "$sim/_sim/webhook" \
  -d "{\"url\":\"$base/api/webhooks/ecr\",\"auth\":{\"type\":\"API_KEY\",\"header\":\"X-Api-Key\",\"value\":\"$token\"}}" >/dev/null
curl -fsS -X POST "$sim/_sim/push" \
  -d "{\"account\":\"$acct\",\"region\":\"us-east-1\",\"repository\":\"burst/app\",\"tag\":\"t\",\"count\":$N,\"rate\":200}" >/dev/null

push_jobs="from jobs where kind = 'scan' and priority = 10"
claimed='' done_then=''
for (( i = 0; i < 600; i++ )); do
  read -r claimed done_then < <(q "select count(claimed_at), count(*) filter (where state = 'done') $push_jobs" | tr '|' ' ')
  [[ $claimed -ge $N ]] && break
  sleep 0.1
done
hgf_assert_eq "$N" "$claimed" "every push scan claimed"
(( done_then <= N / 2 )) ||
  hgf_fail "push scans were claimed only as workers freed: $done_then of $N already done when the last was claimed"

for (( i = 0; i < 1200; i++ )); do
  [[ $(q "select count(*) $push_jobs and state = 'done'") -ge $N ]] && break
  sleep 0.1
done
hgf_assert_eq "$N 1" "$(q "select count(*) || ' ' || max(attempts) $push_jobs and state = 'done'")" \
  "every push scan done, each on its first attempt (leases held ahead were renewed)"
hgf_assert_eq "$N" "$(q "select count(*) from scans s join images i on i.id = s.image_id
  join repositories r on r.id = i.repository_id where r.name = 'burst/app' and s.status = 'ok'")" \
  "every pushed digest scanned ok"
hgf_assert_eq 0 "$(q "select count(*) from (select image_id from scans group by image_id having count(*) > 1) d")" \
  "no digest scanned twice"
# Events moving one tag arrive at once (8 senders; the server applies them
# on several database connections): each move must record the digest the
# move before it left, one unbroken chain from the tag's first push.
python3 - "$base/api/webhooks/ecr" "$token" "$acct" <<'PY'
import concurrent.futures, hashlib, json, sys, urllib.request
url, token, acct = sys.argv[1:4]
def send(i):
    digest = "sha256:" + hashlib.sha256(b"hot-%d" % i).hexdigest()
    e = {"version": "0", "id": "hot-%d" % i, "detail-type": "ECR Image Action",
         "source": "aws.ecr", "account": acct, "time": "2026-11-30T01:54:34Z",
         "region": "us-east-1", "resources": [],
         "detail": {"result": "SUCCESS", "repository-name": "burst/hot", "image-digest": digest,
                    "action-type": "PUSH", "image-tag": "latest"}}
    req = urllib.request.Request(url, json.dumps(e).encode(), method="POST",
                                 headers={"Content-Type": "application/json", "X-Api-Key": token})
    with urllib.request.urlopen(req, timeout=30) as r:
        assert r.status == 202, r.status
with concurrent.futures.ThreadPoolExecutor(8) as ex:
    list(ex.map(send, range(100)))
PY
hgf_assert_eq "100 1 0" "$(q "select count(*) || ' ' || count(*) filter (where old_digest is null)
  || ' ' || count(*) filter (where old_digest is distinct from prev)
  from (select old_digest, lag(new_digest) over (order by t.id) prev from tag_events t
        join repositories r on r.id = t.repository_id where r.name = 'burst/hot' and t.tag = 'latest') m")" \
  "concurrent moves of one tag form one chain"
if grep -q 'job.lease_lost' "$tmp/serve.log"; then
  hgf_fail "a lease was lost: $(grep -m1 'job.lease_lost' "$tmp/serve.log")"
fi
echo "PASS: push scans claimed ahead of free workers"
