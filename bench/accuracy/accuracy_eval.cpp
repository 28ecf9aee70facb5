#include "bench/accuracy/accuracy_eval.h"

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <fstream>
#include <iterator>
#include <limits>
#include <memory>
#include <optional>
#include <span>

#include "bench/accuracy/retriever_pool.h"
#include "common/error.h"
#include "gpu_worker/backend/backend.h"
#include "gpu_worker/offload/prefill_capture.h"
#include "launcher/needle_task.h"
#include "launcher/plan/numa_topology.h"
#include "launcher/ranks/retriever_setup.h"

namespace ra::bench {
namespace {

using json = nlohmann::json;
using Clock = std::chrono::steady_clock;

// Haystack bytes made beyond the length, so that every fact's question fits after a prefix of it: the
// questions of two facts differ by at most 10 bytes (names of 3 to 8 letters, each named twice). The
// fewer, the fewer facts fall in the cut end.
constexpr int64_t kSpareBytes = 16;
constexpr int64_t kAnswerRoom = 16;  // positions kept free past a needle prompt for its answer's digits

bool uses_retrievers(AttentionMode m) { return m != AttentionMode::kFull && m != AttentionMode::kWindow; }
bool has_budget(AttentionMode m) {
  return m == AttentionMode::kIvf || m == AttentionMode::kHnsw || m == AttentionMode::kRetrieval;
}

// The split backend's remote side: the retrievers of the mode being measured, or none (mode window:
// the offloaded keys are dropped, exactly as a null RemoteAttention drops them).
class RemoteSwitch final : public RemoteAttention {
 public:
  explicit RemoteSwitch(int64_t n_heads, int64_t head_dim) : n_heads_(n_heads), head_dim_(head_dim) {}
  void use(RemoteAttention* target) { target_ = target; }
  void begin(int64_t layer, int64_t position, const float* q, int64_t evict_position, const float* k,
             const float* v) override {
    if (target_ != nullptr) target_->begin(layer, position, q, evict_position, k, v);
  }
  void finish(int64_t layer, float* o, float* lse) override {
    if (target_ != nullptr) return target_->finish(layer, o, lse);
    std::fill(lse, lse + n_heads_, -std::numeric_limits<float>::infinity());
    std::fill(o, o + n_heads_ * head_dim_, 0.0f);
  }

