#!/usr/bin/env bash
# On the GPU machine (16 cores): build, dump the needle model's q/k/v for a 64K-token needle prompt with
# the CPU reference decoder, and run the retrieval benchmark at N = 61440 keys; then, with the time left
# under DEADLINE_S (default 570 s from the start), the tail-merge measurement (--graph-append) on the
# layers in APPEND_LAYERS (APPEND=0 skips it). GRAPH_WARM=H (default 2) adds the decode-order rows
# (--graph-warm H; 0 = none). LAYERS="0 1" limits the main benchmark to those layers (default: all).
# EXTRA="--graph-key-lists 4 ..." is passed on to the main benchmark. TAG=x names its files
# rows_64k_x.json / bench_64k_x.txt (so that several runs in one call keep theirs).
# Results go to $OUT (default: out/).
#   usage (device tool, carry .device with needle-byte-13m in .device/models):
#     source .device/bootstrap.sh && scripts/device_retrieval_64k.sh
set -euo pipefail
start=$(date +%s)
out=${OUT:-out}
models=${RA_SHARED_MODELS_DIR:-$PWD/.device/models}
mkdir -p "$out"
cmake -S . -B build-dev -G Ninja -DCMAKE_BUILD_TYPE=Release -DRA_ENABLE_CUDA=OFF -DRA_BUILD_TESTS=OFF > "$out/configure.txt"
{ time cmake --build build-dev -j"$(nproc)"; } > "$out/build.txt" 2>&1
ra=build-dev/launcher/ra
if [[ ! -f /tmp/qkv64k/meta.json ]]; then  # a warm machine keeps the dump of an earlier call
  $ra needle-prompt --tokens 65536 --facts 4 --seed 11 --out /tmp/needle64k.txt > "$out/answer.txt" 2> /tmp/needle64k.log
  { time $ra dump-qkv --model "$models/needle-byte-13m" --prompt-file /tmp/needle64k.txt --out /tmp/qkv64k ; } \
    > "$out/dump.txt" 2>&1
fi
main_layers=()
for l in ${LAYERS:-}; do main_layers+=(--layer "$l"); done
{ time $ra bench retrieval --qkv /tmp/qkv64k --prefill 61440 --k 100 --indexes "${INDEXES:-ivf,hnsw,graph}" \
    --test-queries "${TEST_QUERIES:-256}" --graph-warm "${GRAPH_WARM:-2}" "${main_layers[@]}" ${EXTRA:-} \
    --json "$out/rows_64k${TAG:+_$TAG}.json" ; } > "$out/bench_64k${TAG:+_$TAG}.txt" 2>&1
left=$(( ${DEADLINE_S:-570} - ($(date +%s) - start) ))
echo "append run: ${left} s left" > "$out/append_64k.txt"
if (( left > 30 && ${APPEND:-4096} > 0 )); then
  layers=()
  for l in ${APPEND_LAYERS:-1 3}; do layers+=(--layer "$l"); done
  { time timeout "$left" $ra bench retrieval --qkv /tmp/qkv64k --prefill 61440 --k 100 --indexes graph \
      --test-queries "${TEST_QUERIES:-256}" --graph-append "${APPEND:-4096}" "${layers[@]}" \
      --json "$out/rows_64k_append.json" ; } >> "$out/append_64k.txt" 2>&1 || true
fi
