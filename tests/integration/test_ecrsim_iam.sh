#!/usr/bin/env bash
# ecrsim's IAM model end to end, with the official AWS CLI v1, its botocore
# and curl: STS (GetCallerIdentity, AssumeRole with and without ExternalId,
# role chaining, web identity), session expiry, GetAuthorizationToken and its
# resource-scope pitfall, registry v2 pulls (digests, blob redirect, DENIED for
# a missing permission and for a cross-account pull without repository
# policy), IMDSv2, the container endpoint, the clock offset, and scenario
# replacement at runtime. No secret may reach the log.
#
# The CLI and every python check run in one long-lived interpreter (py below):
# started afresh, the CLI spends seconds importing botocore per command.
#
# Needs ECRSIM_BIN (ctest sets it), curl, python3 and npm access for
# scripts/fetch-awscli on the first run.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SECONDS=0
hgf_awscli_setup

TMP=$(hgf_tmpdir)
SEED=7
account_id() { printf '%012d' $((100000000000 + (SEED % 1000) * 1000000 + $1)); }
A0=$(account_id 0)
A1=$(account_id 1)
A2=$(account_id 2)
# Every credential is fresh per run, so a leak check can grep for it.
export CI_KEY=AKIAECRSIMCI$RANDOM CI_SECRET=ci-secret-$RANDOM$RANDOM$RANDOM
export NOPULL_KEY=AKIAECRSIMNOPULL$RANDOM NOPULL_SECRET=nopull-secret-$RANDOM$RANDOM
export SCOPED_KEY=AKIAECRSIMSCOPED$RANDOM SCOPED_SECRET=scoped-secret-$RANDOM$RANDOM
export EXTERNAL_ID=hgf-ext-$RANDOM WEB_TOKEN=eyJhbGciOiJSUzI1NiJ9.sim$RANDOM$RANDOM
export CONTAINER_TOKEN=ctok-$RANDOM$RANDOM A0 A1 A2

hgf_pyhost_start "$LAYER"

# write_scenario OUT [REPO_WITH_POLICY [CAP_SECONDS]]: the test's IAM world.
write_scenario() {
  py - "$@" <<'PY'
import json, os, sys
e = os.environ
a0, a1, a2 = e["A0"], e["A1"], e["A2"]
sensor = f"arn:aws:iam::{a1}:role/sensor"
read = ["ecr:DescribeRepositories", "ecr:DescribeImages", "ecr:ListImages"]
doc = {
    "principals": [
        {"arn": f"arn:aws:iam::{a0}:user/ci", "access_key_id": e["CI_KEY"],
         "secret_access_key": e["CI_SECRET"],
         "policy": [{"actions": ["ecr:*", "sts:AssumeRole"], "resources": ["*"]}]},
        {"arn": f"arn:aws:iam::{a0}:user/nopull", "access_key_id": e["NOPULL_KEY"],
         "secret_access_key": e["NOPULL_SECRET"],
         "policy": [{"actions": read + ["ecr:GetAuthorizationToken"], "resources": ["*"]}]},
        # The guide's pitfall: GetAuthorizationToken on a repository ARN.
        {"arn": f"arn:aws:iam::{a0}:user/scoped", "access_key_id": e["SCOPED_KEY"],
         "secret_access_key": e["SCOPED_SECRET"],
         "policy": [{"actions": ["ecr:GetAuthorizationToken", "ecr:Describe*",
                                 "ecr:BatchGetImage"],
                     "resources": [f"arn:aws:ecr:us-east-1:{a0}:repository/*"]}]},
    ],
    "roles": [
        {"arn": sensor, "max_session_duration": 7200,
         "trust": [{"principal": f"arn:aws:iam::{a0}:user/ci", "external_id": e["EXTERNAL_ID"]}],
         "policy": [{"actions": read + ["ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer",
                                        "ecr:GetAuthorizationToken", "sts:AssumeRole"],
                     "resources": ["*"]}]},
        {"arn": f"arn:aws:iam::{a1}:role/open", "trust": [{"principal": f"arn:aws:iam::{a0}:root"}],
         "policy": [{"actions": ["ecr:Describe*"], "resources": ["*"]}]},
        {"arn": f"arn:aws:iam::{a2}:role/chained", "trust": [{"principal": sensor}],
         "max_session_duration": 43200,
         "policy": [{"actions": ["ecr:Describe*"], "resources": [f"arn:aws:ecr:*:{a2}:repository/*"]}]},
        {"arn": f"arn:aws:iam::{a0}:role/node", "trust": [{"principal": "*"}],
         "policy": [{"actions": ["ecr:Describe*", "sts:AssumeRole"], "resources": ["*"]}]},
        {"arn": f"arn:aws:iam::{a0}:role/irsa",
         "policy": [{"actions": ["ecr:Describe*"], "resources": ["*"]}]},
    ],
    "instance_role": f"arn:aws:iam::{a0}:role/node",
    "container_role": f"arn:aws:iam::{a0}:role/task",
    "container_token": e["CONTAINER_TOKEN"],
    "web_identity_tokens": {e["WEB_TOKEN"]: f"arn:aws:iam::{a0}:role/irsa"},
}
if len(sys.argv) > 2:
    doc["repository_policies"] = {a0: [{"repositories": [sys.argv[2]], "principal": sensor,
                                        "actions": ["ecr:BatchGetImage",
                                                    "ecr:GetDownloadUrlForLayer"]}]}
if len(sys.argv) > 3:
    doc["credential_duration_seconds"] = int(sys.argv[3])
json.dump(doc, open(sys.argv[1], "w"), indent=1)
PY
}

