#!/usr/bin/env bash
# The scanner stand-ins in tests/fixtures/scanners, on their own. The unit
# test test_scanner drives hgfleet's trivy and grype backends against them
# and trusts two things checked here: that the stand-ins really refuse a run
# that breaks the contract (credentials only in the environment, none of
# hgfleet's secrets, no inherited descriptors), and that the recorded
# reports hold the severity counts it asserts, counted here with jq instead
# of hgfleet's parser.
set -euo pipefail
# shellcheck source=tests/integration/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

FX=${HGF_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}/tests/fixtures/scanners
HOST=123456789012.dkr.ecr.us-east-1.amazonaws.com
DIGEST=sha256:c6cad725fced12b1e7594736b205ac4ca71d0f3a665e2e471f6e23b9f1debc86
PW='eyJwYXlsb2FkIjoidGVzdCJ9.c2ln'
HOMEDIR=$(hgf_tmpdir)

# Closes every descriptor above 2 of the current (sub)shell but bash's own 255.
close_fds() {
  local fd n
  for fd in "/proc/$BASHPID/fd/"*; do
    n=${fd##*/}
    if [[ $n =~ ^[0-9]+$ ]] && (( n > 2 && n != 255 )); then
      eval "exec $n>&-" 2>/dev/null || true
    fi
  done
}

# run_clean VAR=VALUE... -- CMD ARGS...: CMD with exactly that environment and
# no descriptor beyond 0-2 (the stand-ins allow 255, bash's script descriptor).
run_clean() {
  local envs=()
  while [[ $1 != -- ]]; do
    envs+=("$1")
    shift
  done
  shift
  (
    close_fds
    exec env -i "${envs[@]}" "$@"
  )
}

trivy_env=(PATH=/usr/bin:/bin "HOME=$HOMEDIR" TRIVY_USERNAME=AWS "TRIVY_PASSWORD=$PW")
trivy_args=(image --format json --quiet --timeout 30s "$HOST/team/app@$DIGEST")
grype_env=(PATH=/usr/bin:/bin "HOME=$HOMEDIR" "GRYPE_REGISTRY_AUTH_AUTHORITY=$HOST"
  GRYPE_REGISTRY_AUTH_USERNAME=AWS "GRYPE_REGISTRY_AUTH_PASSWORD=$PW")
grype_args=("registry:$HOST/team/app@$DIGEST" -o json)

# --- the contract holds: the recorded report comes out --------------------------
hgf_expect_exit 0 run_clean "${trivy_env[@]}" -- "$FX/trivy" "${trivy_args[@]}"
hgf_assert_eq 2 "$(jq .SchemaVersion <<<"$HGF_OUT")" "trivy stand-in prints a SchemaVersion 2 report"
hgf_expect_exit 0 run_clean "${grype_env[@]}" -- "$FX/grype" "${grype_args[@]}"
hgf_assert_eq grype "$(jq -r .descriptor.name <<<"$HGF_OUT")" "grype stand-in prints a grype report"

# --- each breach is refused ---------------------------------------------------
hgf_expect_exit 90 run_clean PATH=/usr/bin:/bin "HOME=$HOMEDIR" -- "$FX/trivy" "${trivy_args[@]}"
hgf_assert_contains "$HGF_ERR" "no registry credentials in the environment" "trivy without credentials"
hgf_expect_exit 90 run_clean "${grype_env[@]:0:2}" -- "$FX/grype" "${grype_args[@]}"
hgf_assert_contains "$HGF_ERR" "no registry credentials in the environment" "grype without credentials"

# A password that also appears on the command line ("json" is an argument).
hgf_expect_exit 90 run_clean PATH=/usr/bin:/bin "HOME=$HOMEDIR" TRIVY_USERNAME=AWS TRIVY_PASSWORD=json \
  -- "$FX/trivy" "${trivy_args[@]}"
hgf_assert_contains "$HGF_ERR" "the registry password is in argv" "trivy password in argv"
hgf_expect_exit 90 run_clean "${grype_env[@]:0:4}" GRYPE_REGISTRY_AUTH_PASSWORD=registry \
  -- "$FX/grype" "${grype_args[@]}"
hgf_assert_contains "$HGF_ERR" "the registry password is in argv" "grype password in argv"

hgf_expect_exit 90 run_clean "${trivy_env[@]}" AWS_SECRET_ACCESS_KEY=x -- "$FX/trivy" "${trivy_args[@]}"
hgf_assert_contains "$HGF_ERR" "hgfleet's own environment leaked: AWS_SECRET_ACCESS_KEY" "AWS secret leak"
hgf_expect_exit 90 run_clean "${grype_env[@]}" HGFLEET_MASTER_KEY=x -- "$FX/grype" "${grype_args[@]}"
hgf_assert_contains "$HGF_ERR" "hgfleet's own environment leaked: HGFLEET_MASTER_KEY" "HGFLEET secret leak"
hgf_expect_exit 90 run_clean "${trivy_env[@]}" TRIVY_REGISTRY_TOKEN=x -- "$FX/trivy" "${trivy_args[@]}"
hgf_assert_contains "$HGF_ERR" "TRIVY_REGISTRY_TOKEN passed through" "trivy token"
hgf_expect_exit 90 run_clean "${grype_env[@]:0:2}" GRYPE_REGISTRY_AUTH_AUTHORITY=elsewhere.example \
  "${grype_env[@]:3}" -- "$FX/grype" "${grype_args[@]}"
hgf_assert_contains "$HGF_ERR" "GRYPE_REGISTRY_AUTH_AUTHORITY is 'elsewhere.example'" "grype authority"

# An inherited descriptor (a socket or pipe of hgfleet's, say).
leak_fd() {
  (
    close_fds
    exec 7</dev/null
    exec env -i "$@"
  )
}
hgf_expect_exit 90 leak_fd "${trivy_env[@]}" "$FX/trivy" "${trivy_args[@]}"
hgf_assert_contains "$HGF_ERR" "inherited descriptor 7" "trivy with an inherited descriptor"

hgf_expect_exit 90 run_clean "${trivy_env[@]}" -- "$FX/trivy" image --format table "$HOST/app@$DIGEST"
hgf_assert_contains "$HGF_ERR" "unexpected arguments" "trivy with other arguments"
hgf_expect_exit 90 run_clean "${grype_env[@]}" -- "$FX/grype" "$HOST/app@$DIGEST" -o json
hgf_assert_contains "$HGF_ERR" "unexpected arguments" "grype without the registry: scheme"

# --- the recorded reports hold what test_scanner asserts -------------------------
counts() {
  jq -r "[$2] | group_by(.) | map(\"\(.[0])=\(length)\") | join(\" \")" "$FX/$1"
}
hgf_assert_eq "CRITICAL=3 HIGH=5 LOW=5 MEDIUM=5 UNKNOWN=1" \
  "$(counts trivy-report.json '.Results[].Vulnerabilities[]?.Severity')" "trivy report severities"
hgf_assert_eq "" "$(counts trivy-clean.json '.Results[].Vulnerabilities[]?.Severity')" "clean trivy report"
hgf_assert_eq "Critical=2 High=3 Low=2 Medium=3 Negligible=3 Unknown=1" \
  "$(counts grype-report.json '.matches[].vulnerability.severity')" "grype report severities"
hgf_assert_eq "" "$(counts grype-clean.json '.matches[].vulnerability.severity')" "clean grype report"
hgf_assert_eq "Critical=1 High=2 Low=1 Medium=2 Negligible=1 None=1 Unknown=1" \
  "$(counts harbor-report.json '.vulnerabilities[].severity')" "Harbor report severities"

printf 'ok: scanner stand-ins enforce their contract; recorded reports counted\n'
