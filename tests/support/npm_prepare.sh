#!/usr/bin/env bash
# Installs the pinned npm packages of a test folder's package-lock.json (integrity-checked) into
# CACHE_DIR, a folder of the build tree (nothing there is committed), and copies the folder's .mjs
# scripts beside them. Shared by tests/serve/prepare.sh and tests/tokenizer/prepare.sh.
#
#   bash tests/support/npm_prepare.sh TEST_DIR CACHE_DIR PACKAGE
#
# PACKAGE: a folder of node_modules that shows the install is complete (e.g. openai). Exits 77 (ctest's
# skip code) with the reason when node or npm is missing or the registry cannot be reached; the install
# is redone only when package-lock.json changes. Tests that share CACHE_DIR may run at once (ctest -j):
# the install and the copies are done under a lock, and a script is replaced by a rename, so no test's
# node ever sees a half-installed node_modules (npm ci deletes it first) or a half-copied script.
set -euo pipefail
src=${1:?usage: npm_prepare.sh TEST_DIR CACHE_DIR PACKAGE}
cache=${2:?usage: npm_prepare.sh TEST_DIR CACHE_DIR PACKAGE}
package=${3:?usage: npm_prepare.sh TEST_DIR CACHE_DIR PACKAGE}

skip() {
  echo "SKIP: $*"
  exit 77
}
command -v node > /dev/null || skip "node is not installed (scripts/setup.sh installs nodejs and npm)"
command -v npm > /dev/null || skip "npm is not installed (scripts/setup.sh installs nodejs and npm)"

mkdir -p "$cache"
exec 9> "$cache/.prepare.lock"
flock -w 600 9 || { echo "FAIL: $cache/.prepare.lock held for 600 s" >&2; exit 1; }
stamp="$cache/installed.lock"
if ! cmp -s "$src/package-lock.json" "$stamp" || [[ ! -d "$cache/node_modules/$package" ]]; then
  cp "$src/package.json" "$src/package-lock.json" "$cache/"
  if ! (cd "$cache" && timeout 300 npm ci --no-audit --no-fund --ignore-scripts --cache "$cache/.npm" \
        --fetch-retries=1 --fetch-retry-mintimeout=2000 --fetch-retry-maxtimeout=5000) \
      > "$cache/npm.log" 2>&1; then
    skip "npm ci in $cache failed (no network or registry?); see $cache/npm.log: $(tail -n 3 "$cache/npm.log" | tr '\n' ' ')"
  fi
  cp "$src/package-lock.json" "$stamp"
fi
for script in "$src"/*.mjs; do
  target="$cache/$(basename "$script")"
  if ! cmp -s "$script" "$target"; then
    cp "$script" "$target.tmp.$$"
    mv -f "$target.tmp.$$" "$target"
  fi
done
