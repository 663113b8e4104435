#!/usr/bin/env bash
# `hgfleet registry` against a real registry: the CNCF distribution registry
# (Debian's docker-registry) on loopback with htpasswd auth, which answers
# with a Basic challenge. Images are built by hand as OCI layouts (no docker)
# and pushed with skopeo: a single-platform image and a two-platform index.
# Checks: manifest HEAD/GET by tag and digest against skopeo's raw bytes,
# the config's User (through the index to linux/amd64), and the error codes
# for a wrong password, a missing tag and no credentials.
set -euo pipefail
# shellcheck source=tests/integration/lib.sh
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

: "${HGFLEET_BIN:?HGFLEET_BIN is not set (run through ctest)}"

# ---- tools ---------------------------------------------------------------
need=()
command -v docker-registry >/dev/null || need+=(docker-registry)
command -v skopeo >/dev/null || need+=(skopeo)
command -v htpasswd >/dev/null || need+=(apache2-utils)
if (( ${#need[@]} )); then
  [[ $(id -u) == 0 ]] || hgf_fail "missing ${need[*]}; install them (scripts/deps) or run as root"
  # A fresh machine may have no package lists yet: update once and retry.
  apt_install() { DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${need[@]}" >&2; }
  apt_install || { apt-get update >&2 && apt_install; } || hgf_fail "apt-get install ${need[*]} failed"
fi

tmp=$(hgf_tmpdir)
user=hgf-pusher
pass=$(openssl rand -hex 16)
printf '%s\n' "$pass" >"$tmp/pass"
printf 'not-the-password\n' >"$tmp/wrong"

# ---- OCI layouts -----------------------------------------------------------
sha() { sha256sum "$1" | cut -d' ' -f1; }
size() { stat -c %s "$1"; }

# put_blob LAYOUT FILE: move FILE into LAYOUT's blob store, print "digest size".
put_blob() {
  local d s
  d=$(sha "$2") s=$(size "$2")
  mkdir -p "$1/blobs/sha256"
  mv "$2" "$1/blobs/sha256/$d"
  printf 'sha256:%s %s\n' "$d" "$s"
}

# make_image LAYOUT ARCH USER NAME: a one-layer image; prints "digest size" of its manifest.
make_image() {
  local layout=$1 arch=$2 uid=$3 name=$4 work diff_id layer_d layer_s config_d config_s
  work=$(mktemp -d "$tmp/img.XXXXXX")
  mkdir -p "$work/root/etc"
  printf '%s built for %s by test_real_registry\n' "$name" "$arch" >"$work/root/etc/hgf-release"
  tar --sort=name --mtime=@0 --owner=0 --group=0 --numeric-owner -C "$work/root" -cf "$work/layer.tar" etc
  diff_id=sha256:$(sha "$work/layer.tar")
  gzip -n -9 "$work/layer.tar"
  read -r layer_d layer_s < <(put_blob "$layout" "$work/layer.tar.gz")
  cat >"$work/config.json" <<JSON
{"architecture":"$arch","os":"linux","created":"2024-01-01T00:00:00Z",
 "config":{"User":"$uid","Env":["PATH=/usr/bin:/bin"],"Cmd":["/bin/true"]},
 "rootfs":{"type":"layers","diff_ids":["$diff_id"]},
 "history":[{"created":"2024-01-01T00:00:00Z","created_by":"test_real_registry"}]}
JSON
  read -r config_d config_s < <(put_blob "$layout" "$work/config.json")
  cat >"$work/manifest.json" <<JSON
{"schemaVersion":2,"mediaType":"application/vnd.oci.image.manifest.v1+json",
 "config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"$config_d","size":$config_s},
 "layers":[{"mediaType":"application/vnd.oci.image.layer.v1.tar+gzip","digest":"$layer_d","size":$layer_s}]}
JSON
  put_blob "$layout" "$work/manifest.json"
}

layout=$tmp/layout
mkdir -p "$layout"
printf '{"imageLayoutVersion":"1.0.0"}' >"$layout/oci-layout"
read -r single_d single_s < <(make_image "$layout" amd64 1000 single)
read -r arm_d arm_s < <(make_image "$layout" arm64 2000 multi)
read -r amd_d amd_s < <(make_image "$layout" amd64 1000 multi)
[[ $amd_d != "$single_d" ]] || hgf_fail "the two amd64 images should differ"
# The arm64 entry comes first, so only a platform pick finds User 1000.
cat >"$tmp/multi.json" <<JSON
{"schemaVersion":2,"mediaType":"application/vnd.oci.image.index.v1+json","manifests":[
 {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"$arm_d","size":$arm_s,
  "platform":{"architecture":"arm64","os":"linux","variant":"v8"}},
 {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"$amd_d","size":$amd_s,
  "platform":{"architecture":"amd64","os":"linux"}}]}
JSON
read -r multi_d multi_s < <(put_blob "$layout" "$tmp/multi.json")
cat >"$layout/index.json" <<JSON
{"schemaVersion":2,"manifests":[
 {"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"$single_d","size":$single_s,
  "annotations":{"org.opencontainers.image.ref.name":"v1"}},
 {"mediaType":"application/vnd.oci.image.index.v1+json","digest":"$multi_d","size":$multi_s,
  "annotations":{"org.opencontainers.image.ref.name":"multi"}}]}
JSON

# ---- the registry ------------------------------------------------------------
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
htpasswd -Bbn "$user" "$pass" >"$tmp/htpasswd" 2>/dev/null
cat >"$tmp/registry.yml" <<YAML
version: 0.1
log:
  level: info
storage:
  filesystem:
    rootdirectory: $tmp/storage
  delete:
    enabled: true
http:
  addr: 127.0.0.1:$port
  secret: $(openssl rand -hex 16)
auth:
  htpasswd:
    realm: hgf-test-realm
    path: $tmp/htpasswd
YAML
hgf_bg docker-registry serve "$tmp/registry.yml" >"$tmp/registry.log" 2>&1
registry_pid=$HGF_BG_PID
hgf_wait_for_line "$tmp/registry.log" "listening on 127\\.0\\.0\\.1:$port" 20 >/dev/null

# Every listening socket the registry holds must be on a loopback address.
listen_addrs() {
  local inodes
  inodes=$(find "/proc/$registry_pid/fd" -lname 'socket:*' -printf '%l\n' 2>/dev/null |
    sed 's/socket:\[\(.*\)\]/\1/' | sort -u)
  [[ -n $inodes ]] || return 0
  awk -v inodes="$inodes" 'BEGIN { n = split(inodes, a, "\n"); for (i = 1; i <= n; i++) want[a[i]] = 1 }
    FNR > 1 && $4 == "0A" && ($10 in want) { print $2 }' /proc/net/tcp /proc/net/tcp6
}
addrs=$(listen_addrs)
[[ -n $addrs ]] || hgf_fail "found no listening socket of docker-registry (pid $registry_pid)"
while read -r a; do
  # 0100007F = 127.0.0.1 (little endian); IPv6 ::1 is 0000...01000000.
  [[ $a == 0100007F:* || $a == 00000000000000000000000001000000:* ]] ||
    hgf_fail "docker-registry listens on a non-loopback address: $a"
done <<<"$addrs"

base=http://127.0.0.1:$port
repo=team/app

# ---- push with skopeo ----------------------------------------------------------
printf '{"default":[{"type":"insecureAcceptAnything"}]}\n' >"$tmp/policy.json"
printf '{"auths":{"127.0.0.1:%s":{"auth":"%s"}}}\n' "$port" \
  "$(printf '%s:%s' "$user" "$pass" | base64 -w0)" >"$tmp/auth.json"
skopeo_() { skopeo --policy "$tmp/policy.json" "$@"; }
skopeo_ copy --dest-tls-verify=false --dest-authfile "$tmp/auth.json" \
  "oci:$layout:v1" "docker://127.0.0.1:$port/$repo:v1" >"$tmp/skopeo.log" 2>&1 ||
  hgf_fail "skopeo copy v1 failed: $(cat "$tmp/skopeo.log")"
skopeo_ copy --all --dest-tls-verify=false --dest-authfile "$tmp/auth.json" \
  "oci:$layout:multi" "docker://127.0.0.1:$port/$repo:multi" >"$tmp/skopeo.log" 2>&1 ||
  hgf_fail "skopeo copy multi failed: $(cat "$tmp/skopeo.log")"
raw_digest() {
  skopeo_ inspect --raw --tls-verify=false --authfile "$tmp/auth.json" "docker://127.0.0.1:$port/$repo:$1" |
    sha256sum | cut -d' ' -f1
}
v1_digest=sha256:$(raw_digest v1)
multi_digest=sha256:$(raw_digest multi)

creds=(--username "$user" --password-file "$tmp/pass")
# fields A.B.C...: those fields of the JSON object in HGF_OUT, one per line,
# into the array F (one python3 start for them all).
fields() {
  mapfile -t F < <(python3 -c 'import functools, json, sys
v = json.load(sys.stdin)
for path in sys.argv[1:]:
    print(functools.reduce(lambda o, k: o[k], path.split("."), v))' "$@" <<<"$HGF_OUT")
  [[ ${#F[@]} == "$#" ]] || hgf_fail "could not read $* from: $HGF_OUT"
}

# ---- manifests ------------------------------------------------------------------
hgf_expect_exit 0 "$HGFLEET_BIN" registry manifest "$base/$repo:v1" "${creds[@]}"
hgf_assert_contains "$HGF_OUT" "digest:     $v1_digest" "manifest GET by tag"
hgf_assert_contains "$HGF_OUT" "media type: application/vnd.oci.image.manifest.v1+json" "media type"

hgf_expect_exit 0 "$HGFLEET_BIN" registry manifest "$base/$repo:v1" --head "${creds[@]}" --json
fields digest size
hgf_assert_eq "$v1_digest" "${F[0]}" "manifest HEAD by tag"
head_size=${F[1]}

hgf_expect_exit 0 "$HGFLEET_BIN" registry manifest "$base/$repo@$v1_digest" --json "${creds[@]}"
fields digest size manifest.config.mediaType
hgf_assert_eq "$v1_digest" "${F[0]}" "manifest GET by digest"
hgf_assert_eq "$head_size" "${F[1]}" "HEAD size = GET size"
hgf_assert_eq "application/vnd.oci.image.config.v1+json" "${F[2]}" "manifest JSON"

hgf_expect_exit 0 "$HGFLEET_BIN" registry manifest "$base/$repo@$v1_digest" --head "${creds[@]}"
hgf_assert_contains "$HGF_OUT" "digest:     $v1_digest" "manifest HEAD by digest"

# The password comes from stdin just as well, and never shows up in output.
# shellcheck disable=SC2016 # $0 and $@ belong to the inner shell
hgf_expect_exit 0 bash -c 'exec "$@" <"$0"' "$tmp/pass" "$HGFLEET_BIN" registry manifest \
  "$base/$repo:multi" --username "$user" --password-file - --json
fields digest media_type
hgf_assert_eq "$multi_digest" "${F[0]}" "index GET by tag"
hgf_assert_eq "application/vnd.oci.image.index.v1+json" "${F[1]}" "index media type"
[[ $HGF_OUT$HGF_ERR != *"$pass"* ]] || hgf_fail "the password appeared in the output"

# ---- configs ----------------------------------------------------------------------
hgf_expect_exit 0 "$HGFLEET_BIN" registry config "$base/$repo:v1" "${creds[@]}"
hgf_assert_contains "$HGF_OUT" "user:         1000" "config User by tag"
hgf_assert_contains "$HGF_OUT" "architecture: amd64" "config architecture"
hgf_assert_contains "$HGF_OUT" "os:           linux" "config os"
hgf_assert_contains "$HGF_OUT" "manifest:     $v1_digest" "config's manifest digest"

hgf_expect_exit 0 "$HGFLEET_BIN" registry config "$base/$repo@$v1_digest" "${creds[@]}" --json
fields user config.config.User config_digest
hgf_assert_eq "1000" "${F[0]}" "config User by digest"
hgf_assert_eq "1000" "${F[1]}" "raw config"
[[ -f $layout/blobs/sha256/${F[2]#sha256:} ]] || hgf_fail "config digest ${F[2]} was not pushed"

hgf_expect_exit 0 "$HGFLEET_BIN" registry config "$base/$repo:multi" "${creds[@]}" --json
fields user platform index_digest manifest_digest
hgf_assert_eq "1000" "${F[0]}" "index -> linux/amd64 User"
hgf_assert_eq "linux/amd64" "${F[1]}" "platform picked"
hgf_assert_eq "$multi_digest" "${F[2]}" "index digest"
hgf_assert_eq "$amd_d" "${F[3]}" "amd64 manifest"

# ---- errors ------------------------------------------------------------------------
hgf_expect_exit 1 "$HGFLEET_BIN" registry manifest "$base/$repo:v1" --username "$user" \
  --password-file "$tmp/wrong"
hgf_assert_contains "$HGF_ERR" "UNAUTHORIZED" "wrong password"
hgf_expect_exit 1 "$HGFLEET_BIN" registry config "$base/$repo:v1"
hgf_assert_contains "$HGF_ERR" "UNAUTHORIZED" "no credentials"
hgf_expect_exit 1 "$HGFLEET_BIN" registry manifest "$base/$repo:nope" "${creds[@]}"
hgf_assert_contains "$HGF_ERR" "MANIFEST_UNKNOWN" "missing tag"
# distribution answers MANIFEST_UNKNOWN for a repository that does not exist
# either; the spec also allows NAME_UNKNOWN.
hgf_expect_exit 1 "$HGFLEET_BIN" registry config "$base/team/other:v1" "${creds[@]}"
[[ $HGF_ERR =~ HTTP\ 404\ (MANIFEST|NAME)_UNKNOWN ]] || hgf_fail "missing repository: $HGF_ERR"

# ---- bad arguments -------------------------------------------------------------------
hgf_expect_exit 2 "$HGFLEET_BIN" registry manifest "$base/$repo:v1" --password "$pass"
hgf_assert_contains "$HGF_ERR" "--password-file" "password on argv refused"
[[ $HGF_OUT$HGF_ERR != *"$pass"* ]] || hgf_fail "the refused password was echoed"
hgf_expect_exit 2 "$HGFLEET_BIN" registry manifest "ftp://127.0.0.1:$port/$repo"
hgf_assert_contains "$HGF_ERR" "URL_REF" "bad scheme"
hgf_expect_exit 2 "$HGFLEET_BIN" registry manifest "$base/Team/App:v1"
hgf_assert_contains "$HGF_ERR" "repository" "bad repository"
hgf_expect_exit 2 "$HGFLEET_BIN" registry config "$base/$repo:v1" --head
hgf_assert_contains "$HGF_ERR" "--head" "--head with config"
hgf_expect_exit 2 "$HGFLEET_BIN" registry manifest "$base/$repo:v1" --username "$user"
hgf_assert_contains "$HGF_ERR" "--password-file" "username without password"
hgf_expect_exit 2 "$HGFLEET_BIN" registry manifest "http://$user:x@127.0.0.1:$port/$repo"
hgf_assert_contains "$HGF_ERR" "credentials in the URL" "userinfo refused"

echo "ok: registry manifest/config against docker-registry $(docker-registry --version | awk '{print $3}') on 127.0.0.1:$port"
