// make_needle_prompt and needle_answer_correct on a small haystack the test writes itself.

#include <gmock/gmock.h>
#include <fmt/format.h>
#include <gtest/gtest.h>

#include <cstdint>
#include <filesystem>
#include <fstream>
#include <set>
#include <string>

#include "common/error.h"
#include "launcher/needle_task.h"
#include "tests/support/error_message.h"
#include "tests/support/temp_dir.h"

namespace ra {
namespace {

namespace fs = std::filesystem;
using ::testing::AllOf;
using ::testing::HasSubstr;

void write_file(const fs::path& file, const std::string& bytes) {
  fs::create_directories(file.parent_path());
  std::ofstream out(file, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  ASSERT_TRUE(out.good()) << file;
}

// A folder of headers: 30 ordinary ones (in subfolders), one without a final newline, one holding
// non-UTF-8 bytes, an empty one, and things that must never reach a prompt: a .txt file, a symlink to
// a header outside the folder, and a header that already talks about magic numbers.
class NeedleTask : public ::testing::Test {
 protected:
  void SetUp() override {
    root_ = dir_.path() / "include";
    for (int f = 0; f < 30; ++f) {
      std::string text = fmt::format("/* header {} */\n", f);
      for (int line = 0; line < 20; ++line) text += fmt::format("#define H{}_LINE_{} {}\n", f, line, f * line);
      available_ += static_cast<int64_t>(text.size());
      const fs::path file = root_ / fmt::format("sub{}", f % 3) / fmt::format("h{}.h", f);
      write_file(file, text);
    }
    const std::string no_newline = "int no_newline_at_end;", latin1 = "/* caf\xe9 \xff\xfe */\n";
    write_file(root_ / "no_newline.h", no_newline);
    write_file(root_ / "latin1.h", latin1);
    available_ += static_cast<int64_t>(no_newline.size() + 1 + latin1.size());  // a '\n' is added to the first
    write_file(root_ / "empty.h", "");
    write_file(root_ / "notes.txt", "NOT_A_HEADER\n");
    write_file(root_ / "magic.h", "/* The special magic number for Ada is 1234567. MARKER_FILE */\n");
    write_file(dir_.path() / "outside" / "target.h", "SYMLINKED_CONTENT\n");
    fs::create_symlink(dir_.path() / "outside" / "target.h", root_ / "link.h");
  }

  // BOS + question + facts ("sentence\n" each): the part of a prompt that is not haystack.
  static int64_t fixed_tokens(const NeedlePrompt& p) {
    int64_t n = 1 + static_cast<int64_t>(needle_question(p.question_name).size());
    for (const NeedleFact& f : p.facts) n += f.length + 1;
    return n;
  }

  test::TempDir dir_{"ra-needle"};
  fs::path root_;
  int64_t available_ = 0;  // haystack bytes the folder can give
};

TEST_F(NeedleTask, SameSeedSamePromptAndOtherSeedsDiffer) {
  const NeedlePrompt a = make_needle_prompt(3000, 4, 7, root_);
  const NeedlePrompt b = make_needle_prompt(3000, 4, 7, root_);
  EXPECT_EQ(a.text, b.text);
  EXPECT_EQ(a.answer, b.answer);
  EXPECT_EQ(a.question_name, b.question_name);
  std::set<std::string> texts;
  for (uint64_t seed = 1; seed <= 8; ++seed) texts.insert(make_needle_prompt(3000, 4, seed, root_).text);
  EXPECT_EQ(texts.size(), 8u);
}

TEST_F(NeedleTask, ExactLengthFactsAtLineStartsAndQuestionLast) {
  for (const int64_t tokens : {1000, 2048, 4096}) {
    for (const int n_facts : {1, 2, 4, 16}) {
      for (uint64_t seed = 1; seed <= 3; ++seed) {
        SCOPED_TRACE(testing::Message() << tokens << " tokens, " << n_facts << " facts, seed " << seed);
        const NeedlePrompt p = make_needle_prompt(tokens, n_facts, seed, root_);
        ASSERT_EQ(static_cast<int64_t>(p.text.size()), tokens - 1);
        ASSERT_TRUE(p.text.ends_with(needle_question(p.question_name)));
        ASSERT_EQ(p.facts.size(), static_cast<size_t>(n_facts));

        std::set<std::string> names, numbers;
        int asked = 0;
        int64_t previous_end = 0;
        for (const NeedleFact& f : p.facts) {
          EXPECT_EQ(p.text.substr(static_cast<size_t>(f.offset), static_cast<size_t>(f.length)),
                    needle_fact_sentence(f.name, f.number));
          EXPECT_TRUE(f.offset == 0 || p.text[static_cast<size_t>(f.offset - 1)] == '\n') << "at " << f.offset;
          EXPECT_EQ(p.text[static_cast<size_t>(f.offset + f.length)], '\n');
          EXPECT_GE(f.offset, previous_end) << "facts overlap or are out of order";
          previous_end = f.offset + f.length + 1;
          ASSERT_EQ(f.number.size(), 7u);
          EXPECT_NE(f.number[0], '0');
          EXPECT_EQ(f.number.find_first_not_of("0123456789"), std::string::npos);
          names.insert(f.name);
          numbers.insert(f.number);
          if (f.name == p.question_name) {
            ++asked;
            EXPECT_EQ(f.number, p.answer);
          }
        }
        EXPECT_EQ(names.size(), p.facts.size());
        EXPECT_EQ(numbers.size(), p.facts.size());
        EXPECT_EQ(asked, 1);
        // The haystack itself never mentions magic numbers: facts + the question's two mentions only.
        size_t mentions = 0;
        for (size_t at = p.text.find("special magic number"); at != std::string::npos;
             at = p.text.find("special magic number", at + 1)) {
          ++mentions;
        }
        EXPECT_EQ(mentions, p.facts.size() + 2);
      }
    }
  }
}

TEST_F(NeedleTask, WholeFolderFitsExactlyAndOnlyHeadersAreUsed) {
  const NeedlePrompt probe = make_needle_prompt(1000, 4, 3, root_);  // facts do not depend on the length
  const int64_t tokens = fixed_tokens(probe) + available_;
  const NeedlePrompt p = make_needle_prompt(tokens, 4, 3, root_);
  EXPECT_EQ(static_cast<int64_t>(p.text.size()), tokens - 1);
  EXPECT_EQ(p.answer, probe.answer);
  for (int f = 0; f < 30; ++f) EXPECT_THAT(p.text, HasSubstr("/* header " + std::to_string(f) + " */\n"));
  EXPECT_THAT(p.text, HasSubstr("int no_newline_at_end;\n"));
  EXPECT_THAT(p.text, HasSubstr("/* caf\xe9 \xff\xfe */\n"));  // bytes pass through, UTF-8 or not
  EXPECT_THAT(p.text, ::testing::Not(HasSubstr("NOT_A_HEADER")));
  EXPECT_THAT(p.text, ::testing::Not(HasSubstr("SYMLINKED_CONTENT")));
  EXPECT_THAT(p.text, ::testing::Not(HasSubstr("MARKER_FILE")));

  try {
    make_needle_prompt(tokens + 1, 4, 3, root_);
    FAIL() << "expected ra::Error for a haystack one byte short";
  } catch (const Error& e) {
    EXPECT_THAT(e.what(), AllOf(HasSubstr(root_.string()), HasSubstr("holds only " + std::to_string(available_)),
                                HasSubstr(std::to_string(available_ + 1) + " bytes")));
  }
}

// Pins the generator: the same files give the same prompt on every platform and standard library.
TEST_F(NeedleTask, GoldenPromptForSeedOne) {
  const NeedlePrompt p = make_needle_prompt(2048, 4, 1, root_);
  uint64_t h = 0xcbf29ce484222325ull;  // FNV-1a
  for (unsigned char c : p.text) h = (h ^ c) * 0x100000001b3ull;
  std::string facts;
  for (const NeedleFact& f : p.facts) facts += f.name + "=" + f.number + "@" + std::to_string(f.offset) + " ";
  EXPECT_EQ(p.question_name, "Linus");
  EXPECT_EQ(p.answer, "3943765");
  EXPECT_EQ(facts, "Linus=3943765@37 Grace=1095789@312 Claude=3311125@1344 Margaret=1752391@1464 ");
  EXPECT_EQ(h, 0x838bc327007fbe77ull) << std::hex << h;
}

TEST_F(NeedleTask, BadArgumentsAndMissingFolderAreErrors) {
  EXPECT_THAT(test::error_of([&] { make_needle_prompt(4096, 0, 1, root_); }), HasSubstr("use 1 to 16"));
  EXPECT_THAT(test::error_of([&] { make_needle_prompt(4096, 17, 1, root_); }), HasSubstr("use 1 to 16"));
  EXPECT_THAT(test::error_of([&] { make_needle_prompt(100, 4, 1, root_); }), HasSubstr("no room for a haystack"));
  EXPECT_THAT(test::error_of([&] { make_needle_prompt(4096, 4, 1, dir_.path() / "missing"); }),
              AllOf(HasSubstr((dir_.path() / "missing").string()), HasSubstr("not a directory")));
  const fs::path empty = dir_.path() / "empty";
  fs::create_directories(empty);
  EXPECT_THAT(test::error_of([&] { make_needle_prompt(4096, 4, 1, empty); }),
              AllOf(HasSubstr(empty.string()), HasSubstr("holds only 0 bytes"), HasSubstr("0 *.h files")));
}

TEST(NeedleAnswer, Scoring) {
  EXPECT_TRUE(needle_answer_correct("1234567", "1234567"));
  EXPECT_TRUE(needle_answer_correct("1234567.\nWh", "1234567"));
  EXPECT_TRUE(needle_answer_correct("  1234567.", "1234567"));
  EXPECT_FALSE(needle_answer_correct("12345678", "1234567"));
  EXPECT_FALSE(needle_answer_correct("123456", "1234567"));
  EXPECT_FALSE(needle_answer_correct("1234568.", "1234567"));
  EXPECT_FALSE(needle_answer_correct("\n1234567.", "1234567"));
  EXPECT_FALSE(needle_answer_correct("", "1234567"));
  EXPECT_FALSE(needle_answer_correct("   ", "1234567"));
  EXPECT_FALSE(needle_answer_correct("1234567", ""));
}

TEST(NeedleRealHeaders, FourKPromptFromUsrInclude) {
  if (!fs::is_directory("/usr/include")) GTEST_SKIP() << "no /usr/include on this machine";
  const NeedlePrompt p = make_needle_prompt(4096, 4, 1);
  EXPECT_EQ(p.text.size(), 4095u);
  EXPECT_TRUE(p.text.ends_with(needle_question(p.question_name)));
}

}  // namespace
}  // namespace ra
