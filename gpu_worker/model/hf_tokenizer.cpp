#include "gpu_worker/model/hf_tokenizer.h"

#include <algorithm>

#include "common/error.h"
#include "gpu_worker/model/utf8.h"

namespace ra {
namespace {

constexpr uint8_t kNoToken = 0, kToken = 1, kSpecial = 2;

std::vector<AddedTokenSplitter::Token> splitter_tokens(const HfTokenizerSpec& spec, const HfNormalizer& normalizer,
                                                       bool normalized) {
  std::vector<AddedTokenSplitter::Token> out;
  for (const HfAddedToken& a : spec.added_tokens) {
    if (a.normalized != normalized) continue;
    AddedTokenSplitter::Token t{a.content, a.id, a.lstrip, a.rstrip, a.single_word};
    if (normalized && !normalizer.empty()) normalizer.apply(a.content, t.content);
    if (!t.content.empty()) out.push_back(std::move(t));
  }
  return out;
}

class HfStreamDecoder final : public StreamDecoder {
 public:
  HfStreamDecoder(const HfTokenizer& tokenizer, std::unique_ptr<DecodeStage> stages, bool skip_special)
      : tokenizer_(tokenizer), stages_(std::move(stages)), skip_special_(skip_special) {}

  // Decodes `id` into `out` (the reference filters ids without a token, and special ones when asked).
  void feed(int32_t id, std::string& out) {
    const std::string* text = tokenizer_.token_text(id);
    if (text == nullptr || (skip_special_ && tokenizer_.is_special(id))) return;
    stages_->push({*text, false}, out);
  }
  // Runs `context` through the chain for its state only.
  void prime(std::span<const int32_t> context) {
    std::string discard;
    for (int32_t id : context) {
      feed(id, discard);
      discard.clear();
    }
    stages_->end_prompt(discard);
  }
  std::string put(int32_t token) override {
    std::string out;
    feed(token, out);
    return out;
  }
  std::string finish() override {
    std::string out;
    if (!finished_) stages_->finish(out);
    finished_ = true;
    return out;
  }