# json_get FILE EXPR: evaluates the python expression over the document d.
json_get() {
  py -c 'import json, sys; d = json.load(open(sys.argv[1])); print(eval(sys.argv[2]))' "$1" "$2"
}

start_ecrsim() { # start_ecrsim NAME ARGS...: PORT_<NAME>
  local name=$1 line
  shift
  hgf_bg "$ECRSIM_BIN" "$@" >"$TMP/$name.out" 2>"$TMP/$name.err"
  line=$(hgf_wait_for_line "$TMP/$name.out" '^ecrsim listening on http://127\.0\.0\.1:[0-9]+$' 15)
  printf -v "PORT_$name" '%s' "${line##*:}"
}

# aws_as AKID SECRET TOKEN ARGS...: the CLI with exactly these credentials.
aws_as() {
  local akid=$1 secret=$2 token=$3
  shift 3
  py -u AWS_SESSION_TOKEN -u AWS_PROFILE AWS_ACCESS_KEY_ID="$akid" AWS_SECRET_ACCESS_KEY="$secret" \
    ${token:+AWS_SESSION_TOKEN="$token"} AWS_CONFIG_FILE=/dev/null \
    AWS_SHARED_CREDENTIALS_FILE=/dev/null AWS_EC2_METADATA_DISABLED=true AWS_MAX_ATTEMPTS=1 \
    "$AWS_ENTRY" --endpoint-url "$URL" --region us-east-1 --output json "$@"
}

post() { # post PATH JSON_FILE: POST to the control API, body on stdout
  curl -sS -X POST --data-binary "@$2" -H 'Content-Type: application/json' "$URL$1"
}

# ---- start, then replace the scenario at runtime ---------------------------
write_scenario "$TMP/scenario.json"
start_ecrsim A --seed "$SEED" --scenario "$TMP/scenario.json"
URL=http://127.0.0.1:$PORT_A
curl -fsS "$URL/_sim/truth" -o "$TMP/truth.json"
# Two non-empty repositories of account 0 in us-east-1 and one of account 1.
read -r REPO_P REPO_Q REPO_1 < <(py - "$TMP/truth.json" "$A0" "$A1" <<'PY'
import json, sys
t = json.load(open(sys.argv[1]))
def repos(acct):
    reg = [r for r in t["registries"] if r["account_id"] == acct and r["region"] == "us-east-1"][0]
    return [r["name"] for r in reg["repositories"] if any(i["tags"] for i in r["images"])]
p = repos(sys.argv[2])
print(p[0], p[1], repos(sys.argv[3])[0])
PY
)
[[ -n $REPO_1 ]] || hgf_fail "the truth has too few non-empty repositories"

printf '{"roles": [{"arn": "arn:aws:iam::1:role/x"}]}' >"$TMP/bad.json"
bad=$(post /_sim/scenario "$TMP/bad.json")
hgf_assert_contains "$bad" "roles[0]" "a bad scenario names the field"
write_scenario "$TMP/scenario2.json" "$REPO_P"
summary=$(post /_sim/scenario "$TMP/scenario2.json")
hgf_assert_eq 1 "$(py -c 'import json,sys; print(json.loads(sys.argv[1])["repository_policies"][sys.argv[2]])' "$summary" "$A0")" \
  "the replaced scenario has the repository policy"
[[ $summary != *"$CI_SECRET"* && $summary != *"$CONTAINER_TOKEN"* ]] || hgf_fail "the scenario summary shows a secret"

# ---- the AWS CLI: STS and ECR ----------------------------------------------
aws_as "$CI_KEY" "$CI_SECRET" "" sts get-caller-identity >"$TMP/whoami.json"
hgf_assert_eq "arn:aws:iam::$A0:user/ci" "$(json_get "$TMP/whoami.json" 'd["Arn"]')" "GetCallerIdentity Arn"
hgf_assert_eq "$A0" "$(json_get "$TMP/whoami.json" 'd["Account"]')" "GetCallerIdentity Account"

aws_as "$CI_KEY" "$CI_SECRET" "" sts assume-role --role-arn "arn:aws:iam::$A1:role/sensor" \
  --role-session-name hgf-test --external-id "$EXTERNAL_ID" >"$TMP/sensor.json"
py - "$TMP/sensor.json" "$A1" <<'PY' || hgf_fail "AssumeRole's answer is wrong"
import datetime, json, sys
d = json.load(open(sys.argv[1]))
c, u = d["Credentials"], d["AssumedRoleUser"]
assert c["AccessKeyId"].startswith("ASIA") and len(c["AccessKeyId"]) == 20, c["AccessKeyId"]
assert c["SecretAccessKey"] and len(c["SessionToken"]) > 100
left = (datetime.datetime.fromisoformat(c["Expiration"].replace("Z", "+00:00")) -
        datetime.datetime.now(datetime.timezone.utc)).total_seconds()
