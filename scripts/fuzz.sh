#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz/) with clang, ASan and UBSan into build-fuzz/ and runs each
# for a fixed number of inputs from its seed corpus (tests/fuzz/corpus/<target>/, copied: the runs do
# not grow the committed one). A crash leaves its input in build-fuzz/crashes/ and fails the script;
# each found and fixed becomes a regression input in the corpus.
#   usage: scripts/fuzz.sh [RUNS (default 200000)] [target ...]
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
runs=${1:-200000}
shift || true
targets=("$@")
[[ ${#targets[@]} -gt 0 ]] || targets=(safetensors_fuzz hf_config_fuzz npy_fuzz run_config_fuzz openai_request_fuzz
                                        tokenizer_config_fuzz retriever_messages_fuzz)
build=$root/build-fuzz
mkdir -p "$build"
bash "$root/scripts/setup.sh" > /dev/null
CC=clang CXX=clang++ cmake -S "$root" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo -DRA_ENABLE_CUDA=OFF \
  -DRA_BUILD_TESTS=OFF -DRA_FUZZ=ON -DRA_SANITIZE=fuzzer-no-link,address,undefined > "$build/configure.log" 2>&1 \
  || { cat "$build/configure.log"; exit 1; }
cmake --build "$build" -j"$(nproc)" --target "${targets[@]}"
export ASAN_OPTIONS="abort_on_error=1:detect_leaks=1"
export UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1"
mkdir -p "$build/crashes"
failed=0
for t in "${targets[@]}"; do
  corpus=$(mktemp -d)
  [[ -d "$root/tests/fuzz/corpus/$t" ]] && cp -r "$root/tests/fuzz/corpus/$t/." "$corpus/"
  log=$build/$t.log
  if "$build/tests/fuzz/$t" -runs="$runs" -max_len=65536 -rss_limit_mb=4096 -timeout=10 \
       -artifact_prefix="$build/crashes/$t-" "$corpus" > "$log" 2>&1; then
    echo "$t: $(grep -E '^Done [0-9]+ runs' "$log" | tail -1); $(grep -oE 'cov: [0-9]+ ft: [0-9]+' "$log" | tail -1)"
  else
    echo "$t: FAILED (see $log; input in $build/crashes/)"; grep -E "ERROR|==[0-9]+==|terminate" "$log" | head -5
    failed=1
  fi
  rm -rf "$corpus"
done
exit $failed
