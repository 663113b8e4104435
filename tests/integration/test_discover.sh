#!/usr/bin/env bash
# hgfleet discover (Organizations ListAccounts -> one assume-role connection
# per ACTIVE account x region, suspended accounts reported) and
# hgfleet connection import (c7n-org accounts.yml, CSV): idempotent reruns,
# all-or-nothing on a malformed file, syncs through the assumed roles.
set -euo pipefail
# shellcheck source=tests/integration/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

tmp=$(hgf_tmpdir)
HGFLEET_DATABASE_URL=$(hgf_new_db discover)
export HGFLEET_DATABASE_URL
for v in AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN AWS_ROLE_ARN \
  AWS_WEB_IDENTITY_TOKEN_FILE AWS_CONTAINER_CREDENTIALS_FULL_URI AWS_CONTAINER_CREDENTIALS_RELATIVE_URI \
  AWS_ENDPOINT_URL; do unset "$v"; done
export AWS_EC2_METADATA_DISABLED=true

seed=11
acct() { printf '%012d' $((100000000000 + seed * 1000000 + $1)); }
host_secret=$(openssl rand -hex 20)
read_all='["ecr:GetAuthorizationToken","ecr:DescribeRepositories","ecr:DescribeImages","ecr:ListImages","ecr:BatchGetImage","ecr:GetDownloadUrlForLayer","ecr:BatchCheckLayerAvailability"]'
roles=""
for i in 0 1 2 3 4 5; do
  roles+="${roles:+,}{\"arn\": \"arn:aws:iam::$(acct "$i"):role/hgfleet-reader\",
    \"trust\": [{\"principal\": \"arn:aws:iam::$(acct 0):user/fleet\", \"external_id\": \"org-ext-1\"}],
    \"policy\": [{\"actions\": $read_all, \"resources\": [\"*\"]}]}"
done
cat >"$tmp/scenario.json" <<JSON
{"principals": [{"arn": "arn:aws:iam::$(acct 0):user/fleet", "access_key_id": "AKIAFLEETHOST0000001",
   "secret_access_key": "$host_secret",
   "policy": [{"actions": ["organizations:ListAccounts", "sts:AssumeRole"], "resources": ["*"]}]}],
 "roles": [$roles]}
JSON

hgf_bg "$ECRSIM_BIN" --seed $seed --accounts 6 --suspended 2 --regions us-east-1,eu-west-1 \
  --repos 2 --images 3 --scenario "$tmp/scenario.json" >"$tmp/ecrsim.out" 2>"$tmp/ecrsim.log"
