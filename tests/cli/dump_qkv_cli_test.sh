#!/usr/bin/env bash
# `ra dump-qkv` as a user meets it: the embedded demo model writes q/k/v .npy files for every layer and a
# meta.json with the six agreed fields; bad input exits non-zero with a message that names the problem.
source "$(dirname "${BASH_SOURCE[0]}")/check.sh"

"$RA" --help > "$tmp/help" 2>&1
check "--help lists dump-qkv" grep -q dump-qkv "$tmp/help"
"$RA" dump-qkv --help > "$tmp/dhelp" 2>&1
for opt in --model --tokenizer --prompt-file --out --threads --max-tokens; do
  check "dump-qkv --help lists $opt" grep -q -- "$opt" "$tmp/dhelp"
done

# The embedded demo model (4 layers, 8 query heads, 2 kv heads, head_dim 32) with a short prompt.
printf 'The magic number of the blue door is 4711. What is the magic number of the blue door?' > "$tmp/prompt.txt"
bytes=$(wc -c < "$tmp/prompt.txt")
tokens=$((bytes + 1))  # BOS
"$RA" dump-qkv --out "$tmp/dump" --prompt-file "$tmp/prompt.txt" --threads 2 > "$tmp/out" 2> "$tmp/err"
check "dump-qkv exits 0" test $? -eq 0
check "stdout stays empty" test ! -s "$tmp/out"
check "summary on stderr names tokens, layers and the directory" \
  grep -Eq "dump-qkv: $tokens tokens, 4 layers .*$tmp/dump in [0-9.]+ s" "$tmp/err"
for l in 0 1 2 3; do
  for n in q k v; do
    check "${n}_l$l.npy exists" test -s "$tmp/dump/${n}_l$l.npy"
  done
done
check "no fifth layer" test ! -e "$tmp/dump/q_l4.npy"
check "meta.json has the six fields" python3 -c '
import json, math, sys
m = json.load(open(sys.argv[1]))
want = {"n_layers": 4, "n_heads": 8, "n_kv_heads": 2, "head_dim": 32, "tokens": int(sys.argv[2])}
for key, value in want.items():
    assert m[key] == value, (key, m[key], value)
assert abs(m["scale"] - 1 / math.sqrt(32)) < 1e-7, m["scale"]
' "$tmp/dump/meta.json" "$tokens"
# A float32 (8, T, 32) q file: a 128-byte header (\x93NUMPY) then 8*T*32*4 bytes of data.
check "q_l0.npy has the size of (8, T, 32) float32" \
  test "$(wc -c < "$tmp/dump/q_l0.npy")" -eq $((128 + 8 * tokens * 32 * 4))
check "k_l3.npy has the size of (2, T, 32) float32" \
  test "$(wc -c < "$tmp/dump/k_l3.npy")" -eq $((128 + 2 * tokens * 32 * 4))
check "q_l0.npy starts with the .npy magic" bash -c "head -c 6 '$tmp/dump/q_l0.npy' | tail -c 5 | grep -q NUMPY"
check "q_l0.npy header says '<f4' and the shape" \
  grep -aq "'descr': '<f4', 'fortran_order': False, 'shape': (8, $tokens, 32)" "$tmp/dump/q_l0.npy"

# Same input, same bytes.
"$RA" dump-qkv --out "$tmp/dump2" --prompt-file "$tmp/prompt.txt" --threads 2 2> /dev/null
check "dump is deterministic" cmp -s "$tmp/dump/k_l2.npy" "$tmp/dump2/k_l2.npy"

# --max-tokens keeps a prefix; without --prompt-file the demo uses its synthetic prompt.
"$RA" dump-qkv --out "$tmp/short" --max-tokens 10 --synthetic-prompt-bytes 64 2> /dev/null
check "--max-tokens 10 dumps 10 tokens" python3 -c '
import json, sys; assert json.load(open(sys.argv[1]))["tokens"] == 10' "$tmp/short/meta.json"

# Errors: non-zero exit and a message naming the problem.
"$RA" dump-qkv > /dev/null 2> "$tmp/e1"
check "--out is required" grep -q -- "--out" "$tmp/e1"
"$RA" dump-qkv --out "$tmp/x" --prompt-file "$tmp/missing.txt" > /dev/null 2> "$tmp/e2"
check "missing prompt file exits non-zero" test $? -ne 0
check "missing prompt file is named" grep -q "missing.txt" "$tmp/e2"
"$RA" dump-qkv --out "$tmp/x" --synthetic-prompt-bytes 40000 > /dev/null 2> "$tmp/e3"
check "too-long prompt exits non-zero" test $? -ne 0
check "too-long prompt says so" grep -q "allows at most 32768" "$tmp/e3"
"$RA" dump-qkv --out "$tmp/x" --model "$tmp/nope" --prompt-file "$tmp/prompt.txt" > /dev/null 2> "$tmp/e4"
check "missing model is named" grep -q "$tmp/nope" "$tmp/e4"

exit $fail
