#!/usr/bin/env bash
# The real ra-serve-inproc process, checked with curl: completions (plain and streamed), the error
# cases in OpenAI's shape (nothing else disturbed), prebuilt contexts (the same tokens as a cold
# prefill, and their prefill skipped: usage and /metrics), the queue (429 when full), cancellation when
# a client leaves (queued or decoding), /metrics, chat on a tiny Llama-3-style checkpoint, window mode's
# refusal of contexts, and a clean exit on SIGTERM.
#
#   SERVE=build/gpu_worker/serve/ra-serve-inproc MAKE_MODEL=build/tests/ra-serve-test-model \
#     bash tests/serve/serve_http_test.sh
set -euo pipefail
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
: "${SERVE:?set SERVE to ra-serve-inproc}" "${MAKE_MODEL:?set MAKE_MODEL to ra-serve-test-model}"
WORK=$(mktemp -d)
source "$here/serve_support.sh"
trap 'stop_servers; rm -rf "$WORK"' EXIT

# post URL PATH BODY NAME: POSTs BODY, the response to $WORK/NAME.json; prints the status.
post() {
  curl -s -o "$WORK/$4.json" -w '%{http_code}' -H 'Content-Type: application/json' -d "$3" "$1$2"
}
expect_error() {  # URL PATH BODY STATUS CODE [PARAM]
  local status
  status=$(post "$1" "$2" "$3" err)
  [[ $status == "$4" ]] || fail "$3 -> HTTP $status, expected $4: $(cat "$WORK/err.json")"
  [[ $(json "$WORK/err.json" "j['error']['code']") == "$5" ]] || fail "$3 -> $(cat "$WORK/err.json"), expected code $5"
  [[ $(json "$WORK/err.json" "j['error']['type']") == *_error ]] || fail "no OpenAI error type: $(cat "$WORK/err.json")"
  if (($# > 5)); then
    [[ $(json "$WORK/err.json" "j['error']['param']") == "$6" ]] || fail "$3 -> param $(json "$WORK/err.json" "j['error']['param']"), expected $6"
  fi
}

start_server demo --ctx 4096 --queue 1
url=$URL_demo
echo "demo model at $url"

# --- completions ---------------------------------------------------------------------------------
[[ $(curl -s "$url/v1/models" | python3 -c 'import json,sys; print(json.load(sys.stdin)["data"][0]["id"])') == demo ]] ||
  fail "/v1/models does not list demo"
req='{"model": "demo", "prompt": "The magic number is", "max_tokens": 8, "temperature": 0}'
[[ $(post "$url" /v1/completions "$req" plain) == 200 ]] || fail "completion: $(cat "$WORK/plain.json")"
text=$(json "$WORK/plain.json" "j['choices'][0]['text']")
[[ $(json "$WORK/plain.json" "j['object']") == text_completion ]] || fail "object"
[[ $(json "$WORK/plain.json" "j['choices'][0]['finish_reason']") == length ]] || fail "finish_reason"
[[ $(json "$WORK/plain.json" "j['usage']['completion_tokens']") == 8 ]] || fail "completion_tokens"
[[ $(json "$WORK/plain.json" "j['usage']['prompt_tokens']") == 20 ]] || fail "prompt_tokens (BOS + 19 bytes)"

# Streamed: SSE in OpenAI's shape, ending with [DONE]; the same text.
curl -s -N -D "$WORK/stream.headers" -o "$WORK/stream.txt" -H 'Content-Type: application/json' \
  -d '{"model": "demo", "prompt": "The magic number is", "max_tokens": 8, "temperature": 0, "stream": true, "stream_options": {"include_usage": true}}' \
  "$url/v1/completions"
grep -qi '^content-type: text/event-stream' "$WORK/stream.headers" || fail "stream content type"
python3 - "$WORK/stream.txt" "$text" << 'PY' || fail "stream: $(cat "$WORK/stream.txt")"
import json, sys
raw = open(sys.argv[1]).read()
assert raw.endswith("data: [DONE]\n\n"), "no [DONE] at the end"
events = [e for e in raw.split("\n\n") if e]
assert all(e.startswith("data: ") for e in events), "an event is not 'data: ...'"
chunks = [json.loads(e[6:]) for e in events[:-1]]
text = "".join(c["choices"][0]["text"] for c in chunks if c["choices"])
assert text == sys.argv[2], (text, sys.argv[2])
finish = [c["choices"][0]["finish_reason"] for c in chunks if c["choices"] and c["choices"][0]["finish_reason"]]
assert finish == ["length"], finish
assert chunks[-1]["choices"] == [] and chunks[-1]["usage"]["completion_tokens"] == 8, chunks[-1]
assert all(c["object"] == "text_completion" and c["id"] == chunks[0]["id"] for c in chunks)
PY

# Stop strings: the text ends before the first one.
stop=${text:3:2}
python3 -c 'import json,sys; print(json.dumps({"model": "demo", "prompt": "The magic number is", "max_tokens": 8, "temperature": 0, "stop": [sys.argv[1]]}))' "$stop" > "$WORK/stop.req"
[[ $(post "$url" /v1/completions "$(cat "$WORK/stop.req")" stop) == 200 ]] || fail "stop"
[[ $(json "$WORK/stop.json" "j['choices'][0]['text']") == "${text%%"$stop"*}" ]] || fail "stop string: $(cat "$WORK/stop.json")"
[[ $(json "$WORK/stop.json" "j['choices'][0]['finish_reason']") == stop ]] || fail "stop finish_reason"

# --- errors: OpenAI's shape and status, and nothing else disturbed -----------------------------------
expect_error "$url" /v1/completions '{"model": "demo", "prompt": ' 400 invalid_json
expect_error "$url" /v1/completions '{"model": "demo", "prompt": "x", "temperature": "hot"}' 400 invalid_type temperature
expect_error "$url" /v1/completions '{"model": "demo", "prompt": "x", "max_tokens": "8"}' 400 invalid_type max_tokens
expect_error "$url" /v1/completions '{"model": "demo", "prompt": "x", "top_p": 0}' 400 invalid_value top_p
expect_error "$url" /v1/completions '{"model": "demo", "prompt": "x", "stop": ["a", 1]}' 400 invalid_type stop
expect_error "$url" /v1/completions '{"model": "demo", "prompt": "x", "n": 2}' 400 unsupported_value n
expect_error "$url" /v1/completions '{"model": "gpt-4", "prompt": "x"}' 404 model_not_found model
expect_error "$url" /v1/completions '{"model": "demo", "prompt": [1, 2, 70000]}' 400 invalid_value prompt
expect_error "$url" /v1/completions '{"model": "demo", "prompt": "x", "context": "ctx-none"}' 404 context_not_found context
python3 -c 'import json; print(json.dumps({"model": "demo", "prompt": "x" * 5000}))' > "$WORK/long.req"
expect_error "$url" /v1/completions "$(cat "$WORK/long.req")" 400 context_length_exceeded prompt
expect_error "$url" /v1/chat/completions '{"model": "demo", "messages": [{"role": "user", "content": "hi"}]}' 400 no_chat_template messages
[[ $(curl -s -o "$WORK/nowhere.json" -w '%{http_code}' "$url/v1/nowhere") == 404 ]] || fail "unknown URL"
[[ $(json "$WORK/nowhere.json" "j['error']['type']") == invalid_request_error ]] || fail "unknown URL shape"
[[ $(post "$url" /v1/completions "$req" again) == 200 ]] || fail "after the errors"
[[ $(json "$WORK/again.json" "j['choices'][0]['text']") == "$text" ]] || fail "the errors disturbed the output"
[[ $(metric "$url" 'ra_requests_total{endpoint="completions",outcome="invalid"}') == 10.0 ]] ||
  fail "invalid requests counted $(metric "$url" 'ra_requests_total{endpoint="completions",outcome="invalid"}')"

# --- prebuilt contexts -------------------------------------------------------------------------------
python3 - "$WORK" << 'PY'
import json, sys
doc = "".join(f"Line {i}: the value of key {i} is {i * 7 % 1000}. " for i in range(40))
question = " Question: what is the value of key 3?"
open(sys.argv[1] + "/doc.txt", "w").write(doc)
open(sys.argv[1] + "/question.txt", "w").write(question)
req = {"model": "demo", "max_tokens": 12, "temperature": 0}
json.dump({**req, "prompt": doc + question}, open(sys.argv[1] + "/whole.req", "w"))
json.dump({"model": "demo", "prompt": doc}, open(sys.argv[1] + "/ctx.req", "w"))
PY
doc_tokens=$(($(wc -c < "$WORK/doc.txt") + 1))
question_tokens=$(wc -c < "$WORK/question.txt")
[[ $(post "$url" /v1/completions "$(cat "$WORK/whole.req")" cold) == 200 ]] || fail "cold: $(cat "$WORK/cold.json")"
cold=$(json "$WORK/cold.json" "j['choices'][0]['text']")
[[ $(json "$WORK/cold.json" "j['usage']['prompt_tokens_details']['cached_tokens']") == 0 ]] || fail "cold reused"
[[ $(post "$url" /v1/contexts "$(cat "$WORK/ctx.req")" ctx) == 200 ]] || fail "context: $(cat "$WORK/ctx.json")"
ctx=$(json "$WORK/ctx.json" "j['id']")
[[ $(json "$WORK/ctx.json" "j['tokens']") == "$doc_tokens" ]] || fail "context tokens"
prefilled0=$(metric "$url" ra_prompt_tokens_prefilled_total)
reused0=$(metric "$url" ra_prompt_tokens_reused_total)
python3 -c 'import json,sys; print(json.dumps({"model": "demo", "max_tokens": 12, "temperature": 0, "context": sys.argv[1], "prompt": open(sys.argv[2]).read()}))' \
  "$ctx" "$WORK/question.txt" > "$WORK/named.req"
[[ $(post "$url" /v1/completions "$(cat "$WORK/named.req")" named) == 200 ]] || fail "named: $(cat "$WORK/named.json")"
[[ $(json "$WORK/named.json" "j['choices'][0]['text']") == "$cold" ]] || fail "a reused context gave other tokens than a cold prefill"
[[ $(json "$WORK/named.json" "j['usage']['prompt_tokens_details']['cached_tokens']") == "$doc_tokens" ]] || fail "cached_tokens"
[[ $(json "$WORK/named.json" "j['timings']['prefilled_tokens']") == "$question_tokens" ]] || fail "prefilled_tokens"
python3 -c 'import sys; a, b, n = map(float, sys.argv[1:]); sys.exit(0 if b - a == n else 1)' \
  "$prefilled0" "$(metric "$url" ra_prompt_tokens_prefilled_total)" "$question_tokens" ||
  fail "the document was prefilled again (ra_prompt_tokens_prefilled_total)"
python3 -c 'import sys; a, b, n = map(float, sys.argv[1:]); sys.exit(0 if b - a == n else 1)' \
  "$reused0" "$(metric "$url" ra_prompt_tokens_reused_total)" "$doc_tokens" || fail "ra_prompt_tokens_reused_total"
# A prompt that starts with the document reuses it too.
[[ $(post "$url" /v1/completions "$(cat "$WORK/whole.req")" prefix) == 200 ]] || fail "prefix"
[[ $(json "$WORK/prefix.json" "j['choices'][0]['text']") == "$cold" ]] || fail "prefix reuse gave other tokens"
[[ $(json "$WORK/prefix.json" "j['usage']['prompt_tokens_details']['cached_tokens']") == "$doc_tokens" ]] || fail "prefix cached"
[[ $(curl -s "$url/v1/contexts" | python3 -c 'import json,sys; print(len(json.load(sys.stdin)["data"]))') == 1 ]] || fail "list"
[[ $(curl -s -o /dev/null -w '%{http_code}' -X DELETE "$url/v1/contexts/$ctx") == 200 ]] || fail "delete"
[[ $(curl -s -o /dev/null -w '%{http_code}' "$url/v1/contexts/$ctx") == 404 ]] || fail "deleted context still there"

# --- the queue: 429 when full; a client that leaves is cancelled, queued or decoding -----------------
long='{"model": "demo", "prompt": "Count:", "max_tokens": 4000, "temperature": 0, "stream": true}'
cancelled0=$(metric "$url" 'ra_requests_total{endpoint="completions",outcome="cancelled"}')
curl -s -N -o /dev/null -H 'Content-Type: application/json' -d "$long" "$url/v1/completions" &
running_curl=$!
until_true 30 metric_is "$url" ra_requests_running 1
curl -s -N -o /dev/null -H 'Content-Type: application/json' -d "$long" "$url/v1/completions" &
queued_curl=$!
until_true 30 metric_is "$url" ra_queue_depth 1
status=$(curl -s -D "$WORK/busy.headers" -o "$WORK/busy.json" -w '%{http_code}' -H 'Content-Type: application/json' -d "$long" "$url/v1/completions")
[[ $status == 429 ]] || fail "a full queue answered $status"
[[ $(json "$WORK/busy.json" "j['error']['type']") == rate_limit_error ]] || fail "429 shape: $(cat "$WORK/busy.json")"
grep -qi '^retry-after: 1' "$WORK/busy.headers" || fail "no Retry-After"
[[ $(curl -s -o /dev/null -w '%{http_code}' "$url/health") == 200 ]] || fail "health while busy"
kill "$queued_curl"
wait "$queued_curl" 2> /dev/null || true
until_true 10 metric_is "$url" ra_queue_depth 0
until_true 10 metric_is "$url" 'ra_requests_total{endpoint="completions",outcome="cancelled"}' "$(python3 -c "print($cancelled0 + 1)")"
kill "$running_curl"
wait "$running_curl" 2> /dev/null || true
until_true 10 metric_is "$url" ra_requests_running 0
until_true 10 metric_is "$url" 'ra_requests_total{endpoint="completions",outcome="cancelled"}' "$(python3 -c "print($cancelled0 + 2)")"
generated=$(metric "$url" ra_generated_tokens_total)
sleep 0.3
[[ $(metric "$url" ra_generated_tokens_total) == "$generated" ]] || fail "tokens still generated after the client left"
[[ $(post "$url" /v1/completions "$req" after) == 200 ]] || fail "after the cancellations"

# --- /metrics ----------------------------------------------------------------------------------------
curl -s -D "$WORK/metrics.headers" -o "$WORK/metrics.txt" "$url/metrics"
grep -qi '^content-type: text/plain' "$WORK/metrics.headers" || fail "metrics content type"
for family in ra_requests_total ra_prompt_tokens_total ra_prompt_tokens_prefilled_total ra_prompt_tokens_reused_total \
  ra_generated_tokens_total ra_time_to_first_token_seconds ra_token_latency_seconds ra_prefill_seconds \
  ra_queue_depth ra_requests_running ra_engine_ready; do
  grep -q "^# TYPE $family " "$WORK/metrics.txt" || fail "/metrics has no $family"
done
grep -q '^ra_token_latency_seconds_bucket{le="0.001"}' "$WORK/metrics.txt" || fail "no latency buckets"
python3 -c 'import sys; sys.exit(0 if float(sys.argv[1]) >= 5 else 1)' \
  "$(metric "$url" ra_time_to_first_token_seconds_count)" || fail "time to first token not observed"

# --- chat on a tiny Llama-3-style checkpoint ----------------------------------------------------------
"$MAKE_MODEL" "$WORK/chat-model"
start_server chat --model "$WORK/chat-model" --queue 2
chat_url=$URL_chat
creq='{"model": "chat-model", "messages": [{"role": "user", "content": "Hi"}], "max_tokens": 6, "temperature": 0}'
[[ $(post "$chat_url" /v1/chat/completions "$creq" chat) == 200 ]] || fail "chat: $(cat "$WORK/chat.json")"
[[ $(json "$WORK/chat.json" "j['object']") == chat.completion ]] || fail "chat object"
[[ $(json "$WORK/chat.json" "j['choices'][0]['message']['role']") == assistant ]] || fail "chat role"
[[ $(json "$WORK/chat.json" "j['usage']['prompt_tokens']") == 25 ]] || fail "the Llama-3 template's tokens"
[[ $(json "$WORK/chat.json" "j['usage']['completion_tokens']") == 6 ]] || fail "chat completion_tokens"
expect_error "$chat_url" /v1/chat/completions '{"model": "chat-model", "messages": [{"role": "wizard", "content": "x"}]}' 400 invalid_value 'messages[0].role'
expect_error "$chat_url" /v1/chat/completions '{"model": "chat-model", "messages": []}' 400 invalid_value messages
# A context made of the conversation's first message serves the conversation.
sys_msg='{"role": "system", "content": "You answer questions about the numbers 1 to 50, one per line."}'
[[ $(post "$chat_url" /v1/contexts "{\"messages\": [$sys_msg]}" chatctx) == 200 ]] || fail "chat context: $(cat "$WORK/chatctx.json")"
chat_ctx=$(json "$WORK/chatctx.json" "j['id']")
conv="{\"model\": \"chat-model\", \"max_tokens\": 6, \"temperature\": 0, \"messages\": [$sys_msg, {\"role\": \"user\", \"content\": \"Seven?\"}]"
[[ $(post "$chat_url" /v1/chat/completions "$conv}" chatcold) == 200 ]] || fail "chat cold"
[[ $(post "$chat_url" /v1/chat/completions "$conv, \"context\": \"$chat_ctx\"}" chatwarm) == 200 ]] || fail "chat warm: $(cat "$WORK/chatwarm.json")"
[[ $(json "$WORK/chatwarm.json" "j['usage']['prompt_tokens_details']['cached_tokens']") == $(json "$WORK/chatctx.json" "j['tokens']") ]] ||
  fail "chat context not reused"
[[ $(json "$WORK/chatwarm.json" "j['choices'][0]['message']['content']") == "$(json "$WORK/chatcold.json" "j['choices'][0]['message']['content']")" ]] ||
  fail "chat context reuse changed the reply"
expect_error "$chat_url" /v1/chat/completions "{\"model\": \"chat-model\", \"context\": \"$chat_ctx\", \"messages\": [{\"role\": \"user\", \"content\": \"x\"}]}" 400 context_mismatch context

# --- window mode cannot reuse contexts, and says so ------------------------------------------------
start_server window --ctx 2048 --mode window --sinks 16 --window 64
expect_error "$URL_window" /v1/contexts '{"prompt": "a document"}' 501 not_supported
[[ $(post "$URL_window" /v1/completions "$req" windowed) == 200 ]] || fail "window mode completion"

# --- SIGTERM ends the server cleanly ------------------------------------------------------------------
kill -TERM "$PID_demo"
deadline=$((SECONDS + 10))
while kill -0 "$PID_demo" 2> /dev/null; do
  ((SECONDS < deadline)) || fail "the server did not exit within 10 s of SIGTERM"
  sleep 0.05
done
wait "$PID_demo" || fail "the server exited with $? on SIGTERM"
echo "serve_http_test: all checks passed"
