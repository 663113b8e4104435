#!/usr/bin/env bash
# The official AWS CLI v1 (and its botocore) against ecrsim: listings match
# /_sim/truth, the CLI pages by itself through nextToken, SigV4 failures and
# ECR errors come back with AWS's codes and messages, the fleet is a pure
# function of the seed, and ecrsim exits cleanly on SIGTERM.
#
# The CLI and every python check run in one long-lived interpreter (py below):
# started afresh, the CLI spends seconds importing botocore per command.
#
# Needs ECRSIM_BIN (ctest sets it; else $HGF_BUILD_DIR/ecrsim or build/ecrsim),
# curl, python3 and npm access for scripts/fetch-awscli on the first run.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SECONDS=0
hgf_awscli_setup

TMP=$(hgf_tmpdir)
SEED=7
REGION=us-east-1
account_id() { printf '%012d' $((100000000000 + (SEED % 1000) * 1000000 + $1)); }
ACCT0=$(account_id 0)
ACCT1=$(account_id 1)
ANY_KEY=AKIDTESTANY
ANY_SECRET=any-secret-$RANDOM$RANDOM
BOUND_KEY=AKIDTESTBOUND
BOUND_SECRET=bound-secret-$RANDOM$RANDOM

# start_ecrsim NAME ARGS...: starts ecrsim, leaves its pid in PID_<NAME> and
# its port in PORT_<NAME>.
start_ecrsim() {
  local name=$1 line
  shift
  hgf_bg "$ECRSIM_BIN" "$@" >"$TMP/$name.out" 2>"$TMP/$name.err"
  printf -v "PID_$name" '%s' "$HGF_BG_PID"
  line=$(hgf_wait_for_line "$TMP/$name.out" '^ecrsim listening on http://127\.0\.0\.1:[0-9]+$' 15)
  printf -v "PORT_$name" '%s' "${line##*:}"
}

hgf_pyhost_start "$LAYER"

aws_ecr() {
  py AWS_ACCESS_KEY_ID="${KEY_ID:-$ANY_KEY}" AWS_SECRET_ACCESS_KEY="${KEY_SECRET:-$ANY_SECRET}" \
    AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null \
    AWS_EC2_METADATA_DISABLED=true AWS_MAX_ATTEMPTS=1 \
    "$AWS_ENTRY" --endpoint-url "http://127.0.0.1:$PORT_A" --region "$REGION" \
    --output json ecr "$@"
}

# Compares CLI output with the truth; modes documented inline.
cat >"$TMP/check.py" <<'PY'
import json, sys

def load(path):
    with open(path) as f:
        return json.load(f)

def registry(truth, account, region):
    for reg in truth["registries"]:
        if reg["account_id"] == account and reg["region"] == region:
            return reg
    sys.exit(f"no registry {account}/{region} in the truth")

def fail(msg):
    sys.exit("check: " + msg)

mode, truth, account, region = sys.argv[1], load(sys.argv[2]), sys.argv[3], sys.argv[4]
reg = registry(truth, account, region)
if mode == "repos":                      # repos OUT
    got = load(sys.argv[5])["repositories"]
    want = {r["name"]: r for r in reg["repositories"]}
    names = [r["repositoryName"] for r in got]
    if sorted(names) != sorted(want) or len(names) != len(set(names)):
        fail(f"repositories {names} != truth {sorted(want)}")
    for r in got:
        t = want[r["repositoryName"]]
        host = reg["registry"]
        checks = {
            "repositoryArn": t["arn"], "registryId": account,
            "repositoryUri": f"{host}/{t['name']}",
            "imageTagMutability": t["tag_mutability"],
        }
        for k, v in checks.items():
            if r.get(k) != v:
                fail(f"{t['name']}: {k} = {r.get(k)!r}, want {v!r}")
        if r["imageScanningConfiguration"] != {"scanOnPush": t["scan_on_push"]}:
            fail(f"{t['name']}: imageScanningConfiguration {r['imageScanningConfiguration']}")
        if r["encryptionConfiguration"] != {"encryptionType": "AES256"}:
            fail(f"{t['name']}: encryptionConfiguration {r['encryptionConfiguration']}")
        if not isinstance(r["createdAt"], (int, float)):
            fail(f"{t['name']}: createdAt {r['createdAt']!r} is not epoch seconds")
    print(f"{len(names)} repositories match")
