#!/usr/bin/env bash
# The walking skeleton end to end: a simulated fleet of 5 accounts x 2 regions
# in ecrsim, one connection per registry with its own static keys, `sync --all
# --wait`, and the stored catalog compared digest by digest with ecrsim's truth.
# Also: bad input exits 2 before the database is touched, AWS errors reach the
# user with their code and leave the catalog untouched, and no secret leaks.
set -euo pipefail
# shellcheck source=tests/integration/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

tmp=$(hgf_tmpdir)
HGFLEET_DATABASE_URL=$(hgf_new_db sync)
HGFLEET_MASTER_KEY=$(openssl rand -base64 32)
export HGFLEET_DATABASE_URL HGFLEET_MASTER_KEY HGFLEET_LOG_FORMAT=json
unset AWS_ACCESS_KEY_ID AWS_SECRET_ACCESS_KEY AWS_SESSION_TOKEN AWS_ENDPOINT_URL_ECR || true
seed=7
regions=(us-east-1 eu-west-1)
accounts=()
secrets=()
keyflags=()
for i in 0 1 2 3 4; do
  acct=$(printf '%012d' $((100000000000 + seed * 1000000 + i)))
  accounts+=("$acct")
  secret=$(openssl rand -hex 20)
  secrets+=("$secret")
  keyflags+=(--key "AKIATESTACCOUNT00${i}:${secret}:${acct}")
  printf '%s\n' "$secret" >"$tmp/secret$i"
done

sim_log=$tmp/ecrsim.log
hgf_bg "$ECRSIM_BIN" --seed $seed --accounts 5 --regions us-east-1,eu-west-1 "${keyflags[@]}" \
  >"$tmp/ecrsim.out" 2>"$sim_log"
