#!/usr/bin/env bash
# The main job: set up, build, and run `ra generate`. With no arguments it decodes a long synthetic
# prompt with the embedded deterministic demo model; any arguments are passed to `ra generate`
# (e.g. --model DIR --prompt-file FILE).
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
bash "$root/scripts/build.sh" >&2
exec "${RA_BUILD_DIR:-$root/build}/launcher/ra" generate "$@"
