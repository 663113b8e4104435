#!/usr/bin/env bash
# One case per row of the guide's troubleshooting table, reproduced in ecrsim's
# IAM model and diagnosed by `connection test` (and by a failing sync), plus
# the pitfalls connection test must name: GetAuthorizationToken not on "*"
# and a wrong ExternalId.
set -euo pipefail
# shellcheck source=tests/integration/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

tmp=$(hgf_tmpdir)
HGFLEET_DATABASE_URL=$(hgf_new_db diag)
HGFLEET_MASTER_KEY=$(openssl rand -base64 32)
export HGFLEET_DATABASE_URL HGFLEET_MASTER_KEY AWS_EC2_METADATA_DISABLED=true
for v in AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN AWS_ROLE_ARN \
  AWS_WEB_IDENTITY_TOKEN_FILE AWS_CONTAINER_CREDENTIALS_FULL_URI AWS_ENDPOINT_URL; do unset "$v"; done

seed=7
acct() { printf '%012d' $((100000000000 + seed * 1000000 + $1)); }
A=$(acct 0) B=$(acct 1)
s1=$(openssl rand -hex 20) s2=$(openssl rand -hex 20) s3=$(openssl rand -hex 20) s4=$(openssl rand -hex 20)
list_only='["ecr:GetAuthorizationToken","ecr:DescribeRepositories","ecr:DescribeImages","ecr:ListImages"]'
all='["ecr:GetAuthorizationToken","ecr:DescribeRepositories","ecr:DescribeImages","ecr:ListImages","ecr:BatchGetImage","ecr:GetDownloadUrlForLayer","ecr:BatchCheckLayerAvailability"]'
cat >"$tmp/scenario.json" <<JSON
{
 "principals": [
  {"arn": "arn:aws:iam::$A:user/listonly", "access_key_id": "AKIALISTONLY00000001", "secret_access_key": "$s1",
   "policy": [{"actions": $list_only, "resources": ["*"]}]},
  {"arn": "arn:aws:iam::$A:user/full", "access_key_id": "AKIAFULLACCESS000001", "secret_access_key": "$s2",
   "policy": [{"actions": $all, "resources": ["*"]}, {"actions": ["sts:AssumeRole"], "resources": ["*"]}]},
  {"arn": "arn:aws:iam::$A:user/repotoken", "access_key_id": "AKIAREPOSCOPED000001", "secret_access_key": "$s3",
   "policy": [{"actions": ["ecr:GetAuthorizationToken"], "resources": ["arn:aws:ecr:us-east-1:$A:repository/*"]},
              {"actions": ["ecr:DescribeRepositories","ecr:DescribeImages","ecr:BatchGetImage","ecr:GetDownloadUrlForLayer"], "resources": ["*"]}]},
  {"arn": "arn:aws:iam::$A:user/sensor", "access_key_id": "AKIASENSOR0000000001", "secret_access_key": "$s4",
   "policy": [{"actions": ["sts:AssumeRole"], "resources": ["*"]}]}
 ],
 "roles": [
  {"arn": "arn:aws:iam::$B:role/harborguard-sensor",
   "trust": [{"principal": "arn:aws:iam::$A:user/sensor", "external_id": "right-id"}],
   "policy": [{"actions": $all, "resources": ["*"]}]},
  {"arn": "arn:aws:iam::$A:role/short", "trust": [{"principal": "arn:aws:iam::$A:user/full"}],
   "policy": [{"actions": $all, "resources": ["*"]}]}
 ]
}
JSON
for i in 1 2 3 4; do eval "printf '%s\n' \"\$s$i\"" >"$tmp/s$i"; done

hgf_bg "$ECRSIM_BIN" --seed $seed --accounts 2 --regions us-east-1 --repos 3 --images 3 \
  --scenario "$tmp/scenario.json" >"$tmp/ecrsim.out" 2>"$tmp/ecrsim.log"
