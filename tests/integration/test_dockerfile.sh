#!/usr/bin/env bash
# The Dockerfile, without a Docker engine: its structure (a debian:12 build
# stage, a debian:12-slim runtime stage running as 10001 with the hgfleet
# entry point), every package its apt-get install lines name exists in
# Debian's archive (apt-cache), the build stage installs what scripts/deps
# builds with, and the runtime stage installs the package of every shared
# library the built hgfleet binary links.
source "$(dirname "${BASH_SOURCE[0]}")/lib.sh"

src=${HGF_SOURCE_DIR:-$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)}
dockerfile=$src/Dockerfile
[[ -f $dockerfile ]] || hgf_fail "no Dockerfile in $src"
ok() { printf 'ok: %s\n' "$*"; }

# One instruction per line: continuations joined, comments dropped.
instructions=$(sed -e '/^[[:space:]]*#/d' "$dockerfile" | sed -e ':a' -e '/\\$/N; s/\\\n/ /; ta' |
  sed -e '/^[[:space:]]*$/d')

# --- stages --------------------------------------------------------------
mapfile -t froms < <(grep -E '^FROM ' <<<"$instructions")
hgf_assert_eq 2 "${#froms[@]}" "FROM instructions"
[[ ${froms[0]} =~ ^FROM\ debian:12\ +AS\ +build$ ]] || hgf_fail "first stage: expected 'FROM debian:12 AS build', got '${froms[0]}'"
hgf_assert_eq "FROM debian:12-slim" "${froms[1]}" "runtime stage"
build_stage=$(sed -n '1,/^FROM debian:12-slim/p' <<<"$instructions")
runtime_stage=$(sed -n '/^FROM debian:12-slim/,$p' <<<"$instructions")

hgf_assert_contains "$build_stage" "-DCMAKE_BUILD_TYPE=Release" "the build is a Release build"
hgf_assert_contains "$build_stage" "--target hgfleet" "the build builds the hgfleet target"
hgf_assert_eq 'USER 10001' "$(grep -E '^USER ' <<<"$runtime_stage")" "runtime user"
hgf_assert_eq 'ENTRYPOINT ["/usr/local/bin/hgfleet"]' "$(grep -E '^ENTRYPOINT ' <<<"$runtime_stage")" "entry point"
hgf_assert_eq 'CMD ["serve"]' "$(grep -E '^CMD ' <<<"$runtime_stage")" "default command"
hgf_assert_eq 'EXPOSE 8080' "$(grep -E '^EXPOSE ' <<<"$runtime_stage")" "exposed port"
grep -qE '^COPY --from=build [^ ]*/hgfleet /usr/local/bin/hgfleet$' <<<"$runtime_stage" ||
  hgf_fail "the runtime stage does not copy the built hgfleet to /usr/local/bin/hgfleet"
grep -qE 'useradd .*--uid 10001' <<<"$runtime_stage" || hgf_fail "no user 10001 is created"
# Secrets come from the orchestrator at run time, never from the image.
if grep -iE '^(ENV|ARG) .*(TOKEN|SECRET|PASSW|_KEY|DATABASE_URL|AWS_ACCESS)' <<<"$instructions"; then
  hgf_fail "the Dockerfile sets a secret-looking ENV or ARG"
fi
ok "stages: debian:12 build (Release, target hgfleet), debian:12-slim runtime as USER 10001, entry point and CMD serve, no secrets"

