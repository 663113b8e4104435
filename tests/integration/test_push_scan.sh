#!/usr/bin/env bash
# Push to scan: ecrsim pushes 1,000 images at 200 events/s and delivers each
# EventBridge event to `hgfleet serve`. Every new digest gets exactly one scan;
# tags re-pushed under new digests (a mutable move and a forced re-tag in an
# immutable repository) get a scan of the new digest; a re-tag of a known
# digest gets none. A later sync agrees with all of it and scans nothing more.
set -euo pipefail
# shellcheck source=tests/integration/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

tmp=$(hgf_tmpdir)
HGFLEET_DATABASE_URL=$(hgf_new_db pushscan)
token=$(openssl rand -hex 24)
export HGFLEET_DATABASE_URL HGFLEET_WEBHOOK_TOKEN=$token HGFLEET_LOG_LEVEL=warn AWS_EC2_METADATA_DISABLED=true
export AWS_ACCESS_KEY_ID=AKIDECRSIMDEFAULT AWS_SECRET_ACCESS_KEY=ecrsim-default-secret
unset AWS_SESSION_TOKEN AWS_ENDPOINT_URL || true
H=$HGFLEET_BIN
q() { hgf_psql "$HGFLEET_DATABASE_URL" -c "$1"; }

hgf_bg "$ECRSIM_BIN" --seed 9 --accounts 1 --regions us-east-1 --repos 2 --images 2 \
  >"$tmp/sim.out" 2>"$tmp/sim.log"
