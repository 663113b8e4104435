#!/usr/bin/env bash
# Posture checks end to end: ecrsim generates lifecycle and repository
# policies and image config users from its seed; `sweep --wait` collects them
# (GetLifecyclePolicy and GetRepositoryPolicy per repository, the config blob
# at an image's first scan) and its report's posture counts equal ecrsim's
# truth, computed there by construction and here with each connection's
# schedule. One account connects through a principal whose policy denies
# ecr:GetLifecyclePolicy: its syncs still succeed, and the two checks that
# need the lifecycle policy are "not evaluated: missing ecr:GetLifecyclePolicy"
# (null, never 0). A plain sync makes no policy calls; an unchanged second
# sweep rewrites no repository.
set -euo pipefail
# shellcheck source=tests/integration/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

tmp=$(hgf_tmpdir)
HGFLEET_DATABASE_URL=$(hgf_new_db posture)
HGFLEET_MASTER_KEY=$(openssl rand -base64 32)
export HGFLEET_DATABASE_URL HGFLEET_MASTER_KEY HGFLEET_LOG_FORMAT=json HGFLEET_SCANNER=none
unset AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN AWS_ENDPOINT_URL_ECR HGFLEET_RESCAN_AFTER || true
seed=23
acct() { printf '%012d' $((100000000000 + seed * 1000000 + $1)); }
keyflags=()
for i in 0 1; do
  secret=$(openssl rand -hex 20)
  keyflags+=(--key "AKIAPOSTUREKEY00${i}:${secret}:$(acct "$i")")
  printf '%s\n' "$secret" >"$tmp/secret$i"
done
# Account 2 is read through a scenario principal: everything in ECR, but an
# explicit Deny on ecr:GetLifecyclePolicy.
denied_secret=$(openssl rand -hex 20)
printf '%s\n' "$denied_secret" >"$tmp/secret2"
cat >"$tmp/scenario.json" <<EOF
{"principals": [{"arn": "arn:aws:iam::$(acct 2):user/posture-auditor",
                 "access_key_id": "AKIAPOSTUREKEY002", "secret_access_key": "$denied_secret",
                 "policy": [{"actions": ["ecr:*"], "resources": ["*"]},
                            {"effect": "Deny", "actions": ["ecr:GetLifecyclePolicy"]}]}]}
EOF
hgf_bg "$ECRSIM_BIN" --seed $seed --accounts 3 --regions us-east-1,eu-west-1 --repos 10 \
  "${keyflags[@]}" --scenario "$tmp/scenario.json" >"$tmp/ecrsim.out" 2>"$tmp/ecrsim.log"