line=$(hgf_wait_for_line "$tmp/ecrsim.out" 'listening on http://' 10)
sim=${line##* }
export AWS_ENDPOINT_URL_ECR=$sim AWS_ENDPOINT_URL_STS=$sim
H=$HGFLEET_BIN
hgf_expect_exit 0 "$H" migrate

regA=$A.dkr.ecr.us-east-1.amazonaws.com
regB=$B.dkr.ecr.us-east-1.amazonaws.com

# diagnose NAME EXPECTED_CODE TEXT: connection test fails with that diagnosis
# (its JSON left in $diag_json).
diagnose() {
  local reg=$1 code=$2 text=$3 got rc=0
  hgf_expect_exit 1 "$H" connection test "$reg" --json
  diag_json=$HGF_OUT
  got=$(jq -r '.diagnosis | .code, .symptom + " | " + .cause + " | " + .fix' <<<"$HGF_OUT")
  hgf_assert_eq "$code" "${got%%$'\n'*}" "diagnosis code for $code"
  hgf_assert_contains "$got" "$text" "diagnosis wording for $code"
  # The diagnosis is stored now: listing it and the text output, side by side.
  hgf_bg "$H" connection list >"$tmp/list.out" 2>"$tmp/list.err"
  hgf_expect_exit 1 "$H" connection test "$reg"
  hgf_assert_contains "$HGF_OUT" "diagnosis:" "text output has the diagnosis"
  wait "$HGF_BG_PID" || rc=$?
  hgf_assert_eq 0 "$rc" "connection list's exit status ($(<"$tmp/list.err"))"
  hgf_assert_contains "$(<"$tmp/list.out")" "$code" "connection list shows the stored diagnosis"
  echo "ok: $code"
}

add() { hgf_expect_exit 0 "$H" connection add "$@" --schedule manual; }
drop() { "$H" connection remove "$1" --purge >/dev/null; }

# Row 1: repos enumerate, but scans fail with denied.
add "$regA" --access-key-id AKIALISTONLY00000001 --secret-access-key-file "$tmp/s1"
diagnose "$regA" pull_denied "ecr:BatchGetImage"
# A sweep's first scans GET the manifest (no HEAD first): the 403 still gets
# one fresh token, then fails the scan and stores the same diagnosis.
hgf_psql "$HGFLEET_DATABASE_URL" -c "update connections set last_diagnosis = null" >/dev/null
curl -fsS -X DELETE "$sim/_sim/stats" >/dev/null
"$H" sweep --wait --json >"$tmp/sweep.out" 2>"$tmp/sweep.err" || true
scans=$(hgf_psql "$HGFLEET_DATABASE_URL" -c "select count(*) || ' ' || count(*) filter (where status = 'failed' and error like '%DENIED%') from scans")
[[ ${scans% *} -gt 0 && ${scans% *} == "${scans#* }" ]] ||
  hgf_fail "the scans of a list-only principal are not all failed as DENIED: $scans"
hgf_assert_eq pull_denied "$(hgf_psql "$HGFLEET_DATABASE_URL" -c "select last_diagnosis->>'code' from connections")" \
  "a failed scan stores the pull diagnosis"
# The sweep report says so: the listing worked, but no scan did.
jq -e '.status == "partial" and .connections[0].status == "failed"
       and .connections[0].diagnosis.code == "pull_denied" and .connections[0].images_scanned == 0' \
  "$tmp/sweep.out" >/dev/null || hgf_fail "the sweep report hides the refused scans: $(head -c 600 "$tmp/sweep.out")"
# A sync that succeeds (listing works) leaves the scan's diagnosis in place.
hgf_expect_exit 0 "$H" sync "$regA" --wait
hgf_assert_eq "pull_denied scan" "$(hgf_psql "$HGFLEET_DATABASE_URL" -c "select last_diagnosis->>'code' || ' ' || (last_diagnosis->>'source') from connections")" \
  "a successful sync keeps the scan's diagnosis"
stats=$(curl -fsS "$sim/_sim/stats")
hgf_assert_eq 0 "$(jq '.calls["registry:HeadManifest"].calls // 0' <<<"$stats")" "manifest HEADs of first scans"
hgf_assert_eq $(( 2 * ${scans% *} )) "$(jq '.calls["registry:GetManifest"].calls' <<<"$stats")" \
  "manifest GETs: each scan's, then once more with a fresh token"
drop "$regA"

# Row 2: test connection succeeds, sync produces zero repos (wrong region).
add "$A.dkr.ecr.eu-central-1.amazonaws.com" --access-key-id AKIAFULLACCESS000001 --secret-access-key-file "$tmp/s2"
hgf_expect_exit 0 "$H" sync "$A.dkr.ecr.eu-central-1.amazonaws.com" --wait
diag=$(hgf_psql "$HGFLEET_DATABASE_URL" -c "select last_diagnosis->>'code' from connections where region = 'eu-central-1'")
hgf_assert_eq zero_repositories "$diag" "a sync with zero repositories stores the region diagnosis"
diagnose "$A.dkr.ecr.eu-central-1.amazonaws.com" zero_repositories "different region than the URL"
drop "$A.dkr.ecr.eu-central-1.amazonaws.com"

# sweep_stores CODE TEXT: a sweep's refused scans store that diagnosis (not
# connection test's) and the report shows the connection failed with it.
sweep_stores() {
  hgf_psql "$HGFLEET_DATABASE_URL" -c "update connections set last_diagnosis = null" >/dev/null
  "$H" sweep --wait --json >"$tmp/sweep.out" 2>"$tmp/sweep.err" && hgf_fail "the sweep was complete"
  hgf_assert_eq "$1 scan" "$(hgf_psql "$HGFLEET_DATABASE_URL" -c "select last_diagnosis->>'code' || ' ' || (last_diagnosis->>'source') from connections")" \
    "the sweep's scans store $1"
  hgf_assert_contains "$(hgf_psql "$HGFLEET_DATABASE_URL" -c "select last_diagnosis->>'cause' || ' ' || (last_diagnosis->>'fix') from connections")" \
    "$2" "the stored $1 wording"
  jq -e --arg c "$1" '.connections[0].status == "failed" and .connections[0].diagnosis.code == $c' \
    "$tmp/sweep.out" >/dev/null || hgf_fail "the sweep report does not show $1: $(head -c 600 "$tmp/sweep.out")"
}

# Row 4: cross-account: list works, pull fails (no repository policy in B).
add "$regB" --access-key-id AKIAFULLACCESS000001 --secret-access-key-file "$tmp/s2"
diagnose "$regB" cross_account_pull "Repository policy missing on the target account $B"
sweep_stores cross_account_pull "Repository policy missing on the target account $B"
drop "$regB"

# Pitfall: GetAuthorizationToken granted on a repository ARN.
add "$regA" --access-key-id AKIAREPOSCOPED000001 --secret-access-key-file "$tmp/s3"
diagnose "$regA" auth_token_scope '"Resource": "*"'
sweep_stores auth_token_scope '"Resource": "*"'
drop "$regA"

# Pitfall: a wrong ExternalId.
add "$regB" --access-key-id AKIASENSOR0000000001 --secret-access-key-file "$tmp/s4" \
  --role-arn "arn:aws:iam::$B:role/harborguard-sensor" --external-id wrong-id
diagnose "$regB" assume_role_denied "ExternalId"
hgf_expect_exit 1 "$H" sync "$regB" --wait
hgf_assert_contains "$HGF_OUT" "AccessDenied" "the failing sync shows STS's code"
hgf_assert_contains "$HGF_OUT" "diagnosis: AssumeRole is denied" "the failing sync prints the diagnosis"
hgf_assert_contains "$HGF_OUT" "fix: In the role's account" "... with its fix"
hgf_expect_exit 1 "$H" sync "$regB" --wait --json
hgf_assert_eq assume_role_denied "$(jq -r '.result.diagnosis.code' <<<"$HGF_OUT")" \
  "sync --wait --json carries the diagnosis"
diag=$(hgf_psql "$HGFLEET_DATABASE_URL" -c "select last_diagnosis->>'code' from connections where account_id = '$B'")
hgf_assert_eq assume_role_denied "$diag" "a failed sync stores the same diagnosis"
drop "$regB"

# The host's own credentials: none here (no AWS_* keys, no web identity, no
# container endpoint, IMDS disabled). The fix names where they come from.
add "$regA"
diagnose "$regA" host_credentials "AWS_ROLE_ARN"
hgf_assert_contains "$diag_json" "IMDSv2" "the host-credentials fix names IMDSv2"
drop "$regA"

# Row 5: authenticates but eventually 401s: session credentials from the
# environment that nobody refreshes, here a container endpoint's credentials
# copied into AWS_* variables, with a 1-second lifetime (ecrsim counts whole
# seconds, so they are surely expired 2 s after they were issued).
jq -c --arg role "arn:aws:iam::$A:role/short" \
  '.credential_duration_seconds = 1 | .container_role = $role | .container_token = "row5-token"' \
  "$tmp/scenario.json" >"$tmp/scenario2.json"
curl -fsS -X POST "$sim/_sim/scenario" --data-binary @"$tmp/scenario2.json" >/dev/null
read -r sak ssk sst < <(curl -fsS -H 'Authorization: row5-token' "$sim/_sim/container-credentials" |
  jq -r '"\(.AccessKeyId) \(.SecretAccessKey) \(.Token)"')
issued=${EPOCHREALTIME/./}
add "$regA"
# Sleep what is left of the 2 s (in microseconds): adding the connection took some.
left=$(( issued + 2000000 - ${EPOCHREALTIME/./} ))
(( left <= 0 )) || sleep "$(( left / 1000000 )).$(printf '%06d' $(( left % 1000000 )))"
export AWS_ACCESS_KEY_ID=$sak AWS_SECRET_ACCESS_KEY=$ssk AWS_SESSION_TOKEN=$sst
hgf_expect_exit 1 "$H" sync "$regA" --wait
hgf_assert_contains "$HGF_OUT" "ExpiredToken" "the expired session is reported"
diag=$(hgf_psql "$HGFLEET_DATABASE_URL" -c "select last_diagnosis->>'fix' from connections where account_id = '$A'")
hgf_assert_contains "$diag" "AWS_ROLE_ARN" "the 401 diagnosis names AWS_ROLE_ARN"
hgf_assert_contains "$diag" "IRSA" "the 401 diagnosis names IRSA"
hgf_assert_contains "$diag" "IMDSv2" "the 401 diagnosis names IMDSv2"
diagnose "$regA" role_chain_expired "AWS_ROLE_ARN"
unset AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN
curl -fsS -X POST "$sim/_sim/scenario" --data-binary @"$tmp/scenario.json" >/dev/null
drop "$regA"

# Row 3: InvalidSignatureException from clock drift > 5 minutes.
add "$regA" --access-key-id AKIAFULLACCESS000001 --secret-access-key-file "$tmp/s2"
curl -fsS -X POST "$sim/_sim/config" -d '{"clock_offset": 1200}' >/dev/null
diagnose "$regA" clock_drift "Clock drift on the sensor host > 5 minutes"
jq -e '.diagnosis.clock_offset_seconds | 1150 <= . and . <= 1250' <<<"$diag_json" >/dev/null ||
  hgf_fail "the clock offset in the diagnosis: $diag_json"
curl -fsS -X POST "$sim/_sim/config" -d '{"clock_offset": 0}' >/dev/null
echo "PASS: diagnosis"