# --- packages --------------------------------------------------------------
# apt_packages TEXT: the package names of every `apt-get install` in TEXT.
apt_packages() {
  local line word in_install
  while read -r line; do
    in_install=0
    for word in $line; do
      case $in_install:$word in
        0:install) [[ $line == *apt-get* ]] && in_install=1 ;;
        1:'&&'|1:';'|1:'||'|1:'|') in_install=0 ;;
        1:-*) ;;
        1:*) printf '%s\n' "$word" ;;
      esac
    done
  done < <(grep -E '^RUN .*apt-get .*install' <<<"$1")
}
mapfile -t build_pkgs < <(apt_packages "$build_stage")
mapfile -t runtime_pkgs < <(apt_packages "$runtime_stage")
[[ ${#build_pkgs[@]} -ge 10 ]] || hgf_fail "found only ${#build_pkgs[@]} build packages: ${build_pkgs[*]}"
[[ ${#runtime_pkgs[@]} -ge 8 ]] || hgf_fail "found only ${#runtime_pkgs[@]} runtime packages: ${runtime_pkgs[*]}"

# apt-cache needs package lists; a fresh machine may have none yet.
if [[ -z $(find /var/lib/apt/lists -maxdepth 1 -name '*_Packages*' -print -quit 2>/dev/null) ]]; then
  if [[ $EUID -eq 0 ]]; then
    DEBIAN_FRONTEND=noninteractive apt-get update -q >/dev/null 2>&1 || hgf_fail "apt-get update failed"
  else
    printf 'SKIP: apt-cache has no package lists and this user cannot run apt-get update\n'
    exit 0
  fi
fi
# One apt-cache call for all of them: each call reloads the lists (about 1 s).
# A purely virtual name (no package of its own) has no Package: record.
show=$(apt-cache show --no-all-versions "${build_pkgs[@]}" "${runtime_pkgs[@]}" 2>/dev/null) || true
for pkg in "${build_pkgs[@]}" "${runtime_pkgs[@]}"; do
  grep -qxF "Package: $pkg" <<<"$show" ||
    hgf_fail "package '$pkg' named in the Dockerfile is not in Debian's archive (apt-cache show)"
done
ok "${#build_pkgs[@]} build and ${#runtime_pkgs[@]} runtime packages exist in Debian's archive"

# The build stage installs what the project builds with (scripts/deps).
deps_list=$(sed -n '/^PACKAGES=(/,/^)/p' "$src/scripts/deps")
for pkg in $deps_list; do
  [[ $pkg == *-dev || $pkg == build-essential || $pkg == cmake || $pkg == pkg-config ]] || continue
  # The fuzzers' clang runtime is test tooling, not part of the product build.
  [[ $pkg == libclang-rt-* ]] && continue
  [[ " ${build_pkgs[*]} " == *" $pkg "* ]] || hgf_fail "the build stage lacks $pkg, which scripts/deps installs"
done
# Each runtime library is what one of the build stage's -dev packages links.
mapfile -t devs < <(printf '%s\n' "${build_pkgs[@]}" | grep -e '-dev$')
dev_deps=$(apt-cache depends "${devs[@]}" 2>/dev/null | sed -n 's/^ *|\{0,1\}Depends: //p' | sort -u)
for pkg in "${runtime_pkgs[@]}"; do
  [[ $pkg == ca-certificates ]] && continue
  grep -qxF "$pkg" <<<"$dev_deps" ||
    hgf_fail "runtime package $pkg is not the library of any build-stage -dev package"
done
ok "the build stage matches scripts/deps; each runtime package is the library of a build-stage -dev package"

# --- the binary's libraries ------------------------------------------------
# pkg_of_lib PATH: the Debian package owning a shared library, /usr-merge aware.
pkg_of_lib() {
  local path=$1 try out
  for try in "$path" "$(realpath "$path")" "/usr${path}" "${path#/usr}"; do
    if out=$(dpkg -S "$try" 2>/dev/null); then
      printf '%s\n' "${out%%:*}"
      return 0
    fi
  done
  return 1
}
if [[ -z ${HGFLEET_BIN:-} || ! -x $HGFLEET_BIN ]]; then
  printf 'note: HGFLEET_BIN not set: the linked-libraries check needs the built binary (run under ctest)\n'
else
  command -v readelf >/dev/null || hgf_fail "readelf not found (binutils, part of build-essential)"
  mapfile -t needed < <(readelf -d "$HGFLEET_BIN" | sed -n 's/.*(NEEDED).*\[\(.*\)\]/\1/p')
  [[ ${#needed[@]} -ge 5 ]] || hgf_fail "readelf found only ${#needed[@]} NEEDED libraries in $HGFLEET_BIN"
  ldd_out=$(ldd "$HGFLEET_BIN")
  checked=()
  for so in "${needed[@]}"; do
    # Sanitizer runtimes appear only in -DHGF_SANITIZE builds; the image is Release.
    [[ $so == libasan.so* || $so == libubsan.so* ]] && continue
    path=$(awk -v so="$so" '$1 == so && $2 == "=>" { print $3 }' <<<"$ldd_out")
    [[ -n $path && -e $path ]] || hgf_fail "ldd cannot resolve $so of $HGFLEET_BIN"
    pkg=$(pkg_of_lib "$path") || hgf_fail "no Debian package owns $path ($so)"
    # debian:12-slim already has the C library and libgcc.
    if [[ $pkg != libc6 && $pkg != libgcc-s1 && " ${runtime_pkgs[*]} " != *" $pkg "* ]]; then
      hgf_fail "hgfleet links $so from package $pkg, which the runtime stage does not install"
    fi
    checked+=("$so=$pkg")
  done
  ok "every library hgfleet links comes with the runtime stage: ${checked[*]}"
fi
printf 'test_dockerfile: all checks passed\n'
