#!/usr/bin/env bash
# Crash recovery: three `serve` replicas share one database and a fleet of 50
# registries (25 accounts x 2 regions in ecrsim). One replica is killed with
# SIGKILL while it holds running jobs. Its leases expire and the other
# replicas finish the work: every sync job ends done, the stored catalog
# equals ecrsim's truth, no digest got two scan jobs, and nothing is left
# running under a dead owner.
# The fleet is small (3 repositories of about 6 images: the survivors scan every
# image) and ecrsim answers slowly until the kill, so that syncs are still
# running when replica a dies.
set -euo pipefail
# shellcheck source=tests/integration/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

tmp=$(hgf_tmpdir)
HGFLEET_DATABASE_URL=$(hgf_new_db replicas)
HGFLEET_MASTER_KEY=$(openssl rand -base64 32)
export HGFLEET_DATABASE_URL HGFLEET_MASTER_KEY HGFLEET_LOG_FORMAT=json
unset AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN AWS_ENDPOINT_URL || true
H=$HGFLEET_BIN
db=$HGFLEET_DATABASE_URL
q() { hgf_psql "$db" -c "$1"; }

akid=AKIAREPLICATEST00001
secret=$(openssl rand -hex 20)
hgf_bg "$ECRSIM_BIN" --seed 31 --accounts 25 --regions us-east-1,eu-west-1 --repos 3 --images 6 \
  --latency-ms 40 --key "$akid:$secret:*" >"$tmp/ecrsim.out" 2>"$tmp/ecrsim.log"
