#include "gpu_worker/model/hf_decoder.h"

#include "common/error.h"
#include "gpu_worker/model/bpe_model.h"
#include "gpu_worker/model/onig_regex.h"
#include "gpu_worker/model/utf8.h"

namespace ra {
namespace {

using Stage = DecodeStage;

// Appends every piece to the output.
class OutputStage final : public Stage {
 public:
  void push(DecodePiece piece, std::string& out) override { out.append(piece.text); }
  void finish(std::string& /*out*/) override {}
  void end_prompt(std::string& /*out*/) override {}
};

// Base of the stages that have a successor.
class ChainedStage : public Stage {
 public:
  explicit ChainedStage(std::unique_ptr<Stage> next) : next_(std::move(next)) {}
  void finish(std::string& out) override { next_->finish(out); }
  void end_prompt(std::string& out) override { next_->end_prompt(out); }

 protected:
  std::unique_ptr<Stage> next_;
};

// No decoder: the reference joins the token strings with single spaces.
class JoinWithSpacesStage final : public ChainedStage {
 public:
  using ChainedStage::ChainedStage;
  void push(DecodePiece piece, std::string& out) override {
    if (!piece.continues && !first_) next_->push({" ", true}, out);
    first_ = false;
    next_->push({piece.text, true}, out);
  }

 private:
  bool first_ = true;
};

// Replace: every occurrence of a literal or an Oniguruma regex in each string becomes `content`.
class ReplaceStage final : public ChainedStage {
 public:
  ReplaceStage(std::unique_ptr<Stage> next, const HfDecoderStep& step, const OnigRegex* regex)
      : ChainedStage(std::move(next)), literal_(step.pattern.text), content_(step.text), regex_(regex) {}
  void push(DecodePiece piece, std::string& out) override {
    buffer_.clear();
    const std::string_view s = piece.text;
    size_t done = 0;
    bool replaced = false;
    auto replace = [&](size_t start, size_t end) {
      buffer_.append(s.substr(done, start - done));
      buffer_.append(content_);
      done = end;
      replaced = true;
    };
    if (regex_ != nullptr) {
      regex_->for_each_match(s, replace);
    } else if (!literal_.empty()) {
      for (size_t at = s.find(literal_); at != std::string_view::npos; at = s.find(literal_, done)) {
        replace(at, at + literal_.size());
      }
    }
    if (!replaced) {
      next_->push(piece, out);
      return;
    }
    buffer_.append(s.substr(done));
    next_->push({buffer_, piece.continues}, out);
  }