assert 3500 < left <= 3601, left
assert u["Arn"] == f"arn:aws:sts::{sys.argv[2]}:assumed-role/sensor/hgf-test", u
assert u["AssumedRoleId"].startswith("AROA") and u["AssumedRoleId"].endswith(":hgf-test"), u
PY
S_KEY=$(json_get "$TMP/sensor.json" 'd["Credentials"]["AccessKeyId"]')
S_SECRET=$(json_get "$TMP/sensor.json" 'd["Credentials"]["SecretAccessKey"]')
S_TOKEN=$(json_get "$TMP/sensor.json" 'd["Credentials"]["SessionToken"]')

denied="User: arn:aws:iam::$A0:user/ci is not authorized to perform: sts:AssumeRole on resource: arn:aws:iam::$A1:role/sensor"
hgf_expect_exit 255 aws_as "$CI_KEY" "$CI_SECRET" "" sts assume-role \
  --role-arn "arn:aws:iam::$A1:role/sensor" --role-session-name hgf-test --external-id wrong-id
hgf_assert_contains "$HGF_ERR" "(AccessDenied)" "wrong ExternalId"
hgf_assert_contains "$HGF_ERR" "$denied" "wrong ExternalId message"
aws_as "$CI_KEY" "$CI_SECRET" "" sts assume-role --role-arn "arn:aws:iam::$A1:role/open" \
  --role-session-name plain >"$TMP/open.json"
hgf_assert_eq "arn:aws:sts::$A1:assumed-role/open/plain" \
  "$(json_get "$TMP/open.json" 'd["AssumedRoleUser"]["Arn"]')" "AssumeRole without ExternalId"

aws_as "$S_KEY" "$S_SECRET" "$S_TOKEN" ecr describe-images --registry-id "$A1" \
  --repository-name "$REPO_1" >"$TMP/images1.json"
py - "$TMP/images1.json" "$TMP/truth.json" "$A1" "$REPO_1" <<'PY' || hgf_fail "describe-images with assumed-role credentials"
import json, sys
got = [d["imageDigest"] for d in json.load(open(sys.argv[1]))["imageDetails"]]
t = json.load(open(sys.argv[2]))
reg = [r for r in t["registries"] if r["account_id"] == sys.argv[3] and r["region"] == "us-east-1"][0]
want = [i["digest"] for r in reg["repositories"] if r["name"] == sys.argv[4] for i in r["images"]]
assert got == want and got, (len(got), len(want))
PY

aws_as "$CI_KEY" "$CI_SECRET" "" ecr get-authorization-token >"$TMP/auth.json"
py - "$TMP/auth.json" "$URL" "$A0" <<'PY' || hgf_fail "get-authorization-token's answer is wrong"
import base64, datetime, json, sys
d = json.load(open(sys.argv[1]))["authorizationData"]
assert len(d) == 1, d
assert d[0]["proxyEndpoint"] == f"{sys.argv[2]}/_registry/{sys.argv[3]}/us-east-1", d[0]
assert base64.b64decode(d[0]["authorizationToken"]).startswith(b"AWS:")
at = d[0]["expiresAt"]  # the CLI prints the raw epoch seconds
left = (at if isinstance(at, (int, float)) else datetime.datetime.fromisoformat(at).timestamp()) \
    - datetime.datetime.now().timestamp()
assert 12 * 3600 - 60 < left <= 12 * 3600 + 1, left
PY
CI_AUTH=$(json_get "$TMP/auth.json" 'd["authorizationData"][0]["authorizationToken"]')
EP0=$URL/_registry/$A0/us-east-1

py -u AWS_ACCESS_KEY_ID -u AWS_SECRET_ACCESS_KEY AWS_CONFIG_FILE=/dev/null \
  AWS_SHARED_CREDENTIALS_FILE=/dev/null AWS_EC2_METADATA_DISABLED=true AWS_MAX_ATTEMPTS=1 \
  "$AWS_ENTRY" --endpoint-url "$URL" --region us-east-1 --output json \
  sts assume-role-with-web-identity --role-arn "arn:aws:iam::$A0:role/irsa" \
  --role-session-name pod-1 --web-identity-token "$WEB_TOKEN" >"$TMP/web.json"
hgf_assert_eq "arn:aws:sts::$A0:assumed-role/irsa/pod-1" \
  "$(json_get "$TMP/web.json" 'd["AssumedRoleUser"]["Arn"]')" "AssumeRoleWithWebIdentity"
cli_seconds=$SECONDS

# ---- IMDSv2 and the container endpoint -------------------------------------
CREDS_PATH=/latest/meta-data/iam/security-credentials/
hgf_assert_eq 401 "$(curl -s -o /dev/null -w '%{http_code}' "$URL$CREDS_PATH")" "IMDS without a token"
hgf_assert_eq 400 "$(curl -s -o /dev/null -w '%{http_code}' -X PUT "$URL/latest/api/token")" \
  "an IMDS token without a TTL"
