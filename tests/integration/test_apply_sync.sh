#!/usr/bin/env bash
# hgf_apply_listing's contract, statement by statement, without ECR: a first
# sync (every digest new, every tag an event from no digest, one scan job per
# digest), the same first sync when a collision sends it through the diff (a
# scan job already queued under a digest's key, a push event that recorded an
# image first), then the diff: a digest gone, one new, a tag moved, a tag
# removed, an unchanged re-apply that writes nothing, and a digest back from
# the dead.
set -euo pipefail
# shellcheck source=tests/integration/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

HGFLEET_DATABASE_URL=$(hgf_new_db applysync)
export HGFLEET_DATABASE_URL HGFLEET_LOG_LEVEL=warn
H=$HGFLEET_BIN
q() { hgf_psql "$HGFLEET_DATABASE_URL" -c "$1"; }

hgf_expect_exit 0 "$H" migrate
regs=(111111111111.dkr.ecr.us-east-1.amazonaws.com 222222222222.dkr.ecr.us-east-1.amazonaws.com
      333333333333.dkr.ecr.us-east-1.amazonaws.com)
for reg in "${regs[@]}"; do
  hgf_expect_exit 0 "$H" connection add "$reg" --schedule manual
done
conn() { q "select id from connections where registry = '$1'"; }
c1=$(conn "${regs[0]}") c2=$(conn "${regs[1]}") c3=$(conn "${regs[2]}")

d() { printf 'sha256:%064d' "$1"; }
repos='[{"n":"app","a":"arn:app","m":"MUTABLE","s":false,"e":"AES256","c":1700000000},
        {"n":"lib","a":"arn:lib","m":"IMMUTABLE","s":true,"e":"KMS","c":1700000001}]'
# Digest 1 is listed twice (a page boundary that moved): stored once.
img() { printf '{"r":"%s","d":"%s","t":%s,"m":"application/vnd.oci.image.manifest.v1+json","s":%s,"p":1700000100.5}' \
  "$1" "$(d "$2")" "$3" "$2"; }
images="[$(img app 1 '["latest","v1"]'),$(img app 2 '["v2"]'),$(img lib 3 '[]'),$(img app 1 '["latest","v1"]')]"

# apply CONN REPOS IMAGES: the result's "new_images tag_moves scans_queued
# deleted_images images repositories rows_written".
apply() {
  q "select r->>'new_images', r->>'tag_moves', r->>'scans_queued', r->>'deleted_images',
            r->>'images', r->>'repositories', r->>'rows_written'
       from hgf_apply_listing($1, \$j\$$2\$j\$::jsonb, \$j\$$3\$j\$::jsonb, 'fp-$1') r" | tr '|' ' '
}
tags() {
  q "select coalesce(string_agg(r.name || ':' || t.tag || '=' || right(i.digest, 1), ' '
                                order by r.name, t.tag), '')
       from image_tags t join repositories r on r.id = t.repository_id
       join images i on i.id = t.image_id where r.connection_id = $1"
}
# events CONN AFTER_ID: the sync's tag events after that id, "repo/tag:old>new"
# by digest number ("-": none), sorted.
events() {
  q "select coalesce(string_agg(x, ' ' order by x), '') from (
       select r.name || '/' || e.tag || ':' || coalesce(right(e.old_digest, 1), '-') || '>'
              || coalesce(right(e.new_digest, 1), '-') as x
         from tag_events e join repositories r on r.id = e.repository_id
        where r.connection_id = $1 and e.source = 'sync' and e.id > $2) s"
}
last_event() { q "select coalesce(max(id), 0) from tag_events"; }
scan_jobs() {
  q "select count(*) from jobs where kind = 'scan' and state = 'queued'
        and dedup_key like 'scan:$1/%'"
}

# --- a first sync -----------------------------------------------------------
hgf_assert_eq "3 3 3 0 3 2 14" "$(apply "$c1" "$repos" "$images")" "first sync: counts"
hgf_assert_eq "app:latest=1 app:v1=1 app:v2=2" "$(tags "$c1")" "first sync: tags"
hgf_assert_eq "app/latest:->1 app/v1:->1 app/v2:->2" "$(events "$c1" 0)" \
  "first sync: every tag an event from no digest"
