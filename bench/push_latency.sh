#!/usr/bin/env bash
# Push event to scan job claimed: ecrsim pushes N images at R events/s and
# delivers each EventBridge event to a running `hgfleet serve`; the figure is
# jobs.claimed_at - jobs.created_at per push scan (both on PostgreSQL's clock),
# printed as p50, p99 and max beside the target (p99 under 50 ms).
#   bench/push_latency.sh [--events N] [--rate R] [--workers W] [--latency-ms L]
#                         [--json FILE] [--db URL]
# --latency-ms delays every ECR and registry call in ecrsim (default 20, as in
# bench/run): the scans the events cause must not be faster than AWS's.
# --workers sets HGFLEET_WORKERS; without it the server runs its default.
# --json FILE also writes the figures as one JSON object (bench/run reads it).
# --db URL uses that empty database instead of starting a PostgreSQL.
# Needs a build (build/ or $HGF_BUILD_DIR) and PostgreSQL 15 (scripts/deps).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd -P)
events=1000 rate=500 workers='' latency_ms=20 json_out='' db=''
while [[ $# -gt 0 ]]; do
  case $1 in
    --events) events=$2; shift 2 ;;
    --rate) rate=$2; shift 2 ;;
    --workers) workers=$2; shift 2 ;;
    --latency-ms) latency_ms=$2; shift 2 ;;
    --json) json_out=$2; shift 2 ;;
    --db) db=$2; shift 2 ;;
    *) echo "usage: $0 [--events N] [--rate R] [--workers W] [--latency-ms L] [--json FILE] [--db URL]" >&2
       exit 2 ;;
  esac
done
build=${HGF_BUILD_DIR:-$root/build}
H=$build/hgfleet S=$build/ecrsim
tmp=$(mktemp -d)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  [[ -n $db ]] || "$root/scripts/pg-harness" stop "$tmp/pg" >/dev/null 2>&1 || true
  rm -rf "$tmp"
}
trap cleanup EXIT

export HGFLEET_DATABASE_URL=$db
[[ -n $db ]] || HGFLEET_DATABASE_URL=$("$root/scripts/pg-harness" start "$tmp/pg" | tail -1)
token=$(openssl rand -hex 24)
export HGFLEET_WEBHOOK_TOKEN=$token HGFLEET_LOG_LEVEL=warn AWS_EC2_METADATA_DISABLED=true
export AWS_ACCESS_KEY_ID=AKIDECRSIMDEFAULT AWS_SECRET_ACCESS_KEY=ecrsim-default-secret
load_start=$(cut -d' ' -f1 /proc/loadavg)
"$S" --latency-ms "$latency_ms" --seed 9 --accounts 1 --regions us-east-1 --repos 2 --images 2 >"$tmp/sim.out" 2>/dev/null &
pids+=($!)
for _ in $(seq 50); do grep -q 'listening on' "$tmp/sim.out" 2>/dev/null && break; sleep 0.1; done
sim=$(sed -n 's/.*listening on //p' "$tmp/sim.out")
export AWS_ENDPOINT_URL_ECR=$sim
acct=$(curl -fsS "$sim/_sim/truth" | python3 -c 'import json,sys; print(json.load(sys.stdin)["registries"][0]["account_id"])')
"$H" migrate >/dev/null
"$H" connection add "$acct.dkr.ecr.us-east-1.amazonaws.com" --schedule on_push >/dev/null
"$H" sync --all --wait >/dev/null 2>&1
[[ -z $workers ]] || export HGFLEET_WORKERS=$workers
HGFLEET_LISTEN=127.0.0.1:0 "$H" serve >"$tmp/serve.out" 2>"$tmp/serve.log" &
pids+=($!)
for _ in $(seq 50); do grep -q 'serving on' "$tmp/serve.out" 2>/dev/null && break; sleep 0.1; done
base=$(sed -n 's/.*serving on //p' "$tmp/serve.out")
for _ in $(seq 50); do curl -fsS "$base/readyz" >/dev/null 2>&1 && break; sleep 0.1; done
curl -fsS -X POST "$sim/_sim/webhook" -d "{\"url\":\"$base/api/webhooks/ecr\",\"auth\":{\"type\":\"API_KEY\",\"header\":\"X-Api-Key\",\"value\":\"$token\"}}" >/dev/null
q() { psql "$HGFLEET_DATABASE_URL" -Atc "$1"; }
start=$(date +%s.%N)
curl -fsS -X POST "$sim/_sim/push" -d "{\"account\":\"$acct\",\"region\":\"us-east-1\",\"repository\":\"bench/push\",\"tag\":\"b\",\"count\":$events,\"rate\":$rate}" >/dev/null
for _ in $(seq 1200); do
  n=$(q "select count(*) from jobs where kind = 'scan' and priority = 10 and claimed_at is not null")
  [[ $n -ge $events ]] && break
  sleep 0.1
