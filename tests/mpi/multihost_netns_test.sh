#!/usr/bin/env bash
# A real multi-host job on one machine (issue 21 item 1). Three network namespaces are three hosts, each
# with its own address on a bridge (veth pairs) and its own host name (a UTS namespace); mpirun, given a
# hostfile of their addresses, starts its daemons in them through a plm_rsh_agent doing `ip netns exec`
# where a cluster would use ssh. The worker runs on host 1, a retriever on each of hosts 2 and 3, over
# UCX on TCP (UCX_TLS=self,tcp: the namespaces share /dev/shm, which UCX's shared-memory transports
# would use across them), Open MPI's own traffic on the bridge's network.
#   exact   flat (every key retrieved) across the hosts == full attention on one: same text, logits
#           within 1e-4; the retrievers report the hosts the plan put them on, and the worker logs each
#           retriever's report (its host name over the plan's address)
#   cut     host 3's link goes down mid-decode: the worker names the silent retriever (rank, host) within
#           the liveness timeout + 1 s; `ra` exits non-zero within 8 s although mpirun cannot reach host
#           3's daemon (job_launcher.cpp bounds its teardown); no process of the job remains on any host,
#           the cut one included (its retriever ends on losing the worker and ends that host's daemon);
#           /dev/shm holds nothing new
# Needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN) and iproute2: exits 77 (skipped) where namespaces cannot be
# made. Environment: RA = the ra binary.
set -uo pipefail
: "${RA:?set RA to the ra binary}"
RA=$(realpath "$RA")
case=${1:?usage: $0 exact|cut}
WORK=$(mktemp -d /tmp/ra-netns-test.XXXXXX)
export TMPDIR=$WORK
script_dir=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
cd "$WORK"  # a job with a hostfile keeps its directory in ./.ra-jobs
source "$script_dir/../../scripts/netns_hosts.sh"
hosts=3
ns() { netns_name "$1"; }
addr() { netns_addr "$1"; }
fail() { echo "FAIL: $*" >&2; exit 1; }
cleanup() {
  netns_down
  pkill -KILL -f "$WORK" 2>/dev/null
  rm -rf "$WORK"
}
trap cleanup EXIT
if ! netns_up $hosts "$WORK" 2> "$WORK/netns.err"; then
  echo "SKIP: cannot make network namespaces here ($(cat "$WORK/netns.err"); needs root and iproute2)"
  exit 77
fi
COMMON=(--synthetic-prompt-bytes 300 --sinks 16 --window 32 --threads 1 --retriever-threads 1)
ACROSS=(--config "$WORK/hosts.yaml" --hostfile "$WORK/hostfile" --transport ucx --retrievers 2)
# Not this job's, whatever ctest runs beside it: shm_channel_test's ra-shmtest-* segments, and Open MPI's
# vader segments of jobs on this machine's own host name (this job's ranks run on the ranode hosts).
shm_segments() {
  ls /dev/shm 2>/dev/null | grep -E '^(ra-|vader_segment|ucx_|ompi)' | grep -v '^ra-shmtest-' \
    | grep -vF "vader_segment.$(hostname)." | sort || true
}

