#!/usr/bin/env bash
# `ra bench decode` with offloaded modes (label mpi; issue 16 item 6): every mode as an `ra generate` job,
# flat and retrieval through real retriever ranks under mpirun; one row per (mode, budget) with its
# decode p50 <= p99, prefill, the retrieval breakdown, keys scanned near the budget asked, each rank's
# RSS; the PNG of the breakdown drawn from the JSON; a job that cannot run gives a row that says why.
source "$(dirname "${BASH_SOURCE[0]}")/check.sh"

# A process of the retrievers' name that is not the bench's (another test's rank beside this one): the rows
# count the job's own ranks only.
cp /bin/sleep "$tmp/ra-cpu-retriever"
"$tmp/ra-cpu-retriever" 600 &
decoy=$!
"$RA" bench decode --geometry demo --backend cpu --context 3072 --modes full,window,flat,retrieval --scan 0.05,0.1 \
  --steps 6 --warmup 2 --retrievers 2 --work-dir "$tmp/jobs" --json "$tmp/rows.json" > "$tmp/table.txt" 2> "$tmp/bench.err"
rc=$?
kill "$decoy" 2> /dev/null
check "bench exits 0" test $rc -eq 0
[ $rc -eq 0 ] || cat "$tmp/bench.err"
cat "$tmp/table.txt"
check "every mode and budget has a sane row" python3 -c "
import json
rows = json.load(open('$tmp/rows.json'))['rows']
got = [(r['mode'], r.get('scan_budget')) for r in rows]
assert got == [('full', None), ('window', None), ('flat', None), ('retrieval', 0.05), ('retrieval', 0.1)], got
for r in rows:
    assert 'skipped' not in r, r
    assert r['context'] == 3072 and r['prompt_tokens'] == 3072 and r['steps'] == 8, r
    assert 0 < r['ms_p50'] <= r['ms_p99'], r
    assert r['prefill_s'] > 0 and 0 <= r['build_tail_s'] <= r['prefill_s'], r
    assert r['worker_peak_rss_gib'] > 0, r
    offloaded = r['mode'] in ('flat', 'retrieval')
    assert ('breakdown' in r) == offloaded, r
    if offloaded:
        b = r['breakdown']
        assert r['retriever_processes'] == 2 and r['retriever_peak_rss_gib'] > 0, r
        assert b['round_trips_per_token'] == 4 and b['q_out_us'] > 0 and b['retriever_us'] > 0, b  # 4 layers
        assert b['offloaded_keys'] == 3072 - 128 - 512 + 8, b  # and the 8 evicted by the 8 steps
    if r['mode'] == 'flat':
        assert r['breakdown']['scanned_fraction'] > 0.99, r
    if r['mode'] == 'retrieval':
        assert r['breakdown']['scanned_fraction'] < 0.5, r
"
/usr/bin/python3 -c "import matplotlib" 2> /dev/null && check "the breakdown plots" \
  /usr/bin/python3 "$(dirname "${BASH_SOURCE[0]}")/../../bench/report/plot_rows.py" "$tmp/rows.json" "$tmp/rows.png"
check "no shm segment left behind" test -z "$(ls /dev/shm | grep '^ra-' | grep -v '^ra-shmtest-')"  # not shm_channel_test's

"$RA" bench decode --geometry demo --backend cpu --context 3072 --modes flat --steps 2 --warmup 0 --retrievers 2 \
  --run-timeout 1 --work-dir "$tmp/short" --json "$tmp/short.json" > "$tmp/short.txt" 2>&1
check "a job past --run-timeout gives a row that says so" python3 -c "
import json
row = json.load(open('$tmp/short.json'))['rows'][0]
assert 'ran past 1 s' in row['skipped'], row
"
"$RA" bench decode --geometry demo --modes flat,sparse > /dev/null 2> "$tmp/bad.err"
check "an unknown mode is refused" grep -q "sparse" "$tmp/bad.err"
exit $fail
