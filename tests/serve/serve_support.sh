# Shared by the serve integration tests (sourced): start ra-serve-inproc on a free port, wait for it,
# read JSON and metrics. Every wait has a deadline. Needs SERVE (the executable) and WORK (a folder).

declare -a SERVE_PIDS=()

fail() {
  echo "FAIL: $*" >&2
  exit 1
}

# start_server NAME ARGS...: starts the server in the background with ARGS; sets URL_<NAME> and PID_<NAME>.
start_server() {
  local name=$1
  shift
  local port_file="$WORK/$name.port" log="$WORK/$name.log"
  "$SERVE" --host 127.0.0.1 --port 0 --port-file "$port_file" --threads 1 --quiet "$@" > "$log" 2>&1 &
  local pid=$!
  SERVE_PIDS+=("$pid")
  printf -v "PID_$name" '%s' "$pid"
  local deadline=$((SECONDS + 60))
  until [[ -s $port_file ]]; do
    kill -0 "$pid" 2> /dev/null || { cat "$log" >&2; fail "$name exited before listening"; }
    ((SECONDS < deadline)) || fail "$name did not listen within 60 s"
    sleep 0.05
  done
  local url="http://127.0.0.1:$(cat "$port_file")"
  until [[ $(curl -s -o /dev/null -w '%{http_code}' "$url/health") == 200 ]]; do
    kill -0 "$pid" 2> /dev/null || { cat "$log" >&2; fail "$name exited while loading"; }
    ((SECONDS < deadline)) || fail "$name was not healthy within 60 s"
    sleep 0.05
  done
  printf -v "URL_$name" '%s' "$url"
}

stop_servers() {
  local pid
  for pid in "${SERVE_PIDS[@]}"; do kill "$pid" 2> /dev/null || true; done
  for pid in "${SERVE_PIDS[@]}"; do wait "$pid" 2> /dev/null || true; done
}

# json FILE EXPR: prints EXPR (Python, over `j`, the parsed file).
json() {
  python3 -c 'import json, sys; j = json.load(open(sys.argv[1])); v = eval(sys.argv[2]); print(json.dumps(v) if isinstance(v, (dict, list)) else v)' "$1" "$2"
}

# metric URL SAMPLE: the value of one /metrics sample line (0 when absent).
metric() {
  curl -s "$1/metrics" | python3 -c 'import sys
want = sys.argv[1]
for line in sys.stdin:
    name, _, value = line.rstrip("\n").rpartition(" ")
    if name == want:
        print(float(value)); break
else:
    print(0.0)' "$2"
}

# until_true SECONDS COMMAND...: runs COMMAND every 50 ms until it succeeds; fails after SECONDS.
until_true() {
  local deadline=$((SECONDS + $1))
  shift
  until "$@"; do
    ((SECONDS < deadline)) || fail "timed out waiting for: $*"
    sleep 0.05
  done
}

# metric_is URL SAMPLE VALUE: whether the sample equals VALUE (as numbers).
metric_is() {
  python3 -c 'import sys; sys.exit(0 if float(sys.argv[1]) == float(sys.argv[2]) else 1)' "$(metric "$1" "$2")" "$3"
}
