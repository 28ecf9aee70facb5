#include "common/error.h"
#include "gpu_worker/model/tokenizer.h"

namespace ra {
namespace {

class ByteTokenizer final : public Tokenizer {
 public:
  explicit ByteTokenizer(int64_t vocab_size) : vocab_size_(vocab_size) {}

  std::vector<int32_t> encode(std::string_view text) const override {
    std::vector<int32_t> ids;
    ids.reserve(text.size());
    for (unsigned char ch : text) ids.push_back(ch);
    return ids;
  }

  std::string decode(int32_t /*prev*/, int32_t token) const override {
    if (token < 0 || token > 255) return {};
    return std::string(1, static_cast<char>(token));
  }

  int64_t vocab_size() const override { return vocab_size_; }
  std::string name() const override { return "bytes"; }

 private:
  int64_t vocab_size_;
};

}  // namespace

std::unique_ptr<Tokenizer> make_byte_tokenizer(int64_t vocab_size) {
  RA_REQUIRE(vocab_size >= 256, "the byte tokenizer needs a vocabulary of at least 256 ids; the model has {}",
             vocab_size);
  return std::make_unique<ByteTokenizer>(vocab_size);
}

}  // namespace ra
