#!/usr/bin/env bash
# Installs the pinned npm packages of a test folder's package-lock.json (integrity-checked) into
# CACHE_DIR, a folder of the build tree (nothing there is committed), and copies the folder's .mjs
# scripts beside them. Shared by tests/serve/prepare.sh and tests/tokenizer/prepare.sh.
#
#   bash tests/support/npm_prepare.sh TEST_DIR CACHE_DIR PACKAGE
#
# PACKAGE: a folder of node_modules that shows the install is complete (e.g. openai). Exits 77 (ctest's
# skip code) with the reason when node or npm is missing or the registry cannot be reached; the install
# is redone only when package-lock.json changes.
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
cp "$src"/*.mjs "$cache/"
