// Tokenizers: the byte-level one, resolve_tokenizer's choices and errors, and the llama2.c BPE
// tokenizer on a small .bin file written here, plus tinyllamas' tok512.bin when it is present.

#include <gtest/gtest.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iterator>
#include <memory>
#include <string>
#include <utility>
#include <vector>

#include "common/error.h"
#include "gpu_worker/model/model_config.h"
#include "gpu_worker/model/tokenizer.h"
#include "tests/support/error_message.h"
#include "tests/support/temp_dir.h"

namespace ra {
namespace {

namespace fs = std::filesystem;

using test::TempDir;

using test::error_of;

void write_file(const fs::path& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  RA_ASSERT(out.good());
}

ModelConfig config_with_vocab(int64_t vocab, int32_t bos = 1) {
  ModelConfig c;
  c.vocab_size = vocab;
  c.bos_token_id = bos;
  return c;
}

// ------------------------------------------------------------------------------------------------
// Byte-level tokenizer.
// ------------------------------------------------------------------------------------------------

TEST(ByteTokenizer, EncodeGivesRawBytes) {
  const auto tok = make_byte_tokenizer(258);
  const std::string text("A\xC3\xA9\n\0\xFF~", 7);  // 'A', UTF-8 e-acute, newline, NUL, 0xFF, '~'
  EXPECT_EQ(tok->encode(text), (std::vector<int32_t>{65, 0xC3, 0xA9, 10, 0, 255, 126}));
  EXPECT_TRUE(tok->encode("").empty());
  EXPECT_EQ(tok->vocab_size(), 258);
  EXPECT_EQ(tok->name(), "bytes");
}

TEST(ByteTokenizer, DecodeRoundTripsEveryByteAndDropsSpecialIds) {
  const auto tok = make_byte_tokenizer(258);
  std::string all, decoded;
  for (int b = 0; b < 256; ++b) all.push_back(static_cast<char>(b));
  int32_t prev = 256;
  for (int32_t id : tok->encode(all)) {
    const std::string piece = tok->decode(prev, id);
    ASSERT_EQ(piece.size(), 1u) << "id " << id;
    decoded += piece;
    prev = id;
  }
  EXPECT_EQ(decoded, all);
  EXPECT_EQ(tok->decode(0, 256), "");  // BOS
  EXPECT_EQ(tok->decode(0, 257), "");  // EOS
  EXPECT_EQ(tok->decode(0, -1), "");
  EXPECT_EQ(tok->decode(256, ' '), " ");  // no space stripping after BOS for bytes
}

TEST(ByteTokenizer, NeedsAtLeast256Ids) {
  EXPECT_THROW(make_byte_tokenizer(255), Error);
  EXPECT_EQ(make_byte_tokenizer(256)->vocab_size(), 256);
}

// ------------------------------------------------------------------------------------------------
// A small llama2.c tokenizer.
// ------------------------------------------------------------------------------------------------

// ids 0-2: <unk>, <s>, </s>; 3-258: <0x00>..<0xFF>; then single pieces and scored merges.
struct Piece {
  std::string text;
  float score;
};

std::vector<Piece> small_vocab() {
  std::vector<Piece> v = {{"<unk>", 0.0f}, {"<s>", 0.0f}, {"</s>", 0.0f}};
  for (int b = 0; b < 256; ++b) {
    char name[8];
    std::snprintf(name, sizeof(name), "<0x%02X>", b);
    v.push_back({name, 0.0f});
  }
  const std::vector<Piece> rest = {
      {" ", -100.0f},  {"a", -100.0f},  {"b", -100.0f},  {"c", -100.0f},   {"h", -100.0f},
      {"e", -100.0f},  {"l", -100.0f},  {"o", -100.0f},  {"\xC3\xBC", -100.0f},  // u-umlaut, whole
      {"ab", -1.0f},   {"bc", -0.5f},   {"ll", -1.5f},   {"llo", -0.8f},   {" h", -2.0f},
      {" he", -2.5f},  {" hello", -5.0f}, {"he", -3.0f}};
  v.insert(v.end(), rest.begin(), rest.end());
  return v;
}

// Ids of the pieces above, by name.
constexpr int32_t kBos = 1, kSpace = 259, kA = 260, kB = 261, kUmlaut = 267, kAB = 268, kBC = 269,
                  kHello = 274;
constexpr int32_t byte_id(unsigned char b) { return b + 3; }

std::string llama2c_bytes(const std::vector<Piece>& vocab) {
  std::string out;
  auto put = [&](const void* p, size_t n) { out.append(static_cast<const char*>(p), n); };
  int32_t max_len = 0;
  for (const Piece& p : vocab) max_len = std::max(max_len, static_cast<int32_t>(p.text.size()));
  put(&max_len, 4);
  for (const Piece& p : vocab) {
    const auto len = static_cast<int32_t>(p.text.size());
    put(&p.score, 4);
    put(&len, 4);
    put(p.text.data(), p.text.size());
  }
  return out;
}

class Llama2cTokenizerTest : public testing::Test {
 protected:
  void SetUp() override {
    vocab_ = small_vocab();
    ASSERT_EQ(vocab_[kSpace].text, " ");
    ASSERT_EQ(vocab_[kUmlaut].text, "\xC3\xBC");
    ASSERT_EQ(vocab_[kAB].text, "ab");
    ASSERT_EQ(vocab_[kBC].text, "bc");
    ASSERT_EQ(vocab_[kHello].text, " hello");
    ASSERT_EQ(vocab_[byte_id(0x0A)].text, "<0x0A>");
    file_ = dir_.path() / "tok.bin";
    write_file(file_, llama2c_bytes(vocab_));
    tok_ = load_llama2c_tokenizer(file_, vocab_size(), kBos);
  }
  int64_t vocab_size() const { return static_cast<int64_t>(vocab_.size()); }

