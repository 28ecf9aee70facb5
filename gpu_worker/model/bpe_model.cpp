#include "gpu_worker/model/bpe_model.h"

#include <algorithm>
#include <cstring>

#include "common/error.h"
#include "gpu_worker/model/utf8.h"

namespace ra {
namespace {

// Words longer than this are not cached (the reference caches words shorter than 256 characters; the
// cache changes no result, only time).
constexpr size_t kMaxCachedWordBytes = 256;
// Cap on cached words per call, to bound memory on huge inputs.
constexpr size_t kMaxCachedWords = size_t{1} << 20;

constexpr std::string_view kMeta = "\xE2\x96\x81";  // ▁, SentencePiece's space

bool printable_byte_char(unsigned b) { return (b >= 0x21 && b <= 0x7E) || (b >= 0xA1 && b <= 0xAC) || (b >= 0xAE); }

// Candidate ordering for a min-heap on (rank, position).
bool worse(const BpeScratch::Candidate& a, const BpeScratch::Candidate& b) {
  return a.rank != b.rank ? a.rank > b.rank : a.pos > b.pos;
}

}  // namespace

char32_t byte_level_char(unsigned char byte) {
  if (printable_byte_char(byte)) return byte;
  unsigned n = 0;
  for (unsigned b = 0; b < byte; ++b) n += printable_byte_char(b) ? 0 : 1;
  return 0x100 + n;
}

int byte_level_byte(char32_t cp) {
  static const auto table = [] {
    std::vector<int16_t> t(0x144, -1);
    for (unsigned b = 0; b < 256; ++b) t[byte_level_char(static_cast<unsigned char>(b))] = static_cast<int16_t>(b);
    return t;
  }();
  return cp < table.size() ? table[cp] : -1;
}

BpeModel::BpeModel(const HfBpeModel& spec, bool byte_level, const std::string& source)
    : byte_level_(byte_level),
      ignore_merges_(spec.ignore_merges),
      byte_fallback_(spec.byte_fallback),
      fuse_unk_(spec.fuse_unk) {
  int32_t limit = 0;
  for (const auto& [token, id] : spec.vocab) limit = std::max(limit, id + 1);
  tokens_.resize(static_cast<size_t>(limit));
  has_token_.assign(static_cast<size_t>(limit), false);
  for (const auto& [token, id] : spec.vocab) {
    tokens_[static_cast<size_t>(id)] = token;
    has_token_[static_cast<size_t>(id)] = true;
    by_string_.insert(token, id);
  }

  std::fill(std::begin(single_byte_), std::end(single_byte_), -1);
  std::fill(std::begin(fallback_), std::end(fallback_), -1);
  for (int b = 0; b < 256; ++b) fallback_[b] = id_of(fmt::format("<0x{:02X}>", b));
  if (byte_level_) {
    for (int b = 0; b < 256; ++b) {
      byte_char_[b].clear();
      utf8_append(byte_char_[b], byte_level_char(static_cast<unsigned char>(b)));
    }
    // Key every token made only of the 256 byte characters by the bytes it stands for. Others can never
    // come out of a byte-level word, so they are left out.
    std::string raw;
    for (const auto& [token, id] : spec.vocab) {
      raw.clear();
      bool mapped = true;
      for (size_t i = 0; i < token.size() && mapped;) {
        char32_t cp = 0;
        i += utf8_decode(token, i, cp);
        const int byte = byte_level_byte(cp);
        if (byte < 0) mapped = false;
        raw.push_back(static_cast<char>(byte));
      }
      if (!mapped || raw.empty()) continue;
      by_unit_.insert(raw, id);
      if (raw.size() == 1) single_byte_[static_cast<unsigned char>(raw[0])] = id;
    }
  }

  if (spec.unk_token) {
    unk_id_ = id_of(*spec.unk_token);
    RA_REQUIRE(unk_id_ >= 0, "{}: field 'model.unk_token' is \"{}\", which is not in model.vocab", source, *spec.unk_token);
  }

  split_at_meta_ = !byte_level_ && id_of(kMeta) >= 0;
  for (size_t rank = 0; rank < spec.merges.size(); ++rank) {
    const auto& [a, b] = spec.merges[rank];
    const bool b_starts_with_meta = b.compare(0, kMeta.size(), kMeta) == 0;
    const bool a_ends_with_meta = a.size() >= kMeta.size() && a.compare(a.size() - kMeta.size(), kMeta.size(), kMeta) == 0;
    if (b_starts_with_meta && !a_ends_with_meta) split_at_meta_ = false;  // it joins across the start of a "▁" run
    const int32_t ia = id_of(a), ib = id_of(b);
    const int32_t merged = ia < 0 || ib < 0 ? -1 : id_of(a + b);
    RA_REQUIRE(merged >= 0, "{}: field 'model.merges[{}]' (\"{}\" \"{}\") names a token that is not in model.vocab ({})",
               source, rank, a, b, ia < 0 ? a : ib < 0 ? b : a + b);
    merges_.insert(ia, ib, Merge{static_cast<uint32_t>(rank), merged});  // a repeated pair keeps its last rank
  }
}

const std::string* BpeModel::token(int32_t id) const {
  if (id < 0 || id >= id_limit() || !has_token_[static_cast<size_t>(id)]) return nullptr;
  return &tokens_[static_cast<size_t>(id)];
}

int32_t BpeModel::id_of(std::string_view token) const {
  const int32_t* id = by_string_.find(token);
  return id == nullptr ? -1 : *id;
}

void BpeScratch::prepare(size_t text_bytes) {
  size_t entries = 64;
  while (entries < 4096 && entries * 16 < text_bytes) entries *= 2;
  if (hot.size() < entries) hot.assign(entries, HotWord{});
}

void BpeModel::encode_word(std::string_view word, BpeScratch& scratch, std::vector<int32_t>& out) const {
  if (!split_at_meta_) {
    encode_piece(word, /*whole=*/true, scratch, out);
    return;
  }
  if (ignore_merges_) {
    if (const int32_t* id = by_string_.find(word)) {
      out.push_back(*id);
      return;
    }
  }
  // Cut before every "▁" that follows another character (the bytes of "▁" only occur at character
  // boundaries of valid UTF-8).
  size_t start = 0;
  for (size_t at = word.find(kMeta, 1); at != std::string_view::npos; at = word.find(kMeta, at + 1)) {
    const bool after_meta = at >= kMeta.size() && word.compare(at - kMeta.size(), kMeta.size(), kMeta) == 0;
    if (after_meta) continue;  // inside a run of "▁"
    encode_piece(word.substr(start, at - start), /*whole=*/false, scratch, out);
    start = at;
  }
  encode_piece(word.substr(start), /*whole=*/false, scratch, out);
}

void BpeModel::encode_piece(std::string_view piece, bool whole, BpeScratch& scratch, std::vector<int32_t>& out) const {
  const uint64_t h = hash_bytes(piece);
  if (scratch.hot.empty() || piece.size() > BpeScratch::kHotKeyBytes) {
    encode_piece_uncached(piece, h, whole, scratch, out);
    return;
  }
  BpeScratch::HotWord& e = scratch.hot[h & (scratch.hot.size() - 1)];
  const auto tag = static_cast<uint32_t>(h >> 32);
  if (e.tag == tag && e.length == piece.size() && std::memcmp(e.key, piece.data(), piece.size()) == 0) {
    out.insert(out.end(), e.ids, e.ids + e.count);
    return;
  }
  const size_t before = out.size();
  encode_piece_uncached(piece, h, whole, scratch, out);
  const size_t count = out.size() - before;
  if (count <= BpeScratch::kHotIds) {
    e.tag = tag;
    e.length = static_cast<uint8_t>(piece.size());
    e.count = static_cast<uint8_t>(count);
    std::memcpy(e.key, piece.data(), piece.size());
    std::copy(out.begin() + static_cast<std::ptrdiff_t>(before), out.end(), e.ids);
  }
}

void BpeModel::encode_piece_uncached(std::string_view piece, uint64_t hash, bool whole, BpeScratch& scratch,
                                     std::vector<int32_t>& out) const {
  if (whole && ignore_merges_) {
    const int32_t* id = byte_level_ ? by_unit_.find(piece, hash) : by_string_.find(piece, hash);
    if (id != nullptr) {
      out.push_back(*id);
      return;
    }
  }
  const bool cacheable = piece.size() <= kMaxCachedWordBytes;
  if (cacheable) {
    if (const uint64_t* hit = scratch.cache.find(piece, hash)) {
      const auto offset = static_cast<size_t>(*hit >> 32);
      const auto count = static_cast<size_t>(*hit & 0xFFFFFFFFu);
      out.insert(out.end(), scratch.cached_ids.begin() + static_cast<std::ptrdiff_t>(offset),
                 scratch.cached_ids.begin() + static_cast<std::ptrdiff_t>(offset + count));
      return;
    }
  }
  const size_t before = out.size();
  merge_word(piece, scratch, out);
  if (cacheable && scratch.cache.size() < kMaxCachedWords) {
    const uint64_t offset = scratch.cached_ids.size();
    scratch.cached_ids.insert(scratch.cached_ids.end(), out.begin() + static_cast<std::ptrdiff_t>(before), out.end());
    scratch.cache.insert(piece, hash, (offset << 32) | (out.size() - before));
  }
}

void BpeModel::add_unit(int32_t id, std::string_view unit, std::vector<BpeScratch::Symbol>& symbols,
                        bool& pending_unk) const {
  auto push = [&](int32_t sid) { symbols.push_back({sid, -1, -1}); };
  if (id >= 0) {
    if (pending_unk) push(unk_id_);
    pending_unk = false;
    push(id);
    return;
  }
  if (byte_fallback_) {
    bool all = true;
    for (unsigned char c : unit) all = all && fallback_[c] >= 0;
    if (all) {
      // As the reference: a pending unk is not flushed before the byte pieces.
      for (unsigned char c : unit) push(fallback_[c]);
      return;
    }
  }
  if (unk_id_ < 0) return;  // no unk token: the unit is dropped
  if (pending_unk && !fuse_unk_) push(unk_id_);
  pending_unk = true;
}

void BpeModel::merge_word(std::string_view word, BpeScratch& scratch, std::vector<int32_t>& out) const {
  auto& symbols = scratch.symbols;
  symbols.clear();
  bool pending_unk = false;
  if (byte_level_) {
    for (unsigned char b : word) {
      add_unit(single_byte_[b], byte_char_[b], symbols, pending_unk);
    }
  } else {
    for (size_t i = 0; i < word.size();) {
      char32_t cp = 0;
      const size_t len = utf8_decode(word, i, cp);
      const std::string_view unit = word.substr(i, len);
      const int32_t* id = by_string_.find(unit);
      add_unit(id == nullptr ? -1 : *id, unit, symbols, pending_unk);
      i += len;
    }
  }
  if (pending_unk) symbols.push_back({unk_id_, -1, -1});
  const auto n = static_cast<int32_t>(symbols.size());
  if (n == 0) return;
  for (int32_t i = 0; i < n; ++i) {
    symbols[static_cast<size_t>(i)].prev = i - 1;
    symbols[static_cast<size_t>(i)].next = i + 1 < n ? i + 1 : -1;
  }

  auto& heap = scratch.heap;
  heap.clear();
  auto consider = [&](int32_t pos) {
    const auto& left = symbols[static_cast<size_t>(pos)];
    if (left.next < 0) return;
    const int32_t right_id = symbols[static_cast<size_t>(left.next)].id;
    if (const Merge* m = merges_.find(left.id, right_id)) {
      heap.push_back({m->rank, pos, left.id, right_id, m->merged});
      std::push_heap(heap.begin(), heap.end(), worse);
    }
  };
  for (int32_t i = 0; i + 1 < n; ++i) consider(i);

  while (!heap.empty()) {
    std::pop_heap(heap.begin(), heap.end(), worse);
    const BpeScratch::Candidate c = heap.back();
    heap.pop_back();
    auto& left = symbols[static_cast<size_t>(c.pos)];
    // Stale when the left symbol was absorbed (id -1) or either side has merged since.
    if (left.id != c.left || left.next < 0) continue;
    auto& right = symbols[static_cast<size_t>(left.next)];
    if (right.id != c.right) continue;
    left.id = c.merged;
    const int32_t after = right.next;
    right.id = -1;
    left.next = after;
    if (after >= 0) symbols[static_cast<size_t>(after)].prev = c.pos;
    if (left.prev >= 0) consider(left.prev);
    consider(c.pos);
  }
  for (int32_t i = 0; i >= 0; i = symbols[static_cast<size_t>(i)].next) out.push_back(symbols[static_cast<size_t>(i)].id);
}

}  // namespace ra
