#!/usr/bin/env bash
# The CLI contract that needs no database: --help everywhere, exit codes for
# usage errors, and validation that happens before any connection attempt.
set -euo pipefail
# shellcheck source=tests/integration/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

H=$HGFLEET_BIN
tmp=$(hgf_tmpdir)
# A database that cannot exist: anything that reaches it would fail with 1, not 2.
export HGFLEET_DATABASE_URL=postgresql://nobody@127.0.0.1:1/none

for cmd in "" "migrate" "connection" "connection add" "connection list" "connection show" \
  "connection remove" "connection update" "connection test" "connection import" "sync" \
  "images" "images list" "jobs" "jobs list" "sweep" "discover" "serve" "demo" "version"; do
  # shellcheck disable=SC2086
  hgf_expect_exit 0 "$H" $cmd --help
  hgf_assert_contains "$HGF_OUT" "Usage: hgfleet" "hgfleet $cmd --help prints usage"
done
# Each connection subcommand has its own usage, not the group's.
for sub in add list show remove update test import; do
  hgf_expect_exit 0 "$H" connection "$sub" --help
  hgf_assert_contains "$HGF_OUT" "Usage: hgfleet connection $sub" "connection $sub --help"
done

hgf_expect_exit 2 "$H"
hgf_expect_exit 2 "$H" frobnicate
hgf_assert_contains "$HGF_ERR" "unknown command" "unknown command"
hgf_expect_exit 2 "$H" connection frob
hgf_expect_exit 2 "$H" connection add
hgf_assert_contains "$HGF_ERR" "REGISTRY_URL" "missing URL is named"
hgf_expect_exit 2 "$H" connection add 123456789012.dkr.ecr.us-east-1.amazonaws.com --bogus
hgf_assert_contains "$HGF_ERR" "--bogus" "unknown option is named"
hgf_expect_exit 2 "$H" connection add 123456789012.dkr.ecr.us-east-1.amazonaws.com --name
hgf_assert_contains "$HGF_ERR" "--name" "option without value is named"
hgf_expect_exit 2 "$H" connection add 12345678901.dkr.ecr.us-east-1.amazonaws.com
hgf_assert_contains "$HGF_ERR" "12 digits" "short account"
hgf_expect_exit 2 "$H" connection add http://123456789012.dkr.ecr.us-east-1.amazonaws.com
hgf_expect_exit 2 "$H" connection add 123456789012.dkr.ecr.us-east-1.amazonaws.com/repo
hgf_expect_exit 2 "$H" connection add https://public.ecr.aws
hgf_assert_contains "$HGF_ERR" "different service" "public ECR"
hgf_expect_exit 2 "$H" connection add 123456789012.dkr.ecr.us-east-1.amazonaws.com \
  --access-key-id AKIAIOSFODNN7EXAMPLE
hgf_assert_contains "$HGF_ERR" "--secret-access-key-file" "key id without secret file"
hgf_expect_exit 2 "$H" connection add 123456789012.dkr.ecr.us-east-1.amazonaws.com \
  --access-key-id lowercase-key --secret-access-key-file /dev/null
hgf_assert_contains "$HGF_ERR" "--access-key-id" "malformed key id"
hgf_expect_exit 2 "$H" connection add 123456789012.dkr.ecr.us-east-1.amazonaws.com --schedule 'cron:61 * * * *'
hgf_assert_contains "$HGF_ERR" "minute" "bad cron names the field"
hgf_expect_exit 2 "$H" sync --all 3
hgf_expect_exit 2 "$H" sync not-a-url.example.com.invalid
hgf_expect_exit 2 "$H" images list --registry nope
hgf_assert_contains "$HGF_ERR" "--registry" "bad --registry"
hgf_expect_exit 2 "$H" demo --accounts 0
hgf_assert_contains "$HGF_ERR" "--accounts" "bad --accounts"
hgf_expect_exit 2 "$H" demo --regions mars-north-9x
hgf_expect_exit 2 "$H" version --bogus