  TempDir dir_;
  std::vector<Piece> vocab_;
  fs::path file_;
  std::unique_ptr<Tokenizer> tok_;
};

TEST_F(Llama2cTokenizerTest, EncodeAddsDummyPrefixAndMergesByScore) {
  EXPECT_TRUE(tok_->encode("").empty());
  EXPECT_EQ(tok_->encode("a"), (std::vector<int32_t>{kSpace, kA}));
  // "bc" (-0.5) outranks "ab" (-1): the higher score merges first even though "ab" comes first.
  EXPECT_EQ(tok_->encode("abc"), (std::vector<int32_t>{kSpace, kA, kBC}));
  EXPECT_EQ(tok_->encode("bab"), (std::vector<int32_t>{kSpace, kB, kAB}));
  // ll, llo, " h", " he", " hello": a chain of merges down to one token, dummy space included.
  EXPECT_EQ(tok_->encode("hello"), (std::vector<int32_t>{kHello}));
  EXPECT_EQ(tok_->encode("abc hello"), (std::vector<int32_t>{kSpace, kA, kBC, kHello}));
}

TEST_F(Llama2cTokenizerTest, EncodeFallsBackToBytesForUnknownCharacters) {
  // e-acute (C3 A9) and '\n' are not pieces: bytes + 3. u-umlaut (C3 BC) is a whole piece.
  EXPECT_EQ(tok_->encode("\xC3\xA9\n"), (std::vector<int32_t>{kSpace, byte_id(0xC3), byte_id(0xA9), byte_id(0x0A)}));
  EXPECT_EQ(tok_->encode("\xC3\xBC"), (std::vector<int32_t>{kSpace, kUmlaut}));
  EXPECT_EQ(tok_->encode("a\xE2\x82\xAC" "b"),  // the euro sign, three bytes
            (std::vector<int32_t>{kSpace, kA, byte_id(0xE2), byte_id(0x82), byte_id(0xAC), kB}));
}

TEST_F(Llama2cTokenizerTest, DecodeFollowsLlama2c) {
  EXPECT_EQ(tok_->decode(kBos, kHello), "hello");  // the space after BOS is stripped
  EXPECT_EQ(tok_->decode(kA, kHello), " hello");
  EXPECT_EQ(tok_->decode(kBos, kSpace), "");
  EXPECT_EQ(tok_->decode(kA, byte_id(0x0A)), "\n");  // <0x0A> is a newline
  EXPECT_EQ(tok_->decode(kA, byte_id('A')), "A");
  EXPECT_EQ(tok_->decode(kBos, byte_id(' ')), " ");  // a byte piece does not start with a space
  EXPECT_EQ(tok_->decode(kA, byte_id(0x01)), "");    // non-printable lone byte: dropped
  EXPECT_EQ(tok_->decode(kA, byte_id(0xC3)), "");    // so is half a UTF-8 sequence
  EXPECT_EQ(tok_->decode(kA, kUmlaut), "\xC3\xBC");  // multi-byte pieces print as they are
  EXPECT_EQ(tok_->decode(kA, -1), "");
  EXPECT_EQ(tok_->decode(kA, static_cast<int32_t>(vocab_size())), "");
  EXPECT_EQ(tok_->vocab_size(), vocab_size());
  EXPECT_NE(tok_->name().find(file_.string()), std::string::npos) << tok_->name();
}

TEST_F(Llama2cTokenizerTest, EncodeThenDecodeFromBosRoundTrips) {
  // Bytes that decode to non-printable lone bytes (half a UTF-8 sequence) would be dropped, so none here.
  const std::string text = "abc hello \xC3\xBC\nbab a";
  std::string decoded;
  int32_t prev = kBos;
  for (int32_t id : tok_->encode(text)) {
    decoded += tok_->decode(prev, id);
    prev = id;
  }
  EXPECT_EQ(decoded, text);
}

TEST_F(Llama2cTokenizerTest, TruncatedOrMismatchedFileNamesTheFile) {
  const std::string full = llama2c_bytes(vocab_);
  for (size_t keep : {size_t{0}, size_t{2}, size_t{4} + 8 + 3, full.size() / 2, full.size() - 1}) {
    const fs::path cut = dir_.path() / ("cut" + std::to_string(keep) + ".bin");
    write_file(cut, full.substr(0, keep));
    const std::string msg = error_of([&] { load_llama2c_tokenizer(cut, vocab_size(), kBos); });
    EXPECT_NE(msg.find(cut.string()), std::string::npos) << "keep " << keep << ": " << msg;
    EXPECT_NE(msg.find("truncated"), std::string::npos) << "keep " << keep << ": " << msg;
  }
  // A vocabulary larger than the file also runs off its end; a smaller one leaves bytes over.
  std::string msg = error_of([&] { load_llama2c_tokenizer(file_, vocab_size() + 1, kBos); });
  EXPECT_NE(msg.find(file_.string()), std::string::npos) << msg;
  EXPECT_NE(msg.find("truncated"), std::string::npos) << msg;
  msg = error_of([&] { load_llama2c_tokenizer(file_, vocab_size() - 1, kBos); });
  EXPECT_NE(msg.find(file_.string()), std::string::npos) << msg;
  EXPECT_NE(msg.find("trailing"), std::string::npos) << msg;
  msg = error_of([&] { load_llama2c_tokenizer(dir_.path() / "missing.bin", vocab_size(), kBos); });
  EXPECT_NE(msg.find((dir_.path() / "missing.bin").string()), std::string::npos) << msg;
}

// ------------------------------------------------------------------------------------------------
// resolve_tokenizer.
// ------------------------------------------------------------------------------------------------

TEST(ResolveTokenizer, BytesSpecAlwaysGivesBytes) {
  TempDir dir;
  const auto tok = resolve_tokenizer("bytes", dir.path(), config_with_vocab(300));
  EXPECT_EQ(tok->name(), "bytes");
  EXPECT_EQ(tok->vocab_size(), 300);
}

TEST(ResolveTokenizer, Vocab258WithNoTokenizerFileIsBytes) {
  TempDir dir;
  EXPECT_EQ(resolve_tokenizer("", dir.path(), config_with_vocab(258))->name(), "bytes");
  // A model path that is a file: its folder is searched.
  EXPECT_EQ(resolve_tokenizer("", dir.path() / "model.safetensors", config_with_vocab(258))->name(), "bytes");
}

TEST(ResolveTokenizer, NothingFitsListsTheFilesLookedFor) {
  TempDir dir;
  const std::string msg = error_of([&] { resolve_tokenizer("", dir.path(), config_with_vocab(300)); });
  EXPECT_NE(msg.find((dir.path() / "tokenizer.bin").string()), std::string::npos) << msg;
  EXPECT_NE(msg.find((dir.path() / "tok300.bin").string()), std::string::npos) << msg;
  EXPECT_NE(msg.find("300"), std::string::npos) << msg;
  // A Hugging Face tokenizer.json rules out the byte fallback, and the message says so.
  write_file(dir.path() / "tokenizer.json", "{}");
  const std::string json_msg = error_of([&] { resolve_tokenizer("", dir.path(), config_with_vocab(258)); });
  EXPECT_NE(json_msg.find((dir.path() / "tokenizer.json").string()), std::string::npos) << json_msg;
}

TEST(ResolveTokenizer, FindsLlama2cFilesBesideTheModelOrByPath) {
  TempDir dir;
  const std::vector<Piece> vocab = small_vocab();
  const auto n = static_cast<int64_t>(vocab.size());
  const ModelConfig config = config_with_vocab(n);
  const fs::path by_vocab = dir.path() / ("tok" + std::to_string(n) + ".bin");
  write_file(by_vocab, llama2c_bytes(vocab));
  auto tok = resolve_tokenizer("", dir.path() / "model.bin", config);
  EXPECT_EQ(tok->name(), "llama2.c:" + by_vocab.string());
  EXPECT_EQ(tok->encode("abc"), (std::vector<int32_t>{kSpace, kA, kBC}));
  // tokenizer.bin is looked for first.
  write_file(dir.path() / "tokenizer.bin", llama2c_bytes(vocab));
  EXPECT_EQ(resolve_tokenizer("", dir.path(), config)->name(), "llama2.c:" + (dir.path() / "tokenizer.bin").string());
  // An explicit path, and a missing one.
  EXPECT_EQ(resolve_tokenizer(by_vocab.string(), "/nonexistent", config)->name(), "llama2.c:" + by_vocab.string());
  const std::string missing = (dir.path() / "nope.bin").string();
  const std::string msg = error_of([&] { resolve_tokenizer(missing, dir.path(), config); });
  EXPECT_NE(msg.find(missing), std::string::npos) << msg;
}

// ------------------------------------------------------------------------------------------------
// tinyllamas' tok512.bin (stories260K), when ../shared/models is present.
// ------------------------------------------------------------------------------------------------

TEST(Stories260kTokenizer, OnceUponATimeRoundTrips) {
  const fs::path dir = fs::path(RA_SHARED_MODELS_DIR) / "stories260K";
  const fs::path file = dir / "tok512.bin";
  if (!fs::is_regular_file(file)) GTEST_SKIP() << file << " is absent (set RA_SHARED_MODELS_DIR)";
  const auto tok = load_llama2c_tokenizer(file, 512, 1);
  const std::string text = "Once upon a time";
  const std::vector<int32_t> ids = tok->encode(text);
  // The golden greedy output starts 1, 403, 407, 261, 378 = BOS, " Once", " upon", " a", " time".
  EXPECT_EQ(ids, (std::vector<int32_t>{403, 407, 261, 378}));
  std::string decoded;
  int32_t prev = 1;
  for (int32_t id : ids) {
    decoded += tok->decode(prev, id);
    prev = id;
  }
  EXPECT_EQ(decoded, text);

  // The first 20 ids of the golden output decode to the start of expected_stdout.txt.
  const std::vector<int32_t> golden = {1,   403, 407, 261, 378, 432, 383, 286, 261, 376,
                                       298, 315, 421, 395, 317, 426, 338, 401, 396, 267};
  std::ifstream in(dir / "expected_stdout.txt", std::ios::binary);
  if (!in) GTEST_SKIP() << "expected_stdout.txt is absent";
  const std::string expected((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  std::string prefix;
  for (size_t i = 1; i < golden.size(); ++i) prefix += tok->decode(golden[i - 1], golden[i]);
  ASSERT_GT(prefix.size(), 20u);
  EXPECT_EQ(expected.substr(0, prefix.size()), prefix);
}

}  // namespace
}  // namespace ra