 private:
  RemoteAttention* target_ = nullptr;
  int64_t n_heads_, head_dim_;
};

int32_t argmax(std::span<const float> logits) {
  return static_cast<int32_t>(std::max_element(logits.begin(), logits.end()) - logits.begin());
}

void log_softmax(std::span<const float> logits, std::vector<double>& out) {
  out.resize(logits.size());
  const double top = *std::max_element(logits.begin(), logits.end());
  double sum = 0.0;
  for (const float x : logits) sum += std::exp(static_cast<double>(x) - top);
  const double log_z = top + std::log(sum);
  for (size_t i = 0; i < logits.size(); ++i) out[i] = static_cast<double>(logits[i]) - log_z;
}

// A mode at a budget, and what it has gathered over the prompts of one length.
struct Variant {
  AttentionMode mode = AttentionMode::kFull;
  int budget = 0;                  // index into spec.scan, for modes with budgets
  std::optional<double> target;    // that budget's fraction
  RetrieverPool* pool = nullptr;   // null: full (its own backend) or window
  int64_t facts = 0, facts_correct = 0, digits = 0, digits_correct = 0;
  int64_t text_positions = 0, agree = 0;
  double kl_sum = 0.0;
  int64_t steps = 0;
  double seconds = 0.0;
  // Keys scored and offered in the needle steps and in the text steps apart: the text's 1,000 steps scan
  // a session tail of evicted tokens that grows to 1,000 rows, the needle's 6 steps almost none.
  int64_t scored[2] = {0, 0}, offered[2] = {0, 0};  // [kNeedle], [kText]
  std::vector<LayerRetrievalStats> layers;
};

class LengthRun {
 public:
  LengthRun(const AccuracySpec& spec, const LoadedModel& loaded, int64_t length, Clock::time_point deadline)
      : spec_(spec), loaded_(loaded), mc_(loaded.model.config), length_(length), deadline_(deadline),
        remote_(mc_.n_heads, mc_.head_dim) {
    // At the model's own length (64K of needle-byte-13m, as its eval.json counts it) the prompts end
    // where the answer and the text's fed positions still fit: a needle prompt kAnswerRoom tokens
    // shorter, the text's prompt text_positions shorter.
    needle_tokens_ = std::min(length_, mc_.max_position_embeddings - kAnswerRoom);
    text_tokens_ = std::min(length_, mc_.max_position_embeddings - spec.text_positions - 2);
    RA_REQUIRE(needle_tokens_ > spec.config.sinks + spec.config.window &&
                   (spec.text_file.empty() || text_tokens_ > spec.config.sinks + spec.config.window),
               "length {} with {} text positions leaves no offloaded positions in the model's {}", length_,
               spec.text_positions, mc_.max_position_embeddings);
    if (needle_tokens_ < length_ || (!spec.text_file.empty() && text_tokens_ < length_)) {
      std::fprintf(stderr, "ra bench accuracy: length %lld: needle prompts of %lld tokens and the text's of %lld, so "
                   "that the answer and the fed positions fit the model's %lld\n", static_cast<long long>(length_),
                   static_cast<long long>(needle_tokens_), static_cast<long long>(text_tokens_),
                   static_cast<long long>(mc_.max_position_embeddings));
    }
    const BackendKind kind = resolve_backend_kind(spec.config.backend);
    BackendOptions options;
    options.max_positions =
        std::min(mc_.max_position_embeddings, length_ + std::max<int64_t>(spec.text_positions, 16) + 64);
    options.threads = spec.config.worker_threads;
    full_ = make_backend(kind, loaded.model, options);
    options.static_set = {true, spec.config.sinks, spec.config.window, &remote_};
    options.qkv_observer = [this](const QkvChunk& chunk) {
      if (observer_) observer_(chunk);
    };
    split_ = make_backend(kind, loaded.model, options);
    logits_.resize(static_cast<size_t>(mc_.vocab_size));
    first_logits_.resize(logits_.size());

    const Geometry geometry = make_geometry(mc_, loaded.model.weight_dtype);
    for (const AttentionMode m : spec.modes) {
      if (!uses_retrievers(m)) continue;
      RunConfig c = spec.config;
      c.mode = m;
      c.index.scan_fraction = 0.0f;  // the budgets are given to the pool directly, all of them
      const std::vector<double> budgets = has_budget(m) ? spec.scan : std::vector<double>{};
      pools_.push_back(std::make_unique<RetrieverPool>(make_run_plan(c, geometry, detect_numa_topology(), {}), mc_,
                                                       budgets, spec.audit_recall));
      queries_ = queries_ || ships_prefill_queries(c) || !budgets.empty();
      if (m == AttentionMode::kRetrieval) graph_train_queries_ = c.index.graph_max_train_queries;
      RetrieverPool* pool = pools_.back().get();
      const size_t rows = budgets.empty() ? 1 : budgets.size();
      for (size_t b = 0; b < rows; ++b) {
        Variant v{.mode = m, .budget = static_cast<int>(b), .pool = pool};
        if (!budgets.empty()) v.target = budgets[b];
        variants_.push_back(std::move(v));
      }
    }
    for (const AttentionMode m : {AttentionMode::kWindow, AttentionMode::kFull}) {
      if (std::find(spec.modes.begin(), spec.modes.end(), m) != spec.modes.end()) {
        variants_.insert(variants_.begin(), Variant{.mode = m});
      }
    }
  }

