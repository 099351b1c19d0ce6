# Shared by demo.sh and test.sh: installs what is missing (Debian 12, as root or with sudo),
# then configures and builds. Sourced, not run.
set -euo pipefail

STRAND_ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

# Everything the build, the tests and the benchmarks need, by Debian package name.
STRAND_PACKAGES=(
  g++ cmake ninja-build
  libcli11-dev
  libgtest-dev libgmock-dev
  libbenchmark-dev libtbb-dev libboost-dev libboost-fiber-dev libconcurrentqueue-dev
  nlohmann-json3-dev libsqlite3-dev libhiredis-dev libspdlog-dev
  redis-server graphviz
)

strand_install_missing() {
  local missing=() pkg
  for pkg in "${STRAND_PACKAGES[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" ||
      missing+=("$pkg")
  done
  ((${#missing[@]} == 0)) && return 0
  local sudo=""
  [[ $(id -u) -ne 0 ]] && sudo="sudo"
  echo "strand: installing ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends \
    "${missing[@]}" >/dev/null
}

# strand_build DIR [TARGET] [cmake -D options...]: configure once, then build incrementally.
strand_build() {
  local dir=$1 target=$2
  shift 2
  if [[ ! -f "$dir/build.ninja" ]]; then
    cmake -S "$STRAND_ROOT" -B "$dir" -G Ninja "$@" >/dev/null
  fi
  if [[ -n "$target" ]]; then
    cmake --build "$dir" --target "$target"
  else
    cmake --build "$dir"
  fi
}
