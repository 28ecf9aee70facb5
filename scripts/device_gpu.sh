#!/usr/bin/env bash
# On the GPU machine: build with CUDA, run the GPU tests, time the kernels, `ra bench decode` beside the
# PyTorch reference (same call, same card), and the transformers oracle. Results go to $OUT (default:
# out/): a few files, a summary printed last.
#   usage (device tool; carry .device with the debs and the shared models under .device/models):
#     source .device/bootstrap.sh && scripts/device_gpu.sh
# Knobs (environment):
#   STAGES     comma list of build,tests,kernels,decode,torch,oracle (default: all). With
#              .device/prebuilt.tgz (binaries built on the development machine by
#              scripts/device_prebuild.sh) "build" unpacks them instead of compiling, and compiles only if
#              they do not run here.
#   CONTEXTS   ra bench decode / torch contexts (default 0,32768,131072,524288)
#   PREFILL_MAX  contexts up to this are prefilled (and timed) by ra bench decode (default 131072)
#   DEADLINE_S  stop starting new stages after this many seconds (default 560)
set -uo pipefail
start=$(date +%s)
out=${OUT:-out}
mkdir -p "$out" "$out/logs"
stages=${STAGES:-build,tests,kernels,decode,torch,oracle}
contexts=${CONTEXTS:-0,32768,131072,524288}
models=${RA_SHARED_MODELS_DIR:-$PWD/.device/models}
build=${BUILD_DIR:-build-gpu}
ra=$build/launcher/ra
summary=$out/summary.txt
: > "$summary"
has() { [[ ",$stages," == *",$1,"* ]]; }
left() { echo $(( ${DEADLINE_S:-560} - ($(date +%s) - start) )); }
note() { echo "$*" | tee -a "$summary"; }

{ date -u; nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv; nproc
  python3 -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)'
} > "$out/logs/machine.txt" 2>&1
note "machine: $(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null)"

use_prebuilt() {  # the development machine's binaries; their compiled-in models path is /work/shared/models
  [[ -f .device/prebuilt.tgz ]] || return 1
  mkdir -p "$build" && tar -xzf .device/prebuilt.tgz -C "$build" || return 1
  export LD_LIBRARY_PATH="$PWD/.device/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  mkdir -p /work/shared && { [[ -e /work/shared/models ]] || ln -s "$models" /work/shared/models; }
  "$ra" --version > "$out/logs/prebuilt.txt" 2>&1 && "$build/tests/backend_ops_gpu_test" --gtest_list_tests \
    >> "$out/logs/prebuilt.txt" 2>&1
}
if has build && use_prebuilt; then
  note "build: prebuilt binaries ($(cat .device/prebuilt.commit 2>/dev/null)) run here"
elif has build; then
  cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 \
    -DRA_SHARED_MODELS_DIR="$models" > "$out/logs/configure.txt" 2>&1 || { tail -30 "$out/logs/configure.txt"; exit 1; }
  targets=(ra ra-gpu-worker ra-cpu-retriever ra-bench-kernels backend_ops_gpu_test cuda_backend_gpu_test
           cuda_model_gpu_test)
  t0=$(date +%s)
  if ! cmake --build "$build" -j"$(nproc)" --target "${targets[@]}" > "$out/logs/build.txt" 2>&1; then
    grep -B2 -A12 -E "error|FAILED" "$out/logs/build.txt" | head -80
    note "build: FAILED"
    tar -czf "$out/logs.tgz" -C "$out" logs; rm -rf "$out/logs"; exit 1
  fi
  note "build: ok in $(( $(date +%s) - t0 )) s"
  grep -E "registers|spill" "$out/logs/build.txt" | sort | uniq | head -60 > "$out/logs/ptxas.txt" || true
fi

if has tests && (( $(left) > 60 )); then
  for t in backend_ops_gpu_test cuda_backend_gpu_test cuda_model_gpu_test; do
    timeout 300 "$build/tests/$t" > "$out/logs/$t.txt" 2>&1
    rc=$?
    note "$t: exit $rc, $(grep -E '^\[  (PASSED|FAILED|SKIPPED) ' "$out/logs/$t.txt" | tr '\n' ' ')"
    grep -E "FAIL|Failure|error" "$out/logs/$t.txt" | head -15 >> "$summary"
  done
  cat "$out"/logs/*_gpu_test.txt | grep -E "^[a-z_]+ +.* (OK|FAIL)$|op checks" > "$out/op_table.txt" || true
  # flat == full through real retriever processes on the GPU (what ctest's pipeline_gpu_* run).
  for t in "shm::" "ucx::" "shm:$models/needle-byte-13m:1e-2"; do
    IFS=: read -r transport model tol <<< "$t"
    env RA="$ra" BACKEND=cuda STEPS=240 ${model:+MODEL=$model MIN_STEPS=64} TOL="${tol:-1e-4}" timeout 200 \
      bash tests/mpi/pipeline_mpi_test.sh exact "$transport" 2 > "$out/logs/pipeline_${transport}_${model:+needle}.txt" 2>&1
    note "pipeline flat==full $transport ${model:+needle}: exit $? $(grep -E 'PASS|FAIL|SKIP|worst' "$out/logs/pipeline_${transport}_${model:+needle}.txt" | tr '\n' ' ')"
  done
fi

if has kernels && (( $(left) > 60 )); then
  timeout 240 "$build/bench/ra-bench-kernels" --json "$out/kernels.json" > "$out/kernels.txt" 2>&1
  note "ra-bench-kernels: exit $?"
  cat "$out/kernels.txt" >> "$summary"
fi

if has decode && (( $(left) > 90 )); then
  cmd=("$ra" bench decode --backend cuda --geometry llama3-8b --context "$contexts" --modes full
       --prefill-max "${PREFILL_MAX:-131072}" --json "$out/decode.json")
  note "\$ ${cmd[*]}"
  timeout $(( $(left) - 30 )) "${cmd[@]}" > "$out/logs/decode.txt" 2>&1
  note "ra bench decode: exit $?"
  cat "$out/logs/decode.txt" >> "$summary"
fi

if has torch && (( $(left) > 60 )); then
  cmd=(python3 scripts/bench_torch_decode.py --context "$contexts" --json "$out/torch.json")
  note "\$ ${cmd[*]}"
  PYTHONUNBUFFERED=1 timeout $(( $(left) - 20 )) "${cmd[@]}" > "$out/logs/torch.txt" 2>&1
  note "bench_torch_decode.py: exit $?"
  tail -25 "$out/logs/torch.txt" >> "$summary"
fi

if has oracle && (( $(left) > 60 )); then
  cmd=(python3 scripts/oracle_transformers.py --ra "$ra" --json "$out/oracle.json")
  note "\$ ${cmd[*]}"
  PYTHONUNBUFFERED=1 timeout $(( $(left) - 10 )) "${cmd[@]}" > "$out/logs/oracle.txt" 2>&1
  note "oracle_transformers.py: exit $?"
  tail -25 "$out/logs/oracle.txt" >> "$summary"
fi

tar -czf "$out/logs.tgz" -C "$out" logs && rm -rf "$out/logs"
note "total $(( $(date +%s) - start )) s"
cat "$summary"
