#!/usr/bin/env bash
# hgf_apply_listing's contract, statement by statement, without ECR: a first
# sync (every digest new, every tag an event from no digest, one scan job per
# digest), the same first sync when a collision sends it through the diff (a
# scan job already queued under a digest's key, a push event that recorded an
# image first), then the diff: a digest gone, one new, a tag moved, a tag
# removed, an unchanged re-apply that writes nothing, and a digest back from
# the dead. The fingerprint's trigger ignores what a scan writes (sql/016).
# The listing as arrays, the form the sync job sends (sql/014),
# stores what the JSON form does, any text included. Then the integrity the
# writers keep without foreign keys (sql/014): a purge waits for an apply or a
# push event still open on its connection and deletes what they wrote too,
# and a repository or an image deleted by hand takes its rows along.
set -euo pipefail
# shellcheck source=tests/integration/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

HGFLEET_DATABASE_URL=$(hgf_new_db applysync)
export HGFLEET_DATABASE_URL HGFLEET_LOG_LEVEL=warn
H=$HGFLEET_BIN
q() { hgf_psql "$HGFLEET_DATABASE_URL" -c "$1"; }

hgf_expect_exit 0 "$H" migrate
regs=(111111111111.dkr.ecr.us-east-1.amazonaws.com 222222222222.dkr.ecr.us-east-1.amazonaws.com
      333333333333.dkr.ecr.us-east-1.amazonaws.com 444444444444.dkr.ecr.us-east-1.amazonaws.com)
for reg in "${regs[@]}"; do
  hgf_expect_exit 0 "$H" connection add "$reg" --schedule manual
done
conn() { q "select id from connections where registry = '$1'"; }
c1=$(conn "${regs[0]}") c2=$(conn "${regs[1]}") c3=$(conn "${regs[2]}") c4=$(conn "${regs[3]}")

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

# --- the fingerprint's image trigger (sql/016) ---------------------------------------
# triggered SQL: runs SQL, then prints how many times, in its transaction, the
# images UPDATE trigger's functions ran (the statement form of sql/009 and the
# row form of sql/016) and the fingerprint of connection 1 ("-": forgotten).
triggered() {
  q "set track_functions = 'all'; $1;
     select coalesce(pg_stat_get_xact_function_calls('hgf_images_changed'::regproc), 0)
            + coalesce(pg_stat_get_xact_function_calls('hgf_image_row_changed'::regproc), 0),
            coalesce((select catalog_fingerprint from connections where id = $c1), '-')" |
    tr '|' ' '
}
in_c1="repository_id in (select id from repositories where connection_id = $c1)"
hgf_assert_eq "0 fp-$c1" \
  "$(triggered "update images set config_kind = 'image', config_read_at = now()
                 where digest = '$(d 1)' and $in_c1")" \
  "a scan's config update: no trigger call, fingerprint kept"
hgf_assert_eq "0 fp-$c1" "$(triggered "update images set deleted_at = coalesce(deleted_at, now())
                                        where id = -1")" \
  "an update that matches no image: no trigger call, fingerprint kept"
hgf_assert_eq "1 -" "$(triggered "update images set deleted_at = now() where digest = '$(d 3)' and $in_c1")" \
  "an image marked gone outside an apply: fingerprint forgotten"
q "update images set deleted_at = null where digest = '$(d 3)' and $in_c1"

# --- the listing as arrays (sql/014) ----------------------------------------------
# apply_arrays CONN R D M A S P TI TT: hgf_apply_listing's array form, each
# argument an array literal; prints what apply prints.
apply_arrays() {
  q "select r->>'new_images', r->>'tag_moves', r->>'scans_queued', r->>'deleted_images',
            r->>'images', r->>'repositories', r->>'rows_written'
       from hgf_apply_listing($1, \$j\$$repos\$j\$::jsonb, \$j\$$2\$j\$, \$j\$$3\$j\$,
              \$j\$$4\$j\$, \$j\$$5\$j\$, \$j\$$6\$j\$, \$j\$$7\$j\$, \$j\$$8\$j\$,
              \$j\$$9\$j\$, 'fp-$1') r" | tr '|' ' '
}
# The first listing above, digest 1 twice included.
mt='"application/vnd.oci.image.manifest.v1+json"'
hgf_assert_eq "3 3 3 0 3 2 14" \
  "$(apply_arrays "$c4" '{"app","app","lib","app"}' \
       "{\"$(d 1)\",\"$(d 2)\",\"$(d 3)\",\"$(d 1)\"}" \
       "{$mt,$mt,$mt,$mt}" '{NULL,NULL,NULL,NULL}' '{1,2,3,1}' \
       '{1700000100.5,1700000100.5,1700000100.5,1700000100.5}' '{1,1,2,4,4}' \
       '{"latest","v1","v2","latest","v1"}')" "arrays: counts as for the JSON form"
