// llama2.c's tokenizer (run.c: encode/decode/safe_printf), reproduced exactly so that models trained
// with it print the same text.

#include <algorithm>
#include <cctype>
#include <cstring>
#include <unordered_map>

#include "common/error.h"
#include "gpu_worker/model/mapped_file.h"
#include "gpu_worker/model/tokenizer.h"

namespace ra {
namespace {

class Llama2cTokenizer final : public Tokenizer {
 public:
  Llama2cTokenizer(const std::filesystem::path& path, int64_t vocab_size, int32_t bos)
      : path_(path), bos_(bos) {
    const MappedFile file(path);
    const auto bytes = file.bytes();
    const std::string where = path.string();
    size_t pos = 0;
    auto read = [&](void* dst, size_t n, const char* what, int64_t index) {
      RA_REQUIRE(pos + n <= bytes.size(), "{}: truncated tokenizer file while reading {} of token {} (of {})",
                 where, what, index, vocab_size);
      std::memcpy(dst, bytes.data() + pos, n);
      pos += n;
    };
    int32_t max_len = 0;
    read(&max_len, 4, "max_token_length", -1);
    RA_REQUIRE(max_len > 0 && max_len < (1 << 20), "{}: max_token_length {} is implausible", where, max_len);
    vocab_.resize(static_cast<size_t>(vocab_size));
    scores_.resize(static_cast<size_t>(vocab_size));
    for (int64_t i = 0; i < vocab_size; ++i) {
      int32_t len = 0;
      read(&scores_[i], 4, "score", i);
      read(&len, 4, "length", i);
      RA_REQUIRE(len >= 0 && len <= max_len, "{}: token {} has length {} (max_token_length {})", where, i, len,
                 max_len);
      vocab_[i].resize(static_cast<size_t>(len));
      read(vocab_[i].data(), static_cast<size_t>(len), "bytes", i);
    }
    RA_REQUIRE(pos == bytes.size(),
               "{}: {} trailing bytes after {} tokens; the tokenizer does not match the model's vocabulary",
               where, bytes.size() - pos, vocab_size);
    for (int64_t i = 0; i < vocab_size; ++i) lookup_.emplace(vocab_[i], static_cast<int32_t>(i));
    // Byte fallback encodes byte b as id b + 3, so those ids must be the <0xXX> pieces.
    for (int b = 0; b < 256; ++b) {
      const std::string want = fmt::format("<0x{:02X}>", b);
      RA_REQUIRE(b + 3 < vocab_size && vocab_[b + 3] == want,
                 "{}: token {} should be the byte piece '{}' (llama2.c layout: ids 3-258 are bytes)", where,
                 b + 3, want);
    }
  }

  std::vector<int32_t> encode(std::string_view text) const override {
    std::vector<int32_t> ids;
    if (text.empty()) return ids;
    // A dummy prefix space, as sentencepiece's add_dummy_prefix.
    if (const int32_t space = find(" "); space >= 0) ids.push_back(space);
    // Whole UTF-8 code points when the vocabulary has them, else byte fallback (<0xXX> = byte + 3).
    for (size_t i = 0; i < text.size();) {
      size_t len = 1;
      while (i + len < text.size() && len < 4 && (static_cast<unsigned char>(text[i + len]) & 0xC0) == 0x80) ++len;
      const int32_t id = find(text.substr(i, len));
      if (id >= 0) {
        ids.push_back(id);
      } else {
        for (size_t b = 0; b < len; ++b) ids.push_back(static_cast<unsigned char>(text[i + b]) + 3);
      }
      i += len;
    }
    // Greedily merge the adjacent pair whose merged token has the highest score.
    std::string merged;
    while (true) {
      float best_score = -1e10f;
      int32_t best_id = -1;
      size_t best_idx = 0;
      for (size_t i = 0; i + 1 < ids.size(); ++i) {
        merged = vocab_[ids[i]] + vocab_[ids[i + 1]];
        const int32_t id = find(merged);
        if (id >= 0 && scores_[id] > best_score) {
          best_score = scores_[id];
          best_id = id;
          best_idx = i;
        }
      }
      if (best_id < 0) break;
      ids[best_idx] = best_id;
      ids.erase(ids.begin() + static_cast<std::ptrdiff_t>(best_idx) + 1);
    }
    return ids;
  }

  std::string decode(int32_t prev, int32_t token) const override {
    if (token < 0 || token >= static_cast<int32_t>(vocab_.size())) return {};
    std::string_view piece = vocab_[token];
    if (prev == bos_ && !piece.empty() && piece[0] == ' ') piece.remove_prefix(1);
    unsigned byte = 0;
    if (piece.size() == 6 && std::sscanf(std::string(piece).c_str(), "<0x%02X>", &byte) == 1) {
      return printable(std::string(1, static_cast<char>(byte)));
    }
    return printable(std::string(piece));
  }

  int64_t vocab_size() const override { return static_cast<int64_t>(vocab_.size()); }
  std::string name() const override { return "llama2.c:" + path_.string(); }

 private:
  // run.c's safe_printf: a lone byte that is neither printable nor whitespace is dropped.
  static std::string printable(std::string piece) {
    if (piece.size() == 1) {
      const auto b = static_cast<unsigned char>(piece[0]);
      if (!(std::isprint(b) || std::isspace(b))) return {};
    }
    return piece;
  }

  int32_t find(std::string_view s) const {
    const auto it = lookup_.find(std::string(s));
    return it == lookup_.end() ? -1 : it->second;
  }

  std::filesystem::path path_;
  int32_t bos_;
  std::vector<std::string> vocab_;
  std::vector<float> scores_;
  std::unordered_map<std::string, int32_t> lookup_;
};

}  // namespace

std::unique_ptr<Tokenizer> load_llama2c_tokenizer(const std::filesystem::path& file, int64_t vocab_size,
                                                  int32_t bos_token_id) {
  return std::make_unique<Llama2cTokenizer>(file, vocab_size, bos_token_id);
}

}  // namespace ra
