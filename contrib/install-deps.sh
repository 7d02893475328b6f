#!/usr/bin/env bash
# Installs everything berth needs to build, test and run on Debian 12, as root. Idempotent: a second
# run with everything present only checks and takes seconds.
#
# Two inputs are not in Debian 12 and come from Debian's trixie suite, through a temporary apt
# configuration whose archive address is read from this machine's own sources file (nothing is added
# to the machine's sources, no system package is upgraded):
#   - the CRI api.proto, from the binary package golang-github-kubernetes-cri-api-dev;
#   - prometheus-cpp, built from the upstream tarball of its source package, checked against the
#     SHA-256 of trixie's Sources index, without push support, against Debian's civetweb.
# Both land under BERTH_DEPS_DIR (default /opt/berth/deps), which CMake reads.
set -euo pipefail

DEPS_DIR=${BERTH_DEPS_DIR:-/opt/berth/deps}
SOURCES_FILE=${BERTH_APT_SOURCES:-/etc/apt/sources.list.d/debian.sources}
CRI_API_PKG=golang-github-kubernetes-cri-api-dev
PROM_SRC_PKG=prometheus-cpp

PACKAGES=(
  # build
  cmake ninja-build ccache g++ pkg-config dpkg-dev ca-certificates curl xz-utils
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libyaml-cpp-dev libcurl4-openssl-dev libgtest-dev libgmock-dev nlohmann-json3-dev
  libarchive-dev libssl-dev libsqlite3-dev libspdlog-dev libcli11-dev libseccomp-dev
  libcivetweb-dev civetweb zlib1g-dev libboost-dev
  # runtime
  runc crun conmon containernetworking-plugins iptables iproute2 apparmor
  # test fixtures; promtool (in prometheus) checks the metrics berthd serves, systemd-analyze
  # (in systemd) the units in contrib/
  docker-registry skopeo umoci busybox-static prometheus systemd
)

die() { echo "install-deps: $*" >&2; exit 1; }
log() { echo "install-deps: $*" >&2; }

[ "$(id -u)" -eq 0 ] || die "must run as root (it installs Debian packages)"

install_debian_packages() {
  local missing=()
  for p in "${PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  [ ${#missing[@]} -eq 0 ] && return 0
  log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q || die "apt-get update failed"
  # Packages with a service (prometheus, docker-registry) are installed for their tools and for
  # the tests, which start their own instances on loopback: keep their services from starting.
  local policy=/usr/sbin/policy-rc.d own_policy=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 0755 "$policy" && own_policy=1
  fi
  local rc=0
  apt-get install -y -q --no-install-recommends "${missing[@]}" || rc=$?
  [ "$own_policy" -eq 0 ] || rm -f "$policy"
  [ "$rc" -eq 0 ] || die "apt-get install failed for: ${missing[*]}"
}

# A throwaway apt configuration for trixie under $1, built from the machine's own archive address.
TRIXIE_APT_OPTS=()
setup_trixie_apt() {
  local dir=$1 uri
  [ -r "$SOURCES_FILE" ] || die "cannot read $SOURCES_FILE to find the Debian archive address"
  uri=$(awk '/^URIs:/ { print $2; exit }' "$SOURCES_FILE")
  [ -n "$uri" ] || die "no URIs: line in $SOURCES_FILE"
  mkdir -p "$dir/etc/sources.list.d" "$dir/etc/preferences.d" "$dir/lists/partial" \
    "$dir/cache/archives/partial"
  cat >"$dir/etc/sources.list.d/trixie.sources" <<SRC
Types: deb deb-src
URIs: $uri
Suites: trixie
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
  TRIXIE_APT_OPTS=(
    -o "Dir::Etc=$dir/etc" -o "Dir::Etc::SourceParts=$dir/etc/sources.list.d"
    -o "Dir::Etc::sourcelist=/dev/null" -o "Dir::Etc::preferencesparts=$dir/etc/preferences.d"
    -o "Dir::State::Lists=$dir/lists" -o "Dir::Cache=$dir/cache"
    -o "Dir::State::status=/var/lib/dpkg/status" -o "APT::Architectures=amd64"
    -o "Acquire::Languages=none" -o "APT::Sandbox::User=root"
  )
  apt-get "${TRIXIE_APT_OPTS[@]}" update -q >"$dir/update.log" 2>&1 ||
    { cat "$dir/update.log" >&2; die "apt-get update of the temporary trixie configuration failed"; }
}

