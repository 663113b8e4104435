#!/usr/bin/env bash
# ecrsim's fault injection, seen by botocore with retries off: the random
# throttle rate is honoured, per-(account, region, API) quotas throttle a
# burst, injected 500/503 answers and dropped connections reach the client,
# latency delays AWS calls but not the control API, POST /_sim/config changes
# take effect (and bad ones are refused), the same seed injects the same
# faults, and /_sim/stats counts exactly what the client saw.
#
# Needs ECRSIM_BIN (ctest sets it), curl, python3 and npm access for
# scripts/fetch-awscli on the first run.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

SECONDS=0
hgf_awscli_setup

TMP=$(hgf_tmpdir)
KEY=AKIDFAULTS
SECRET=faults-secret-$RANDOM$RANDOM

start_ecrsim() { # start_ecrsim NAME ARGS...: PORT_<NAME>
  local name=$1 line
  shift
  hgf_bg "$ECRSIM_BIN" "$@" >"$TMP/$name.out" 2>"$TMP/$name.err"
  line=$(hgf_wait_for_line "$TMP/$name.out" '^ecrsim listening on http://127\.0\.0\.1:[0-9]+$' 15)
  printf -v "PORT_$name" '%s' "${line##*:}"
}

# ---- flags --------------------------------------------------------------------
hgf_expect_exit 2 "$ECRSIM_BIN" --throttle-rate 1.5
hgf_assert_contains "$HGF_ERR" "--throttle-rate" "a bad --throttle-rate is named"
hgf_expect_exit 2 "$ECRSIM_BIN" --quota DescribeImages
hgf_assert_contains "$HGF_ERR" "--quota" "a --quota without a rate is named"
hgf_expect_exit 2 "$ECRSIM_BIN" --quota DescribeImages=0
hgf_assert_contains "$HGF_ERR" "DescribeImages" "a zero quota is refused"
hgf_expect_exit 2 "$ECRSIM_BIN" --latency-ms -5
hgf_assert_contains "$HGF_ERR" "--latency-ms" "a negative latency is named"
hgf_expect_exit 0 "$ECRSIM_BIN" --help
hgf_assert_contains "$HGF_OUT" "--drop-rate" "--help documents the fault flags"

start_ecrsim A --seed 7 --key "$KEY:$SECRET:*" --throttle-rate 0.3 --quota DescribeImages=20 \
  --latency-ms 0
start_ecrsim B --seed 7 --key "$KEY:$SECRET:*" --throttle-rate 0.3
start_ecrsim C --seed 8 --key "$KEY:$SECRET:*" --throttle-rate 0.3
start_ecrsim D --seed 7 --key "$KEY:$SECRET:*" --throttle-rate 0.3

python3 - "$LAYER" "$KEY" "$SECRET" "$PORT_A" "$PORT_B" "$PORT_C" "$PORT_D" <<'PY' || hgf_fail "fault checks failed"
import concurrent.futures, json, sys, time, urllib.error, urllib.request
layer, key, secret, port_a, port_b, port_c, port_d = sys.argv[1:]
sys.path.insert(0, layer)
import awscli  # noqa: F401  (makes the vendored botocore importable as botocore)
import botocore.session
from botocore.config import Config
from botocore.exceptions import ClientError, ConnectionClosedError

session = botocore.session.Session()
session.set_config_variable("config_file", "/dev/null")
# total_max_attempts=1 is "no retries" in every botocore retry mode; plain
# max_attempts=1 would still allow one retry in the legacy mode.
cfg = Config(retries={"total_max_attempts": 1}, max_pool_connections=16)
url = f"http://127.0.0.1:{port_a}"

def client(service="ecr", port=port_a, region="us-east-1"):
    return session.create_client(service, region_name=region,
                                 endpoint_url=f"http://127.0.0.1:{port}", config=cfg,
                                 aws_access_key_id=key, aws_secret_access_key=secret)

def control(path, method="GET", doc=None, port=port_a):
    data = json.dumps(doc).encode() if doc is not None else None
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method)
    try:
        with urllib.request.urlopen(req) as r:
            return r.status, json.load(r)
    except urllib.error.HTTPError as e:
        return e.code, json.load(e)

