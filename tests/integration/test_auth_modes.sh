#!/usr/bin/env bash
# Every auth mode of the guide's auth table, syncing a registry end to end
# against ecrsim's IAM model: static keys, the host's own credentials (env,
# IMDSv2, IRSA web identity, ECS/EKS container credentials), cross-account
# sts:AssumeRole with ExternalId from the host or from static keys, and a
# two-hop role chain. Each connection must also pass `connection test`.
set -euo pipefail
# shellcheck source=tests/integration/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

tmp=$(hgf_tmpdir)
HGFLEET_DATABASE_URL=$(hgf_new_db auth)
HGFLEET_MASTER_KEY=$(openssl rand -base64 32)
export HGFLEET_DATABASE_URL HGFLEET_MASTER_KEY
for v in AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN AWS_ROLE_ARN \
  AWS_WEB_IDENTITY_TOKEN_FILE AWS_CONTAINER_CREDENTIALS_FULL_URI AWS_CONTAINER_CREDENTIALS_RELATIVE_URI \
  AWS_CONTAINER_AUTHORIZATION_TOKEN AWS_EC2_METADATA_SERVICE_ENDPOINT AWS_ENDPOINT_URL; do unset "$v"; done
export AWS_EC2_METADATA_DISABLED=true

seed=7
acct() { printf '%012d' $((100000000000 + seed * 1000000 + $1)); }
A=$(acct 0) B=$(acct 1) C=$(acct 2) D=$(acct 3)
ci_secret=$(openssl rand -hex 20)
printf '%s\n' "$ci_secret" >"$tmp/ci.secret"
web_token="eyJhbGciOiJSUzI1NiJ9.test-web-identity-token.$(openssl rand -hex 8)"
printf '%s' "$web_token" >"$tmp/web-token"
container_token=$(openssl rand -hex 16)
read_all='["ecr:GetAuthorizationToken","ecr:DescribeRepositories","ecr:DescribeImages","ecr:ListImages","ecr:BatchGetImage","ecr:GetDownloadUrlForLayer","ecr:BatchCheckLayerAvailability"]'
cat >"$tmp/scenario.json" <<JSON
{
 "principals": [
  {"arn": "arn:aws:iam::$A:user/ci", "access_key_id": "AKIACIUSER0000000001", "secret_access_key": "$ci_secret",
   "policy": [{"actions": ["sts:AssumeRole"], "resources": ["*"]},
              {"actions": $read_all, "resources": ["*"]}]}
 ],
 "roles": [
  {"arn": "arn:aws:iam::$B:role/harborguard-sensor",
   "trust": [{"principal": "arn:aws:iam::$A:user/ci", "external_id": "hg-ext-42"},
             {"principal": "arn:aws:iam::$A:role/node", "external_id": "hg-ext-42"}],
   "policy": [{"actions": $read_all, "resources": ["*"]}]},
  {"arn": "arn:aws:iam::$A:role/hub", "trust": [{"principal": "arn:aws:iam::$A:user/ci"}],
   "policy": [{"actions": ["sts:AssumeRole"], "resources": ["*"]}]},
  {"arn": "arn:aws:iam::$C:role/spoke", "trust": [{"principal": "arn:aws:iam::$A:role/hub"}],
   "policy": [{"actions": $read_all, "resources": ["*"]}]},
  {"arn": "arn:aws:iam::$A:role/node", "trust": [{"principal": "*"}],
   "policy": [{"actions": ["sts:AssumeRole"], "resources": ["*"]}, {"actions": $read_all, "resources": ["arn:aws:ecr:*:$A:repository/*", "*"]}]},
  {"arn": "arn:aws:iam::$D:role/task", "trust": [{"principal": "*"}],
   "policy": [{"actions": $read_all, "resources": ["*"]}]},
  {"arn": "arn:aws:iam::$D:role/irsa", "trust": [{"principal": "*"}],
   "policy": [{"actions": $read_all, "resources": ["*"]}]}
 ],
 "instance_role": "arn:aws:iam::$A:role/node",
 "container_role": "arn:aws:iam::$D:role/task", "container_token": "$container_token",
 "web_identity_tokens": {"$web_token": "arn:aws:iam::$D:role/irsa"}
}
JSON

hgf_bg "$ECRSIM_BIN" --seed $seed --accounts 4 --regions us-east-1 --repos 3 --images 4 \
  --scenario "$tmp/scenario.json" >"$tmp/ecrsim.out" 2>"$tmp/ecrsim.log"
