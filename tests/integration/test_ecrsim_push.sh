#!/usr/bin/env bash
# ecrsim's mutable fleet and its EventBridge events: pushes (new digests seen
# by DescribeImages and the registry v2 API, manifest bytes hashing to the
# digest), tag moves in MUTABLE repositories, the IMMUTABLE refusal (409 and a
# FAILURE event) and the forced re-tag, re-tags of existing digests, deletes,
# the exact event JSON and its API_KEY / BASIC / BEARER headers, retries on
# 503 and timeouts, a paced bulk push, lifecycle expiry and the "deleted
# between catalog sync and scan" trap, and /_sim/truth after all of it.
# ECR calls go through the official CLI's botocore, control calls through
# curl, and a small python3 http.server records what the webhook receives.
# The python checks run in one long-lived interpreter (py below).
#
# Needs ECRSIM_BIN (ctest sets it), curl, python3 and npm access for
# scripts/fetch-awscli on the first run.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SECONDS=0
SRC=${HGF_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
BUILD=${HGF_BUILD_DIR:-$SRC/build}
ECRSIM_BIN=${ECRSIM_BIN:-$BUILD/ecrsim}
[[ -x $ECRSIM_BIN ]] || hgf_fail "ecrsim binary not found at $ECRSIM_BIN (set ECRSIM_BIN)"
command -v curl >/dev/null || hgf_fail "curl is not installed"

AWS_CMD=$(HGF_BUILD_DIR=$BUILD "$SRC/scripts/fetch-awscli")
AWS_ENTRY=${AWS_CMD#python3 }
[[ -f $AWS_ENTRY ]] || hgf_fail "fetch-awscli printed '$AWS_CMD', which is not python3 <file>"
export LAYER
LAYER=$(dirname "$AWS_ENTRY")

TMP=$(hgf_tmpdir)
SEED=7
A0=$(printf '%012d' $((100000000000 + (SEED % 1000) * 1000000)))
REGION=us-east-1
# Fresh secrets per run, so the leak check can grep for them.
export KEY=AKIAPUSHTEST$RANDOM SECRET=push-secret-$RANDOM$RANDOM
API_KEY=api-key-$RANDOM$RANDOM$RANDOM
BASIC_PASSWORD=basic-pw-$RANDOM$RANDOM
BEARER_TOKEN=bearer-$RANDOM$RANDOM$RANDOM
RECV_LOG=$TMP/received.jsonl
: >"$RECV_LOG"

# ---- helpers -----------------------------------------------------------------
hgf_pyhost_start

# jget EXPR: evaluates a python expression over the JSON document d on stdin
# (in the helper process below: a python start per lookup is slow on a busy
# machine). Strings print bare, everything else as JSON.
jget() {
  local doc
  doc=$(</dev/stdin)
  helper jget "$1" "${doc//$'\n'/ }"
}

# ctl METHOD PATH [JSON]: a control call; body in $TMP/ctl.json, status on stdout.
ctl() {
  local method=$1 path=$2 body=${3:-}
  curl -sS -o "$TMP/ctl.json" -w '%{http_code}' -X "$method" ${body:+-H 'Content-Type: application/json' --data-binary "$body"} "$URL$path"
}
ctl_body() { cat "$TMP/ctl.json"; }
ctl_get() { jget "$1" <"$TMP/ctl.json"; }

# push REPO TAG [EXTRA JSON MEMBERS]: POST /_sim/push, expecting WANT (default 200).
push() {
  local repo=$1 tag=$2 extra=${3:-} want=${WANT:-200} tagjson=null status
  [[ -n $tag ]] && tagjson="\"$tag\""
  status=$(ctl POST /_sim/push "{\"account\":\"$A0\",\"region\":\"$REGION\",\"repository\":\"$repo\",\"tag\":$tagjson$extra}")
  hgf_assert_eq "$want" "$status" "push $repo:$tag$extra answered $(ctl_body)"
}

# truth_tags REPO DIGEST: the image's tags in /_sim/truth, "gone" when absent.
# Fast (no botocore start-up), for the checks that race the lifecycle clock.
truth_tags() {
  curl -fsS "$URL/_sim/truth" | py -s -c '
import json, sys
t = json.load(sys.stdin)
for reg in t["registries"]:
    if reg["account_id"] == sys.argv[3] and reg["region"] == sys.argv[4]:
        for repo in reg["repositories"]:
            for i in repo["images"] if repo["name"] == sys.argv[1] else []:
                if i["digest"] == sys.argv[2]:
                    print(json.dumps(sorted(i["tags"])))
                    sys.exit(0)
print("gone")' "$1" "$2" "$A0" "$REGION"
}

received_count() { wc -l <"$RECV_LOG"; }
# last_received [N]: the N-th last request the receiver recorded (default 1).
last_received() {
  local lines
  mapfile -t lines <"$RECV_LOG"
  printf '%s\n' "${lines[-${1:-1}]}"
}
# sleep_until US: sleeps until EPOCHREALTIME (in microseconds) reaches US.
sleep_until() {
  local left=$(( $1 - ${EPOCHREALTIME/./} ))
  (( left <= 0 )) || sleep "$(( left / 1000000 )).$(printf '%06d' $(( left % 1000000 )))"
}

# The ECR and registry side, through botocore, in one long-lived process
# (botocore takes a second to start): ecr SUBCOMMAND ARGS... prints one JSON
# line. Requests are tab-separated lines on its stdin; answers are one line,
# "=" and the value or "!" and the exception.
cat >"$TMP/ecr.py" <<'PY'
import base64, hashlib, json, os, sys, urllib.error, urllib.request
sys.path.insert(0, os.environ["LAYER"])
import awscli  # noqa: F401  (makes the vendored botocore importable as botocore)
import botocore.session
from botocore.config import Config
from botocore.exceptions import ClientError

url, account, region = os.environ["URL"], os.environ["A0"], os.environ["REGION"]
session = botocore.session.Session()
session.set_config_variable("config_file", "/dev/null")
ecr = session.create_client("ecr", region_name=region, endpoint_url=url,
                            config=Config(retries={"max_attempts": 1}),
                            aws_access_key_id=os.environ["KEY"],
                            aws_secret_access_key=os.environ["SECRET"])

def image(repo, kind, ref):
    """One image by digest or tag: {digest, tags} or {"error": code}."""
    try:
        d = ecr.describe_images(registryId=account, repositoryName=repo,
                                imageIds=[{"imageDigest" if kind == "digest" else "imageTag": ref}])
    except ClientError as e:
        return {"error": e.response["Error"]["Code"]}
    i = d["imageDetails"][0]
    return {"digest": i["imageDigest"], "tags": i.get("imageTags", []),
            "pushed_at": i["imagePushedAt"].timestamp()}

def images(repo):
    out, kw = [], {}
    while True:
        d = ecr.describe_images(registryId=account, repositoryName=repo, maxResults=1000, **kw)
        out += [{"digest": i["imageDigest"], "tags": sorted(i.get("imageTags", []))}
                for i in d["imageDetails"]]
        if "nextToken" not in d:
            return out
        kw = {"nextToken": d["nextToken"]}

def manifest(repo, ref, method="GET"):
    """status, sha256 of the body, Docker-Content-Digest (or the error code)."""
    auth = ecr.get_authorization_token(registryIds=[account])["authorizationData"][0]
    req = urllib.request.Request(f"{auth['proxyEndpoint']}/v2/{repo}/manifests/{ref}",
                                 method=method,
                                 headers={"Authorization": "Basic " + auth["authorizationToken"]})
    try:
        with urllib.request.urlopen(req) as r:
            body = r.read()
            return {"status": r.status, "sha256": "sha256:" + hashlib.sha256(body).hexdigest(),
                    "header": r.headers.get("Docker-Content-Digest"), "length": len(body)}
    except urllib.error.HTTPError as e:
        body = e.read()
        code = json.loads(body)["errors"][0]["code"] if body else None
        return {"status": e.code, "code": code}

def repositories():
    out, kw = {}, {}
    while True:
        d = ecr.describe_repositories(registryId=account, maxResults=1000, **kw)
        out.update({r["repositoryName"]: r["imageTagMutability"] for r in d["repositories"]})
        if "nextToken" not in d:
            return out
        kw = {"nextToken": d["nextToken"]}

def tag_lookups(truth_file):
    """Every tag of the registry in the truth resolves to its digest."""
    t = json.load(open(truth_file))
    reg = [r for r in t["registries"] if r["account_id"] == account and r["region"] == region][0]
    checked = 0
    for repo in reg["repositories"]:
        want = {tag: i["digest"] for i in repo["images"] for tag in i["tags"]}
        tags = sorted(want)
        for k in range(0, len(tags), 100):
            ids = [{"imageTag": tag} for tag in tags[k:k + 100]]
            d = ecr.describe_images(registryId=account, repositoryName=repo["name"], imageIds=ids)
            got = {tag: i["imageDigest"] for i in d["imageDetails"] for tag in i.get("imageTags", [])}
            for tag in tags[k:k + 100]:
                assert got.get(tag) == want[tag], (repo["name"], tag, got.get(tag), want[tag])
                checked += 1
    return {"checked": checked}

def jget(expr, doc):
    d = json.loads(doc)  # noqa: F841  (the expression's name for it)
    v = eval(expr)
    return v if isinstance(v, str) else json.dumps(v)

COMMANDS = {"image": image, "images": images, "manifest": manifest,
            "repositories": repositories, "tag_lookups": tag_lookups}
for line in sys.stdin:
    cmd, *args = line.rstrip("\n").split("\t")
    try:
        out = "=" + (jget(*args) if cmd == "jget" else json.dumps(COMMANDS[cmd](*args)))
    except Exception as e:  # reported to the test, which fails on it
        out = "!" + repr(e)
    print(out.replace("\n", " "), flush=True)
PY
helper() {
  local IFS=$'\t' answer
  printf '%s\n' "$*" >&"$ECR_TO"
  IFS= read -r -t 60 answer <&"$ECR_FROM" || hgf_fail "the helper did not answer: $1 $2"
  [[ $answer == =* ]] || hgf_fail "$1 $2: $answer"
  printf '%s\n' "${answer#=}"
}
ecr() { helper "$@"; }

# The webhook receiver: records every request; /flaky answers 503 twice then
# 202, /reject 400, /hang sleeps past the client's timeout, the rest 202.
cat >"$TMP/receiver.py" <<'PY'
import http.server, json, os, sys, threading, time
port_file, log_path = sys.argv[1:]
lock, counts = threading.Lock(), {}

class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # else delayed ACKs add 40 ms per keep-alive answer

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with lock:
            n = counts[self.path] = counts.get(self.path, 0) + 1
            with open(log_path, "a") as f:
                f.write(json.dumps({"path": self.path, "at": time.time(), "body": body.decode(),
                                    "headers": {k.lower(): v for k, v in self.headers.items()}}) + "\n")
        status = 503 if self.path == "/flaky" and n <= 2 else 400 if self.path == "/reject" else 202
        if self.path == "/hang":
            time.sleep(1.5)
        answer = b'{"job_id": 1}'
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)
        except OSError:
            pass

    def log_message(self, *args):
        pass

server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
server.daemon_threads = True
with open(port_file + ".tmp", "w") as f:
    f.write(f"{server.server_address[1]}\n")
os.rename(port_file + ".tmp", port_file)
server.serve_forever()
PY
hgf_bg python3 "$TMP/receiver.py" "$TMP/receiver.port" "$RECV_LOG" >"$TMP/receiver.log" 2>&1
RPORT=$(hgf_wait_for_line "$TMP/receiver.port" '^[0-9]+$' 10)
HOOK=http://127.0.0.1:$RPORT

# ---- flags ---------------------------------------------------------------------
hgf_expect_exit 2 "$ECRSIM_BIN" --webhook-api-key x
hgf_assert_contains "$HGF_ERR" "--webhook" "--webhook-api-key alone is refused"
hgf_expect_exit 2 "$ECRSIM_BIN" --webhook ftp://example.com/x
hgf_assert_contains "$HGF_ERR" "url" "a non-http --webhook is refused"
hgf_expect_exit 0 "$ECRSIM_BIN" --help
hgf_assert_contains "$HGF_OUT" "POST /_sim/push" "--help documents the push API"
hgf_assert_contains "$HGF_OUT" "--webhook-api-key" "--help documents the webhook flags"

# The big repository's tags run past v10.0.0, which the tag lookups must parse.
hgf_bg "$ECRSIM_BIN" --seed "$SEED" --accounts 2 --big-repo 1500 --key "$KEY:$SECRET:*" \
  --webhook "$HOOK/api/webhooks/ecr" --webhook-api-key "$API_KEY" >"$TMP/sim.out" 2>"$TMP/sim.err"
line=$(hgf_wait_for_line "$TMP/sim.out" '^ecrsim listening on http://127\.0\.0\.1:[0-9]+$' 15)
export URL=${line##* } A0 REGION
coproc ECR { exec python3 "$TMP/ecr.py" 2>"$TMP/ecr.err"; }
hgf_on_exit kill "$ECR_PID"
# Plain descriptors: a coprocess's own are closed in pipelines' subshells.
exec {ECR_TO}>&"${ECR[1]}" {ECR_FROM}<&"${ECR[0]}"

# ---- bad input names the member ---------------------------------------------------
hgf_assert_eq 400 "$(ctl POST /_sim/push "{\"region\":\"$REGION\",\"repository\":\"a/b\"}")" "push without account"
hgf_assert_contains "$(ctl_get 'd["error"]')" "account" "the missing account is named"
hgf_assert_eq 400 "$(ctl POST /_sim/push "{\"account\":\"$A0\",\"region\":\"$REGION\",\"repository\":\"Bad_Name\"}")" "bad repository name"
hgf_assert_contains "$(ctl_get 'd["error"]')" "repository" "the bad repository is named"
hgf_assert_eq 400 "$(ctl POST /_sim/push "{\"account\":\"$A0\",\"region\":\"$REGION\",\"repository\":\"a/b\",\"tag\":\"-x\"}")" "bad tag"
hgf_assert_contains "$(ctl_get 'd["error"]')" "tag" "the bad tag is named"
hgf_assert_eq 400 "$(ctl POST /_sim/push "{\"account\":\"$A0\",\"region\":\"$REGION\",\"repository\":\"a/b\",\"colour\":1}")" "unknown member"
hgf_assert_contains "$(ctl_get 'd["error"]')" "colour" "the unknown member is named"
hgf_assert_eq 400 "$(ctl POST /_sim/push "{\"account\":\"$A0\",\"region\":\"$REGION\",\"repository\":\"a/b\",\"count\":5,\"rate\":-1}")" "bad rate"
hgf_assert_contains "$(ctl_get 'd["error"]')" "rate" "the bad rate is named"
hgf_assert_eq 400 "$(ctl POST /_sim/delete "{\"account\":\"$A0\",\"region\":\"$REGION\",\"repository\":\"a/b\"}")" "delete without digest or tag"
hgf_assert_contains "$(ctl_get 'd["error"]')" "digest" "delete names digest"
hgf_assert_eq 400 "$(ctl POST /_sim/lifecycle "{\"account\":\"$A0\",\"region\":\"$REGION\",\"untagged_expire_after_seconds\":-3}")" "bad lifecycle"
hgf_assert_contains "$(ctl_get 'd["error"]')" "untagged_expire_after_seconds" "the bad expiry is named"
hgf_assert_eq 404 "$(ctl POST /_sim/push "{\"account\":\"999999999999\",\"region\":\"$REGION\",\"repository\":\"a/b\"}")" "push outside the fleet"
hgf_assert_eq RegistryNotFound "$(ctl_get 'd["code"]')" "an account outside the fleet"
hgf_assert_eq 404 "$(ctl POST /_sim/retag "{\"account\":\"$A0\",\"region\":\"$REGION\",\"repository\":\"no/such\",\"digest\":\"sha256:$(printf '%064d' 0)\",\"tag\":\"x\"}")" "retag in a missing repository"
hgf_assert_eq RepositoryNotFoundException "$(ctl_get 'd["code"]')" "a missing repository's code"
hgf_assert_eq 0 "$(received_count)" "refused requests deliver nothing"

# ---- push: a new digest in a new repository ---------------------------------------
T_PUSH=$(date +%s)
push hgf-push/app v1
D1=$(ctl_get 'd["digest"]')
EV1=$(ctl_get 'd["event_id"]')
hgf_assert_eq true "$(ctl_get 'd["created_repository"]')" "the repository is created"
hgf_assert_eq false "$(ctl_get 'd["immutable"]')" "a created repository is MUTABLE by default"
hgf_assert_eq null "$(ctl_get 'd["previous_digest"]')" "a new tag had no previous digest"
hgf_assert_eq 202 "$(ctl_get 'd["delivered_status"]')" "the event was delivered"
hgf_assert_eq 1 "$(ctl_get 'd["attempts"]')" "one attempt sufficed"
[[ $D1 =~ ^sha256:[0-9a-f]{64}$ ]] || hgf_fail "the push's digest: $D1"

img=$(ecr image hgf-push/app digest "$D1")
hgf_assert_eq '["v1"]' "$(jget 'd["tags"]' <<<"$img")" "DescribeImages sees the pushed image"
py -c 'import sys, time; assert abs(float(sys.argv[1]) - time.time()) < 120, sys.argv[1]' \
  "$(jget 'd["pushed_at"]' <<<"$img")" || hgf_fail "imagePushedAt is not the push time"
hgf_assert_eq "$D1" "$(ecr image hgf-push/app tag v1 | jget 'd["digest"]')" "the tag resolves to the digest"
for ref in v1 "$D1"; do
  m=$(ecr manifest hgf-push/app "$ref")
  hgf_assert_eq 200 "$(jget 'd["status"]' <<<"$m")" "manifest GET by $ref"
  hgf_assert_eq "$D1" "$(jget 'd["sha256"]' <<<"$m")" "the manifest bytes hash to the digest ($ref)"
  hgf_assert_eq "$D1" "$(jget 'd["header"]' <<<"$m")" "Docker-Content-Digest ($ref)"
done
hgf_assert_eq 200 "$(ecr manifest hgf-push/app "$D1" HEAD | jget 'd["status"]')" "manifest HEAD"

# The event, exactly as EventBridge's API destination sends it.
hgf_assert_eq 1 "$(received_count)" "one push, one request"
last_received | py -s -c '
import calendar, json, re, sys, time
r = json.load(sys.stdin)
a0, d1, ev, t0, key = sys.argv[1:]
assert r["path"] == "/api/webhooks/ecr", r["path"]
h = r["headers"]
assert h["content-type"] == "application/json", h
assert h["x-api-key"] == key, "the API key header did not arrive"
assert "authorization" not in h, h
e = json.loads(r["body"])
assert list(e) == ["version", "id", "detail-type", "source", "account", "time", "region",
                   "resources", "detail"], list(e)
assert list(e["detail"]) == ["result", "repository-name", "image-digest", "action-type",
                             "image-tag"], list(e["detail"])
assert e["version"] == "0" and e["detail-type"] == "ECR Image Action" and e["source"] == "aws.ecr"
assert e["account"] == a0 and e["region"] == "us-east-1" and e["resources"] == [], e
assert e["id"] == ev and re.fullmatch(r"[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}", ev), ev
assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", e["time"]), e["time"]
when = calendar.timegm(time.strptime(e["time"], "%Y-%m-%dT%H:%M:%SZ"))
assert int(t0) - 1 <= when <= time.time() + 1, (e["time"], t0)
assert e["detail"] == {"result": "SUCCESS", "repository-name": "hgf-push/app", "image-digest": d1,
                       "action-type": "PUSH", "image-tag": "v1"}, e["detail"]
' "$A0" "$D1" "$EV1" "$T_PUSH" "$API_KEY" || hgf_fail "the delivered event is not EventBridge's"

# ---- a tag moves in a MUTABLE repository --------------------------------------------
hgf_assert_eq 200 "$(ctl POST /_sim/retag "{\"account\":\"$A0\",\"region\":\"$REGION\",\"repository\":\"hgf-push/app\",\"digest\":\"$D1\",\"tag\":\"stable\"}")" "retag D1 stable"
push hgf-push/app v1
D2=$(ctl_get 'd["digest"]')
hgf_assert_eq "$D1" "$(ctl_get 'd["previous_digest"]')" "the tag's previous digest"
[[ $D2 != "$D1" ]] || hgf_fail "a push must make a new digest"
hgf_assert_eq '["stable"]' "$(ecr image hgf-push/app digest "$D1" | jget 'd["tags"]')" "the old image keeps its other tag"
hgf_assert_eq "$D2" "$(ecr manifest hgf-push/app v1 | jget 'd["sha256"]')" "v1 now pulls the new image"
push hgf-push/app stable
D3=$(ctl_get 'd["digest"]')
hgf_assert_eq '[]' "$(ecr image hgf-push/app digest "$D1" | jget 'd["tags"]')" "losing its last tag leaves the image untagged"
hgf_assert_eq 200 "$(ecr manifest hgf-push/app "$D1" | jget 'd["status"]')" "an untagged image is still pullable by digest"
hgf_assert_eq 4 "$(received_count)" "three pushes and a re-tag, four events"
hgf_assert_eq "$D1" "$(last_received 3 | jget 'json.loads(d["body"])["detail"]["image-digest"]')" "the re-tag's event names the existing digest"
hgf_assert_eq stable "$(last_received 3 | jget 'json.loads(d["body"])["detail"]["image-tag"]')" "the re-tag's event names the tag"

# ---- IMMUTABLE: a re-push of a tag fails, a forced re-tag moves it ----------------------
push hgf-push/locked r1 ',"immutable":true'
D4=$(ctl_get 'd["digest"]')
hgf_assert_eq true "$(ctl_get 'd["immutable"]')" "the repository is created IMMUTABLE"
n=$(received_count)
WANT=409 push hgf-push/locked r1
REFUSED=$(ctl_get 'd["digest"]')
hgf_assert_eq ImageTagAlreadyExistsException "$(ctl_get 'd["code"]')" "the refusal's code"
hgf_assert_contains "$(ctl_get 'd["error"]')" "cannot be overwritten because the repository is immutable" "the refusal's message"
hgf_assert_eq "$D4" "$(ctl_get 'd["previous_digest"]')" "the refusal names the tag's digest"
hgf_assert_eq $((n + 1)) "$(received_count)" "the refused push is reported"
last_received | py -s -c '
import json, sys
e = json.loads(json.load(sys.stdin)["body"])
assert e["detail"] == {"result": "FAILURE", "repository-name": "hgf-push/locked",
                       "image-digest": sys.argv[1], "action-type": "PUSH", "image-tag": "r1"}, e
' "$REFUSED" || hgf_fail "the refused push's event is not a FAILURE"
hgf_assert_eq "$D4" "$(ecr image hgf-push/locked tag r1 | jget 'd["digest"]')" "r1 still names the first image"
hgf_assert_eq ImageNotFoundException "$(ecr image hgf-push/locked digest "$REFUSED" | jget 'd["error"]')" "the refused manifest is not stored"
WANT=400 push hgf-push/locked r2 ',"immutable":false'
hgf_assert_contains "$(ctl_get 'd["error"]')" "immutable" "a contradicting mutability is named"
push hgf-push/locked r1 ',"force":true'
D5=$(ctl_get 'd["digest"]')
hgf_assert_eq "$D4" "$(ctl_get 'd["previous_digest"]')" "the forced re-tag's previous digest"
hgf_assert_eq "$D5" "$(ecr image hgf-push/locked tag r1 | jget 'd["digest"]')" "the forced re-tag moves r1"
hgf_assert_eq '[]' "$(ecr image hgf-push/locked digest "$D4" | jget 'd["tags"]')" "the first image is left untagged"
hgf_assert_eq SUCCESS "$(last_received | jget 'json.loads(d["body"])["detail"]["result"]')" "the forced re-tag is a SUCCESS"
hgf_assert_eq "$D5" "$(last_received | jget 'json.loads(d["body"])["detail"]["image-digest"]')" "the forced re-tag's event has the new digest"
hgf_assert_eq 409 "$(ctl POST /_sim/retag "{\"account\":\"$A0\",\"region\":\"$REGION\",\"repository\":\"hgf-push/locked\",\"digest\":\"$D4\",\"tag\":\"r1\"}")" "retag onto a taken immutable tag"
hgf_assert_eq ImageTagAlreadyExistsException "$(ctl_get 'd["code"]')" "retag onto a taken immutable tag: code"

# ---- re-tag an existing digest; deletes -----------------------------------------------
n=$(received_count)
hgf_assert_eq 200 "$(ctl POST /_sim/retag "{\"account\":\"$A0\",\"region\":\"$REGION\",\"repository\":\"hgf-push/app\",\"digest\":\"$D1\",\"tag\":\"rc\"}")" "retag the untagged D1"
hgf_assert_eq '["rc"]' "$(ecr image hgf-push/app digest "$D1" | jget 'd["tags"]')" "the re-tag is visible"
hgf_assert_eq "$D1" "$(ecr manifest hgf-push/app rc | jget 'd["sha256"]')" "the new tag pulls the same manifest"
last_received | py -s -c '
import json, sys
e = json.loads(json.load(sys.stdin)["body"])
assert e["detail"] == {"result": "SUCCESS", "repository-name": "hgf-push/app",
                       "image-digest": sys.argv[1], "action-type": "PUSH", "image-tag": "rc"}, e
' "$D1" || hgf_fail "the re-tag's event"
hgf_assert_eq 409 "$(ctl POST /_sim/retag "{\"account\":\"$A0\",\"region\":\"$REGION\",\"repository\":\"hgf-push/app\",\"digest\":\"$D1\",\"tag\":\"rc\"}")" "the same re-tag twice"
hgf_assert_eq ImageAlreadyExistsException "$(ctl_get 'd["code"]')" "the same re-tag twice: code"
hgf_assert_eq $((n + 1)) "$(received_count)" "a refused identical re-tag sends no event"

# A generated image of a generated repository takes a new tag too.
curl -fsS "$URL/_sim/truth" -o "$TMP/truth0.json"
read -r REPO_G DIGEST_G < <(py - "$TMP/truth0.json" "$A0" <<'PY'
import json, sys
t = json.load(open(sys.argv[1]))
reg = [r for r in t["registries"] if r["account_id"] == sys.argv[2] and r["region"] == "us-east-1"][0]
repo = [r for r in reg["repositories"] if len(r["images"]) > 2 and r["tag_mutability"] == "MUTABLE"][0]
print(repo["name"], repo["images"][1]["digest"])
PY
)
hgf_assert_eq 200 "$(ctl POST /_sim/retag "{\"account\":\"$A0\",\"region\":\"$REGION\",\"repository\":\"$REPO_G\",\"digest\":\"$DIGEST_G\",\"tag\":\"promoted\"}")" "retag a generated image"
hgf_assert_eq "$DIGEST_G" "$(ecr manifest "$REPO_G" promoted | jget 'd["sha256"]')" "the generated image under its new tag"

n=$(received_count)
hgf_assert_eq 200 "$(ctl POST /_sim/delete "{\"account\":\"$A0\",\"region\":\"$REGION\",\"repository\":\"hgf-push/app\",\"tag\":\"rc\"}")" "delete by tag"
hgf_assert_eq "$D1" "$(ctl_get 'd["digest"]')" "the deleted digest"
last_received | py -s -c '
import json, sys
e = json.loads(json.load(sys.stdin)["body"])
assert e["detail-type"] == "ECR Image Action" and e["source"] == "aws.ecr", e
assert e["detail"] == {"result": "SUCCESS", "repository-name": "hgf-push/app",
                       "image-digest": sys.argv[1], "action-type": "DELETE", "image-tag": "rc"}, e
' "$D1" || hgf_fail "the DELETE event"
hgf_assert_eq ImageNotFoundException "$(ecr image hgf-push/app digest "$D1" | jget 'd["error"]')" "a deleted image is gone from DescribeImages"
hgf_assert_eq ImageNotFoundException "$(ecr image hgf-push/app tag rc | jget 'd["error"]')" "its tag is gone too"
m=$(ecr manifest hgf-push/app "$D1")
hgf_assert_eq 404 "$(jget 'd["status"]' <<<"$m")" "a deleted manifest"
hgf_assert_eq MANIFEST_UNKNOWN "$(jget 'd["code"]' <<<"$m")" "a deleted manifest's code"
hgf_assert_eq 200 "$(ctl POST /_sim/delete "{\"account\":\"$A0\",\"region\":\"$REGION\",\"repository\":\"hgf-push/locked\",\"digest\":\"$D4\"}")" "delete an untagged image by digest"
last_received | py -s -c '
import json, sys
e = json.loads(json.load(sys.stdin)["body"])
assert e["detail"] == {"result": "SUCCESS", "repository-name": "hgf-push/locked",
                       "image-digest": sys.argv[1], "action-type": "DELETE"}, e
' "$D4" || hgf_fail "an untagged image's DELETE event has no image-tag"
hgf_assert_eq 404 "$(ctl POST /_sim/delete "{\"account\":\"$A0\",\"region\":\"$REGION\",\"repository\":\"hgf-push/locked\",\"digest\":\"$D4\"}")" "delete twice"
hgf_assert_eq ImageNotFoundException "$(ctl_get 'd["code"]')" "delete twice: code"
hgf_assert_eq $((n + 2)) "$(received_count)" "two deletes, two events"
push hgf-push/app quiet ',"deliver":false'
hgf_assert_eq null "$(ctl_get 'd["event_id"]')" "deliver:false sends no event"
hgf_assert_eq $((n + 2)) "$(received_count)" "deliver:false sends nothing"

# ---- BASIC and BEARER connections; secrets stay out of GET /_sim/webhook ----------------
hgf_assert_eq 200 "$(ctl POST /_sim/webhook "{\"url\":\"$HOOK/basic\",\"auth\":{\"type\":\"BASIC\",\"username\":\"eb\",\"password\":\"$BASIC_PASSWORD\"}}")" "BASIC webhook"
push hgf-push/auth b1
want=$(printf 'eb:%s' "$BASIC_PASSWORD" | base64 -w0)
hgf_assert_eq "Basic $want" "$(last_received | jget 'd["headers"]["authorization"]')" "the Basic credentials arrive"
hgf_assert_eq 200 "$(ctl POST /_sim/webhook "{\"url\":\"$HOOK/bearer\",\"auth\":{\"type\":\"BEARER\",\"token\":\"$BEARER_TOKEN\"}}")" "BEARER webhook"
push hgf-push/auth b2
hgf_assert_eq "Bearer $BEARER_TOKEN" "$(last_received | jget 'd["headers"]["authorization"]')" "the bearer token arrives"
hgf_assert_eq 200 "$(ctl GET /_sim/webhook)" "GET /_sim/webhook"
hgf_assert_eq BEARER "$(ctl_get 'd["auth"]["type"]')" "the auth type is shown"
[[ $(ctl_body) != *"$BEARER_TOKEN"* ]] || hgf_fail "GET /_sim/webhook shows the token"
hgf_assert_eq 400 "$(ctl POST /_sim/webhook "{\"url\":\"$HOOK/x\",\"auth\":{\"type\":\"BASIC\",\"username\":\"eb\"}}")" "BASIC without a password"
hgf_assert_contains "$(ctl_get 'd["error"]')" "auth.password" "the missing password is named"
hgf_assert_eq 400 "$(ctl POST /_sim/webhook "{\"url\":\"$HOOK/x\",\"auth\":{\"type\":\"OAUTH\"}}")" "an unknown auth type"
hgf_assert_contains "$(ctl_get 'd["error"]')" "auth.type" "the unknown auth type is named"

# ---- retries: 503 twice then 202; a final 400; timeouts -----------------------------------
hgf_assert_eq 200 "$(ctl POST /_sim/webhook "{\"url\":\"$HOOK/flaky\",\"auth\":{\"type\":\"API_KEY\",\"value\":\"$API_KEY\"}}")" "flaky webhook"
push hgf-push/retry f1
hgf_assert_eq 202 "$(ctl_get 'd["delivered_status"]')" "delivered in the end"
hgf_assert_eq 3 "$(ctl_get 'd["attempts"]')" "after three attempts"
EVF=$(ctl_get 'd["event_id"]')
hgf_assert_eq 200 "$(ctl GET /_sim/events)" "GET /_sim/events"
py - "$TMP/ctl.json" "$EVF" "$RECV_LOG" <<'PY' || hgf_fail "the retried delivery's record"
import json, sys
d = json.load(open(sys.argv[1]))
rec = [e for e in d["events"] if e["event"]["id"] == sys.argv[2]]
assert len(rec) == 1, rec
rec = rec[0]
assert [a["status"] for a in rec["attempts"]] == [503, 503, 202], rec["attempts"]
assert rec["status"] == 202 and rec["latency_ms"] >= 400, rec  # two 200 ms pauses
assert all(a["latency_ms"] >= 0 for a in rec["attempts"]), rec
got = [json.loads(l) for l in open(sys.argv[3])]
same = [g for g in got if g["path"] == "/flaky" and json.loads(g["body"])["id"] == sys.argv[2]]
assert len(same) == 3, len(same)  # the same event, three times
assert same[2]["at"] - same[0]["at"] >= 0.35, [g["at"] for g in same]
PY
hgf_assert_eq 200 "$(ctl POST /_sim/webhook "{\"url\":\"$HOOK/reject\"}")" "rejecting webhook"
push hgf-push/retry f2
hgf_assert_eq 400 "$(ctl_get 'd["delivered_status"]')" "a 400 is final"
hgf_assert_eq 1 "$(ctl_get 'd["attempts"]')" "a 400 is not retried"
hgf_assert_eq 200 "$(ctl POST /_sim/webhook "{\"url\":\"$HOOK/hang\",\"timeout_ms\":300}")" "hanging webhook"
push hgf-push/retry f3
hgf_assert_eq 0 "$(ctl_get 'd["delivered_status"]')" "no answer within the timeout"
hgf_assert_eq 3 "$(ctl_get 'd["attempts"]')" "timeouts are retried"
EVH=$(ctl_get 'd["event_id"]')
ctl GET /_sim/events >/dev/null
py -c '
import json, sys
d = json.load(open(sys.argv[1]))
rec = [e for e in d["events"] if e["event"]["id"] == sys.argv[2]][0]
assert all(a["status"] == 0 and "imeout" in a["error"] and a["latency_ms"] < 1200 for a in rec["attempts"]), rec
' "$TMP/ctl.json" "$EVH" || hgf_fail "the timed-out attempts are recorded"

hgf_assert_eq 200 "$(ctl DELETE /_sim/webhook)" "remove the webhook"
hgf_assert_eq null "$(ctl_get 'd["url"]')" "no webhook left"
WANT=400 push hgf-push/app x ',"deliver":true'
hgf_assert_contains "$(ctl_get 'd["error"]')" "deliver" "deliver without a webhook is named"
push hgf-push/app x
hgf_assert_eq null "$(ctl_get 'd["event_id"]')" "without a webhook nothing is delivered by default"

# ---- bulk: 200 events at 100/s ------------------------------------------------------------
hgf_assert_eq 200 "$(ctl POST /_sim/webhook "{\"url\":\"$HOOK/api/webhooks/ecr\",\"auth\":{\"type\":\"API_KEY\",\"header\":\"X-Api-Key\",\"value\":\"$API_KEY\"}}")" "API-key webhook again"
n=$(received_count)
hgf_assert_eq 202 "$(ctl POST /_sim/push "{\"account\":\"$A0\",\"region\":\"$REGION\",\"repository\":\"hgf-push/bulk\",\"tag\":\"bulk\",\"count\":200,\"rate\":100}")" "bulk push"
BATCH=$(ctl_get 'd["batch"]')
for (( i = 0; i < 100; i++ )); do
  ctl GET "/_sim/events?batch=$BATCH" >/dev/null
  [[ $(ctl_get 'd["batch"]["done"]') == true ]] && break
  sleep 0.1
done
py - "$TMP/ctl.json" "$RECV_LOG" "$n" <<'PY' || hgf_fail "the bulk push"
import json, sys
d = json.load(open(sys.argv[1]))
b = d["batch"]
assert b["done"] and b["pushed"] == 200 and b["delivered"] == 200 and b["failed"] == 0, b
assert 1900 <= b["elapsed_ms"] <= 3500, f"200 events at 100/s took {b['elapsed_ms']} ms"
assert d["summary"]["events"] == 200 and d["summary"]["ok"] == 200, d["summary"]
assert len(d["events"]) == 200 and all(e["batch"] == b["id"] for e in d["events"])
got = [json.loads(l) for l in open(sys.argv[2])][int(sys.argv[3]):]
events = [json.loads(g["body"]) for g in got if g["path"] == "/api/webhooks/ecr"]
assert len(events) == 200, len(events)
tags = sorted(e["detail"]["image-tag"] for e in events)
assert tags == sorted(f"bulk-{i}" for i in range(1, 201)), tags[:5]
assert len({e["detail"]["image-digest"] for e in events}) == 200
span = max(g["at"] for g in got) - min(g["at"] for g in got)
assert 1.7 <= span <= 3.5, f"the receiver saw the events over {span:.2f} s"
print(f"bulk: {b['elapsed_ms']:.0f} ms, latency p50 {d['summary']['latency_ms']['p50']:.1f} ms "
      f"p99 {d['summary']['latency_ms']['p99']:.1f} ms")
PY
hgf_assert_eq 200 "$(ecr images hgf-push/bulk | jget 'len(d)')" "DescribeImages lists the bulk pushes"

# ---- lifecycle: untagged images expire, silently ---------------------------------------------
push hgf-push/lc x
D6=$(ctl_get 'd["digest"]')
push hgf-push/lc x
D7=$(ctl_get 'd["digest"]')
n=$(received_count)
hgf_assert_eq 200 "$(ctl POST /_sim/lifecycle "{\"account\":\"$A0\",\"region\":\"$REGION\",\"repository\":\"hgf-push/lc\",\"untagged_expire_after_seconds\":3}")" "lifecycle rule"
ruled=${EPOCHREALTIME/./}  # D6, untagged before the rule, expires 3 s after it
hgf_assert_eq 3 "$(ctl_get 'd["untagged_expire_after_seconds"]')" "the rule is echoed"
hgf_assert_eq '[]' "$(truth_tags hgf-push/lc "$D6")" "before its time the untagged image stays"
# ecrsim keeps milliseconds: the 3 s, and a margin.
sleep_until $(( ruled + 3300000 ))
hgf_assert_eq ImageNotFoundException "$(ecr image hgf-push/lc digest "$D6" | jget 'd["error"]')" "the untagged image expired"
m=$(ecr manifest hgf-push/lc "$D6")
hgf_assert_eq 404 "$(jget 'd["status"]' <<<"$m")" "an expired manifest"
hgf_assert_eq MANIFEST_UNKNOWN "$(jget 'd["code"]' <<<"$m")" "an expired manifest's code"
hgf_assert_eq '["x"]' "$(ecr image hgf-push/lc digest "$D7" | jget 'd["tags"]')" "tagged images stay"
hgf_assert_eq "$n" "$(received_count)" "expirations send no event"
push hgf-push/lc x
untagged7=${EPOCHREALTIME/./}  # D7 lost its tag by now
D8=$(ctl_get 'd["digest"]')
hgf_assert_eq '[]' "$(truth_tags hgf-push/lc "$D7")" "an image untagged later waits its full time"
sleep_until $(( untagged7 + 3300000 ))
hgf_assert_eq ImageNotFoundException "$(ecr image hgf-push/lc digest "$D7" | jget 'd["error"]')" "and then expires"

# The trap: listed by the catalog sync, gone when the scan pulls it.
push hgf-push/trap t
D9=$(ctl_get 'd["digest"]')
push hgf-push/trap t
D10=$(ctl_get 'd["digest"]')
hgf_assert_eq 200 "$(ctl POST /_sim/lifecycle "{\"account\":\"$A0\",\"region\":\"$REGION\",\"repository\":\"hgf-push/trap\",\"delete_on_next_manifest_get\":true}")" "arm the trap"
hgf_assert_eq '[]' "$(ecr image hgf-push/trap digest "$D9" | jget 'd["tags"]')" "the catalog still lists the untagged image"
hgf_assert_eq 200 "$(ecr manifest hgf-push/trap "$D10" HEAD | jget 'd["status"]')" "a tagged image is not trapped"
m=$(ecr manifest hgf-push/trap "$D9" HEAD)
hgf_assert_eq 404 "$(jget 'd["status"]' <<<"$m")" "the untagged image is gone at scan time"
hgf_assert_eq ImageNotFoundException "$(ecr image hgf-push/trap digest "$D9" | jget 'd["error"]')" "and gone from DescribeImages"
push hgf-push/trap t
D11=$(ctl_get 'd["digest"]')
hgf_assert_eq 200 "$(ecr manifest hgf-push/trap "$D10" | jget 'd["status"]')" "the trap fires once"

# A registry-wide rule covers every repository, and those created later.
untagged_in() { # untagged_in REGION: "<untagged> <tagged>" images of A0 there
  curl -fsS "$URL/_sim/truth" | py -s -c '
import json, sys
t = json.load(sys.stdin)
reg = [r for r in t["registries"] if r["account_id"] == sys.argv[1] and r["region"] == sys.argv[2]][0]
images = [i for repo in reg["repositories"] for i in repo["images"]]
print(sum(not i["tags"] for i in images), sum(bool(i["tags"]) for i in images))' "$A0" "$1"
}
read -r untagged tagged < <(untagged_in eu-west-1)
(( untagged > 0 )) || hgf_fail "the generated eu-west-1 registry has no untagged image to expire"
hgf_assert_eq 200 "$(ctl POST /_sim/lifecycle "{\"account\":\"$A0\",\"region\":\"eu-west-1\",\"untagged_expire_after_seconds\":0}")" "registry-wide rule"
hgf_assert_eq null "$(ctl_get 'd["repository"]')" "the rule names no repository"
hgf_assert_eq "0 $tagged" "$(untagged_in eu-west-1)" "every untagged image of the registry expired, no tagged one"
for i in 1 2; do
  hgf_assert_eq 200 "$(ctl POST /_sim/push "{\"account\":\"$A0\",\"region\":\"eu-west-1\",\"repository\":\"hgf-push/later\",\"tag\":\"l\"}")" "push $i into a new eu-west-1 repository"
  [[ $i == 2 ]] || DL=$(ctl_get 'd["digest"]')
done
hgf_assert_eq gone "$(REGION=eu-west-1 truth_tags hgf-push/later "$DL")" "a repository created later follows the registry's rule"

# ---- the truth and the catalog reflect everything --------------------------------------------
curl -fsS "$URL/_sim/truth" -o "$TMP/truth.json"
py - "$TMP/truth.json" "$A0" "$D1" "$D2" "$D3" "$D5" "$D6" "$D7" "$D8" "$D9" "$D10" "$D11" \
  "$REPO_G" "$DIGEST_G" "$REFUSED" "$D4" <<'PY' || hgf_fail "the truth after the mutations"
import json, sys
t = json.load(open(sys.argv[1]))
a0, d1, d2, d3, d5, d6, d7, d8, d9, d10, d11, repo_g, digest_g, refused, d4 = sys.argv[2:]
reg = [r for r in t["registries"] if r["account_id"] == a0 and r["region"] == "us-east-1"][0]
names = [r["name"] for r in reg["repositories"]]
assert names == sorted(names), "repositories stay sorted"
repos = {r["name"]: r for r in reg["repositories"]}
def tags(repo):
    return {i["digest"]: sorted(i["tags"]) for i in repos[repo]["images"]}
app = tags("hgf-push/app")
assert d1 not in app and app[d2] == ["v1"] and app[d3] == ["stable"], app
locked = repos["hgf-push/locked"]
assert locked["tag_mutability"] == "IMMUTABLE" and tags("hgf-push/locked") == {d5: ["r1"]}, locked
assert refused not in json.dumps(t) and d4 not in json.dumps(t)
assert repos["hgf-push/app"]["tag_mutability"] == "MUTABLE"
assert len(repos["hgf-push/bulk"]["images"]) == 200
assert tags("hgf-push/lc") == {d8: ["x"]}, tags("hgf-push/lc")
trap = tags("hgf-push/trap")
assert d9 not in trap and trap[d10] == [] and trap[d11] == ["t"], trap
assert "promoted" in tags(repo_g)[digest_g]
PY
hgf_assert_eq IMMUTABLE "$(ecr repositories | jget 'd["hgf-push/locked"]')" "DescribeRepositories sees the created repository"
hgf_assert_eq MUTABLE "$(ecr repositories | jget 'd["hgf-push/bulk"]')" "and the bulk one"
checked=$(ecr tag_lookups "$TMP/truth.json" | jget 'd["checked"]')
# About 1,800: the platform manifests of multi-arch indexes are untagged.
(( checked > 1500 )) || hgf_fail "too few tags checked: $checked"

# ---- the event log, and no secret in the simulator's log -----------------------------------
hgf_assert_eq 200 "$(ctl GET /_sim/events)" "GET /_sim/events"
hgf_assert_eq "$(ctl_get 'd["logged"]')" "$(ctl_get 'd["total"]')" "every delivery is logged"
(( $(ctl_get 'd["total"]') >= 220 )) || hgf_fail "too few deliveries logged: $(ctl_get 'd["total"]')"
hgf_assert_eq 200 "$(ctl DELETE /_sim/events)" "DELETE /_sim/events"
hgf_assert_eq 0 "$(ctl GET /_sim/events >/dev/null; ctl_get 'len(d["events"])')" "the log is cleared"
for secret in "$API_KEY" "$BASIC_PASSWORD" "$BEARER_TOKEN" "$SECRET"; do
  if grep -qF -- "$secret" "$TMP/sim.err" "$TMP/sim.out"; then
    hgf_fail "a secret reached ecrsim's output"
  fi
done

printf 'ok: test_ecrsim_push (%d s)\n' "$SECONDS"
