#!/usr/bin/env bash
# Prepares the tokenizer oracle in CACHE_DIR (a folder of the build tree; nothing here is committed):
# installs the pinned npm packages of package-lock.json (integrity-checked), copies the .mjs scripts
# beside them, and rebuilds Meta's Llama-3 / Llama-2 tokenizer files from the vocabularies baked into
# llama3-tokenizer-js and llama-tokenizer-js (CACHE_DIR/vocab/{llama3,llama2,llama2-metaspace}).
#
#   bash tests/tokenizer/prepare.sh CACHE_DIR
#
# Exits 77 (ctest's skip code) with the reason when node or npm is missing or the registry cannot be
# reached; the install is redone only when package-lock.json changes.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${1:?usage: prepare.sh CACHE_DIR}

skip() {
  echo "SKIP: $*"
  exit 77
}
command -v node > /dev/null || skip "node is not installed (scripts/setup.sh installs nodejs and npm)"
command -v npm > /dev/null || skip "npm is not installed (scripts/setup.sh installs nodejs and npm)"

mkdir -p "$cache"
stamp="$cache/installed.lock"
if ! cmp -s "$here/package-lock.json" "$stamp" || [[ ! -d "$cache/node_modules/@huggingface/tokenizers" ]]; then
  cp "$here/package.json" "$here/package-lock.json" "$cache/"
  if ! (cd "$cache" && timeout 300 npm ci --no-audit --no-fund --ignore-scripts --cache "$cache/.npm" \
        --fetch-retries=1 --fetch-retry-mintimeout=2000 --fetch-retry-maxtimeout=5000) \
      > "$cache/npm.log" 2>&1; then
    skip "npm ci in $cache failed (no network or registry?); see $cache/npm.log: $(tail -n 3 "$cache/npm.log" | tr '\n' ' ')"
  fi
  cp "$here/package-lock.json" "$stamp"
fi
cp "$here"/*.mjs "$cache/"
node "$cache/build_vocab.mjs" "$cache/node_modules" "$cache/vocab"
