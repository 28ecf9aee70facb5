#!/usr/bin/env bash
# `ra bench accuracy` at CI size on needle-byte-13m (skips, exit 77, without it): one length, three
# needle prompts. Full attention finds the needles, the window alone loses them, and flat over every
# key is full attention exactly (same facts, top-1 agreement 1, KL ~0). Then the ANN modes at two scan
# budgets: the measured fraction follows the budget and the recall audit reports. Bad input is an
# error naming the flag.
source "$(dirname "${BASH_SOURCE[0]}")/check.sh"
model="${MODELS:?set MODELS to the shared models folder}/needle-byte-13m"
if [[ ! -f $model/config.json ]]; then
  echo "SKIP: needle-byte-13m not found at $model"
  exit 77
fi
text=/usr/include/sqlite3.h  # public domain, from Debian's libsqlite3-dev (scripts/setup.sh)
[[ -f $text ]] || { echo "SKIP: $text not found (scripts/setup.sh installs libsqlite3-dev)"; exit 77; }

"$RA" bench accuracy --model "$model" --lengths 2048 --prompts 3 --facts 2 --modes full,window,flat \
  --top-k 100000 --text "$text" --text-positions 64 --threads 2 --json "$tmp/exact.json" > "$tmp/exact.txt" \
  2> "$tmp/exact.err"
check "bench exits 0" test $? -eq 0
cat "$tmp/exact.txt"
check "flat over every key equals full, the window loses the needle" python3 -c "
import json
rows = {r['mode']: r for r in map(json.loads, open('$tmp/exact.json'))}
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

"$RA" bench accuracy --model "$model" --lengths 2048 --prompts 0 --modes full --text "$tmp/nope.txt" \
  > /dev/null 2> "$tmp/bad_text.err"
check "a missing --text file is an error naming it" grep -q -- "--text $tmp/nope.txt: cannot open" "$tmp/bad_text.err"
"$RA" bench accuracy --model "$model" --lengths 2048 --prompts 0 --modes ivf --scan 1.5 > /dev/null 2> "$tmp/bad_scan.err"
check "a scan fraction above 1 is an error" grep -q "scan fraction 1.5 is outside (0, 1]" "$tmp/bad_scan.err"
exit $fail