  // The text, then every needle fact of every prompt that starts before the deadline.
  void run() {
    if (!spec_.text_file.empty()) text_case();
    for (int p = 0; p < spec_.prompts; ++p) {
      const auto started = Clock::now();
      if (started >= deadline_) {
        std::fprintf(stderr, "ra bench accuracy: %lld tokens: time limit reached after %d of %d prompts\n",
                     static_cast<long long>(length_), p, spec_.prompts);
        break;
      }
      // Every fact's prompt is `length_` tokens: BOS, a prefix of one haystack, its question. The
      // offloaded positions [S, length - W) are the same haystack bytes for all of them (a question is
      // shorter than the window), so the retrievers build once per haystack and every fact is asked
      // against the same indexes. The haystack is made longer than needed and cut.
      const uint64_t seed = spec_.seed + static_cast<uint64_t>(p);
      const NeedlePrompt prompt = make_needle_prompt(needle_tokens_ + kSpareBytes, spec_.facts, seed, spec_.haystack);
      const std::string asked = needle_question(prompt.question_name);
      RA_REQUIRE(prompt.text.ends_with(asked), "needle prompt (seed {}) does not end with its question", seed);
      const std::string haystack = prompt.text.substr(0, prompt.text.size() - asked.size());
      bool built = false;
      for (const NeedleFact& fact : prompt.facts) {
        const std::string question = needle_question(fact.name);
        const auto keep = static_cast<size_t>(needle_tokens_ - 1) - question.size();
        RA_REQUIRE(static_cast<int64_t>(question.size()) < spec_.config.window && keep <= haystack.size(),
                   "needle question of {} bytes for a window of {} and a length of {}", question.size(),
                   spec_.config.window, needle_tokens_);
        if (static_cast<size_t>(fact.offset + fact.length) > keep) {
          ++facts_cut_;  // its sentence lies in the bytes cut off: not asked
          continue;
        }
        const std::vector<int32_t> tokens = encode_prompt(loaded_, haystack.substr(0, keep) + question);
        const std::vector<int32_t> digits = loaded_.tokenizer->encode(fact.number);
        needle_case(tokens, digits, !built);
        built = true;
      }
      prompts_done_ = p + 1;
      std::fprintf(stderr, "ra bench accuracy: %lld tokens, prompt %d of %d (seed %llu): %d facts, %.1f s\n",
                   static_cast<long long>(length_), p + 1, spec_.prompts, static_cast<unsigned long long>(seed),
                   spec_.facts, std::chrono::duration<double>(Clock::now() - started).count());
    }
  }

  std::vector<json> rows() const {
    std::vector<json> out;
    for (const Variant& v : variants_) {
      out.push_back(row(v));
      out.back()["needle_facts_cut"] = facts_cut_;
    }
    return out;
  }

 private:
  // Prefills `tokens` on both backends; with `ship`, the offloaded KV goes to every pool, which builds
  // (otherwise the pools keep the build of a prompt with the same offloaded positions).
  void prefill(const std::vector<int32_t>& tokens, bool ship) {
    full_->reset();
    full_->forward(tokens, full_first_);
    split_->reset();
    const auto n = static_cast<int64_t>(tokens.size());
    if (!ship) {
      split_->forward(tokens, first_logits_);
      split_->keep_base();
      return;
    }
    const int64_t train = graph_train_queries_ >= 0 ? graph_train_queries_ : 256;
    // K and V held in the forms the retrievers take (the pools share the spec's kv dtype, so its forms).
    const KvWireFormat kv_rows = pools_.empty() ? KvWireFormat{} : pools_.front()->client().kv_rows();
    PrefillCapture capture(mc_, n, spec_.config.sinks, spec_.config.window, train, queries_, kv_rows);
    observer_ = capture.observer();
    split_->forward(tokens, first_logits_);
    observer_ = nullptr;
    split_->keep_base();
    for (const auto& pool : pools_) pool->build(capture, n);
  }

  // Back to the state right after the prefill of `tokens` (the retrievers rewind themselves).
  // A backend that keeps only the window (CUDA with a static set) returns to the copy of it kept after
  // the prefill (Backend::keep_base); one that cannot at all is prefilled again.
  void restore(Backend& b, const std::vector<int32_t>& tokens) {
    const auto n = static_cast<int64_t>(tokens.size());
    if (b.can_truncate_to(n)) return b.truncate(n);
    b.reset();
    b.forward(tokens, logits_);
    b.keep_base();
  }