line=$(hgf_wait_for_line "$tmp/ecrsim.out" 'listening on http://' 10)
sim=${line##* }
export AWS_ENDPOINT_URL_ECR=$sim AWS_ENDPOINT_URL_STS=$sim AWS_ENDPOINT_URL_ORGANIZATIONS=$sim
export AWS_ACCESS_KEY_ID=AKIAFLEETHOST0000001 AWS_SECRET_ACCESS_KEY=$host_secret
H=$HGFLEET_BIN
jq_py() { python3 -c "import json,sys; d=json.load(sys.stdin); print($1)"; }

# Validation first: exit 2 naming the flag, with no database reachable.
hgf_expect_exit 2 env HGFLEET_DATABASE_URL=postgresql://127.0.0.1:1/none "$H" discover \
  --org-role-name 'bad role!' --regions us-east-1
hgf_assert_contains "$HGF_ERR" "--org-role-name" "bad role name"
hgf_expect_exit 2 "$H" discover --org-role-name hgfleet-reader --regions us-east-1,mars-1
hgf_assert_contains "$HGF_ERR" "--regions" "bad region"
hgf_expect_exit 2 "$H" discover --org-role-name hgfleet-reader --regions us-east-1 --schedule 'daily@25:00'
hgf_assert_contains "$HGF_ERR" "25" "bad schedule"
hgf_expect_exit 2 "$H" discover --regions us-east-1
hgf_assert_contains "$HGF_ERR" "--org-role-name" "missing role name"
hgf_expect_exit 0 "$H" discover --help

hgf_expect_exit 0 "$H" migrate

# Discovery without organizations:ListAccounts fails with exit 1 and AWS's code.
hgf_expect_exit 1 env AWS_ACCESS_KEY_ID=AKIANOBODY0000000001 "$H" discover \
  --org-role-name hgfleet-reader --regions us-east-1

hgf_expect_exit 0 "$H" discover --org-role-name hgfleet-reader --regions us-east-1,eu-west-1 \
  --external-id org-ext-1 --dry-run --json
hgf_assert_eq 8 "$(jq_py 'len(d["created"])' <<<"$HGF_OUT")" "dry run: 8 would be created"
hgf_expect_exit 0 "$H" connection list --json
hgf_assert_eq 0 "$(jq_py 'len(d)' <<<"$HGF_OUT")" "dry run wrote nothing"

hgf_expect_exit 0 "$H" discover --org-role-name hgfleet-reader --regions us-east-1,eu-west-1 \
  --external-id org-ext-1 --schedule manual --json
report=$HGF_OUT
hgf_assert_eq 6 "$(jq_py 'd["accounts"]' <<<"$report")" "every account listed"
hgf_assert_eq 8 "$(jq_py 'len(d["created"])' <<<"$report")" "4 active accounts x 2 regions"
hgf_assert_eq 2 "$(jq_py 'len(d["skipped"])' <<<"$report")" "2 suspended accounts skipped"
hgf_assert_eq "$(acct 4) $(acct 5)" "$(jq_py '" ".join(s["account_id"] for s in d["skipped"])' <<<"$report")" \
  "the last two accounts are the suspended ones"
hgf_assert_contains "$(jq_py 'd["skipped"][0]["reason"]' <<<"$report")" "SUSPENDED" "skip reason"
hgf_assert_eq "arn:aws:iam::$(acct 1):role/hgfleet-reader" \
  "$(python3 -c 'import json,sys; d=json.load(sys.stdin); print([c["role_arn"] for c in d["created"] if c["account_id"]==sys.argv[1]][0])' "$(acct 1)" <<<"$report")" \
  "role ARN built from the account and the partition"
hgf_assert_eq "account-1/eu-west-1" \
  "$(python3 -c 'import json,sys; d=json.load(sys.stdin); print([c["name"] for c in d["created"] if c["account_id"]==sys.argv[1] and c["region"]=="eu-west-1"][0])' "$(acct 1)" <<<"$report")" \
  "connection name is <account name>/<region>"
hgf_expect_exit 0 "$H" discover --org-role-name hgfleet-reader --regions us-east-1,eu-west-1 \
  --external-id org-ext-1
hgf_assert_contains "$HGF_OUT" "0 created, 0 updated, 8 unchanged, 2 skipped" "text summary"
hgf_assert_contains "$HGF_OUT" "account status is SUSPENDED" "text summary names the reason"

hgf_expect_exit 0 "$H" discover --org-role-name hgfleet-reader --regions us-east-1,eu-west-1 \
  --external-id org-ext-1 --json
hgf_assert_eq "0 0 8" "$(jq_py '"%d %d %d" % (len(d["created"]), len(d["updated"]), len(d["unchanged"]))' <<<"$HGF_OUT")" \
  "second run creates nothing"
hgf_expect_exit 0 "$H" connection list --json
hgf_assert_eq 8 "$(jq_py 'len(d)' <<<"$HGF_OUT")" "8 connections"

# The first syncs go through the assumed roles.
hgf_expect_exit 0 "$H" sync --all --wait --json
echo "ok: discover created 8 connections, skipped 2, idempotent, synced"

# Import: a c7n-org accounts.yml. Account 0 is already there (unchanged);
# account 5 is new via a bare role name, in a region from --regions ("all").
cat >"$tmp/accounts.yml" <<YAML
accounts:
  - account_id: "$(acct 0)"
    name: account-0
    role: arn:aws:iam::$(acct 0):role/hgfleet-reader
    external_id: org-ext-1
    regions: [us-east-1]
    tags: [env:prod]
  - account_id: '$(acct 5)'
    name: closing
    role: hgfleet-reader
    external_id: org-ext-1
    regions: all
    vars: {owner: team-a}
YAML
hgf_expect_exit 0 "$H" connection import "$tmp/accounts.yml" --regions us-west-2 --schedule manual --json
hgf_assert_eq "1 0 1" "$(jq_py '"%d %d %d" % (len(d["created"]), len(d["updated"]), len(d["unchanged"]))' <<<"$HGF_OUT")" \
  "import: one new, one already discovered"
hgf_assert_eq "closing/us-west-2 arn:aws:iam::$(acct 5):role/hgfleet-reader" \
  "$(jq_py 'd["created"][0]["name"] + " " + d["created"][0]["role_arn"]' <<<"$HGF_OUT")" "bare role name -> ARN"
hgf_expect_exit 0 "$H" connection import "$tmp/accounts.yml" --regions us-west-2 --json
hgf_assert_eq "0 0 2" "$(jq_py '"%d %d %d" % (len(d["created"]), len(d["updated"]), len(d["unchanged"]))' <<<"$HGF_OUT")" \
  "import again: unchanged"

# A changed external id is an update, not a new connection.
sed -i "0,/org-ext-1/s//org-ext-2/" "$tmp/accounts.yml"
hgf_expect_exit 0 "$H" connection import "$tmp/accounts.yml" --regions us-west-2 --dry-run --json
hgf_assert_eq 1 "$(jq_py 'len(d["updated"])' <<<"$HGF_OUT")" "dry run shows the update"

# A malformed YAML: exit 2 with line and field, nothing imported (all or nothing:
# the first account alone would be valid and new).
cat >"$tmp/bad.yml" <<YAML
accounts:
  - account_id: "$(acct 3)"
    role: hgfleet-reader
    regions: [ap-south-1]
  - account_id: "12345"
    role: hgfleet-reader
    regions: [us-east-1]
YAML
hgf_expect_exit 0 "$H" connection list --json
before=$(jq_py 'len(d)' <<<"$HGF_OUT")
hgf_expect_exit 2 "$H" connection import "$tmp/bad.yml"
hgf_assert_contains "$HGF_ERR" "line 5" "malformed YAML names the line"
hgf_assert_contains "$HGF_ERR" "accounts[1].account_id" "malformed YAML names the field"
cat >"$tmp/bad2.yml" <<'YAML'
accounts:
  - account_id: "100011000003"
    regions: [us-east-1
YAML
hgf_expect_exit 2 "$H" connection import "$tmp/bad2.yml"
hgf_assert_contains "$HGF_ERR" "line" "YAML syntax error names the line"
# (A role in another account is fine, cross-account; one in another partition
# than the region's is not.)
printf 'account_id,region,role_arn,external_id\n%s,us-east-2,hgfleet-reader,org-ext-1\n%s,us-east-2,arn:aws-cn:iam::999999999999:role/x,\n' \
  "$(acct 2)" "$(acct 3)" >"$tmp/bad.csv"
hgf_expect_exit 2 "$H" connection import "$tmp/bad.csv"
hgf_assert_contains "$HGF_ERR" "line 3" "CSV error names the line"
hgf_assert_contains "$HGF_ERR" "role" "CSV error names the field"
hgf_assert_contains "$HGF_ERR" "partition" "CSV error says why"
hgf_expect_exit 0 "$H" connection list --json
hgf_assert_eq "$before" "$(jq_py 'len(d)' <<<"$HGF_OUT")" "nothing of a rejected file was imported"

# A good CSV: host credentials for a row without a role.
printf '%s,ap-south-1\n' "$(acct 1)" >"$tmp/good.csv"
hgf_expect_exit 0 "$H" connection import "$tmp/good.csv" --json
hgf_assert_eq "host" "$(jq_py 'd["created"][0]["auth_mode"]' <<<"$HGF_OUT")" "CSV without role: host credentials"
echo "PASS: discover and import"
