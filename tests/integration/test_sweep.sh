#!/usr/bin/env bash
# Sweeps end to end: 3 accounts x 2 regions in ecrsim plus one connection
# whose static key is wrong. `sweep --wait` syncs and scans everything,
# exits 1 (partial) with the failed connection diagnosed, and its report
# matches ecrsim's truth; an unchanged second sweep queues no scans; the CSV
# and HTML renderings parse; bad input exits 2 before a sweep row exists.
set -euo pipefail
# shellcheck source=tests/integration/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

tmp=$(hgf_tmpdir)
HGFLEET_DATABASE_URL=$(hgf_new_db sweep)
HGFLEET_MASTER_KEY=$(openssl rand -base64 32)
export HGFLEET_DATABASE_URL HGFLEET_MASTER_KEY HGFLEET_LOG_FORMAT=json HGFLEET_SCANNER=none
unset AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN AWS_ENDPOINT_URL_ECR HGFLEET_RESCAN_AFTER || true
seed=11
regions=(us-east-1 eu-west-1)
accounts=()
keyflags=()
for i in 0 1 2; do
  acct=$(printf '%012d' $((100000000000 + seed * 1000000 + i)))
  accounts+=("$acct")
  secret=$(openssl rand -hex 20)
  keyflags+=(--key "AKIATESTACCOUNT00${i}:${secret}:${acct}")
  printf '%s\n' "$secret" >"$tmp/secret$i"
done
hgf_bg "$ECRSIM_BIN" --seed $seed --accounts 3 --regions us-east-1,eu-west-1 "${keyflags[@]}" \
  >"$tmp/ecrsim.out" 2>"$tmp/ecrsim.log"