hgf_assert_eq "app:latest=1 app:v1=1 app:v2=2" "$(tags "$c4")" "arrays: tags"
hgf_assert_eq "app/latest:->1 app/v1:->1 app/v2:->2" "$(events "$c4" 0)" "arrays: events"
# stored CONN: every stored field of its images, one line each.
stored() {
  q "select r.name, i.digest, i.media_type, coalesce(i.artifact_media_type, '-'), i.size_bytes,
            extract(epoch from i.pushed_at), i.deleted_at is null
       from images i join repositories r on r.id = i.repository_id
      where r.connection_id = $1 order by r.name, i.digest"
}
hgf_assert_eq "$(stored "$c4" | sort)" \
  "$(q "select r.name, i.digest, i.media_type, coalesce(i.artifact_media_type, '-'), i.size_bytes,
               extract(epoch from i.pushed_at), true
          from images i join repositories r on r.id = i.repository_id
         where r.connection_id = $c2 and i.digest <> '$(d 5)' order by r.name, i.digest" | sort)" \
  "arrays: images stored as from the JSON form"
# Text that array literals treat specially, quoted and escaped as
# hgf_sync_append_elem writes it (tests/unit/test_catalog_listing.c).
hgf_assert_eq "1 5 1 3 1 2 15" \
  "$(apply_arrays "$c4" '{"app"}' "{\"$(d 8)\"}" '{"{x,y} \"q\" \\b"}' '{"NULL"}' '{8}' \
       '{1700000200.25}' '{1,1}' '{"NULL"," lead, trail "}')" "arrays: text as is: counts"
hgf_assert_eq "app|$(d 8)|{x,y} \"q\" \\b|NULL|8|1700000200.250000|t" \
  "$(stored "$c4" | grep "$(d 8)")" \
  "arrays: text as is: fields"
hgf_assert_eq "app: lead, trail =8 app:NULL=8" "$(tags "$c4")" "arrays: text as is: tags"
if out=$(apply_arrays "$c4" '{"app"}' '{}' '{}' '{}' '{}' '{}' '{}' '{}' 2>&1); then
  hgf_fail "arrays of different lengths were applied: $out"
fi
hgf_assert_contains "$out" "image arrays" "arrays of different lengths: refused, named"
if out=$(apply_arrays "$c4" '{}' '{}' '{}' '{}' '{}' '{}' '{1}' '{}' 2>&1); then
  hgf_fail "tag arrays of different lengths were applied: $out"
fi
hgf_assert_contains "$out" "tag arrays" "tag arrays of different lengths: refused, named"

