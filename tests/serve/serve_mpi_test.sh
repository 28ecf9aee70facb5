#!/usr/bin/env bash
# `ra serve` as users run it: the mpirun job of `ra generate` (a worker rank serving HTTP, real
# ra-cpu-retriever ranks over shared memory), checked from outside.
#
#   serve_mpi_test.sh api        the tiny Llama-3-style checkpoint in flat mode with 2 retrievers:
#                                OpenAI's npm client (completions, chat, both streamed, a cancelled
#                                stream, typed errors; skipped with a note without node/npm/registry);
#                                curl error cases and /metrics (the retrieval families included); a
#                                reused context gives the tokens of a cold prefill of the same prompt and
#                                skips its prefill (usage and /metrics), also after another prompt
#                                replaced it (rebuilt), also sampled
#   serve_mpi_test.sh killed     a retriever SIGKILLed under an in-flight request: 503 naming the
#                                retriever within 5 s, /health 503, `ra serve` exits non-zero, nothing left
#                                (processes, /dev/shm); and a retriever killed while idle turns /health 503
#   serve_mpi_test.sh restarted  `ra serve --restart 1`: a retriever killed, the job starts again on the
#                                same port and answers; killed again, the server exits non-zero
#   serve_mpi_test.sh saved      `ra prefill --save` then `ra serve --load`: the retrievers restore their
#                                shard files (no index rebuilt); the context is listed, reused
#                                without a prefill on the new server, with the tokens of a cold prefill;
#                                a corrupt file and a mismatched config are refused naming file and field
#   serve_mpi_test.sh needle     needle-byte-13m in retrieval mode (skips, 77, when the model is absent): a
#                                2K-token needle document as a context answers its question, as cold does
#
# Environment: RA (the ra binary; ra-gpu-worker and ra-cpu-retriever beside it), MAKE_MODEL
# (ra-serve-test-model), CACHE (a build-tree folder for the npm client), MODELS (../shared/models),
# RA_SERVE_BACKEND (the worker's --backend: cpu, cuda; default auto).
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
: "${RA:?set RA to the ra binary}" "${MAKE_MODEL:?set MAKE_MODEL to ra-serve-test-model}"
BIN_DIR=$(cd "$(dirname "$RA")" && pwd)
WORK=$(mktemp -d /tmp/ra-serve-mpi.XXXXXX)
export TMPDIR=$WORK  # the job's plan file lands here, so this test's processes are findable by path
declare -a RA_PIDS=()
cleanup() {
  local pid
  for pid in "${RA_PIDS[@]}"; do kill -TERM "$pid" 2> /dev/null || true; done
  sleep 0.3
  pkill -KILL -f "$WORK" 2> /dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
fail() {
  echo "FAIL: $*" >&2
  for log in "$WORK"/*.log; do [[ -f $log ]] && { echo "--- $log" >&2; tail -n 30 "$log" >&2; }; done
  exit 1
}
shm_segments() { ls /dev/shm 2> /dev/null | grep '^ra-' | grep -v '^ra-shmtest-' | sort || true; }  # not shm_channel_test's
json() {
  python3 -c 'import json, sys; j = json.load(open(sys.argv[1])); v = eval(sys.argv[2]); print(json.dumps(v) if isinstance(v, (dict, list)) else v)' "$1" "$2"
}
metric() {  # URL SAMPLE: the value of one /metrics sample (0 when absent)
  curl -s "$1/metrics" | python3 -c 'import sys
for line in sys.stdin:
    name, _, value = line.rstrip("\n").rpartition(" ")
    if name == sys.argv[1]:
        print(float(value)); break
else:
    print(0.0)' "$2"
}
post() {  # URL PATH BODY NAME: the response to $WORK/NAME.json; prints the status
  curl -s -m 120 -o "$WORK/$4.json" -w '%{http_code}' -H 'Content-Type: application/json' -d "$3" "$1$2"
}
expect_error() {  # URL PATH BODY STATUS CODE
  local status
  status=$(post "$1" "$2" "$3" err)
  [[ $status == "$4" ]] || fail "$3 -> HTTP $status, expected $4: $(cat "$WORK/err.json")"
  [[ $(json "$WORK/err.json" "j['error']['code']") == "$5" ]] || fail "$3 -> $(cat "$WORK/err.json"), expected code $5"
}
text_of() { json "$WORK/$1.json" "j['choices'][0]['text']"; }
cached_of() { json "$WORK/$1.json" "j['usage']['prompt_tokens_details']['cached_tokens']"; }

# start NAME ARGS...: `ra serve ARGS` on a free port (or $PORT) in the background; sets URL and PID once
# /health is 200.
start() {
  local name=$1
  shift
  rm -f "$WORK/$name.port"
  "$RA" serve --port "${PORT:-0}" --port-file "$WORK/$name.port" --threads 1 --retriever-threads 1 --quiet "$@" \
    > "$WORK/$name.out" 2> "$WORK/$name.log" &
  PID=$!
  RA_PIDS+=("$PID")
  local deadline=$((SECONDS + 90))
  until [[ -s $WORK/$name.port ]]; do
    kill -0 "$PID" 2> /dev/null || fail "ra serve ($name) exited before listening"
    ((SECONDS < deadline)) || fail "ra serve ($name) did not listen within 90 s"
    sleep 0.05
  done
  URL="http://127.0.0.1:$(cat "$WORK/$name.port")"
  until [[ $(curl -s -o /dev/null -w '%{http_code}' "$URL/health") == 200 ]]; do
    kill -0 "$PID" 2> /dev/null || fail "ra serve ($name) exited while loading"
    ((SECONDS < deadline)) || fail "ra serve ($name) was not healthy within 90 s"
    sleep 0.05
  done
}
# stop PID: SIGTERM, and the job is gone within 10 s.
stop() {
  kill -TERM "$1" 2> /dev/null || true
  local deadline=$((SECONDS + 10))
  while kill -0 "$1" 2> /dev/null; do
    ((SECONDS < deadline)) || fail "ra serve did not end within 10 s of SIGTERM"
    sleep 0.05
  done
  wait "$1" 2> /dev/null || true
}

"$MAKE_MODEL" "$WORK/tiny-llama3"
MODEL_ARGS=(--model "$WORK/tiny-llama3" --sinks 16 --window 32 --ctx 4096)
# RA_SERVE_BACKEND=cuda: the worker rank on the GPU (scripts/device_gpu.sh, stage serve); else `auto`.
[[ -n ${RA_SERVE_BACKEND:-} ]] && MODEL_ARGS+=(--backend "$RA_SERVE_BACKEND")
# A document far longer than sinks + window (most of it lives on the retrievers), and questions on it.
python3 - "$WORK" << 'PY'
import json, sys
w = sys.argv[1]
doc = "".join(f"Line {i}: the value of key {i} is {i * 7 % 1000}. " for i in range(24))
open(w + "/doc.txt", "w").write(doc)
question = " Question: what is the value of key 3?"
base = {"model": "tiny-llama3", "max_tokens": 24, "temperature": 0}
json.dump({**base, "prompt": doc + question}, open(w + "/cold.req", "w"))
json.dump({**base, "temperature": 0.9, "seed": 5, "prompt": doc + question}, open(w + "/cold_sampled.req", "w"))
json.dump({"model": "tiny-llama3", "prompt": doc}, open(w + "/ctx.req", "w"))
json.dump({**base, "prompt": question}, open(w + "/question.req", "w"))
json.dump({**base, "temperature": 0.9, "seed": 5, "prompt": question}, open(w + "/question_sampled.req", "w"))
json.dump({**base, "max_tokens": 4, "prompt": "Something else entirely."}, open(w + "/other.req", "w"))
PY
DOC_TOKENS=$(($(wc -c < "$WORK/doc.txt") + 1))  # BOS + one token per byte
QUESTION_TOKENS=38

with_context() {  # REQ_FILE CONTEXT_ID: the request naming the context
  python3 -c 'import json, sys; r = json.load(open(sys.argv[1])); r["context"] = sys.argv[2]; print(json.dumps(r))' "$1" "$2"
}

case "${1:?usage: $0 api|killed|restarted|saved|needle}" in
api)
  start api "${MODEL_ARGS[@]}" --mode flat --retrievers 2 --top-k 100000 --queue 2
  url=$URL
  if bash "$here/prepare.sh" "${CACHE:?set CACHE}" > "$WORK/npm.txt"; then
    timeout 120 node "$CACHE/openai_client_test.mjs" "$url" tiny-llama3 || fail "OpenAI's client against ra serve"
  else
    echo "note: the npm client part was skipped: $(cat "$WORK/npm.txt")"
  fi
  # Errors in OpenAI's shape, and nothing else disturbed.
  expect_error "$url" /v1/completions '{"model": "tiny-llama3", "prompt": ' 400 invalid_json
  expect_error "$url" /v1/completions '{"model": "tiny-llama3", "prompt": "x", "max_tokens": "8"}' 400 invalid_type
  expect_error "$url" /v1/completions '{"model": "tiny-llama3", "prompt": "x", "temperature": 7}' 400 invalid_value
  expect_error "$url" /v1/completions '{"model": "nope", "prompt": "x"}' 404 model_not_found
  expect_error "$url" /v1/completions '{"model": "tiny-llama3", "prompt": "x", "context": "ctx-none"}' 404 context_not_found
  python3 -c 'import json; print(json.dumps({"model": "tiny-llama3", "prompt": "x" * 5000}))' > "$WORK/long.req"
  expect_error "$url" /v1/completions "$(cat "$WORK/long.req")" 400 context_length_exceeded
  expect_error "$url" /v1/chat/completions '{"model": "tiny-llama3", "messages": [{"role": "tool", "content": "x"}]}' 400 unsupported_value
  [[ $(curl -s -o /dev/null -w '%{http_code}' "$url/v1/nowhere") == 404 ]] || fail "unknown URL"

  # Cold first (no context registered yet), then the context, then the same prompt on it.
  [[ $(post "$url" /v1/completions "$(cat "$WORK/cold.req")" cold) == 200 ]] || fail "cold: $(cat "$WORK/cold.json")"
  [[ $(post "$url" /v1/completions "$(cat "$WORK/cold_sampled.req")" cold_sampled) == 200 ]] || fail "cold sampled"
  [[ $(cached_of cold) == 0 ]] || fail "the cold request reused $(cached_of cold) tokens"
  [[ $(post "$url" /v1/contexts "$(cat "$WORK/ctx.req")" ctx) == 200 ]] || fail "context: $(cat "$WORK/ctx.json")"
  ctx=$(json "$WORK/ctx.json" "j['id']")
  [[ $(json "$WORK/ctx.json" "j['tokens']") == "$DOC_TOKENS" ]] || fail "context tokens"
  prefilled0=$(metric "$url" ra_prompt_tokens_prefilled_total)
  [[ $(post "$url" /v1/completions "$(with_context "$WORK/question.req" "$ctx")" warm) == 200 ]] || fail "warm: $(cat "$WORK/warm.json")"
  [[ $(text_of warm) == "$(text_of cold)" ]] || fail "a reused context gave '$(text_of warm)', a cold prefill '$(text_of cold)'"
  [[ $(cached_of warm) == "$DOC_TOKENS" ]] || fail "cached_tokens $(cached_of warm), expected $DOC_TOKENS"
  [[ $(json "$WORK/warm.json" "j['timings']['prefilled_tokens']") == "$QUESTION_TOKENS" ]] || fail "prefilled_tokens"
  python3 -c 'import sys; a, b, n = map(float, sys.argv[1:]); sys.exit(0 if b - a == n else 1)' \
    "$prefilled0" "$(metric "$url" ra_prompt_tokens_prefilled_total)" "$QUESTION_TOKENS" ||
    fail "the document was prefilled again (ra_prompt_tokens_prefilled_total)"
  # Sampled with a seed: the same draws.
  [[ $(post "$url" /v1/completions "$(with_context "$WORK/question_sampled.req" "$ctx")" warm_sampled) == 200 ]] || fail "warm sampled"
  [[ $(text_of warm_sampled) == "$(text_of cold_sampled)" ]] || fail "sampled: reused '$(text_of warm_sampled)', cold '$(text_of cold_sampled)'"
  # Another prompt replaces the retrievers' shards; the context is then prefilled again, with the same result.
  [[ $(post "$url" /v1/completions "$(cat "$WORK/other.req")" other) == 200 ]] || fail "other"
  [[ $(post "$url" /v1/completions "$(with_context "$WORK/question.req" "$ctx")" rebuilt) == 200 ]] || fail "rebuilt"
  [[ $(cached_of rebuilt) == 0 && $(text_of rebuilt) == "$(text_of cold)" ]] ||
    fail "after another prompt the context gave '$(text_of rebuilt)' with $(cached_of rebuilt) cached tokens"
  # A prompt that starts with the document reuses it without naming it.
  [[ $(post "$url" /v1/completions "$(cat "$WORK/cold.req")" prefix) == 200 ]] || fail "prefix"
  [[ $(cached_of prefix) -ge $DOC_TOKENS && $(text_of prefix) == "$(text_of cold)" ]] || fail "prefix reuse"

  # /metrics: every family, the retrieval ones counting.
  curl -s "$url/metrics" > "$WORK/metrics.txt"
  for family in ra_requests_total ra_prompt_tokens_total ra_prompt_tokens_prefilled_total ra_prompt_tokens_reused_total \
    ra_generated_tokens_total ra_time_to_first_token_seconds ra_token_latency_seconds ra_prefill_seconds \
    ra_queue_depth ra_requests_running ra_engine_ready ra_keys_scanned_total ra_retriever_round_trip_seconds; do
    grep -q "^# TYPE $family " "$WORK/metrics.txt" || fail "/metrics has no $family"
  done
  python3 -c 'import sys; sys.exit(0 if float(sys.argv[1]) > 0 and float(sys.argv[2]) > 0 else 1)' \
    "$(metric "$url" ra_keys_scanned_total)" "$(metric "$url" ra_retriever_round_trip_seconds_count)" ||
    fail "the retrievers' keys scanned / round trips were not counted"
  [[ $(metric "$url" ra_engine_ready) == 1.0 ]] || fail "ra_engine_ready"
  stop "$PID"
  echo "PASS: ra serve api (flat, 2 retrievers)"
  ;;

killed)
  before=$(shm_segments)
  start killed --mode flat --retrievers 2 --sinks 16 --window 32 --ctx 8192
  url=$URL
  rm -f "$WORK/inflight.code"
  (curl -s -m 60 -o "$WORK/inflight.json" -w '%{http_code}' -H 'Content-Type: application/json' \
    -d '{"model": "demo", "prompt": "Count:", "max_tokens": 8000, "temperature": 0}' "$url/v1/completions" \
    > "$WORK/inflight.code.tmp"; date +%s.%N > "$WORK/inflight.time"; mv "$WORK/inflight.code.tmp" "$WORK/inflight.code") &
  deadline=$((SECONDS + 30))
  until [[ $(metric "$url" ra_requests_running) == 1.0 && $(metric "$url" ra_generated_tokens_total) != 0.0 ]]; do
    ((SECONDS < deadline)) || fail "the request did not start decoding"
    sleep 0.05
  done
  victim=$(pgrep -f "^$BIN_DIR/ra-cpu-retriever --plan $WORK" | head -1 || true)
  [[ -n $victim ]] || fail "no retriever process found"
  t0=$(date +%s.%N)
  kill -KILL "$victim"
  health=""
  for _ in $(seq 1 100); do
    [[ -f $WORK/inflight.code && -n $health ]] && break
    [[ -z $health && $(curl -s -m 1 -o /dev/null -w '%{http_code}' "$url/health") == 503 ]] && health=503
    sleep 0.02
  done
  [[ -f $WORK/inflight.code ]] || fail "the in-flight request had no answer 5 s after the retriever died"
  elapsed=$(python3 -c "print(f'{$(cat "$WORK/inflight.time") - $t0:.3f}')")
  python3 -c "import sys; sys.exit(0 if $elapsed < 5 else 1)" || fail "the in-flight request took $elapsed s to fail"
  [[ $(cat "$WORK/inflight.code") == 503 ]] || fail "the in-flight request got HTTP $(cat "$WORK/inflight.code"): $(cat "$WORK/inflight.json")"
  [[ $(json "$WORK/inflight.json" "j['error']['code']") == engine_failed ]] || fail "error code: $(cat "$WORK/inflight.json")"
  grep -Eq "retriever rank [0-9]+ on host .*pid $victim" "$WORK/inflight.json" ||
    fail "the 503 does not name the dead retriever (pid $victim): $(cat "$WORK/inflight.json")"
  [[ $health == 503 ]] || fail "/health did not answer 503 after the retriever died"
  rc=0
  for _ in $(seq 1 200); do kill -0 "$PID" 2> /dev/null || break; sleep 0.05; done
  kill -0 "$PID" 2> /dev/null && fail "ra serve still runs 10 s after its retriever died"
  wait "$PID" || rc=$?
  ((rc != 0)) || fail "ra serve exited 0 after its retriever died"
  sleep 0.5
  pgrep -f "$WORK" > /dev/null && { pgrep -af "$WORK" >&2; fail "processes of the job are still alive"; }
  [[ $before == "$(shm_segments)" ]] || fail "shared-memory segments left behind"
  echo "in flight: 503 after ${elapsed} s: $(json "$WORK/inflight.json" "j['error']['message']"); ra serve exit $rc"

  # Idle: no request runs; /health notices by itself.
  start idle --mode flat --retrievers 1 --sinks 16 --window 32 --ctx 2048
  url=$URL
  victim=$(pgrep -f "^$BIN_DIR/ra-cpu-retriever --plan $WORK" | head -1 || true)
  [[ -n $victim ]] || fail "no retriever process found"
  kill -KILL "$victim"
  health=""
  for _ in $(seq 1 40); do
    code=$(curl -s -m 1 -o "$WORK/health.json" -w '%{http_code}' "$url/health" || true)
    [[ $code == 503 ]] && { health=503; break; }
    sleep 0.025
  done
  # (the job may already be gone: mpirun ends it about 1 s after a rank dies)
  [[ $health == 503 ]] && grep -q "retriever rank" "$WORK/health.json" || echo "note: idle /health: ${code:-none}"
  for _ in $(seq 1 200); do kill -0 "$PID" 2> /dev/null || break; sleep 0.05; done
  kill -0 "$PID" 2> /dev/null && fail "ra serve still runs 10 s after an idle retriever died"
  rc=0; wait "$PID" || rc=$?
  ((rc != 0)) || fail "ra serve exited 0 after an idle retriever died"
  echo "PASS: a dead retriever fails the request in flight with 503 and ends the server"
  ;;

restarted)
  before=$(shm_segments)
  PORT=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
  start restarted "${MODEL_ARGS[@]}" --mode flat --retrievers 1 --restart 1
  url=$URL
  [[ $(post "$url" /v1/completions "$(cat "$WORK/cold.req")" before) == 200 ]] || fail "before: $(cat "$WORK/before.json")"
  for round in 1 2; do
    victim=$(pgrep -f "^$BIN_DIR/ra-cpu-retriever --plan $WORK" | head -1 || true)
    [[ -n $victim ]] || fail "round $round: no retriever process found"
    kill -KILL "$victim"
    if ((round == 1)); then  # the job ends, starts again on the same port, and answers as before
      deadline=$((SECONDS + 60))
      until grep -q "starting it again (restart 1 of 1)" "$WORK/restarted.log" &&
        [[ $(curl -s -m 1 -o /dev/null -w '%{http_code}' "$url/health") == 200 ]]; do
        kill -0 "$PID" 2> /dev/null || fail "ra serve exited instead of restarting the job"
        ((SECONDS < deadline)) || fail "the job was not serving again within 60 s"
        sleep 0.1
      done
      [[ $(post "$url" /v1/completions "$(cat "$WORK/cold.req")" after) == 200 ]] || fail "after: $(cat "$WORK/after.json")"
      [[ $(text_of after) == "$(text_of before)" ]] || fail "the restarted job answers otherwise: '$(text_of after)'"
    fi
  done
  for _ in $(seq 1 300); do kill -0 "$PID" 2> /dev/null || break; sleep 0.05; done
  kill -0 "$PID" 2> /dev/null && fail "ra serve still runs 15 s after its last restart failed"
  rc=0; wait "$PID" || rc=$?
  ((rc != 0)) || fail "ra serve exited 0 with no restarts left"
  sleep 0.5
  pgrep -f "$WORK" > /dev/null && { pgrep -af "$WORK" >&2; fail "processes of the job are still alive"; }
  [[ $before == "$(shm_segments)" ]] || fail "shared-memory segments left behind"
  echo "PASS: the failed job started again on port $PORT and answered the same; the second failure ended ra serve ($rc)"
  ;;

saved)
  # The reference: a cold prefill of document + question on a server without saves.
  start ref "${MODEL_ARGS[@]}" --mode flat --retrievers 2 --top-k 100000
  [[ $(post "$URL" /v1/completions "$(cat "$WORK/cold.req")" cold) == 200 ]] || fail "cold: $(cat "$WORK/cold.json")"
  stop "$PID"
  "$RA" prefill "${MODEL_ARGS[@]}" --mode flat --retrievers 2 --top-k 100000 --threads 1 --retriever-threads 1 \
    --prompt-file "$WORK/doc.txt" --save "$WORK/ctx" > "$WORK/prefill.log" 2>&1 || fail "ra prefill: $(tail -5 "$WORK/prefill.log")"
  for f in manifest.json worker-kv.bin logits.bin layer-000.bin layer-001.bin retriever-000.shards retriever-001.shards; do
    [[ -s $WORK/ctx/$f ]] || fail "ra prefill wrote no $f"
  done
  start loaded "${MODEL_ARGS[@]}" --mode flat --retrievers 2 --top-k 100000 --load "$WORK/ctx"
  # The retriever ranks restored their own shard files: no index was built again.
  grep -q "restored their saved shards and indexes .*none rebuilt" "$WORK/loaded.log" ||
    fail "the retrievers did not restore their saved shards: $(grep -a "loaded the context" "$WORK/loaded.log")"
  curl -s "$URL/v1/contexts" > "$WORK/list.json"
  [[ $(json "$WORK/list.json" "len(j['data'])") == 1 && $(json "$WORK/list.json" "j['data'][0]['tokens']") == "$DOC_TOKENS" ]] ||
    fail "the loaded context is not listed: $(cat "$WORK/list.json")"
  ctx=$(json "$WORK/list.json" "j['data'][0]['id']")
  [[ $(post "$URL" /v1/completions "$(with_context "$WORK/question.req" "$ctx")" loaded) == 200 ]] || fail "loaded: $(cat "$WORK/loaded.json")"
  [[ $(cached_of loaded) == "$DOC_TOKENS" ]] || fail "the loaded context was not reused ($(cached_of loaded) cached)"
  [[ $(metric "$URL" ra_prompt_tokens_prefilled_total) == "$QUESTION_TOKENS.0" ]] ||
    fail "the server prefilled $(metric "$URL" ra_prompt_tokens_prefilled_total) tokens, expected only the question's $QUESTION_TOKENS"
  [[ $(text_of loaded) == "$(text_of cold)" ]] || fail "the loaded context gave '$(text_of loaded)', a cold prefill '$(text_of cold)'"
  stop "$PID"
  # Refusals: `ra serve` exits non-zero, naming the file and the field.
  refused() {  # WHAT PATTERN ARGS...: ra serve ARGS must fail with PATTERN in its output
    local what=$1 pattern=$2
    shift 2
    rm -f "$WORK/refused.port"
    rc=0
    timeout 60 "$RA" serve --port 0 --port-file "$WORK/refused.port" --threads 1 --retriever-threads 1 "$@" \
      > "$WORK/refused.log" 2>&1 || rc=$?
    ((rc != 0 && rc != 124)) || fail "$what: ra serve exited $rc"
    grep -Eq "$pattern" "$WORK/refused.log" || fail "$what: no '$pattern' in: $(cat "$WORK/refused.log")"
    echo "refused ($what): $(grep -Eo "$pattern.*" "$WORK/refused.log" | head -1)"
  }
  refused "another window" "manifest.json: field 'identity.window' is 32 in the save, but this server has 48" \
    --model "$WORK/tiny-llama3" --sinks 16 --window 48 --ctx 4096 --mode flat --retrievers 2 --load "$WORK/ctx"
  refused "another mode" "field 'identity.mode' is 'flat' in the save, but this server runs mode 'retrieval'" \
    "${MODEL_ARGS[@]}" --mode retrieval --retrievers 2 --load "$WORK/ctx"
  cp -r "$WORK/ctx" "$WORK/bad"
  python3 -c 'import sys; f = open(sys.argv[1], "r+b"); f.seek(300); b = f.read(1); f.seek(300); f.write(bytes([b[0] ^ 0x40]))' \
    "$WORK/bad/layer-001.bin"
  # One retriever: another shard plan, so the layer files are shipped and rebuilt (and checked).
  refused "a corrupt layer" "layer-001.bin: checksum [0-9a-f]+ does not match .*fnv1a64.*corrupt" \
    "${MODEL_ARGS[@]}" --mode flat --retrievers 1 --load "$WORK/bad"
  cp "$WORK/ctx/layer-001.bin" "$WORK/bad/layer-001.bin"
  python3 -c 'import sys; f = open(sys.argv[1], "r+b"); f.seek(300); b = f.read(1); f.seek(300); f.write(bytes([b[0] ^ 0x40]))' \
    "$WORK/bad/retriever-001.shards"
  refused "a corrupt retriever shard file" "retriever-001.shards: checksum [0-9a-f]+ does not match the manifest.*corrupt" \
    "${MODEL_ARGS[@]}" --mode flat --retrievers 2 --load "$WORK/bad"
  echo "PASS: a saved context loads without a prefill, bad saves are refused"
  ;;

needle)
  model=${MODELS:-}/needle-byte-13m
  [[ -f $model/config.json ]] || { echo "SKIP: no needle-byte-13m under '${MODELS:-}'"; exit 77; }
  "$RA" needle-prompt --tokens 2048 --facts 2 --seed 3 --out "$WORK/needle.txt" > "$WORK/answer.txt"
  answer=$(head -1 "$WORK/answer.txt")
  python3 - "$WORK" << 'PY'
import json, sys
w = sys.argv[1]
text = open(w + "/needle.txt").read()
cut = text.rindex("What is")
base = {"model": "needle-byte-13m", "max_tokens": 10, "temperature": 0}
json.dump({**base, "prompt": text}, open(w + "/ncold.req", "w"))
json.dump({"model": "needle-byte-13m", "prompt": text[:cut]}, open(w + "/nctx.req", "w"))
json.dump({**base, "prompt": text[cut:]}, open(w + "/nq.req", "w"))
PY
  start needle --model "$model" --mode retrieval --retrievers 2 --ctx 4096
  [[ $(post "$URL" /v1/completions "$(cat "$WORK/ncold.req")" ncold) == 200 ]] || fail "needle cold: $(cat "$WORK/ncold.json")"
  [[ $(post "$URL" /v1/contexts "$(cat "$WORK/nctx.req")" nctx) == 200 ]] || fail "needle context"
  [[ $(post "$URL" /v1/completions "$(with_context "$WORK/nq.req" "$(json "$WORK/nctx.json" "j['id']")")" nwarm) == 200 ]] || fail "needle warm"
  echo "answer $answer; cold '$(text_of ncold)'; reused ($(cached_of nwarm) cached) '$(text_of nwarm)'"
  [[ $(text_of ncold) == "$answer"* ]] || fail "cold did not answer $answer"
  [[ $(text_of nwarm) == "$answer"* ]] || fail "the reused context did not answer $answer"
  [[ $(cached_of nwarm) -gt 1900 ]] || fail "the needle context was not reused"
  stop "$PID"
  echo "PASS: needle-byte-13m in retrieval mode answers from a reused context"
  ;;
*)
  fail "unknown part $1"
  ;;
esac
