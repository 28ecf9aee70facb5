#pragma once
// The needle-in-a-haystack task of the byte-level needle model (../shared/models/needle-byte-13m):
// a haystack of C header text with a few "magic number" facts hidden at random depths, ending with a
// question about one of them. Prompts are a pure function of (total_tokens, n_facts, seed, the files
// under haystack_root): the generator is splitmix64 with our own bounded draws, so every platform and
// standard library builds the same bytes from the same files.

#include <cstdint>
#include <filesystem>
#include <string>
#include <string_view>
#include <vector>

namespace ra {

struct NeedleFact {
  std::string name;    // from a fixed list of single-word names, e.g. "Grace"
  std::string number;  // 7 decimal digits, first digit 1-9
  int64_t offset = 0;  // byte offset of the sentence in NeedlePrompt::text; its token position is
                       // offset + 1 because BOS comes first
  int64_t length = 0;  // bytes of the sentence "The special magic number for NAME is NNNNNNN."
};

struct NeedlePrompt {
  std::string text;              // prompt bytes without BOS: exactly total_tokens - 1 bytes
  std::string question_name;     // whose number the question asks for
  std::string answer;            // that fact's 7 digits
  std::vector<NeedleFact> facts; // in order of offset; names and numbers are distinct
};

// "The special magic number for NAME is NUMBER."
std::string needle_fact_sentence(std::string_view name, std::string_view number);

// "\nWhat is the special magic number for NAME? The special magic number for NAME is " (the prompt's
// last bytes; the model continues with the number).
std::string needle_question(std::string_view name);

// Builds a prompt of `total_tokens` byte-level tokens counting BOS, so text has total_tokens - 1 bytes.
//  - Haystack: every regular *.h file under haystack_root (recursively; symlinks and files that already
//    mention "special magic number" are skipped), sorted by relative path, shuffled with the seed,
//    concatenated (a '\n' is added after a file that lacks one) and cut to the byte budget. The bytes are
//    the files' own, not necessarily UTF-8.
//  - n_facts facts, each inserted as its own line ("sentence\n") at a line start at a uniformly random
//    depth of the haystack.
//  - The question asks for one fact chosen by the seed.
// Throws ra::Error when n_facts is outside [1, 16], when total_tokens leaves no room for any haystack,
// or when haystack_root is missing or holds too little text.
NeedlePrompt make_needle_prompt(int64_t total_tokens, int n_facts, uint64_t seed,
                                const std::filesystem::path& haystack_root = "/usr/include");

// True when `generated` (the decoded continuation) is `answer` after optional leading spaces and is not
// followed by another digit: " 1234567." and "1234567" score, "12345678" and "123456" do not.
bool needle_answer_correct(std::string_view generated, std::string_view answer);

}  // namespace ra