hgf_assert_eq "3" "$(scan_jobs "${regs[0]}")" "first sync: one scan per digest"
hgf_assert_eq "t" "$(q "select bool_and(j.payload = jsonb_build_object('connection_id', $c1,
                          'image_id', i.id, 'repository', r.name, 'digest', i.digest, 'reason', 'sync')
                          and j.dedup_key = 'scan:${regs[0]}/' || r.name || '@' || i.digest
                          and j.priority = 0)
                      from images i join repositories r on r.id = i.repository_id
                      join jobs j on j.payload->>'image_id' = i.id::text
                     where r.connection_id = $c1")" "first sync: each job names its image"
hgf_assert_eq "3|3|0" "$(q "select count(*), count(i.media_type), count(i.deleted_at) from images i
                             join repositories r on r.id = i.repository_id where r.connection_id = $c1")" \
  "first sync: images stored with their details, live"
hgf_assert_eq "fp-$c1" "$(q "select catalog_fingerprint from connections where id = $c1")" \
  "first sync: fingerprint stored"

# --- first syncs that collide -------------------------------------------------
# A scan job still queued under digest 2's key: no second job for it, the rest
# as above.
q "insert into jobs (kind, payload, dedup_key) values ('scan', '{}', 'scan:${regs[1]}/app@$(d 2)')"
hgf_assert_eq "3 3 2 0 3 2 13" "$(apply "$c2" "$repos" "$images")" "queued scan: counts"
hgf_assert_eq "3" "$(scan_jobs "${regs[1]}")" "queued scan: still one job per digest"
hgf_assert_eq "app:latest=1 app:v1=1 app:v2=2" "$(tags "$c2")" "queued scan: tags"
hgf_assert_eq "app/latest:->1 app/v1:->1 app/v2:->2" "$(events "$c2" 0)" "queued scan: events"
# A push event recorded digest 2 (no details, its own scan) before the first
# sync: the sync fills it in and does not count it new.
q "select hgf_apply_push($c3, 'app', '$(d 2)', 'v2', 'PUSH', now())" >/dev/null
hgf_assert_eq "2 2 2 0 3 2 10" "$(apply "$c3" "$repos" "$images")" "pushed first: counts"
hgf_assert_eq "3|0" "$(q "select count(i.media_type), count(i.deleted_at) from images i
                           join repositories r on r.id = i.repository_id where r.connection_id = $c3")" \
  "pushed first: the pushed image filled in"
hgf_assert_eq "3" "$(scan_jobs "${regs[2]}")" "pushed first: one scan per digest"
hgf_assert_eq "app:latest=1 app:v1=1 app:v2=2" "$(tags "$c3")" "pushed first: tags"
hgf_assert_eq "app/latest:->1 app/v1:->1" "$(events "$c3" 0)" "pushed first: v2 was the push's move"

# --- the diff -----------------------------------------------------------------
# Digest 2 gone, digest 4 new under v2, latest moved from app to lib, v1 removed.
changed="[$(img app 1 '[]'),$(img lib 3 '["latest"]'),$(img app 4 '["v2"]')]"
e0=$(last_event)
hgf_assert_eq "1 4 1 1 3 2 11" "$(apply "$c1" "$repos" "$changed")" "changed: counts"
hgf_assert_eq "app:v2=4 lib:latest=3" "$(tags "$c1")" "changed: tags"
hgf_assert_eq "app/latest:1>- app/v1:1>- app/v2:2>4 lib/latest:->3" "$(events "$c1" "$e0")" \
  "changed: every tag move is an event"
hgf_assert_eq "$(d 2)" "$(q "select i.digest from images i join repositories r on r.id = i.repository_id
                              where r.connection_id = $c1 and i.deleted_at is not null")" \
  "changed: the gone digest is marked deleted"
hgf_assert_eq "4" "$(scan_jobs "${regs[0]}")" "changed: the new digest is scanned"

# The same listing again: nothing written, nothing queued.
hgf_assert_eq "0 0 0 0 3 2 0" "$(apply "$c1" "$repos" "$changed")" "unchanged re-apply: counts"

# Digest 2 back (its old scan finished): new again, scanned again.
q "update jobs set state = 'done' where dedup_key = 'scan:${regs[0]}/app@$(d 2)'"
back="[$(img app 1 '[]'),$(img lib 3 '["latest"]'),$(img app 4 '["v2"]'),$(img app 2 '[]')]"
hgf_assert_eq "1 0 1 0 4 2 2" "$(apply "$c1" "$repos" "$back")" "revived: counts"
hgf_assert_eq "0" "$(q "select count(*) from images where deleted_at is not null")" \
  "revived: nothing deleted any more"
echo "apply_sync: first sync, collisions and diff as contracted"
