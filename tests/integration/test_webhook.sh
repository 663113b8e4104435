#!/usr/bin/env bash
# POST /api/webhooks/ecr against every response code of the HTTP contract,
# push events turned into scans (a known digest under a new tag is only a tag
# move; a new digest under an old tag is a re-tag and is scanned), the
# lifecycle race (a scan whose manifest is gone ends skipped, the image marked
# deleted), 503 while the database is down, and 10,000 malformed bodies.
set -euo pipefail
# shellcheck source=tests/integration/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

tmp=$(hgf_tmpdir)
# Its own cluster: this test stops the database to see the 503.
url=$("$HGF_SOURCE_DIR/scripts/pg-harness" start "$tmp/pg" | tail -1)
hgf_on_exit "$HGF_SOURCE_DIR/scripts/pg-harness" stop "$tmp/pg"
export HGFLEET_DATABASE_URL=$url
token=$(openssl rand -hex 24)
export HGFLEET_WEBHOOK_TOKEN=$token HGFLEET_LOG_FORMAT=json AWS_EC2_METADATA_DISABLED=true
unset AWS_SESSION_TOKEN AWS_ENDPOINT_URL || true
H=$HGFLEET_BIN
q() { hgf_psql "$HGFLEET_DATABASE_URL" -c "$1"; }

hgf_bg "$ECRSIM_BIN" --seed 3 --accounts 1 --regions us-east-1 --repos 3 --images 4 \
  >"$tmp/ecrsim.out" 2>"$tmp/ecrsim.log"
