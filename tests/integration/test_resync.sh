#!/usr/bin/env bash
# An unchanged re-sync skips the database work (sql/009): the second `sync
# --all --wait` of an unchanged fleet runs no hgf_apply_sync, writes a few
# bookkeeping rows and still reports the catalog's counts; a posture sync
# still stores posture. Every way the catalog can change makes the next sync
# apply again: ECR changes (push, re-tag, delete), a write to the stored
# catalog by anyone else (a scan finding its image gone), and a push event
# delivered to `serve`'s webhook for an image that ECR then loses silently.
set -euo pipefail
# shellcheck source=tests/integration/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

tmp=$(hgf_tmpdir)
HGFLEET_DATABASE_URL=$(hgf_new_db resync)
token=$(openssl rand -hex 24)
export HGFLEET_DATABASE_URL HGFLEET_WEBHOOK_TOKEN=$token HGFLEET_LOG_LEVEL=warn \
  HGFLEET_SCANNER=none AWS_EC2_METADATA_DISABLED=true
export AWS_ACCESS_KEY_ID=AKIDECRSIMDEFAULT AWS_SECRET_ACCESS_KEY=ecrsim-default-secret
unset AWS_SESSION_TOKEN AWS_ENDPOINT_URL HGFLEET_RESCAN_AFTER || true
H=$HGFLEET_BIN
q() { hgf_psql "$HGFLEET_DATABASE_URL" -c "$1"; }

hgf_bg "$ECRSIM_BIN" --seed 13 --accounts 1 --regions us-east-1,eu-west-1 --repos 4 --images 10 \
  >"$tmp/sim.out" 2>"$tmp/sim.log"
