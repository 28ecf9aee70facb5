#pragma once
// The parts of a Hugging Face tokenizer.json (and its tokenizer_config.json / generation_config.json)
// that a BPE tokenizer needs, read into plain structs and checked. Everything else in those files is
// ignored; a component this reader does not implement is an error naming the file and the field, so a
// tokenizer is either reproduced exactly or refused.
//
// Supported (the components of Llama-3 and Llama-2 style files):
//   model:          BPE (vocab, merges as "a b" strings or [a, b] pairs, unk_token, fuse_unk,
//                   byte_fallback, ignore_merges; dropout null or 0, no subword prefix/suffix)
//   normalizer:     null, Sequence, Prepend, Replace (String or Regex pattern), Strip
//   pre_tokenizer:  null, Sequence, Split (String or Regex; all behaviors; invert), ByteLevel (last),
//                   Metaspace (replacement, prepend_scheme always/first/never, split)
//   post_processor: null, Sequence, TemplateProcessing, ByteLevel (only its special tokens matter)
//   decoder:        null, Sequence, ByteLevel, Replace, ByteFallback, Fuse, Strip, Metaspace

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace ra {

// A pattern of Split / Replace: {"String": s} is a literal, {"Regex": r} an Oniguruma regex.
struct HfPattern {
  bool is_regex = false;
  std::string text;
};

struct HfAddedToken {
  int32_t id = -1;
  std::string content;
  bool single_word = false;
  bool lstrip = false;
  bool rstrip = false;
  bool normalized = false;
  bool special = false;
};

struct HfNormalizerStep {
  enum class Kind { kPrepend, kReplace, kStrip };
  Kind kind = Kind::kPrepend;
  std::string text;     // kPrepend: what to prepend; kReplace: the replacement
  HfPattern pattern;    // kReplace
  bool left = false;    // kStrip
  bool right = false;   // kStrip
};

enum class HfSplitBehavior { kRemoved, kIsolated, kMergedWithPrevious, kMergedWithNext, kContiguous };
enum class HfPrependScheme { kAlways, kFirst, kNever };

struct HfPreTokenizerStep {
  enum class Kind { kSplit, kByteLevel, kMetaspace };
  Kind kind = Kind::kSplit;
  HfPattern pattern;                                      // kSplit
  HfSplitBehavior behavior = HfSplitBehavior::kIsolated;  // kSplit
  bool invert = false;                                    // kSplit
  bool add_prefix_space = false;                          // kByteLevel
  bool use_regex = true;                                  // kByteLevel: GPT-2's split regex first
  std::string replacement = "\xE2\x96\x81";               // kMetaspace ("▁")
  HfPrependScheme prepend_scheme = HfPrependScheme::kAlways;  // kMetaspace
  bool split = true;                                      // kMetaspace
};

struct HfDecoderStep {
  enum class Kind { kByteLevel, kReplace, kByteFallback, kFuse, kStrip, kMetaspace };
  Kind kind = Kind::kByteLevel;
  HfPattern pattern;      // kReplace
  std::string text;       // kReplace: the replacement; kStrip: the character stripped; kMetaspace: replacement
  size_t start = 0;       // kStrip: at most this many leading `text` characters are removed
  size_t stop = 0;        // kStrip: ... and this many trailing
  HfPrependScheme prepend_scheme = HfPrependScheme::kAlways;  // kMetaspace
};

struct HfBpeModel {
  std::vector<std::pair<std::string, int32_t>> vocab;        // model.vocab: token -> id
  std::vector<std::pair<std::string, std::string>> merges;   // model.merges, in rank order
  std::optional<std::string> unk_token;
  bool fuse_unk = false;
  bool byte_fallback = false;
  bool ignore_merges = false;
};

struct HfTokenizerSpec {
  std::string source;  // the tokenizer.json path, for messages
  HfBpeModel model;
  std::vector<HfAddedToken> added_tokens;
  std::vector<HfNormalizerStep> normalizer;       // applied in order; empty = none
  std::vector<HfPreTokenizerStep> pre_tokenizer;  // applied in order; empty = none
  bool has_decoder = false;                       // false: tokens are joined with spaces
  std::vector<HfDecoderStep> decoder;
  // The special tokens the post-processor's `single` template puts before the sequence ($A) and after
  // it, as ids (TemplateProcessing's special_tokens[...].ids).
  std::vector<int32_t> template_prefix;
  std::vector<int32_t> template_suffix;
};

// Reads and checks tokenizer.json. Throws ra::Error naming `path` and the field for invalid or
// truncated JSON, a missing or mistyped field, or a component that is not supported.
HfTokenizerSpec read_tokenizer_json(const std::filesystem::path& path);

// What the files beside tokenizer.json say about BOS and EOS.
struct HfSpecialIds {
  std::optional<bool> add_bos;  // tokenizer_config.json add_bos_token
  std::optional<std::string> bos_token;  // tokenizer_config.json bos_token (string or {"content": ...})
  std::optional<std::string> eos_token;  // tokenizer_config.json eos_token
  std::vector<int32_t> eos_ids;           // generation_config.json eos_token_id (an integer or a list)
};

// Reads dir/tokenizer_config.json and dir/generation_config.json when present (absent files give
// empty fields). Throws ra::Error naming the file and field for invalid JSON or mistyped fields.
HfSpecialIds read_hf_special_ids(const std::filesystem::path& dir);

}  // namespace ra