imds_token=$(curl -fsS -X PUT -H 'X-aws-ec2-metadata-token-ttl-seconds: 60' "$URL/latest/api/token")
hgf_assert_eq 401 "$(curl -s -o /dev/null -w '%{http_code}' -H "X-aws-ec2-metadata-token: x$imds_token" \
  "$URL$CREDS_PATH")" "IMDS with a forged token"
role=$(curl -fsS -H "X-aws-ec2-metadata-token: $imds_token" "$URL$CREDS_PATH")
hgf_assert_eq node "$role" "IMDS role name"
curl -fsS -H "X-aws-ec2-metadata-token: $imds_token" "$URL$CREDS_PATH$role" -o "$TMP/imds.json"
curl -fsS -H "X-aws-ec2-metadata-token: $imds_token" "$URL$CREDS_PATH$role" -o "$TMP/imds2.json"
hgf_assert_eq 404 "$(curl -s -o /dev/null -w '%{http_code}' -H "X-aws-ec2-metadata-token: $imds_token" \
  "$URL${CREDS_PATH}other")" "IMDS for another role"

hgf_assert_eq 401 "$(curl -s -o /dev/null -w '%{http_code}' "$URL/_sim/container-credentials")" \
  "container credentials without a token"
hgf_assert_eq 403 "$(curl -s -o /dev/null -w '%{http_code}' -H 'Authorization: wrong' \
  "$URL/_sim/container-credentials")" "container credentials with a wrong token"
curl -fsS -H "Authorization: $CONTAINER_TOKEN" "$URL/_sim/container-credentials" -o "$TMP/container.json"

# ---- botocore: the fine-grained cases --------------------------------------
py REPO_P="$REPO_P" REPO_Q="$REPO_Q" - "$LAYER" "$URL" "$TMP" <<'PY' || hgf_fail "botocore checks failed"
import base64, datetime, json, os, re, sys, time, urllib.request
layer, url, tmp = sys.argv[1:]
sys.path.insert(0, layer)
import awscli  # noqa: F401  (makes the vendored botocore importable as botocore)
import botocore.auth, botocore.session
from botocore.config import Config
from botocore.exceptions import ClientError
e = os.environ
a0, a1, a2 = e["A0"], e["A1"], e["A2"]
session = botocore.session.Session()
session.set_config_variable("config_file", "/dev/null")
cfg = Config(retries={"max_attempts": 1})

def client(service, key, secret, token=None):
    return session.create_client(service, region_name="us-east-1", endpoint_url=url, config=cfg,
                                 aws_access_key_id=key, aws_secret_access_key=secret,
                                 aws_session_token=token)

def expect_error(code, fn, pattern=None, status=None, **kw):
    try:
        fn(**kw)
    except ClientError as err:
        got = err.response["Error"]
        assert got["Code"] == code, f"got {got['Code']}: {got['Message']} (want {code})"
        if pattern:
            assert re.fullmatch(pattern, got["Message"]), f"{got['Message']!r} !~ {pattern!r}"
        if status:
            assert err.response["ResponseMetadata"]["HTTPStatusCode"] == status, err.response
        return got["Message"]
    raise AssertionError(f"expected {code}, the call succeeded")

def load(name):
    return json.load(open(os.path.join(tmp, name)))

ci_sts = client("sts", e["CI_KEY"], e["CI_SECRET"])
sensor = load("sensor.json")["Credentials"]
s_sts = client("sts", sensor["AccessKeyId"], sensor["SecretAccessKey"], sensor["SessionToken"])
s_ecr = client("ecr", sensor["AccessKeyId"], sensor["SecretAccessKey"], sensor["SessionToken"])

# Role chaining: the session of sensor assumes chained; STS caps it at 1 h.
chained = f"arn:aws:iam::{a2}:role/chained"
expect_error("ValidationError", s_sts.assume_role,
             r"The requested DurationSeconds exceeds the 1 hour session limit for roles assumed "
             r"by role chaining\.", 400,
             RoleArn=chained, RoleSessionName="hop", DurationSeconds=7200)
hop = s_sts.assume_role(RoleArn=chained, RoleSessionName="hop", DurationSeconds=3600)
assert hop["AssumedRoleUser"]["Arn"] == f"arn:aws:sts::{a2}:assumed-role/chained/hop", hop
c = hop["Credentials"]
who = client("sts", c["AccessKeyId"], c["SecretAccessKey"], c["SessionToken"]).get_caller_identity()
assert who["Arn"] == f"arn:aws:sts::{a2}:assumed-role/chained/hop" and who["Account"] == a2, who
# Without a chain the role's own maximum applies.
expect_error("ValidationError", ci_sts.assume_role,
             r"The requested DurationSeconds exceeds the MaxSessionDuration set for this role\.",
             RoleArn=f"arn:aws:iam::{a1}:role/sensor", RoleSessionName="long",
             ExternalId=e["EXTERNAL_ID"], DurationSeconds=10800)
long = ci_sts.assume_role(RoleArn=f"arn:aws:iam::{a1}:role/sensor", RoleSessionName="long",
                          ExternalId=e["EXTERNAL_ID"], DurationSeconds=7200)
