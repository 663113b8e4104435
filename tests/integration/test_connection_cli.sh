#!/usr/bin/env bash
# The connection commands against a real database, where the contract says
# more than "exit 2 before the database" (test_cli.sh):
#  - a registry is one (partition, account, region): its -fips URL finds the
#    connection added under the plain one, in show, sync and images list;
#  - `update` changes only the options given, one role option at a time too;
#  - a connection removed with its history kept can be purged later by ID;
#  - `sync --json` prints JSON with or without --wait.
set -euo pipefail
# shellcheck source=tests/integration/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

H=$HGFLEET_BIN
HGFLEET_DATABASE_URL=$(hgf_new_db connection_cli)
export HGFLEET_DATABASE_URL AWS_EC2_METADATA_DISABLED=true
unset HGFLEET_SCANNER AWS_MAX_ATTEMPTS AWS_RETRY_MODE || true
q() { hgf_psql "$HGFLEET_DATABASE_URL" -c "$1"; }
hgf_expect_exit 0 "$H" migrate

PLAIN=111122223333.dkr.ecr.us-east-1.amazonaws.com
FIPS=111122223333.dkr.ecr-fips.us-east-1.amazonaws.com
ROLE=arn:aws:iam::111122223333:role/reader
hgf_expect_exit 0 "$H" connection add "$PLAIN" --schedule manual --role-arn "$ROLE" \
  --external-id ext-1 --session-name s-one --json
id=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])' <<<"$HGF_OUT")

# --- one registry, either URL -------------------------------------------------
hgf_expect_exit 2 "$H" connection add "$FIPS"
hgf_assert_contains "$HGF_ERR" "connection $id" "the -fips URL is the same registry"
hgf_expect_exit 0 "$H" connection show "$FIPS" --json
hgf_assert_eq "$id" "$(python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])' <<<"$HGF_OUT")" \
  "show by the -fips URL finds the connection"
repo_id=$(q "insert into repositories (connection_id, name) values ($id, 'app') returning id")
q "insert into images (repository_id, digest) values ($repo_id, 'sha256:$(printf 'a%.0s' {1..64})')" >/dev/null
hgf_expect_exit 0 "$H" images list --registry "$FIPS" --json
hgf_assert_eq 1 "$(python3 -c 'import json,sys; print(len(json.load(sys.stdin)))' <<<"$HGF_OUT")" \
  "images list --registry with the -fips URL lists the registry's image"
hgf_expect_exit 0 "$H" images list --registry 999999999999.dkr.ecr.us-east-1.amazonaws.com --json
hgf_assert_eq "[]" "$(tr -d ' \n' <<<"$HGF_OUT")" "another registry lists nothing"

# --- update: only the options given -------------------------------------------
role_of() {
  q "select coalesce(role_arn,'-') || ' ' || coalesce(external_id,'-') || ' ' ||
     coalesce(session_name,'-') || ' ' || coalesce(duration_seconds::text,'-') from connections
     where id = $id"
}
hgf_expect_exit 0 "$H" connection update "$id" --role-arn "${ROLE}2"
hgf_assert_eq "${ROLE}2 ext-1 s-one -" "$(role_of)" "--role-arn alone keeps the external id and session name"
hgf_expect_exit 0 "$H" connection update "$FIPS" --external-id ext-2
hgf_assert_eq "${ROLE}2 ext-2 s-one -" "$(role_of)" "--external-id alone changes only it"
hgf_expect_exit 0 "$H" connection update "$id" --duration 7200
hgf_assert_eq "${ROLE}2 ext-2 s-one 7200" "$(role_of)" "--duration alone changes only it"
# The merged set is checked: a chain is capped at an hour, as STS requires.
hgf_expect_exit 2 "$H" connection update "$id" --via-role-arn arn:aws:iam::444455556666:role/hub
hgf_assert_contains "$HGF_ERR" "--duration" "a first hop over a 2-hour duration is refused (chains are capped at 1 hour)"
hgf_assert_eq "${ROLE}2 ext-2 s-one 7200" "$(role_of)" "a refused update changes nothing"
hgf_expect_exit 2 "$H" connection update "$id" --role-arn arn:aws-cn:iam::111122223333:role/r
hgf_assert_contains "$HGF_ERR" "partition aws-cn" "a role of another partition is refused by ID too"
hgf_expect_exit 0 "$H" connection update "$id" --no-role
hgf_assert_eq "- - - -" "$(role_of)" "--no-role drops every role option"
hgf_expect_exit 2 "$H" connection update "$id" --external-id ext-3
hgf_assert_contains "$HGF_ERR" "connection $id has no role" "a role option needs a role"
hgf_expect_exit 2 "$H" connection update "$id" --no-role --external-id ext-3
hgf_assert_contains "$HGF_ERR" "--no-role" "--no-role with a role option is refused"

# --- sync --json without --wait ---------------------------------------------
hgf_expect_exit 0 "$H" sync "$id" --json
python3 -c '
import json, sys
o = json.loads(sys.argv[1])
assert o["status"] == "queued" and o["job_id"] > 0 and o["connection_id"] == int(sys.argv[2]), o
assert o["registry"] == sys.argv[3], o' "$HGF_OUT" "$id" "$PLAIN"

# --- remove, then purge the kept history --------------------------------------
hgf_expect_exit 0 "$H" connection remove "$id"
hgf_assert_eq 1 "$(q "select count(*) from images where repository_id = $repo_id")" \
  "remove keeps the history"
hgf_expect_exit 2 "$H" connection show "$id"
hgf_expect_exit 2 "$H" connection remove "$id"
hgf_assert_contains "$HGF_ERR" "no connection with id $id" "a second soft remove finds nothing live"
hgf_expect_exit 0 "$H" connection remove "$id" --purge
hgf_assert_eq "0 0" "$(q "select (select count(*) from connections where id = $id) || ' ' ||
    (select count(*) from images where repository_id = $repo_id)")" \
  "the removed connection and its history are purged by ID"
echo "PASS: connection cli"