elif mode == "images":                   # images REPO OUT START COUNT NEXT(yes|no)
    repo, out = sys.argv[5], load(sys.argv[6])
    start, count, want_next = int(sys.argv[7]), int(sys.argv[8]), sys.argv[9]
    images = {r["name"]: r for r in reg["repositories"]}[repo]["images"]
    want = images[start:start + count]
    got = out["imageDetails"]
    if [d["imageDigest"] for d in got] != [w["digest"] for w in want]:
        fail(f"{len(got)} digests differ from truth[{start}:{start + count}] ({len(want)})")
    if len({d["imageDigest"] for d in got}) != len(got):
        fail("duplicate digests")
    import datetime
    for d, w in zip(got, want):
        pushed = datetime.datetime.fromtimestamp(int(d["imagePushedAt"]), datetime.timezone.utc)
        facts = (sorted(d.get("imageTags", [])), d["imageSizeInBytes"],
                 d["imageManifestMediaType"], pushed.strftime("%Y-%m-%dT%H:%M:%SZ"),
                 d["registryId"], d["repositoryName"])
        truth_facts = (w["tags"], w["size_bytes"], w["media_type"], w["pushed_at"], account, repo)
        if facts != truth_facts:
            fail(f"{d['imageDigest']}: {facts} != truth {truth_facts}")
        if "imageTags" in d and not d["imageTags"]:
            fail(f"{d['imageDigest']}: empty imageTags must be omitted")
        # An index (OCI image index, Docker manifest list) has no artifactMediaType,
        # as in ECR; an image has its config's.
        if d.get("artifactMediaType") != w["artifact_media_type"] or (
                w["index"] != ("artifactMediaType" not in d)):
            fail(f"{d['imageDigest']}: artifactMediaType {d.get('artifactMediaType')}, "
                 f"truth {w['artifact_media_type']} (index: {w['index']})")
        if not w["index"] and d["artifactMediaType"] not in (
                "application/vnd.oci.image.config.v1+json",
                "application/vnd.docker.container.image.v1+json"):
            fail(f"{d['imageDigest']}: artifactMediaType {d['artifactMediaType']}")
    if (want_next == "yes") != bool(out.get("NextToken")):
        fail(f"NextToken presence {bool(out.get('NextToken'))}, expected {want_next}")
    print(f"{len(got)} image details match truth[{start}:{start + len(got)}]")
elif mode == "token":                    # token OUT: print the CLI's NextToken
    print(load(sys.argv[5])["NextToken"])
else:
    fail("unknown mode " + mode)
PY

calls() { # calls OP OUTCOME: the ecrsim A stats counter
  curl -fsS "http://127.0.0.1:$PORT_A/_sim/stats" -o "$TMP/calls.json"
  py -c 'import json, sys
calls = json.load(open(sys.argv[3]))["calls"]
print(calls.get(sys.argv[1], {}).get(sys.argv[2], 0))' "$1" "$2" "$TMP/calls.json"
}