left = (long["Credentials"]["Expiration"] - datetime.datetime.now(datetime.timezone.utc)).total_seconds()
assert 7100 < left <= 7201, left
# The caller's own policy must allow sts:AssumeRole.
expect_error("AccessDenied", client("sts", e["NOPULL_KEY"], e["NOPULL_SECRET"]).assume_role,
             rf"User: arn:aws:iam::{a0}:user/nopull is not authorized to perform: sts:AssumeRole "
             rf"on resource: arn:aws:iam::{a1}:role/open", 403,
             RoleArn=f"arn:aws:iam::{a1}:role/open", RoleSessionName="probe")
expect_error("AccessDenied", ci_sts.assume_role, RoleArn=f"arn:aws:iam::{a1}:role/undefined",
             RoleSessionName="probe")
expect_error("AccessDenied", ci_sts.assume_role,  # the role requires an ExternalId
             rf"User: arn:aws:iam::{a0}:user/ci is not authorized to perform: sts:AssumeRole "
             rf"on resource: arn:aws:iam::{a1}:role/sensor", 403,
             RoleArn=f"arn:aws:iam::{a1}:role/sensor", RoleSessionName="no-external-id")
ci_sts_loose = session.create_client("sts", region_name="us-east-1", endpoint_url=url,
    aws_access_key_id=e["CI_KEY"], aws_secret_access_key=e["CI_SECRET"],
    config=Config(retries={"max_attempts": 1}, parameter_validation=False))
msg = expect_error("ValidationError", ci_sts_loose.assume_role,
                   RoleArn=f"arn:aws:iam::{a1}:role/open", RoleSessionName="a")
assert "roleSessionName" in msg and "length" in msg, msg
msg = expect_error("ValidationError", ci_sts_loose.assume_role,
                   RoleArn=f"arn:aws:iam::{a1}:role/open", RoleSessionName="ok", DurationSeconds=60)
assert "durationSeconds" in msg, msg
expect_error("InvalidIdentityToken",
             session.create_client("sts", region_name="us-east-1", endpoint_url=url, config=cfg,
                                   aws_access_key_id="x", aws_secret_access_key="y"
                                   ).assume_role_with_web_identity,
             RoleArn=f"arn:aws:iam::{a0}:role/irsa", RoleSessionName="pod", WebIdentityToken="eyJnope")

# SigV4 failures in STS's own codes.
expect_error("InvalidClientTokenId", client("sts", "AKIANOBODY", "x").get_caller_identity,
             r"The security token included in the request is invalid\.", 403)
expect_error("SignatureDoesNotMatch", client("sts", e["CI_KEY"], "wrong").get_caller_identity,
             status=403)
expect_error("InvalidClientTokenId", client("sts", sensor["AccessKeyId"],
             sensor["SecretAccessKey"], sensor["SessionToken"][:-4] + "AAAA").get_caller_identity)
expect_error("UnrecognizedClientException", client("ecr", sensor["AccessKeyId"],
             sensor["SecretAccessKey"]).describe_repositories)
req = urllib.request.Request(url + "/", data=b"Action=GetCallerIdentity&Version=2011-06-15",
                             headers={"Content-Type": "application/x-www-form-urlencoded"})
try:
    urllib.request.urlopen(req)
    raise AssertionError("an unsigned GetCallerIdentity succeeded")
except urllib.error.HTTPError as err:
    body = err.read().decode()
    assert err.code == 403 and "<Code>MissingAuthenticationToken</Code>" in body, body
    assert body.startswith('<ErrorResponse xmlns="https://sts.amazonaws.com/doc/2011-06-15/">'
                           "<Error><Type>Sender</Type>"), body
    assert f"<RequestId>{err.headers['x-amzn-RequestId']}</RequestId>" in body, body

# GetAuthorizationToken must be granted on "*": on a repository ARN it fails
# while the repository calls work.
scoped = client("ecr", e["SCOPED_KEY"], e["SCOPED_SECRET"])
assert scoped.describe_repositories()["repositories"]
expect_error("AccessDeniedException", scoped.get_authorization_token,
             rf"User: arn:aws:iam::{a0}:user/scoped is not authorized to perform: "
             r"ecr:GetAuthorizationToken on resource: \* because no identity-based policy allows "
             r"the ecr:GetAuthorizationToken action")
nopull = client("ecr", e["NOPULL_KEY"], e["NOPULL_SECRET"])
open(os.path.join(tmp, "nopull.token"), "w").write(
    nopull.get_authorization_token()["authorizationData"][0]["authorizationToken"])
expect_error("AccessDeniedException", client("ecr", load("open.json")["Credentials"]["AccessKeyId"],
             load("open.json")["Credentials"]["SecretAccessKey"],
             load("open.json")["Credentials"]["SessionToken"]).get_authorization_token,
             r".*assumed-role/open/plain is not authorized to perform: ecr:GetAuthorizationToken.*")