  // Predictions of a teacher-forced continuation: prediction 0 from `first`, prediction i after
  // feeding feed[i - 1]. on_prediction(i, logits).
  template <typename F>
  void force(Backend& b, std::span<const float> first, std::span<const int32_t> feed, F&& on_prediction) {
    on_prediction(size_t{0}, first);
    for (size_t i = 0; i < feed.size(); ++i) {
      b.forward(feed.subspan(i, 1), logits_);
      on_prediction(i + 1, std::span<const float>(logits_));
    }
  }

  // Runs every variant from the prefilled state; measure(variant, backend, first logits).
  enum Case { kNeedle = 0, kText = 1 };

  template <typename Measure>
  void each_variant(Case which, const std::vector<int32_t>& tokens, int64_t steps, Measure&& measure) {
    for (Variant& v : variants_) {
      const bool full = v.mode == AttentionMode::kFull;
      Backend& b = full ? *full_ : *split_;
      remote_.use(v.pool != nullptr ? &v.pool->client() : nullptr);
      if (v.pool != nullptr) {
        v.pool->use_budget(v.budget);
        v.pool->client().reset_stats();
      }
      const auto started = Clock::now();
      measure(v, b, std::span<const float>(full ? full_first_ : first_logits_));
      v.seconds += std::chrono::duration<double>(Clock::now() - started).count();
      v.steps += steps;
      if (v.pool != nullptr) {
        const RetrievalStats& s = v.pool->client().stats();
        if (v.layers.empty()) v.layers.resize(s.layers.size());
        for (size_t l = 0; l < s.layers.size(); ++l) {
          v.layers[l].distance_computations += s.layers[l].distance_computations;
          v.layers[l].keys_offered += s.layers[l].keys_offered;
          v.layers[l].recall_hits += s.layers[l].recall_hits;
          v.layers[l].recall_wanted += s.layers[l].recall_wanted;
          v.scored[which] += s.layers[l].distance_computations;
          v.offered[which] += s.layers[l].keys_offered;
        }
      }
      restore(b, tokens);
      if (v.pool != nullptr) v.pool->rewind();
    }
    remote_.use(nullptr);
  }

  void needle_case(const std::vector<int32_t>& tokens, const std::vector<int32_t>& digits, bool ship) {
    prefill(tokens, ship);
    const std::span<const int32_t> feed(digits.data(), digits.size() - 1);
    each_variant(kNeedle, tokens, static_cast<int64_t>(feed.size()), [&](Variant& v, Backend& b, std::span<const float> first) {
      int64_t correct = 0;
      force(b, first, feed, [&](size_t i, std::span<const float> logits) {
        correct += argmax(logits) == digits[i] ? 1 : 0;
      });
      v.facts += 1;
      v.facts_correct += correct == static_cast<int64_t>(digits.size()) ? 1 : 0;
      v.digits += static_cast<int64_t>(digits.size());
      v.digits_correct += correct;
    });
  }

