#include "gpu_worker/model/hf_pre_tokenizer.h"

#include <algorithm>

#include "common/error.h"
#include "gpu_worker/model/hf_normalizer.h"
#include "gpu_worker/model/onig_regex.h"

namespace ra {
namespace {

// ByteLevel's own split pattern (GPT-2), used when its use_regex is true.
constexpr const char* kByteLevelPattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

struct Span {
  size_t start, end;
  bool flag;  // before folding: is a match; after: is removed
};

// The reference's Pattern::find_matches: the matches and the gaps between them, covering `text`.
void find_matches(std::string_view text, const OnigRegex* regex, const std::string& literal, std::vector<Span>& out) {
  out.clear();
  if (text.empty()) {
    out.push_back({0, 0, false});
    return;
  }
  size_t prev = 0;
  auto on_match = [&](size_t start, size_t end) {
    if (prev != start) out.push_back({prev, start, false});
    out.push_back({start, end, true});
    prev = end;
  };
  if (regex != nullptr) {
    regex->for_each_match(text, on_match);
  } else if (!literal.empty()) {
    for (size_t at = text.find(literal); at != std::string_view::npos; at = text.find(literal, prev)) {
      on_match(at, at + literal.size());
    }
  }
  if (prev != text.size()) out.push_back({prev, text.size(), false});
}

// NormalizedString::split's folding of matches by behavior; on return `flag` means "removed".
void fold(std::vector<Span>& spans, HfSplitBehavior behavior) {
  std::vector<Span> acc;
  bool previous_match = false;
  switch (behavior) {
    case HfSplitBehavior::kIsolated:
      for (Span& s : spans) s.flag = false;
      return;
    case HfSplitBehavior::kRemoved:
      return;
    case HfSplitBehavior::kContiguous:
      for (const Span& s : spans) {
        if (s.flag == previous_match && !acc.empty()) {
          acc.back().end = s.end;
        } else {
          acc.push_back({s.start, s.end, false});
        }
        previous_match = s.flag;
      }
      break;
    case HfSplitBehavior::kMergedWithPrevious:
      for (const Span& s : spans) {
        if (s.flag && !previous_match && !acc.empty()) {
          acc.back().end = s.end;
        } else {
          acc.push_back({s.start, s.end, false});
        }
        previous_match = s.flag;
      }
      break;
    case HfSplitBehavior::kMergedWithNext:
      for (size_t i = spans.size(); i-- > 0;) {
        const Span& s = spans[i];
        if (s.flag && !previous_match && !acc.empty()) {
          acc.back().start = s.start;
        } else {
          acc.push_back({s.start, s.end, false});
        }
        previous_match = s.flag;
      }
      std::reverse(acc.begin(), acc.end());
      break;
  }
  spans.swap(acc);
}

}  // namespace

HfPreTokenizer::HfPreTokenizer(const std::vector<HfPreTokenizerStep>& steps, const std::string& source) : steps_(steps) {
  for (size_t i = 0; i < steps_.size(); ++i) {
    const HfPreTokenizerStep& s = steps_[i];
    const std::string where = fmt::format("{}: field 'pre_tokenizer' (step {})", source, i);
    std::unique_ptr<OnigRegex> regex;
    if (s.kind == HfPreTokenizerStep::Kind::kSplit && s.pattern.is_regex) {
      regex = std::make_unique<OnigRegex>(s.pattern.text, where);
    } else if (s.kind == HfPreTokenizerStep::Kind::kByteLevel && s.use_regex) {
      regex = std::make_unique<OnigRegex>(kByteLevelPattern, where);
    }
    byte_level_ = byte_level_ || s.kind == HfPreTokenizerStep::Kind::kByteLevel;
    regexes_.push_back(std::move(regex));
  }
}

HfPreTokenizer::~HfPreTokenizer() = default;
HfPreTokenizer::HfPreTokenizer(HfPreTokenizer&&) noexcept = default;

void HfPreTokenizer::split(std::string_view text, bool at_origin, FunctionRef<void(std::string_view)> emit) const {
  run(0, text, at_origin, emit);
}

void HfPreTokenizer::run(size_t step, std::string_view text, bool at_origin, FunctionRef<void(std::string_view)> emit) const {
  if (text.empty()) return;
  if (step == steps_.size()) {
    emit(text);
    return;
  }
  const HfPreTokenizerStep& s = steps_[step];
  switch (s.kind) {
    case HfPreTokenizerStep::Kind::kSplit:
      run_split(step, regexes_[step].get(), s.pattern.text, s.behavior, s.invert, text, at_origin, emit);
      return;
    case HfPreTokenizerStep::Kind::kByteLevel: {
      std::string prefixed;
      if (s.add_prefix_space && text[0] != ' ') {
        prefixed = " ";
        prefixed.append(text);
        text = prefixed;
      }
      if (s.use_regex) {
        run_split(step, regexes_[step].get(), {}, HfSplitBehavior::kIsolated, false, text, at_origin, emit);
      } else {
        run(step + 1, text, at_origin, emit);
      }
      return;
    }
    case HfPreTokenizerStep::Kind::kMetaspace: {
      std::string replaced;
      replace_all(text, " ", nullptr, s.replacement, replaced);
      const bool starts = replaced.compare(0, s.replacement.size(), s.replacement) == 0;
      const bool prepend = !starts && (s.prepend_scheme == HfPrependScheme::kAlways ||
                                       (s.prepend_scheme == HfPrependScheme::kFirst && at_origin));
      if (prepend) replaced.insert(0, s.replacement);
      if (s.split) {
        run_split(step, nullptr, s.replacement, HfSplitBehavior::kMergedWithNext, false, replaced, at_origin, emit);
      } else {
        run(step + 1, replaced, at_origin, emit);
      }
      return;
    }
  }
}

void HfPreTokenizer::run_split(size_t step, const OnigRegex* regex, const std::string& literal, HfSplitBehavior behavior,
                               bool invert, std::string_view text, bool at_origin,
                               FunctionRef<void(std::string_view)> emit) const {
  if (behavior == HfSplitBehavior::kIsolated) {
    // Every match and every gap is a piece of its own, whatever `invert` says: no list needed.
    size_t prev = 0;
    auto piece = [&](size_t start, size_t end) { run(step + 1, text.substr(start, end - start), at_origin && start == 0, emit); };
    auto on_match = [&](size_t start, size_t end) {
      if (prev != start) piece(prev, start);
      piece(start, end);
      prev = end;
    };
    if (regex != nullptr) {
      regex->for_each_match(text, on_match);
    } else if (!literal.empty()) {
      for (size_t at = text.find(literal); at != std::string_view::npos; at = text.find(literal, prev)) {
        on_match(at, at + literal.size());
      }
    }
    if (prev != text.size()) piece(prev, text.size());
    return;
  }
  std::vector<Span> spans;
  find_matches(text, regex, literal, spans);
  if (invert) {
    for (Span& s : spans) s.flag = !s.flag;
  }
  fold(spans, behavior);
  for (const Span& s : spans) {
    if (!s.flag && s.end > s.start) run(step + 1, text.substr(s.start, s.end - s.start), at_origin && s.start == 0, emit);
  }
}

}  // namespace ra
