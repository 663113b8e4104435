#!/usr/bin/env bash
# `hgfleet rotate-master-key` against a real table of sealed secrets: usage
# errors exit 2 before the database is opened and never echo a key; a wrong
# old key or one tampered value fails naming the connection and changes
# nothing; a rotation killed mid-transaction leaves every value as it was; a
# real rotation changes every ciphertext (removed connections included), the
# old key no longer opens them, syncs work with the new key and a rerun is a
# no-op. Then, with static keys and an ExternalId role syncing under `serve`,
# neither /metrics nor any log holds the secret, a session token or a
# registry token, and no key ever shows in `ps` or /proc/PID/environ.
set -euo pipefail
# shellcheck source=tests/integration/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

tmp=$(hgf_tmpdir)
db=$(hgf_new_db rotate_key)
export HGFLEET_DATABASE_URL=$db HGFLEET_LOG_FORMAT=json AWS_EC2_METADATA_DISABLED=true
for v in AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN AWS_ROLE_ARN AWS_ENDPOINT_URL \
  AWS_WEB_IDENTITY_TOKEN_FILE HGFLEET_MASTER_KEY HGFLEET_NEW_MASTER_KEY HGFLEET_NEW_MASTER_KEY_FILE; do
  unset "$v"
done
H=$HGFLEET_BIN
q() { hgf_psql "$db" -c "$1"; }
key_id() { base64 -d <"$1" | sha256sum | cut -c1-8; }
for k in old new other; do openssl rand -base64 32 >"$tmp/$k.key"; done
openssl rand -base64 16 >"$tmp/short.key"
printf 'not base64 at all!\n' >"$tmp/junk.key"
old_id=$(key_id "$tmp/old.key") new_id=$(key_id "$tmp/new.key") other_id=$(key_id "$tmp/other.key")
export HGFLEET_MASTER_KEY_FILE=$tmp/old.key

# Every output of every command lands here and is searched for secrets.
transcript=$tmp/transcript.log
: >"$transcript"
run() { # run CODE CMD...: hgf_expect_exit, keeping the output
  local rc=0
  hgf_expect_exit "$@" || rc=$?
  printf '%s\n%s\n' "$HGF_OUT" "$HGF_ERR" >>"$transcript"
  return "$rc"
}

# --- the fleet: a CI user with static keys, a cross-account role with ExternalId ---
seed=11
acct() { printf '%012d' $((100000000000 + seed * 1000000 + $1)); }
A=$(acct 0) B=$(acct 1) C=$(acct 2)
ci_secret=$(openssl rand -base64 30 | tr -d '\n')
printf '%s\n' "$ci_secret" >"$tmp/ci.secret"
read_all='["ecr:GetAuthorizationToken","ecr:DescribeRepositories","ecr:DescribeImages","ecr:ListImages","ecr:BatchGetImage","ecr:GetDownloadUrlForLayer"]'
cat >"$tmp/scenario.json" <<JSON
{"principals": [{"arn": "arn:aws:iam::$A:user/ci", "access_key_id": "AKIAROTATETEST000001",
   "secret_access_key": "$ci_secret",
   "policy": [{"actions": ["sts:AssumeRole"], "resources": ["*"]}, {"actions": $read_all, "resources": ["*"]}]}],
 "roles": [{"arn": "arn:aws:iam::$B:role/sensor",
   "trust": [{"principal": "arn:aws:iam::$A:user/ci", "external_id": "rotate-ext-77"}],
   "policy": [{"actions": $read_all, "resources": ["*"]}]}]}
JSON
hgf_bg "$ECRSIM_BIN" --seed $seed --accounts 3 --regions us-east-1 --repos 2 --images 3 \
  --scenario "$tmp/scenario.json" >"$tmp/ecrsim.out" 2>"$tmp/ecrsim.err"