case "$case" in
exact)
  RA_LOGITS_TRACE=$WORK/full.f32 "$RA" generate --mode full "${COMMON[@]}" --max-new-tokens 80 \
    > "$WORK/full.txt" 2> "$WORK/full.err" || { cat "$WORK/full.err"; fail "full mode failed"; }
  RA_LOGITS_TRACE=$WORK/flat.f32 timeout 120 "$RA" generate --mode flat --top-k 1000000 "${ACROSS[@]}" "${COMMON[@]}" \
    --max-new-tokens 80 > "$WORK/flat.txt" 2> "$WORK/flat.err" || { cat "$WORK/flat.err"; fail "flat across hosts failed"; }
  grep -E "^ra-cpu-retriever rank [12] on (host )?ranode" "$WORK/flat.err" | sort -u
  grep -Eq "^ra-cpu-retriever rank 1 on (host )?ranode2:" "$WORK/flat.err" || fail "retriever 1 did not run on ranode2"
  grep -Eq "^ra-cpu-retriever rank 2 on (host )?ranode3:" "$WORK/flat.err" || fail "retriever 2 did not run on ranode3"
  # The worker learns each retriever's host and placement at the handshake; the plan named addresses.
  grep -E "^ra-gpu-worker: retriever rank [12] on host" "$WORK/flat.err"
  for i in 2 3; do
    grep -Eq "^ra-gpu-worker: retriever rank $((i - 1)) on host ranode$i \(pid [0-9]+\): .*over ucx; the report overrides the plan's guess \(host $(addr $i)[,)]" \
      "$WORK/flat.err" || fail "the worker did not report retriever $((i - 1)) on ranode$i over the plan's $(addr $i)"
  done
  cmp "$WORK/full.txt" "$WORK/flat.txt" || fail "generated text differs: full '$(cat "$WORK/full.txt")' flat '$(cat "$WORK/flat.txt")'"
  python3 "$script_dir/compare_logits.py" "$WORK/full.f32" "$WORK/flat.f32" 80 1e-4 \
    || fail "logits differ"
  echo "PASS: flat across 3 hosts (UCX over TCP) == full on one"
  ;;
cut)
  before=$(shm_segments)
  "$RA" generate --mode flat "${ACROSS[@]}" "${COMMON[@]}" --max-new-tokens 20000 > "$WORK/out.txt" 2> "$WORK/err.txt" &
  ra_pid=$!
  for _ in $(seq 1 600); do
    [[ -s "$WORK/out.txt" ]] && break
    kill -0 $ra_pid 2>/dev/null || { cat "$WORK/err.txt"; fail "ra exited before decoding"; }
    sleep 0.1
  done
  [[ -s "$WORK/out.txt" ]] || fail "no decoding within 60 s"
  t0=$(date +%s.%N)
  ip -n "$(ns 3)" link set eth0 down || fail "cannot take host 3's link down"
  named="" ended=""
  for _ in $(seq 1 300); do  # 30 s at most
    [[ -z $named ]] && grep -Eq "retriever rank 2 on host $(addr 3).*silent" "$WORK/err.txt" && named=$(date +%s.%N)
    if [[ -z $ended ]] && ! kill -0 $ra_pid 2>/dev/null; then ended=$(date +%s.%N); break; fi
    sleep 0.05
  done
  rc=0
  if [[ -n $ended ]]; then wait $ra_pid || rc=$?; fi
  cat "$WORK/err.txt" >&2
  [[ -n $named ]] || fail "the silent retriever was not named (rank 2 on host $(addr 3))"
  [[ -n $ended ]] || fail "ra still runs 30 s after host 3 was cut off"
  named_s=$(python3 -c "print(f'{$named - $t0:.2f}')")
  ended_s=$(python3 -c "print(f'{$ended - $t0:.2f}')")
  echo "host 3 cut off: named after $named_s s, ra exited $rc after $ended_s s"
  [[ $rc -ne 0 ]] || fail "ra exited 0 after a host was cut off"
  python3 -c "import sys; sys.exit(0 if $named_s <= 2.0 else 1)" || fail "named after $named_s s (> 2 s)"
  python3 -c "import sys; sys.exit(0 if $ended_s <= 8.0 else 1)" || fail "ra ended after $ended_s s (> 8 s)"
  left=""
  for _ in $(seq 1 60); do  # every host's processes end, the cut one's by themselves
    left=$(for i in $(seq 1 $hosts); do ip netns pids "$(ns "$i")"; done; pgrep -f "$WORK")
    [[ -z $left ]] && break
    sleep 0.1
  done
  [[ -z $left ]] || { ps -o pid,args -p $(echo $left | tr ' ' ',') >&2; fail "processes of the job remain"; }
  after=$(shm_segments)
  [[ "$before" == "$after" ]] || fail "shared-memory segments left: $(comm -13 <(echo "$before") <(echo "$after"))"
  echo "PASS: a host cut off is named, the job ends, nothing is left on any host"
  ;;
*) fail "unknown case $case" ;;
esac