line=$(hgf_wait_for_line "$tmp/ecrsim.out" 'listening on http://' 10)
sim_url=${line##* }
export AWS_ENDPOINT_URL_ECR=$sim_url
H=$HGFLEET_BIN
db() { hgf_psql "$HGFLEET_DATABASE_URL" -c "$1"; }

# --- validation first: exit 2, and no sweep is started ---
(
  export HGFLEET_DATABASE_URL=postgresql://nobody@127.0.0.1:1/none
  hgf_expect_exit 2 "$H" sweep --wait --format xml
  hgf_assert_contains "$HGF_ERR" "--format" "an unknown format names the flag"
  hgf_expect_exit 2 "$H" sweep --wait --report /nonexistent-dir/r.json
  hgf_assert_contains "$HGF_ERR" "--report" "an unwritable path names the flag"
  hgf_expect_exit 2 "$H" sweep --wait --rescan-after 7x
  hgf_expect_exit 2 "$H" sweep show abc
)
hgf_expect_exit 0 "$H" migrate
for i in 0 1 2; do
  for r in "${regions[@]}"; do
    hgf_expect_exit 0 "$H" connection add "${accounts[$i]}.dkr.ecr.$r.amazonaws.com" \
      --access-key-id "AKIATESTACCOUNT00$i" --secret-access-key-file "$tmp/secret$i"
  done
done
printf 'wrong-secret\n' >"$tmp/wrong"
bad_reg="${accounts[0]}.dkr.ecr.ap-south-1.amazonaws.com"
hgf_expect_exit 0 "$H" connection add "$bad_reg" --access-key-id AKIATESTACCOUNT000 \
  --secret-access-key-file "$tmp/wrong"
ro=$tmp/ro
mkdir "$ro"
chmod 555 "$ro"
if [[ $(id -u) != 0 ]]; then # root writes anywhere: only the missing-dir case applies then
  hgf_expect_exit 2 "$H" sweep --wait --report "$ro/r.json"
fi
hgf_expect_exit 2 "$H" sweep --wait --report "$tmp/nodir/r.json"
hgf_expect_exit 2 "$H" sweep --wait --format pdf --report "$tmp/r.json"
hgf_expect_exit 2 "$H" sweep --report "$tmp/r.json"
hgf_assert_contains "$HGF_ERR" "--wait" "a report needs --wait"
hgf_assert_eq 0 "$(db 'select count(*) from sweeps')" "usage errors start no sweep"

# A scan's diagnosis left from before (the pull was mended since) is cleared
# by the first scan that ends ok; the bad connection's sync replaces its own.
db "update connections set last_diagnosis =
    '{\"code\": \"pull_denied\", \"source\": \"scan\"}'" >/dev/null

# --- the first sweep: partial, the failure diagnosed ---
hgf_expect_exit 1 "$H" sweep --wait --report "$tmp/r.json"
hgf_assert_eq 0 "$(db "select count(*) from connections where last_diagnosis->>'source' = 'scan'")" \
  "scans that end ok clear a scan's diagnosis"
hgf_assert_contains "$HGF_OUT" "partial" "the summary says partial"
hgf_assert_contains "$HGF_ERR" "sweep: connections" "progress on stderr"
curl -fsS "$sim_url/_sim/truth" >"$tmp/truth.json"
python3 - "$tmp/truth.json" "$tmp/r.json" "$bad_reg" <<'PY'
import json, sys, datetime
truth, rep, bad = json.load(open(sys.argv[1])), json.load(open(sys.argv[2])), sys.argv[3]
for k in ("sweep_id", "started_at", "finished_at", "status", "totals", "connections"):
    assert k in rep, k
assert rep["status"] == "partial", rep["status"]
conns = {c["registry"]: c for c in rep["connections"]}
assert len(conns) == 7, sorted(conns)
b = conns[bad]
assert b["status"] == "failed", b
d = b["diagnosis"]
assert d and d.get("symptom") and d.get("cause") and d.get("fix"), d
now = datetime.datetime.now(datetime.timezone.utc)
want_tot = {}
for reg in truth["registries"]:
    c = conns[reg["registry"]]
    assert c["status"] == "ok", c
    repos = reg["repositories"]
    imgs = [im for r in repos for im in r["images"]]
    stale = sum(1 for im in imgs if im["tags"] and
                (now - datetime.datetime.fromisoformat(im["pushed_at"].replace("Z", "+00:00"))).days > 180)
    want = {"repositories": len(repos), "images": len(imgs), "images_scanned": len(imgs)}
    for k, v in want.items():
        assert c[k] == v, (reg["registry"], k, c[k], v)
    post = {"scan_on_push_disabled": sum(1 for r in repos if not r["scan_on_push"]),
            "tag_mutability_mutable": sum(1 for r in repos if r["tag_mutability"] == "MUTABLE"),
            "untagged_images_piling_up": sum(1 for r in repos
                                             if sum(1 for im in r["images"] if not im["tags"]) > 10),
            "tagged_image_older_than_180d": stale}
    for k, v in post.items():
        assert c["posture"][k] == v, (reg["registry"], k, c["posture"][k], v)
    for k, v in {**want, **post}.items():
        want_tot[k] = want_tot.get(k, 0) + v
    for k in ("no_lifecycle_policy", "repository_policy_allows_everyone", "image_runs_as_root",
              "lifecycle_expires_untagged_before_scan"):
        assert isinstance(c["posture"][k], int), (k, c["posture"][k])
    assert set(c["findings"]) == {"critical", "high", "medium", "low", "unknown"}
t = rep["totals"]
for k in ("repositories", "images", "images_scanned"):
    assert t[k] == want_tot[k], (k, t[k], want_tot[k])
for k in ("scan_on_push_disabled", "tag_mutability_mutable", "untagged_images_piling_up"):
    assert t["posture"][k] == want_tot[k], (k, t["posture"][k], want_tot[k])
assert t["images"] > 0 and t["posture"]["tag_mutability_mutable"] > 0
print(f"report equals truth: {t['images']} images, {t['repositories']} repositories, 6 ok + 1 failed")
PY

# --- an unchanged second sweep queues no scans and moves no tags ---
scans_before=$(db "select count(*) from jobs where kind = 'scan'")
tags_before=$(db "select count(*) from tag_events")
scanrows_before=$(db "select count(*) from scans")
# Rows the catalog took (the sweep's own bookkeeping, jobs and sweeps, is not
# the catalog); a backend's counts reach the view when it ends.
writes_to() {
  db "select coalesce(sum(n_tup_ins + n_tup_upd + n_tup_del), 0) from pg_stat_user_tables
      where relname in ($1)"
}
CATALOG="'repositories', 'images', 'image_tags', 'tag_events', 'scans'"
catalog_before=$(writes_to "$CATALOG") conns_before=$(writes_to "'connections'")
hgf_expect_exit 1 "$H" sweep --wait --json --format csv --report "$tmp/r.csv"
sleep 1
catalog=$(( $(writes_to "$CATALOG") - catalog_before ))
conns=$(( $(writes_to "'connections'") - conns_before ))
n_conns=$(db "select count(*) from connections")
echo "unchanged sweep: $catalog catalog rows and $conns connection-row updates for $n_conns connections"
hgf_assert_eq 0 "$catalog" "catalog rows an unchanged sweep wrote"
# A connection's row records when it was synced and when its posture was read.
(( conns <= 2 * n_conns )) || hgf_fail "an unchanged sweep updated connection rows $conns times for $n_conns connections"
hgf_assert_eq "$scans_before" "$(db "select count(*) from jobs where kind = 'scan'")" "no new scan jobs"
hgf_assert_eq "$tags_before" "$(db "select count(*) from tag_events")" "no tag events"
hgf_assert_eq "$scanrows_before" "$(db "select count(*) from scans")" "no new scans"
second=$(python3 -c 'import json,sys; r=json.load(sys.stdin); assert r["scans_queued"]==0, r["scans_queued"]; print(r["sweep_id"])' <<<"$HGF_OUT")

# --- CSV: RFC 4180, one row per connection plus totals ---
python3 - "$tmp/r.csv" "$bad_reg" <<'PY'
import csv, sys
rows = list(csv.DictReader(open(sys.argv[1], newline="")))
conn = [r for r in rows if r["row_type"] == "connection"]
assert len(conn) == 7, len(conn)
bad = [r for r in conn if r["registry"] == sys.argv[2]][0]
assert bad["status"] == "failed" and bad["diagnosis"], bad
assert {r["name"] for r in rows if r["row_type"] == "findings"} == {"critical", "high", "medium", "low", "unknown"}
post = {r["name"]: r["value"] for r in rows if r["row_type"] == "posture"}
assert post["no_lifecycle_policy"].isdigit(), post
tot = [r for r in rows if r["row_type"] == "totals"][0]
assert int(tot["images"]) == sum(int(r["images"]) for r in conn)
print("csv ok:", len(rows), "rows")
PY

# --- HTML: sections present, registry strings escaped; also via sweep show ---
hgf_expect_exit 0 "$H" sweep show "$second" --format html
printf '%s\n' "$HGF_OUT" >"$tmp/r.html"
python3 - "$tmp/r.html" "$bad_reg" <<'PY'
import sys
from html.parser import HTMLParser
class P(HTMLParser):
    def __init__(self):
        super().__init__(); self.ids = set(); self.text = []; self.tags = set()
    def handle_starttag(self, tag, attrs):
        self.tags.add(tag)
        for k, v in attrs:
            if k == "id": self.ids.add(v)
            assert not (k == "src" or (k == "href" and tag == "link")), ("external asset", tag, attrs)
    def handle_data(self, d): self.text.append(d)
p = P(); p.feed(open(sys.argv[1]).read())
for s in ("totals", "failures", "accounts", "worst-images", "posture"):
    assert s in p.ids, s
assert "script" not in p.tags and "style" in p.tags
text = " ".join(p.text)
assert sys.argv[2] in text and "Symptom" in text and "Fix" in text
assert "By connection" in text
print("html ok")
PY

# --- list and show ---
hgf_expect_exit 0 "$H" sweep list --json
python3 -c '
import json, sys
a = json.load(sys.stdin)
assert len(a) == 2 and all(s["status"] == "partial" and s["requested_by"] == "cli" for s in a), a
assert a[0]["totals"]["connections"] == 7
' <<<"$HGF_OUT"
hgf_expect_exit 0 "$H" sweep show "$second"
python3 -c 'import json,sys; r=json.load(sys.stdin); assert r["sweep_id"]=='"$second"'' <<<"$HGF_OUT"
hgf_expect_exit 2 "$H" sweep show 9999

# --- the rescan window: with 1s every recently pushed image is due again ---
sleep 1.1
hgf_expect_exit 1 "$H" sweep --wait --rescan-after 1s --active-within 36500d --json
python3 -c '
import json, sys
r = json.load(sys.stdin)
assert r["scans_queued"] == r["totals"]["images"], (r["scans_queued"], r["totals"]["images"])
' <<<"$HGF_OUT"

# --- the HTML rendered in headless Chromium (screenshot artifact) ---
chrome=$(command -v chromium || command -v chromium-browser || true)
if [[ -z $chrome && $(id -u) == 0 && ${HGF_SKIP_CHROMIUM_INSTALL:-0} != 1 ]]; then
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium >"$tmp/apt.log" 2>&1 || true
  chrome=$(command -v chromium || true)
fi
if [[ -n $chrome ]]; then
  png=${HGF_BUILD_DIR:-$tmp}/sweep-report.png
  rm -f "$png"
  timeout 60 "$chrome" --headless --no-sandbox --disable-gpu --no-first-run \
    --disable-background-networking --enable-logging=stderr --v=0 \
    --screenshot="$png" --window-size=1280,2000 "file://$tmp/r.html" >"$tmp/chrome.out" 2>"$tmp/chrome.err" || true
  [[ -s $png ]] || hgf_fail "chromium wrote no screenshot: $(tail -5 "$tmp/chrome.err")"
  (( $(stat -c %s "$png") > 20000 )) || hgf_fail "the screenshot is suspiciously small"
  if grep -q "Uncaught" "$tmp/chrome.err"; then hgf_fail "console errors in the report page"; fi
  echo "screenshot: $png"
else
  echo "SKIP chromium screenshot: chromium is not installed and could not be installed"
fi
# --- without --report, --format puts the report on stdout in that format ---
hgf_expect_exit 1 "$H" sweep --wait --format csv
hgf_assert_contains "$(head -1 <<<"$HGF_OUT")" "row_type" "sweep --wait --format csv prints the CSV"
python3 -c 'import csv, io, sys; rows = list(csv.DictReader(io.StringIO(sys.stdin.read())))
assert sum(r["row_type"] == "connection" for r in rows) == 7, rows' <<<"$HGF_OUT"

echo "PASS: sweep"
