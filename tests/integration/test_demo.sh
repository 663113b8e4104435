#!/usr/bin/env bash
# `hgfleet demo` is the README's main job: it must sync a simulated
# organization on its own throwaway PostgreSQL and leave nothing behind.
set -euo pipefail
# shellcheck source=tests/integration/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

before=$(find /tmp -maxdepth 1 -name 'hgfleet-demo-*' | wc -l)
hgf_expect_exit 0 env -u HGFLEET_DATABASE_URL ECRSIM_BIN="$ECRSIM_BIN" \
  "$HGFLEET_BIN" demo --accounts 3 --regions us-east-1,eu-west-1
echo "$HGF_OUT"
rows=$(grep -cE '^[0-9]{12}\.dkr\.ecr\.[a-z0-9-]+\.amazonaws\.com +ok ' <<<"$HGF_OUT" || true)
hgf_assert_eq 6 "$rows" "one ok row per simulated registry"
hgf_assert_contains "$HGF_OUT" "6 registries" "totals line"
hgf_assert_contains "$HGF_OUT" "SIMULATED" "the data is labelled as simulated"
after=$(find /tmp -maxdepth 1 -name 'hgfleet-demo-*' | wc -l)
hgf_assert_eq "$before" "$after" "the throwaway cluster directory is removed"
if pgrep -f 'hgfleet-demo-' >/dev/null; then hgf_fail "a demo PostgreSQL is still running"; fi
echo "PASS: demo"