# Cross-account: the sensor (account 1) lists account 0's images with its
# identity policy alone, and gets a token for account 0's registry.
p = e["REPO_P"]
assert s_ecr.describe_images(registryId=a0, repositoryName=e["REPO_Q"])["imageDetails"]
tok = s_ecr.get_authorization_token(registryIds=[a0])["authorizationData"]
assert tok[0]["proxyEndpoint"] == f"{url}/_registry/{a0}/us-east-1", tok
open(os.path.join(tmp, "sensor.token"), "w").write(tok[0]["authorizationToken"])

# Host credentials work, and IMDS hands out the same session twice.
imds, imds2, cont = load("imds.json"), load("imds2.json"), load("container.json")
assert imds["Code"] == "Success" and imds["Type"] == "AWS-HMAC", imds
assert imds["AccessKeyId"] == imds2["AccessKeyId"], "IMDS rotated credentials at once"
who = client("sts", imds["AccessKeyId"], imds["SecretAccessKey"], imds["Token"]).get_caller_identity()
assert re.fullmatch(rf"arn:aws:sts::{a0}:assumed-role/node/i-[0-9a-f]+", who["Arn"]), who
assert cont["RoleArn"] == f"arn:aws:iam::{a0}:role/task", cont
who = client("sts", cont["AccessKeyId"], cont["SecretAccessKey"], cont["Token"]).get_caller_identity()
assert who["Arn"].startswith(f"arn:aws:sts::{a0}:assumed-role/task/"), who
# A host-role session assuming a role is a chain too.
node_sts = client("sts", imds["AccessKeyId"], imds["SecretAccessKey"], imds["Token"])
expect_error("ValidationError", node_sts.assume_role, r".*role chaining\.",
             RoleArn=f"arn:aws:iam::{a1}:role/open", RoleSessionName="node-hop", DurationSeconds=3601)
print("botocore checks passed")
PY