line=$(hgf_wait_for_line "$tmp/sim.out" 'listening on http://' 10)
sim=${line##* }
export AWS_ENDPOINT_URL_ECR=$sim
curl -fsS "$sim/_sim/truth" >"$tmp/truth.json"
read -r acct repo <<<"$(python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))["registries"][0]
print(r["account_id"], r["repositories"][0]["name"])' "$tmp/truth.json")"
east=$acct.dkr.ecr.us-east-1.amazonaws.com
west=$acct.dkr.ecr.eu-west-1.amazonaws.com
ctl() { curl -fsS -X POST "$sim/_sim/$1" -d "$2"; }
field() { python3 -c 'import json,sys; print(json.load(sys.stdin)[sys.argv[1]])' "$1"; }

hgf_expect_exit 0 "$H" migrate
# Function call counts, so the test can say which statements ran.
q "ALTER DATABASE \"${HGFLEET_DATABASE_URL##*/}\" SET track_functions = 'pl'" >/dev/null
for reg in "$east" "$west"; do
  hgf_expect_exit 0 "$H" connection add "$reg" --schedule manual
done

# "APPLY_SYNC POSTURE ROWS": hgf_apply_sync and hgf_apply_posture calls and
# rows written so far to hgfleet's tables (not the system catalogs, which
# autoanalyze writes to whenever it runs: 113 rows once, in CI). A backend
# reports its counts when it exits: read until two readings a moment apart
# agree.
counters() {
  local prev= cur i
  for (( i = 0; i < 20; i++ )); do
    cur=$(q "select (select coalesce(sum(calls), 0) from pg_stat_user_functions
                      where funcname = 'hgf_apply_sync') || ' ' ||
                    (select coalesce(sum(calls), 0) from pg_stat_user_functions
                      where funcname = 'hgf_apply_posture') || ' ' ||
                    (select coalesce(sum(n_tup_ins + n_tup_upd + n_tup_del), 0)
                       from pg_stat_user_tables where schemaname = 'public')")
    [[ $cur == "$prev" ]] && break
    prev=$cur
    sleep 0.5
  done
  printf '%s\n' "$cur"
}

# The present images equal ecrsim's truth: tags, size, media type and push
# time (to the second) too.
check_truth() {
  hgf_expect_exit 0 "$H" images list --json
  printf '%s' "$HGF_OUT" >"$tmp/images.json"
  curl -fsS "$sim/_sim/truth" >"$tmp/truth.json"
  python3 - "$tmp/truth.json" "$tmp/images.json" "$1" <<'PY'
import json, sys
truth, mine = json.load(open(sys.argv[1])), json.load(open(sys.argv[2]))
want = {(reg["registry"], repo["name"], im["digest"], tuple(sorted(im["tags"])), im["size_bytes"],
         im["media_type"], im["pushed_at"])
        for reg in truth["registries"] for repo in reg["repositories"] for im in repo["images"]}
got = {(im["registry"], im["repository"], im["digest"], tuple(sorted(im["tags"])), im["size_bytes"],
        im["media_type"], im["pushed_at"])
       for im in mine if im["state"] == "present"}
if want != got:
    print(sys.argv[3], "missing:", sorted(want - got)[:5], "extra:", sorted(got - want)[:5])
    sys.exit(1)
print(f"{sys.argv[3]}: catalog equals truth ({len(got)} images)")
PY
}

# sync_all OUT_FILE: `sync --all --wait --json`, one JSON line per registry.
sync_all() {
  hgf_expect_exit 0 "$H" sync --all --wait --json
  printf '%s\n' "$HGF_OUT" >"$1"
}

# applied FILE REGISTRY: that registry's result.applied as "unchanged
# repositories images new_images deleted_images tag_moves scans_queued
# rows_written" (unchanged: true, or absent), for `read`.
applied() {
  python3 - "$@" <<'PY'
import json, sys
keys = ("unchanged", "repositories", "images", "new_images", "deleted_images", "tag_moves",
        "scans_queued", "rows_written")
for line in open(sys.argv[1]):
    r = json.loads(line)
    if r["registry"] == sys.argv[2]:
        a = r["result"]["applied"]
        print(" ".join(json.dumps(a[k]) if k in a else "absent" for k in keys))
PY
}

# --- the first sync applies everything ---
sync_all "$tmp/first.json"
check_truth "first sync"
read -r e_unch e_repos e_images _ <<<"$(applied "$tmp/first.json" "$east")"
read -r w_unch w_repos w_images _ <<<"$(applied "$tmp/first.json" "$west")"
hgf_assert_eq "absent absent" "$e_unch $w_unch" "the first syncs apply"

# --- an unchanged re-sync: no hgf_apply_sync, almost no rows, same counts ---
read -r as0 po0 rows0 <<<"$(counters)"
sync_all "$tmp/second.json"
read -r as1 po1 rows1 <<<"$(counters)"
echo "unchanged re-sync: hgf_apply_sync calls +$(( as1 - as0 )), rows written +$(( rows1 - rows0 ))"
hgf_assert_eq 0 "$(( as1 - as0 ))" "an unchanged re-sync runs no hgf_apply_sync"
# Two jobs queued, claimed and finished, two connections stamped: a full
# apply of this catalog stages hundreds of rows.
(( rows1 - rows0 <= 20 )) || hgf_fail "an unchanged re-sync wrote $(( rows1 - rows0 )) rows"
# The counts the apply returned, nothing new, nothing written.
hgf_assert_eq "true $e_repos $e_images 0 0 0 0 0" "$(applied "$tmp/second.json" "$east")" \
  "$east: unchanged"
hgf_assert_eq "true $w_repos $w_images 0 0 0 0 0" "$(applied "$tmp/second.json" "$west")" \
  "$west: unchanged"
hgf_assert_eq ok "$(q "select string_agg(distinct last_sync_status, ',') from connections")" \
  "the skipped syncs are recorded as ok"

# --- a posture sync of an unchanged catalog still collects posture ---
west_id=$(q "select id from connections where registry = '$west'")
before=$(q "select posture_checked_at from connections where id = $west_id")
q "insert into jobs (kind, payload, priority, dedup_key)
   values ('sync', '{\"connection_id\": $west_id, \"posture\": true}', 5, 'sync:$west_id')" >/dev/null
hgf_expect_exit 0 "$H" sync "$west" --wait --json
printf '%s\n' "$HGF_OUT" >"$tmp/posture.json"
read -r as2 po2 _ <<<"$(counters)"
read -r unch _ <<<"$(applied "$tmp/posture.json" "$west")"
hgf_assert_eq true "$unch" "the posture sync saw no change"
hgf_assert_eq 0 "$(( as2 - as1 ))" "the posture sync runs no hgf_apply_sync"
hgf_assert_eq 1 "$(( po2 - po1 ))" "the posture sync stores posture"
hgf_assert_eq t "$(q "select posture_checked_at > '$before' from connections where id = $west_id")" \
  "posture was checked again"

# --- ECR changes: pushed, re-tagged and deleted images are applied ---
new=$(ctl push "{\"account\":\"$acct\",\"region\":\"us-east-1\",\"repository\":\"$repo\",\"tag\":\"fresh\",\"deliver\":false}" |
  field digest)
old=$(python3 -c '
import json, sys
r = json.load(open(sys.argv[1]))["registries"][0]["repositories"][0]["images"]
print(r[0]["digest"], r[1]["digest"])' "$tmp/truth.json")
read -r gone kept <<<"$old"
ctl retag "{\"account\":\"$acct\",\"region\":\"us-east-1\",\"repository\":\"$repo\",\"digest\":\"$kept\",\"tag\":\"moved-here\",\"deliver\":false}" >/dev/null
ctl delete "{\"account\":\"$acct\",\"region\":\"us-east-1\",\"repository\":\"$repo\",\"digest\":\"$gone\",\"deliver\":false}" >/dev/null
sync_all "$tmp/changed.json"
read -r as3 _ _ <<<"$(counters)"
hgf_assert_eq 1 "$(( as3 - as2 ))" "only the changed registry is applied"
read -r unch _ _ new_n del_n moves _ <<<"$(applied "$tmp/changed.json" "$east")"
# fresh is new, moved-here is new, the deleted image's tags went away
hgf_assert_eq "absent 1 1" "$unch $new_n $del_n" "$east changed: one image new, one gone"
(( moves >= 2 )) || hgf_fail "$east: expected the re-tag and the push as tag moves, got $moves"
read -r unch _ <<<"$(applied "$tmp/changed.json" "$west")"
hgf_assert_eq true "$unch" "$west did not change"
hgf_assert_eq 1 "$(q "select count(*) from images where digest = '$new' and deleted_at is null")" \
  "the pushed digest is stored"
check_truth "after ECR changed"

# --- anyone else's write to the stored catalog: the next sync applies ---
# (what a scan does when the registry says its image is gone)
q "update images set deleted_at = now() where id = (select i.id from images i
   join repositories r on r.id = i.repository_id where r.connection_id = $west_id
   and i.deleted_at is null order by i.id limit 1)" >/dev/null
sync_all "$tmp/touched.json"
read -r unch _ <<<"$(applied "$tmp/touched.json" "$west")"
hgf_assert_eq absent "$unch" "a catalog written by someone else is applied again"
check_truth "after a stored image was marked gone"
sync_all "$tmp/again.json"
read -r unch _ <<<"$(applied "$tmp/again.json" "$west")"
hgf_assert_eq true "$unch" "and then it is unchanged again"

# --- a push event via the webhook, then ECR loses the image without an event ---
export HGFLEET_LISTEN=127.0.0.1:0
hgf_bg "$H" serve >"$tmp/serve.out" 2>"$tmp/serve.log"
serve_pid=$HGF_BG_PID
l=$(hgf_wait_for_line "$tmp/serve.out" 'serving on http://' 10)
base=${l##* }
for (( i = 0; i < 50; i++ )); do curl -fsS "$base/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
ctl webhook "{\"url\":\"$base/api/webhooks/ecr\",\"auth\":{\"type\":\"API_KEY\",\"header\":\"X-Api-Key\",\"value\":\"$token\"}}" >/dev/null
ghost=$(ctl push "{\"account\":\"$acct\",\"region\":\"us-east-1\",\"repository\":\"$repo\",\"tag\":\"ghost\"}" |
  field digest)
for (( i = 0; i < 100; i++ )); do
  [[ $(q "select count(*) from images where digest = '$ghost' and deleted_at is null") == 1 ]] && break
  sleep 0.1
done
hgf_assert_eq 1 "$(q "select count(*) from images where digest = '$ghost' and deleted_at is null")" \
  "the push event stored the image"
kill -TERM -- "-$serve_pid"
for (( i = 0; i < 50; i++ )); do kill -0 "$serve_pid" 2>/dev/null || break; sleep 0.1; done
ctl delete "{\"account\":\"$acct\",\"region\":\"us-east-1\",\"repository\":\"$repo\",\"digest\":\"$ghost\",\"deliver\":false}" >/dev/null
# ECR's listing is now the one last applied: only the push event's
# invalidation makes this sync notice the stored image is gone.
sync_all "$tmp/after-push.json"
read -r unch _ _ _ del_n _ <<<"$(applied "$tmp/after-push.json" "$east")"
hgf_assert_eq "absent 1" "$unch $del_n" "a push event makes the next sync apply: the lost image is gone"
hgf_assert_eq 0 "$(q "select count(*) from images where digest = '$ghost' and deleted_at is null")" \
  "the lost image is not present"
check_truth "after a push event"
echo "PASS: resync"