# ---- flags ------------------------------------------------------------------
hgf_expect_exit 0 "$ECRSIM_BIN" --help
hgf_assert_contains "$HGF_OUT" "--big-repo" "--help output"
hgf_expect_exit 2 "$ECRSIM_BIN" --no-such-flag
hgf_assert_contains "$HGF_ERR" "--no-such-flag" "unknown flag message"
hgf_expect_exit 2 "$ECRSIM_BIN" --accounts many
hgf_assert_contains "$HGF_ERR" "--accounts" "bad --accounts message"
hgf_expect_exit 2 "$ECRSIM_BIN" --key "AKIDX:s3cr3t-value:12345"
hgf_assert_contains "$HGF_ERR" "account" "bad --key message"
[[ $HGF_ERR != *s3cr3t-value* ]] || hgf_fail "a --key error printed the secret: $HGF_ERR"
hgf_expect_exit 2 "$ECRSIM_BIN" --regions "us-east-1,Mars"
hgf_assert_contains "$HGF_ERR" "--regions" "bad --regions message"

# ---- the AWS CLI ------------------------------------------------------------
start_ecrsim A --seed "$SEED" --big-repo 2500 \
  --key "$ANY_KEY:$ANY_SECRET:*" --key "$BOUND_KEY:$BOUND_SECRET:$ACCT1"
curl -fsS "http://127.0.0.1:$PORT_A/_sim/truth" -o "$TMP/truth.json"
py - "$TMP/truth.json" "$ACCT0" "$ACCT1" <<'PY' || hgf_fail "truth has an unexpected shape"
import json, sys
t = json.load(open(sys.argv[1]))
accts = sorted({r["account_id"] for r in t["registries"]})
assert t["seed"] == 7, t["seed"]
assert len(t["registries"]) == 10, len(t["registries"])
assert accts[:2] == sys.argv[2:4], accts
big = [r for r in t["registries"][0]["repositories"] if r["name"] == "big"]
assert big and len(big[0]["images"]) == 2500
assert t["registries"][0]["region"] == "us-east-1"
PY

t0=$SECONDS
aws_ecr describe-repositories --registry-id "$ACCT0" >"$TMP/repos.json"
py "$TMP/check.py" repos "$TMP/truth.json" "$ACCT0" "$REGION" "$TMP/repos.json"

before=$(calls DescribeImages ok)
aws_ecr describe-images --registry-id "$ACCT0" --repository-name big >"$TMP/big.json"
py "$TMP/check.py" images "$TMP/truth.json" "$ACCT0" "$REGION" big "$TMP/big.json" 0 2500 no
hgf_assert_eq $((before + 25)) "$(calls DescribeImages ok)" \
  "DescribeImages calls for 2500 images at the default page size 100"

before=$(calls DescribeImages ok)
aws_ecr describe-images --registry-id "$ACCT0" --repository-name big --page-size 1000 >"$TMP/big1000.json"
py "$TMP/check.py" images "$TMP/truth.json" "$ACCT0" "$REGION" big "$TMP/big1000.json" 0 2500 no
hgf_assert_eq $((before + 3)) "$(calls DescribeImages ok)" "DescribeImages calls with --page-size 1000"

aws_ecr describe-images --registry-id "$ACCT0" --repository-name big --max-items 250 >"$TMP/big250.json"
py "$TMP/check.py" images "$TMP/truth.json" "$ACCT0" "$REGION" big "$TMP/big250.json" 0 250 yes
next=$(py "$TMP/check.py" token "$TMP/truth.json" "$ACCT0" "$REGION" "$TMP/big250.json")
aws_ecr describe-images --registry-id "$ACCT0" --repository-name big --max-items 250 \
  --starting-token "$next" >"$TMP/big250b.json"
py "$TMP/check.py" images "$TMP/truth.json" "$ACCT0" "$REGION" big "$TMP/big250b.json" 250 250 yes

KEY_SECRET=wrong-secret hgf_expect_exit 255 aws_ecr describe-repositories --registry-id "$ACCT0"
hgf_assert_contains "$HGF_ERR" "InvalidSignatureException" "wrong secret"
hgf_assert_contains "$HGF_ERR" "The request signature we calculated does not match" "wrong secret message"

