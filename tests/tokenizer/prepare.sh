#!/usr/bin/env bash
# Prepares the tokenizer oracle in CACHE_DIR (a folder of the build tree; nothing here is committed):
# installs the pinned npm packages of package-lock.json (integrity-checked) and copies the .mjs scripts
# beside them (tests/support/npm_prepare.sh), then rebuilds Meta's Llama-3 / Llama-2 tokenizer files from
# the vocabularies baked into llama3-tokenizer-js and llama-tokenizer-js
# (CACHE_DIR/vocab/{llama3,llama2,llama2-metaspace}).
#
#   bash tests/tokenizer/prepare.sh CACHE_DIR
#
# Exits 77 (ctest's skip code) with the reason when node or npm is missing or the registry cannot be
# reached; the install is redone only when package-lock.json changes.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cache=${1:?usage: prepare.sh CACHE_DIR}
bash "$here/../support/npm_prepare.sh" "$here" "$cache" @huggingface/tokenizers
node "$cache/build_vocab.mjs" "$cache/node_modules" "$cache/vocab"
