#!/usr/bin/env bash
# Installs OpenAI's npm client (6.x, pinned in package-lock.json) and the test script into CACHE_DIR, a
# folder of the build tree (tests/support/npm_prepare.sh; exits 77 without node, npm or the registry).
#
#   bash tests/serve/prepare.sh CACHE_DIR
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
bash "$here/../support/npm_prepare.sh" "$here" "${1:?usage: prepare.sh CACHE_DIR}" openai