def configure(**doc):
    status, body = control("/_sim/config", "POST", doc)
    assert status == 200, (status, body)
    return body

def outcome(fn, **kw):
    """What the client saw: "ok", the error code, or "dropped"."""
    try:
        fn(**kw)
        return "ok"
    except ClientError as e:
        return e.response["Error"]["Code"]
    except ConnectionClosedError:
        return "dropped"

def tally(outcomes):
    counts = {}
    for o in outcomes:
        counts[o] = counts.get(o, 0) + 1
    return counts

def run(fn, n, threads=4, **kw):
    with concurrent.futures.ThreadPoolExecutor(threads) as pool:
        return tally(pool.map(lambda _: outcome(fn, **kw), range(n)))

def stats_match(op, seen):
    """/_sim/stats (reset before the phase) agrees with what the client saw."""
    status, s = control("/_sim/stats")
    got = s["calls"].get(op, {})
    assert got.get("calls") == sum(seen.values()), (op, got, seen)
    for o, n in seen.items():
        assert got.get(o) == n, (op, o, got, seen)
    throttles = seen.get("ThrottlingException", 0) + seen.get("Throttling", 0)
    assert got["throttled"] == throttles and got["dropped"] == seen.get("dropped", 0), (got, seen)
    control("/_sim/stats", "DELETE")

ecr = client()
control("/_sim/stats", "DELETE")

# The flags are in the configuration.
status, conf = control("/_sim/config")
assert conf["throttle_rate"] == 0.3 and conf["quotas"] == {"DescribeImages": 20.0}, conf

# 1. Random throttles at the flag's rate 0.3 (between 0.2 and 0.4 of 500 calls).
seen = run(ecr.describe_repositories, 500)
assert 100 <= seen.get("ThrottlingException", 0) <= 200, seen
assert seen.get("ThrottlingException", 0) + seen.get("ok", 0) == 500, seen
stats_match("DescribeRepositories", seen)
print("throttle 0.3:", seen)

# 2. The quota: a burst of 100 DescribeImages at 20/s in one (account,
#    region); other regions have their own bucket.
configure(throttle_rate=0)
repo = ecr.describe_repositories()["repositories"][0]["repositoryName"]
control("/_sim/stats", "DELETE")
t0 = time.monotonic()
seen = tally(outcome(ecr.describe_images, repositoryName=repo) for _ in range(100))
elapsed = time.monotonic() - t0
allowed = 20 + 20 * elapsed + 1
assert seen.get("ok", 0) <= allowed and seen.get("ThrottlingException", 0) >= 100 - allowed, \
    (seen, elapsed)
# (The bound above already scales with how fast this machine sent the burst.)
stats_match("DescribeImages", seen)
other = client(region="eu-west-1")
assert outcome(other.describe_images, repositoryName=
               other.describe_repositories()["repositories"][0]["repositoryName"]) == "ok"
time.sleep(1.1)
refill = tally(outcome(ecr.describe_images, repositoryName=repo) for _ in range(10))
assert refill.get("ok", 0) >= 10, refill
control("/_sim/stats", "DELETE")
print(f"quota 20/s: {seen} in {elapsed:.2f} s")

# 3. Injected errors alternate between 500 ServerException and an empty 503.
configure(quotas={}, error_rate=1)
seen = [outcome(ecr.describe_repositories) for _ in range(20)]
assert seen == ["ServerException", "503"] * 10 or seen == ["503", "ServerException"] * 10, seen
try:
    ecr.describe_repositories()
except ClientError as e:
    r = e.response
    assert r["ResponseMetadata"]["HTTPStatusCode"] in (500, 503), r
control("/_sim/stats", "DELETE")
configure(error_rate=0.05)
seen = run(ecr.describe_repositories, 500)
errors = seen.get("ServerException", 0) + seen.get("503", 0)
assert 10 <= errors <= 45, seen
seen["ServiceUnavailable"] = seen.pop("503", 0)  # the stats' name for the empty 503
stats_match("DescribeRepositories", seen)
print("errors 0.05:", seen)