line=$(hgf_wait_for_line "$tmp/ecrsim.out" 'listening on http://' 10)
sim=${line##* }
export AWS_ENDPOINT_URL_ECR=$sim AWS_ACCESS_KEY_ID=AKIDECRSIMDEFAULT AWS_SECRET_ACCESS_KEY=ecrsim-default-secret
curl -fsS "$sim/_sim/truth" >"$tmp/truth.json"
read -r acct reg repo digest1 digest2 tag1 < <(python3 -c '
import json,sys
t = json.load(open(sys.argv[1])); g = t["registries"][0]
r = next(r for r in g["repositories"] if len([i for i in r["images"] if i["tags"]]) >= 2)
ims = [i for i in r["images"] if i["tags"]]
print(g["account_id"], g["registry"], r["name"], ims[0]["digest"], ims[1]["digest"], ims[0]["tags"][0])' "$tmp/truth.json")

hgf_expect_exit 0 "$H" migrate
# The tag filter matches nothing: the store knows the repositories but no
# digest, so every pushed digest below is new to hgfleet yet real in ecrsim.
hgf_expect_exit 0 "$H" connection add "$reg" --schedule on_push --tag-include 'no-such-tag-*'
hgf_expect_exit 0 "$H" sync --all --wait

export HGFLEET_LISTEN=127.0.0.1:0 HGFLEET_WORKERS=2
hgf_bg "$H" serve >"$tmp/serve.out" 2>"$tmp/serve.log"
serve_pid=$HGF_BG_PID
l=$(hgf_wait_for_line "$tmp/serve.out" 'serving on http://' 10)
base=${l##* }
hook=$base/api/webhooks/ecr
for (( i = 0; i < 50; i++ )); do curl -fsS "$base/readyz" >/dev/null 2>&1 && break; sleep 0.1; done

mk() { # mk ACTION DIGEST TAG ACCOUNT DETAIL_TYPE RESULT REPO -> JSON on stdout
  python3 -c '
import json, sys
action, digest, tag, account, dt, result, repo = sys.argv[1:8]
e = {"version": "0", "id": "13cde686-328b-6117-af20-0e5566167482", "detail-type": dt,
     "source": "aws.ecr", "account": account, "time": "2026-11-30T01:54:34Z",
     "region": "us-east-1", "resources": [],
     "detail": {"result": result, "repository-name": repo, "image-digest": digest,
                "action-type": action}}
if tag: e["detail"]["image-tag"] = tag
print(json.dumps(e))' "$@"
}
post() { # post EXPECTED_CODE BODY [curl args...]: prints the response body
  local want=$1 body=$2
  shift 2
  local code
  code=$(curl -sS -o "$tmp/resp" -w '%{http_code}' -X POST "$hook" --data-binary "$body" "$@")
  [[ $code == "$want" ]] || hgf_fail "expected HTTP $want, got $code: $(cat "$tmp/resp")"
  cat "$tmp/resp"
}
J=(-H 'Content-Type: application/json')
A=(-H "Authorization: Bearer $token")

ev=$(mk PUSH "$digest1" "$tag1" "$acct" "ECR Image Action" SUCCESS "$repo")
# --- authentication and framing ---
post 401 "$ev" "${J[@]}" >/dev/null
post 401 "$ev" "${J[@]}" -H 'Authorization: Bearer wrong-token-wrong-token' >/dev/null
post 401 "$ev" "${J[@]}" -H 'X-Api-Key: nope' >/dev/null
post 415 "$ev" -H 'Content-Type: text/plain' "${A[@]}" >/dev/null
# A header's trailing whitespace is not part of its value (RFC 9110 OWS): the
# token still matches (415 proves the request got past authentication).
post 415 "$ev" -H 'Content-Type: text/plain' -H "Authorization: Bearer $token  " >/dev/null
post 401 "$ev" "${J[@]}" -H "Authorization: Bearer ${token}x " >/dev/null
curl -sS -o /dev/null -D "$tmp/h401" -X POST "$hook" --data-binary "$ev" "${J[@]}"
grep -qi '^WWW-Authenticate: Bearer' "$tmp/h401" || hgf_fail "a 401 names its scheme (WWW-Authenticate)"
code=$(curl -sS -o /dev/null -D "$tmp/h405" -w '%{http_code}' "$hook")
hgf_assert_eq 405 "$code" "GET on the webhook"
grep -qi '^Allow: POST' "$tmp/h405" || hgf_fail "a 405 names the allowed methods (Allow)"
python3 -c 'print("{\"pad\":\"" + "x" * 300000 + "\"}")' >"$tmp/big.json"
code=$(curl -sS -o /dev/null -w '%{http_code}' -X POST "$hook" --data-binary @"$tmp/big.json" "${J[@]}" "${A[@]}")
hgf_assert_eq 413 "$code" "bodies over 256 KiB"
r=$(post 400 '{"detail-type": ' "${J[@]}" "${A[@]}")
hgf_assert_contains "$r" '"field":"body"' "malformed JSON names the body"
r=$(post 400 "$(mk PUSH "$digest1" "$tag1" "$acct" "ECR Image Action" SUCCESS "")" "${J[@]}" "${A[@]}")
hgf_assert_contains "$r" 'detail.repository-name' "a missing field is named"
r=$(post 400 "$(mk PUSH sha256:nothex "$tag1" "$acct" "ECR Image Action" SUCCESS "$repo")" "${J[@]}" "${A[@]}")
hgf_assert_contains "$r" 'detail.image-digest' "a bad digest is named"
r=$(post 400 "$(mk PUSH "$digest1" "$tag1" 12345 "ECR Image Action" SUCCESS "$repo")" "${J[@]}" "${A[@]}")
hgf_assert_contains "$r" '"field":"account"' "a bad account is named"
# ECR's repository name grammar, not only its characters: "../x" would be a
# path in the scan's registry URL.
for bad in ../../etc /abc a//b ab. a..b a___b -ab; do
  r=$(post 400 "$(mk PUSH "$digest1" "$tag1" "$acct" "ECR Image Action" SUCCESS "$bad")" "${J[@]}" "${A[@]}")
  hgf_assert_contains "$r" 'detail.repository-name' "repository name '$bad' is refused"
done
hgf_assert_eq 0 "$(q "select count(*) from repositories where name like '%..%' or name like '/%'")" \
  "no refused name was recorded"
r=$(post 400 "$(mk PUSH "$digest1" "$tag1" "$acct" "ECR Image Action" SUCCESS "$repo" |
  python3 -c 'import json,sys; e = json.load(sys.stdin); e["time"] = 1234; print(json.dumps(e))')" \
  "${J[@]}" "${A[@]}")
hgf_assert_contains "$r" '"field":"time"' "a time that is not a string is named"

# --- understood and ignored: 200 with a reason ---
r=$(post 200 "$(mk PUSH "$digest1" "$tag1" "$acct" "ECR Image Scan" SUCCESS "$repo")" "${J[@]}" "${A[@]}")
hgf_assert_contains "$r" ignored "another detail-type"
r=$(post 200 "$(mk PUSH "$digest1" "$tag1" "$acct" "ECR Image Action" FAILURE "$repo")" "${J[@]}" "${A[@]}")
hgf_assert_contains "$r" "did not succeed" "a failed push"
r=$(post 200 "$(mk PUSH "$digest1" "$tag1" "$acct" "ECR Image Action" FAILURE "$repo" |
  python3 -c 'import json,sys; e = json.load(sys.stdin); del e["detail"]["image-digest"]; print(json.dumps(e))')" \
  "${J[@]}" "${A[@]}")
hgf_assert_contains "$r" "did not succeed" "a failed push without a digest is ignored, not refused"
r=$(post 200 "$(mk PUSH "$digest1" "$tag1" 999999999999 "ECR Image Action" SUCCESS "$repo")" "${J[@]}" "${A[@]}")
hgf_assert_contains "$r" "unknown registry" "an unknown registry"
r=$(post 200 "$(mk PUSH "$digest1" "$tag1" 999999999999 "ECR Image Action" SUCCESS "$repo" |
  python3 -c 'import json,sys; e = json.load(sys.stdin); e["region"] = "cn-north-1"; print(json.dumps(e))')" \
  "${J[@]}" "${A[@]}")
hgf_assert_contains "$r" "999999999999.dkr.ecr.cn-north-1.amazonaws.com.cn" \
  "an unknown registry in China is named with its partition's suffix"

# --- a push of a new digest queues a push-priority scan; every auth form works ---
r=$(post 202 "$ev" "${J[@]}" "${A[@]}")
job1=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["job_id"])' <<<"$r")
hgf_assert_eq 10 "$(q "select priority from jobs where id = $job1")" "push scans jump the queue"
r=$(post 202 "$(mk PUSH "$digest1" other "$acct" "ECR Image Action" SUCCESS "brand-new/repo")" \
  "${J[@]}" -H "X-Api-Key: $token")
hgf_assert_eq 1 "$(q "select count(*) from repositories where name = 'brand-new/repo'")" \
  "a push into a repository never seen before records it"
basic=$(printf 'eventbridge:%s' "$token" | base64 -w0)
# --- a known digest under a new tag: a tag move, no scan ---
r=$(post 200 "$(mk PUSH "$digest1" moved-tag "$acct" "ECR Image Action" SUCCESS "$repo")" \
  "${J[@]}" -H "Authorization: Basic $basic")
hgf_assert_contains "$r" '"tag_moved":true' "the tag move is recorded"
hgf_assert_eq 1 "$(q "select count(*) from jobs where kind = 'scan' and dedup_key like '%$repo@$digest1'")" \
  "a known digest under a new tag queues no scan"
# --- a new digest under an existing tag (re-tag, immutable re-push): scanned ---
r=$(post 202 "$(mk PUSH "$digest2" "$tag1" "$acct" "ECR Image Action" SUCCESS "$repo")" "${J[@]}" "${A[@]}")
hgf_assert_eq 1 "$(q "select count(*) from tag_events where tag = '$tag1' and old_digest = '$digest1' and new_digest = '$digest2' and source = 'push'")" \
  "the re-tag is a tag event from the old digest to the new one"
hgf_assert_eq 1 "$(q "select count(*) from jobs where kind = 'scan' and dedup_key like '%$repo@$digest2'")" \
  "the new digest under the old tag is scanned"

# --- scans run: both real digests end ok ---
for (( i = 0; i < 100; i++ )); do
  [[ $(q "select count(*) from jobs where kind = 'scan' and state in ('queued','running')") == 0 ]] && break
  sleep 0.1
done
hgf_assert_eq 2 "$(q "select count(*) from scans s join images i on i.id = s.image_id join repositories r on r.id = i.repository_id where r.name = '$repo' and s.status = 'ok'")" \
  "both pushed digests were scanned"

# --- the lifecycle race: the manifest is gone by scan time ---
ghost=sha256:$(openssl rand -hex 32)
post 202 "$(mk PUSH "$ghost" ghost "$acct" "ECR Image Action" SUCCESS "$repo")" "${J[@]}" "${A[@]}" >/dev/null
for (( i = 0; i < 100; i++ )); do
  st=$(q "select s.status from scans s join images i on i.id = s.image_id where i.digest = '$ghost'")
  [[ -n $st ]] && [[ $st != running ]] && break
  sleep 0.1
done
hgf_assert_eq skipped "$st" "a scan whose manifest is gone ends skipped"
err=$(q "select s.error from scans s join images i on i.id = s.image_id where i.digest = '$ghost'")
hgf_assert_contains "$err" "untagged window" "the reason gives the guide's remedy"
hgf_assert_eq t "$(q "select deleted_at is not null from images where digest = '$ghost'")" "the image is marked deleted"
hgf_assert_eq "done" "$(q "select state from jobs where dedup_key like '%@$ghost'")" "no retry storm: the job is done"

# --- DELETE marks the image deleted ---
r=$(post 200 "$(mk DELETE "$digest2" "" "$acct" "ECR Image Action" SUCCESS "$repo")" "${J[@]}" "${A[@]}")
hgf_assert_contains "$r" deleted "delete acknowledged"
hgf_assert_eq t "$(q "select deleted_at is not null from images where digest = '$digest2'")" "DELETE marks the image deleted"

# --- 10,000 malformed bodies: no crash, no growth ---
rss() { awk '/VmRSS/ {print $2}' "/proc/$serve_pid/status"; }
before=$(rss)
python3 - "$hook" "$token" <<'PY'
import http.client, json, random, sys, urllib.parse
u = urllib.parse.urlparse(sys.argv[1]); tok = sys.argv[2]
rnd = random.Random(7)
base = {"version": "0", "detail-type": "ECR Image Action", "source": "aws.ecr", "account": "123456789012",
        "region": "us-east-1", "detail": {"result": "SUCCESS", "repository-name": "x",
        "image-digest": "sha256:" + "a" * 64, "action-type": "PUSH", "image-tag": "t"}}
def body(i):
    k = i % 8
    if k == 0: return bytes(rnd.getrandbits(8) for _ in range(rnd.randint(0, 200)))
    if k == 1: return json.dumps(base)[: rnd.randint(0, 150)].encode()
    if k == 2: return json.dumps([base] * 3).encode()
    if k == 3:
        b = json.loads(json.dumps(base)); b["detail"]["image-digest"] = rnd.choice([None, 1, [], {}, "x" * 5000]); return json.dumps(b).encode()
    if k == 4:
        b = json.loads(json.dumps(base)); b["detail"] = rnd.choice([None, "s", 3, []]); return json.dumps(b).encode()
    if k == 5: return ("[" * rnd.randint(1, 3000)).encode()
    if k == 6: return json.dumps({"detail-type": "\u0000\ud800", "source": 5}).encode("utf-8", "surrogatepass")
    b = json.loads(json.dumps(base)); b["account"] = "1" * rnd.randint(0, 20); b["region"] = "us-east-1\n"; return json.dumps(b).encode()
c = http.client.HTTPConnection(u.hostname, u.port, timeout=10)
codes = {}
for i in range(10000):
    c.request("POST", u.path, body=body(i), headers={"Content-Type": "application/json", "Authorization": "Bearer " + tok})
    r = c.getresponse(); r.read()
    codes[r.status] = codes.get(r.status, 0) + 1
print("malformed bodies:", codes)
assert set(codes) <= {200, 400}, codes
PY
after=$(rss)
echo "serve RSS before ${before} kB, after ${after} kB"
if [[ ${HGF_SANITIZED:-0} == 1 ]]; then
  echo "RSS bound not checked under ASan: its quarantine holds freed memory; LeakSanitizer checks serve at exit"
else
  (( after - before < 8192 )) || hgf_fail "serve grew by $(( after - before )) kB over 10,000 bad bodies"
fi
curl -fsS "$base/healthz" >/dev/null || hgf_fail "serve died"

# --- database frozen: it neither answers nor refuses (a stalled host, a full
# disk). The webhook answers 503 within EventBridge's 5 s instead of holding
# the request, and the event it could not confirm is applied once the
# database wakes; EventBridge's retry then finds it.
datadir=$(<"$tmp/pg/datadir")
postmaster=$(head -1 "$datadir/postmaster.pid")
mapfile -t frozen < <(echo "$postmaster"; pgrep -P "$postmaster" || true)
thaw() { kill -CONT "${frozen[@]}" 2>/dev/null || true; }
hgf_on_exit thaw
# A real digest the test has not pushed yet, so that its scan finds it.
read -r repo4 digest4 < <(python3 -c '
import json, sys
g = json.load(open(sys.argv[1]))["registries"][0]
used = set(sys.argv[2:])
print(next(f"{r['"'"'name'"'"']} {i['"'"'digest'"'"']}" for r in g["repositories"] for i in r["images"]
           if i["digest"] not in used))' "$tmp/truth.json" "$digest1" "$digest2")
hgf_assert_eq 0 "$(q "select count(*) from images where digest = '$digest4'")" "the digest is new to hgfleet"
ev4=$(mk PUSH "$digest4" frozen "$acct" "ECR Image Action" SUCCESS "$repo4")
kill -STOP "${frozen[@]}"
t0=$(date +%s.%N)
code=$(curl -sS -m 20 -o "$tmp/resp" -w '%{http_code}' -X POST "$hook" --data-binary "$ev4" \
  "${J[@]}" "${A[@]}" || true)
took=$(python3 -c "import sys; print(f'{float(sys.argv[2]) - float(sys.argv[1]):.2f}')" "$t0" "$(date +%s.%N)")
thaw
hgf_assert_eq 503 "$code" "the webhook answers 503 while the database is frozen"
python3 -c "import sys; assert float(sys.argv[1]) < 5, sys.argv[1]" "$took" ||
  hgf_fail "the 503 took ${took}s, over EventBridge's 5 s"
echo "frozen database: 503 in ${took}s"
hgf_wait_sql "select count(*) from images where digest = '$digest4'" 1 20 \
  "the unconfirmed event applied once the database woke"
code=$(curl -sS -o "$tmp/resp" -w '%{http_code}' -X POST "$hook" --data-binary "$ev4" "${J[@]}" "${A[@]}")
# 202 with the live scan's job while it is queued, 200 once it has run.
[[ $code == 200 || $code == 202 ]] || hgf_fail "EventBridge's retry: expected 200 or 202, got $code"
hgf_assert_eq 1 "$(q "select count(*) from jobs where kind = 'scan' and payload->>'digest' = '$digest4'")" \
  "the event and its retry queued one scan, not two"

# --- database down: 503 so EventBridge retries, and nothing is lost ---
"$HGF_SOURCE_DIR/scripts/pg-harness" stop "$tmp/pg" >/dev/null
ev3=$(mk PUSH "sha256:$(openssl rand -hex 32)" later "$acct" "ECR Image Action" SUCCESS "$repo")
code=$(curl -sS -o "$tmp/resp" -w '%{http_code}' -X POST "$hook" --data-binary "$ev3" "${J[@]}" "${A[@]}")
hgf_assert_eq 503 "$code" "the webhook answers 503 while the database is down"
echo "PASS: webhook"