line=$(hgf_wait_for_line "$tmp/ecrsim.out" 'listening on http://' 10)
sim_url=${line##* }
export AWS_ENDPOINT_URL_ECR=$sim_url
curl -fsS "$sim_url/_sim/truth" >"$tmp/truth.json"
python3 -c '
import json, sys
print("account_id,region")
for r in json.load(open(sys.argv[1]))["registries"]:
    account, _, _, region, _ = r["registry"].split(".", 4)
    print(f"{account},{region}")' "$tmp/truth.json" >"$tmp/registries.csv"
hgf_assert_eq 50 "$(( $(wc -l <"$tmp/registries.csv") - 1 ))" "ecrsim serves 25 accounts x 2 regions"

hgf_expect_exit 0 "$H" migrate
# One import, not 50 processes: the connections use the host's credentials,
# which every replica gets. manual: the first sync is the only one, so the job
# count is exact.
export AWS_ACCESS_KEY_ID=$akid AWS_SECRET_ACCESS_KEY=$secret AWS_EC2_METADATA_DISABLED=true
hgf_expect_exit 0 "$H" connection import "$tmp/registries.csv" --schedule manual
hgf_assert_eq 50 "$(q "select count(*) from jobs where kind = 'sync' and state = 'queued'")" \
  "50 first syncs queued"

# --- three replicas, two jobs each at a time, short leases ---
export HGFLEET_WORKERS=2 HGFLEET_LEASE_SECONDS=3 HGFLEET_LISTEN=127.0.0.1:0
pids=()
for r in a b c; do
  hgf_bg "$H" serve >"$tmp/serve-$r.out" 2>"$tmp/serve-$r.log"
  pids+=("$HGF_BG_PID")
done
for r in a b c; do
  hgf_wait_for_line "$tmp/serve-$r.out" 'serving on http://' 10 >/dev/null
done
victim=${pids[0]}

# Kill replica a once some syncs are done and it holds running jobs.
killed_running=0
for (( i = 0; i < 200; i++ )); do
  state=$(q "select count(*) filter (where state = 'done') || ' ' ||
                    count(*) filter (where state = 'running' and lease_owner like '%:$victim:%')
             from jobs where kind = 'sync'")
  read -r done_now victim_running <<<"$state"
  if (( done_now >= 4 && victim_running > 0 )); then
    kill -KILL "$victim"
    killed=1
    break
  fi
  (( done_now < 50 )) || break
  sleep 0.05
done
(( ${killed:-0} )) || hgf_fail "replica a never held a running job while work remained (done=$done_now)"
# Read after the kill: a job can end between the query above and the signal.
orphans=$(q "select string_agg(id::text, ',') from jobs
             where kind = 'sync' and state = 'running' and lease_owner like '%:$victim:%'")
[[ -n $orphans ]] || hgf_fail "replica a's running jobs all ended before the kill landed"
killed_running=$(tr ',' '\n' <<<"$orphans" | wc -l)
echo "killed replica a (pid $victim) with $killed_running running job(s) after $done_now syncs"
# The latency only had to keep syncs running until the kill.
curl -fsS -X POST "$sim_url/_sim/config" -d '{"latency_ms": 0}' >/dev/null

# --- the survivors take the dead replica's jobs over once its leases expire ---
for (( i = 0; i < 300; i++ )); do
  left=$(q "select count(*) from jobs where kind = 'sync' and state <> 'done'")
  [[ $left == 0 ]] && break
  sleep 0.1
done
hgf_assert_eq 0 "$left" "every sync job ended done"
# The syncs queued a scan per new digest; the survivors scan them all too.
for (( i = 0; i < 600; i++ )); do
  left=$(q "select count(*) from jobs where state in ('queued', 'running')")
  [[ $left == 0 ]] && break
  sleep 0.1
done
hgf_assert_eq 0 "$left" "every scan job ended"
hgf_assert_eq 0 "$(q "select count(*) from jobs where kind = 'scan' and state <> 'done'")" \
  "every scan job succeeded"
hgf_assert_eq 50 "$(q "select count(*) from jobs where kind = 'sync' and state = 'done'")" \
  "exactly one sync job per connection"
taken_over=$(q "select count(*) from jobs where id in ($orphans) and attempts > 1")
(( taken_over == killed_running )) ||
  hgf_fail "the killed replica's $killed_running job(s) were not run again ($taken_over re-run)"
hgf_assert_eq 0 "$(q "select count(*) from jobs where state = 'running'")" \
  "no job is left running (the dead owner's leases were taken back)"
hgf_assert_eq 0 "$(q "select count(*) from jobs where lease_owner like '%:$victim:%'")" \
  "no job still names the dead replica as owner"
hgf_assert_eq "" "$(q "select dedup_key from jobs where kind = 'scan' group by dedup_key having count(*) > 1")" \
  "no digest has two scan jobs"
hgf_assert_eq 0 "$(q "select count(*) from (select image_id from scans where status = 'ok' group by image_id having count(*) > 1) d")" \
  "no digest was scanned twice"

# --- the catalog equals the truth ---
hgf_expect_exit 0 "$H" images list --json
printf '%s' "$HGF_OUT" >"$tmp/images.json"
python3 - "$tmp/truth.json" "$tmp/images.json" <<'PY'
import json, sys
truth = json.load(open(sys.argv[1]))
mine = json.load(open(sys.argv[2]))
want = {(reg["registry"], repo["name"], im["digest"], tuple(sorted(im["tags"])), im["size_bytes"])
        for reg in truth["registries"] for repo in reg["repositories"] for im in repo["images"]}
got = {(im["registry"], im["repository"], im["digest"], tuple(im["tags"]), im["size_bytes"])
       for im in mine if im["state"] == "present"}
missing, extra = want - got, got - want
if missing or extra:
    print("missing:", sorted(missing)[:5], "\nextra:", sorted(extra)[:5])
    sys.exit(1)
scans = {(im["registry"], im["repository"], im["digest"]) for im in mine if im["scan_status"] == "ok"}
assert len(scans) == len(got), (len(scans), len(got))
print(f"catalog equals truth: {len(got)} images in {len({g[0] for g in got})} registries")
PY

# The survivors are still healthy and ready.
for r in b c; do
  addr=$(sed -n 's|.*serving on http://||p' "$tmp/serve-$r.out")
  body=$(curl -fsS "http://$addr/readyz")
  hgf_assert_contains "$body" '"ready"' "replica $r is ready"
done
echo "PASS: replicas"