hgf_expect_exit 255 aws_ecr describe-images --registry-id "$ACCT0" --repository-name no-such/repo
hgf_assert_contains "$HGF_ERR" "RepositoryNotFoundException" "missing repository"
hgf_assert_contains "$HGF_ERR" \
  "The repository with name 'no-such/repo' does not exist in the registry with id '$ACCT0'" \
  "missing repository message"

# GetLifecyclePolicy and GetRepositoryPolicy: the documents /_sim/truth describes,
# and AWS's not-found errors for repositories without them.
py - "$TMP/truth.json" "$REGION" >"$TMP/policy-picks" <<'PY'
import json, sys
repos = [(reg["account_id"], r) for reg in json.load(open(sys.argv[1]))["registries"]
         if reg["region"] == sys.argv[2] for r in reg["repositories"]]
def pick(ok):
    return next(f"{a} {r['name']} {r['lifecycle_untagged_expiry_days']}" for a, r in repos if ok(r))
print(pick(lambda r: r["lifecycle_untagged_expiry_days"] is not None))
print(pick(lambda r: not r["lifecycle_policy"]))
print(pick(lambda r: r["repository_policy_allows_everyone"]))
print(pick(lambda r: not r["repository_policy"]))
PY
{ read -r lc_acct lc_repo lc_days; read -r nolc_acct nolc_repo _; read -r rp_acct rp_repo _
  read -r norp_acct norp_repo _; } <"$TMP/policy-picks"
aws_ecr get-lifecycle-policy --registry-id "$lc_acct" --repository-name "$lc_repo" >"$TMP/lc.json"
py - "$TMP/lc.json" "$lc_acct" "$lc_repo" "$lc_days" <<'PY' || hgf_fail "get-lifecycle-policy"
import json, sys
out, acct, repo, days = json.load(open(sys.argv[1])), sys.argv[2], sys.argv[3], int(sys.argv[4])
assert (out["registryId"], out["repositoryName"]) == (acct, repo), out
assert isinstance(out["lastEvaluatedAt"], (int, float)), out
rules = json.loads(out["lifecyclePolicyText"])["rules"]
windows = [r["selection"]["countNumber"] for r in rules
           if r["selection"]["tagStatus"] in ("untagged", "any")
           and r["selection"]["countType"] == "sinceImagePushed"]
assert min(windows) == days, (windows, days)
PY
hgf_expect_exit 255 aws_ecr get-lifecycle-policy --registry-id "$nolc_acct" --repository-name "$nolc_repo"
hgf_assert_contains "$HGF_ERR" "LifecyclePolicyNotFoundException" "no lifecycle policy"
hgf_assert_contains "$HGF_ERR" "Lifecycle policy does not exist for the repository with name '$nolc_repo' in the registry with id '$nolc_acct'" "no lifecycle policy message"
aws_ecr get-repository-policy --registry-id "$rp_acct" --repository-name "$rp_repo" >"$TMP/rp.json"
py - "$TMP/rp.json" "$rp_repo" <<'PY' || hgf_fail "get-repository-policy"
import json, sys
out = json.load(open(sys.argv[1]))
assert out["repositoryName"] == sys.argv[2], out
sts = json.loads(out["policyText"])["Statement"]
sts = sts if isinstance(sts, list) else [sts]
stars = [s for s in sts if s["Effect"] == "Allow" and "Condition" not in s and
         (s["Principal"] == "*" or "*" in json.dumps(s["Principal"].get("AWS")))]
assert stars, sts
PY
hgf_expect_exit 255 aws_ecr get-repository-policy --registry-id "$norp_acct" --repository-name "$norp_repo"
hgf_assert_contains "$HGF_ERR" "RepositoryPolicyNotFoundException" "no repository policy"
hgf_expect_exit 255 aws_ecr get-repository-policy --registry-id "$ACCT0" --repository-name no-such/repo
hgf_assert_contains "$HGF_ERR" "RepositoryNotFoundException" "policy of a missing repository"
cli_seconds=$((SECONDS - t0))

