#!/usr/bin/env bash
# The exact command of the foundation issue prints exactly llama2.c's golden stdout.
# Exits 77 (skipped) when the shared models folder is absent.
set -euo pipefail
dir="$MODELS/stories260K"
if [[ ! -f "$dir/stories260K.bin" ]]; then
  echo "SKIP: stories260K not found at $dir (the shared models folder is absent)"
  exit 77
fi
out=$(mktemp)
trap 'rm -f "$out"' EXIT
"$RA" generate --model "$dir/stories260K.bin" --tokenizer "$dir/tok512.bin" --temperature 0 \
  --max-new-tokens 200 > "$out"
if cmp "$out" "$dir/expected_stdout.txt"; then
  echo "stdout matches expected_stdout.txt exactly ($(wc -c < "$out") bytes)"
else
  echo "stdout differs from expected_stdout.txt"
  diff <(cat "$dir/expected_stdout.txt"; echo) <(cat "$out"; echo) | head -20
  exit 1
fi
