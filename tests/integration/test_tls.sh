#!/usr/bin/env bash
# TLS toward AWS: ecrsim serves HTTPS (libmicrohttpd over GnuTLS, keep-alive
# included) with a server certificate for 127.0.0.1/localhost from a test CA
# made here with the openssl CLI. With AWS_CA_BUNDLE naming that CA, STS,
# ECR, Organizations and the registry v2 calls all work over https. Without
# it, with another CA, or with a certificate for another host name, every
# call fails and the exit status and the diagnosis name the certificate.
# Verification cannot be switched off: no variable or flag does it.
set -euo pipefail
# shellcheck source=tests/integration/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

tmp=$(hgf_tmpdir)
export HGFLEET_DATABASE_URL
HGFLEET_DATABASE_URL=$(hgf_new_db tls)
for v in AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN AWS_ROLE_ARN AWS_ENDPOINT_URL \
  AWS_WEB_IDENTITY_TOKEN_FILE AWS_CONTAINER_CREDENTIALS_FULL_URI AWS_CA_BUNDLE CURL_CA_BUNDLE \
  SSL_CERT_FILE SSL_CERT_DIR; do
  unset "$v"
done
export AWS_EC2_METADATA_DISABLED=true HGFLEET_LOG_FORMAT=json
H=$HGFLEET_BIN

# --- a test CA, a server certificate for 127.0.0.1 and localhost, an
# unrelated CA, and a certificate from the right CA for another host name ---
# P-256 keys: generating RSA ones took seconds on a busy machine.
cd "$tmp"
key=(-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2)
mkca() { # mkca NAME
  openssl req -x509 "${key[@]}" -keyout "$1.key" -out "$1.pem" \
    -subj "/CN=hgfleet $1" -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
}
mkcert() { # mkcert NAME SAN: signed by ca
  openssl req -x509 "${key[@]}" -keyout "$1.key" -out "$1.pem" -subj "/CN=$1" \
    -CA ca.pem -CAkey ca.key -addext "subjectAltName=$2" -addext "basicConstraints=CA:FALSE" \
    -addext "extendedKeyUsage=serverAuth" 2>/dev/null
}
mkca ca
mkca other-ca
mkcert server "IP:127.0.0.1,DNS:localhost"
mkcert wronghost "DNS:wrong.example"
openssl verify -CAfile ca.pem server.pem >/dev/null
openssl verify -CAfile ca.pem wronghost.pem >/dev/null
cd - >/dev/null

seed=13
acct() { printf '%012d' $((100000000000 + seed * 1000000 + $1)); }
A=$(acct 0) B=$(acct 1)
host_secret=$(openssl rand -hex 20)
read_all='["ecr:GetAuthorizationToken","ecr:DescribeRepositories","ecr:DescribeImages","ecr:ListImages","ecr:BatchGetImage","ecr:GetDownloadUrlForLayer"]'
cat >"$tmp/scenario.json" <<JSON
{"principals": [{"arn": "arn:aws:iam::$A:user/ci", "access_key_id": "AKIATLSTEST000000001",
   "secret_access_key": "$host_secret",
   "policy": [{"actions": ["sts:AssumeRole", "organizations:ListAccounts"], "resources": ["*"]},
              {"actions": $read_all, "resources": ["*"]}]}],
 "roles": [{"arn": "arn:aws:iam::$B:role/reader", "trust": [{"principal": "arn:aws:iam::$A:user/ci"}],
            "policy": [{"actions": $read_all, "resources": ["*"]}]}]}