line=$(hgf_wait_for_line "$tmp/sim.out" 'listening on http://' 10)
sim=${line##* }
export AWS_ENDPOINT_URL_ECR=$sim
acct=$(curl -fsS "$sim/_sim/truth" | python3 -c 'import json,sys; print(json.load(sys.stdin)["registries"][0]["account_id"])')
reg=$acct.dkr.ecr.us-east-1.amazonaws.com
hgf_expect_exit 0 "$H" migrate
hgf_expect_exit 0 "$H" connection add "$reg" --schedule on_push
hgf_expect_exit 0 "$H" sync --all --wait
before_scans=$(q "select count(*) from jobs where kind = 'scan'")

export HGFLEET_LISTEN=127.0.0.1:0 HGFLEET_WORKERS=16
hgf_bg "$H" serve >"$tmp/serve.out" 2>"$tmp/serve.log"
l=$(hgf_wait_for_line "$tmp/serve.out" 'serving on http://' 10)
base=${l##* }
for (( i = 0; i < 50; i++ )); do curl -fsS "$base/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
curl -fsS -X POST "$sim/_sim/webhook" \
  -d "{\"url\":\"$base/api/webhooks/ecr\",\"auth\":{\"type\":\"API_KEY\",\"header\":\"X-Api-Key\",\"value\":\"$token\"}}" >/dev/null
ctl() { curl -fsS -X POST "$sim/_sim/$1" -d "$2"; }

ctl push "{\"account\":\"$acct\",\"region\":\"us-east-1\",\"repository\":\"load/app\",\"tag\":\"v\",\"count\":1000,\"rate\":200}" >/dev/null
wait_scans() { # wait_scans N: N push scans exist and none is pending
  for (( i = 0; i < 600; i++ )); do
    local n pending
    n=$(q "select count(*) from jobs where kind = 'scan' and priority = 10")
    pending=$(q "select count(*) from jobs where state in ('queued', 'running')")
    [[ $n -ge $1 && $pending == 0 ]] && return 0
    sleep 0.1
  done
  hgf_fail "push scans: $(q "select state, count(*) from jobs group by 1")"
}
wait_scans 1000
hgf_assert_eq 1000 "$(q "select count(distinct dedup_key) from jobs where kind = 'scan' and priority = 10")" \
  "one scan job per pushed digest"
hgf_assert_eq 0 "$(q "select count(*) from (select image_id from scans group by image_id having count(*) > 1) d")" \
  "no digest scanned twice"
hgf_assert_eq 1000 "$(q "select count(*) from scans s join images i on i.id = s.image_id join repositories r on r.id = i.repository_id where r.name = 'load/app' and s.status = 'ok'")" \
  "every pushed digest scanned ok"

# A mutable tag moved to a new digest: the new digest is scanned.
d1=$(ctl push "{\"account\":\"$acct\",\"region\":\"us-east-1\",\"repository\":\"load/app\",\"tag\":\"v-1\"}" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["digest"])')
# An immutable repository re-tagged under a new digest (the guide's pitfall).
ctl push "{\"account\":\"$acct\",\"region\":\"us-east-1\",\"repository\":\"load/frozen\",\"tag\":\"1.0\",\"immutable\":true}" >/dev/null
d2=$(ctl push "{\"account\":\"$acct\",\"region\":\"us-east-1\",\"repository\":\"load/frozen\",\"tag\":\"1.0\",\"force\":true}" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["digest"])')
# A known digest under another tag: a tag move only.
ctl retag "{\"account\":\"$acct\",\"region\":\"us-east-1\",\"repository\":\"load/app\",\"digest\":\"$d1\",\"tag\":\"stable\"}" >/dev/null
wait_scans 1003
for d in "$d1" "$d2"; do
  hgf_assert_eq 1 "$(q "select count(*) from scans s join images i on i.id = s.image_id where i.digest = '$d' and s.status = 'ok'")" \
    "the re-pushed tag's new digest $d is scanned once"
done
hgf_assert_eq 1003 "$(q "select count(*) from jobs where kind = 'scan' and priority = 10")" \
  "the re-tag of a known digest queued no scan"
hgf_assert_eq 1 "$(q "select count(*) from tag_events t join repositories r on r.id = t.repository_id where r.name = 'load/frozen' and t.tag = '1.0' and t.old_digest is not null and t.new_digest = '$d2'")" \
  "the immutable re-tag is recorded as a tag move"

# A sync afterwards agrees with the events and queues nothing new.
# (serve may run the sync job itself: read its result from the queue.)
last_sync() { q "select result->'applied' from jobs where kind = 'sync' order by id desc limit 1"; }
hgf_expect_exit 0 "$H" sync --all --wait
python3 -c '
import json, sys
r = json.loads(sys.stdin.read())
assert r["scans_queued"] == 0 and r["new_images"] == 0, r' <<<"$(last_sync)"
hgf_assert_eq "$(( before_scans + 1003 ))" "$(q "select count(*) from jobs where kind = 'scan'")" \
  "no scan queued by the sync"
# Without events (on a schedule), the sync alone must see the same: a forced
# re-tag under a new digest is one scan; a re-tag of a known digest is none.
d3=$(ctl push "{\"account\":\"$acct\",\"region\":\"us-east-1\",\"repository\":\"load/frozen\",\"tag\":\"1.0\",\"force\":true,\"deliver\":false}" |
  python3 -c 'import json,sys; print(json.load(sys.stdin)["digest"])')
ctl retag "{\"account\":\"$acct\",\"region\":\"us-east-1\",\"repository\":\"load/app\",\"digest\":\"$d1\",\"tag\":\"again\",\"deliver\":false}" >/dev/null
hgf_expect_exit 0 "$H" sync --all --wait
python3 -c '
import json, sys
r = json.loads(sys.stdin.read())
assert r["scans_queued"] == 1 and r["new_images"] == 1, r
assert r["tag_moves"] == 2, r   # 1.0 moved to the new digest; "again" is new
' <<<"$(last_sync)"
hgf_assert_eq 1 "$(q "select count(*) from jobs where kind = 'scan' and dedup_key like '%@$d3'")" \
  "the sync queued one scan for the re-tagged immutable digest"

# A replica that died after storing a scan but before marking its job done
# leaves the job to run again: the re-run finds its own ok scan and ends
# without scanning the digest a second time.
job=$(q "select s.job_id from scans s join images i on i.id = s.image_id
         where i.digest = '$d1' and s.status = 'ok'")
[[ -n $job ]] || hgf_fail "the scan of $d1 does not name its job"
q "update jobs set state = 'queued', run_at = now(), finished_at = null, result = null
   where id = $job" >/dev/null
for (( i = 0; i < 100; i++ )); do
  [[ $(q "select state from jobs where id = $job") == done ]] && break
  sleep 0.1
done
hgf_assert_eq "done true" "$(q "select state || ' ' || coalesce(result->>'already_stored', 'absent') from jobs where id = $job")" \
  "the re-run job ended on its stored scan"
hgf_assert_eq 1 "$(q "select count(*) from scans s join images i on i.id = s.image_id where i.digest = '$d1'")" \
  "no second scan of $d1"
echo "PASS: push to scan"