line=$(hgf_wait_for_line "$tmp/ecrsim.out" 'listening on http://' 10)
sim=${line##* }
export AWS_ENDPOINT_URL_ECR=$sim AWS_ENDPOINT_URL_STS=$sim
curl -fsS "$sim/_sim/truth" >"$tmp/truth.json"
images_in() {
  python3 -c 'import json,sys; t=json.load(open(sys.argv[1]))
print(sum(len(r["images"]) for g in t["registries"] if g["registry"].startswith(sys.argv[2]) for r in g["repositories"]))' \
    "$tmp/truth.json" "$1"
}
regA=$A.dkr.ecr.us-east-1.amazonaws.com regB=$B.dkr.ecr.us-east-1.amazonaws.com
regC=$C.dkr.ecr.us-east-1.amazonaws.com

run 0 "$H" migrate
run 0 "$H" connection add "$regA" --schedule manual --access-key-id AKIAROTATETEST000001 \
  --secret-access-key-file "$tmp/ci.secret"
run 0 "$H" connection add "$regB" --schedule manual --access-key-id AKIAROTATETEST000001 \
  --secret-access-key-file - --role-arn "arn:aws:iam::$B:role/sensor" --external-id rotate-ext-77 \
  <"$tmp/ci.secret"
# A removed connection keeps its row and its sealed secret: it is rotated too.
run 0 "$H" connection add "$regC" --schedule manual --access-key-id AKIAROTATETEST000001 \
  --secret-access-key-file "$tmp/ci.secret"
run 0 "$H" connection remove "$regC"
run 0 "$H" sync --all --wait --json
hgf_assert_eq 3 "$(q "select count(*) from connections where secret_sealed is not null")" "three sealed secrets"

raw() { q "select id || ' ' || secret_sealed from connections where secret_sealed is not null order by id"; }
before=$(raw)
# At rest: sealed under the old key's id, and the plaintext is nowhere in the table.
hgf_assert_eq 3 "$(grep -c " v1:$old_id:" <<<"$before")" "every secret is sealed under the old key"
q "copy connections to stdout" >"$tmp/table.txt"
if grep -qF "$ci_secret" "$tmp/table.txt"; then hgf_fail "the plaintext secret is in the connections table"; fi
echo "ok: secrets sealed at rest under key $old_id"

# --- usage errors: exit 2 before the database is opened (none is reachable here) ---
nodb=(env HGFLEET_DATABASE_URL=postgresql://127.0.0.1:1/nodb)
run 0 "$H" rotate-master-key --help
hgf_assert_contains "$HGF_OUT" "--new-key-file" "help names the flag"
hgf_assert_contains "$($H --help)" "rotate-master-key" "the command is in the top-level help"
run 2 "${nodb[@]}" "$H" rotate-master-key
hgf_assert_contains "$HGF_ERR" "--new-key-file: required" "a missing new key is named"
run 2 "${nodb[@]}" "$H" rotate-master-key --new-key-file "$tmp/short.key"
hgf_assert_contains "$HGF_ERR" "--new-key-file decodes to 16 bytes, not 32" "a short new key"
run 2 "${nodb[@]}" "$H" rotate-master-key --new-key-file "$tmp/junk.key"
hgf_assert_contains "$HGF_ERR" "--new-key-file is not valid base64" "a malformed new key"
run 2 "${nodb[@]}" "$H" rotate-master-key --new-key-file - <"$tmp/short.key"
hgf_assert_contains "$HGF_ERR" "--new-key-file decodes to 16 bytes" "a short key on stdin"
run 2 "${nodb[@]}" HGFLEET_NEW_MASTER_KEY_FILE="$tmp/short.key" "$H" rotate-master-key
hgf_assert_contains "$HGF_ERR" "HGFLEET_NEW_MASTER_KEY_FILE decodes to 16 bytes" "the env form is named"
run 2 "${nodb[@]}" HGFLEET_NEW_MASTER_KEY_FILE="$tmp/new.key" "$H" rotate-master-key \
  --new-key-file "$tmp/new.key"
hgf_assert_contains "$HGF_ERR" "one way only" "two sources of the new key"
run 2 "${nodb[@]}" "$H" rotate-master-key --new-key-file "$tmp/old.key"
hgf_assert_contains "$HGF_ERR" "is the current HGFLEET_MASTER_KEY" "the same key twice"
run 2 "${nodb[@]}" "$H" rotate-master-key --new-key "$(cat "$tmp/new.key")"
hgf_assert_contains "$HGF_ERR" "never taken from the command line" "a key on argv is refused"
run 2 "${nodb[@]}" HGFLEET_MASTER_KEY_FILE= "$H" rotate-master-key --new-key-file "$tmp/new.key"
hgf_assert_contains "$HGF_ERR" "HGFLEET_MASTER_KEY: required" "the old key is required"
run 2 "${nodb[@]}" HGFLEET_MASTER_KEY_FILE="$tmp/short.key" "$H" rotate-master-key --new-key-file "$tmp/new.key"
hgf_assert_contains "$HGF_ERR" "HGFLEET_MASTER_KEY decodes to 16 bytes" "a bad old key is named"
run 2 "${nodb[@]}" "$H" rotate-master-key --new-key-file "$tmp/new.key" --bogus
# With valid keys the same command gets as far as the database: exit 1.
run 1 "${nodb[@]}" "$H" rotate-master-key --new-key-file "$tmp/new.key"
echo "ok: usage errors exit 2 before the database is opened"

# --- a wrong old key: fails naming a connection, nothing changes ---
run 1 env HGFLEET_MASTER_KEY_FILE="$tmp/other.key" "$H" rotate-master-key --new-key-file "$tmp/new.key"
first_id=$(head -n 1 <<<"$before" | cut -d' ' -f1)
hgf_assert_contains "$HGF_ERR" "connection $first_id \"$A/us-east-1\" ($regA)" "the connection is named"
hgf_assert_contains "$HGF_ERR" "neither the old key ($other_id)" "the key ids are named"
hgf_assert_contains "$HGF_ERR" "nothing was changed" "it says nothing changed"
hgf_assert_eq "$before" "$(raw)" "a wrong old key changes nothing"

# --- one value that does not authenticate under the old key (the last row) ---
last_id=$(tail -n 1 <<<"$before" | cut -d' ' -f1)
last_val=$(tail -n 1 <<<"$before" | cut -d' ' -f2)
tampered=$(python3 -c 'import sys; v=sys.argv[1]; i=len(v)//2; print(v[:i] + ("B" if v[i] == "A" else "A") + v[i+1:])' "$last_val")
q "update connections set secret_sealed = '$tampered' where id = $last_id" >/dev/null
run 1 "$H" rotate-master-key --new-key-file "$tmp/new.key"
hgf_assert_contains "$HGF_ERR" "connection $last_id \"$C/us-east-1\" ($regC, removed)" "the tampered connection is named"
hgf_assert_contains "$HGF_ERR" "does not authenticate under master key $old_id" "the reason"
hgf_assert_eq "$(sed "\$s|.*|$last_id $tampered|" <<<"$before")" "$(raw)" \
  "rows before the bad one were rolled back too"
q "update connections set secret_sealed = '$last_val' where id = $last_id" >/dev/null
hgf_assert_eq "$before" "$(raw)" "restored"
echo "ok: a bad value fails naming its connection; nothing changed"

# --- dry run ---
run 0 "$H" rotate-master-key --new-key-file "$tmp/new.key" --dry-run --json
python3 -c 'import json,sys; r=json.load(sys.stdin); assert r["dry_run"] is True and r["connections_reencrypted"] == 3, r' <<<"$HGF_OUT"
hgf_assert_eq "$before" "$(raw)" "a dry run changes nothing"

# --- killed mid-transaction: another session holds the last row. Rows are
# re-sealed one by one in id order, each checked before the next, so when
# the rotation waits for that row the rows before it are re-sealed in its
# open transaction; SIGKILL it there. ---
hgf_bg "$HGF_PG_BIN/psql" -X -q -d "$db" -c \
  "begin; select id from connections where id = $last_id for update; select pg_sleep(60); commit;" \
  >/dev/null 2>&1
holder=$HGF_BG_PID
wait_activity() { # wait_activity SQL_CONDITION: until pg_stat_activity has a match
  local i
  for (( i = 0; i < 100; i++ )); do
    [[ $(q "select count(*) from pg_stat_activity where datname = current_database() and pid <> pg_backend_pid() and $1") != 0 ]] && return 0
    sleep 0.1
  done
  hgf_fail "no session matching: $1"
}
wait_activity "query like '%pg_sleep(60)%' and state = 'active'"
hgf_bg "$H" rotate-master-key --new-key-file "$tmp/new.key" >"$tmp/killed.out" 2>"$tmp/killed.err"
rotator=$HGF_BG_PID
wait_activity "wait_event_type = 'Lock' and query like 'UPDATE connections SET secret_sealed%'"
# While it runs: no key on any command line, nor in its environment. (The
# patterns come from files, so that grep's own argv holds no secret.)
ps -eww -o pid=,args= >"$tmp/ps.txt"
grep -q "^ *$rotator .*rotate-master-key" "$tmp/ps.txt" || hgf_fail "the rotation is not in ps"
tr '\0' '\n' <"/proc/$rotator/environ" >"$tmp/environ.txt"
for f in old.key new.key ci.secret; do
  if grep -qF -f "$tmp/$f" "$tmp/ps.txt"; then hgf_fail "$f shows in ps"; fi
  if grep -qF -f "$tmp/$f" "$tmp/environ.txt"; then hgf_fail "$f is in the rotation's environment"; fi
done
kill -KILL "$rotator"
wait "$rotator" 2>/dev/null || true
q "select pg_terminate_backend(pid) from pg_stat_activity where datname = current_database() and pid <> pg_backend_pid() and query like '%pg_sleep(60)%'" >/dev/null
for (( i = 0; i < 100; i++ )); do
  [[ $(q "select count(*) from pg_stat_activity where datname = current_database() and query like 'UPDATE connections SET secret_sealed%' and state <> 'idle'") == 0 ]] && break
  sleep 0.1
done
wait "$holder" 2>/dev/null || true
hgf_assert_eq "$before" "$(raw)" "a rotation killed mid-transaction left every value as it was"
run 0 "$H" sync "$regA" --wait
echo "ok: killed mid-rotation: all values still under the old key, syncs still work"

# --- the rotation ---
run 0 "$H" rotate-master-key --new-key-file - --json <"$tmp/new.key"
python3 -c '
import json, sys
r = json.load(sys.stdin)
want = {"old_key_id": sys.argv[1], "new_key_id": sys.argv[2], "connections_reencrypted": 3,
        "already_new_key": 0, "dry_run": False}
assert r == want, (r, want)' "$old_id" "$new_id" <<<"$HGF_OUT"
after=$(raw)
hgf_assert_eq 3 "$(grep -c " v1:$new_id:" <<<"$after")" "every secret is sealed under the new key"
paste -d' ' <(cut -d' ' -f2 <<<"$before") <(cut -d' ' -f2 <<<"$after") | while read -r b a; do
  [[ $b != "$a" ]] || hgf_fail "a ciphertext did not change"
  # nonce 12 + secret + tag 16, base64: the same length as before
  [[ ${#b} == "${#a}" ]] || hgf_fail "the sealed length changed: ${#b} -> ${#a}"
done
q "copy connections to stdout" >"$tmp/table.txt"
if grep -qF "$ci_secret" "$tmp/table.txt"; then hgf_fail "the plaintext secret is in the table after rotation"; fi
echo "ok: every ciphertext changed and names the new key $new_id"

# The old key no longer opens them; the new one does.
run 1 "$H" sync "$regA" --wait
hgf_assert_contains "$HGF_ERR$HGF_OUT" "sealed with key $new_id, but the master key is $old_id" \
  "the old key no longer decrypts"
export HGFLEET_MASTER_KEY_FILE=$tmp/new.key
run 0 "$H" sync --all --wait --json
run 0 "$H" images list --registry "$regB" --json
got=$(python3 -c 'import json,sys; print(len([i for i in json.load(sys.stdin) if i["state"] == "present"]))' <<<"$HGF_OUT")
hgf_assert_eq "$(images_in "$B.")" "$got" "the role-with-ExternalId connection syncs with the new key"
# A rerun (old -> new again) finds everything done already.
run 0 env HGFLEET_MASTER_KEY_FILE="$tmp/old.key" "$H" rotate-master-key --new-key-file "$tmp/new.key" --json
python3 -c 'import json,sys; r=json.load(sys.stdin); assert r["connections_reencrypted"] == 0 and r["already_new_key"] == 3, r' <<<"$HGF_OUT"
hgf_assert_eq "$after" "$(raw)" "a rerun changes nothing"
echo "ok: syncs work with the new key; a rerun is a no-op"

# --- no secret in /metrics or logs while serve syncs with static keys and a role ---
export HGFLEET_LISTEN=127.0.0.1:0 HGFLEET_WORKERS=2 HGFLEET_LOG_LEVEL=debug
assumed_before=$(grep -c ' AssumeRole -> 200' "$tmp/ecrsim.err" || true)
hgf_bg "$H" serve >"$tmp/serve.out" 2>"$tmp/serve.log"
l=$(hgf_wait_for_line "$tmp/serve.out" 'serving on http://' 10)
base=${l##* }
q "delete from jobs" >/dev/null
run 0 "$H" sync --all
for (( i = 0; i < 200; i++ )); do
  [[ $(q "select count(*) from jobs where kind = 'sync' and state in ('queued', 'running')") == 0 ]] && break
  sleep 0.1
done
hgf_assert_eq 2 "$(q "select count(*) from jobs where kind = 'sync' and state = 'done'")" "serve ran both syncs"
curl -fsS "$base/metrics" >"$tmp/metrics.txt"
grep -q '^hgfleet_' "$tmp/metrics.txt" || hgf_fail "no metrics"
# serve assumed the role itself (a new process has no cached session), so
# it held a session token while it logged.
(( $(grep -c ' AssumeRole -> 200' "$tmp/ecrsim.err") > assumed_before )) ||
  hgf_fail "serve made no AssumeRole call: the check below would prove nothing"
cat "$tmp/serve.log" "$transcript" "$tmp/killed.out" "$tmp/killed.err" >"$tmp/all-logs.txt"
# The static secret, both master keys, ecrsim's session tokens (they start
# IQoJb3JpZ2luX2VjE) and ECR registry tokens (base64 of "AWS:...").
printf 'IQoJb3JpZ2luX2VjE\nQVdTO\n' >"$tmp/token-prefixes"
grep -qF -f "$tmp/ci.secret" "$tmp/scenario.json" || hgf_fail "the secret pattern matches nothing it should"
for f in "$tmp/metrics.txt" "$tmp/all-logs.txt"; do
  for p in ci.secret old.key new.key token-prefixes; do
    if grep -qF -f "$tmp/$p" "$f"; then hgf_fail "$p matches in $(basename "$f")"; fi
  done
done
echo "ok: no secret, session token or registry token in /metrics or any log"
echo "PASS: rotate-master-key"
