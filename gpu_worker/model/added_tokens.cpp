#include "gpu_worker/model/added_tokens.h"

#include <algorithm>

#include "gpu_worker/model/onig_regex.h"
#include "gpu_worker/model/utf8.h"

namespace ra {
namespace {

size_t previous_char_start(std::string_view text, size_t pos) {
  size_t i = pos - 1;
  while (i > 0 && (static_cast<unsigned char>(text[i]) & 0xC0) == 0x80) --i;
  return i;
}

}  // namespace

AddedTokenSplitter::AddedTokenSplitter(std::vector<Token> tokens) : tokens_(std::move(tokens)) {
  nodes_.emplace_back();
  bool any_single_word = false;
  for (size_t t = 0; t < tokens_.size(); ++t) {
    const std::string& s = tokens_[t].content;
    if (s.empty()) continue;
    any_single_word = any_single_word || tokens_[t].single_word;
    first_byte_[static_cast<unsigned char>(s[0])] = true;
    int32_t node = 0;
    for (unsigned char c : s) {
      auto& kids = nodes_[static_cast<size_t>(node)].kids;
      const auto it = std::find_if(kids.begin(), kids.end(), [c](const auto& k) { return k.first == c; });
      if (it != kids.end()) {
        node = it->second;
      } else {
        const auto next = static_cast<int32_t>(nodes_.size());
        nodes_[static_cast<size_t>(node)].kids.emplace_back(c, next);
        nodes_.emplace_back();
        node = next;
      }
    }
    nodes_[static_cast<size_t>(node)].token = static_cast<int32_t>(t);  // a repeated content: the last wins
  }
  if (any_single_word) word_ = std::make_unique<OnigRegex>("\\w", "added token word check");
}

AddedTokenSplitter::~AddedTokenSplitter() = default;
AddedTokenSplitter::AddedTokenSplitter(AddedTokenSplitter&&) noexcept = default;

int32_t AddedTokenSplitter::longest_at(std::string_view text, size_t pos, size_t& end) const {
  int32_t node = 0, found = -1;
  for (size_t i = pos; i < text.size(); ++i) {
    const auto c = static_cast<unsigned char>(text[i]);
    const auto& kids = nodes_[static_cast<size_t>(node)].kids;
    const auto it = std::find_if(kids.begin(), kids.end(), [c](const auto& k) { return k.first == c; });
    if (it == kids.end()) break;
    node = it->second;
    if (nodes_[static_cast<size_t>(node)].token >= 0) {
      found = nodes_[static_cast<size_t>(node)].token;
      end = i + 1;
    }
  }
  return found;
}

bool AddedTokenSplitter::word_char_before(std::string_view text, size_t pos) const {
  if (pos == 0) return false;
  size_t end = 0;
  return word_->match_at(text, previous_char_start(text, pos), end);
}

bool AddedTokenSplitter::word_char_after(std::string_view text, size_t pos) const {
  size_t end = 0;
  return pos < text.size() && word_->match_at(text, pos, end);
}

void AddedTokenSplitter::split(std::string_view text, FunctionRef<void(std::string_view, int32_t, size_t)> emit) const {
  size_t done = 0;  // end of the last piece emitted
  size_t pos = 0;
  while (pos < text.size()) {
    if (!first_byte_[static_cast<unsigned char>(text[pos])]) {
      ++pos;
      continue;
    }
    size_t end = 0;
    const int32_t t = longest_at(text, pos, end);
    if (t < 0) {
      ++pos;
      continue;
    }
    const Token& token = tokens_[static_cast<size_t>(t)];
    if (token.single_word && (word_char_before(text, pos) || word_char_after(text, end))) {
      pos = end;  // as the reference, the skipped match is not searched again
      continue;
    }
    size_t start = pos, stop = end;
    if (token.lstrip) {
      while (start > done) {
        const size_t prev = previous_char_start(text, start);
        char32_t cp = 0;
        utf8_decode(text, prev, cp);
        if (!is_unicode_whitespace(cp)) break;
        start = prev;
      }
    }
    if (token.rstrip) {
      while (stop < text.size()) {
        char32_t cp = 0;
        const size_t len = utf8_decode(text, stop, cp);
        if (!is_unicode_whitespace(cp)) break;
        stop += len;
      }
    }
    if (done < start) emit(text.substr(done, start - done), -1, done);
    emit(text.substr(start, stop - start), token.id, start);
    done = stop;
    pos = stop;
  }
  if (done < text.size()) emit(text.substr(done), -1, done);
}

}  // namespace ra
