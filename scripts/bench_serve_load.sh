#!/usr/bin/env bash
# How long `ra serve --load DIR` takes to restore a saved context (docs/serve.md): the save as written
# (the retrievers restore their shard files) against a copy without them (the retrievers rebuild their
# indexes from the layer files, as before shard files existed). Prints the server's own load line for
# each, `RUNS` times (default 2), alternating.
#   usage: scripts/bench_serve_load.sh SAVE_DIR [ra serve arguments: --model, --mode, --retrievers, ...]
# Environment: RA (default build/launcher/ra).
set -euo pipefail
save=${1:?usage: $0 SAVE_DIR [ra serve arguments]}
shift
ra=${RA:-build/launcher/ra}
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
# The copy: the same rows and worker KV, the manifest without its "retriever_shards" field.
mkdir -p "$work/rows"
for f in "$save"/*; do
  case $(basename "$f") in retriever-*.shards|manifest.json) ;; *) ln -s "$(realpath "$f")" "$work/rows/" ;; esac
done
/usr/bin/python3 - "$save/manifest.json" "$work/rows/manifest.json" <<'PY'
import json, sys
m = json.load(open(sys.argv[1]))
m.pop("retriever_shards", None)
m["files"] = {k: v for k, v in m["files"].items() if not k.startswith("retriever-")}
json.dump(m, open(sys.argv[2], "w"), indent=1)
PY
load_once() {  # DIR LABEL [ra serve arguments]
  local dir=$1 label=$2
  shift 2
  rm -f "$work/port"
  "$ra" serve --port 0 --port-file "$work/port" --quiet "$@" --load "$dir" > /dev/null 2> "$work/log" &
  local pid=$! deadline=$((SECONDS + 1800))
  until grep -q "ra serve: loaded the context" "$work/log" 2> /dev/null; do
    kill -0 "$pid" 2> /dev/null || { echo "ra serve exited: $(tail -5 "$work/log")" >&2; exit 1; }
    ((SECONDS < deadline)) || { kill "$pid"; echo "no load within 1800 s" >&2; exit 1; }
    sleep 0.2
  done
  kill -TERM "$pid"
  wait "$pid" || true
  echo "$label: $(grep -o "loaded the context.*" "$work/log")"
}
for ((i = 0; i < ${RUNS:-2}; ++i)); do
  load_once "$save" "shard files" "$@"
  load_once "$work/rows" "rows only  " "$@"
done