 private:
  std::string literal_, content_;
  const OnigRegex* regex_;
  std::string buffer_;
};

// The byte a <0xNN> piece stands for, as the reference parses it (u8::from_str_radix of the two
// characters after "<0x", which also accepts "+N"); -1 for other strings.
int fallback_byte(std::string_view s) {
  if (s.size() != 6 || s.substr(0, 3) != "<0x" || s[5] != '>') return -1;
  auto hex = [](char c) {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  if (s[3] == '+') return hex(s[4]);
  const int hi = hex(s[3]), lo = hex(s[4]);
  return hi < 0 || lo < 0 ? -1 : hi * 16 + lo;
}

class ByteFallbackStage final : public ChainedStage {
 public:
  ByteFallbackStage(std::unique_ptr<Stage> next, bool raw) : ChainedStage(std::move(next)), raw_(raw) {}
  void push(DecodePiece piece, std::string& out) override {
    const int byte = fallback_byte(piece.text);
    if (byte >= 0) {
      const char c = static_cast<char>(byte);
      if (raw_) {
        next_->push({std::string_view(&c, 1), false}, out);
      } else {
        group_.push_back(c);
      }
      return;
    }
    flush(out);
    next_->push(piece, out);
  }
  void finish(std::string& out) override {
    flush(out);
    next_->finish(out);
  }
  void end_prompt(std::string& out) override {
    flush(out);
    next_->end_prompt(out);
  }

 private:
  void flush(std::string& out) {
    if (group_.empty()) return;
    if (utf8_is_valid(group_)) {
      next_->push({group_, false}, out);
    } else {
      static const std::string kReplacement = "\xEF\xBF\xBD";
      for (size_t i = 0; i < group_.size(); ++i) next_->push({kReplacement, false}, out);
    }
    group_.clear();
  }

  bool raw_;
  std::string group_;  // bytes of the current run of <0xNN> pieces
};

// Fuse: one string from here on.
class FuseStage final : public ChainedStage {
 public:
  using ChainedStage::ChainedStage;
  void push(DecodePiece piece, std::string& out) override {
    next_->push({piece.text, !first_}, out);
    first_ = false;
  }

 private:
  bool first_ = true;
};

// ByteLevel: characters back to bytes (a string with a character outside the 256 stands for its own
// UTF-8 bytes), all strings decoded as one lossy UTF-8 stream.
class ByteLevelStage final : public ChainedStage {
 public:
  ByteLevelStage(std::unique_ptr<Stage> next, bool raw)
      : ChainedStage(std::move(next)), raw_(raw), assembler_(/*replace_invalid=*/true) {}
  void push(DecodePiece piece, std::string& out) override {
    bytes_.clear();
    const std::string_view s = piece.text;
    for (size_t i = 0; i < s.size();) {
      char32_t cp = 0;
      i += utf8_decode(s, i, cp);
      const int b = byte_level_byte(cp);
      if (b < 0) {
        bytes_.assign(s);
        break;
      }
      bytes_.push_back(static_cast<char>(b));
    }
    if (raw_) {
      emit(bytes_, out);
      return;
    }
    text_.clear();
    assembler_.push(bytes_, text_);
    emit(text_, out);
  }
  void finish(std::string& out) override {
    text_.clear();
    assembler_.finish(text_);
    emit(text_, out);
    next_->finish(out);
  }

 private:
  void emit(const std::string& s, std::string& out) {
    if (s.empty()) return;
    next_->push({s, !first_}, out);
    first_ = false;
  }

  bool raw_;
  bool first_ = true;
  Utf8Assembler assembler_;
  std::string bytes_, text_;
};

// Strip: per string, up to `start` leading and `stop` trailing copies of one character. Each string
// it passes on begins with an empty piece, so that a string stripped to nothing still counts as one.
class StripStage final : public ChainedStage {
 public:
  StripStage(std::unique_ptr<Stage> next, const HfDecoderStep& step)
      : ChainedStage(std::move(next)), content_(step.text), start_(step.start), stop_(step.stop) {}
  void push(DecodePiece piece, std::string& out) override {
    if (!piece.continues) {
      end_string(out);
      next_->push({std::string_view(), false}, out);
      lead_left_ = start_;
    }
    std::string_view s = piece.text;
    while (lead_left_ > 0 && s.substr(0, content_.size()) == content_) {
      s.remove_prefix(content_.size());
      --lead_left_;
    }
    if (!s.empty()) lead_left_ = 0;  // a character that is not stripped ends the leading run
    if (stop_ == 0) {
      if (!s.empty()) next_->push({s, true}, out);
      return;
    }
    // Hold back the trailing run of `content`; release what comes before it.
    size_t run_start = s.size();
    while (run_start >= content_.size() && s.substr(run_start - content_.size(), content_.size()) == content_) {
      run_start -= content_.size();
    }
    if (run_start > 0) {
      buffer_.assign(held_);
      buffer_.append(s.substr(0, run_start));
      held_.clear();
      held_count_ = 0;
      next_->push({buffer_, true}, out);
    }
    held_.append(s.substr(run_start));
    held_count_ += (s.size() - run_start) / content_.size();
  }
  void finish(std::string& out) override {
    end_string(out);
    next_->finish(out);
  }

 private:
  // The string ended: its trailing run loses up to `stop` characters.
  void end_string(std::string& out) {
    const size_t keep = held_count_ > stop_ ? held_count_ - stop_ : 0;
    if (keep > 0) {
      buffer_.assign(held_, 0, keep * content_.size());
      next_->push({buffer_, true}, out);
    }
    held_.clear();
    held_count_ = 0;
  }

  std::string content_;
  size_t start_, stop_;
  size_t lead_left_ = 0;
  std::string held_;  // the trailing run of `content` not yet passed on (stop > 0)
  size_t held_count_ = 0;
  std::string buffer_;
};

// Metaspace: the replacement character becomes a space, except in the first string, where it is dropped
// (unless prepend_scheme is never).
class MetaspaceStage final : public ChainedStage {
 public:
  MetaspaceStage(std::unique_ptr<Stage> next, const HfDecoderStep& step)
      : ChainedStage(std::move(next)), replacement_(step.text), drop_in_first_(step.prepend_scheme != HfPrependScheme::kNever) {}
  void push(DecodePiece piece, std::string& out) override {
    if (!piece.continues) ++strings_;
    const bool drop = strings_ == 1 && drop_in_first_;
    buffer_.clear();
    const std::string_view s = piece.text;
    size_t done = 0;
    for (size_t at = s.find(replacement_); at != std::string_view::npos; at = s.find(replacement_, done)) {
      buffer_.append(s.substr(done, at - done));
      if (!drop) buffer_.push_back(' ');
      done = at + replacement_.size();
    }
    buffer_.append(s.substr(done));
    next_->push({buffer_, piece.continues}, out);
  }

 private:
  std::string replacement_;
  bool drop_in_first_;
  size_t strings_ = 0;  // strings begun so far
  std::string buffer_;
};

bool single_character(const std::string& s) {
  if (s.empty()) return false;
  char32_t cp = 0;
  return utf8_decode(s, 0, cp) == s.size();
}

}  // namespace

HfDecoderChain::HfDecoderChain(const HfTokenizerSpec& spec)
    : steps_(spec.decoder), join_with_spaces_(!spec.has_decoder) {
  bool joined = false;    // a Fuse or ByteLevel came before
  bool stripped = false;  // a Strip came before
  for (size_t i = 0; i < steps_.size(); ++i) {
    const HfDecoderStep& s = steps_[i];
    std::unique_ptr<OnigRegex> regex;
    const std::string where = fmt::format("{}: field 'decoder' (step {}, Replace)", spec.source, i);
    switch (s.kind) {
      case HfDecoderStep::Kind::kReplace:
        if (s.pattern.is_regex) regex = std::make_unique<OnigRegex>(s.pattern.text, where);
        RA_REQUIRE(!joined || (!s.pattern.is_regex && single_character(s.pattern.text)),
                   "{}: field 'decoder': a Replace of '{}' after Fuse or ByteLevel is not supported (only a single "
                   "character can be replaced there)", spec.source, s.pattern.text);
        break;
      case HfDecoderStep::Kind::kByteFallback:
        RA_REQUIRE(!joined && !stripped, "{}: field 'decoder': ByteFallback after Fuse, ByteLevel or Strip is not "
                   "supported", spec.source);
        break;
      case HfDecoderStep::Kind::kFuse:
      case HfDecoderStep::Kind::kByteLevel:
        joined = true;
        break;
      case HfDecoderStep::Kind::kStrip:
        stripped = true;
        break;
      case HfDecoderStep::Kind::kMetaspace:
        break;
    }
    regexes_.push_back(std::move(regex));
  }
}

HfDecoderChain::~HfDecoderChain() = default;

std::unique_ptr<DecodeStage> HfDecoderChain::start(bool raw) const {
  std::unique_ptr<Stage> stage = std::make_unique<OutputStage>();
  if (join_with_spaces_) return std::make_unique<JoinWithSpacesStage>(std::move(stage));
  for (size_t i = steps_.size(); i-- > 0;) {
    const HfDecoderStep& s = steps_[i];
    switch (s.kind) {
      case HfDecoderStep::Kind::kByteLevel:
        stage = std::make_unique<ByteLevelStage>(std::move(stage), raw);
        break;
      case HfDecoderStep::Kind::kReplace:
        stage = std::make_unique<ReplaceStage>(std::move(stage), s, regexes_[i].get());
        break;
      case HfDecoderStep::Kind::kByteFallback:
        stage = std::make_unique<ByteFallbackStage>(std::move(stage), raw);
        break;
      case HfDecoderStep::Kind::kFuse:
        stage = std::make_unique<FuseStage>(std::move(stage));
        break;
      case HfDecoderStep::Kind::kStrip:
        stage = std::make_unique<StripStage>(std::move(stage), s);
        break;
      case HfDecoderStep::Kind::kMetaspace:
        stage = std::make_unique<MetaspaceStage>(std::move(stage), s);
        break;
    }
  }
  return stage;
}

}  // namespace ra
