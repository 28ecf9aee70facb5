#pragma once
// `ra bench accuracy` (issue 17): every attention mode on the same prompts in one run, at matched search
// budgets. Per context length it prefills each prompt once on two backends, one with full attention and
// one with the static set (sinks + window), ships the offloaded KV to an in-process pool of real
// retrievers per mode (retriever_pool.h), and then, for every mode and budget, teacher-forces the same
// continuation from the same state:
//   - needle: `facts` magic-number facts per haystack prompt, each asked in turn (a prompt per fact, the
//     question last; all `length` tokens, the same offloaded positions, so the retrievers build once per
//     haystack); a fact counts when all 7 digits are the argmax under teacher forcing. The first digit
//     comes from the prefill (full attention in every mode, as in generation); the other 6 are decode
//     steps through the mode's attention. (The graph's training queries are the first fact's prompt's:
//     its question's few positions differ from the others'.)
//   - text: `text_positions` decode steps over real text past the window, each step's next-token
//     distribution compared with full attention's at the same position: top-1 agreement and
//     KL(full || mode).
//   - cost: keys scored per query head / offloaded keys held (measured by the retrievers); recall@k of
//     the keys each step actually retrieved against the exact top-k, per layer.
// Budgets: each scan fraction is fitted per shard at its build (cpu_retriever/scan_budget.h: ef for
// graphs and HNSW, nprobe for IVF, chosen on the head's own prefill queries) and picked per step.

#include <nlohmann/json.hpp>

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include "launcher/config/run_config.h"
#include "launcher/ranks/model_setup.h"

namespace ra::bench {

struct AccuracySpec {
  // The model and everything a mode runs with: backend, sinks, window, index.* (top_k, ef and nprobe
  // for rows without a budget), retrievers, retriever_threads, worker_threads, liveness and build
  // timeouts. Its mode is ignored (every mode of `modes` runs).
  RunConfig config;
  std::vector<int64_t> lengths = {4096};
  std::vector<AttentionMode> modes;
  std::vector<double> scan;        // budgets of ivf, hnsw and retrieval; empty: their config knobs
  int prompts = 24;                // needle prompts per length, seeds seed, seed + 1, ...
  int facts = 4;                   // facts per prompt, each asked
  uint64_t seed = 1;
  std::string haystack = "/usr/include";
  std::string text_file;           // real text for agreement and KL; empty: skipped
  int64_t text_positions = 1000;
  bool audit_recall = true;
  // Seconds from the start after which no further needle prompt starts (0: none). The text runs first
  // at every length, so a time-boxed run still has its agreement and KL; rows report the prompts done,
  // and runs over disjoint seeds merge (bench/accuracy/merge_rows.py).
  double time_limit_s = 0.0;
};

// Runs every length; each finished row (a mode at a budget at a length) goes to on_row as it is done,
// then all are returned. Rows: length, mode, scan_target (null: none), scanned (measured fraction;
// scanned_needle and scanned_text over those steps alone, null without retrievers), needle_facts,
// needle_correct, needle_accuracy, needle_digit_accuracy, needle_facts_cut (facts not asked: their
// sentence fell in the haystack's cut end), text_positions, agreement, kl_mean, recall (null without the
// audit or retrievers), recall_per_layer, decode_steps, ms_per_step, top_k; prompts (done) and seed
// (the first); and the raw sums the ratios come from, so that runs over disjoint seeds add up:
// needle_digits, needle_digits_correct, text_agree, kl_sum, scored_needle, offered_needle, scored_text,
// offered_text, recall_hits_per_layer, recall_wanted_per_layer, seconds.
std::vector<nlohmann::json> run_accuracy(const AccuracySpec& spec, const LoadedModel& loaded,
                                         const std::function<void(const nlohmann::json&)>& on_row);

}  // namespace ra::bench
