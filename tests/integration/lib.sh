# shellcheck shell=bash
# Helpers for tests/integration/test_*.sh; source it first:
#   source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"
# ctest provides HGF_PG_DIR (a cluster started by scripts/pg-harness),
# HGFLEET_BIN, ECRSIM_BIN, HGF_SOURCE_DIR and HGF_BUILD_DIR.
#
# Sourcing installs an EXIT trap that stops processes started with hgf_bg and
# deletes every hgf_tmpdir. Register extra clean-up with hgf_on_exit instead of
# setting another EXIT trap. HGF_KEEP_TMP=1 keeps the temporary files.
set -euo pipefail
# Without this, a failing command inside $(...) goes unnoticed.
shopt -s inherit_errexit

HGF_PG_BIN=${HGF_PG_BIN:-/usr/lib/postgresql/15/bin}

# A version manager's python3 (pyenv's shim is a bash script that looks the
# version up on every call) took 0.5 s a call on the CI machine against
# 0.09 s for the interpreter itself, and the tests call python3 hundreds of
# times. The same interpreter, resolved once:
if HGF_PYTHON=$(command python3 -c 'import sys; print(sys.executable)' 2>/dev/null) &&
  [[ -x $HGF_PYTHON ]]; then
  python3() { "$HGF_PYTHON" "$@"; }
fi
HGF_OUT=
HGF_ERR=
HGF_RC=
HGF_BG_PID=
_HGF_EXIT_CMDS=()

hgf_fail() {
  printf 'FAIL: %s\n' "$*" >&2
  exit 1
}

# Everything lives under one root made at source time, so hgf_tmpdir and
# hgf_bg still get cleaned up when called from a subshell such as $(...).
_HGF_ROOT=$(mktemp -d "${TMPDIR:-/tmp}/hgf-test.XXXXXX") || hgf_fail "mktemp failed"
: >"$_HGF_ROOT/pids"

_hgf_stop_pid() {
  local pid=$1 i
  # hgf_bg starts each command as a process group leader, so the group takes
  # the command's children with it.
  kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || return 0
  for (( i = 0; i < 50; i++ )); do
    kill -0 "$pid" 2>/dev/null || return 0
    sleep 0.1
  done
  kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
}

_hgf_cleanup() {
  local rc=$? cmd pid
  set +e
  for cmd in "${_HGF_EXIT_CMDS[@]}"; do
    eval "$cmd"
  done
  while read -r pid; do
    [[ -n $pid ]] && _hgf_stop_pid "$pid"
  done <"$_HGF_ROOT/pids"
  if [[ ${HGF_KEEP_TMP:-0} == 1 ]]; then
    printf 'kept temporary files in %s\n' "$_HGF_ROOT" >&2
  else
    rm -rf "$_HGF_ROOT"
  fi
  exit "$rc"
}
trap _hgf_cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# hgf_on_exit CMD [ARGS...]: run CMD when the test exits (before processes stop).
hgf_on_exit() {
  _HGF_EXIT_CMDS+=("$(printf '%q ' "$@")")
}

hgf_tmpdir() {
  mktemp -d "$_HGF_ROOT/tmp.XXXXXX"
}