# 4. Dropped connections: every one, then a fraction.
configure(error_rate=0, drop_rate=1)
assert [outcome(ecr.describe_repositories) for _ in range(5)] == ["dropped"] * 5
status, s = control("/_sim/stats")  # the control API is never faulted
assert status == 200 and s["calls"]["DescribeRepositories"]["dropped"] == 5, s
control("/_sim/stats", "DELETE")
configure(drop_rate=0.1)
seen = run(ecr.describe_repositories, 300)
assert 10 <= seen.get("dropped", 0) <= 60, seen
stats_match("DescribeRepositories", seen)
print("drops 0.1:", seen)

# 5. Latency delays AWS calls, not the control API.
configure(drop_rate=0, latency_ms=300)
t0 = time.monotonic()
assert outcome(ecr.describe_repositories) == "ok"
slow = time.monotonic() - t0
t0 = time.monotonic()
control("/_sim/stats")
fast = time.monotonic() - t0
assert slow >= 0.3 and fast < 0.2, (slow, fast)
configure(latency_ms=0)

# 6. STS and the registry get faults in their own shapes.
sts = client("sts")
configure(error_rate=1)
codes = {outcome(sts.get_caller_identity) for _ in range(4)}
assert codes == {"InternalFailure", "503"}, codes
configure(error_rate=0, throttle_rate=1)
assert outcome(sts.get_caller_identity) == "Throttling"
auth = ecr.get_authorization_token  # throttled too
assert outcome(auth) == "ThrottlingException"
req = urllib.request.Request(f"{url}/_registry/100007000000/us-east-1/v2/")
try:
    urllib.request.urlopen(req)
    raise AssertionError("a registry call escaped throttle_rate 1")
except urllib.error.HTTPError as e:
    assert e.code == 429 and json.load(e)["errors"][0]["code"] == "TOOMANYREQUESTS"
configure(throttle_rate=0, quotas={"GetCallerIdentity": 2})
seen = tally(outcome(sts.get_caller_identity) for _ in range(10))
assert seen.get("Throttling", 0) >= 6, seen
status, s = control("/_sim/stats")
assert s["sts"]["GetCallerIdentity"] == 15, s["sts"]
assert s["calls"]["GetCallerIdentity"]["throttled"] == 1 + seen.get("Throttling", 0), s
configure(quotas={})

# 7. Bad configurations are refused, naming the member, and change nothing.
for bad, field in (({"throttle_rate": 2}, "throttle_rate"), ({"latency_ms": -1}, "latency_ms"),
                   ({"quotas": {"DescribeImages": 0}}, "DescribeImages"),
                   ({"bogus": 1}, "bogus")):
    status, body = control("/_sim/config", "POST", bad)
    assert status == 400 and field in body["error"], (bad, status, body)
status, body = control("/_sim/config", "POST", {"latency_ms": 5, "clock_offset": 42})
assert body["latency_ms"] == 5 and body["clock_offset"] == 42 and body["throttle_rate"] == 0, body
configure(latency_ms=0, clock_offset=0)

# 8. The same seed injects the same faults; another seed does not. B and D
#    share seed 7 and have served nothing yet; C has seed 8.
def pattern(port):
    c = client(port=port)
    return [outcome(c.describe_repositories) for _ in range(200)]
with concurrent.futures.ThreadPoolExecutor(3) as pool:  # one server each: orders stay fixed
    pb, pd, pc = pool.map(pattern, (port_b, port_d, port_c))
assert pb == pd, "seed 7 injected different faults in two runs"
assert pb != pc, "seeds 7 and 8 injected the same faults"
assert 30 <= pb.count("ThrottlingException") <= 90, pb.count("ThrottlingException")
print("fault checks passed")
PY
if grep -F -q -- "$SECRET" "$TMP"/*.err "$TMP"/*.out; then
  hgf_fail "ecrsim logged the secret key"
fi

printf 'test_ecrsim_faults: ok (%d s)\n' "$SECONDS"