# ---- registry v2 -------------------------------------------------------------
hdr=$TMP/headers
reg_get() { # reg_get TOKEN METHOD PATH [CURL ARGS]: status on stdout, body in $TMP/body
  local token=$1 method=$2 path=$3
  shift 3
  curl -sS -o "$TMP/body" -D "$hdr" -w '%{http_code}' -X "$method" ${token:+-H "Authorization: Basic $token"} \
    "$@" "$EP0$path"
}
header() { # header NAME [FILE]: the value of the first NAME header of the last response (of FILE)
  local line
  while IFS= read -r line; do
    line=${line//$'\r'/}
    if [[ ${line,,} == "${1,,}:"* ]]; then
      printf '%s\n' "${line#* }"
      return 0
    fi
  done <"${2:-$hdr}"
}
sha256_of() { local s; s=$(sha256sum "$1"); printf 'sha256:%s\n' "${s%% *}"; }

hgf_assert_eq 401 "$(reg_get "" GET /v2/)" "GET /v2/ without a token"
hgf_assert_eq "Basic realm=\"$EP0\",service=\"ecr.amazonaws.com\"" "$(header WWW-Authenticate)" \
  "the 401's challenge"
hgf_assert_eq 200 "$(reg_get "$CI_AUTH" GET /v2/)" "GET /v2/ with the token"
hgf_assert_eq 401 "$(reg_get "QVdTOmdhcmJhZ2U=" GET /v2/)" "GET /v2/ with a forged token"
hgf_assert_contains "$(cat "$TMP/body")" '"UNAUTHORIZED"' "a forged token's error code"

# Every image of REPO_P: by digest and by each tag, the bytes hash to the
# digest in both the header and the truth.
py - "$TMP/truth.json" "$A0" "$REPO_P" >"$TMP/refs" <<'PY'
import json, sys
t = json.load(open(sys.argv[1]))
reg = [r for r in t["registries"] if r["account_id"] == sys.argv[2] and r["region"] == "us-east-1"][0]
for i in [r for r in reg["repositories"] if r["name"] == sys.argv[3]][0]["images"]:
    for ref in [i["digest"]] + i["tags"]:
        print(ref, i["digest"], i["media_type"])
PY
# One curl fetches them all (a process per manifest was slow), each into files
# of its own; one sha256sum and one stat then take every body.
mapfile -t refs <"$TMP/refs"
n=${#refs[@]}
(( n >= 2 )) || hgf_fail "too few manifests checked ($n)"
gets=() bodies=()
for (( i = 0; i < n; i++ )); do
  read -r ref _ <<<"${refs[i]}"
  (( i == 0 )) || gets+=(--next)
  gets+=(-sS -o "$TMP/m$i" -D "$TMP/h$i" -w '%{http_code}\n' -H "Authorization: Basic $CI_AUTH"
    "$EP0/v2/$REPO_P/manifests/$ref")
  bodies+=("$TMP/m$i")
done
mapfile -t codes < <(curl "${gets[@]}")
mapfile -t sums < <(sha256sum "${bodies[@]}")
mapfile -t sizes < <(stat -c %s "${bodies[@]}")
for (( i = 0; i < n; i++ )); do
  read -r ref want media <<<"${refs[i]}"
  hgf_assert_eq 200 "${codes[i]:-none}" "GET manifest $ref"
  hgf_assert_eq "$want" "sha256:${sums[i]%% *}" "sha256 of manifest $ref"
  hgf_assert_eq "$want" "$(header Docker-Content-Digest "$TMP/h$i")" "Docker-Content-Digest of $ref"
  hgf_assert_eq "$media" "$(header Content-Type "$TMP/h$i")" "Content-Type of $ref"
  hgf_assert_eq "${sizes[i]}" "$(header Content-Length "$TMP/h$i")" "Content-Length of $ref"
  # The config checks below need an image manifest, not an index.
  [[ $media == *index* || $media == *list* ]] || { digest=$want last=$i; }
done
[[ -n ${last:-} ]] || hgf_fail "no image manifest among the $n fetched"
cp "$TMP/m$last" "$TMP/manifest.json"
hgf_assert_eq 200 "$(reg_get "$CI_AUTH" HEAD "/v2/$REPO_P/manifests/$digest" -I)" "HEAD manifest"
hgf_assert_eq "$digest" "$(header Docker-Content-Digest)" "HEAD Docker-Content-Digest"
hgf_assert_eq 404 "$(reg_get "$CI_AUTH" GET "/v2/$REPO_P/manifests/no-such-tag")" "unknown tag"
hgf_assert_contains "$(cat "$TMP/body")" '"MANIFEST_UNKNOWN"' "unknown tag's error code"
hgf_assert_eq 404 "$(reg_get "$CI_AUTH" GET "/v2/no-such-repo/manifests/latest")" "unknown repository"
hgf_assert_contains "$(cat "$TMP/body")" '"NAME_UNKNOWN"' "unknown repository's error code"

# The config blob: a 307 to a presigned-like URL that needs no auth.
config=$(json_get "$TMP/manifest.json" 'd["config"]["digest"]')
size=$(json_get "$TMP/manifest.json" 'd["config"]["size"]')
hgf_assert_eq 307 "$(reg_get "$CI_AUTH" GET "/v2/$REPO_P/blobs/$config")" "blob GET redirects"
location=$(header Location)
[[ $location == "$URL/_sim/blob/"* ]] || hgf_fail "blob redirect to '$location'"
curl -fsS "$location" -o "$TMP/blob"
hgf_assert_eq "$config" "$(sha256_of "$TMP/blob")" "the blob's digest"
hgf_assert_eq "$size" "$(stat -c %s "$TMP/blob")" "the blob's size"
hgf_assert_eq 403 "$(curl -s -o /dev/null -w '%{http_code}' "${location%?????}AAAA=")" "a forged blob URL"

# DENIED: no ecr:BatchGetImage; and a cross-account pull without repository policy.
hgf_assert_eq 403 "$(reg_get "$(cat "$TMP/nopull.token")" GET "/v2/$REPO_P/manifests/$digest")" \
  "a pull without ecr:BatchGetImage"
hgf_assert_contains "$(cat "$TMP/body")" '"DENIED"' "missing BatchGetImage's error code"
hgf_assert_contains "$(cat "$TMP/body")" "user/nopull is not authorized to perform: ecr:BatchGetImage on resource: arn:aws:ecr:us-east-1:$A0:repository/$REPO_P because no identity-based policy" \
  "missing BatchGetImage's message"
S_AUTH=$(cat "$TMP/sensor.token")
hgf_assert_eq 403 "$(reg_get "$S_AUTH" GET "/v2/$REPO_Q/manifests/latest")" \
  "a cross-account pull without repository policy"
hgf_assert_contains "$(cat "$TMP/body")" "assumed-role/sensor/hgf-test is not authorized to perform: ecr:BatchGetImage on resource: arn:aws:ecr:us-east-1:$A0:repository/$REPO_Q because no resource-based policy allows" \
  "the cross-account message"
hgf_assert_eq 200 "$(reg_get "$S_AUTH" GET "/v2/$REPO_P/manifests/$digest")" \
  "a cross-account pull the repository policy allows"
hgf_assert_eq 307 "$(reg_get "$S_AUTH" GET "/v2/$REPO_P/blobs/$config")" "a cross-account blob"

# ---- expiry: every credential capped at 2 s --------------------------------
write_scenario "$TMP/scenario3.json" "$REPO_P" 2
post /_sim/scenario "$TMP/scenario3.json" >/dev/null
# One botocore process, so the 2 s are not spent starting the CLI.
py SHORT_OUT="$TMP/short.secret" - "$LAYER" "$URL" "$REPO_1" <<'PY' || hgf_fail "short-lived credentials"
import json, os, re, sys, time, urllib.error, urllib.request
layer, url, repo = sys.argv[1:]
sys.path.insert(0, layer)
import awscli  # noqa: F401
import botocore.session
from botocore.config import Config
from botocore.exceptions import ClientError
e, cfg = os.environ, Config(retries={"total_max_attempts": 1})
session = botocore.session.Session()
session.set_config_variable("config_file", "/dev/null")
def client(service, key, secret, token=None):
    return session.create_client(service, region_name="us-east-1", endpoint_url=url, config=cfg,
                                 aws_access_key_id=key, aws_secret_access_key=secret,
                                 aws_session_token=token)
def error(fn, **kw):
    try:
        fn(**kw)
    except ClientError as err:
        r = err.response
        return r["Error"]["Code"], r["Error"]["Message"], r["ResponseMetadata"]["HTTPStatusCode"]
    raise AssertionError("the call succeeded")
def ping(auth):
    req = urllib.request.Request(f"{url}/_registry/{e['A1']}/us-east-1/v2/",
                                 headers={"Authorization": "Basic " + auth})
    try:
        with urllib.request.urlopen(req) as r:
            return r.status, ""
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()

c = client("sts", e["CI_KEY"], e["CI_SECRET"]).assume_role(
    RoleArn=f"arn:aws:iam::{e['A1']}:role/sensor", RoleSessionName="short",
    ExternalId=e["EXTERNAL_ID"], DurationSeconds=3600)["Credentials"]
assert c["Expiration"].timestamp() - time.time() <= 2.5, c["Expiration"]
creds = (c["AccessKeyId"], c["SecretAccessKey"], c["SessionToken"])
ecr, sts = client("ecr", *creds), client("sts", *creds)
auth = ecr.get_authorization_token()["authorizationData"][0]
assert auth["expiresAt"].timestamp() <= c["Expiration"].timestamp(), auth["expiresAt"]
# At once: the server counts whole seconds, so 2 s may leave only one.
assert ping(auth["authorizationToken"])[0] == 200
time.sleep(3)
assert error(ecr.describe_images, registryId=e["A1"], repositoryName=repo) == (
    "ExpiredTokenException", "The security token included in the request is expired", 400)
assert error(sts.get_caller_identity) == (
    "ExpiredToken", "The security token included in the request is expired", 403)
status, body = ping(auth["authorizationToken"])
assert status == 401 and "Your authorization token has expired" in body, (status, body)
open(e["SHORT_OUT"], "w").write(creds[1])  # for the leak check
PY
X_SECRET=$(cat "$TMP/short.secret")
post /_sim/scenario "$TMP/scenario2.json" >/dev/null

# ---- clock offset ------------------------------------------------------------
printf '{"clock_offset": 600}' >"$TMP/offset.json"
post /_sim/config "$TMP/offset.json" >/dev/null
date_hdr=$(curl -sS -D - -o /dev/null "$URL/_sim/stats" | grep -i '^Date:' | cut -d' ' -f2- | tr -d '\r')
skew=$(( $(date -d "$date_hdr" +%s) - $(date +%s) ))
(( skew >= 595 && skew <= 605 )) || hgf_fail "Date header skew $skew s, expected ~600"
hgf_expect_exit 255 aws_as "$CI_KEY" "$CI_SECRET" "" ecr describe-repositories
hgf_assert_contains "$HGF_ERR" "(InvalidSignatureException)" "clock offset"
hgf_assert_contains "$HGF_ERR" "Signature expired:" "clock offset message"
printf '{"clock_offset": 0}' >"$TMP/offset.json"
post /_sim/config "$TMP/offset.json" >/dev/null
start_ecrsim B --seed "$SEED" --clock-offset -1200
date_hdr=$(curl -sS -D - -o /dev/null "http://127.0.0.1:$PORT_B/_sim/stats" | grep -i '^Date:' |
  cut -d' ' -f2- | tr -d '\r')
skew=$(( $(date -d "$date_hdr" +%s) - $(date +%s) ))
(( skew >= -1205 && skew <= -1195 )) || hgf_fail "--clock-offset -1200 gave a Date skew of $skew s"

# ---- stats and secrets -------------------------------------------------------
curl -fsS "$URL/_sim/stats" -o "$TMP/stats.json"
py - "$TMP/stats.json" <<'PY' || hgf_fail "/_sim/stats does not match the calls made: $(cat "$TMP/stats.json")"
import json, sys
s = json.load(open(sys.argv[1]))
calls, sts = s["calls"], s["sts"]
assert calls["AssumeRole"]["AccessDenied"] >= 4 and calls["AssumeRole"]["ValidationError"] >= 4
assert sts["AssumeRole"] == calls["AssumeRole"]["calls"] and sts["GetCallerIdentity"] >= 5
assert calls["DescribeImages"]["ExpiredTokenException"] == 1
assert calls["GetAuthorizationToken"]["AccessDeniedException"] == 2
assert calls["registry:GetManifest"]["DENIED"] == 2
assert calls["s3:GetObject"]["ok"] == 1
assert s["services"]["imds"] >= 6 and s["services"]["container"] == 3
PY
leaks=("$CI_SECRET" "$NOPULL_SECRET" "$SCOPED_SECRET" "$CONTAINER_TOKEN" "$WEB_TOKEN" "$S_SECRET"
  "$S_TOKEN" "$X_SECRET" "$CI_AUTH" "$EXTERNAL_ID" "${location##*/}" "AWS4-HMAC-SHA256" "Signature=")
for secret in "${leaks[@]}"; do
  if grep -F -q -- "$secret" "$TMP/A.err" "$TMP/A.out"; then
    hgf_fail "ecrsim logged a secret or an Authorization header (${secret:0:6}...)"
  fi
done

printf 'test_ecrsim_iam: ok (AWS CLI part %d s, total %d s)\n' "$cli_seconds" "$SECONDS"
