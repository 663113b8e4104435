#!/usr/bin/env bash
# The Helm chart helm/hgfleet: `helm lint` (plain and --strict), `helm
# template` for each scenario of tests/helm/check.mjs (defaults, every secret
# as a value, IRSA, existing secrets, secretKeyRef instead of files, every
# optional resource on), every rendered manifest validated offline against the
# Kubernetes API schemas (kubernetes-models, plus the Prometheus Operator CRD
# models for the ServiceMonitor) with unknown fields rejected, the scenario's
# assertions, values.schema.json rejecting bad values, and the README's values
# table matching values.yaml.
#
# Needs no database. helm comes from scripts/fetch-helm and the npm packages
# of tests/helm/package.json are installed into the build directory; both are
# cached there, so only the first run downloads.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

src=${HGF_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
build=${HGF_BUILD_DIR:-$src/build}
chart=$src/helm/hgfleet
check=$src/tests/helm/check.mjs

helm=$("$src/scripts/fetch-helm" "$build/helm") || hgf_fail "scripts/fetch-helm failed"
work=$(hgf_tmpdir)
# Keep helm away from $HOME.
export HELM_CACHE_HOME=$work/helm/cache HELM_CONFIG_HOME=$work/helm/config HELM_DATA_HOME=$work/helm/data

# npm ci into the build dir, again only when the lock file changed.
install_node_deps() {
  local dir=$build/helm-node
  mkdir -p "$dir"
  exec 8>"$dir/.lock"
  flock 8
  if ! cmp -s "$src/tests/helm/package-lock.json" "$dir/package-lock.json" ||
     [[ ! -d $dir/node_modules/kubernetes-models ]]; then
    cp "$src/tests/helm/package.json" "$src/tests/helm/package-lock.json" "$dir/"
    npm ci --prefix "$dir" --no-audit --no-fund --loglevel=error >"$work/npm.log" 2>&1 ||
      hgf_fail "npm ci in $dir failed: $(tail -n 20 "$work/npm.log")"
  fi
  exec 8>&-
  export HGF_NODE_MODULES=$dir/node_modules
}
install_node_deps
# check.mjs's expectations (resource names) follow from its release name.
release=$(node "$check" release)

ok() { printf 'ok: %s\n' "$*"; }

# --- chart metadata -----------------------------------------------------
chart_yaml=$("$helm" show chart "$chart")
hgf_assert_contains "$chart_yaml" "apiVersion: v2" "Chart.yaml apiVersion"
project_version=$(sed -n 's/^project(hgfleet VERSION \([0-9.]*\).*/\1/p' "$src/CMakeLists.txt")
[[ -n $project_version ]] || hgf_fail "no project version in CMakeLists.txt"
hgf_assert_contains "$chart_yaml" "appVersion: $project_version" "appVersion follows the project version"
ok "Chart.yaml: apiVersion v2, appVersion $project_version"

# --- lint ---------------------------------------------------------------
hgf_expect_exit 0 "$helm" lint "$chart"
hgf_expect_exit 0 "$helm" lint --strict "$chart"
mapfile -t optional_args < <(node "$check" args optional)
hgf_expect_exit 0 "$helm" lint --strict "$chart" "${optional_args[@]}"
ok "helm lint and lint --strict, with defaults and with every option on"

# --- the validator can fail ----------------------------------------------
# A misspelt field and a wrong type must both be caught, or passing
# manifests would prove nothing.
cat >"$work/bad.yaml" <<'EOF'
apiVersion: apps/v1
kind: Deployment
metadata:
  name: bad
spec:
  selector:
    matchLabels: {app: bad}
  template:
    metadata:
      labels: {app: bad}
    spec:
      containers:
        - name: c
          image: i
          securityContext:
            readOnlyRootFileSystem: true
          ports:
            - containerPort: "8080"
EOF
hgf_expect_exit 1 node "$check" validate "$work/bad.yaml"
hgf_assert_contains "$HGF_ERR" "securityContext.readOnlyRootFileSystem: unknown field" "strict field check"
hgf_assert_contains "$HGF_ERR" "containerPort must be integer" "type check"
cat >"$work/bad-sm.yaml" <<'EOF'
apiVersion: monitoring.coreos.com/v1
kind: ServiceMonitor
metadata:
  name: bad
spec:
  selector: {}
  endpoints:
    - port: http
      pathh: /metrics
EOF
hgf_expect_exit 1 node "$check" validate "$work/bad-sm.yaml"
hgf_assert_contains "$HGF_ERR" "endpoints[0].pathh: unknown field" "strict check of the ServiceMonitor CRD"
ok "the validator rejects unknown fields and wrong types"

# --- scenarios -----------------------------------------------------------
mapfile -t scenarios < <(node "$check" scenarios)
[[ ${#scenarios[@]} -ge 6 ]] || hgf_fail "check.mjs lists only ${#scenarios[@]} scenarios"
for sc in "${scenarios[@]}"; do
  mapfile -t args < <(node "$check" args "$sc")
  out=$work/$sc.yaml
  "$helm" template "$release" "$chart" --namespace hgfleet "${args[@]}" >"$out" 2>"$work/$sc.err" ||
    hgf_fail "helm template ($sc) failed: $(cat "$work/$sc.err")"
  hgf_expect_exit 0 node "$check" validate "$out"
  valid=$HGF_OUT
  hgf_expect_exit 0 node "$check" assert "$sc" "$out"
  ok "$sc: $valid; $HGF_OUT"
done

# --- values.schema.json --------------------------------------------------
# expect_rejected WHAT SET-ARG...: helm template must fail on the schema.
expect_rejected() {
  local what=$1
  shift
  hgf_expect_exit 1 "$helm" template "$release" "$chart" "$@"
  hgf_assert_contains "$HGF_ERR" "values don't meet the specifications of the schema" "$what"
  hgf_assert_contains "$HGF_ERR" "$what" "the schema error names the value"
}
expect_rejected replicaCount --set replicaCount=0
expect_rejected replicaCount --set replicaCount=abc
expect_rejected replicaCount --set replicaCount=1.5
expect_rejected scanner --set config.scanner=clamav
expect_rejected scanner --set config.scanner=harbor:ftp://adapter
expect_rejected logFormat --set config.logFormat=xml
expect_rejected logLevel --set config.logLevel=verbose
expect_rejected rescanAfter --set config.rescanAfter=7x
expect_rejected shutdownGraceSeconds --set shutdownGraceSeconds=-1
expect_rejected replicas --set replicas=3
expect_rejected host --set ingress.enabled=true --set ingress.tlsSecretName=t
expect_rejected irsaRoleArn --set aws.irsaRoleArn=hgfleet-role
for bad in replicaCount=0 replicaCount=abc config.scanner=clamav; do
  hgf_expect_exit 1 "$helm" lint --strict "$chart" --set "$bad"
done
for good in none trivy grype harbor:https://adapter.scanners:8080 harbor:http://10.0.0.1; do
  hgf_expect_exit 0 "$helm" template "$release" "$chart" --set "config.scanner=$good"
done
hgf_expect_exit 1 "$helm" template "$release" "$chart" --set autoscaling.enabled=true \
  --set autoscaling.minReplicas=4 --set autoscaling.maxReplicas=2
hgf_assert_contains "$HGF_ERR" "minReplicas must not exceed" "HPA bounds check"
hgf_expect_exit 1 "$helm" template "$release" "$chart" --set aws.irsaRoleArn=arn:aws:iam::111122223333:role/a \
  --set 'serviceAccount.annotations.eks\.amazonaws\.com/role-arn=arn:aws:iam::111122223333:role/b'
hgf_assert_contains "$HGF_ERR" "name different roles" "two IRSA roles are refused"
hgf_expect_exit 1 "$helm" template "$release" "$chart" --kube-version 1.24.0
hgf_expect_exit 0 "$helm" template "$release" "$chart" --kube-version 1.25.0
ok "values.schema.json rejects bad values (replicaCount 0/abc/1.5, scanner clamav, ...) and accepts every scanner form"

# --- documentation -------------------------------------------------------
hgf_expect_exit 0 node "$check" values-doc "$chart/values.yaml" "$chart/README.md"
ok "$HGF_OUT"
docs=("$src"/docs/{iam,eventbridge,operations,troubleshooting}.md "$chart/README.md")
hgf_expect_exit 0 node "$check" doc-blocks "${docs[@]}"
ok "deployment docs: $HGF_OUT"
# troubleshooting.md explains every diagnosis src/aws/diagnose.c can print,
# under its code and with its symptom quoted.
trouble=$(<"$src/docs/troubleshooting.md")
mapfile -t diagnoses < <(sed -n 's/.*set(d, "\([a-z_]*\)", "\(.*\)");.*/\1|\2/p' "$src/src/aws/diagnose.c" |
  sed 's/\\"/"/g')
[[ ${#diagnoses[@]} -ge 11 ]] || hgf_fail "found only ${#diagnoses[@]} diagnoses in src/aws/diagnose.c"
for d in "${diagnoses[@]}"; do
  hgf_assert_contains "$trouble" "### \`${d%%|*}\`: ${d#*|}" "docs/troubleshooting.md section for ${d%%|*}"
done
ok "docs/troubleshooting.md covers all ${#diagnoses[@]} diagnoses of src/aws/diagnose.c"
# NOTES.txt: `helm install --dry-run` would want a cluster, so a copy of the
# chart renders it into a ConfigMap through one extra template.
notes_chart=$work/notes-chart
cp -r "$chart" "$notes_chart"
cat >"$notes_chart/templates/zz-notes.yaml" <<'EOF'
apiVersion: v1
kind: ConfigMap
metadata:
  name: notes
data:
  notes: {{ include "hgfleet/templates/NOTES.txt" . | quote }}
EOF
notes() { "$helm" template "$release" "$notes_chart" --show-only templates/zz-notes.yaml "$@"; }
out=$(notes "${optional_args[@]}") || hgf_fail "NOTES.txt does not render with every option on"
hgf_assert_contains "$out" "https://hgfleet.example.com/api/webhooks/ecr" "NOTES.txt names the webhook URL"
[[ $out != *WARNING* ]] || hgf_fail "NOTES.txt warns although every secret is set: $out"
out=$(notes) || hgf_fail "NOTES.txt does not render with the defaults"
hgf_assert_contains "$out" "WARNING: no database URL" "NOTES.txt warns about a missing database URL"
out=$(notes --set aws.irsaRoleArn=arn:aws:iam::111122223333:role/x) || hgf_fail "NOTES.txt (IRSA)"
hgf_assert_contains "$out" "system:serviceaccount:default:$release-hgfleet" "NOTES.txt names the IRSA subject"
ok "NOTES.txt renders the webhook URL, the IRSA subject and warnings for missing secrets"
printf 'test_helm: all checks passed\n'
