#!/usr/bin/env bash
# `ra bench retrieval` end to end on a dump of the embedded model: JSON rows with every field, and
# clear errors for malformed .npy files and shapes that disagree with meta.json.
source "$(dirname "${BASH_SOURCE[0]}")/check.sh"

"$RA" dump-qkv --out "$tmp/qkv" --synthetic-prompt-bytes 700 2> "$tmp/dump.err"
check "dump of the embedded model" test -f "$tmp/qkv/meta.json"

"$RA" bench retrieval --qkv "$tmp/qkv" --prefill 600 --k 10 --indexes flat,graph --layer 1 --head 0 --head 5 \
  --json "$tmp/rows.json" > "$tmp/table.txt" 2> "$tmp/bench.err"
check "bench exits 0" test $? -eq 0
check "bench prints a table" grep -q "^flat" "$tmp/table.txt"
# flat: 1 row; graph at k = 10: ef = 1, 2, 3, 4, 5, 6, 8, 10, 12, 16, 20, 25, 32, 40, 50, 64, 80, 100.
check "one JSON row per (index, knob)" test "$(wc -l < "$tmp/rows.json")" -eq 19
check "rows carry every field" python3 -c "
import json, sys
rows = [json.loads(l) for l in open('$tmp/rows.json')]
need = {'index','knob','recall','worst_head_recall','scanned','us_per_query','build_s','index_bytes','attn_rel_err'}
assert all(need <= set(r) for r in rows), rows[0]
flat = [r for r in rows if r['index'] == 'flat'][0]
assert flat['recall'] == 1.0 and flat['scanned'] == 1.0 and flat['heads'] == 2, flat
assert {r['index'] for r in rows} == {'flat', 'graph'}
"

# Decode-order rows: every test position (701 - 600 = 101), seeded with the previous answers.
"$RA" bench retrieval --qkv "$tmp/qkv" --prefill 600 --k 10 --indexes graph --layer 1 --head 0 --test-queries 20 \
  --graph-warm 2 --json "$tmp/warm.json" > /dev/null 2> "$tmp/warm.err"
check "bench with --graph-warm exits 0" test $? -eq 0
check "graph_warm rows cover every test position" python3 -c "
import json
rows = [json.loads(l) for l in open('$tmp/warm.json')]
warm = [r for r in rows if r['index'] == 'graph_warm']
cold = [r for r in rows if r['index'] == 'graph']
assert len(warm) == len(cold) == 18, (len(warm), len(cold))
assert all(r['queries'] == 101 for r in warm) and all(r['queries'] == 20 for r in cold), rows
"

cp -r "$tmp/qkv" "$tmp/bad_shape"
cp "$tmp/bad_shape/q_l0.npy" "$tmp/bad_shape/k_l0.npy"   # (8, T, 32) where (2, T, 32) belongs
"$RA" bench retrieval --qkv "$tmp/bad_shape" --prefill 600 --indexes flat > /dev/null 2> "$tmp/shape.err"
check "mismatched shape exits non-zero" test $? -ne 0
check "mismatched shape names the file and both shapes" grep -q "k_l0.npy: shape (8, 701, 32) does not match meta.json, which implies (2, 701, 32)" "$tmp/shape.err"

cp -r "$tmp/qkv" "$tmp/truncated"
truncate -s -100 "$tmp/truncated/v_l0.npy"
"$RA" bench retrieval --qkv "$tmp/truncated" --prefill 600 --indexes flat > /dev/null 2> "$tmp/trunc.err"
check "truncated .npy exits non-zero" test $? -ne 0
check "truncated .npy is named" grep -q "v_l0.npy.*truncated" "$tmp/trunc.err"

"$RA" bench retrieval --qkv "$tmp" --prefill 600 > /dev/null 2> "$tmp/nometa.err"
check "a folder without meta.json is refused" grep -q "no meta.json" "$tmp/nometa.err"
"$RA" bench retrieval --qkv "$tmp/qkv" --prefill 701 > /dev/null 2> "$tmp/prefill.err"
check "prefill beyond the dump is refused" grep -q "prefill 701 must be in" "$tmp/prefill.err"
exit $fail
