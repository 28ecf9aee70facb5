// Tokenizer::stream_decoder's default: decode(prev, token) with incomplete UTF-8 held back.

#include "gpu_worker/model/tokenizer.h"
#include "gpu_worker/model/utf8.h"

namespace ra {
namespace {

class PieceStreamDecoder final : public StreamDecoder {
 public:
  PieceStreamDecoder(const Tokenizer& tokenizer, int32_t prev) : tokenizer_(tokenizer), prev_(prev) {}

  std::string put(int32_t token) override {
    std::string out;
    assembler_.push(tokenizer_.decode(prev_, token), out);
    prev_ = token;
    return out;
  }

  std::string finish() override {
    std::string out;
    assembler_.finish(out);
    return out;
  }

 private:
  const Tokenizer& tokenizer_;
  int32_t prev_;  // the token before the next one; -1 when there is none
  Utf8Assembler assembler_{/*replace_invalid=*/false};
};

}  // namespace

std::unique_ptr<StreamDecoder> Tokenizer::stream_decoder(std::span<const int32_t> context) const {
  return std::make_unique<PieceStreamDecoder>(*this, context.empty() ? -1 : context.back());
}

}  // namespace ra
