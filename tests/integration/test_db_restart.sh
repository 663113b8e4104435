#!/usr/bin/env bash
# PostgreSQL restarts while two `serve` replicas are syncing a fleet of 24
# registries. The replicas notice, reconnect (re-entering pipeline mode and
# re-issuing LISTEN), record or retry what the outage interrupted, and finish:
# every sync job ends done and the stored catalog equals ecrsim's truth. The
# syncs the outage failed run again as soon as the database is back.
# Repositories hold about 5 images (every image is scanned afterwards, and the
# restart needs syncs still to come, not big ones), and ecrsim answers slowly
# until the restart, so that syncs are still running when it comes.
#
# The restart needs a cluster of its own: the shared fixture serves the other
# integration tests, which run in parallel.
set -euo pipefail
# shellcheck source=tests/integration/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

tmp=$(hgf_tmpdir)
hgf_python_on_path
harness=$HGF_SOURCE_DIR/scripts/pg-harness
pgdir=$tmp/pg
hgf_on_exit "$harness" stop "$pgdir"
base=$("$harness" start "$pgdir" 2>"$tmp/harness.log")
hgf_psql "$base" -c 'CREATE DATABASE restart'
HGFLEET_DATABASE_URL=${base%/*}/restart
HGFLEET_MASTER_KEY=$(openssl rand -base64 32)
export HGFLEET_DATABASE_URL HGFLEET_MASTER_KEY HGFLEET_LOG_FORMAT=json
unset AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN AWS_ENDPOINT_URL || true
H=$HGFLEET_BIN
db=$HGFLEET_DATABASE_URL
q() { hgf_psql "$db" -c "$1"; }

akid=AKIARESTARTTEST00001
secret=$(openssl rand -hex 20)
hgf_bg "$ECRSIM_BIN" --seed 47 --accounts 12 --regions us-east-1,eu-west-1 --repos 8 --images 5 \
  --latency-ms 25 --key "$akid:$secret:*" >"$tmp/ecrsim.out" 2>"$tmp/ecrsim.log"
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

hgf_expect_exit 0 "$H" migrate
# One import, not a process per registry: the connections use the host's
# credentials, which both replicas get.
export AWS_ACCESS_KEY_ID=$akid AWS_SECRET_ACCESS_KEY=$secret AWS_EC2_METADATA_DISABLED=true
hgf_expect_exit 0 "$H" connection import "$tmp/registries.csv" --schedule manual
total=$(( $(wc -l <"$tmp/registries.csv") - 1 ))
hgf_assert_eq 24 "$total" "ecrsim serves 12 accounts x 2 regions"
hgf_assert_eq "$total" "$(q "select count(*) from jobs where kind = 'sync' and state = 'queued'")" \
  "a first sync queued per connection"

export HGFLEET_WORKERS=2 HGFLEET_LEASE_SECONDS=3 HGFLEET_LISTEN=127.0.0.1:0
addrs=()
for r in a b; do
  hgf_bg "$H" serve >"$tmp/serve-$r.out" 2>"$tmp/serve-$r.log"
  line=$(hgf_wait_for_line "$tmp/serve-$r.out" 'serving on http://' 10)
  addrs+=("${line##*http://}")
done

# Restart once some syncs are done and others are still to come.
for (( i = 0; i < 200; i++ )); do
  done_now=$(q "select count(*) from jobs where kind = 'sync' and state = 'done'")
  (( done_now >= 2 )) && break
  sleep 0.05
done
(( done_now < total )) || hgf_fail "every sync finished before the restart; make the fleet bigger"
echo "restarting PostgreSQL after $done_now of $total syncs"
"$harness" restart "$pgdir" >/dev/null 2>>"$tmp/harness.log"
# The latency only had to keep syncs running until the restart.
curl -fsS -X POST "$sim_url/_sim/config" -d '{"latency_ms": 0}' >/dev/null
# When the database was back, on its own clock (job times are on it too).
back=$(q "select extract(epoch from pg_postmaster_start_time())")

# --- both replicas reconnect and finish the work ---
for (( i = 0; i < 600; i++ )); do
  left=$(q "select count(*) from jobs where kind = 'sync' and state <> 'done'")
  [[ $left == 0 ]] && break
  sleep 0.1
done
if [[ $left != 0 ]]; then
  q "select id, state, attempts, run_at, last_error from jobs where kind = 'sync' and state <> 'done'" >&2
  hgf_fail "$left sync job(s) did not finish after the restart"
fi
hgf_assert_eq "$total" "$(q "select count(*) from jobs where kind = 'sync'")" \
  "one sync job per connection, none duplicated"
# Syncs the outage failed are due again as soon as their outcome is recorded
# (once the replica has reconnected), not after the ordinary 10 s backoff.
IFS='|' read -r retried late recovery <<<"$(q "select count(*) filter (where attempts > 1),
  count(*) filter (where attempts > 1 and extract(epoch from run_at) > $back + 3),
  round(extract(epoch from max(finished_at)) - $back, 1) from jobs where kind = 'sync'")"
echo "recovery: $retried sync(s) retried after the outage; the last sync ended $recovery s after PostgreSQL was back"
hgf_assert_eq 0 "$late" "syncs whose retry was due more than 3 s after the database was back"
awk -v r="$recovery" 'BEGIN { exit !(r < 8) }' ||
  hgf_fail "the syncs took $recovery s after the restart to finish (a retry waited out a backoff?)"
# The syncs queued scans; they finish too.
for (( i = 0; i < 600; i++ )); do
  [[ $(q "select count(*) from jobs where state in ('queued', 'running')") == 0 ]] && break
  sleep 0.1
done
hgf_assert_eq 0 "$(q "select count(*) from jobs where state = 'running'")" "nothing left running"
hgf_assert_eq "" "$(q "select dedup_key from jobs where kind = 'scan' group by dedup_key having count(*) > 1")" \
  "no digest has two scan jobs"
for r in a b; do
  grep -q '"store.broken"' "$tmp/serve-$r.log" || hgf_fail "replica $r never saw the connection break"
  grep -q '"store.connected"' "$tmp/serve-$r.log" || hgf_fail "replica $r never reconnected"
done
for addr in "${addrs[@]}"; do
  body=$(curl -fsS "http://$addr/readyz")
  hgf_assert_contains "$body" '"ready"' "a replica is ready again after the restart"
done

# --- nothing lost: the catalog equals the truth ---
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
print(f"catalog equals truth: {len(got)} images in {len({g[0] for g in got})} registries")
PY
echo "PASS: db restart"
