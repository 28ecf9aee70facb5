#!/usr/bin/env bash
# OpenAI's own npm client (6.x, pinned in package-lock.json) against the real ra-serve-inproc on a tiny
# Llama-3-style checkpoint: completions, chat, streaming (both), a cancelled stream, and errors as the
# client's typed exceptions (openai_client_test.mjs).
#
#   SERVE=build/gpu_worker/serve/ra-serve-inproc MAKE_MODEL=build/tests/ra-serve-test-model \
#     CACHE=build/serve-client bash tests/serve/openai_client_test.sh
#
# Skips (exit 77) without node, npm or the npm registry.
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
: "${SERVE:?set SERVE to ra-serve-inproc}" "${MAKE_MODEL:?set MAKE_MODEL to ra-serve-test-model}"
: "${CACHE:?set CACHE to a folder in the build tree}"

bash "$here/prepare.sh" "$CACHE"
WORK=$(mktemp -d)
source "$here/serve_support.sh"
trap 'stop_servers; rm -rf "$WORK"' EXIT

"$MAKE_MODEL" "$WORK/tiny-llama3"
start_server chat --model "$WORK/tiny-llama3" --queue 2
timeout 120 node "$CACHE/openai_client_test.mjs" "$URL_chat" tiny-llama3
