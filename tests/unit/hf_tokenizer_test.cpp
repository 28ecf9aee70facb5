// Hugging Face tokenizer.json on two tiny hand-made files, one byte-level (Llama-3 layout) and one
// SentencePiece-style (Llama-2 layout), whose ids are worked out by hand here; streaming decode; the
// default stream decoder of the byte tokenizer; resolution; and errors that name the file and field.
// The full vocabularies are checked against the reference in tests/tokenizer (oracle_test.sh).

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/error.h"
#include "gpu_worker/model/bpe_model.h"
#include "gpu_worker/model/hf_pre_tokenizer.h"
#include "gpu_worker/model/hf_tokenizer.h"
#include "gpu_worker/model/model_config.h"
#include "gpu_worker/model/tokenizer.h"
#include "gpu_worker/model/utf8.h"
#include "tests/support/error_message.h"
#include "tests/support/temp_dir.h"

namespace ra {
namespace {

namespace fs = std::filesystem;
using json = nlohmann::json;
using test::TempDir;
using ::testing::AllOf;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using Ids = std::vector<int32_t>;

const std::string kLlama3Pattern =
    R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)";
const std::string kMeta = "\xE2\x96\x81";  // ▁
const std::string kReplacement = "\xEF\xBF\xBD";

using test::error_of;

void write_text(const fs::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary);
  out << text;
  RA_ASSERT(out.good());
}

json added(int32_t id, const std::string& content, bool special = true) {
  return {{"id", id}, {"content", content}, {"single_word", false}, {"lstrip", false}, {"rstrip", false},
          {"normalized", !special}, {"special", special}};
}

json template_processing(const std::string& bos, int32_t id) {
  return {{"type", "TemplateProcessing"},
          {"single", json::array({{{"SpecialToken", {{"id", bos}, {"type_id", 0}}}},
                                  {{"Sequence", {{"id", "A"}, {"type_id", 0}}}}})},
          {"pair", json::array()},
          {"special_tokens", {{bos, {{"id", bos}, {"ids", {id}}, {"tokens", {bos}}}}}}};
}

// ------------------------------------------------------------------------------------------------
// Byte-level: ids 0-255 are the 256 byte characters (id = byte), then merges up to "hello" and
// "Ġworld"; <|bos|> = 265, <|eot|> = 266.
// ------------------------------------------------------------------------------------------------

std::string byte_char(unsigned char b) {
  std::string s;
  utf8_append(s, byte_level_char(b));
  return s;
}

constexpr int32_t kHe = 256, kLl = 257, kLlo = 258, kHello = 259, kSpaceW = 260, kOr = 261, kSpaceWor = 262,
                  kLd = 263, kSpaceWorld = 264, kBos3 = 265, kEot3 = 266, kXyz = 267;

