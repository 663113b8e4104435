#!/usr/bin/env bash
# The CLI contract that needs no database: --help everywhere, exit codes for
# usage errors, and validation that happens before any connection attempt.
set -euo pipefail
# shellcheck source=tests/integration/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

H=$HGFLEET_BIN
# A database that cannot exist: anything that reaches it would fail with 1, not 2.
export HGFLEET_DATABASE_URL=postgresql://nobody@127.0.0.1:1/none

for cmd in "" "migrate" "connection" "connection add" "connection list" "connection show" \
  "connection remove" "sync" "images" "images list" "demo" "version"; do
  # shellcheck disable=SC2086
  hgf_expect_exit 0 "$H" $cmd --help
  hgf_assert_contains "$HGF_OUT" "Usage: hgfleet" "hgfleet $cmd --help prints usage"
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

hgf_expect_exit 0 "$H" version --json
python3 -c 'import json,sys; v=json.load(sys.stdin); assert v["version"] and v["schema_version"] >= 2' <<<"$HGF_OUT"
echo "PASS: cli"
