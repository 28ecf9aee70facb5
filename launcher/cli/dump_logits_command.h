#pragma once
// `ra dump-logits`: a decoder's logits for a token sequence, for external oracles
// (scripts/oracle_transformers.py compares them with Hugging Face transformers).
//
//   ra dump-logits --model DIR --tokens-file IDS.txt --out DIR [--backend B] [--prefill-tokens P] [--stride S]
//
// The first P tokens run as one prefill forward (the prefill path), then tokens P..T-1 one at a time
// (teacher forcing, the decode path). The logits after the token at position t predict token t + 1.
// Output directory:
//   positions.npy         int64 [R]           t = P-1 .. T-1, every position whose logits were computed
//   argmax.npy            int32 [R]           argmax of each (lowest index on ties)
//   logits_positions.npy  int64 [R']          P-1, P-1+S, P-1+2S, ... and always T-1
//   logits.npy            float32 [R'][vocab] the logits at those positions
//   meta.json             model, backend, tokens T, prefill_tokens P, stride S, vocab_size, seconds

#include <CLI/CLI.hpp>

namespace ra {

void add_dump_logits_command(CLI::App& app);

}  // namespace ra