  // length_ tokens of the text as the prompt, then text_positions tokens fed: each step's distribution
  // against full attention's (prediction 0 comes from the prefill, the same in every mode: not counted).
  void text_case() {
    std::ifstream in(spec_.text_file, std::ios::binary);
    RA_REQUIRE(in.good(), "--text {}: cannot open", spec_.text_file);
    const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    std::vector<int32_t> all = encode_prompt(loaded_, text);
    const int64_t need = text_tokens_ + spec_.text_positions;
    RA_REQUIRE(static_cast<int64_t>(all.size()) >= need,
               "--text {}: {} tokens, and a prompt of {} with {} text positions needs {}", spec_.text_file,
               all.size(), text_tokens_, spec_.text_positions, need);
    const std::vector<int32_t> prompt(all.begin(), all.begin() + text_tokens_);
    const std::span<const int32_t> feed(all.data() + text_tokens_, static_cast<size_t>(spec_.text_positions));
    prefill(prompt, true);
    // Full attention's log-probabilities at every position, then every variant against them.
    const auto vocab = static_cast<size_t>(mc_.vocab_size);
    std::vector<float> reference(feed.size() * vocab);
    std::vector<int32_t> reference_top(feed.size());
    std::vector<double> lp;
    force(*full_, full_first_, feed, [&](size_t i, std::span<const float> logits) {
      if (i == 0) return;
      log_softmax(logits, lp);
      std::copy(lp.begin(), lp.end(), reference.begin() + static_cast<std::ptrdiff_t>((i - 1) * vocab));
      reference_top[i - 1] = argmax(logits);
    });
    restore(*full_, prompt);
    each_variant(kText, prompt, static_cast<int64_t>(feed.size()), [&](Variant& v, Backend& b, std::span<const float> first) {
      std::vector<double> mine;
      force(b, first, feed, [&](size_t i, std::span<const float> logits) {
        if (i == 0) return;
        log_softmax(logits, mine);
        const float* ref = reference.data() + (i - 1) * vocab;
        double kl = 0.0;
        for (size_t t = 0; t < vocab; ++t) kl += std::exp(static_cast<double>(ref[t])) * (ref[t] - mine[t]);
        v.kl_sum += std::max(0.0, kl);
        v.agree += argmax(logits) == reference_top[i - 1] ? 1 : 0;
        v.text_positions += 1;
      });
    });
  }

  json row(const Variant& v) const {
    json r;
    r["length"] = length_;
    r["needle_prompt_tokens"] = needle_tokens_;
    if (!spec_.text_file.empty()) r["text_prompt_tokens"] = text_tokens_;
    r["mode"] = std::string(name(v.mode));
    r["kv_dtype"] = spec_.config.kv_dtype;  // the retrievers' store (auto: the checkpoint's)
    // Rows made before the field existed were built with -1 (merge_rows.py reads its absence so).
    r["graph_connect_max_in_degree"] = spec_.config.index.graph_connect_max_in_degree;
    r["scan_target"] = v.target ? json(*v.target) : json(nullptr);
    int64_t dc = 0, offered = 0, hits = 0, wanted = 0;
    json per_layer = json::array(), hits_per_layer = json::array(), wanted_per_layer = json::array();
    for (const LayerRetrievalStats& l : v.layers) {
      dc += l.distance_computations, offered += l.keys_offered, hits += l.recall_hits, wanted += l.recall_wanted;
      per_layer.push_back(l.recall_wanted > 0 ? json(static_cast<double>(l.recall_hits) / static_cast<double>(l.recall_wanted))
                                              : json(nullptr));
      hits_per_layer.push_back(l.recall_hits);
      wanted_per_layer.push_back(l.recall_wanted);
    }
    // Full attention scores every key, the window none of the offloaded ones.
    const double scanned = v.pool != nullptr ? (offered > 0 ? static_cast<double>(dc) / static_cast<double>(offered) : 0.0)
                                             : (v.mode == AttentionMode::kFull ? 1.0 : 0.0);
    r["scanned"] = scanned;
    auto fraction = [&](int which) {
      return v.offered[which] > 0 ? json(static_cast<double>(v.scored[which]) / static_cast<double>(v.offered[which]))
                                  : json(nullptr);
    };
    r["scanned_needle"] = fraction(kNeedle);
    r["scanned_text"] = fraction(kText);
    r["needle_facts"] = v.facts;
    r["needle_correct"] = v.facts_correct;
    r["needle_accuracy"] = v.facts > 0 ? json(static_cast<double>(v.facts_correct) / static_cast<double>(v.facts)) : json(nullptr);
    r["needle_digit_accuracy"] =
        v.digits > 0 ? json(static_cast<double>(v.digits_correct) / static_cast<double>(v.digits)) : json(nullptr);
    r["text_positions"] = v.text_positions;
    r["agreement"] = v.text_positions > 0 ? json(static_cast<double>(v.agree) / static_cast<double>(v.text_positions))
                                          : json(nullptr);
    r["kl_mean"] = v.text_positions > 0 ? json(v.kl_sum / static_cast<double>(v.text_positions)) : json(nullptr);
    r["recall"] = wanted > 0 ? json(static_cast<double>(hits) / static_cast<double>(wanted)) : json(nullptr);
    r["recall_per_layer"] = per_layer;
    r["decode_steps"] = v.steps;
    r["ms_per_step"] = v.steps > 0 ? 1e3 * v.seconds / static_cast<double>(v.steps) : 0.0;
    r["top_k"] = v.pool != nullptr ? json(spec_.config.index.top_k) : json(nullptr);
    r["prompts"] = prompts_done_;
    r["seed"] = spec_.seed;
    r["needle_digits"] = v.digits;
    r["needle_digits_correct"] = v.digits_correct;
    r["text_agree"] = v.agree;
    r["kl_sum"] = v.kl_sum;
    r["scored_needle"] = v.scored[kNeedle];
    r["offered_needle"] = v.offered[kNeedle];
    r["scored_text"] = v.scored[kText];
    r["offered_text"] = v.offered[kText];
    r["recall_hits_per_layer"] = hits_per_layer;
    r["recall_wanted_per_layer"] = wanted_per_layer;
    r["seconds"] = v.seconds;
    return r;
  }

