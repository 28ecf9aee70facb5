#!/usr/bin/env bash
# On the GPU machine: the GPU tests, the kernel timings, `ra bench decode` beside the PyTorch reference
# (same call, same card) and the transformers oracle. Results go to $OUT (default: out/): a few files,
# a summary printed last.
#   usage (device tool; carry .device: the debs, the shared models under .device/models and, from
#   scripts/device_prebuild.sh, prebuilt binaries):
#     source .device/bootstrap.sh && scripts/device_gpu.sh
# Knobs (environment):
#   STAGES       stages in the order to run them (default build,decode,torch,tests,pipeline,oracle,kernels):
#                build     unpack .device/prebuilt.tgz (compiles here only when they do not run)
#                tests     backend_ops_gpu_test, cuda_backend_gpu_test, cuda_model_gpu_test, train_lists_gpu_test, kv_rows_gpu_test,
#                          grouped_search_test (a CPU test: the grouped search's recall line on this machine)
#                pipeline  flat == full through real retriever processes (tests/mpi/pipeline_mpi_test.sh)
#                serve     `ra serve` with the CUDA worker and 2 retriever ranks (tests/serve/serve_mpi_test.sh
#                          api and saved): a reused, and a saved and loaded, context gives a cold prefill's tokens
#                ttft      `ra serve` (CUDA worker, RETRIEVERS retrievers, mode retrieval) on needle-byte-13m:
#                          time to first token, a reused 16K context against a cold one (scripts/bench_serve_ttft.py)
#                kernels   ra-bench-kernels          decode  ra bench decode
#                torch     scripts/bench_torch_decode.py     oracle  scripts/oracle_transformers.py
#                accuracy  `ra bench accuracy` on needle-byte-13m with the CUDA worker backend (docs/accuracy.md):
#                          ACC_LENGTHS (default 4096,16384,32768,65536), ACC_SCAN (0.01,0.02,0.05),
#                          ACC_PROMPTS (24), ACC_SEED (1, the first prompt's), ACC_MODES (all six),
#                          ACC_TEXT_POSITIONS (1000; 0: no text), ACC_TIME_LIMIT (0: none; no prompt starts
#                          after it, so a piece of a long eval ends with its rows: bench/accuracy/merge_rows.py
#                          adds pieces over disjoint seeds), ACC_TIMEOUT (540 s, the hard limit), ACC_ARGS (more
#                          arguments, e.g. "--graph-connect-max-in-degree 0")
#                offload   `ra generate` of Llama-3-8B geometry with the CUDA worker and RETRIEVERS retriever
#                          ranks over shm, one run per OFFLOAD_RUNS entry, GPU memory, RSS and threads
#                          sampled every 0.5 s (logs/offload_*.txt, offload_samples_*.txt)
#   TESTS        test binaries of the tests stage (default: all five)
#   CONTEXTS     ra bench decode / torch contexts (default 0,32768,131072,524288)
#   PREFILL_MAX  contexts up to this are prefilled (and timed) by ra bench decode (default 131072)
#   DEADLINE_S   start no stage after this many seconds (default 560); each stage has its own timeout
#                search    ra-bench-search: one retriever rank's per-layer graph search on synthetic keys
#                scaling   ra-bench-search pinned at 1, 2, 4, 8, 16 threads (SCALING_CORES), then as 2 and 4
#                          processes on disjoint cores (taskset): scaling.json, scaling.png (docs/scaling.md)
#   OFFLOAD_RUNS comma-separated CONTEXT:MODE[:TRAIN_QUERIES[:KEY_STRIDE[:HEADS_PER_SEARCH[:EF_CONSTRUCTION[:INTERLEAVE[:NAV[:EF[:EXPAND[:MERGEQ[:IDLE[:PIN[:ENV]]]]]]]]]]]]
#                (default 32768:flat,32768:retrieval:4096:0); empty fields keep the config's value;
#                HEADS_PER_SEARCH >= 1: one graph per kv head (index.graph_heads_per_search);
#                INTERLEAVE: index.graph_interleave; NAV: index.graph_navigation (exact, int8); EF: the
#                search beam (--ef; below top_k 100 the answer still keeps 100); EXPAND: index.graph_expand;
#                MERGEQ: index.graph_merge_queries (0 every query head of the group, 1 one); IDLE: 1 runs the
#                retrievers' merges at idle priority (RA_MAINTENANCE_IDLE=1) in this run only; PIN: 0 leaves
#                the retrievers' search threads unpinned (--no-pin-retriever-threads), 1 pins them (the default);
#                ENV: VAR=VALUE[+VAR=VALUE...] in every rank's environment for this run only (e.g.
#                RA_SHM_SPIN_US_RETRIEVER=2000+OMP_WAIT_POLICY=ACTIVE); RETRIEVER_THREADS=N there sets this
#                run's --retriever-threads, KV_DTYPE=D its --kv-dtype (e.g. int8: the NAV field then empty),
#                INDEX_<key>=<value> any other index key of its config (e.g. INDEX_graph_connect_max_in_degree=0)
#   SEARCH_ARGS  ra-bench-search's arguments (default: 128K keys, 32 shards, 32 heads per layer on 16
#                threads, interleave 1,2, navigation exact,int8)
#   OFFLOAD_TIMEOUT seconds per offload run (default 280)
#   OFFLOAD_TOKENS  tokens each offload run decodes (default 64; past an end-of-sequence token too)
#   RETRIEVERS   retriever ranks of the offload runs (default 4)
#   RETRIEVER_THREADS  search threads of each (default 16 / RETRIEVERS)
set -uo pipefail
start=$(date +%s)
out=${OUT:-out}
mkdir -p "$out" "$out/logs"
stages=${STAGES:-build,decode,torch,tests,pipeline,oracle,kernels}
contexts=${CONTEXTS:-0,32768,131072,524288}
models=${RA_SHARED_MODELS_DIR:-$PWD/.device/models}
build=${BUILD_DIR:-build-gpu}
ra=$build/launcher/ra
summary=$out/summary.txt
# The Debian libraries the prebuilt binaries need (scripts/device_prebuild.sh), also for a call that
# only runs stages on binaries an earlier call of the same warm machine unpacked.
[[ -d .device/lib ]] && export LD_LIBRARY_PATH="$PWD/.device/lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
: > "$summary"
left() { echo $(( ${DEADLINE_S:-560} - ($(date +%s) - start) )); }
note() { echo "$*" | tee -a "$summary"; }
# Runs "$@" with a timeout of min($1 seconds, the time left before the deadline).
bounded() { local t=$1; shift; local l; l=$(left); (( l < t )) && t=$l; (( t > 5 )) || return 124; timeout "$t" "$@"; }

