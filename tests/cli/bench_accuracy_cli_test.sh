#!/usr/bin/env bash
# `ra bench accuracy` at CI size on needle-byte-13m (skips, exit 77, without it): one length, three
# needle prompts in two runs over disjoint seeds merged by merge_rows.py. Full attention finds the needles, the window alone loses them, and flat over every
# key is full attention exactly (same facts, top-1 agreement 1, KL ~0). Then the ANN modes at two scan
# budgets: the measured fraction follows the budget and the recall audit reports. A time limit stops
# the prompts. Bad input is an error naming the flag.
source "$(dirname "${BASH_SOURCE[0]}")/check.sh"
src=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
model="${MODELS:?set MODELS to the shared models folder}/needle-byte-13m"
if [[ ! -f $model/config.json ]]; then
  echo "SKIP: needle-byte-13m not found at $model"
  exit 77
fi
text=/usr/include/sqlite3.h  # public domain, from Debian's libsqlite3-dev (scripts/setup.sh)
[[ -f $text ]] || { echo "SKIP: $text not found (scripts/setup.sh installs libsqlite3-dev)"; exit 77; }

# Three prompts in two runs over disjoint seeds (the first with the text), merged as one table.
"$RA" bench accuracy --model "$model" --lengths 2048 --prompts 1 --facts 2 --modes full,window,flat \
  --top-k 100000 --text "$text" --text-positions 64 --threads 2 --json "$tmp/exact1.json" > "$tmp/exact1.txt" \
  2> "$tmp/exact1.err"
check "bench exits 0" test $? -eq 0
"$RA" bench accuracy --model "$model" --lengths 2048 --prompts 2 --seed 2 --facts 2 --modes full,window,flat \
  --top-k 100000 --threads 2 --json "$tmp/exact2.json" > "$tmp/exact2.txt" 2> "$tmp/exact2.err"
check "bench of seeds 2 and 3 exits 0" test $? -eq 0
python3 "$src/bench/accuracy/merge_rows.py" "$tmp/exact.json" "$tmp/exact1.json" "$tmp/exact2.json"
check "merge_rows.py exits 0" test $? -eq 0
check "merging the same seeds twice is refused" \
  bash -c "! python3 '$src/bench/accuracy/merge_rows.py' '$tmp/twice.json' '$tmp/exact2.json' '$tmp/exact2.json' 2> '$tmp/twice.err' && grep -q overlap '$tmp/twice.err'"
check "flat over every key equals full, the window loses the needle" python3 -c "
import json
rows = {r['mode']: r for r in map(json.loads, open('$tmp/exact.json'))}
assert all(r['prompts'] == 3 and r['seeds'] == [[1, 1], [2, 2]] for r in rows.values()), rows
full, window, flat = rows['full'], rows['window'], rows['flat']
assert full['needle_facts'] == 6 and full['needle_correct'] >= 5, full
assert flat['needle_correct'] == full['needle_correct'] and flat['needle_digit_accuracy'] == full['needle_digit_accuracy'], flat
assert flat['agreement'] == 1.0 and flat['kl_mean'] < 1e-4 and flat['text_positions'] == 64, flat
assert flat['recall'] == 1.0 and flat['scanned'] == 1.0, flat
assert window['needle_correct'] < full['needle_correct'] and window['agreement'] < 1.0, window
assert window['kl_mean'] > 100 * flat['kl_mean'], window
"

"$RA" bench accuracy --model "$model" --lengths 2048 --prompts 1 --facts 1 --modes ivf,retrieval --scan 0.1,0.3 \
  --text "$text" --text-positions 16 --threads 2 --json "$tmp/budgets.json" > "$tmp/budgets.txt" 2> "$tmp/budgets.err"
check "bench with budgets exits 0" test $? -eq 0
cat "$tmp/budgets.txt"
check "the measured fraction follows the budget, recall is audited" python3 -c "
import json
rows = list(map(json.loads, open('$tmp/budgets.json')))
assert [(r['mode'], r['scan_target']) for r in rows] == [('ivf', 0.1), ('ivf', 0.3), ('retrieval', 0.1), ('retrieval', 0.3)], rows
for mode in ('ivf', 'retrieval'):
    low, high = [r for r in rows if r['mode'] == mode]
    assert 0 < low['scanned'] < high['scanned'] < 1, (low, high)
    assert 0.5 * low['scan_target'] < low['scanned'] < 3 * low['scan_target'], low
    assert 0 < low['recall'] <= high['recall'] <= 1, (low, high)
    assert len(high['recall_per_layer']) == 4, high
"

"$RA" bench accuracy --model "$model" --lengths 2048 --prompts 5 --modes full --time-limit 1e-6 \
  --json "$tmp/limit.json" > /dev/null 2> "$tmp/limit.err"
check "a time limit stops the prompts and the rows say how many ran" python3 -c "
import json
rows = list(map(json.loads, open('$tmp/limit.json')))
assert len(rows) == 1 and rows[0]['prompts'] == 0 and rows[0]['needle_facts'] == 0, rows
"
grep -q "time limit reached after 0 of 5 prompts" "$tmp/limit.err"
check "the time limit is reported" test $? -eq 0
"$RA" bench accuracy --model "$model" --lengths 2048 --prompts 0 --modes full --text "$tmp/nope.txt" \
  > /dev/null 2> "$tmp/bad_text.err"
check "a missing --text file is an error naming it" grep -q -- "--text $tmp/nope.txt: cannot open" "$tmp/bad_text.err"
"$RA" bench accuracy --model "$model" --lengths 2048 --prompts 0 --modes ivf --scan 1.5 > /dev/null 2> "$tmp/bad_scan.err"
check "a scan fraction above 1 is an error" grep -q "scan fraction 1.5 is outside (0, 1]" "$tmp/bad_scan.err"
exit $fail
