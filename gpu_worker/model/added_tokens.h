#pragma once
// Finding added tokens (<|eot_id|>, <s>, ...) in text before it is split into words, as the reference's
// AddedVocabulary::find_matches: leftmost-longest, non-overlapping matches over a byte trie; a
// single_word token must not touch a word character on either side (the match is then skipped); lstrip
// / rstrip tokens take the whitespace on their left / right with them.

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "gpu_worker/model/function_ref.h"

namespace ra {

class OnigRegex;

class AddedTokenSplitter {
 public:
  struct Token {
    std::string content;  // as matched (for normalized tokens: the normalized content)
    int32_t id = -1;
    bool lstrip = false, rstrip = false, single_word = false;
  };

  explicit AddedTokenSplitter(std::vector<Token> tokens);
  ~AddedTokenSplitter();
  AddedTokenSplitter(AddedTokenSplitter&&) noexcept;

  bool empty() const { return nodes_.size() <= 1; }

  // Calls emit(piece, id, offset) for the pieces of `text` in order, which together cover it: a
  // matched token (id >= 0; the piece includes stripped whitespace) or the text between two (id -1,
  // never empty). `offset` is the piece's byte offset in `text`.
  void split(std::string_view text, FunctionRef<void(std::string_view, int32_t, size_t)> emit) const;

 private:
  struct Node {
    int32_t token = -1;                                  // index into tokens_ of the token ending here
    std::vector<std::pair<unsigned char, int32_t>> kids;  // byte -> node
  };
  // The longest token starting at `pos`: its index, or -1; `end` is where it ends.
  int32_t longest_at(std::string_view text, size_t pos, size_t& end) const;
  bool word_char_before(std::string_view text, size_t pos) const;
  bool word_char_after(std::string_view text, size_t pos) const;

  std::vector<Token> tokens_;
  std::vector<Node> nodes_;  // nodes_[0] is the root
  bool first_byte_[256] = {};
  std::unique_ptr<OnigRegex> word_;  // \w, when a token is single_word
};

}  // namespace ra