install_cri_api() {
  local work=$1 version deb proto
  version=$(apt-cache "${TRIXIE_APT_OPTS[@]}" policy "$CRI_API_PKG" | awk '/Candidate:/ { print $2 }')
  [ -n "$version" ] && [ "$version" != "(none)" ] || die "$CRI_API_PKG not found in trixie"
  if [ -f "$DEPS_DIR/cri-api/VERSION" ] && [ "$(cat "$DEPS_DIR/cri-api/VERSION")" = "$version" ]; then
    return 0
  fi
  log "fetching $CRI_API_PKG $version"
  (cd "$work" && apt-get "${TRIXIE_APT_OPTS[@]}" download "$CRI_API_PKG=$version" >/dev/null) ||
    die "apt-get download $CRI_API_PKG failed"
  deb=$(ls "$work"/${CRI_API_PKG}_*.deb)
  dpkg-deb -x "$deb" "$work/cri-api-x"
  proto=$(find "$work/cri-api-x" -path '*/runtime/v1/api.proto' | head -n 1)
  [ -n "$proto" ] || die "$CRI_API_PKG $version ships no runtime/v1/api.proto"
  rm -rf "$DEPS_DIR/cri-api" && mkdir -p "$DEPS_DIR/cri-api"
  install -m 0644 "$proto" "$DEPS_DIR/cri-api/api.proto"
  echo "$version" >"$DEPS_DIR/cri-api/VERSION"
}

install_prometheus_cpp() {
  local work=$1 version upstream orig want got src
  version=$(apt-cache "${TRIXIE_APT_OPTS[@]}" showsrc "$PROM_SRC_PKG" | awk '/^Version:/ { print $2; exit }')
  [ -n "$version" ] || die "source package $PROM_SRC_PKG not found in trixie"
  if [ -f "$DEPS_DIR/prometheus-cpp/VERSION" ] &&
     [ "$(cat "$DEPS_DIR/prometheus-cpp/VERSION")" = "$version" ]; then
    return 0
  fi
  upstream=${version%-*}; upstream=${upstream#*:}
  orig="${PROM_SRC_PKG}_${upstream}.orig.tar.gz"
  want=$(apt-cache "${TRIXIE_APT_OPTS[@]}" showsrc "$PROM_SRC_PKG" |
    awk -v f="$orig" '/^Checksums-Sha256:/ { s = 1; next } /^[^ ]/ { s = 0 } s && $3 == f { print $1; exit }')
  [ -n "$want" ] || die "no SHA-256 for $orig in trixie's Sources index"
  log "fetching $PROM_SRC_PKG $version ($orig)"
  # Only the upstream tarball is needed (the .dsc may not be downloadable); apt fails for the rest.
  (cd "$work" && apt-get "${TRIXIE_APT_OPTS[@]}" source --download-only "$PROM_SRC_PKG=$version" \
    >"$work/source.log" 2>&1) || true
  [ -f "$work/$orig" ] || { cat "$work/source.log" >&2; die "could not download $orig"; }
  got=$(sha256sum "$work/$orig" | awk '{ print $1 }')
  [ "$got" = "$want" ] || die "$orig: sha256 $got does not match trixie's Sources index ($want)"
  tar -xzf "$work/$orig" -C "$work"
  src=$(find "$work" -maxdepth 1 -type d -name "${PROM_SRC_PKG}-*" | head -n 1)
  [ -n "$src" ] || die "$orig has no ${PROM_SRC_PKG}-* directory"
  rm -rf "$DEPS_DIR/prometheus-cpp"
  cmake -S "$src" -B "$work/prom-build" -G Ninja -DCMAKE_BUILD_TYPE=Release \
    -DENABLE_PUSH=OFF -DENABLE_PULL=ON -DENABLE_COMPRESSION=ON -DENABLE_TESTING=OFF \
    -DUSE_THIRDPARTY_LIBRARIES=OFF -DBUILD_SHARED_LIBS=OFF -DCMAKE_POSITION_INDEPENDENT_CODE=ON \
    -DGENERATE_PKGCONFIG=OFF -DCMAKE_INSTALL_PREFIX="$DEPS_DIR/prometheus-cpp" \
    -DCMAKE_INSTALL_LIBDIR=lib >"$work/prom-cmake.log" 2>&1 ||
    { tail -n 30 "$work/prom-cmake.log" >&2; die "configuring prometheus-cpp failed"; }
  ninja -C "$work/prom-build" install >"$work/prom-build.log" 2>&1 ||
    { tail -n 30 "$work/prom-build.log" >&2; die "building prometheus-cpp failed"; }
  echo "$version" >"$DEPS_DIR/prometheus-cpp/VERSION"
}

main() {
  install_debian_packages
  if [ -f "$DEPS_DIR/cri-api/VERSION" ] && [ -f "$DEPS_DIR/prometheus-cpp/VERSION" ] &&
     [ -z "${BERTH_DEPS_REFRESH:-}" ]; then
    return 0  # already there; BERTH_DEPS_REFRESH=1 re-checks trixie for newer versions
  fi
  WORK=$(mktemp -d /tmp/berth-deps.XXXXXX)
  trap 'rm -rf "$WORK"' EXIT
  local work=$WORK
  setup_trixie_apt "$work/apt"
  install_cri_api "$work"
  install_prometheus_cpp "$work"
  log "dependencies ready in $DEPS_DIR"
}

main "$@"
