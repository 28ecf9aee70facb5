#!/usr/bin/env bash
# Retrieval mode on needle-byte-13m answers the 4K needle prompts that full mode answers (issue #4).
# Each prompt runs in mode full (one process) and in mode retrieval (worker + 1 retriever under mpirun,
# the attention-aware graph); the answer must start the continuation (after optional spaces).
# Exit 77 (skipped) when the model is absent. Environment: RA, MODELS.
set -euo pipefail
: "${RA:?set RA}" "${MODELS:?set MODELS}"
MODEL=$MODELS/needle-byte-13m
[[ -f "$MODEL/config.json" ]] || { echo "SKIP: $MODEL is absent"; exit 77; }
WORK=$(mktemp -d /tmp/ra-needle-test.XXXXXX)
trap 'rm -rf "$WORK"' EXIT

full_ok=0; retrieval_ok=0; regressions=0
for seed in 1 2 3; do
  answer=$("$RA" needle-prompt --tokens 4096 --facts 4 --seed $seed --out "$WORK/p$seed.txt")
  run() {
    "$RA" generate --model "$MODEL" --prompt-file "$WORK/p$seed.txt" --max-new-tokens 8 "$@" 2>"$WORK/err.txt" \
      || { cat "$WORK/err.txt" >&2; echo "FAIL: ra generate $*" >&2; exit 1; }
  }
  full=$(run --mode full)
  retrieval=$(run --mode retrieval --retrievers 1 --top-k 100)
  f=0; r=0
  [[ "$full" =~ ^\ *"$answer" ]] && f=1
  [[ "$retrieval" =~ ^\ *"$answer" ]] && r=1
  echo "seed $seed: answer $answer | full '$full' ($f) | retrieval '$retrieval' ($r)"
  grep -E "keys scanned|index build" "$WORK/err.txt" || true
  full_ok=$((full_ok + f)); retrieval_ok=$((retrieval_ok + r))
  [[ $f -eq 1 && $r -eq 0 ]] && regressions=$((regressions + 1))
done
echo "full: $full_ok/3 correct, retrieval: $retrieval_ok/3 correct"
[[ $full_ok -ge 2 ]] || { echo "FAIL: full attention itself answers only $full_ok/3 (model or prompt problem)"; exit 1; }
[[ $regressions -eq 0 ]] || { echo "FAIL: retrieval missed $regressions answer(s) that full attention found"; exit 1; }
echo PASS
