#!/usr/bin/env bash
# ecrsim's multi-arch images: the generated fleet holds OCI image indexes and
# Docker manifest lists, each listing a linux/amd64 and a linux/arm64 manifest
# that are untagged images of the repository too (as ECR stores a `docker
# buildx --push`), and POST /_sim/push "index" adds one. Checks that
# /_sim/truth marks indexes and their children (pushed ones too);
# that the official CLI's `ecr describe-images` lists both with ECR's media
# types (no artifactMediaType for an index, its largest manifest's size);
# that the registry v2 API serves an index by tag and digest (GET and HEAD)
# with bytes hashing to its digest and manifests[] naming the children, and
# serves each child and its config blob; and that an hgfleet sync and sweep
# with the `none` scanner ends with every digest, index or not, scanned ok.
#
# Needs ECRSIM_BIN and HGFLEET_BIN (ctest sets them), the pg fixture, curl,
# python3 and npm access for scripts/fetch-awscli on the first run.
set -euo pipefail
# shellcheck source=tests/integration/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

hgf_awscli_setup
HGFLEET_BIN=${HGFLEET_BIN:-$BUILD/hgfleet}
[[ -x $HGFLEET_BIN ]] || hgf_fail "hgfleet binary not found at $HGFLEET_BIN (set HGFLEET_BIN)"

TMP=$(hgf_tmpdir)
# Seed 3 with 4 repositories of about 16 images holds OCI indexes and Docker
# manifest lists, tagged ones among them (the fleet is a function of the seed).
SEED=3
REGION=us-east-1
ACCOUNT=$(printf '%012d' $((100000000000 + (SEED % 1000) * 1000000)))
export AWS_ACCESS_KEY_ID=AKIDECRSIMDEFAULT AWS_SECRET_ACCESS_KEY=ecrsim-default-secret
unset AWS_SESSION_TOKEN AWS_ENDPOINT_URL HGFLEET_LOG_FORMAT HGFLEET_SWEEP_SCHEDULE \
  HGFLEET_RESCAN_AFTER || true

hgf_bg "$ECRSIM_BIN" --seed "$SEED" --accounts 1 --regions "$REGION" --repos 4 --images 16 \
  >"$TMP/sim.out" 2>"$TMP/sim.log"