json byte_level_tokenizer() {
  json vocab = json::object();
  for (int b = 0; b < 256; ++b) vocab[byte_char(static_cast<unsigned char>(b))] = b;
  const std::string sp = byte_char(' ');
  const std::vector<std::pair<std::string, int32_t>> extra = {
      {"he", kHe},   {"ll", kLl},          {"llo", kLlo}, {"hello", kHello},           {sp + "w", kSpaceW},
      {"or", kOr},   {sp + "wor", kSpaceWor}, {"ld", kLd}, {sp + "world", kSpaceWorld}, {"xyz", kXyz}};
  for (const auto& [t, id] : extra) vocab[t] = id;
  return {
      {"version", "1.0"},
      {"added_tokens", json::array({added(kBos3, "<|bos|>"), added(kEot3, "<|eot|>")})},
      {"normalizer", nullptr},
      {"pre_tokenizer",
       {{"type", "Sequence"},
        {"pretokenizers", json::array({{{"type", "Split"}, {"pattern", {{"Regex", kLlama3Pattern}}},
                                        {"behavior", "Isolated"}, {"invert", false}},
                                       {{"type", "ByteLevel"}, {"add_prefix_space", false}, {"trim_offsets", true},
                                        {"use_regex", false}}})}}},
      {"post_processor",
       {{"type", "Sequence"},
        {"processors", json::array({{{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", false},
                                     {"use_regex", true}},
                                    template_processing("<|bos|>", kBos3)})}}},
      {"decoder", {{"type", "ByteLevel"}, {"add_prefix_space", true}, {"trim_offsets", true}, {"use_regex", true}}},
      {"model",
       {{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", nullptr}, {"continuing_subword_prefix", nullptr},
        {"end_of_word_suffix", nullptr}, {"fuse_unk", false}, {"byte_fallback", false}, {"ignore_merges", true},
        {"vocab", vocab},
        {"merges", json::array({"h e", "l l", "ll o", "he llo", sp + " w", "o r", sp + "w or", "l d",
                                sp + "wor ld"})}}}};
}

// Base fixture: writes `json` as dir/tokenizer.json (plus extra files) and loads it.
class TokenizerFileTest : public testing::Test {
 protected:
  HfTokenizer& load(const json& tokenizer) {
    path_ = dir_.path() / "tokenizer.json";
    write_text(path_, tokenizer.dump());
    tok_ = std::make_unique<HfTokenizer>(path_);
    return *tok_;
  }
  // The concatenated stream output for `ids` after `context`; every piece must be whole UTF-8.
  std::string streamed(const Ids& context, const Ids& ids, std::vector<std::string>* pieces = nullptr) {
    auto stream = tok_->stream_decoder(context, /*skip_special=*/true);
    std::string out;
    for (int32_t id : ids) {
      const std::string piece = stream->put(id);
      EXPECT_TRUE(utf8_is_valid(piece)) << "piece of token " << id;
      if (pieces != nullptr) pieces->push_back(piece);
      out += piece;
    }
    const std::string last = stream->finish();
    EXPECT_TRUE(utf8_is_valid(last));
    if (pieces != nullptr) pieces->push_back(last);
    return out + last;
  }

  TempDir dir_;
  fs::path path_;
  std::unique_ptr<HfTokenizer> tok_;
};

// A fixture with the tokenizer.json that `make` returns loaded.
template <json (*make)()>
class LoadedTokenizerTest : public TokenizerFileTest {
 protected:
  void SetUp() override { load(make()); }
};

using ByteLevelTest = LoadedTokenizerTest<byte_level_tokenizer>;

TEST_F(ByteLevelTest, EncodesWordsByRankedMerges) {
  EXPECT_TRUE(tok_->encode("").empty());
  EXPECT_EQ(tok_->encode("hello"), Ids{kHello});
  // One regex piece, not in the vocabulary: h+e (rank 0), l+l (1), ll+o (2), he+llo (3) on each half.
  EXPECT_EQ(tok_->encode("hellohello"), (Ids{kHello, kHello}));
  EXPECT_EQ(tok_->encode("hello world"), (Ids{kHello, kSpaceWorld}));
  // "héllo": é is two bytes with no merges; ll+o still merges.
  EXPECT_EQ(tok_->encode("h\xC3\xA9llo"), (Ids{'h', 0xC3, 0xA9, kLlo}));
}

TEST_F(ByteLevelTest, IgnoreMergesTakesWholeWordsFromTheVocabulary) {
  EXPECT_EQ(tok_->encode("xyz"), Ids{kXyz});  // no merge makes "xyz", but the vocabulary has it
  EXPECT_EQ(tok_->encode("xyzxyz"), (Ids{'x', 'y', 'z', 'x', 'y', 'z'}));
}

TEST_F(ByteLevelTest, AddedTokensAreMatchedBeforeSplitting) {
  EXPECT_EQ(tok_->encode("<|bos|>hello<|eot|>"), (Ids{kBos3, kHello, kEot3}));
  EXPECT_EQ(tok_->encode("a<|eot|><|bos|>"), (Ids{'a', kEot3, kBos3}));
  // Not quite a token: ordinary text ("<|", "bos", "|").
  EXPECT_EQ(tok_->encode("<|bos|"), (Ids{'<', '|', 'b', 'o', 's', '|'}));
  EXPECT_EQ(tok_->encode_with_template("hello"), (Ids{kBos3, kHello}));
}

TEST_F(ByteLevelTest, AddedTokenOptionsStripWhitespaceAndRequireWholeWords) {
  json j = byte_level_tokenizer();
  json mask = added(268, "<mask>");
  mask["lstrip"] = mask["rstrip"] = true;
  j["added_tokens"].push_back(mask);
  load(j);
  EXPECT_EQ(tok_->encode("a <mask>  b"), (Ids{'a', 268, 'b'}));  // the spaces go with the token
  mask["lstrip"] = mask["rstrip"] = false;
  mask["single_word"] = true;
  j["added_tokens"][2] = mask;
  load(j);
  EXPECT_EQ(tok_->encode("x<mask>"), (Ids{'x', '<', 'm', 'a', 's', 'k', '>'}));  // touches a word: text
  EXPECT_EQ(tok_->encode("x <mask>"), (Ids{'x', ' ', 268}));
}

TEST_F(ByteLevelTest, IllFormedUtf8IsReplacedAsALossyDecodeWould) {
  const Ids fffd = {0xEF, 0xBF, 0xBD};
  EXPECT_EQ(tok_->encode("a\xFF" "b"), tok_->encode("a\xEF\xBF\xBD" "b"));
  EXPECT_EQ(tok_->encode("\xE2\x82"), fffd);  // a truncated sequence is one maximal subpart
  Ids three;
  for (int i = 0; i < 3; ++i) three.insert(three.end(), fffd.begin(), fffd.end());
  EXPECT_EQ(tok_->encode("\xED\xA0\x80"), three);  // a UTF-8 surrogate: three
}

TEST(HfPreTokenizer, Llama3PatternRunsInOniguruma) {
  HfPreTokenizerStep split;
  split.kind = HfPreTokenizerStep::Kind::kSplit;
  split.pattern = {true, kLlama3Pattern};
  split.behavior = HfSplitBehavior::kIsolated;
  const HfPreTokenizer pre({split}, "test");
  auto words = [&](std::string_view text) {
    std::vector<std::string> out;
    pre.split(text, true, [&](std::string_view w) { out.emplace_back(w); });
    return out;
  };
  EXPECT_THAT(words("it's  x\n\n"), ElementsAre("it", "'s", " ", " x", "\n\n"));
  EXPECT_THAT(words("IT'LL"), ElementsAre("IT", "'LL"));
  EXPECT_THAT(words("x12345"), ElementsAre("x", "123", "45"));
  // (?i:'s) folds case as Unicode does: U+017F LATIN SMALL LETTER LONG S matches 's' (the JavaScript
  // port folds ASCII only and would keep "'ſt" whole).
  EXPECT_THAT(words("'\xC5\xBFt"), ElementsAre("'\xC5\xBF", "t"));
}

TEST_F(ByteLevelTest, DecodesAndStreamsWholeCodePoints) {
  EXPECT_EQ(tok_->decode_ids(Ids{kHello, kSpaceWorld}, false), "hello world");
  EXPECT_EQ(tok_->decode_ids(Ids{kBos3, kHello}, false), "<|bos|>hello");
  EXPECT_EQ(tok_->decode_ids(Ids{kBos3, kHello}, true), "hello");
  EXPECT_EQ(tok_->decode_ids(Ids{'h', 0xC3, 0xA9}, false), "h\xC3\xA9");
  EXPECT_EQ(tok_->decode_ids(Ids{0xC3}, false), kReplacement);
  EXPECT_EQ(tok_->decode_ids(Ids{0xC3, 'a'}, false), kReplacement + "a");
  EXPECT_EQ(tok_->decode_ids(Ids{-1, 99999, 'a'}, false), "a");  // ids without a token are skipped

  std::vector<std::string> pieces;
  EXPECT_EQ(streamed({kBos3}, {'h', 0xC3, 0xA9, kSpaceWorld, kEot3}, &pieces), "h\xC3\xA9 world");
  EXPECT_THAT(pieces, ElementsAre("h", "", "\xC3\xA9", " world", "", ""));
  EXPECT_EQ(streamed({}, {'a', 0xF0, 0x9F}), "a" + kReplacement);  // an incomplete end: flushed as U+FFFD
  // The per-token decode gives raw bytes.
  EXPECT_EQ(tok_->decode(kBos3, 0xC3), "\xC3");
  EXPECT_EQ(tok_->decode(kBos3, kHello), "hello");
}

TEST_F(ByteLevelTest, SpecialIdsComeFromTheTemplateOrTheConfigFiles) {
  TokenizerSpecials s = tok_->specials();
  EXPECT_EQ(s.add_bos, true);
  EXPECT_EQ(s.bos_id, kBos3);
  EXPECT_TRUE(s.eos_ids.empty());
  EXPECT_EQ(tok_->vocab_size(), kXyz + 1);

  write_text(dir_.path() / "tokenizer_config.json",
             R"({"add_bos_token": false, "bos_token": "<|bos|>", "eos_token": {"content": "<|eot|>"}})");
  s = HfTokenizer(path_).specials();
  EXPECT_EQ(s.add_bos, false);
  EXPECT_EQ(s.bos_id, kBos3);
  EXPECT_EQ(s.eos_ids, Ids{kEot3});
  write_text(dir_.path() / "generation_config.json", R"({"eos_token_id": [266, 7]})");
  EXPECT_EQ(HfTokenizer(path_).specials().eos_ids, (Ids{kEot3, 7}));
  write_text(dir_.path() / "generation_config.json", R"({"eos_token_id": 5})");
  EXPECT_EQ(HfTokenizer(path_).specials().eos_ids, Ids{5});
}

// ------------------------------------------------------------------------------------------------
// SentencePiece-style (Llama-2): <unk> <s> </s>, <0x00>..<0xFF> = 3..258, then pieces.
// ------------------------------------------------------------------------------------------------

constexpr int32_t kUnk = 0, kBos2 = 1, kEos2 = 2, kMetaId = 259, kH = 260, kE = 261, kL = 262, kO = 263,
                  kMetaH = 264, kLl2 = 265, kMetaHe = 266, kLlo2 = 267, kMetaHello = 268, kEAcute = 269;
constexpr int32_t piece_of_byte(unsigned char b) { return 3 + b; }

json sentencepiece_tokenizer() {
  json vocab = {{"<unk>", kUnk}, {"<s>", kBos2}, {"</s>", kEos2}};
  for (int b = 0; b < 256; ++b) vocab[fmt::format("<0x{:02X}>", b)] = piece_of_byte(static_cast<unsigned char>(b));
  const std::vector<std::pair<std::string, int32_t>> extra = {
      {kMeta, kMetaId}, {"h", kH},         {"e", kE},         {"l", kL},
      {"o", kO},       {kMeta + "h", kMetaH}, {"ll", kLl2},     {kMeta + "he", kMetaHe},
      {"llo", kLlo2},  {kMeta + "hello", kMetaHello}, {"\xC3\xA9", kEAcute}};
  for (const auto& [t, id] : extra) vocab[t] = id;
  return {
      {"version", "1.0"},
      {"added_tokens", json::array({added(kUnk, "<unk>"), added(kBos2, "<s>"), added(kEos2, "</s>")})},
      {"normalizer",
       {{"type", "Sequence"},
        {"normalizers", json::array({{{"type", "Prepend"}, {"prepend", kMeta}},
                                     {{"type", "Replace"}, {"pattern", {{"String", " "}}}, {"content", kMeta}}})}}},
      {"pre_tokenizer", nullptr},
      {"post_processor", template_processing("<s>", kBos2)},
      {"decoder",
       {{"type", "Sequence"},
        {"decoders", json::array({{{"type", "Replace"}, {"pattern", {{"String", kMeta}}}, {"content", " "}},
                                  {{"type", "ByteFallback"}},
                                  {{"type", "Fuse"}},
                                  {{"type", "Strip"}, {"content", " "}, {"start", 1}, {"stop", 0}}})}}},
      {"model",
       {{"type", "BPE"}, {"dropout", nullptr}, {"unk_token", "<unk>"}, {"continuing_subword_prefix", nullptr},
        {"end_of_word_suffix", nullptr}, {"fuse_unk", true}, {"byte_fallback", true}, {"vocab", vocab},
        {"merges", json::array({kMeta + " h", "l l", kMeta + "h e", "ll o", kMeta + "he llo"})}}}};
}

using SentencePieceTest = LoadedTokenizerTest<sentencepiece_tokenizer>;

TEST_F(SentencePieceTest, NormalizerPrependsAndReplacesSpaces) {
  EXPECT_TRUE(tok_->encode("").empty());
  EXPECT_EQ(tok_->encode("hello"), Ids{kMetaHello});
  EXPECT_EQ(tok_->encode("hello hello"), (Ids{kMetaHello, kMetaHello}));
  EXPECT_EQ(tok_->encode(" "), (Ids{kMetaId, kMetaId}));
  EXPECT_EQ(tok_->encode("h\xC3\xA9"), (Ids{kMetaH, kEAcute}));
  // Each piece between added tokens is normalized on its own (so gets its own ▁).
  EXPECT_EQ(tok_->encode("<s>hello</s>hello"), (Ids{kBos2, kMetaHello, kEos2, kMetaHello}));
  EXPECT_EQ(tok_->encode_with_template("hello"), (Ids{kBos2, kMetaHello}));
}

TEST_F(SentencePieceTest, AMergeAcrossTheStartOfASpaceRunIsHonoured) {
  // Long SentencePiece words are cut before each "▁" when no merge joins across one; here "o ▁" does,
  // so the word must be merged whole: o+▁ (rank 0) takes the second ▁ before ▁+h can.
  json j = sentencepiece_tokenizer();
  constexpr int32_t kOMeta = 270;
  j["model"]["vocab"]["o" + kMeta] = kOMeta;
  j["model"]["merges"].insert(j["model"]["merges"].begin(), "o " + kMeta);
  load(j);
  EXPECT_EQ(tok_->encode("hello hello"), (Ids{kMetaHe, kLl2, kOMeta, kH, kE, kLlo2}));
}

TEST_F(SentencePieceTest, UnknownCharactersFallBackToBytes) {
  // € (E2 82 AC) is not a piece.
  EXPECT_EQ(tok_->encode("h\xE2\x82\xAC"), (Ids{kMetaH, piece_of_byte(0xE2), piece_of_byte(0x82), piece_of_byte(0xAC)}));
}

TEST_F(SentencePieceTest, WithoutByteFallbackUnknownCharactersAreUnk) {
  json j = sentencepiece_tokenizer();
  j["model"]["byte_fallback"] = false;
  load(j);
  EXPECT_EQ(tok_->encode("h\xE2\x82\xAC\xE2\x82\xAC"), (Ids{kMetaH, kUnk}));  // fused
  j["model"]["fuse_unk"] = false;
  load(j);
  EXPECT_EQ(tok_->encode("h\xE2\x82\xAC\xE2\x82\xAC"), (Ids{kMetaH, kUnk, kUnk}));
}

TEST_F(SentencePieceTest, DecodesAsReplaceByteFallbackFuseStrip) {
  EXPECT_EQ(tok_->decode_ids(Ids{kBos2, kMetaHello, kMetaHello}, true), "hello hello");
  EXPECT_EQ(tok_->decode_ids(Ids{kBos2, kMetaHello, kMetaHello}, false), "<s> hello hello");
  EXPECT_EQ(tok_->decode_ids(Ids{kMetaH, piece_of_byte(0xE2), piece_of_byte(0x82), piece_of_byte(0xAC)}, false),
            "h\xE2\x82\xAC");
  // An invalid run of byte pieces: one U+FFFD per byte (the reference's ByteFallback rule).
  EXPECT_EQ(tok_->decode_ids(Ids{piece_of_byte(0xE2), kMetaHello}, false), kReplacement + " hello");
  EXPECT_EQ(tok_->decode_ids(Ids{piece_of_byte(0xE2), piece_of_byte(0x82)}, false), kReplacement + kReplacement);
  EXPECT_EQ(tok_->decode_ids(Ids{kMetaId}, false), "");
}

TEST_F(SentencePieceTest, StreamsWholeCodePointsAndKeepsTheSpaceAfterAPrompt) {
  std::vector<std::string> pieces;
  const Ids gen = {kMetaH, piece_of_byte(0xE2), piece_of_byte(0x82), piece_of_byte(0xAC), kMetaHello};
  EXPECT_EQ(streamed({kBos2}, gen, &pieces), "h\xE2\x82\xAC hello");
  EXPECT_THAT(pieces, ElementsAre("h", "", "", "", "\xE2\x82\xAC hello", ""));
  EXPECT_EQ(streamed({kBos2, kMetaHello}, {kMetaHello}), " hello");  // after "hello": " hello"
  // The per-token decode, llama2.c style: no space after BOS.
  EXPECT_EQ(tok_->decode(kBos2, kMetaHello), "hello");
  EXPECT_EQ(tok_->decode(kMetaHello, kMetaHello), " hello");
  EXPECT_EQ(tok_->decode(kMetaHello, piece_of_byte(0xE2)), "\xE2");
}

TEST_F(SentencePieceTest, MetaspacePreTokenizerPrependsOnlyAtTheStartWhenFirst) {
  json j = sentencepiece_tokenizer();
  j["normalizer"] = nullptr;
  j["pre_tokenizer"] = {{"type", "Metaspace"}, {"replacement", kMeta}, {"prepend_scheme", "first"}, {"split", false}};
  load(j);
  EXPECT_EQ(tok_->encode("hello hello"), (Ids{kMetaHello, kMetaHello}));
  EXPECT_EQ(tok_->encode("<s>hello"), (Ids{kBos2, kH, kE, kLlo2}));  // "hello" is not at the start
  j["pre_tokenizer"]["prepend_scheme"] = "always";
  load(j);
  EXPECT_EQ(tok_->encode("<s>hello"), (Ids{kBos2, kMetaHello}));
  j["pre_tokenizer"]["split"] = true;
  load(j);
  EXPECT_EQ(tok_->encode("hello  hello"), (Ids{kMetaHello, kMetaId, kMetaHello}));
}

TEST_F(SentencePieceTest, OtherDecoderChains) {
  json j = sentencepiece_tokenizer();
  // Metaspace decoder: ▁ becomes a space, except in the first token, where it is dropped.
  j["decoder"] = {{"type", "Metaspace"}, {"replacement", kMeta}, {"prepend_scheme", "always"}, {"split", true}};
  load(j);
  EXPECT_EQ(tok_->decode_ids(Ids{kMetaHello, kMetaHello}, false), "hello hello");
  EXPECT_EQ(tok_->decode_ids(Ids{kMetaId, kMetaHello}, false), " hello");
  EXPECT_EQ(streamed({}, {kMetaId, kMetaHello}), " hello");
  // Strip of trailing spaces: they are held until the end of the string is known.
  j["decoder"] = {{"type", "Sequence"},
                  {"decoders", json::array({{{"type", "Replace"}, {"pattern", {{"String", kMeta}}}, {"content", " "}},
                                            {{"type", "Fuse"}},
                                            {{"type", "Strip"}, {"content", " "}, {"start", 0}, {"stop", 1}}})}};
  load(j);
  EXPECT_EQ(tok_->decode_ids(Ids{kMetaHello, kMetaId}, false), " hello");
  EXPECT_EQ(tok_->decode_ids(Ids{kMetaHello, kMetaId, kMetaId, kMetaHello}, false), " hello   hello");
  std::vector<std::string> pieces;
  EXPECT_EQ(streamed({}, {kMetaHello, kMetaId, kMetaId, kMetaHello, kMetaId}, &pieces), " hello   hello");
  EXPECT_THAT(pieces, ElementsAre(" hello", "", "", "   hello", "", ""));
  // No decoder: token strings joined by spaces.
  j["decoder"] = nullptr;
  load(j);
  EXPECT_EQ(tok_->decode_ids(Ids{kMetaHello, kMetaH}, false), kMeta + "hello " + kMeta + "h");
}

// ------------------------------------------------------------------------------------------------
// Errors name the file and the field.
// ------------------------------------------------------------------------------------------------

TEST(HfTokenizerErrors, BadFilesNameTheFileAndTheField) {
  TempDir dir;
  const fs::path path = dir.path() / "tokenizer.json";
  auto message_for = [&](const std::string& text) {
    write_text(path, text);
    return error_of([&] { HfTokenizer tok(path); });
  };
  auto with = [&](const std::function<void(json&)>& edit) {
    json j = sentencepiece_tokenizer();
    edit(j);
    return message_for(j.dump());
  };
  const std::string file = path.string();
  EXPECT_THAT(message_for("{}"), AllOf(HasSubstr(file), HasSubstr("'model' is missing")));
  const std::string full = sentencepiece_tokenizer().dump();
  EXPECT_THAT(message_for(full.substr(0, full.size() / 2)), AllOf(HasSubstr(file), HasSubstr("invalid JSON")));
  EXPECT_THAT(with([](json& j) { j["model"]["type"] = "Unigram"; }),
              AllOf(HasSubstr(file), HasSubstr("model.type"), HasSubstr("Unigram")));
  EXPECT_THAT(with([](json& j) { j["model"].erase("vocab"); }), AllOf(HasSubstr(file), HasSubstr("model.vocab")));
  EXPECT_THAT(with([](json& j) { j["model"]["merges"].push_back("zz q"); }),
              AllOf(HasSubstr(file), HasSubstr("model.merges[5]"), HasSubstr("zz")));
  EXPECT_THAT(with([](json& j) { j["pre_tokenizer"] = {{"type", "Digits"}, {"individual_digits", true}}; }),
              AllOf(HasSubstr(file), HasSubstr("pre_tokenizer.type"), HasSubstr("Digits")));
  EXPECT_THAT(with([](json& j) { j["normalizer"]["normalizers"][1] = {{"type", "NFKC"}}; }),
              AllOf(HasSubstr(file), HasSubstr("normalizer.normalizers[1].type"), HasSubstr("NFKC")));
  EXPECT_THAT(with([](json& j) { j["decoder"] = {{"type", "CTC"}}; }),
              AllOf(HasSubstr(file), HasSubstr("decoder.type"), HasSubstr("CTC")));
  EXPECT_THAT(with([](json& j) { j["pre_tokenizer"] = {{"type", "Split"}, {"pattern", {{"Regex", "(a"}}},
                                                      {"behavior", "Isolated"}, {"invert", false}}; }),
              AllOf(HasSubstr(file), HasSubstr("invalid regular expression")));
  EXPECT_THAT(with([](json& j) { j["added_tokens"][0]["id"] = "zero"; }),
              AllOf(HasSubstr(file), HasSubstr("added_tokens[0].id")));

  write_text(path, full);
  write_text(dir.path() / "generation_config.json", R"({"eos_token_id": "x"})");
  EXPECT_THAT(error_of([&] { HfTokenizer tok(path); }),
              AllOf(HasSubstr("generation_config.json"), HasSubstr("eos_token_id")));
  fs::remove(dir.path() / "generation_config.json");
  write_text(dir.path() / "tokenizer_config.json", R"({"bos_token": "<nope>"})");
  EXPECT_THAT(error_of([&] { HfTokenizer tok(path); }),
              AllOf(HasSubstr("tokenizer_config.json"), HasSubstr("bos_token"), HasSubstr("<nope>")));
  fs::remove(dir.path() / "tokenizer_config.json");
  EXPECT_THAT(error_of([&] { load_hf_tokenizer(path, 100); }), AllOf(HasSubstr(file), HasSubstr("vocab_size")));
}

// ------------------------------------------------------------------------------------------------
// Resolution and the default stream decoder.
// ------------------------------------------------------------------------------------------------

TEST(ResolveHfTokenizer, TokenizerJsonBesideTheModelOrByPath) {
  TempDir dir;
  write_text(dir.path() / "tokenizer.json", byte_level_tokenizer().dump());
  ModelConfig config;
  config.vocab_size = 300;
  const auto beside = resolve_tokenizer("", dir.path() / "model.safetensors", config);
  EXPECT_EQ(beside->name(), "hf:" + (dir.path() / "tokenizer.json").string());
  EXPECT_EQ(beside->encode("hello world"), (Ids{kHello, kSpaceWorld}));
  const auto by_path = resolve_tokenizer((dir.path() / "tokenizer.json").string(), "/nonexistent", config);
  EXPECT_EQ(by_path->specials().bos_id, kBos3);
}

TEST(DefaultStreamDecoder, ByteTokenizerHoldsBackIncompleteSequencesOnly) {
  const auto tok = make_byte_tokenizer(258);
  const std::vector<int32_t> context = {256};
  auto stream = tok->stream_decoder(context);
  EXPECT_EQ(stream->put(0xC3), "");
  EXPECT_EQ(stream->put(0xA9), "\xC3\xA9");
  EXPECT_EQ(stream->put(0xFF), "\xFF");  // ill-formed bytes pass through unchanged
  EXPECT_EQ(stream->put('a'), "a");
  EXPECT_EQ(stream->put(0xE2), "");
  EXPECT_EQ(stream->put(0x82), "");
  EXPECT_EQ(stream->finish(), "\xE2\x82");
}

TEST(Utf8, LossyFollowsTheMaximalSubpartRule) {
  EXPECT_EQ(utf8_lossy("a\xF0\x9F\x98" "b"), "a" + kReplacement + "b");      // truncated: one
  EXPECT_EQ(utf8_lossy("\xC0\xAF"), kReplacement + kReplacement);           // overlong lead: two
  EXPECT_EQ(utf8_lossy("\xF4\x90\x80\x80"), kReplacement + kReplacement + kReplacement + kReplacement);
  EXPECT_EQ(utf8_lossy("\xE2\x82\xAC"), "\xE2\x82\xAC");
  EXPECT_TRUE(utf8_is_valid("\xF0\x9F\x98\x80"));
  EXPECT_FALSE(utf8_is_valid("\xF0\x9F\x98"));
  EXPECT_FALSE(utf8_is_valid("\xED\xA0\x80"));
}

}  // namespace
}  // namespace ra
