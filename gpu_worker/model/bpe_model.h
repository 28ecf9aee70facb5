#pragma once
// Byte-pair encoding of single pre-tokenized words, as the BPE model of the Hugging Face tokenizers
// library (models/bpe: merge_word + Word::merge_all, no dropout): the word's units are looked up in the
// vocabulary (unknown ones become byte-fallback pieces <0xNN> or unk), then the adjacent pair with the
// lowest merge rank is merged, the leftmost first among equal ranks, until no pair has a merge.
//
// Units are UTF-8 characters, or single bytes when `byte_level` (a ByteLevel pre-tokenizer maps each
// byte to one character; the vocabulary is then keyed by the bytes those characters stand for, so
// words are merged on raw bytes without mapping them).

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "gpu_worker/model/flat_hash.h"
#include "gpu_worker/model/hf_tokenizer_spec.h"

namespace ra {

// Per-call working memory of BpeModel::encode_word (one per encode call or thread).
struct BpeScratch {
  struct Symbol {
    int32_t id;    // vocabulary id
    int32_t prev;  // index of the previous live symbol, -1 at the start
    int32_t next;  // index of the next live symbol, -1 at the end
  };
  struct Candidate {  // a merge of symbols[pos] with its right neighbour
    uint32_t rank;
    int32_t pos;
    int32_t left, right, merged;  // ids; the candidate is stale once the pair at pos differs
  };
  // A small direct-mapped cache of the most recent short words, one cache line each, so that the
  // frequent words of a text are found without touching the large tables (whose random accesses miss
  // the CPU caches).
  struct HotWord {
    uint32_t tag;        // high bits of the word's hash
    uint8_t length;      // bytes in key; 0 = empty
    uint8_t count;       // ids in ids
    int32_t ids[6];
    char key[32];
  };
  static_assert(sizeof(HotWord) == 64);
  static constexpr size_t kHotKeyBytes = sizeof(HotWord::key);
  static constexpr size_t kHotIds = sizeof(HotWord::ids) / sizeof(int32_t);

  // Sizes the hot-word cache for `text_bytes` of input (at most 4096 entries: 256 KiB).
  void prepare(size_t text_bytes);

  std::vector<Symbol> symbols;
  std::vector<Candidate> heap;
  std::vector<HotWord> hot;  // empty or a power of two
  // Words already encoded in this call: word -> (offset << 32 | count) into cached_ids.
  FlatStringMap<uint64_t> cache;
  std::vector<int32_t> cached_ids;
};

class BpeModel {
 public:
  // Builds the vocabulary and merge tables. Throws ra::Error naming `source` when a merge names a token
  // that is not in the vocabulary, or unk_token is not in it.
  BpeModel(const HfBpeModel& spec, bool byte_level, const std::string& source);

  // Appends the ids of `word` (UTF-8, or raw bytes when byte_level; not empty) to `out`.
  void encode_word(std::string_view word, BpeScratch& scratch, std::vector<int32_t>& out) const;

  // The vocabulary's token string for `id` (as tokenizer.json spells it), or nullptr.
  const std::string* token(int32_t id) const;
  // The id of `token` as tokenizer.json spells it, or -1.
  int32_t id_of(std::string_view token) const;
  // One past the largest id in the vocabulary.
  int32_t id_limit() const { return static_cast<int32_t>(tokens_.size()); }
  bool byte_level() const { return byte_level_; }

 private:
  // A word, or a part of one, through the hot-word cache, the per-call cache and merge_word. `whole`:
  // it is a whole word (ignore_merges applies). A model calls this either always with whole words or
  // always with parts, so that the caches never mix the two.
  void encode_piece(std::string_view piece, bool whole, BpeScratch& scratch, std::vector<int32_t>& out) const;
  void encode_piece_uncached(std::string_view piece, uint64_t hash, bool whole, BpeScratch& scratch,
                             std::vector<int32_t>& out) const;
  void merge_word(std::string_view word, BpeScratch& scratch, std::vector<int32_t>& out) const;
  // Rust's merge_word for one unit: its id, else its bytes' <0xNN> pieces, else unk (fused or not).
  void add_unit(int32_t id, std::string_view unit, std::vector<BpeScratch::Symbol>& symbols, bool& pending_unk) const;

  struct Merge {
    uint32_t rank;
    int32_t merged;
  };

  bool byte_level_;
  // SentencePiece words can be long (Llama-2 has no pre-tokenizer: a whole prompt is one word). When
  // no merge joins a piece that ends in another character with one that starts with "▁" (checked
  // against every merge at load; "▁" must be a token), no merge can cross the start of a run of "▁",
  // so BPE of the word equals BPE of its parts cut there, and the parts are short and repeat.
  bool split_at_meta_ = false;
  bool ignore_merges_;
  bool byte_fallback_;
  bool fuse_unk_;
  int32_t unk_id_ = -1;                   // -1: no unk token (unknown units are dropped)
  std::vector<std::string> tokens_;       // id -> token string; "" where no token has that id
  std::vector<bool> has_token_;           // id -> whether the vocabulary has it
  FlatStringMap<int32_t> by_string_;      // token string -> id
  FlatStringMap<int32_t> by_unit_;        // byte_level: token bytes -> id (tokens of mapped characters only)
  int32_t single_byte_[256];              // byte_level: the id of the one-byte token, or -1
  int32_t fallback_[256];                 // the id of the byte-fallback piece <0xNN>, or -1
  std::string byte_char_[256];            // byte_level: the character each byte maps to, UTF-8
  PairMap<Merge> merges_;                 // (left id, right id) -> rank, merged id
};

// The byte-to-character table of byte-level BPE (GPT-2's bytes_to_unicode): the printable bytes
// ! .. ~, ¡ .. ¬, ® .. ÿ map to themselves, the other 68 bytes to U+0100 + n in byte order.
char32_t byte_level_char(unsigned char byte);
// The byte that character `cp` stands for, or -1 when it is not one of the 256 characters.
int byte_level_byte(char32_t cp);

}  // namespace ra
