#!/usr/bin/env bash
# The tokenizer oracle test: >= 10,000 strings (make_corpus.mjs) through the reference's JavaScript port
# (oracle.mjs) and through ra-tokenizer-tool check, for Llama-3 (byte-level), Llama-2 (SentencePiece,
# normalizer layout) and Llama-2 in the Metaspace layout. Every id and every decoded text must agree.
#
#   TOOL=build/tests/ra-tokenizer-tool CACHE=build/tokenizer-oracle bash tests/tokenizer/oracle_test.sh
#
# Skips (exit 77) without node, npm or the npm registry.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
: "${TOOL:?set TOOL to ra-tokenizer-tool}" "${CACHE:?set CACHE to a cache folder in the build tree}"

bash "$here/prepare.sh" "$CACHE"
node "$CACHE/make_corpus.mjs" corpus "$CACHE/corpus.bin"
status=0
for vocab in llama3 llama2 llama2-metaspace; do
  node "$CACHE/oracle.mjs" "$CACHE/vocab/$vocab" "$CACHE/corpus.bin" "$CACHE/expected-$vocab.bin"
  "$TOOL" check "$CACHE/vocab/$vocab/tokenizer.json" "$CACHE/corpus.bin" "$CACHE/expected-$vocab.bin" || status=1
done
exit $status