line=$(hgf_wait_for_line "$tmp/ecrsim.out" 'listening on http://' 10)
sim_url=${line##* }
export AWS_ENDPOINT_URL_ECR=$sim_url
echo "ecrsim at $sim_url"

H=$HGFLEET_BIN
all_out=$tmp/all-output.txt
run() { # run CODE ARGS...: expect an exit code and keep every output for the leak check
  local code=$1
  shift
  hgf_expect_exit "$code" "$H" "$@"
  printf '%s\n%s\n' "$HGF_OUT" "$HGF_ERR" >>"$all_out"
}

# --- bad input: exit 2 and the field named, before any database is needed ---
(
  export HGFLEET_DATABASE_URL=postgresql://nobody@127.0.0.1:1/none
  run 2 connection add not-a-registry.example.com
  hgf_assert_contains "$HGF_ERR" "dkr.ecr" "a bad URL says what was expected"
  run 2 connection add public.ecr.aws/foo
  hgf_assert_contains "$HGF_ERR" "not supported" "public ECR has its own message"
  run 2 connection add "${accounts[0]}.dkr.ecr.us-east-1.amazonaws.com" \
    --access-key-id AKIATESTACCOUNT000 --secret-access-key-file "$tmp/no-such-file"
  hgf_assert_contains "$HGF_ERR" "--secret-access-key-file" "a missing secret file names the flag"
  run 2 connection add "${accounts[0]}.dkr.ecr.us-east-1.amazonaws.com" --secret-access-key x
  hgf_assert_contains "$HGF_ERR" "--secret-access-key" "a secret on argv is refused"
  run 2 connection add "${accounts[0]}.dkr.ecr.us-east-1.amazonaws.com" --schedule 'every:5x'
  hgf_assert_contains "$HGF_ERR" "every:5x" "a bad schedule is named"
  run 2 sync
  run 2 images list --state sideways
  # A well-formed command against a dead database: exit 1, naming the host.
  run 1 connection list
  hgf_assert_contains "$HGF_ERR" "127.0.0.1" "an unreachable database names the host tried"
)

# --- migrations are idempotent ---
run 0 migrate
hgf_assert_contains "$HGF_OUT" "applied" "migrate reports"
run 0 migrate
hgf_assert_contains "$HGF_OUT" "0 applied" "a second migrate applies nothing"

# --- one connection per registry, static keys from files ---
for i in 0 1 2 3 4; do
  for r in "${regions[@]}"; do
    extra=()
    # One registry syncs only v* tags, to prove filters apply at sync.
    if [[ $i == 2 && $r == eu-west-1 ]]; then extra=(--tag-include 'v*'); fi
    run 0 connection add "https://${accounts[$i]}.dkr.ecr.$r.amazonaws.com/" \
      --access-key-id "AKIATESTACCOUNT00$i" --secret-access-key-file "$tmp/secret$i" "${extra[@]}"
    hgf_assert_contains "$HGF_OUT" "first sync queued" "add queues the first sync"
  done
done
run 2 connection add "${accounts[1]}.dkr.ecr.us-east-1.amazonaws.com" \
  --access-key-id AKIATESTACCOUNT001 --secret-access-key-file - <"$tmp/secret1"
hgf_assert_contains "$HGF_ERR" "already covered by connection" "a duplicate names the existing one"

# The secret is stored sealed, never in clear.
raw=$(hgf_psql "$HGFLEET_DATABASE_URL" -c "select secret_sealed from connections order by id limit 1")
[[ $raw == v1:* ]] || hgf_fail "secret_sealed is not a sealed value: ${raw:0:8}..."
hgf_psql "$HGFLEET_DATABASE_URL" -c "select string_agg(coalesce(secret_sealed,''), ' ') from connections" \
  >>"$all_out"

# --- the sync itself ---
run 0 sync --all --wait --json
echo "$HGF_OUT" | head -3
run 0 images list --json
printf '%s' "$HGF_OUT" >"$tmp/images.json"
curl -fsS "$sim_url/_sim/truth" >"$tmp/truth.json"
python3 - "$tmp/truth.json" "$tmp/images.json" <<'PY'
import fnmatch, json, sys
truth = json.load(open(sys.argv[1]))
mine = json.load(open(sys.argv[2]))
filtered = {"eu-west-1": "v*"}
want = set()
for reg in truth["registries"]:
    glob = filtered.get(reg["region"]) if reg["account_id"].endswith("02") else None
    for repo in reg["repositories"]:
        for im in repo["images"]:
            tags = sorted(im["tags"])
            if glob is not None:
                tags = [t for t in tags if fnmatch.fnmatchcase(t, glob)]
                if not tags:
                    continue
            want.add((reg["registry"], repo["name"], im["digest"], tuple(tags),
                      im["size_bytes"], im["pushed_at"]))
got = set()
for im in mine:
    assert im["state"] == "present", im
    assert im["scan_status"] == "queued", im
    assert im["registry"].startswith(im["account_id"] + ".dkr.ecr." + im["region"]), im
    got.add((im["registry"], im["repository"], im["digest"], tuple(im["tags"]),
             im["size_bytes"], im["pushed_at"]))
missing, extra = want - got, got - want
if missing or extra:
    print("missing:", sorted(missing)[:5], "\nextra:", sorted(extra)[:5])
    sys.exit(1)
regs = {im["registry"] for im in mine}
assert len(regs) == 10, regs
print(f"catalog equals truth: {len(got)} images in {len(regs)} registries")
PY

# --- an unchanged re-sync writes nothing new ---
run 0 sync --all --wait --json
python3 -c '
import json, sys
for line in sys.stdin:
    r = json.loads(line)["result"]["applied"]
    assert r["new_images"] == 0 and r["deleted_images"] == 0 and r["tag_moves"] == 0 \
        and r["scans_queued"] == 0 and r["rows_written"] == 0, r
' <<<"$HGF_OUT"

# --- AWS errors: code and message reach the user, the catalog stays as it was ---
before=$(hgf_psql "$HGFLEET_DATABASE_URL" -c "select count(*) from images")
printf 'wrong-secret\n' >"$tmp/wrong"
run 0 connection add "${accounts[0]}.dkr.ecr.ap-south-1.amazonaws.com" \
  --access-key-id AKIATESTACCOUNT000 --secret-access-key-file "$tmp/wrong"
run 1 sync "${accounts[0]}.dkr.ecr.ap-south-1.amazonaws.com" --wait
hgf_assert_contains "$HGF_OUT" "InvalidSignatureException" "the AWS error code is shown"
hgf_assert_contains "$HGF_OUT" "signature" "the AWS message is shown"
run 0 connection add "${accounts[3]}.dkr.ecr.ap-south-1.amazonaws.com" \
  --access-key-id AKIATESTACCOUNT001 --secret-access-key-file "$tmp/secret1"
run 1 sync "${accounts[3]}.dkr.ecr.ap-south-1.amazonaws.com" --wait
hgf_assert_contains "$HGF_OUT" "AccessDeniedException" "cross-account denial is shown"
after=$(hgf_psql "$HGFLEET_DATABASE_URL" -c "select count(*) from images")
hgf_assert_eq "$before" "$after" "failed syncs wrote no images"
run 0 connection list
hgf_assert_contains "$HGF_OUT" "failed" "connection list shows the failed sync"
run 2 sync 999
hgf_assert_contains "$HGF_ERR" "999" "an unknown connection is named"

# --- remove keeps history; --purge deletes it ---
run 0 connection remove "${accounts[0]}.dkr.ecr.ap-south-1.amazonaws.com"
run 0 connection remove "${accounts[3]}.dkr.ecr.ap-south-1.amazonaws.com" --purge
run 2 connection show "${accounts[3]}.dkr.ecr.ap-south-1.amazonaws.com"

# --- no secret anywhere: outputs, logs, the simulator's log ---
cat "$sim_log" >>"$all_out"
for s in "${secrets[@]}" wrong-secret; do
  if grep -qF -- "$s" "$all_out"; then hgf_fail "a secret leaked into the output or logs"; fi
done
echo "PASS: sync fleet"