line=$(hgf_wait_for_line "$TMP/sim.out" 'listening on http://' 10)
URL=${line##* }

# A pushed multi-arch image (POST /_sim/push "index"): a Docker manifest list
# in a new repository, then an OCI index onto the same tag, which moves.
push_index() {
  curl -fsS -H 'Content-Type: application/json' --data-binary \
    "{\"account\":\"$ACCOUNT\",\"region\":\"$REGION\",\"repository\":\"hgf-index/pushed\",\"tag\":\"multi\",\"index\":\"$1\"}" \
    "$URL/_sim/push"
}
push_index docker >"$TMP/push1.json"
push_index oci >"$TMP/push2.json"
hgf_expect_exit 0 curl -sS -o "$TMP/bad.json" -w '%{http_code}' -H 'Content-Type: application/json' \
  --data-binary "{\"account\":\"$ACCOUNT\",\"region\":\"$REGION\",\"repository\":\"hgf-index/pushed\",\"index\":\"arm\"}" \
  "$URL/_sim/push"
hgf_assert_eq 400 "$HGF_OUT" "an unknown index format is refused"
curl -fsS "$URL/_sim/truth" >"$TMP/truth.json"
python3 - "$TMP/truth.json" "$TMP/push1.json" "$TMP/push2.json" <<'PY'
import json, sys
t = json.load(open(sys.argv[1]))
p1, p2 = json.load(open(sys.argv[2])), json.load(open(sys.argv[3]))
repo = [r for reg in t["registries"] for r in reg["repositories"]
        if r["name"] == "hgf-index/pushed"][0]
by = {i["digest"]: i for i in repo["images"]}
assert len(by) == 6, sorted(by)
assert p2["previous_digest"] == p1["digest"], (p1, p2)
for p, mt, tags in ((p1, "application/vnd.docker.distribution.manifest.list.v2+json", []),
                    (p2, "application/vnd.oci.image.index.v1+json", ["multi"])):
    i = by[p["digest"]]
    assert i["index"] and i["media_type"] == mt and i["tags"] == tags, i
    assert i["children"] == p["children"], (i, p)
    assert all(not by[c]["tags"] and not by[c]["index"] for c in p["children"]), p
print("push: a Docker manifest list and an OCI index, the tag moved to the second")
PY

hgf_pyhost_start "$LAYER"
aws_ecr() {
  py AWS_CONFIG_FILE=/dev/null AWS_SHARED_CREDENTIALS_FILE=/dev/null \
    AWS_EC2_METADATA_DISABLED=true AWS_MAX_ATTEMPTS=1 \
    "$AWS_ENTRY" --endpoint-url "$URL" --region "$REGION" --output json ecr "$@"
}

# ---- the truth: indexes, their children, and the repositories holding them ----
python3 - "$TMP/truth.json" "$TMP/repos" <<'PY'
import json, sys
t = json.load(open(sys.argv[1]))
MT_INDEX = {"application/vnd.oci.image.index.v1+json":
            "application/vnd.oci.image.manifest.v1+json",
            "application/vnd.docker.distribution.manifest.list.v2+json":
            "application/vnd.docker.distribution.manifest.v2+json"}
kinds, tagged, repos = set(), 0, set()
for reg in t["registries"]:
    for repo in reg["repositories"]:
        by = {i["digest"]: i for i in repo["images"]}
        for i in repo["images"]:
            assert isinstance(i["index"], bool), i
            if not i["index"]:
                assert "children" not in i and i["artifact_media_type"], i
                continue
            repos.add(repo["name"])
            kinds.add(i["media_type"])
            tagged += bool(i["tags"])
            assert i["media_type"] in MT_INDEX, i
            assert i["artifact_media_type"] is None, i
            assert len(i["children"]) == 2, i
            kids = [by[c] for c in i["children"]]
            assert [k["platform"] for k in kids] == ["linux/amd64", "linux/arm64/v8"], kids
            for k in kids:
                assert not k["tags"] and not k["index"], k
                assert k["media_type"] == MT_INDEX[i["media_type"]], (i, k)
                assert k["pushed_at"] <= i["pushed_at"], (i, k)
            assert i["size_bytes"] == max(k["size_bytes"] for k in kids), (i, kids)
assert len(kinds) == 2, f"want both an OCI index and a Docker manifest list, got {kinds}"
assert tagged >= 1, "no tagged index"
open(sys.argv[2], "w").write("\n".join(sorted(repos)) + "\n")
print(f"truth: {len(repos)} repositories with indexes, {tagged} tagged")
PY
mapfile -t REPOS <"$TMP/repos"

# ---- DescribeImages (the official CLI) against the truth ----
for repo in "${REPOS[@]}"; do
  aws_ecr describe-images --registry-id "$ACCOUNT" --repository-name "$repo" \
    >"$TMP/describe.json" || hgf_fail "describe-images $repo: $(cat "$TMP/describe.json")"
  python3 - "$TMP/truth.json" "$TMP/describe.json" "$repo" <<'PY'
import json, sys, datetime
t, got, name = json.load(open(sys.argv[1])), json.load(open(sys.argv[2])), sys.argv[3]
repo = [r for reg in t["registries"] for r in reg["repositories"] if r["name"] == name][0]
got = {d["imageDigest"]: d for d in got["imageDetails"]}
assert set(got) == {i["digest"] for i in repo["images"]}, (name, sorted(got))
n = 0
for i in repo["images"]:
    if not (i["index"] or "platform" in i):
        continue
    d, n = got[i["digest"]], n + 1
    pushed = datetime.datetime.fromtimestamp(int(d["imagePushedAt"]), datetime.timezone.utc)
    assert d["imageManifestMediaType"] == i["media_type"], (d, i)
    assert d.get("artifactMediaType") == i["artifact_media_type"], (d, i)
    assert ("artifactMediaType" in d) != i["index"], d
    assert d["imageSizeInBytes"] == i["size_bytes"], (d, i)
    assert pushed.strftime("%Y-%m-%dT%H:%M:%SZ") == i["pushed_at"], (d, i)
    assert sorted(d.get("imageTags", [])) == sorted(i["tags"]), (d, i)
print(f"describe-images {name}: {n} indexes and platform manifests match the truth")
PY
done

# ---- the registry v2 API: indexes by tag and digest, children, config blobs ----
aws_ecr get-authorization-token --registry-ids "$ACCOUNT" >"$TMP/token.json" ||
  hgf_fail "get-authorization-token: $(cat "$TMP/token.json")"
python3 - "$TMP/truth.json" "$TMP/token.json" <<'PY'
import hashlib, json, sys, urllib.request
t, auth = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))["authorizationData"][0]
ep, basic = auth["proxyEndpoint"], "Basic " + auth["authorizationToken"]
ACCEPT = ", ".join(["application/vnd.docker.distribution.manifest.v2+json",
                    "application/vnd.docker.distribution.manifest.list.v2+json",
                    "application/vnd.oci.image.manifest.v1+json",
                    "application/vnd.oci.image.index.v1+json"])

class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *a, **k):
        return None
plain = urllib.request.build_opener(NoRedirect)

def get(path, method="GET"):
    req = urllib.request.Request(ep + path, method=method,
                                 headers={"Authorization": basic, "Accept": ACCEPT})
    try:
        r = plain.open(req)
    except urllib.error.HTTPError as e:
        return e.code, e.headers, e.read()
    return r.status, r.headers, r.read()