line=$(hgf_wait_for_line "$tmp/ecrsim.out" 'listening on http://' 10)
sim=${line##* }
export AWS_ENDPOINT_URL_ECR=$sim AWS_ENDPOINT_URL_STS=$sim
curl -fsS "$sim/_sim/truth" >"$tmp/truth.json"
H=$HGFLEET_BIN
hgf_expect_exit 0 "$H" migrate

# sync_and_check LABEL REGISTRY [env assignments...] -- [connection add flags...]
sync_and_check() {
  local label=$1 registry=$2
  shift 2
  local envs=()
  while [[ $1 != -- ]]; do envs+=("$1"); shift; done
  shift
  hgf_expect_exit 0 env "${envs[@]}" "$H" connection add "$registry" --schedule manual "$@"
  hgf_expect_exit 0 env "${envs[@]}" "$H" sync "$registry" --wait --json
  local got want
  got=$(jq -n 'input.result.images' <<<"$HGF_OUT")
  want=$(jq --arg r "$registry" \
    '[.registries[] | select(.registry == $r) | .repositories[].images | length] | add // 0' \
    "$tmp/truth.json")
  hgf_assert_eq "$want" "$got" "$label: every image synced"
  hgf_expect_exit 0 env "${envs[@]}" "$H" connection test "$registry" --json
  jq -e '.healthy and .steps[-1].name == "ManifestHead"' <<<"$HGF_OUT" >/dev/null ||
    hgf_fail "$label: connection test: $HGF_OUT"
  "$H" connection remove "$registry" --purge >/dev/null
  echo "ok: $label"
}

ci_env=(AWS_ACCESS_KEY_ID=AKIACIUSER0000000001 "AWS_SECRET_ACCESS_KEY=$ci_secret")
regA=$A.dkr.ecr.us-east-1.amazonaws.com
regB=$B.dkr.ecr.us-east-1.amazonaws.com
regC=$C.dkr.ecr.us-east-1.amazonaws.com
regD=$D.dkr.ecr.us-east-1.amazonaws.com

sync_and_check "static keys" "$regA" -- \
  --access-key-id AKIACIUSER0000000001 --secret-access-key-file "$tmp/ci.secret"
sync_and_check "host: environment" "$regA" "${ci_env[@]}" --
sync_and_check "host: IMDSv2 instance role" "$regA" AWS_EC2_METADATA_DISABLED=false \
  "AWS_EC2_METADATA_SERVICE_ENDPOINT=$sim" --
sync_and_check "host: IRSA web identity" "$regD" "AWS_ROLE_ARN=arn:aws:iam::$D:role/irsa" \
  "AWS_WEB_IDENTITY_TOKEN_FILE=$tmp/web-token" AWS_ROLE_SESSION_NAME=hgfleet-test --
sync_and_check "host: container credentials" "$regD" \
  "AWS_CONTAINER_CREDENTIALS_FULL_URI=$sim/_sim/container-credentials" \
  "AWS_CONTAINER_AUTHORIZATION_TOKEN=$container_token" --
sync_and_check "assume-role from host credentials" "$regB" "${ci_env[@]}" -- \
  --role-arn "arn:aws:iam::$B:role/harborguard-sensor" --external-id hg-ext-42
sync_and_check "assume-role from the instance role" "$regB" AWS_EC2_METADATA_DISABLED=false \
  "AWS_EC2_METADATA_SERVICE_ENDPOINT=$sim" -- \
  --role-arn "arn:aws:iam::$B:role/harborguard-sensor" --external-id hg-ext-42
sync_and_check "assume-role from static keys" "$regB" -- \
  --access-key-id AKIACIUSER0000000001 --secret-access-key-file "$tmp/ci.secret" \
  --role-arn "arn:aws:iam::$B:role/harborguard-sensor" --external-id hg-ext-42
sync_and_check "two-hop role chain" "$regC" "${ci_env[@]}" -- \
  --via-role-arn "arn:aws:iam::$A:role/hub" --role-arn "arn:aws:iam::$C:role/spoke" --duration 3600

# connection update switches auth in place.
hgf_expect_exit 0 "$H" connection add "$regB" --schedule manual
hgf_expect_exit 0 "$H" connection update "$regB" --role-arn "arn:aws:iam::$B:role/harborguard-sensor" \
  --external-id hg-ext-42 --schedule every:1h
hgf_assert_contains "$HGF_OUT" "assume_role" "update switched the auth mode"
hgf_expect_exit 0 env "${ci_env[@]}" "$H" sync "$regB" --wait
hgf_expect_exit 0 "$H" connection update "$regB" --no-role --access-key-id AKIACIUSER0000000001 \
  --secret-access-key-file "$tmp/ci.secret"
hgf_assert_contains "$HGF_OUT" "static" "update back to static keys"

# Bad input: exit 2 naming the field, before any database work.
hgf_expect_exit 2 "$H" connection add "$regB" --role-arn arn:aws:iam::123:role/x
hgf_assert_contains "$HGF_ERR" "--role-arn" "malformed role ARN"
hgf_expect_exit 2 "$H" connection add "$regB" --role-arn "arn:aws:iam::$B:role/r" --external-id 'bad id!'
hgf_assert_contains "$HGF_ERR" "--external-id" "bad ExternalId"
hgf_expect_exit 2 "$H" connection add "$regB" --role-arn "arn:aws:iam::$B:role/r" --duration 60
hgf_assert_contains "$HGF_ERR" "--duration" "duration out of range"
hgf_expect_exit 2 "$H" connection add "$regB" --role-arn "arn:aws:iam::$B:role/r" \
  --via-role-arn "arn:aws:iam::$A:role/hub" --duration 7200
hgf_assert_contains "$HGF_ERR" "--duration" "chain duration capped"
hgf_expect_exit 2 "$H" connection add "$regB" --external-id abc
hgf_assert_contains "$HGF_ERR" "--role-arn" "external id without role"

hgf_expect_exit 2 env AWS_WEB_IDENTITY_TOKEN_FILE=/nonexistent/token "$H" sync --all
hgf_assert_contains "$HGF_ERR" "AWS_WEB_IDENTITY_TOKEN_FILE" "an unreadable token file is named"
hgf_expect_exit 2 env AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE=/nonexistent/t "$H" connection list
hgf_assert_contains "$HGF_ERR" "AWS_CONTAINER_AUTHORIZATION_TOKEN_FILE" "an unreadable container token file is named"

# No secret anywhere in what we printed or logged.
for f in "$tmp"/*.log; do cat "$f"; done >"$tmp/all.txt"
if grep -qF "$ci_secret" "$tmp/all.txt"; then hgf_fail "the secret leaked into a log"; fi
echo "PASS: auth modes"
