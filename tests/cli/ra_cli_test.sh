#!/usr/bin/env bash
# The `ra` command as a user meets it: help, version, the embedded default, and clear errors.
source "$(dirname "${BASH_SOURCE[0]}")/check.sh"

"$RA" --help > "$tmp/help" 2>&1
check "--help lists generate" grep -q generate "$tmp/help"
"$RA" generate --help > "$tmp/ghelp" 2>&1
for opt in --model --tokenizer --prompt --prompt-file --max-new-tokens --temperature --seed; do
  check "generate --help lists $opt" grep -q -- "$opt" "$tmp/ghelp"
done
"$RA" --version > "$tmp/version" 2>&1
check "--version prints a version" grep -Eq '^ra [0-9]+\.[0-9]+\.[0-9]+' "$tmp/version"

# The embedded default: a deterministic model and synthetic prompt. Text to stdout, stats to stderr.
"$RA" generate --max-new-tokens 16 --synthetic-prompt-bytes 2048 > "$tmp/out1" 2> "$tmp/err1"
check "embedded default exits 0" test $? -eq 0
"$RA" generate --max-new-tokens 16 --synthetic-prompt-bytes 2048 > "$tmp/out2" 2> /dev/null
check "embedded default is deterministic" cmp -s "$tmp/out1" "$tmp/out2"
check "embedded default prints 16 bytes of text" test "$(wc -c < "$tmp/out1")" -eq 16
check "stats go to stderr: prompt tokens" grep -q "prompt tokens: 2049" "$tmp/err1"
check "stats go to stderr: prefill tokens/s" grep -Eq "prefill: [0-9.]+ tokens/s" "$tmp/err1"
check "stats go to stderr: decode tokens/s" grep -Eq "decode: [0-9.]+ tokens/s" "$tmp/err1"
check "stdout holds no statistics" bash -c "! grep -q tokens/s '$tmp/out1'"

# Sampling is seeded: same seed, same text.
"$RA" generate --max-new-tokens 16 --synthetic-prompt-bytes 512 --temperature 0.8 --seed 5 > "$tmp/s1" 2>/dev/null
"$RA" generate --max-new-tokens 16 --synthetic-prompt-bytes 512 --temperature 0.8 --seed 5 > "$tmp/s2" 2>/dev/null
check "temperature sampling is reproducible for a seed" cmp -s "$tmp/s1" "$tmp/s2"

# The ranks' OpenMP wait policy: sleeping by default (the worker takes every CPU, so the retriever shares
# them), never overriding the user's. (Only where the pipeline's processes are built: they need MPI.)
if [[ -x "$(dirname "$RA")/ra-gpu-worker" ]]; then
  env -u OMP_WAIT_POLICY "$RA" generate --mode retrieval --dry-run > "$tmp/dry" 2>&1
  check "dry run: ranks sleep when they share CPUs" grep -q -- "-x OMP_WAIT_POLICY=PASSIVE" "$tmp/dry"
  OMP_WAIT_POLICY=ACTIVE "$RA" generate --mode retrieval --dry-run > "$tmp/dry_user" 2>&1
  check "dry run: the user's OMP_WAIT_POLICY is left alone" bash -c "! grep -q OMP_WAIT_POLICY= '$tmp/dry_user'"
fi

# Errors: non-zero exit, a message that names the problem, nothing on stdout.
"$RA" generate --model "$tmp/nope" > "$tmp/eout" 2> "$tmp/eerr"
check "missing model exits non-zero" test $? -ne 0
check "missing model is named" grep -q "$tmp/nope" "$tmp/eerr"
check "missing model prints nothing to stdout" test ! -s "$tmp/eout"

"$RA" generate --synthetic-prompt-bytes 40000 --max-new-tokens 1 > /dev/null 2> "$tmp/long"
check "too-long prompt exits non-zero" test $? -ne 0
check "too-long prompt says so" grep -q "allows at most 32768" "$tmp/long"

"$RA" generate --temperature -1 > /dev/null 2>&1
check "negative temperature is rejected" test $? -ne 0
"$RA" generate --prompt-file "$tmp/missing.txt" > /dev/null 2> "$tmp/pf"
check "missing prompt file is named" grep -q "missing.txt" "$tmp/pf"

exit $fail