line=$(hgf_wait_for_line "$tmp/ecrsim.out" 'listening on http://' 10)
sim_url=${line##* }
export AWS_ENDPOINT_URL_ECR=$sim_url
H=$HGFLEET_BIN
db() { hgf_psql "$HGFLEET_DATABASE_URL" -c "$1"; }
calls() { # calls OP: ECR calls of OP that ecrsim answered, any outcome
  curl -fsS "$sim_url/_sim/stats" | python3 -c 'import json, sys
print(json.load(sys.stdin)["calls"].get(sys.argv[1], {}).get("calls", 0))' "$1"
}

# Each connection's schedule decides the race check: push events scan at
# once, manual never (any untagged window races), the rest every interval.
# With seed 23 the windows (days) are: account 0 [1 5 7 30 30 365] and
# [7 365...], account 1 [5 5 5 7 14 30 365] and [365]: so a window equal to
# the interval, one a day shorter, push events and manual all count.
declare -A schedule=(
  ["$(acct 0)/us-east-1"]=every:7d ["$(acct 0)/eu-west-1"]=every:8d
  ["$(acct 1)/us-east-1"]=on_push+weekly ["$(acct 1)/eu-west-1"]=manual
  ["$(acct 2)/us-east-1"]=weekly ["$(acct 2)/eu-west-1"]=daily
)
hgf_expect_exit 0 "$H" migrate
for i in 0 1 2; do
  for r in us-east-1 eu-west-1; do
    hgf_expect_exit 0 "$H" connection add "$(acct "$i").dkr.ecr.$r.amazonaws.com" \
      --schedule "${schedule[$(acct "$i")/$r]}" \
      --access-key-id "AKIAPOSTUREKEY00$i" --secret-access-key-file "$tmp/secret$i"
  done
done

# --- a catalog sync asks for no policies: they cost two calls a repository ---
# The first syncs that `connection add` queued collect posture (a sweep
# started meanwhile joins them); drop them so that this sync is a plain one.
hgf_assert_eq 6 "$(db "select count(*) from jobs where kind = 'sync' and payload->'posture' = 'true'")" \
  "first syncs queued with posture"
db "delete from jobs" >/dev/null
hgf_expect_exit 0 "$H" sync --all --wait
hgf_assert_eq 0 "$(calls GetLifecyclePolicy)" "GetLifecyclePolicy calls of a plain sync"
hgf_assert_eq 0 "$(calls GetRepositoryPolicy)" "GetRepositoryPolicy calls of a plain sync"
hgf_assert_eq 0 "$(db 'select count(*) from repositories where lifecycle_policy_status is not null
                        or repository_policy_status is not null')" "policies stored by a plain sync"

# --- the sweep collects posture; its counts equal the truth ---
hgf_expect_exit 0 "$H" sweep --wait --report "$tmp/r.json"
repos=$(db 'select count(*) from repositories where deleted_at is null')
collected=$(db 'select count(*) from repositories where repository_policy_status is not null')
[[ $collected != 0 ]] || hgf_fail "the sweep's syncs collected no repository policies: the sync \
jobs it queues must carry {\"posture\": true} and the worker must start them with \
hgf_sync_start_job (src/sched/worker.c)"
hgf_assert_eq "$repos" "$collected" "repositories whose policies the sweep collected"
hgf_assert_eq "$repos" "$(calls GetRepositoryPolicy)" "one GetRepositoryPolicy call per repository"
hgf_assert_eq "$repos" "$(calls GetLifecyclePolicy)" "one GetLifecyclePolicy call per repository"
hgf_assert_eq "$(db "select count(*) from repositories r join connections c on c.id = r.connection_id
                     where c.account_id = '$(acct 2)' and r.deleted_at is null")" \
  "$(db "select count(*) from repositories where lifecycle_policy_status = 'denied'")" \
  "denied lifecycle policies are those of the denied account"
hgf_assert_eq 0 "$(db "select count(*) from images where deleted_at is null and config_kind is null")" \
  "images whose config the sweep's scans did not read"
# A first scan GETs the manifest on its way to the config: the GET answers
# what a HEAD would (gone? token good?), so no HEAD goes before it.
hgf_assert_eq 0 "$(calls registry:HeadManifest)" "manifest HEADs of first scans"
scanned=$(db "select count(*) from scans where status = 'ok'")
(( $(calls registry:GetManifest) >= scanned && scanned > 0 )) ||
  hgf_fail "$(calls registry:GetManifest) manifest GETs for $scanned scanned images"
curl -fsS "$sim_url/_sim/truth" >"$tmp/truth.json"
python3 - "$tmp/truth.json" "$tmp/r.json" "$(acct 2)" \
  "$(for k in "${!schedule[@]}"; do printf '%s=%s,' "$k" "${schedule[$k]}"; done)" <<'PY'
import json, sys
truth, rep, denied = json.load(open(sys.argv[1])), json.load(open(sys.argv[2])), sys.argv[3]
schedules = dict(kv.split("=") for kv in sys.argv[4].strip(",").split(","))
DAY = 86400
INTERVAL = {"every:7d": 7 * DAY, "every:8d": 8 * DAY, "weekly": 7 * DAY, "daily": DAY}
MISSING = "not evaluated: missing ecr:GetLifecyclePolicy"

def races(days, spec):
    if days is None or spec.startswith("on_push"):
        return False
    return spec == "manual" or days * DAY < INTERVAL[spec]

assert rep["status"] == "complete", rep["status"]
conns = {c["registry"]: c for c in rep["connections"]}
assert len(conns) == len(truth["registries"]) == 6, sorted(conns)
tot = {}
kinds = set()
for reg in truth["registries"]:
    c, p, repos = conns[reg["registry"]], reg["posture"], reg["repositories"]
    assert c["status"] == "ok", c
    spec = schedules[f'{reg["account_id"]}/{reg["region"]}']
    want = {
        "no_lifecycle_policy": sum(1 for r in repos if not r["lifecycle_policy"]),
        "repository_policy_allows_everyone": sum(1 for r in repos
                                                 if r["repository_policy_allows_everyone"]),
        "image_runs_as_root": sum(1 for r in repos for im in r["images"] if im["runs_as_root"]),
        "lifecycle_expires_untagged_before_scan":
            sum(1 for r in repos if races(r["lifecycle_untagged_expiry_days"], spec)),
    }
    # ecrsim's own counts say the same as its per-repository facts.
    for k in ("no_lifecycle_policy", "repository_policy_allows_everyone", "image_runs_as_root"):
        assert p[k] == want[k], (reg["registry"], k, p[k], want[k])
    assert sum(p["untagged_expiry_days"].values()) == sum(
        1 for r in repos if r["lifecycle_untagged_expiry_days"] is not None)
    kinds.update(k for k, v in want.items() if v)
    ne = c["posture_not_evaluated"]
    if reg["account_id"] == denied:
        for k in ("no_lifecycle_policy", "lifecycle_expires_untagged_before_scan"):
            assert c["posture"][k] is None, (reg["registry"], k, c["posture"][k])
            assert ne[k] == {"count": len(repos), "reason": MISSING}, (k, ne.get(k))
            del want[k]
        assert set(ne) == {"no_lifecycle_policy", "lifecycle_expires_untagged_before_scan"}, ne
    else:
        assert ne == {}, (reg["registry"], ne)
    for k, v in want.items():
        assert c["posture"][k] == v, (reg["registry"], spec, k, c["posture"][k], v)
        tot[k] = tot.get(k, 0) + v
# The fleet has every kind of violation, so no check passed by default.
assert kinds == {"no_lifecycle_policy", "repository_policy_allows_everyone",
                 "image_runs_as_root", "lifecycle_expires_untagged_before_scan"}, kinds
for k, v in tot.items():
    assert rep["totals"]["posture"][k] == v, (k, rep["totals"]["posture"][k], v)
assert rep["posture_not_evaluated"]["no_lifecycle_policy"] == MISSING, rep["posture_not_evaluated"]
n_denied = sum(len(r["repositories"]) for r in truth["registries"] if r["account_id"] == denied)
assert rep["totals"]["posture_not_evaluated"] == {
    "no_lifecycle_policy": n_denied, "lifecycle_expires_untagged_before_scan": n_denied}, \
    rep["totals"]["posture_not_evaluated"]
print("posture equals truth:", json.dumps(rep["totals"]["posture"], sort_keys=True))
PY

# --- the policies as stored: AWS's documents, one status per repository ---
hgf_assert_eq 0 "$(db "select count(*) from repositories where repository_policy_status = 'ok'
                        and jsonb_typeof(repository_policy -> 'Statement') is null")" \
  "stored repository policies without a Statement"
hgf_assert_eq 0 "$(db "select count(*) from repositories where lifecycle_policy_status = 'ok'
                        and jsonb_typeof(lifecycle_policy -> 'rules') <> 'array'")" \
  "stored lifecycle policies without rules"
hgf_assert_eq 0 "$(db "select count(*) from connections where posture_checked_at is null")" \
  "connections whose posture was never checked"

# --- renderings: CSV rows and the HTML page name what was not evaluated ---
sweep_id=$(python3 -c 'import json, sys; print(json.load(open(sys.argv[1]))["sweep_id"])' "$tmp/r.json")
hgf_expect_exit 0 "$H" sweep show "$sweep_id" --format csv
printf '%s\n' "$HGF_OUT" >"$tmp/r.csv"
python3 - "$tmp/r.csv" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1], newline="")))
post = {r["name"]: r["value"] for r in rows if r["row_type"] == "posture"}
assert int(post["repository_policy_allows_everyone"]) > 0, post
ne = {r["name"]: r for r in rows if r["row_type"] == "posture_not_evaluated"}
assert ne["no_lifecycle_policy"]["diagnosis"] == "not evaluated: missing ecr:GetLifecyclePolicy", ne
assert int(ne["no_lifecycle_policy"]["value"]) > 0, ne
PY
hgf_expect_exit 0 "$H" sweep show "$sweep_id" --format html
hgf_assert_contains "$HGF_OUT" "missing ecr:GetLifecyclePolicy" "the HTML page"
hgf_assert_contains "$HGF_OUT" "By connection" "the HTML page's posture by connection"

