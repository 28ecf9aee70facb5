#!/usr/bin/env bash
# Installs every Debian package the project builds, tests and benchmarks with.
# Idempotent: when all packages are present it does nothing and touches no package list.
set -euo pipefail

packages=(
  build-essential cmake ninja-build pkg-config git
  libgtest-dev libgmock-dev libbenchmark-dev
  nlohmann-json3-dev libcli11-dev libyaml-cpp-dev libcpp-httplib-dev libspdlog-dev libfmt-dev
  libboost-dev
  libopenmpi-dev openmpi-bin
  libucx-dev ucx-utils
  libfaiss-dev libopenblas-dev
  libhwloc-dev hwloc libnuma-dev
  python3 python3-numpy python3-matplotlib
  libonig-dev
  prometheus-cpp-dev curl
  libsqlite3-dev  # only for /usr/include/sqlite3.h: public-domain text for ra bench accuracy's agreement and KL
)
# The tokenizer oracle test (tests/tokenizer) and the serve client test (tests/serve) run npm packages
# under node, installed with npm; Debian's nodejs / npm are added only when neither is on PATH (a
# NodeSource nodejs brings its own npm, and Debian's npm package would conflict with it).
command -v node > /dev/null 2>&1 || packages+=(nodejs)
command -v npm > /dev/null 2>&1 || packages+=(npm)

missing=()
for p in "${packages[@]}"; do
  status=$(dpkg-query -W -f='${Status}' "$p" 2>/dev/null || true)
  [[ "$status" == "install ok installed" ]] || missing+=("$p")
done

if ((${#missing[@]} == 0)); then
  echo "setup.sh: all ${#packages[@]} packages present"
  exit 0
fi

echo "setup.sh: installing ${missing[*]}"
sudo_cmd=()
[[ $(id -u) -eq 0 ]] || sudo_cmd=(sudo)
export DEBIAN_FRONTEND=noninteractive
"${sudo_cmd[@]}" apt-get update -qq
"${sudo_cmd[@]}" apt-get install -y -qq --no-install-recommends "${missing[@]}"