JSON
# Not called in $(...): ecrsim must stay this shell's child, else at exit
# it waits, a zombie, for init to reap it.
start_sim() { # start_sim CERT_NAME OUT VAR: sets VAR to the https base URL
  hgf_bg "$ECRSIM_BIN" --seed $seed --accounts 2 --regions us-east-1 --repos 2 --images 3 \
    --scenario "$tmp/scenario.json" --tls-cert "$tmp/$1.pem" --tls-key "$tmp/$1.key" \
    >"$tmp/$2.out" 2>"$tmp/$2.log"
  local line
  line=$(hgf_wait_for_line "$tmp/$2.out" 'listening on https://' 10)
  printf -v "$3" '%s' "${line##* }"
}
sim='' sim2=''
start_sim server ecrsim sim
[[ $sim == https://127.0.0.1:* ]] || hgf_fail "ecrsim does not serve https: $sim"
export AWS_ACCESS_KEY_ID=AKIATLSTEST000000001 AWS_SECRET_ACCESS_KEY=$host_secret
export AWS_ENDPOINT_URL_ECR=$sim AWS_ENDPOINT_URL_STS=$sim AWS_ENDPOINT_URL_ORGANIZATIONS=$sim

# ecrsim's own side: plain http is refused, the CA verifies it, and one TLS
# connection carries several requests (keep-alive).
if curl -fsS -o /dev/null "http://${sim#https://}/_sim/stats" 2>/dev/null; then
  hgf_fail "ecrsim answered plain http on its TLS port"
fi
conns=$(curl -sS --cacert "$tmp/ca.pem" -o /dev/null -o /dev/null -o /dev/null -w '%{num_connects} ' \
  "$sim/_sim/stats" "$sim/_sim/stats" "$sim/_sim/stats")
hgf_assert_eq "1 0 0 " "$conns" "three requests over one kept-alive TLS connection"
curl -fsS --cacert "$tmp/ca.pem" "$sim/_sim/truth" >"$tmp/truth.json"
echo "ok: ecrsim serves https with keep-alive"

regA=$A.dkr.ecr.us-east-1.amazonaws.com regB=$B.dkr.ecr.us-east-1.amazonaws.com
hgf_expect_exit 0 "$H" migrate
hgf_expect_exit 0 "$H" connection add "$regA" --schedule manual
hgf_expect_exit 0 "$H" connection add "$regB" --schedule manual --role-arn "arn:aws:iam::$B:role/reader"

# --- with AWS_CA_BUNDLE: every AWS service works over https ---
export AWS_CA_BUNDLE=$tmp/ca.pem
hgf_expect_exit 0 "$H" connection test "$regB" --json
jq -e '[.steps[].name] as $names | .healthy and all("AssumeRole", "GetCallerIdentity",
  "GetAuthorizationToken", "DescribeRepositories", "ManifestHead"; IN($names[]))' \
  <<<"$HGF_OUT" >/dev/null || hgf_fail "connection test over https: $HGF_OUT"
hgf_expect_exit 0 "$H" sync --all --wait
hgf_expect_exit 0 "$H" images list --json
got=$(jq '[.[] | select(.state == "present")] | length' <<<"$HGF_OUT")
want=$(jq '[.registries[].repositories[].images | length] | add' "$tmp/truth.json")
hgf_assert_eq "$want" "$got" "every image synced over https"
# Organizations, in a database of its own: discover turns connections into
# assume-role ones.
disc_db=$(hgf_new_db tls_discover)
hgf_expect_exit 0 env HGFLEET_DATABASE_URL="$disc_db" "$H" migrate
hgf_expect_exit 0 env HGFLEET_DATABASE_URL="$disc_db" "$H" discover --org-role-name reader \
  --regions us-east-1 --schedule manual
for op in AssumeRole GetCallerIdentity DescribeRepositories DescribeImages GetAuthorizationToken ListAccounts; do
  grep -q " $op -> 200" "$tmp/ecrsim.log" || hgf_fail "no successful $op in ecrsim's log"
done
grep -q 'GET /_registry/.*-> 200\|HEAD /_registry/.*-> 200' "$tmp/ecrsim.log" ||
  hgf_fail "no registry v2 call over https"
echo "ok: STS, ECR, Organizations and registry v2 over https with AWS_CA_BUNDLE"

# --- a refused certificate is a configuration error: one attempt, no backoff ---
# Through a TCP relay that counts connections (a TLS handshake that fails
# never reaches ecrsim's /_sim/stats): each attempt is a new connection, as
# nothing is kept alive from a failed handshake. AssumeRole (STS, retried up
# to 5 times on transport errors) and DescribeRepositories (ECR, up to
# AWS_MAX_ATTEMPTS) must each give up after the first.
cat >"$tmp/relay.py" <<'PY'
import socket, sys, threading
upstream, log = int(sys.argv[1]), sys.argv[2]
srv = socket.socket()
srv.bind(("127.0.0.1", 0))
srv.listen(64)
print(srv.getsockname()[1], flush=True)
def pump(a, b):
    try:
        while data := a.recv(65536):
            b.sendall(data)
    except OSError:
        pass
    for x in (a, b):
        try:
            x.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
while True:
    c, _ = srv.accept()
    with open(log, "a") as f:
        f.write("connection\n")
    u = socket.create_connection(("127.0.0.1", upstream))
    threading.Thread(target=pump, args=(c, u), daemon=True).start()
    threading.Thread(target=pump, args=(u, c), daemon=True).start()
PY
: >"$tmp/relay.conns"
hgf_bg python3 "$tmp/relay.py" "${sim##*:}" "$tmp/relay.conns" >"$tmp/relay.port"
relay=https://127.0.0.1:$(hgf_wait_for_line "$tmp/relay.port" '^[0-9]+$' 10)
one_attempt() { # one_attempt LABEL REGISTRY REGEX: its sync fails once, at once, saying REGEX
  local t0 ms conns
  : >"$tmp/relay.conns"
  t0=$(date +%s%N)
  hgf_expect_exit 1 env AWS_CA_BUNDLE="$tmp/other-ca.pem" AWS_ENDPOINT_URL_STS="$relay" \
    AWS_ENDPOINT_URL_ECR="$relay" AWS_MAX_ATTEMPTS=5 "$H" sync "$2" --wait
  ms=$(( ($(date +%s%N) - t0) / 1000000 ))
  conns=$(wc -l <"$tmp/relay.conns")
  echo "$1: failed after $conns connection(s) in $ms ms: $(grep -m 1 -o '[^"]*certificate[^"]*' <<<"$HGF_ERR$HGF_OUT" || true)"
  hgf_assert_eq 1 "$conns" "$1: connections (attempts) before the sync failed"
  (( ms < 3000 )) || hgf_fail "$1: a refused certificate took $ms ms to fail"
  [[ $HGF_ERR$HGF_OUT =~ $3 ]] || hgf_fail "$1: the error does not say '$3': $HGF_ERR"
}
one_attempt "AssumeRole with an untrusted CA" "$regB" "\(https://127\.0\.0\.1:[0-9]+/?\).*AWS_CA_BUNDLE"
one_attempt "DescribeRepositories with an untrusted CA" "$regA" \
  "DescribeRepositories: .*certificate.*\(https://127\.0\.0\.1:[0-9]+/?\).*AWS_CA_BUNDLE"
# Registry v2 says the same (a scan, `registry manifest`).
hgf_expect_exit 1 env AWS_CA_BUNDLE="$tmp/other-ca.pem" "$H" registry manifest "$sim/team/app:latest"
[[ $HGF_ERR =~ certificate.*AWS_CA_BUNDLE ]] ||
  hgf_fail "registry v2: a refused certificate does not name AWS_CA_BUNDLE: $HGF_ERR"
echo "ok: a refused certificate fails after one attempt, naming AWS_CA_BUNDLE and the endpoint"

# --- failures: each names the certificate; exit 1 ---
# The failing syncs run side by side, each in a copy of a database that holds
# regB alone (in one database they would be one deduplicated job).
sync_db=$(hgf_new_db tls_sync)
hgf_expect_exit 0 env HGFLEET_DATABASE_URL="$sync_db" "$H" migrate
hgf_expect_exit 0 env HGFLEET_DATABASE_URL="$sync_db" "$H" connection add "$regB" --schedule manual \
  --role-arn "arn:aws:iam::$B:role/reader"
copies=()
for i in 1 2 3 4 5; do copies+=(-c "CREATE DATABASE \"${sync_db##*/}_$i\" TEMPLATE \"${sync_db##*/}\""); done
hgf_psql "$(hgf_pg_url)" "${copies[@]}"
syncs=0 sync_pids=()
sync_bg() { # sync_bg [env...]: a failing sync of regB in the next copy, in the background
  syncs=$(( syncs + 1 ))
  hgf_bg env "$@" HGFLEET_DATABASE_URL="${sync_db}_$syncs" "$H" sync "$regB" --wait \
    >"$tmp/sync$syncs.out" 2>"$tmp/sync$syncs.err"
  sync_pids+=("$HGF_BG_PID")
}
sync_fails() { # sync_fails N LABEL REGEX: background sync N failed with exit 1 naming REGEX
  local rc=0 out err
  wait "${sync_pids[$1 - 1]}" || rc=$?
  out=$(<"$tmp/sync$1.out") err=$(<"$tmp/sync$1.err")
  hgf_assert_eq 1 "$rc" "$2: sync's exit status ($err)"
  [[ $err$out =~ $3 ]] || hgf_fail "$2: sync's error does not name the certificate: $err"
}
cert_fails() { # cert_fails LABEL REGEX [env...]: connection test now, sync in the background
  local label=$1 regex=$2
  shift 2
  hgf_expect_exit 1 env "$@" "$H" connection test "$regB" --json
  jq -e --arg re "$regex" '.diagnosis as $d | (.healthy | not) and $d.code == "tls_certificate"
    and ($d.detail | test($re)) and ($d.fix | contains("AWS_CA_BUNDLE"))' <<<"$HGF_OUT" >/dev/null ||
    hgf_fail "$label: the diagnosis does not name the certificate: $HGF_OUT"
  sync_bg "$@"
  labels+=("$label") regexes+=("$regex")
}
labels=() regexes=()
cert_fails "no AWS_CA_BUNDLE: the system CAs do not trust the test CA" 'certificate' -u AWS_CA_BUNDLE
cert_fails "AWS_CA_BUNDLE with another CA" 'certificate' "AWS_CA_BUNDLE=$tmp/other-ca.pem"
# Knobs that turn verification off elsewhere do nothing here.
cert_fails "no switch turns verification off" 'certificate' -u AWS_CA_BUNDLE \
  AWS_VERIFY_SSL=false AWS_CLI_VERIFY_SSL=false HGFLEET_INSECURE=1 HGFLEET_TLS_VERIFY=0 \
  CURL_INSECURE=1 PYTHONHTTPSVERIFY=0 NODE_TLS_REJECT_UNAUTHORIZED=0 "CURL_CA_BUNDLE=$tmp/other-ca.pem"

hgf_expect_exit 2 "$H" sync --all --no-verify-ssl
hgf_expect_exit 2 "$H" connection test "$regB" --insecure

# The right CA, but a certificate for another host name.
start_sim wronghost ecrsim2 sim2
cert_fails "a certificate for another host name" 'certificate|subject name' \
  "AWS_ENDPOINT_URL_ECR=$sim2" "AWS_ENDPOINT_URL_STS=$sim2"

# A CA bundle that cannot be read is named.
sync_bg AWS_CA_BUNDLE=/nonexistent/ca.pem
for (( i = 1; i <= ${#labels[@]}; i++ )); do
  sync_fails "$i" "${labels[i - 1]}" "${regexes[i - 1]}"
  echo "ok: ${labels[i - 1]}"
done
sync_fails 5 "an unreadable AWS_CA_BUNDLE" 'certificate'
hgf_assert_contains "$(<"$tmp/sync5.out")$(<"$tmp/sync5.err")" "certificate file: /nonexistent/ca.pem" \
  "an unreadable AWS_CA_BUNDLE is named"

# In the code: every transfer pins verification on, and nothing sets it off.
grep -q 'CURLOPT_SSL_VERIFYPEER, 1L' "$HGF_SOURCE_DIR/src/net/http.c" || hgf_fail "VERIFYPEER is not pinned on"
grep -q 'CURLOPT_SSL_VERIFYHOST, 2L' "$HGF_SOURCE_DIR/src/net/http.c" || hgf_fail "VERIFYHOST is not pinned on"
if grep -rnE 'SSL_VERIFY(PEER|HOST|STATUS)[^;]*0L|CURLOPT_SSL_OPTIONS|CURLSSLOPT_NO_REVOKE|PROXY_SSL_VERIFY' \
  "$HGF_SOURCE_DIR/src"; then
  hgf_fail "some code turns certificate verification off"
fi
echo "PASS: TLS toward AWS (AWS_CA_BUNDLE honoured, verification always on)"