# hgf_bg CMD [ARGS...]: start CMD in the background; its pid is left in
# HGF_BG_PID (so call it directly, not in $(...)). Redirect its output at the
# call site: hgf_bg "$HGFLEET_BIN" serve >"$log" 2>&1
hgf_bg() {
  [[ $# -gt 0 ]] || hgf_fail "hgf_bg: no command given"
  # Without job control a background child is not a group leader, so setsid
  # makes it one without forking and $! stays the command's own pid.
  setsid "$@" &
  HGF_BG_PID=$!
  printf '%s\n' "$HGF_BG_PID" >>"$_HGF_ROOT/pids"
}

hgf_pg_url() {
  [[ -n ${HGF_PG_DIR:-} ]] || hgf_fail "HGF_PG_DIR is not set (run the test through ctest, or export it)"
  [[ -s $HGF_PG_DIR/url ]] || hgf_fail "no PostgreSQL URL in $HGF_PG_DIR/url (run: scripts/pg-harness start $HGF_PG_DIR)"
  local url
  url=$(<"$HGF_PG_DIR/url")
  printf '%s\n' "$url"
}

# hgf_psql URL [PSQL ARGS...]: unaligned, tuples-only, stops at the first error.
hgf_psql() {
  local url=$1
  shift
  "$HGF_PG_BIN/psql" -X -q -A -t -v ON_ERROR_STOP=1 -d "$url" "$@"
}

# hgf_new_db NAME: create an empty database and print its URL. The name gets
# the pid and a random suffix so parallel tests and repeated calls never clash.
hgf_new_db() {
  [[ $# -eq 1 && -n $1 ]] || hgf_fail "hgf_new_db: expected one NAME"
  local base stem name attempt
  base=$(hgf_pg_url)
  stem=$(printf '%s' "$1" | tr '[:upper:]' '[:lower:]' | tr -c 'a-z0-9_' '_' | cut -c1-32)
  for (( attempt = 0; attempt < 5; attempt++ )); do
    name="hgf_${stem}_$$_$(( SRANDOM % 1000000 ))"
    if hgf_psql "$base" -c "CREATE DATABASE \"$name\"" 2>"$_HGF_ROOT/createdb.err"; then
      printf '%s/%s\n' "${base%/*}" "$name"
      return 0
    fi
    grep -q 'already exists' "$_HGF_ROOT/createdb.err" || break
  done
  hgf_fail "hgf_new_db: could not create database $name: $(cat "$_HGF_ROOT/createdb.err")"
}

# hgf_wait_for_line FILE REGEX TIMEOUT_S: print the first line of FILE that
# matches the extended REGEX, waiting up to TIMEOUT_S whole seconds for it.
hgf_wait_for_line() {
  [[ $# -eq 3 && $3 =~ ^[0-9]+$ ]] || hgf_fail "hgf_wait_for_line: expected FILE REGEX TIMEOUT_S"
  local file=$1 regex=$2 ticks=$(( $3 * 10 )) line
  while :; do
    if line=$(grep -E -m 1 -- "$regex" "$file" 2>/dev/null); then
      printf '%s\n' "$line"
      return 0
    fi
    (( ticks-- > 0 )) || break
    sleep 0.1
  done
  {
    printf 'last lines of %s:\n' "$file"
    tail -n 20 "$file" 2>/dev/null || printf '(file does not exist)\n'
  } >&2
  hgf_fail "no line matching /$regex/ in $file after $3 s"
}

# hgf_wait_sql SQL WANT TIMEOUT_S WHAT: poll $HGFLEET_DATABASE_URL until SQL
# answers WANT.
hgf_wait_sql() {
  [[ $# -eq 4 && $3 =~ ^[0-9]+$ ]] || hgf_fail "hgf_wait_sql: expected SQL WANT TIMEOUT_S WHAT"
  local i got=
  for (( i = 0; i < $3 * 20; i++ )); do
    got=$(hgf_psql "$HGFLEET_DATABASE_URL" -c "$1")
    [[ $got == "$2" ]] && return 0
    sleep 0.05
  done
  hgf_fail "$4: expected '$2', still '$got' after $3 s"
}

# hgf_stop PID: end a server started with hgf_bg (its process group) and wait for it.
hgf_stop() {
  kill -TERM -- "-$1" 2>/dev/null || true
  wait "$1" 2>/dev/null || true
}

# hgf_one_registry NAME SEED IMAGES DIR: the fixture of the tests that follow
# one scan job's runs: a new database (hgf_new_db NAME) with a master key, the
# `none` scanner and ecrsim's default keys in the environment; ecrsim with one
# registry (one repository of IMAGES images, its output in DIR); the database
# migrated, the registry's connection added and synced, so that its scan jobs
# are queued. Sets HGF_SIM to ecrsim's URL (exported as AWS_ENDPOINT_URL_ECR)
# and HGF_ACCOUNT to the registry's account.
hgf_one_registry() {
  [[ $# -eq 4 ]] || hgf_fail "hgf_one_registry: expected NAME SEED IMAGES DIR"
  local line
  HGFLEET_DATABASE_URL=$(hgf_new_db "$1")
  HGFLEET_MASTER_KEY=$(openssl rand -base64 32)
  export HGFLEET_DATABASE_URL HGFLEET_MASTER_KEY HGFLEET_SCANNER=none AWS_EC2_METADATA_DISABLED=true
  export AWS_ACCESS_KEY_ID=AKIDECRSIMDEFAULT AWS_SECRET_ACCESS_KEY=ecrsim-default-secret
  unset AWS_SESSION_TOKEN AWS_ENDPOINT_URL HGFLEET_LOG_FORMAT HGFLEET_SWEEP_SCHEDULE \
    HGFLEET_RESCAN_AFTER || true
  shift
  hgf_bg "$ECRSIM_BIN" --seed "$1" --accounts 1 --regions us-east-1 --repos 1 --images "$2" \
    >"$3/sim.out" 2>"$3/sim.log"
  line=$(hgf_wait_for_line "$3/sim.out" 'listening on http://' 10)
  HGF_SIM=${line##* }
  export AWS_ENDPOINT_URL_ECR=$HGF_SIM
  HGF_ACCOUNT=$(curl -fsS "$HGF_SIM/_sim/truth" |
    python3 -c 'import json,sys; print(json.load(sys.stdin)["registries"][0]["account_id"])')
  hgf_expect_exit 0 "$HGFLEET_BIN" migrate
  hgf_expect_exit 0 "$HGFLEET_BIN" connection add "$HGF_ACCOUNT.dkr.ecr.us-east-1.amazonaws.com" \
    --schedule manual
  hgf_expect_exit 0 "$HGFLEET_BIN" sync --all --wait
}

hgf_assert_eq() {
  [[ $# -eq 3 ]] || hgf_fail "hgf_assert_eq: expected EXPECTED ACTUAL MSG"
  [[ $1 == "$2" ]] || hgf_fail "$3: expected '$1', got '$2'"
}

hgf_assert_contains() {
  [[ $# -eq 3 ]] || hgf_fail "hgf_assert_contains: expected HAYSTACK NEEDLE MSG"
  [[ $1 == *"$2"* ]] || hgf_fail "$3: '$2' not found in: $1"
}

# hgf_expect_exit CODE CMD [ARGS...]: run CMD, keep its stdout, stderr and exit
# status in HGF_OUT, HGF_ERR and HGF_RC, and fail unless the status is CODE.
hgf_expect_exit() {
  [[ $# -ge 2 && $1 =~ ^[0-9]+$ ]] || hgf_fail "hgf_expect_exit: expected CODE CMD..."
  local want=$1 out="$_HGF_ROOT/expect.out" err="$_HGF_ROOT/expect.err"
  shift
  HGF_RC=0
  # A subshell, so that a shell function calling exit (hgf_fail) is caught too.
  ( "$@" ) >"$out" 2>"$err" || HGF_RC=$?
  HGF_OUT=$(<"$out")
  HGF_ERR=$(<"$err")
  [[ $HGF_RC == "$want" ]] ||
    hgf_fail "$(printf '%q ' "$@")exited $HGF_RC, expected $want
--- stdout:
$HGF_OUT
--- stderr:
$HGF_ERR"
}

# hgf_python_on_path: the python3 function above serves this shell only;
# scripts a test runs (scripts/pg-harness, bench/run) find python3 on PATH,
# through the shim again. This puts the resolved interpreter first on PATH.
hgf_python_on_path() {
  [[ -n ${HGF_PYTHON:-} && -x $HGF_PYTHON ]] || return 0
  mkdir -p "$_HGF_ROOT/python-bin"
  ln -sf "$HGF_PYTHON" "$_HGF_ROOT/python-bin/python3"
  PATH=$_HGF_ROOT/python-bin:$PATH
  export PATH
}

# hgf_each_line JOBS LOG CMD [ARGS...] <LINES: runs CMD ARGS once per line of
# stdin, with every {} in ARGS replaced by the line, JOBS runs at a time (for
# many short processes such as `connection add`). Their output is appended to
# LOG; fails, showing LOG's end, if any run failed.
hgf_each_line() {
  [[ $# -ge 3 && $1 =~ ^[1-9][0-9]*$ ]] || hgf_fail "hgf_each_line: expected JOBS LOG CMD..."
  local jobs=$1 log=$2 rc=0
  shift 2
  xargs -d '\n' -r -P "$jobs" -I{} "$@" >>"$log" 2>&1 || rc=$?
  (( rc == 0 )) || hgf_fail "hgf_each_line: a run of $1 failed (xargs exit $rc); the end of $log:
$(tail -n 20 "$log")"
}

# hgf_pyhost_start [LAYER]: starts the python host (pyhost.py) in $TMP. It
# runs each script as `python3 SCRIPT ARGS...` would (same argv, environment,
# stdin, stdout, stderr and exit status), one after another in this one
# interpreter, which imports the AWS CLI once when given its layer.
hgf_pyhost_start() {
  # Named pipes, not a coprocess: bash has only one of those at a time. Opened
  # read-write where a one-way open would block for the other end; requests on
  # descriptor 3, as a command in the background gets /dev/null for stdin.
  mkfifo "$TMP/pyhost.in" "$TMP/pyhost.out"
  hgf_bg python3 "$HGF_SOURCE_DIR/tests/integration/pyhost.py" "$@" 3<>"$TMP/pyhost.in" 1<>"$TMP/pyhost.out" 2>"$TMP/pyhost.err"
  exec {PY_TO}>"$TMP/pyhost.in" {PY_FROM}<"$TMP/pyhost.out"
}

# py [-s] [NAME=VALUE | -u NAME]... SCRIPT|-|-c CODE [ARGS...]: python3 in the
# host, with these changes to the environment; -s passes stdin on ("-": the
# script is on stdin).
py() {
  local f=$TMP/py.$BASHPID env=() in='' rc
  while [[ $1 == -[su] || $1 =~ ^[A-Za-z_][A-Za-z0-9_]*= ]]; do
    case $1 in
      -s) cat >"$f.in"; in=$f.in ;;
      -u) env+=("-u$2"); shift ;;
      *) env+=("$1") ;;
    esac
    shift
  done
  case $1 in
    -) cat >"$f.py"; shift; set -- "$f.py" "$@" ;;
    -c) printf '%s\n' "$2" >"$f.py"; shift 2; set -- "$f.py" "$@" ;;
  esac
  printf '%s\0' "${#env[@]}" "${env[@]}" "$in" "$@" >"$f.args"
  printf '%s\n' "$f" >&"$PY_TO"
  read -r rc <&"$PY_FROM" || hgf_fail "the python host died: $(cat "$TMP/pyhost.err")"
  cat "$f.out"
  cat "$f.err" >&2
  return "$rc"
}

# hgf_c_sql FILE NAME: the C string constant NAME of FILE as one SQL text, with the
# string macros it is made of (#define NAME "..." ...) expanded.
hgf_c_sql() {
  python3 - "$HGF_SOURCE_DIR/$1" "$2" <<'PY'
import re, sys
src, name = open(sys.argv[1]).read(), sys.argv[2]
lit = r'"(?:[^"\\]|\\.)*"'
macros = dict(re.findall(r'^#define\s+(\w+)\s+(.*)$', re.sub(r'\\\n', ' ', src), re.M))
def text(body):
    out = []
    for tok in re.findall(r'%s|\w+' % lit, body):
        if tok.startswith('"'):
            out.append(tok[1:-1].encode().decode("unicode_escape"))
        else:
            assert tok in macros, "%s: %s is not a string macro" % (name, tok)
            out.append(text(macros[tok]))
    return "".join(out)
m = re.search(r'\b%s\[\]\s*=\s*((?:\s*(?:%s|\w+))+)\s*;' % (re.escape(name), lit), src)
assert m, "%s not found in %s" % (name, sys.argv[1])
print(text(m.group(1)))
PY
}

# hgf_explain NAME TYPES SQL ARGS: the plan of SQL run with ARGS on
# $HGFLEET_DATABASE_URL, as JSON, for the custom plan libpq gets and the
# generic one, one per line.
hgf_explain() {
  local mode out=
  for mode in force_custom_plan force_generic_plan; do
    out+=$(hgf_psql "$HGFLEET_DATABASE_URL" -c "SET plan_cache_mode = $mode; PREPARE $1($2) AS $3;
               EXPLAIN (ANALYZE, BUFFERS, FORMAT JSON) EXECUTE $1($4);" | tr -d '\n')$'\n'
  done
  printf '%s' "$out"
}

# hgf_buffers_flat SMALL BIG SLACK WHAT: SMALL and BIG are hgf_check_plans
# outputs for the same statement on a small and a big case; prints them and
# fails unless BIG read at most SLACK more buffers than SMALL (the largest
# figure of each).
hgf_buffers_flat() {
  local small big
  printf '%s\n%s\n' "$1" "$2"
  small=$(sed -nE 's/.*: ([0-9]+) buffers.*/\1/p' <<<"$1" | sort -n | tail -1)
  big=$(sed -nE 's/.*: ([0-9]+) buffers.*/\1/p' <<<"$2" | sort -n | tail -1)
  (( big <= small + $3 )) || hgf_fail "$4 read $big buffers in the big case, $small in the small one"
}

# hgf_check_plans WHAT BUDGET INDEXES: the plans on stdin (from hgf_explain)
# read each of the comma-separated INDEXES (none when empty), no Seq Scan of
# jobs and no more than BUDGET shared buffers.
hgf_check_plans() {
  python3 -c '
import json, sys
what, budget, indexes = sys.argv[1], int(sys.argv[2]), [i for i in sys.argv[3].split(",") if i]
def nodes(n):
    yield n
    for c in n.get("Plans", []):
        yield from nodes(c)
for mode, line in zip(("custom", "generic"), sys.stdin.read().splitlines()):
    plan = json.loads(line)[0]["Plan"]
    all_ = list(nodes(plan))
    seq = [n for n in all_ if n["Node Type"] == "Seq Scan" and n["Relation Name"] == "jobs"]
    assert not seq, "%s (%s plan): Seq Scan on jobs" % (what, mode)
    used = {n.get("Index Name") for n in all_}
    for index in indexes:
        assert index in used, "%s (%s plan): %s not used, only %s" % (what, mode, index, used)
    bufs = plan["Shared Hit Blocks"] + plan["Shared Read Blocks"]
    assert bufs <= budget, "%s (%s plan): %d buffers, over %d" % (what, mode, bufs, budget)
    print("%s (%s plan): %d buffers, %.3f ms" % (what, mode, bufs, plan["Actual Total Time"]))
' "$@"
}

# For the tests that run the AWS CLI v1 against ecrsim: sets SRC, BUILD,
# ECRSIM_BIN, AWS_CMD ("python3 <entry>" from scripts/fetch-awscli),
# AWS_ENTRY and LAYER (the unzipped layer that holds botocore).
hgf_awscli_setup() {
  SRC=${HGF_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
  BUILD=${HGF_BUILD_DIR:-$SRC/build}
  ECRSIM_BIN=${ECRSIM_BIN:-$BUILD/ecrsim}
  [[ -x $ECRSIM_BIN ]] || hgf_fail "ecrsim binary not found at $ECRSIM_BIN (set ECRSIM_BIN)"
  command -v curl >/dev/null || hgf_fail "curl is not installed"
  AWS_CMD=$(HGF_BUILD_DIR=$BUILD "$SRC/scripts/fetch-awscli")
  AWS_ENTRY=${AWS_CMD#python3 }
  [[ -f $AWS_ENTRY ]] || hgf_fail "fetch-awscli printed '$AWS_CMD', which is not python3 <file>"
  # shellcheck disable=SC2034 # used by the tests that call this
  LAYER=$(dirname "$AWS_ENTRY")
}