done
secs=$(python3 -c "import time; print(round(time.time() - $start, 2))")
q "select extract(epoch from claimed_at - created_at) * 1000 from jobs where kind = 'scan' and priority = 10 and claimed_at is not null" >"$tmp/lat"
# A server claims push scans ahead of its free workers, so the claim says the
# event was taken up, not that the image was scanned: the time to the scan's
# end is printed beside it, so a backlog cannot hide behind fast claims.
for _ in $(seq 1200); do
  n=$(q "select count(*) from jobs where kind = 'scan' and priority = 10 and finished_at is not null")
  [[ $n -ge $events ]] && break
  sleep 0.1
done
q "select extract(epoch from finished_at - created_at) * 1000 from jobs where kind = 'scan' and priority = 10 and finished_at is not null" >"$tmp/done"
load_end=$(cut -d' ' -f1 /proc/loadavg)
python3 - "$tmp/lat" "$events" "$rate" "$secs" "$json_out" "${workers:-default}" "$latency_ms" \
  "$load_start" "$load_end" "$tmp/done" <<'PY'
import json, sys
lat = sorted(float(x) for x in open(sys.argv[1]) if x.strip())
done = sorted(float(x) for x in open(sys.argv[10]) if x.strip())
n, rate, secs = int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
workers, latency_ms, load = sys.argv[6], int(sys.argv[7]), [float(x) for x in sys.argv[8:10]]
if not lat:
    print("no push scan was claimed"); sys.exit(1)
def pct(p, xs=lat):
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))] if xs else float("nan")
if sys.argv[5]:
    with open(sys.argv[5], "w") as f:
        json.dump({"events": n, "claimed": len(lat), "rate": rate, "wall_seconds": float(secs),
                   "p50_ms": pct(50), "p99_ms": pct(99), "max_ms": lat[-1], "workers": workers,
                   "latency_ms": latency_ms, "load_start": load[0], "load_end": load[1],
                   "done": len(done), "done_p50_ms": pct(50, done), "done_p99_ms": pct(99, done),
                   "done_max_ms": done[-1] if done else None}, f)
print(f"push event -> scan job claimed, {len(lat)} of {n} events at {rate}/s ({secs} s wall)")
print(f"{'figure':<10} {'hgfleet':>10} {'target':>10}")
print(f"{'p50 ms':<10} {pct(50):>10.1f} {'':>10}")
print(f"{'p99 ms':<10} {pct(99):>10.1f} {'< 50':>10}")
print(f"{'max ms':<10} {lat[-1]:>10.1f} {'':>10}")
print(f"push event -> scan finished, {len(done)} of {n}: p50 {pct(50, done):.1f} ms,"
      f" p99 {pct(99, done):.1f} ms, max {done[-1] if done else float('nan'):.1f} ms")
print(f"notes: ecrsim {latency_ms} ms per call; HGFLEET_WORKERS {workers} (the server's own"
      f" default unless --workers: what a deployment runs); load average {load[0]} at the"
      f" start, {load[1]} at the end")
PY
