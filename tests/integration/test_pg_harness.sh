#!/usr/bin/env bash
# The harness cluster hands each test its own database, on a server that does
# not run as root; the lib.sh helpers that every integration test relies on
# are checked here against real processes.
set -euo pipefail
# shellcheck source=tests/integration/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

check_databases() {
  local url other
  url=$(hgf_new_db pg_harness)
  other=$(hgf_new_db pg_harness)
  [[ $url != "$other" ]] || hgf_fail "hgf_new_db returned the same database twice: $url"
  hgf_assert_eq 1 "$(hgf_psql "$url" -c 'select 1')" "select 1"
  hgf_assert_eq "${url##*/}" "$(hgf_psql "$url" -c 'select current_database()')" \
    "database named in the URL"
  hgf_psql "$url" -c 'create table marker (x int)'
  hgf_assert_eq 0 "$(hgf_psql "$other" -c "select count(*) from pg_tables where tablename = 'marker'")" \
    "a table in one test database is invisible in another"
  hgf_expect_exit 1 hgf_psql "$url" -c 'select * from no_such_table'
  hgf_assert_contains "$HGF_ERR" 'no_such_table' "psql error names the missing table"
}

check_server_settings() {
  local url
  url=$(hgf_pg_url)
  hgf_assert_eq 127.0.0.1 "$(hgf_psql "$url" -c 'show listen_addresses')" "listen_addresses"
  hgf_assert_eq off "$(hgf_psql "$url" -c 'show fsync')" "fsync"
  hgf_assert_eq 200 "$(hgf_psql "$url" -c 'show max_connections')" "max_connections"
}

# postgres refuses to run as root; under root the harness must switch users.
check_server_user() {
  local url datadir pid expected user
  url=$(hgf_pg_url)
  datadir=$(hgf_psql "$url" -c 'show data_directory')
  pid=$(head -n 1 "$datadir/postmaster.pid" 2>/dev/null) || true
  [[ $pid =~ ^[0-9]+$ ]] || hgf_fail "cannot read the postmaster pid from $datadir/postmaster.pid"
  expected=$(id -un)
  [[ $EUID -ne 0 ]] || expected=postgres
  user=$(ps -o user= -p "$pid")
  hgf_assert_eq "$expected" "$user" "OS user of the postmaster (pid $pid)"
  [[ $user != root ]] || hgf_fail "the postmaster runs as root"
  hgf_assert_eq "$expected" "$(ps -o user= --ppid "$pid" | sort -u)" "OS user of the server's children"
}

check_background_and_wait() {
  local log line
  log=$(hgf_tmpdir)/bg.log
  hgf_bg bash -c 'sleep 0.3; echo "ready on port 4242"; exec sleep 300' >"$log" 2>&1
  line=$(hgf_wait_for_line "$log" '^ready on port [0-9]+$' 10)
  hgf_assert_eq "ready on port 4242" "$line" "hgf_wait_for_line prints the matching line"
  kill -0 "$HGF_BG_PID" || hgf_fail "background process $HGF_BG_PID died early"
  hgf_expect_exit 1 hgf_wait_for_line "$log" '^never printed$' 1
  hgf_assert_contains "$HGF_ERR" 'never printed' "timeout message names the regex"
}

# A test that exits (even by failing) must leave no process or file behind.
check_cleanup() {
  local script state pid tmp
  state=$(hgf_tmpdir)
  # shellcheck disable=SC2016 # expanded by the inner bash
  script='source "$1"; d=$(hgf_tmpdir); echo "$d" >"$2/tmp";
          hgf_bg sleep 300; echo "$HGF_BG_PID" >"$2/pid"; hgf_fail "deliberate"'
  hgf_expect_exit 1 bash -c "$script" inner "$(dirname "${BASH_SOURCE[0]}")/lib.sh" "$state"
  hgf_assert_contains "$HGF_ERR" "FAIL: deliberate" "hgf_fail message"
  pid=$(<"$state/pid")
  tmp=$(<"$state/tmp")
  if kill -0 "$pid" 2>/dev/null; then
    kill "$pid"
    hgf_fail "background process $pid outlived its test"
  fi
  [[ ! -e $tmp ]] || hgf_fail "temporary directory $tmp outlived its test"
}

check_databases
check_server_settings
check_server_user
check_background_and_wait
check_cleanup
echo "ok: pg harness"