{ date -u; nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.sm,clocks.mem --format=csv; nproc
  lscpu | grep -E "Model name|MHz|^CPU\(s\)|L3"  # hosts differ: CPU-side figures move with them (docs/perf.md)
  python3 -c 'import torch, transformers; print("torch", torch.__version__, "transformers", transformers.__version__)'
} > "$out/logs/machine.txt" 2>&1
note "machine: $(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null)"

use_prebuilt() {  # the development machine's binaries; their compiled-in models path is /work/shared/models
  [[ -f .device/prebuilt.tgz ]] || return 1
  mkdir -p "$build" && tar -xzf .device/prebuilt.tgz -C "$build" || return 1
  mkdir -p /work/shared && { [[ -e /work/shared/models ]] || ln -s "$models" /work/shared/models; }
  "$ra" --version > "$out/logs/prebuilt.txt" 2>&1 && "$build/tests/backend_ops_gpu_test" --gtest_list_tests \
    >> "$out/logs/prebuilt.txt" 2>&1
}

stage_build() {
  if use_prebuilt; then note "build: prebuilt binaries ($(cat .device/prebuilt.commit 2>/dev/null)) run here"; return; fi
  cmake -S . -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_CUDA_ARCHITECTURES=90 \
    -DRA_SHARED_MODELS_DIR="$models" > "$out/logs/configure.txt" 2>&1 || { note "configure FAILED"; return 1; }
  local t0; t0=$(date +%s)
  if ! cmake --build "$build" -j"$(nproc)" --target ra ra-gpu-worker ra-cpu-retriever ra-bench-kernels \
       backend_ops_gpu_test cuda_backend_gpu_test cuda_model_gpu_test train_lists_gpu_test kv_rows_gpu_test grouped_search_test ra-serve-test-model \
       > "$out/logs/build.txt" 2>&1; then
    grep -B2 -A12 -E "error|FAILED" "$out/logs/build.txt" | head -60 | tee -a "$summary"
    note "build: FAILED"
    return 1
  fi
  note "build: compiled here in $(( $(date +%s) - t0 )) s"
}

