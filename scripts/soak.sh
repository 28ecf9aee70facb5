#!/usr/bin/env bash
# Issue 20 item 6, the soak: one long generation in retrieval mode with 2 retrievers over shared memory,
# sampling every rank of the job (RSS, threads, open fds) and /dev/shm (entries, bytes) as it runs.
#   usage: scripts/soak.sh [TOKENS (default 100000)] [OUT_DIR (default out/soak)]
#   env:   RA (default build/launcher/ra), INTERVAL_S (default 2), EXTRA (more `ra generate` flags)
# The model is the demo's geometry with room for the run (synthetic weights, byte vocabulary; 4 layers,
# hidden 256, 2 kv heads of 32 dims), --ignore-eos so the length is fixed. Writes OUT_DIR/samples.csv
# (one row per rank per sample; tokens = bytes of generated text so far, one per token with the byte
# vocabulary) and OUT_DIR/summary.txt: per rank, its figures after warm-up (the first 10% of tokens)
# and at the end. What may grow: a retriever's RSS by the KV and graph of the tokens it is given (the
# summary prints bytes per token); what must not: threads, fds, /dev/shm, and the worker's RSS.
set -uo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
tokens=${1:-100000}
out=${2:-out/soak}
ra=${RA:-$root/build/launcher/ra}
interval=${INTERVAL_S:-2}
mkdir -p "$out"
[[ -x $ra ]] || { echo "soak: no ra at $ra (build first: scripts/build.sh)" >&2; exit 2; }

cfg=$out/soak.yaml
cat > "$cfg" <<YAML
mode: retrieval
sinks: 128
window: 512
synthetic_prompt_bytes: 16384
max_new_tokens: $tokens
ignore_eos: true
retrievers: 2
transport: shm
index:
  top_k: 100
  graph_max_train_queries: 1024
geometry:
  hidden_size: 256
  n_layers: 4
  n_heads: 8
  n_kv_heads: 2
  head_dim: 32
  intermediate_size: 768
  max_position_embeddings: $(( tokens + 16384 + 1024 ))
YAML

# Every descendant of pid $1 (the launcher, mpirun, the ranks).
descendants() {
  local kids
  kids=$(ps -o pid= --ppid "$1" 2>/dev/null)
  for k in $kids; do echo "$k"; descendants "$k"; done
}

shm_before=$(ls /dev/shm | wc -l)
"$ra" generate --config "$cfg" ${EXTRA:-} > "$out/text.txt" 2> "$out/stderr.txt" &
job=$!
echo "t_s,tokens,pid,name,rss_kib,threads,fds,shm_entries,shm_kib" > "$out/samples.csv"
start=$(date +%s.%N)
while kill -0 "$job" 2>/dev/null; do
  now=$(date +%s.%N)
  t=$(awk -v a="$start" -v b="$now" 'BEGIN { printf "%.1f", b - a }')
  generated=$(stat -c %s "$out/text.txt" 2>/dev/null || echo 0)
  shm_entries=$(ls /dev/shm | wc -l)
  shm_kib=$(du -sk /dev/shm 2>/dev/null | cut -f1)
  for pid in $(descendants "$job"); do
    name=$(cat "/proc/$pid/comm" 2>/dev/null) || continue
    [[ $name == ra-gpu-worker || $name == ra-cpu-retriev* ]] || continue
    rss=$(awk '/^VmRSS/ { print $2 }' "/proc/$pid/status" 2>/dev/null)
    threads=$(awk '/^Threads/ { print $2 }' "/proc/$pid/status" 2>/dev/null)
    fds=$(ls "/proc/$pid/fd" 2>/dev/null | wc -l)
    [[ -n $rss ]] && echo "$t,$generated,$pid,$name,$rss,$threads,$fds,$shm_entries,$shm_kib" >> "$out/samples.csv"
  done
  sleep "$interval"
done
wait "$job"
status=$?
shm_after=$(ls /dev/shm | wc -l)

python3 - "$out/samples.csv" "$tokens" "$status" "$shm_before" "$shm_after" > "$out/summary.txt" <<'PY'
import csv, sys
from collections import defaultdict
path, tokens, status, shm_before, shm_after = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4]), int(sys.argv[5])
rows = list(csv.DictReader(open(path)))
by = defaultdict(list)
for r in rows:
    by[(r["name"], r["pid"])].append(r)
print(f"soak: {tokens} tokens asked, exit status {status}; /dev/shm entries before {shm_before}, after {shm_after}")
last_tokens = max((int(r["tokens"]) for r in rows), default=0)
print(f"generated (bytes of text) at the last sample: {last_tokens}")
warm = tokens // 10
for (name, pid), rs in sorted(by.items()):
    after = [r for r in rs if int(r["tokens"]) >= warm] or rs
    a, z = after[0], after[-1]
    dt = int(z["tokens"]) - int(a["tokens"])
    growth = (int(z["rss_kib"]) - int(a["rss_kib"])) * 1024
    per_token = growth / dt if dt > 0 else float("nan")
    th = sorted({int(r["threads"]) for r in after})
    fd = sorted({int(r["fds"]) for r in after})
    print(f"{name} {pid}: from token {a['tokens']} to {z['tokens']}: RSS {int(a['rss_kib'])//1024} -> {int(z['rss_kib'])//1024} MiB "
          f"({per_token:.0f} B per token), threads {th}, fds {fd}")
shm = sorted({int(r["shm_entries"]) for r in rows})
print(f"/dev/shm entries during the run: {shm}")
PY
cat "$out/summary.txt"
[[ $status -eq 0 && $shm_after -le $shm_before ]]