# --- an unchanged second sweep rewrites no repository and reads no config ---
stamp=$(db "select max(policies_changed_at) from repositories")
reads=$(db "select max(config_read_at) from images")
hgf_expect_exit 0 "$H" sweep --wait --json
hgf_assert_eq "$stamp" "$(db "select max(policies_changed_at) from repositories")" \
  "repositories rewritten by an unchanged sweep"
hgf_assert_eq "$reads" "$(db "select max(config_read_at) from images")" \
  "configs read again by an unchanged sweep"
hgf_assert_eq $((2 * repos)) "$(calls GetLifecyclePolicy)" "GetLifecyclePolicy calls after two sweeps"

# --- ecrsim's scenario names a bad statement effect ---
code=$(curl -sS -o "$tmp/bad.out" -w '%{http_code}' -X POST --data-binary \
  '{"principals":[{"arn":"arn:aws:iam::100000000000:user/x","access_key_id":"AKIAX","secret_access_key":"s","policy":[{"effect":"Perhaps","actions":["ecr:*"]}]}]}' \
  "$sim_url/_sim/scenario")
hgf_assert_eq 400 "$code" "a scenario with a bad effect"
hgf_assert_contains "$(cat "$tmp/bad.out")" "principals[0].policy[0].effect" "the bad effect's field"