# --- integrity without foreign keys (sql/014) ------------------------------------
# Rows whose repository or image does not exist: "images tags events".
orphans() {
  q "select (select count(*) from images i
              where not exists (select 1 from repositories r where r.id = i.repository_id)),
            (select count(*) from image_tags t
              where not exists (select 1 from repositories r where r.id = t.repository_id)
                 or not exists (select 1 from images i where i.id = t.image_id)),
            (select count(*) from tag_events e
              where not exists (select 1 from repositories r where r.id = e.repository_id))" |
    tr '|' ' '
}
# rows_of CONN: "repositories images tags events scans" stored for it, found
# through its repositories' ids taken before anything is deleted.
repo_ids() {
  q "select coalesce(string_agg(id::text, ','), '0') from repositories where connection_id = $1"
}
rows_of() {
  q "select (select count(*) from repositories where id in ($1)),
            (select count(*) from images where repository_id in ($1)),
            (select count(*) from image_tags where repository_id in ($1)),
            (select count(*) from tag_events where repository_id in ($1)),
            (select count(*) from scans s join images i on i.id = s.image_id
              where i.repository_id in ($1))" | tr '|' ' '
}
# hold SQL: runs SQL in a transaction that stays open, its writes done,
# until release; returns once SQL has run.
q "create table hold_go (go boolean)"
tmp=$(hgf_tmpdir)
hold() {
  q "delete from hold_go"
  hgf_bg "$HGF_PG_BIN/psql" -X -q -A -t -v ON_ERROR_STOP=1 -d "$HGFLEET_DATABASE_URL" \
    -c "begin" -c "$1" -c "select 'held'" \
    -c "do \$\$ begin for i in 1..600 loop exit when exists (select 1 from hold_go);
                perform pg_sleep(0.05); end loop; end \$\$" -c "commit" >"$tmp/held.out" 2>&1
  hold_pid=$HGF_BG_PID
  hgf_wait_for_line "$tmp/held.out" "^held$" 30 >/dev/null
}
release() {
  q "insert into hold_go values (true)"
  wait "$hold_pid" || hgf_fail "the held transaction failed: $(cat "$tmp/held.out")"
}
# purge_during_hold REGISTRY: purges it while the held transaction is open;
# the purge must still be waiting a second later, and succeed once released.
purge_during_hold() {
  hgf_bg "$H" connection remove "$1" --purge
  local pid=$HGF_BG_PID
  sleep 1
  kill -0 "$pid" 2>/dev/null || hgf_fail "the purge of $1 did not wait for the open transaction"
  release
  wait "$pid" || hgf_fail "the purge of $1 failed"
}
# scan_row CONN DIGEST_NUMBER: a scan stored for that image.
scan_row() {
  q "insert into scans (image_id, scanner, status)
     select i.id, 'trivy', 'ok' from images i join repositories r on r.id = i.repository_id
      where r.connection_id = $1 and i.digest = '$(d "$2")'"
}
hgf_assert_eq "0 0 0" "$(orphans)" "before any purge: no orphan"

# An apply still open on connection 2 when its purge starts: the purge waits
# for it, then deletes what it wrote too. The apply writes a new digest 7,
# tagged, into repository lib, which a listing without repositories marked
# gone before (sync.c sends the images of a repository that vanished during
# the listing): it locks no row of the connection's catalog, and no
# fingerprint is stored to be forgotten, so only its own lock on the
# connection can hold the purge.
scan_row "$c2" 1
ids2=$(repo_ids "$c2")
apply "$c2" '[]' '[]' >/dev/null
q "update connections set catalog_fingerprint = null where id = $c2"
hold "select hgf_apply_sync($c2, '[]', \$j\$[$(img lib 7 '["v7"]')]\$j\$::jsonb, 'sync')"
purge_during_hold "${regs[1]}"
hgf_assert_eq "0 0 0 0 0" "$(rows_of "$ids2")" "purge after an apply: nothing of it left"
hgf_assert_eq "0 0 0" "$(orphans)" "purge after an apply: no orphan"

# The same with a push event (a new digest 6 and tag in a known repository)
# on connection 3, its fingerprint forgotten beforehand for the same reason.
scan_row "$c3" 2
ids3=$(repo_ids "$c3")
q "update connections set catalog_fingerprint = null where id = $c3"
hold "select hgf_apply_push($c3, 'app', '$(d 6)', 'v6', 'PUSH', now())"
purge_during_hold "${regs[2]}"
hgf_assert_eq "0 0 0 0 0" "$(rows_of "$ids3")" "purge after a push event: nothing of it left"
hgf_assert_eq "0 0 0" "$(orphans)" "purge after a push event: no orphan"
hgf_assert_eq "0" "$(q "select count(*) from jobs where state in ('queued', 'running') and
                          (payload->>'connection_id')::bigint in ($c2, $c3)")" \
  "purged: none of their jobs is left to run"

# Connection 1 was untouched by both; a repository and an image deleted by
# hand take their rows along (the image's tag; the repository's images, tags,
# tag events and, through scans' own foreign key, scans).
ids1=$(repo_ids "$c1")
hgf_assert_eq "2 4 2 7 0" "$(rows_of "$ids1")" "connection 1: all its rows still there"
scan_row "$c1" 3
q "delete from images where digest = '$(d 4)'"
hgf_assert_eq "lib:latest=3" "$(tags "$c1")" "an image deleted by hand: its tag went with it"
hgf_assert_eq "2 3 1 7 1" "$(rows_of "$ids1")" "an image deleted by hand: nothing else went"
q "delete from repositories where connection_id = $c1 and name = 'lib'"
hgf_assert_eq "1 2 0 6 0" "$(rows_of "$ids1")" "a repository deleted by hand: its rows went with it"
hgf_assert_eq "0 0 0" "$(orphans)" "deleted by hand: no orphan"
echo "apply_sync: first sync, collisions and diff as contracted; purges and deletes leave no orphan"
