#!/usr/bin/env bash
# The scheduler, run by two replicas with no leader: a connection on
# `every:2s` syncs again and again (each fire once, not once per replica),
# `manual` ones sync only the first time, and a schedule changed in the
# database (next_sync_at cleared, as `connection update --schedule` does)
# takes effect without a restart.
set -euo pipefail
# shellcheck source=tests/integration/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

tmp=$(hgf_tmpdir)
HGFLEET_DATABASE_URL=$(hgf_new_db schedules)
HGFLEET_MASTER_KEY=$(openssl rand -base64 32)
export HGFLEET_DATABASE_URL HGFLEET_MASTER_KEY HGFLEET_LOG_FORMAT=json
unset AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN AWS_ENDPOINT_URL || true
H=$HGFLEET_BIN
db=$HGFLEET_DATABASE_URL
q() { hgf_psql "$db" -c "$1"; }

akid=AKIASCHEDULETEST0001
openssl rand -hex 20 >"$tmp/secret"
hgf_bg "$ECRSIM_BIN" --seed 5 --accounts 3 --regions us-east-1 --repos 2 --images 3 \
  --key "$akid:$(<"$tmp/secret"):*" >"$tmp/ecrsim.out" 2>"$tmp/ecrsim.log"
line=$(hgf_wait_for_line "$tmp/ecrsim.out" 'listening on http://' 10)
export AWS_ENDPOINT_URL_ECR=${line##* }
mapfile -t regs < <(curl -fsS "${line##* }/_sim/truth" |
  python3 -c 'import json, sys; [print(r["registry"]) for r in json.load(sys.stdin)["registries"]]')

hgf_expect_exit 0 "$H" migrate
add() { # add REGISTRY SCHEDULE: prints the connection id
  hgf_expect_exit 0 "$H" connection add "$1" --schedule "$2" --access-key-id "$akid" \
    --secret-access-key-file "$tmp/secret"
  q "select id from connections where registry = '$1'"
}
every=$(add "${regs[0]}" every:2s)
manual=$(add "${regs[1]}" manual)
changed=$(add "${regs[2]}" manual)
syncs() { q "select count(*) from jobs where kind = 'sync' and state = 'done' and dedup_key = 'sync:$1'"; }

export HGFLEET_WORKERS=4 HGFLEET_LISTEN=127.0.0.1:0
for r in a b; do
  hgf_bg "$H" serve >"$tmp/serve-$r.out" 2>"$tmp/serve-$r.log"
  hgf_wait_for_line "$tmp/serve-$r.out" 'serving on http://' 10 >/dev/null
done

# First syncs (queued by `connection add`) run at once.
for (( i = 0; i < 100; i++ )); do
  [[ $(syncs "$every") -ge 1 && $(syncs "$manual") -ge 1 && $(syncs "$changed") -ge 1 ]] && break
  sleep 0.1
done
first_sync=$(q "select last_sync_at from connections where id = $every")
[[ -n $first_sync ]] || hgf_fail "the every:2s connection never synced"
hgf_assert_eq "" "$(q "select next_sync_at from connections where id in ($manual, $changed)")" \
  "manual connections have no next fire"

# A schedule change in the database takes effect without a restart.
q "update connections set schedule = 'every:2s', next_sync_at = NULL where id = $changed" >/dev/null
sleep 8
n_every=$(syncs "$every")
n_changed=$(syncs "$changed")
echo "every:2s connection: $n_every syncs in about 8 s; switched connection: $n_changed"
(( n_every >= 4 )) || hgf_fail "every:2s synced only $n_every times in ~8 s"
# 8 s / 2 s + the first sync + slack: a fire taken by both replicas would double it.
(( n_every <= 7 )) || hgf_fail "every:2s synced $n_every times in ~8 s: fires were duplicated"
(( n_changed >= 3 )) || hgf_fail "after the switch to every:2s, only $n_changed syncs in ~8 s"
advanced=$(q "select last_sync_at > '$first_sync' from connections where id = $every")
hgf_assert_eq t "$advanced" "last_sync_at advances"
hgf_assert_eq t "$(q "select next_sync_at > now() - interval '3 seconds' from connections where id = $every")" \
  "a timed connection always has its next fire planned"
hgf_assert_eq 1 "$(syncs "$manual")" "a manual connection syncs only the first time"
hgf_assert_eq "" "$(q "select next_sync_at from connections where id = $manual")" \
  "a manual connection has no next fire"

# Scheduled syncs run at priority 0; the first sync from `connection add` at 5.
hgf_assert_eq "0" "$(q "select distinct priority from jobs where kind = 'sync' and id > (
    select min(id) from jobs where dedup_key = 'sync:$every') and dedup_key = 'sync:$every'")" \
  "scheduled syncs are queued at priority 0"
echo "PASS: schedules"