# ---- botocore, in one process: the edges the CLI cannot easily reach --------
py - "$LAYER" "$PORT_A" "$TMP/truth.json" "$ACCT0" "$ACCT1" \
  "$ANY_KEY" "$ANY_SECRET" "$BOUND_KEY" "$BOUND_SECRET" <<'PY' || hgf_fail "botocore checks failed"
import concurrent.futures, datetime, json, re, sys, urllib.error, urllib.request
layer, port, truth_path, acct0, acct1, any_key, any_secret, bound_key, bound_secret = sys.argv[1:]
sys.path.insert(0, layer)
import awscli  # noqa: F401  (makes the vendored botocore importable as botocore)
import botocore.auth, botocore.session
from botocore.awsrequest import AWSRequest
from botocore.config import Config
from botocore.credentials import Credentials
from botocore.exceptions import ClientError

endpoint = f"http://127.0.0.1:{port}"
truth = json.load(open(truth_path))
session = botocore.session.Session()
session.set_config_variable("config_file", "/dev/null")
cfg = Config(retries={"max_attempts": 1}, parameter_validation=False)

def client(key=any_key, secret=any_secret, region="us-east-1"):
    return session.create_client("ecr", region_name=region, endpoint_url=endpoint,
                                 aws_access_key_id=key, aws_secret_access_key=secret, config=cfg)

def expect_error(code, fn, pattern=None, **kw):
    try:
        fn(**kw)
    except ClientError as e:
        err = e.response["Error"]
        assert err["Code"] == code, f"got {err['Code']}: {err['Message']} (want {code})"
        assert e.response["ResponseMetadata"]["HTTPHeaders"].get("x-amzn-errortype") == code
        if pattern:
            assert re.fullmatch(pattern, err["Message"]), f"message {err['Message']!r} !~ {pattern!r}"
        return err["Message"]
    raise AssertionError(f"expected {code}, the call succeeded")

def raw(target, body, sign=True, key=any_key, secret=any_secret, tamper=None, service="ecr",
        token=None, extra=None):
    req = AWSRequest(method="POST", url=endpoint + "/", data=body, headers={
        "X-Amz-Target": target, "Content-Type": "application/x-amz-json-1.1"})
    if sign:
        creds = Credentials(key, secret, token)
        botocore.auth.SigV4Auth(creds, service, "us-east-1").add_auth(req)
    p = req.prepare()
    data = tamper if tamper is not None else p.body
    headers = dict(p.headers, **(extra or {}))
    r = urllib.request.Request(endpoint + "/", data=data, method="POST", headers=headers)
    try:
        with urllib.request.urlopen(r) as resp:
            return resp.status, dict(resp.headers), json.loads(resp.read())
    except urllib.error.HTTPError as e:
        return e.code, dict(e.headers), json.loads(e.read())

ecr = client()
DI = "AmazonEC2ContainerRegistry_V20150921.DescribeImages"

# Every registry, every repository, every image, paged in small steps.
for reg in truth["registries"]:
    c = client(region=reg["region"])
    names, token = [], None
    while True:
        kw = {"registryId": reg["account_id"], "maxResults": 3}
        if token:
            kw["nextToken"] = token
        page = c.describe_repositories(**kw)
        names += [r["repositoryName"] for r in page["repositories"]]
        token = page.get("nextToken")
        if not token:
            break
    assert sorted(names) == sorted(r["name"] for r in reg["repositories"]), (reg["registry"], names)
    for repo in reg["repositories"]:
        got, token = [], None
        while True:
            kw = {"registryId": reg["account_id"], "repositoryName": repo["name"],
                  "maxResults": 97 if repo["name"] == "big" else 5}
            if token:
                kw["nextToken"] = token
            page = c.describe_images(**kw)
            got += [(d["imageDigest"], sorted(d.get("imageTags", []))) for d in page["imageDetails"]]
            token = page.get("nextToken")
            if not token:
                break
        want = [(i["digest"], i["tags"]) for i in repo["images"]]
        assert got == want, (reg["registry"], repo["name"], len(got), len(want))
