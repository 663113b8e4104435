#!/usr/bin/env bash
# 200 connections share one role whose credentials expire every 4 seconds,
# during a sync that lasts several of those lifetimes. The sync must end
# complete, with about one AssumeRole per expiry (the shared cache refreshes
# once for everyone), not one per connection, and every refresh must come
# before the credentials expire (ecrsim answers no ExpiredTokenException).
# Then every log and output of the run, at debug level, is searched for the
# secret, any session token and any ECR authorization token.
set -euo pipefail
# shellcheck source=tests/integration/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

tmp=$(hgf_tmpdir)
HGFLEET_DATABASE_URL=$(hgf_new_db refresh)
export HGFLEET_DATABASE_URL AWS_EC2_METADATA_DISABLED=true HGFLEET_LOG_LEVEL=debug
for v in AWS_SESSION_TOKEN AWS_ROLE_ARN AWS_WEB_IDENTITY_TOKEN_FILE AWS_CONTAINER_CREDENTIALS_FULL_URI \
  AWS_ENDPOINT_URL; do unset "$v"; done

seed=7
A=$(printf '%012d' $((100000000000 + seed * 1000000)))
secret=$(openssl rand -hex 20)
lifetime=4
cat >"$tmp/scenario.json" <<JSON
{"principals": [{"arn": "arn:aws:iam::$A:user/ci", "access_key_id": "AKIAREFRESHCI0000001",
   "secret_access_key": "$secret", "policy": [{"actions": ["sts:AssumeRole"], "resources": ["*"]}]}],
 "roles": [{"arn": "arn:aws:iam::$A:role/fleet-reader", "trust": [{"principal": "arn:aws:iam::$A:user/ci"}],
   "policy": [{"actions": ["ecr:*"], "resources": ["*"]}]}],
 "credential_duration_seconds": $lifetime}
JSON
hgf_bg "$ECRSIM_BIN" --seed $seed --accounts 100 --regions us-east-1,eu-west-1 --repos 2 --images 3 \
  --latency-ms 30 --scenario "$tmp/scenario.json" >"$tmp/ecrsim.out" 2>"$tmp/ecrsim.log"
line=$(hgf_wait_for_line "$tmp/ecrsim.out" 'listening on http://' 20)
sim=${line##* }
export AWS_ENDPOINT_URL_ECR=$sim AWS_ENDPOINT_URL_STS=$sim
export AWS_ACCESS_KEY_ID=AKIAREFRESHCI0000001 AWS_SECRET_ACCESS_KEY=$secret
H=$HGFLEET_BIN
"$H" migrate >>"$tmp/hgfleet.log" 2>&1

# One import of every connection (a process per connection cost 0.2 s of
# CPU each under ASan): every row names the role in account A, the first of
# the 100 accounts, so 99 of them reach it cross-account.
role=arn:aws:iam::$A:role/fleet-reader
{
  echo account_id,region,role_arn
  for i in $(seq 0 99); do
    for r in us-east-1 eu-west-1; do
      printf '%012d,%s,%s\n' $((100000000000 + seed * 1000000 + i)) "$r" "$role"
    done
  done
} >"$tmp/fleet.csv"
"$H" connection import "$tmp/fleet.csv" --schedule manual >>"$tmp/hgfleet.log" 2>&1 ||
  hgf_fail "connection import failed: $(tail -n 3 "$tmp/hgfleet.log")"
n=$(hgf_psql "$HGFLEET_DATABASE_URL" -c "select count(*) from connections where role_arn = '$role'")
hgf_assert_eq 200 "$n" "200 connections share the role"

start=$(date +%s%N)
HGFLEET_WORKERS=4 HGFLEET_REGISTRY_INFLIGHT=1 "$H" sync --all --wait --json \
  >"$tmp/sync.json" 2>"$tmp/sync.log" || hgf_fail "sync failed: $(grep -m3 failed "$tmp/sync.json")"
secs=$(( ($(date +%s%N) - start) / 1000000000 ))
ok=$(grep -c '"status":"ok"' "$tmp/sync.json")
hgf_assert_eq 200 "$ok" "every sync completed"

curl -fsS "$sim/_sim/stats" >"$tmp/stats.json"
curl -fsS "$sim/_sim/truth" >"$tmp/truth.json"
python3 - "$tmp/stats.json" "$tmp/truth.json" "$tmp/sync.json" "$secs" "$lifetime" <<'PY'
import json, math, sys
stats = json.load(open(sys.argv[1]))
truth = json.load(open(sys.argv[2]))
results = [json.loads(l) for l in open(sys.argv[3])]
secs, lifetime = int(sys.argv[4]), int(sys.argv[5])
assume = stats["sts"].get("AssumeRole", 0)
expiries = math.ceil(secs / lifetime)
print(f"sync took {secs}s, {expiries} credential lifetimes, {assume} AssumeRole calls for 200 connections")
assert secs >= 2 * lifetime, f"the sync must outlive several credential lifetimes (took {secs}s)"
assert assume >= 2, "credentials were refreshed during the sync"
assert assume <= 2 * expiries + 2, f"{assume} STS calls for {expiries} expiries: not shared"
# Refreshed before expiry: no call was ever signed with credentials AWS had
# already expired (the retry after an ExpiredTokenException would hide that
# from the results, not from ecrsim).
expired = sum(op.get("ExpiredTokenException", 0) for op in stats["calls"].values())
print(f"ExpiredTokenException answers seen: {expired}")
assert expired == 0, f"{expired} calls used expired credentials: not refreshed before expiry"
want = {g["registry"]: sum(len(r["images"]) for r in g["repositories"]) for g in truth["registries"]}
got = {r["registry"]: r["result"]["images"] for r in results}
assert got == want, "catalog differs from the truth"
PY

cat "$tmp"/*.log "$tmp/sync.json" >"$tmp/everything"
hgf_psql "$HGFLEET_DATABASE_URL" -c "select coalesce(string_agg(coalesce(last_error,'') || coalesce(last_diagnosis::text,''), ' '), '') from connections" >>"$tmp/everything"
if grep -qF -- "$secret" "$tmp/everything"; then hgf_fail "the secret access key leaked"; fi
if grep -q 'IQoJb3JpZ2luX2VjE' "$tmp/everything"; then hgf_fail "a session token leaked"; fi
if grep -q 'QVdTO' "$tmp/everything"; then hgf_fail "an ECR authorization token leaked"; fi
echo "PASS: refresh"
