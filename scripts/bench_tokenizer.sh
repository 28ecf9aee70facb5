#!/usr/bin/env bash
# Tokenizer encode throughput: ours (`ra bench tokenizer`) against the reference's JavaScript port
# (@huggingface/tokenizers, tests/tokenizer/bench_oracle.mjs) on the same ~4 MB mixed text (about 1M
# Llama-3 tokens), single thread, Llama-3 and Llama-2 vocabularies rebuilt from npm as in the oracle
# test. Prints one JSON line per run and a Markdown table (docs/tokenizer.md).
#
#   scripts/bench_tokenizer.sh [BUILD_DIR] [BYTES]      (defaults: build/, 4000000)
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${1:-$root/build}
bytes=${2:-4000000}
cache="$build/tokenizer-oracle"

cmake --build "$build" --target ra > /dev/null
ra="$build/launcher/ra"
bash "$root/tests/tokenizer/prepare.sh" "$cache" || { echo "bench_tokenizer.sh: the oracle is unavailable"; exit 1; }
cp "$root/tests/tokenizer/bench_oracle.mjs" "$cache/"
node "$cache/make_corpus.mjs" bench "$cache/bench.txt" "$bytes"

results="$cache/bench.jsonl"
: > "$results"
for vocab in llama3 llama2; do
  "$ra" bench tokenizer --tokenizer "$cache/vocab/$vocab/tokenizer.json" --text "$cache/bench.txt" --repeat 5 \
    | tee -a "$results"
  node "$cache/bench_oracle.mjs" "$cache/vocab/$vocab" "$cache/bench.txt" 3 | tee -a "$results"
done

python3 - "$results" <<'PY'
import json, sys
rows = [json.loads(line) for line in open(sys.argv[1])]
print("\n| vocabulary | implementation | MB/s | tokens/s | encode s (wall) | tokens |")
print("|---|---|---:|---:|---:|---:|")
for r in rows:
    vocab = r["tokenizer"].split("/")[-2]
    cpu = f' (CPU {r["encode_cpu_s"]:.3f})' if "encode_cpu_s" in r else ""
    print(f'| {vocab} | {r["impl"]} | {r["mb_per_s"]:.2f} | {r["tokens_per_s"]:,} | {r["encode_s"]:.3f}{cpu} | {r["tokens"]:,} |')
for vocab in ("llama3", "llama2"):
    ours = [r for r in rows if r["tokenizer"].split("/")[-2] == vocab and "C++" in r["impl"]]
    ref = [r for r in rows if r["tokenizer"].split("/")[-2] == vocab and "JS" in r["impl"]]
    if ours and ref:
        assert ours[0]["tokens"] == ref[0]["tokens"], f"{vocab}: token counts differ"
        print(f'\n{vocab}: {ours[0]["mb_per_s"] / ref[0]["mb_per_s"]:.1f}x the reference port')
PY