# --- the denial lifted: the same account is judged, nothing is left out; and
# account 1 lets everyone pull: the scenario's grant shows in its policies ---
cat >"$tmp/scenario2.json" <<EOF
{"principals": [{"arn": "arn:aws:iam::$(acct 2):user/posture-auditor",
                 "access_key_id": "AKIAPOSTUREKEY002", "secret_access_key": "$denied_secret",
                 "policy": [{"actions": ["ecr:*"], "resources": ["*"]}]}],
 "repository_policies": {"$(acct 1)": [{"repositories": ["*"], "principal": "*",
                                        "actions": ["ecr:BatchGetImage"]}]}}
EOF
curl -fsS -X POST --data-binary "@$tmp/scenario2.json" "$sim_url/_sim/scenario" >/dev/null
hgf_expect_exit 0 "$H" sweep --wait --report "$tmp/r3.json"
python3 - "$tmp/r3.json" "$(acct 1)" <<'PY'
import json, sys
rep, open_acct = json.load(open(sys.argv[1])), sys.argv[2]
assert rep["posture_not_evaluated"] == {}, rep["posture_not_evaluated"]
for c in rep["connections"]:
    assert all(isinstance(v, int) for v in c["posture"].values()), c["posture"]
    if c["account_id"] == open_acct:
        assert c["posture"]["repository_policy_allows_everyone"] == c["repositories"], c
print("after the grants: every check judged everywhere, account 1 open to everyone")
PY
hgf_assert_eq 0 "$(db "select count(*) from repositories where lifecycle_policy_status = 'denied'")" \
  "denied lifecycle policies once the grant is in place"
echo "PASS: posture"
