#!/usr/bin/env bash
# The main job: set up, build, and run `ra generate` on the embedded default config (configs/demo.yaml):
# the deterministic demo model decodes a long synthetic prompt in retrieval mode, with a CPU retriever
# rank under mpirun over shared memory. Arguments are passed to `ra generate` and override the config
# (e.g. --mode full, or --model DIR --prompt-file FILE).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$root/scripts/build.sh" >&2
exec "${RA_BUILD_DIR:-$root/build}/launcher/ra" generate --config "$root/configs/demo.yaml" "$@"