def manifest(repo, ref, want_digest, want_type):
    for method in ("GET", "HEAD"):
        status, h, body = get(f"/v2/{repo}/manifests/{ref}", method)
        assert status == 200, (repo, ref, method, status, body)
        assert h["Docker-Content-Digest"] == want_digest, (ref, method, dict(h))
        assert h["Content-Type"] == want_type, (ref, method, h["Content-Type"], want_type)
        if method == "GET":
            got = body
            assert "sha256:" + hashlib.sha256(body).hexdigest() == want_digest, (repo, ref)
        else:
            assert int(h["Content-Length"]) == len(got), (ref, dict(h))
    return got

n = 0
for reg in t["registries"]:
    for repo in reg["repositories"]:
        by = {i["digest"]: i for i in repo["images"]}
        for i in (i for i in repo["images"] if i["index"]):
            n += 1
            body = manifest(repo["name"], i["digest"], i["digest"], i["media_type"])
            for tag in i["tags"]:
                assert manifest(repo["name"], tag, i["digest"], i["media_type"]) == body
            m = json.loads(body)
            assert m["schemaVersion"] == 2 and m["mediaType"] == i["media_type"], m
            assert [e["digest"] for e in m["manifests"]] == i["children"], (m, i)
            for e, arch in zip(m["manifests"], ("amd64", "arm64")):
                kid = by[e["digest"]]
                assert e["mediaType"] == kid["media_type"], (e, kid)
                assert e["platform"]["os"] == "linux" and e["platform"]["architecture"] == arch, e
                kbody = manifest(repo["name"], e["digest"], e["digest"], kid["media_type"])
                assert e["size"] == len(kbody), (e, len(kbody))
                cfg = json.loads(kbody)["config"]
                assert cfg["mediaType"] == kid["artifact_media_type"], (cfg, kid)
                status, h, _ = get(f"/v2/{repo['name']}/blobs/{cfg['digest']}")
                assert status == 307, (cfg, status)
                with urllib.request.urlopen(h["Location"]) as r:
                    blob = r.read()
                assert "sha256:" + hashlib.sha256(blob).hexdigest() == cfg["digest"], cfg
                assert len(blob) == cfg["size"], cfg
                assert json.loads(blob)["architecture"] == arch, blob[:200]
            status, _, _ = get(f"/v2/{repo['name']}/manifests/{i['digest'][:-4]}0000")
            assert status == 404, status
assert n >= 1, "no index served"
print(f"registry: {n} indexes, by digest and tag, and their {2 * n} platform manifests and configs")
PY

# ---- hgfleet: sync and sweep the registry with the `none` scanner ----
HGFLEET_DATABASE_URL=$(hgf_new_db ecrsim_index)
HGFLEET_MASTER_KEY=$(openssl rand -base64 32)
export HGFLEET_DATABASE_URL HGFLEET_MASTER_KEY HGFLEET_SCANNER=none AWS_EC2_METADATA_DISABLED=true
export AWS_ENDPOINT_URL_ECR=$URL
hgf_expect_exit 0 "$HGFLEET_BIN" migrate
hgf_expect_exit 0 "$HGFLEET_BIN" connection add "$ACCOUNT.dkr.ecr.$REGION.amazonaws.com" \
  --schedule manual
hgf_expect_exit 0 "$HGFLEET_BIN" sync --all --wait
hgf_expect_exit 0 "$HGFLEET_BIN" sweep --wait --report "$TMP/report.json"
hgf_psql "$HGFLEET_DATABASE_URL" -c "
  select i.digest || ' ' || coalesce(i.media_type, '-') || ' ' ||
         coalesce((select s.status from scans s where s.image_id = i.id order by s.id desc limit 1),
                  'none')
  from images i where i.deleted_at is null order by 1" >"$TMP/scans.txt"
python3 - "$TMP/truth.json" "$TMP/scans.txt" "$TMP/report.json" <<'PY'
import json, sys
t = json.load(open(sys.argv[1]))
rows = [l.split() for l in open(sys.argv[2]) if l.strip()]
got = {d: (mt, st) for d, mt, st in rows}
want = {i["digest"]: i for reg in t["registries"] for r in reg["repositories"] for i in r["images"]}
assert set(got) == set(want), (len(got), len(want))
for d, i in want.items():
    assert got[d] == (i["media_type"], "ok"), (d, got[d], i["media_type"], i["index"])
idx = sum(i["index"] for i in want.values())
rep = json.load(open(sys.argv[3]))
assert rep["totals"]["images_scanned"] == len(want), rep["totals"]
print(f"hgfleet: {len(want)} digests scanned ok, {idx} of them indexes")
PY
echo "PASS test_ecrsim_index"