  const AccuracySpec& spec_;
  const LoadedModel& loaded_;
  const ModelConfig& mc_;
  int64_t length_;
  int64_t needle_tokens_ = 0, text_tokens_ = 0;  // the prompts' tokens: length_, or less at the model's limit
  Clock::time_point deadline_;
  int prompts_done_ = 0;
  RemoteSwitch remote_;
  std::unique_ptr<Backend> full_, split_;
  QkvObserver observer_;  // the current prefill's capture (the split backend's observer calls it)
  std::vector<std::unique_ptr<RetrieverPool>> pools_;
  bool queries_ = false;             // some pool's retrievers take the prefill's queries
  int64_t graph_train_queries_ = -1; // the graph's setting when mode retrieval runs (else 256 for budgets)
  std::vector<Variant> variants_;
  int64_t facts_cut_ = 0;  // facts whose sentence fell in the haystack's cut end (not asked)
  std::vector<float> logits_, first_logits_;
  std::vector<float> full_first_ = std::vector<float>(static_cast<size_t>(mc_.vocab_size));
};

}  // namespace

std::vector<json> run_accuracy(const AccuracySpec& spec, const LoadedModel& loaded,
                               const std::function<void(const json&)>& on_row) {
  RA_REQUIRE(!spec.lengths.empty() && !spec.modes.empty(), "ra bench accuracy: no lengths or no modes");
  RA_REQUIRE(spec.prompts >= 0 && spec.facts >= 1 && spec.text_positions >= 0,
             "ra bench accuracy: prompts {} (>= 0), facts {} (>= 1), text positions {} (>= 0)", spec.prompts,
             spec.facts, spec.text_positions);
  for (const double f : spec.scan) {
    RA_REQUIRE(f > 0.0 && f <= 1.0, "ra bench accuracy: scan fraction {} is outside (0, 1]", f);
  }
  RA_REQUIRE(spec.time_limit_s >= 0.0, "ra bench accuracy: time limit {} s is negative", spec.time_limit_s);
  const Clock::time_point deadline =
      spec.time_limit_s > 0.0 ? Clock::now() + std::chrono::duration_cast<Clock::duration>(
                                                   std::chrono::duration<double>(spec.time_limit_s))
                              : Clock::time_point::max();
  std::vector<json> all;
  for (const int64_t length : spec.lengths) {
    LengthRun run(spec, loaded, length, deadline);
    run.run();
    for (json& r : run.rows()) {
      on_row(r);
      all.push_back(std::move(r));
    }
  }
  return all;
}

}  // namespace ra::bench