print("full fleet walk matches the truth")

# Filters partition the repository.
big = [r for r in truth["registries"][0]["repositories"] if r["name"] == "big"][0]
def digests(**kw):
    return [d["imageDigest"] for p in ecr.get_paginator("describe_images").paginate(
        registryId=acct0, repositoryName="big", PaginationConfig={"PageSize": 1000}, **kw)
        for d in p["imageDetails"]]
tagged = digests(filter={"tagStatus": "TAGGED"})
untagged = digests(filter={"tagStatus": "UNTAGGED"})
assert set(untagged) == {i["digest"] for i in big["images"] if not i["tags"]}
assert set(tagged) == {i["digest"] for i in big["images"] if i["tags"]}
assert untagged and tagged and len(tagged) + len(untagged) == 2500
assert digests(filter={"tagStatus": "ANY"}) == [i["digest"] for i in big["images"]]
expect_error("InvalidParameterException", ecr.describe_images, r".*filter\.tagStatus.*",
             registryId=acct0, repositoryName="big", filter={"tagStatus": "SOMETIMES"})

# imageIds by tag and by digest.
latest = [i for i in big["images"] if "latest" in i["tags"]]
assert len(latest) == 1, "exactly one image carries latest"
d = ecr.describe_images(registryId=acct0, repositoryName="big", imageIds=[
    {"imageTag": "latest"}, {"imageDigest": big["images"][3]["digest"]}])["imageDetails"]
assert [x["imageDigest"] for x in d] == [latest[0]["digest"], big["images"][3]["digest"]], d
expect_error("ImageNotFoundException", ecr.describe_images,
             r"The image with imageId \{imageDigest:'null', imageTag:'nope'\} does not exist "
             rf"within the repository with name 'big' in the registry with id '{acct0}'",
             registryId=acct0, repositoryName="big", imageIds=[{"imageTag": "nope"}])
expect_error("ImageNotFoundException", ecr.describe_images, registryId=acct0,
             repositoryName="big", imageIds=[{"imageTag": "latest",
                                              "imageDigest": big["images"][0]["digest"]}])

# Parameter validation and tokens.
for bad in (0, 1001):
    msg = expect_error("InvalidParameterException", ecr.describe_repositories,
                       registryId=acct0, maxResults=bad)
    assert "maxResults" in msg, msg
msg = expect_error("InvalidParameterException", ecr.describe_repositories, registryId=acct0,
                   repositoryNames=["big"], maxResults=5)
assert "maxResults" in msg, msg
msg = expect_error("InvalidParameterException", ecr.describe_images, registryId=acct0,
                   repositoryName="big", imageIds=[{"imageTag": "latest"}], maxResults=5)
assert "maxResults" in msg, msg
first = ecr.describe_images(registryId=acct0, repositoryName="big", maxResults=10)
assert len(first["imageDetails"]) == 10 and first["nextToken"]
for token in ("garbage", first["nextToken"][:-4] + "AAAA", "A" * 64):
    msg = expect_error("InvalidParameterException", ecr.describe_images, registryId=acct0,
                       repositoryName="big", nextToken=token)
    assert "nextToken" in msg, msg
other = [r["name"] for r in truth["registries"][0]["repositories"] if r["name"] != "big"][0]
expect_error("InvalidParameterException", ecr.describe_images, registryId=acct0,
             repositoryName=other, nextToken=first["nextToken"])
expect_error("InvalidParameterException", ecr.describe_repositories, registryId=acct0,
             nextToken=first["nextToken"])
expect_error("RepositoryNotFoundException", ecr.describe_repositories,
             rf"The repository with name 'nope' does not exist in the registry with id '{acct0}'",
             registryId=acct0, repositoryNames=["nope"])
