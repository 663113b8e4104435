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
cd "$tmp"
mkca() { # mkca NAME
  openssl req -x509 -newkey rsa:2048 -nodes -keyout "$1.key" -out "$1.pem" -days 2 \
    -subj "/CN=hgfleet $1" -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
}
mkcert() { # mkcert NAME SAN
  openssl req -newkey rsa:2048 -nodes -keyout "$1.key" -out "$1.csr" -subj "/CN=$1" 2>/dev/null
  printf 'subjectAltName=%s\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n' "$2" >"$1.ext"
  openssl x509 -req -in "$1.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -out "$1.pem" -days 2 \
    -extfile "$1.ext" 2>/dev/null
}
mkca ca
mkca other-ca
mkcert server "IP:127.0.0.1,DNS:localhost"
mkcert wronghost "DNS:wrong.example"
openssl verify -CAfile ca.pem server.pem >/dev/null
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
start_sim() { # start_sim CERT_NAME OUT: prints the https base URL
  hgf_bg "$ECRSIM_BIN" --seed $seed --accounts 2 --regions us-east-1 --repos 2 --images 3 \
    --scenario "$tmp/scenario.json" --tls-cert "$tmp/$1.pem" --tls-key "$tmp/$1.key" \
    >"$tmp/$2.out" 2>"$tmp/$2.log"
  local line
  line=$(hgf_wait_for_line "$tmp/$2.out" 'listening on https://' 10)
  printf '%s\n' "${line##* }"
}
sim=$(start_sim server ecrsim)
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
python3 -c '
import json, sys
r = json.load(sys.stdin)
assert r["healthy"], r
names = [s["name"] for s in r["steps"]]
for want in ("AssumeRole", "GetCallerIdentity", "GetAuthorizationToken", "DescribeRepositories", "ManifestHead"):
    assert want in names, (want, names)' <<<"$HGF_OUT"
hgf_expect_exit 0 "$H" sync --all --wait
hgf_expect_exit 0 "$H" images list --json
got=$(python3 -c 'import json,sys; print(len([i for i in json.load(sys.stdin) if i["state"] == "present"]))' <<<"$HGF_OUT")
want=$(python3 -c 'import json,sys; t=json.load(open(sys.argv[1])); print(sum(len(r["images"]) for g in t["registries"] for r in g["repositories"]))' "$tmp/truth.json")
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

# --- failures: each names the certificate; exit 1 ---
cert_fails() { # cert_fails LABEL REGEX [env...]
  local label=$1 regex=$2
  shift 2
  hgf_expect_exit 1 env "$@" "$H" connection test "$regB" --json
  python3 -c '
import json, re, sys
r = json.load(sys.stdin)
d = r["diagnosis"]
assert not r["healthy"] and d["code"] == "tls_certificate", d
assert re.search(sys.argv[1], d["detail"]), d["detail"]
assert "AWS_CA_BUNDLE" in d["fix"], d["fix"]' "$regex" <<<"$HGF_OUT" ||
    hgf_fail "$label: the diagnosis does not name the certificate: $HGF_OUT"
  hgf_expect_exit 1 env "$@" "$H" sync "$regB" --wait
  [[ $HGF_ERR$HGF_OUT =~ $regex ]] || hgf_fail "$label: sync's error does not name the certificate: $HGF_ERR"
  echo "ok: $label"
}
cert_fails "no AWS_CA_BUNDLE: the system CAs do not trust the test CA" 'certificate' -u AWS_CA_BUNDLE
cert_fails "AWS_CA_BUNDLE with another CA" 'certificate' "AWS_CA_BUNDLE=$tmp/other-ca.pem"
# Knobs that turn verification off elsewhere do nothing here.
cert_fails "no switch turns verification off" 'certificate' -u AWS_CA_BUNDLE \
  AWS_VERIFY_SSL=false AWS_CLI_VERIFY_SSL=false HGFLEET_INSECURE=1 HGFLEET_TLS_VERIFY=0 \
  CURL_INSECURE=1 PYTHONHTTPSVERIFY=0 NODE_TLS_REJECT_UNAUTHORIZED=0 "CURL_CA_BUNDLE=$tmp/other-ca.pem"

hgf_expect_exit 2 "$H" sync --all --no-verify-ssl
hgf_expect_exit 2 "$H" connection test "$regB" --insecure

# The right CA, but a certificate for another host name.
sim2=$(start_sim wronghost ecrsim2)
cert_fails "a certificate for another host name" 'certificate|subject name' \
  "AWS_ENDPOINT_URL_ECR=$sim2" "AWS_ENDPOINT_URL_STS=$sim2"

# A CA bundle that cannot be read is named.
hgf_expect_exit 1 env AWS_CA_BUNDLE=/nonexistent/ca.pem "$H" sync "$regB" --wait
hgf_assert_contains "$HGF_OUT$HGF_ERR" "certificate file: /nonexistent/ca.pem" \
  "an unreadable AWS_CA_BUNDLE is named"

# In the code: every transfer pins verification on, and nothing sets it off.
grep -q 'CURLOPT_SSL_VERIFYPEER, 1L' "$HGF_SOURCE_DIR/src/net/http.c" || hgf_fail "VERIFYPEER is not pinned on"
grep -q 'CURLOPT_SSL_VERIFYHOST, 2L' "$HGF_SOURCE_DIR/src/net/http.c" || hgf_fail "VERIFYHOST is not pinned on"
if grep -rnE 'SSL_VERIFY(PEER|HOST|STATUS)[^;]*0L|CURLOPT_SSL_OPTIONS|CURLSSLOPT_NO_REVOKE|PROXY_SSL_VERIFY' \
  "$HGF_SOURCE_DIR/src"; then
  hgf_fail "some code turns certificate verification off"
fi
echo "PASS: TLS toward AWS (AWS_CA_BUNDLE honoured, verification always on)"