# Static keys need the master key; a bad one is named, never echoed.
HGFLEET_MASTER_KEY=not-base64-at-all! hgf_expect_exit 2 "$H" connection add \
  123456789012.dkr.ecr.us-east-1.amazonaws.com --access-key-id AKIAIOSFODNN7EXAMPLE \
  --secret-access-key-file /dev/null
hgf_assert_contains "$HGF_ERR" "HGFLEET_MASTER_KEY" "bad master key is named"
if [[ $HGF_ERR == *not-base64-at-all* ]]; then hgf_fail "the master key value was echoed"; fi

# A connection is addressed by an ID from 1 up or a registry URL: anything
# else is a usage error before the (dead) database, however short it is.
for args in "connection show garbage" "connection show 0" "connection remove x1" \
  "connection test 00" "connection update garbage --name n" "sync garbage" "sync 1 garbage" \
  "sync 0"; do
  # shellcheck disable=SC2086 # each entry is an argument list
  hgf_expect_exit 2 "$H" $args
  hgf_assert_contains "$HGF_ERR" "expected" "'$args' says what was expected"
done
# A role of another partition than the registry's cannot be assumed.
hgf_expect_exit 2 "$H" connection add 123456789012.dkr.ecr.eu-west-1.amazonaws.com \
  --role-arn arn:aws-cn:iam::123456789012:role/reader
hgf_assert_contains "$HGF_ERR" "--role-arn: partition aws-cn does not match the registry's partition aws" \
  "a cross-partition role is refused"
hgf_expect_exit 2 "$H" connection update 123456789012.dkr.ecr.eu-west-1.amazonaws.com \
  --role-arn arn:aws:iam::123456789012:role/reader --via-role-arn arn:aws-us-gov:iam::123456789012:role/hub
hgf_assert_contains "$HGF_ERR" "--via-role-arn: partition aws-us-gov" "a cross-partition first hop is refused"
# Process settings are input too, checked before the database.
for setting in HGFLEET_SCANNER=bogus AWS_MAX_ATTEMPTS=abc AWS_RETRY_MODE=bogus; do
  env "$setting" "$H" jobs list >/dev/null 2>"$tmp/err" && hgf_fail "$setting was accepted"
  rc=$?
  hgf_assert_eq 2 "$rc" "$setting exits 2 before the database"
  hgf_assert_contains "$(cat "$tmp/err")" "${setting%%=*}" "$setting is named"
done
for setting in HGFLEET_LOG_LEVEL=verbose HGFLEET_LOG_FORMAT=xml "HGFLEET_WEBHOOK_API_KEY_HEADER=Bad Header"; do
  env "$setting" "$H" jobs list >/dev/null 2>"$tmp/err" && hgf_fail "$setting was accepted"
  rc=$?
  hgf_assert_eq 2 "$rc" "$setting exits 2"
  hgf_assert_contains "$(cat "$tmp/err")" "${setting%%=*}" "$setting is named"
done
HGFLEET_LOG_LEVEL=verbose hgf_expect_exit 0 "$H" jobs list --help
for regions in "us-east-1,,eu-west-1" "us-east-1," ",us-east-1"; do
  hgf_expect_exit 2 "$H" discover --org-role-name reader --regions "$regions"
  hgf_assert_contains "$HGF_ERR" "--regions: an empty region" "discover --regions $regions"
done
hgf_expect_exit 2 "$H" sweep --wait --json --format csv
hgf_assert_contains "$HGF_ERR" "conflicts with --json" "--format csv and --json on stdout conflict"
HGFLEET_SCANNER=bogus HGFLEET_LISTEN=127.0.0.1:0 hgf_expect_exit 2 "$H" serve
if [[ $HGF_OUT == *serving* ]]; then hgf_fail "serve listened before refusing HGFLEET_SCANNER"; fi

hgf_expect_exit 0 "$H" version --json
python3 -c 'import json,sys; v=json.load(sys.stdin); assert v["version"] and v["schema_version"] >= 2' <<<"$HGF_OUT"
echo "PASS: cli"