expect_error("InvalidParameterException", ecr.describe_repositories, registryId="12345")
named = ecr.describe_repositories(registryId=acct0, repositoryNames=["big", other])
assert [r["repositoryName"] for r in named["repositories"]] == ["big", other]

# Regions and accounts outside the fleet have no repositories.
assert client(region="ap-south-1").describe_repositories(registryId=acct0)["repositories"] == []
assert ecr.describe_repositories(registryId="999999999999")["repositories"] == []
expect_error("RepositoryNotFoundException", client(region="ap-south-1").describe_images,
             registryId=acct0, repositoryName="big")

# Keys bound to an account.
bound = client(bound_key, bound_secret)
own = bound.describe_repositories()["repositories"]
assert own and {r["registryId"] for r in own} == {acct1}, own
expect_error("AccessDeniedException", bound.describe_images,
             rf"User: arn:aws:iam::{acct1}:user/ecrsim is not authorized to perform: "
             rf"ecr:DescribeImages on resource: arn:aws:ecr:us-east-1:{acct0}:repository/big.*",
             registryId=acct0, repositoryName="big")
default_registry = ecr.describe_repositories()["repositories"]
assert {r["registryId"] for r in default_registry} == {acct0}, "a '*' key defaults to account 0"

# SigV4 failures.
expect_error("UnrecognizedClientException", client("AKIDUNKNOWN", "x").describe_repositories,
             r"The security token included in the request is invalid\.")
expect_error("InvalidSignatureException", client(any_key, "wrong").describe_repositories,
             r"The request signature we calculated does not match the signature you provided\. "
             r"Check your AWS Secret Access Key and signing method\. Consult the service "
             r"documentation for details\.")
real_now = botocore.auth.get_current_datetime
for shift, pattern in ((-600, r"Signature expired: (\d{8}T\d{6}Z) is now earlier than "
                               r"(\d{8}T\d{6}Z) \((\d{8}T\d{6}Z) - 5 min\.\)"),
                       (600, r"Signature not yet current: (\d{8}T\d{6}Z) is still later than "
                             r"(\d{8}T\d{6}Z) \((\d{8}T\d{6}Z) \+ 5 min\.\)")):
    botocore.auth.get_current_datetime = lambda s=shift: real_now() + datetime.timedelta(seconds=s)
    try:
        msg = expect_error("InvalidSignatureException", ecr.describe_repositories, pattern)
    finally:
        botocore.auth.get_current_datetime = real_now
    signed, bound_t, server = (datetime.datetime.strptime(x, "%Y%m%dT%H%M%SZ")
                               for x in re.fullmatch(pattern, msg).groups())
    assert abs((server - signed).total_seconds() + shift) <= 5, msg
    assert abs((bound_t - server).total_seconds()) == 300, msg
botocore.auth.get_current_datetime = lambda: real_now() - datetime.timedelta(seconds=200)
try:
    ecr.describe_repositories()  # within the 5-minute window
finally:
    botocore.auth.get_current_datetime = real_now

body = json.dumps({"registryId": acct0, "repositoryName": "big", "maxResults": 1}).encode()
status, headers, doc = raw(DI, body, sign=False)
assert status == 400 and doc == {"__type": "MissingAuthenticationTokenException",
                                 "message": "Missing Authentication Token"}, (status, doc)
status, headers, doc = raw(DI, body)
assert status == 200 and len(doc["imageDetails"]) == 1, (status, doc)
assert re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}",
                    headers["x-amzn-RequestId"]), headers
assert headers.get("Date", "").endswith(" GMT"), headers
assert headers["Content-Type"] == "application/x-amz-json-1.1", headers
status, headers, doc = raw(DI, body, tamper=body.replace(b'"big"', b'"bog"'))
assert status == 400 and doc["__type"] == "InvalidSignatureException", (status, doc)
status, headers, doc = raw(DI, body, service="sts")
assert status == 400 and doc == {"__type": "InvalidSignatureException", "message":
    "Credential should be scoped to correct service: 'ecr'. "}, (status, doc)