 private:
  const HfTokenizer& tokenizer_;
  std::unique_ptr<DecodeStage> stages_;
  bool skip_special_;
  bool finished_ = false;
};

}  // namespace

HfTokenizer::HfTokenizer(const std::filesystem::path& tokenizer_json)
    : HfTokenizer(read_tokenizer_json(tokenizer_json), tokenizer_json) {}

HfTokenizer::HfTokenizer(const HfTokenizerSpec& spec, const std::filesystem::path& tokenizer_json)
    : source_(spec.source),
      normalizer_(spec.normalizer, spec.source),
      pre_tokenizer_(spec.pre_tokenizer, spec.source),
      decoder_(spec),
      raw_added_(splitter_tokens(spec, normalizer_, false)),
      normalized_added_(splitter_tokens(spec, normalizer_, true)),
      template_prefix_(spec.template_prefix),
      template_suffix_(spec.template_suffix) {
  bpe_ = std::make_unique<BpeModel>(spec.model, pre_tokenizer_.byte_level(), spec.source);

  // The decoding table: the model's tokens, overridden by added tokens (by their content, or for a
  // normalized one its normalized content, as the reference's simple_id_to_token).
  int32_t limit = bpe_->id_limit();
  for (const HfAddedToken& a : spec.added_tokens) limit = std::max(limit, a.id + 1);
  id_text_.assign(static_cast<size_t>(limit), std::string());
  id_kind_.assign(static_cast<size_t>(limit), kNoToken);
  for (int32_t id = 0; id < bpe_->id_limit(); ++id) {
    if (const std::string* t = bpe_->token(id)) {
      id_text_[static_cast<size_t>(id)] = *t;
      id_kind_[static_cast<size_t>(id)] = kToken;
    }
  }
  std::vector<std::string> special_contents;
  for (const HfAddedToken& a : spec.added_tokens) {
    std::string text = a.content;
    if (a.normalized && !normalizer_.empty()) normalizer_.apply(a.content, text);
    id_text_[static_cast<size_t>(a.id)] = text;
    id_kind_[static_cast<size_t>(a.id)] = a.special ? kSpecial : kToken;
    if (a.special) special_contents.push_back(a.content);
  }
  // The reference skips by content: any id whose string is a special token's content is special.
  if (!special_contents.empty()) {
    for (size_t id = 0; id < id_text_.size(); ++id) {
      if (id_kind_[id] == kToken &&
          std::find(special_contents.begin(), special_contents.end(), id_text_[id]) != special_contents.end()) {
        id_kind_[id] = kSpecial;
      }
    }
  }

  // BOS / EOS from tokenizer_config.json and generation_config.json, else from the post-processor.
  const auto dir = tokenizer_json.has_parent_path() ? tokenizer_json.parent_path() : std::filesystem::path(".");
  const HfSpecialIds ids = read_hf_special_ids(dir);
  auto id_of = [&](const std::string& content, const char* field) {
    for (const HfAddedToken& a : spec.added_tokens) {
      if (a.content == content) return a.id;
    }
    const int32_t id = bpe_->id_of(content);
    RA_REQUIRE(id >= 0, "{}: field '{}' is \"{}\", which is not a token of {}", (dir / "tokenizer_config.json").string(),
               field, content, source_);
    return id;
  };
  if (ids.add_bos) {
    specials_.add_bos = *ids.add_bos;
  } else if (!template_prefix_.empty()) {
    specials_.add_bos = true;
  }
  if (ids.bos_token) {
    specials_.bos_id = id_of(*ids.bos_token, "bos_token");
  } else if (!template_prefix_.empty()) {
    specials_.bos_id = template_prefix_.front();
  }
  specials_.eos_ids = ids.eos_ids;
  if (specials_.eos_ids.empty() && ids.eos_token) specials_.eos_ids.push_back(id_of(*ids.eos_token, "eos_token"));
  for (int32_t id : specials_.eos_ids) {
    RA_REQUIRE(id < limit, "{}: field 'eos_token_id' names id {}, outside the vocabulary of {} ({} ids)",
               (dir / "generation_config.json").string(), id, source_, limit);
  }
}

const std::string* HfTokenizer::token_text(int32_t id) const {
  if (id < 0 || static_cast<size_t>(id) >= id_kind_.size() || id_kind_[static_cast<size_t>(id)] == kNoToken) {
    return nullptr;
  }
  return &id_text_[static_cast<size_t>(id)];
}

bool HfTokenizer::is_special(int32_t id) const {
  return id >= 0 && static_cast<size_t>(id) < id_kind_.size() && id_kind_[static_cast<size_t>(id)] == kSpecial;
}

std::vector<int32_t> HfTokenizer::encode(std::string_view text) const {
  std::string cleaned;
  if (!utf8_is_valid(text)) {
    cleaned = utf8_lossy(text);
    text = cleaned;
  }
  std::vector<int32_t> out;
  out.reserve(text.size() / 3 + 8);
  BpeScratch scratch;
  scratch.prepare(text.size());
  raw_added_.split(text, [&](std::string_view piece, int32_t id, size_t offset) {
    if (id >= 0) {
      out.push_back(id);
    } else {
      encode_section(piece, offset == 0, scratch, out);
    }
  });
  return out;
}

void HfTokenizer::encode_section(std::string_view section, bool at_origin, BpeScratch& scratch,
                                 std::vector<int32_t>& out) const {
  std::string normalized;
  if (!normalizer_.empty()) {
    normalizer_.apply(section, normalized);
    section = normalized;
  }
  auto encode_word = [&](std::string_view word) { bpe_->encode_word(word, scratch, out); };
  normalized_added_.split(section, [&](std::string_view piece, int32_t id, size_t offset) {
    if (id >= 0) {
      out.push_back(id);
    } else {
      pre_tokenizer_.split(piece, at_origin && offset == 0, encode_word);
    }
  });
}

std::vector<int32_t> HfTokenizer::encode_with_template(std::string_view text) const {
  std::vector<int32_t> out = template_prefix_;
  const std::vector<int32_t> body = encode(text);
  out.insert(out.end(), body.begin(), body.end());
  out.insert(out.end(), template_suffix_.begin(), template_suffix_.end());
  return out;
}

std::unique_ptr<StreamDecoder> HfTokenizer::stream_decoder(std::span<const int32_t> context, bool skip_special) const {
  auto decoder = std::make_unique<HfStreamDecoder>(*this, decoder_.start(/*raw=*/false), skip_special);
  decoder->prime(context);
  return decoder;
}

std::string HfTokenizer::decode_ids(std::span<const int32_t> ids, bool skip_special) const {
  HfStreamDecoder decoder(*this, decoder_.start(/*raw=*/false), skip_special);
  std::string out;
  for (int32_t id : ids) decoder.feed(id, out);
  out += decoder.finish();
  return out;
}

std::string HfTokenizer::decode(int32_t prev, int32_t token) const {
  HfStreamDecoder decoder(*this, decoder_.start(/*raw=*/true), /*skip_special=*/true);
  std::string discard, out;
  if (prev >= 0) decoder.feed(prev, discard);
  decoder.feed(token, out);
  out += decoder.finish();
  return out;
}

std::unique_ptr<Tokenizer> load_hf_tokenizer(const std::filesystem::path& tokenizer_json, int64_t vocab_size) {
  RA_REQUIRE(std::filesystem::is_regular_file(tokenizer_json), "{}: no such file", tokenizer_json.string());
  auto tokenizer = std::make_unique<HfTokenizer>(tokenizer_json);
  RA_REQUIRE(vocab_size <= 0 || tokenizer->vocab_size() <= vocab_size,
             "{}: the tokenizer has ids up to {} but the model's vocab_size is {}", tokenizer_json.string(),
             tokenizer->vocab_size() - 1, vocab_size);
  return tokenizer;
}

}  // namespace ra
