#!/usr/bin/env bash
# `ra bench transport` end to end under mpirun (label mpi): for every transport in $TRANSPORTS and R = 1, 2
# retrievers, one row with positive p50 <= p99, the exact bytes of the Llama-3-8B geometry, the asked
# iteration count; no shm segment left behind; clear errors for bad arguments.
source "$(dirname "${BASH_SOURCE[0]}")/check.sh"
transports=${TRANSPORTS:-shm,ucx,mpi}

"$RA" bench transport --transports "$transports" --max-retrievers 2 --iterations 200 --warmup 20 \
  --json "$tmp/rows.json" > "$tmp/table.txt" 2> "$tmp/bench.err"
rc=$?
check "bench exits 0" test $rc -eq 0
[ $rc -eq 0 ] || cat "$tmp/bench.err"
cat "$tmp/table.txt"
check "table has a header and one line per run" \
  test "$(wc -l < "$tmp/table.txt")" -eq $((1 + 2 * $(echo "$transports" | tr ',' '\n' | wc -l)))
check "every (transport, R) row is present and sane" python3 -c "
import json
rows = [json.loads(l) for l in open('$tmp/rows.json')]
want = {(t, r) for t in '$transports'.split(',') for r in (1, 2)}
got = {(row['transport'], row['retrievers']) for row in rows}
assert got == want and len(rows) == len(want), (sorted(got), sorted(want))
H, KV, D, hdr, step, part = 32, 8, 128, 24, 40, 72  # sizeof StepPayload, PartialPayload (protocol 7)
for row in rows:
    r = row['retrievers']
    assert 0 < row['min_us'] <= row['p50_us'] <= row['p99_us'] <= row['max_us'], row
    assert row['min_us'] <= row['mean_us'] <= row['max_us'], row
    assert row['iterations'] == 200 and row['warmup'] == 20, row
    assert row['bytes_out'] == r * (hdr + step + 4 * D * (H + 2 * KV)), row
    assert row['bytes_back'] == r * (hdr + part) + H * 4 * (1 + D), row
    assert row['host'], row
"
check "no shm segment left behind" test -z "$(ls /dev/shm | grep '^ra-bench-')"

"$RA" bench transport --transports "${transports%%,*}" --max-retrievers 1 --iterations 50 --warmup 0 --no-evict \
  --heads 8 --kv-heads 2 --head-dim 64 --json "$tmp/small.json" > /dev/null 2> "$tmp/small.err"
check "a small geometry without eviction runs" python3 -c "
import json
row = json.loads(open('$tmp/small.json').readline())
assert row['bytes_out'] == 24 + 40 + 8 * 64 * 4 and row['evict'] is False, row
assert row['bytes_back'] == 24 + 72 + 8 * 4 * 65, row
"

"$RA" bench transport --max-retrievers 9 > /dev/null 2> "$tmp/many.err"
check "more retrievers than kv heads is refused" grep -q "max-retrievers 9 exceeds --kv-heads 8" "$tmp/many.err"
"$RA" bench transport --transports tcp > /dev/null 2> "$tmp/tcp.err"
check "an unknown transport is refused" grep -q "tcp" "$tmp/tcp.err"
if [ -n "${BENCH:-}" ]; then
  OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 mpirun -n 1 "$BENCH" --transport mpi > /dev/null 2> "$tmp/alone.err"
  check "one rank alone is refused with a usage hint" grep -q "mpirun -n 1+R" "$tmp/alone.err"
fi
exit $fail