status, headers, doc = raw(DI, body, token="FwoGZXIvYXdzEXAMPLE")
assert status == 400 and doc["__type"] == "UnrecognizedClientException", (status, doc)
partial = f"AWS4-HMAC-SHA256 Credential={any_key}/20260101/us-east-1/ecr/aws4_request"
status, headers, doc = raw(DI, body, sign=False, extra={"Authorization": partial})
assert status == 400 and doc["__type"] == "IncompleteSignatureException", (status, doc)
assert "SignedHeaders" in doc["message"], doc
status, headers, doc = raw("AmazonEC2ContainerRegistry_V20150921.BogusOperation", b"{}")
assert status == 400 and doc["__type"] == "UnknownOperationException", (status, doc)
assert headers["x-amzn-ErrorType"] == "UnknownOperationException", headers
status, headers, doc = raw(DI, b"[1,2")
assert status == 400 and doc["__type"] == "SerializationException", (status, doc)

# Concurrent clients are served side by side and agree with each other.
def walk(_):
    return digests()
with concurrent.futures.ThreadPoolExecutor(8) as pool:
    results = list(pool.map(walk, range(8)))
assert all(r == [i["digest"] for i in big["images"]] for r in results)
print("botocore checks passed")
PY

stats=$(curl -fsS "http://127.0.0.1:$PORT_A/_sim/stats")
py - "$stats" <<'PY' || hgf_fail "/_sim/stats does not count calls by outcome: $stats"
import json, sys
calls = json.loads(sys.argv[1])["calls"]
assert calls["DescribeImages"]["ok"] >= 28 + 16
assert calls["DescribeRepositories"]["InvalidSignatureException"] >= 4
assert calls["DescribeImages"]["RepositoryNotFoundException"] >= 2
assert calls["DescribeImages"]["AccessDeniedException"] == 1
PY
if grep -E -q "$ANY_SECRET|$BOUND_SECRET|AWS4-HMAC-SHA256|Signature=" "$TMP/A.err" "$TMP/A.out"; then
  hgf_fail "ecrsim logged a secret or an Authorization header"
fi

# ---- determinism ------------------------------------------------------------
start_ecrsim B --seed "$SEED" --big-repo 2500
curl -fsS "http://127.0.0.1:$PORT_B/_sim/truth" -o "$TMP/truth-b.json"
cmp -s "$TMP/truth.json" "$TMP/truth-b.json" || hgf_fail "the same seed gave a different truth"
start_ecrsim C --seed $((SEED + 1)) --big-repo 2500
curl -fsS "http://127.0.0.1:$PORT_C/_sim/truth" -o "$TMP/truth-c.json"
py - "$TMP/truth.json" "$TMP/truth-c.json" <<'PY' || hgf_fail "another seed gave overlapping digests"
import json, sys
def digests(path):
    t = json.load(open(path))
    return {i["digest"] for reg in t["registries"] for r in reg["repositories"] for i in r["images"]}
a, c = digests(sys.argv[1]), digests(sys.argv[2])
assert len(a) > 2500 and len(c) > 2500 and not a & c, (len(a), len(c), len(a & c))
PY
hgf_assert_contains "$(cat "$TMP/B.err")" "AKIDECRSIMDEFAULT" "default key notice"

# ---- graceful exit ----------------------------------------------------------
kill -TERM "$PID_A"
rc=0
wait "$PID_A" || rc=$?
hgf_assert_eq 0 "$rc" "ecrsim exit status after SIGTERM"
hgf_assert_contains "$(cat "$TMP/A.err")" "SIGTERM received" "shutdown log line"

printf 'test_awscli: ok (AWS CLI part %d s, total %d s)\n' "$cli_seconds" "$SECONDS"