stage_tests() {
  local t rc
  local all="backend_ops_gpu_test cuda_backend_gpu_test cuda_model_gpu_test train_lists_gpu_test kv_rows_gpu_test grouped_search_test"
  for t in ${TESTS:-$all}; do
    bounded 150 "$build/tests/$t" > "$out/logs/$t.txt" 2>&1
    rc=$?
    note "$t: exit $rc, $(grep -E '^\[  (PASSED|FAILED|SKIPPED) ' "$out/logs/$t.txt" | tr '\n' ' ')"
    grep -E "^\[  FAILED  \]|Failure$|rror:" "$out/logs/$t.txt" | head -12 >> "$summary"
  done
  cat "$out"/logs/*_gpu_test.txt | grep -E "^[a-z_]+ +.* (OK|FAIL)$|op checks" > "$out/op_table.txt" || true
}

stage_pipeline() {  # what ctest's pipeline_gpu_* run
  local t transport model tol log
  for t in "shm::" "shm:$models/needle-byte-13m:1e-2" "ucx::"; do
    IFS=: read -r transport model tol <<< "$t"
    log="$out/logs/pipeline_${transport}${model:+_needle}.txt"
    bounded 120 env RA="$ra" BACKEND=cuda STEPS=240 ${model:+MODEL=$model MIN_STEPS=64} TOL="${tol:-1e-4}" \
      bash tests/mpi/pipeline_mpi_test.sh exact "$transport" 2 > "$log" 2>&1
    note "pipeline flat==full $transport${model:+ needle}: exit $? $(grep -E 'PASS|FAIL|SKIP|worst' "$log" | tr '\n' ' ')"
  done
}

stage_serve() {
  local part log
  for part in api saved; do
    log="$out/logs/serve_${part}.txt"
    bounded 200 env RA="$ra" MAKE_MODEL="$build/tests/ra-serve-test-model" RA_SERVE_BACKEND=cuda CACHE="$out/logs/npm" \
      bash tests/serve/serve_mpi_test.sh "$part" > "$log" 2>&1
    note "ra serve $part (cuda worker): exit $? $(grep -E 'PASS|FAIL|SKIP' "$log" | tr '\n' ' ')"
  done
}

stage_ttft() {
  local model=$models/needle-byte-13m log=$out/logs/ttft_serve.txt port=$out/logs/ttft.port pid
  "$ra" needle-prompt --tokens 16384 --facts 4 --seed 11 --out "$out/logs/needle16k.txt" > /dev/null 2>&1 ||
    { note "ttft: ra needle-prompt failed"; return; }
  python3 -c "import sys; t = open(sys.argv[1]).read(); open(sys.argv[2], 'w').write(t[:t.rindex('What is')])" \
    "$out/logs/needle16k.txt" "$out/logs/doc16k.txt"
  local retrievers=${RETRIEVERS:-4}
  "$ra" serve --model "$model" --backend cuda --mode retrieval --retrievers "$retrievers" \
    --retriever-threads $(( $(nproc) / retrievers )) --ctx 17408 --port 0 --port-file "$port" --quiet > "$log" 2>&1 &
  pid=$!
  local t0=$SECONDS
  until [[ -s $port ]] && curl -sf "http://127.0.0.1:$(cat "$port")/health" > /dev/null; do
    kill -0 "$pid" 2> /dev/null && (( SECONDS - t0 < 120 )) || { note "ttft: ra serve did not come up: $(tail -3 "$log")"; kill "$pid" 2> /dev/null; return; }
    sleep 1
  done
  local cmd=(python3 scripts/bench_serve_ttft.py --url "http://127.0.0.1:$(cat "$port")" --model needle-byte-13m
             --tokens 16384 --document-file "$out/logs/doc16k.txt" --runs 3
             --question "Ken: what is the special magic number for Ken? The special magic number for Ken is "
             --question "Tony: what is the special magic number for Tony? The special magic number for Tony is "
             --question "Ada: what is the special magic number for Ada? The special magic number for Ada is ")
  note "\$ ${cmd[*]}"
  bounded 240 "${cmd[@]}" > "$out/ttft.txt" 2>&1
  note "bench_serve_ttft.py: exit $?"
  cat "$out/ttft.txt" >> "$summary"
  kill -TERM "$pid" 2> /dev/null
  wait "$pid" 2> /dev/null
}

stage_search() {
  local cmd=("$build/bench/search/ra-bench-search" ${SEARCH_ARGS:---context 131072 --shards 32 --heads-per-layer 32
             --threads 16 --interleave 1,2 --navigation exact,int8 --layers 64 --rounds 3} --json "$out/search.json")
  note "\$ ${cmd[*]}"
  bounded 240 "${cmd[@]}" > "$out/logs/search.txt" 2>&1
  note "ra-bench-search: exit $?"
  grep -v "built$" "$out/logs/search.txt" | tail -8 >> "$summary"
}

stage_scaling() {  # issue 21 item 5: a retriever's search against cores, and 16 cores as 1, 2 or 4 processes
  local bin=$build/bench/search/ra-bench-search p i cores=${SCALING_CORES:-16}
  local common=(--context "${SCALING_CONTEXT:-131072}" --interleave 2 --navigation int8 --layers 64 --rounds 3 --pin 1)
  rm -f "$out"/scaling_p*.json
  note "\$ $bin ${common[*]} --shards 16 --heads-per-layer 32 --threads 1,2,4,8,$cores"
  bounded 300 "$bin" "${common[@]}" --shards 16 --heads-per-layer 32 --threads "1,2,4,8,$cores" \
    --json "$out/scaling_p1_0.json" > "$out/logs/scaling_p1.txt" 2>&1
  note "ra-bench-search, 1 process: exit $?"
  for p in 2 4; do  # P processes at once, each on its own cores, splitting the heads as P retrievers do
    for (( i = 0; i < p; i++ )); do
      taskset -c "$(( i * cores / p ))-$(( (i + 1) * cores / p - 1 ))" "$bin" "${common[@]}" --shards $(( 16 / p )) \
        --heads-per-layer $(( 32 / p )) --threads $(( cores / p )) --seed $(( 1 + i )) \
        --json "$out/scaling_p${p}_$i.json" > "$out/logs/scaling_p${p}_$i.txt" 2>&1 &
    done
    wait
    note "ra-bench-search, $p processes: done"
  done
  python3 scripts/scaling_report.py "$out" "$out/scaling.png" | tee -a "$summary"
}

stage_accuracy() {
  local text=/usr/include/sqlite3.h
  [[ -f $text ]] || text=$PWD/.device/text/sqlite3.h
  local text_args=(--text "$text" --text-positions "${ACC_TEXT_POSITIONS:-1000}")
  [[ ${ACC_TEXT_POSITIONS:-1000} == 0 ]] && text_args=()
  local cmd=("$ra" bench accuracy --model "$models/needle-byte-13m" --backend cuda
             --lengths "${ACC_LENGTHS:-4096,16384,32768,65536}" --modes "${ACC_MODES:-full,window,flat,ivf,hnsw,retrieval}"
             --scan "${ACC_SCAN:-0.01,0.02,0.05}" --prompts "${ACC_PROMPTS:-24}" --seed "${ACC_SEED:-1}" --facts 4
             "${text_args[@]}" --time-limit "${ACC_TIME_LIMIT:-0}" --retrievers 4 --json "$out/accuracy.json")
  # Word splitting intended: ACC_ARGS holds whole arguments.
  # shellcheck disable=SC2206
  [[ -n ${ACC_ARGS:-} ]] && cmd+=(${ACC_ARGS})
  note "\$ ${cmd[*]}"
  bounded "${ACC_TIMEOUT:-540}" "${cmd[@]}" > "$out/accuracy.txt" 2> "$out/logs/accuracy.err"
  note "ra bench accuracy: exit $?"
  cat "$out/accuracy.txt" >> "$summary"
  tail -3 "$out/logs/accuracy.err" >> "$summary"
}

stage_kernels() {
  bounded 150 "$build/bench/ra-bench-kernels" --json "$out/kernels.json" > "$out/kernels.txt" 2>&1
  note "ra-bench-kernels: exit $?"
  tail -40 "$out/kernels.txt" >> "$summary"
}

stage_decode() {
  local cmd=("$ra" bench decode --backend cuda --geometry llama3-8b --context "$contexts" --modes full
             --prefill-max "${PREFILL_MAX:-131072}" --json "$out/decode.json")
  note "\$ ${cmd[*]}"
  bounded 300 "${cmd[@]}" > "$out/logs/decode.txt" 2>&1
  note "ra bench decode: exit $?"
  cat "$out/logs/decode.txt" >> "$summary"
}

stage_torch() {
  local cmd=(python3 scripts/bench_torch_decode.py --context "$contexts" --json "$out/torch.json")
  note "\$ ${cmd[*]}"
  bounded 240 env PYTHONUNBUFFERED=1 "${cmd[@]}" > "$out/logs/torch.txt" 2>&1
  note "bench_torch_decode.py: exit $?"
  tail -22 "$out/logs/torch.txt" >> "$summary"
}

stage_oracle() {
  local cmd=(python3 scripts/oracle_transformers.py --ra "$ra" --json "$out/oracle.json")
  note "\$ ${cmd[*]}"
  bounded 200 env PYTHONUNBUFFERED=1 "${cmd[@]}" > "$out/logs/oracle.txt" 2>&1
  note "oracle_transformers.py: exit $?"
  tail -30 "$out/logs/oracle.txt" >> "$summary"
}

# Samples, every 0.5 s until $1 exits: GPU memory used, and RSS (KiB) and threads of every rank.
sample_job() {
  local pid=$1 file=$2
  while kill -0 "$pid" 2> /dev/null; do
    { echo "t $(date +%s.%N) gpu_mib $(nvidia-smi --query-gpu=memory.used --format=csv,noheader,nounits | head -1)"
      ps -C ra-gpu-worker,ra-cpu-retriever -o pid=,comm=,rss=,nlwp= ; } >> "$file" 2> /dev/null
    sleep 0.5
  done
}

stage_offload() {
  local runs=${OFFLOAD_RUNS:-32768:flat,32768:retrieval:4096:0} r ctx mode train stride heads efc inter nav ef expand mergeq idle pin envset cfg log samples pid
  local retrievers=${RETRIEVERS:-4}
  IFS=, read -r -a list <<< "$runs"
  for r in "${list[@]}"; do
    IFS=: read -r ctx mode train stride heads efc inter nav ef expand mergeq idle pin envset <<< "$r"
    local tag=${ctx}_${mode}${train:+_t$train}${stride:+_s$stride}${heads:+_g$heads}${efc:+_e$efc}${inter:+_i$inter}${nav:+_$nav}${ef:+_ef$ef}${expand:+_x$expand}${mergeq:+_mq$mergeq}${idle:+_idle$idle}${pin:+_pin$pin}${envset:+_${envset//[=+]/}}
    cfg=$out/logs/offload_$tag.yaml
    log=$out/logs/offload_$tag.txt
    samples=$out/offload_samples_$tag.txt
    { grep -v "^  graph_\|^index:\|^  top_k" configs/llama3-8b-128k.yaml
      echo "index:"; echo "  top_k: 100"
      [[ -n $train ]] && echo "  graph_max_train_queries: $train"
      [[ -n $stride ]] && echo "  graph_key_lists_stride: $stride"
      [[ -n $heads ]] && echo "  graph_heads_per_search: $heads"
      [[ -n $efc ]] && echo "  graph_ef_construction: $efc"
      [[ -n $inter ]] && echo "  graph_interleave: $inter"
      [[ -n $nav ]] && echo "  graph_navigation: $nav"
      [[ -n $expand ]] && echo "  graph_expand: $expand"
      [[ -n $mergeq ]] && echo "  graph_merge_queries: $mergeq"
      # INDEX_<key>=<value> in the ENV field: any other index key of this run's config.
      local kv; IFS=+ read -r -a kvs <<< "$envset"
      for kv in "${kvs[@]}"; do [[ $kv == INDEX_*=* ]] && { kv=${kv#INDEX_}; echo "  ${kv%%=*}: ${kv#*=}"; }; done
    } > "$cfg"
    local threads=${RETRIEVER_THREADS:-$(( 16 / retrievers ))}
    [[ $envset =~ (^|\+)RETRIEVER_THREADS=([0-9]+) ]] && threads=${BASH_REMATCH[2]}
    local kvd=""
    [[ $envset =~ (^|\+)KV_DTYPE=([a-z0-9/]+) ]] && kvd=${BASH_REMATCH[2]}
    local cmd=("$ra" generate --config "$cfg" --backend cuda --mode "$mode" --synthetic-prompt-bytes $(( ctx - 128 ))
               --retrievers "$retrievers" --retriever-threads "$threads"
               --max-new-tokens "${OFFLOAD_TOKENS:-64}" --ignore-eos --progress-every 500 ${ef:+--ef "$ef"}
               ${kvd:+--kv-dtype "$kvd"})
    [[ $pin == 0 ]] && cmd+=(--no-pin-retriever-threads)
    note "\$ ${cmd[*]}"
    (  # the run's own environment: local ranks inherit it from ra and mpirun
      [[ $idle == 1 ]] && export RA_MAINTENANCE_IDLE=1
      if [[ -n $envset ]]; then IFS=+ read -r -a vars <<< "$envset"; export "${vars[@]}"; fi
      bounded "${OFFLOAD_TIMEOUT:-280}" "${cmd[@]}"
    ) > "$log" 2>&1 &
    pid=$!
    sample_job "$pid" "$samples" &
    wait "$pid"
    note "offload $tag: exit $?"
    # -a: the log holds the generated bytes too; progress lines follow them on the same line.
    grep -a -o -E "(prompt tokens|prefill|decode|index build|retrieval:|keys scanned|per token:|peak host|stopped|progress|ra-cpu-retriever rank|.{0,40}rror).*" "$log" \
      | tail -48 >> "$summary"
    awk '$1 == "t" { if ($4 > g) g = $4 } $2 == "ra-gpu-worker" { if ($3 > w) w = $3 }
         $2 ~ /^ra-cpu-retriev/ { s[$1] = $3; if ($3 > r[$1]) r[$1] = $3; if (!($1 in t0)) t0[$1] = $4; t1[$1] = $4 }
         END { printf "peak GPU memory used %d MiB; worker peak RSS %.2f GiB; retrievers peak RSS GiB:", g, w / 1048576;
               for (p in r) printf " %.2f", r[p] / 1048576; printf "; retriever threads first/last sample:";
               for (p in t0) printf " %d/%d", t0[p], t1[p]; printf "\n" }' "$samples" | tee -a "$summary"
  done
}

IFS=, read -r -a order <<< "$stages"
for s in "${order[@]}"; do
  if (( $(left) < 20 )); then note "stage $s: skipped, deadline"; continue; fi
  t0=$(date +%s)
  "stage_$s" || { [[ $s == build ]] && break; }
  note "stage $s: $(( $(date +%s) - t0 )) s"
done

tar -czf "$out/logs.tgz" -C "$out" logs && rm -rf "$out/logs"
note "total $(( $(date +%s) - start )) s"
cat "$summary"
