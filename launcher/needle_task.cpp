#include "launcher/needle_task.h"

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <fstream>
#include <iterator>
#include <utility>

#include "common/error.h"
#include "common/splitmix64.h"

namespace ra {
namespace {

namespace fs = std::filesystem;

// Single-word names; a prompt uses n_facts distinct ones.
constexpr std::array<std::string_view, 16> kNames = {
    "Ada",   "Alan",   "Barbara", "Claude", "Donald",   "Edsger",  "Frances", "Grace",
    "Hedy",  "John",   "Ken",     "Linus",  "Margaret", "Niklaus", "Radia",   "Tony"};

constexpr std::string_view kMarker = "special magic number";

// Independent streams for the haystack and the facts, so the haystack's file order does not depend on
// n_facts.
constexpr uint64_t kHaystackStream = 0x686179737461636bull;  // "haystack"
constexpr uint64_t kFactStream = 0x6e6565646c657321ull;      // "needles!"

struct HeaderFile {
  std::string relative;  // generic path relative to the root: the sort key
  fs::path path;
};

std::vector<HeaderFile> list_header_files(const fs::path& root) {
  std::vector<HeaderFile> files;
  try {
    for (auto it = fs::recursive_directory_iterator(root, fs::directory_options::skip_permission_denied);
         it != fs::recursive_directory_iterator(); ++it) {
      const fs::directory_entry& entry = *it;
      if (entry.is_symlink() || !entry.is_regular_file() || entry.path().extension() != ".h") continue;
      files.push_back({entry.path().lexically_relative(root).generic_string(), entry.path()});
    }
  } catch (const fs::filesystem_error& e) {
    raise("needle haystack: cannot list {}: {}", root.string(), e.what());
  }
  std::sort(files.begin(), files.end(),
            [](const HeaderFile& a, const HeaderFile& b) { return a.relative < b.relative; });
  return files;
}

// Whole file as bytes; empty when it cannot be read.
std::string read_bytes(const fs::path& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return {};
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

// `budget` bytes of shuffled header text.
std::string build_haystack(const fs::path& root, int64_t budget, uint64_t seed, int64_t total_tokens,
                           int n_facts) {
  RA_REQUIRE(fs::is_directory(root), "needle haystack: {} is not a directory (pass a folder of C headers)",
             root.string());
  std::vector<HeaderFile> files = list_header_files(root);
  SplitMix64 rng(seed ^ kHaystackStream);
  for (size_t i = files.size(); i > 1; --i) std::swap(files[i - 1], files[rng.below(i)]);

  std::string hay;
  hay.reserve(static_cast<size_t>(budget) + 4096);
  for (const HeaderFile& f : files) {
    if (static_cast<int64_t>(hay.size()) >= budget) break;
    std::string bytes = read_bytes(f.path);
    if (bytes.empty() || bytes.find(kMarker) != std::string::npos) continue;
    if (bytes.back() != '\n') bytes.push_back('\n');
    hay += bytes;
  }
  RA_REQUIRE(static_cast<int64_t>(hay.size()) >= budget,
             "needle haystack: {} holds only {} bytes of text in {} *.h files, but a {}-token prompt with {} "
             "facts needs {} bytes of haystack; point the haystack at a larger folder or ask for fewer tokens",
             root.string(), hay.size(), files.size(), total_tokens, n_facts, budget);
  hay.resize(static_cast<size_t>(budget));
  return hay;
}

// The first line start at or after `pos`, else the last one before it (0 always is one).
size_t snap_to_line_start(const std::string& hay, size_t pos) {
  for (size_t p = pos; p < hay.size(); ++p) {
    if (p == 0 || hay[p - 1] == '\n') return p;
  }
  for (size_t p = std::min(pos, hay.size()); p > 0; --p) {
    if (hay[p - 1] == '\n') return p;
  }
  return 0;
}

}  // namespace

std::string needle_fact_sentence(std::string_view name, std::string_view number) {
  return fmt::format("The special magic number for {} is {}.", name, number);
}

std::string needle_question(std::string_view name) {
  return fmt::format("\nWhat is the special magic number for {}? The special magic number for {} is ", name,
                     name);
}

NeedlePrompt make_needle_prompt(int64_t total_tokens, int n_facts, uint64_t seed,
                                const std::filesystem::path& haystack_root) {
  RA_REQUIRE(n_facts >= 1 && n_facts <= static_cast<int>(kNames.size()),
             "needle prompt: {} facts requested; use 1 to {}", n_facts, kNames.size());

  // Facts: distinct names (a partial Fisher-Yates draw) and distinct 7-digit numbers.
  SplitMix64 rng(seed ^ kFactStream);
  std::array<std::string_view, kNames.size()> names = kNames;
  std::vector<NeedleFact> facts(static_cast<size_t>(n_facts));
  for (size_t i = 0; i < facts.size(); ++i) {
    std::swap(names[i], names[i + rng.below(names.size() - i)]);
    facts[i].name = std::string(names[i]);
    for (;;) {
      const std::string number = std::to_string(1000000 + rng.below(9000000));
      const bool taken =
          std::any_of(facts.begin(), facts.begin() + i, [&](const NeedleFact& f) { return f.number == number; });
      if (!taken) {
        facts[i].number = number;
        break;
      }
    }
  }
  const NeedleFact& asked = facts[rng.below(facts.size())];
  const std::string question_name = asked.name;
  const std::string answer = asked.number;
  const std::string question = needle_question(question_name);

  // Byte budget: BOS + haystack + facts (each with its '\n') + question = total_tokens.
  int64_t fixed = 1 + static_cast<int64_t>(question.size());
  for (const NeedleFact& f : facts) fixed += static_cast<int64_t>(needle_fact_sentence(f.name, f.number).size()) + 1;
  RA_REQUIRE(total_tokens > fixed,
             "needle prompt: {} tokens leave no room for a haystack; BOS, {} facts and the question alone take {}",
             total_tokens, n_facts, fixed);
  const std::string hay = build_haystack(haystack_root, total_tokens - fixed, seed, total_tokens, n_facts);

  // Depths: uniform over the haystack, moved to a line start so each fact is a line of its own.
  std::vector<std::pair<size_t, size_t>> slots;  // (haystack position, fact index)
  for (size_t i = 0; i < facts.size(); ++i) slots.emplace_back(snap_to_line_start(hay, rng.below(hay.size())), i);
  std::sort(slots.begin(), slots.end());

  NeedlePrompt out;
  out.text.reserve(static_cast<size_t>(total_tokens));
  size_t done = 0;
  for (const auto& [pos, index] : slots) {
    out.text.append(hay, done, pos - done);
    done = pos;
    NeedleFact f = facts[index];
    const std::string sentence = needle_fact_sentence(f.name, f.number);
    f.offset = static_cast<int64_t>(out.text.size());
    f.length = static_cast<int64_t>(sentence.size());
    out.text += sentence;
    out.text += '\n';
    out.facts.push_back(std::move(f));
  }
  out.text.append(hay, done);
  out.text += question;
  RA_ASSERT(static_cast<int64_t>(out.text.size()) == total_tokens - 1);
  out.question_name = question_name;
  out.answer = answer;
  return out;
}

bool needle_answer_correct(std::string_view generated, std::string_view answer) {
  if (answer.empty()) return false;
  const size_t start = generated.find_first_not_of(' ');
  if (start == std::string_view::npos) return false;
  const std::string_view rest = generated.substr(start);
  if (!rest.starts_with(answer)) return false;
  return rest.size() == answer.size() || rest[answer.size()] < '0' || rest[answer.size()] > '9';
}

}  // namespace ra
